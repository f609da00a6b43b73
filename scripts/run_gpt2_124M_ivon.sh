#!/usr/bin/env bash
# GPT-2 124M (d12) with IVON on one 80 GB GPU (./train_gpt2cu), the recipe of OPTIMIZERS.md §7.1.
# Needs the IVON GPU path: train_gpt2cu refuses -opt ivon until IVON is on the GPU (a later issue); the flags are
# the trainer's documented ones (./train_gpt2 --help). For a CPU dry run of the script: TRAINER=./train_gpt2.
# Usage: scripts/run_gpt2_124M_ivon.sh [extra trainer flags...]       e.g. STEPS=5000 SEED=1338 scripts/...
# Adaptations of the recipe to one GPU and our data, and the environment knobs (OUT, SEED, STEPS, DATA, B, ...):
# see the comment block of scripts/run_gpt2_124M_common.sh. In short: d12, T 1024, 491,520 tokens per step
# (-d, 10 micro-batches of 48 x 1024 = 10 MC samples per step; the recipe has 24), STEPS 20,000, warmup 2% of
# STEPS, cosine to 0, val every STEPS/100 steps (mean and BMA), checkpoints every STEPS/20, -y 1 resume, logs in
# OUT (log_runs/gpt2_124M/ivon_seed<SEED>).
# IVON as the recipe: lr 300 (effective 0.3 with -rescale 1), h0 1e-3, beta1 0.9, beta2 0.99999, clip radius
# r 1e-3, prior delta 1e-6 on 2-D tensors and 0 on 1-D, each micro-batch clipped to norm 1.0; ess -1 = the train
# token count (the recipe: 1e10, of the order of its train tokens); BMA val loss with 4 samples.
OPT=ivon
OPT_FLAGS=(-l 300 -ess -1 -h0 1e-3 -b1 0.9 -b2 0.99999 -r 1e-3 -pr 1e-6 -pr1 0 -gc 1.0 -debias 1 -rescale 1 -bma 4)
# shellcheck source=scripts/run_gpt2_124M_common.sh
source "$(dirname "$0")/run_gpt2_124M_common.sh" "$@"
