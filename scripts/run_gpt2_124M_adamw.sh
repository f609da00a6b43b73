#!/usr/bin/env bash
# GPT-2 124M (d12) with AdamW on one 80 GB GPU (./train_gpt2cu), the baseline of OPTIMIZERS.md §7.1.
# Usage: scripts/run_gpt2_124M_adamw.sh [extra trainer flags...]      e.g. STEPS=5000 SEED=1338 scripts/...
# Adaptations of the recipe to one GPU and our data, and the environment knobs (OUT, SEED, STEPS, DATA, B, ...):
# see the comment block of scripts/run_gpt2_124M_common.sh. In short: d12, T 1024, 491,520 tokens per step
# (-d, 10 micro-batches of 48 x 1024), STEPS 20,000, warmup 2% of STEPS, cosine to 0, val every STEPS/100 steps,
# checkpoints every STEPS/20 (-n, -nk 2, -nm), -y 1 resume, logs in OUT (log_runs/gpt2_124M/adamw_seed<SEED>).
# AdamW as the recipe: peak lr 6e-4, betas (0.9, 0.95) (trainer constants), weight decay 0.1 on the 2-D weights,
# global grad clip 1.0 after accumulation.
OPT=adamw
OPT_FLAGS=(-l 6e-4 -c 0.1 -gc 1.0)
# shellcheck source=scripts/run_gpt2_124M_common.sh
source "$(dirname "$0")/run_gpt2_124M_common.sh" "$@"
