#!/usr/bin/env bash
# GPT-2 124M (d12) with IVON-PoCoMo on one 80 GB GPU (./train_gpt2cu): the IVON recipe of OPTIMIZERS.md §7.1 plus
# the PoCo switches (§7.2: the paper's values are unknown; these are the trainer's defaults).
# Needs the IVON GPU path: train_gpt2cu refuses -opt poco until IVON/PoCo are on the GPU (a later issue); the flags
# are the trainer's documented ones (./train_gpt2 --help). For a CPU dry run of the script: TRAINER=./train_gpt2.
# Usage: scripts/run_gpt2_124M_poco.sh [extra trainer flags...]       e.g. STEPS=5000 POCO_PERIOD=16 scripts/...
# Adaptations of the recipe to one GPU and our data, and the environment knobs (OUT, SEED, STEPS, DATA, B, ...):
# see the comment block of scripts/run_gpt2_124M_common.sh; IVON settings as scripts/run_gpt2_124M_ivon.sh.
# PoCo: gamma 0.5 constant (-pg, -pgs), corrected from POCO_START (default -1 = STEPS/2) on (-pst; the trainer's 50%, after
# "50K of 100K steps"), anchor refresh every POCO_PERIOD = 32 steps (-pp) on -pp x 10 micro-batches (-pmb -1, the
# tokens of one outer loop: ~3x IVON's gradient cost in the corrected half), PoCoMo momentum (-pmo 1).
# The mega-batch tokens are logged as mega: on the step lines.
OPT=poco
POCO_START=${POCO_START:--1}  # -1: the trainer resolves it to STEPS/2
POCO_PERIOD=${POCO_PERIOD:-32}
OPT_FLAGS=(-l 300 -ess -1 -h0 1e-3 -b1 0.9 -b2 0.99999 -r 1e-3 -pr 1e-6 -pr1 0 -gc 1.0 -debias 1 -rescale 1 -bma 4
           -pg 0.5 -pgs constant -pst "$POCO_START" -pp "$POCO_PERIOD" -pmb -1 -pmo 1)
# shellcheck source=scripts/run_gpt2_124M_common.sh
source "$(dirname "$0")/run_gpt2_124M_common.sh" "$@"
