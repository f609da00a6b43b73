#!/usr/bin/env bash
# The short-run comparison with an equal tuning budget, tuned on held-out train novels (issue 18):
#   1. tune: for each optimizer, 4 peak lrs at seed 1337 on the tune split (dev/data/split_tune.py: train on four
#      novels, val on Northanger Abbey), STEPS steps; the lr with the lowest val loss at the last step wins
#   2. report: the chosen lr at seeds 1337, 1338, 1339 on the real split (val on Persuasion), STEPS steps
#   3. the table (scripts/make_table.py --paired adamw) of the report runs, and the chosen lrs
# Runs through scripts/run_cpu_small.sh (d4, B=8, T=128); IVON and PoCo with the short-run recipe's flags
# (RECIPE_FLAGS, default "-ess 1e8 -b2 0.999"). Finished runs are reused. Usage: scripts/recipe_table.sh [--no-train]
# Environment: STEPS (200), ROOT (log_runs/recipe_table), SEEDS ("1337 1338 1339"), OPTS ("adamw ivon poco"),
#   ADAMW_LRS ("1e-4 3e-4 1e-3 3e-3"), IVON_LRS ("100 300 1000 3000", the un-rescaled peak lr, effective x1e-3),
#   RECIPE_FLAGS, PYTHON (/usr/bin/python3).
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "error: recipe_table: $*" >&2; exit 1; }
TRAIN=1
for a in "$@"; do
  case $a in --no-train) TRAIN=0 ;; *) die "unknown argument '$a' (usage: scripts/recipe_table.sh [--no-train])" ;; esac
done
PYTHON=${PYTHON:-/usr/bin/python3}
export STEPS=${STEPS:-200}
ROOT=${ROOT:-log_runs/recipe_table}
SEEDS=${SEEDS:-1337 1338 1339}
OPTS=${OPTS:-adamw ivon poco}
ADAMW_LRS=${ADAMW_LRS:-1e-4 3e-4 1e-3 3e-3}
IVON_LRS=${IVON_LRS:-100 300 1000 3000}
RECIPE_FLAGS=${RECIPE_FLAGS:--ess 1e8 -b2 0.999}
TUNE_TRAIN=dev/data/austen/austen_tune_train.bin TUNE_VAL=dev/data/austen/austen_tune_val.bin
[ -f "$TUNE_TRAIN" ] && [ -f "$TUNE_VAL" ] || die "tune split not found ($TUNE_TRAIN, $TUNE_VAL); run 'make data'"

flags_of() { if [ "$1" = adamw ]; then echo ""; else echo "$RECIPE_FLAGS"; fi; }
lrs_of() { if [ "$1" = adamw ]; then echo "$ADAMW_LRS"; else echo "$IVON_LRS"; fi; }
# the val loss at step STEPS of a run dir ("" if none)
val_at() { sed -nE "s/^s:$STEPS tel:([^ ]+).*/\1/p" "$1/main.log" 2>/dev/null | tail -n 1; }

declare -A best_lr
for opt in $OPTS; do
  best="" best_val=""
  for lr in $(lrs_of "$opt"); do
    dir="$ROOT/tune/${opt}_seed1337_lr$lr"
    if [ "$TRAIN" = 1 ]; then
      # shellcheck disable=SC2046
      ROOT="$ROOT/tune" TAG="_lr$lr" LR=$lr TRAIN_DATA=$TUNE_TRAIN VAL_DATA=$TUNE_VAL \
        scripts/run_cpu_small.sh "$opt" 1337 $(flags_of "$opt")
    fi
    v=$(val_at "$dir")
    [ -n "$v" ] || die "no val loss at step $STEPS in $dir/main.log"
    echo "tune: $opt lr $lr: val loss $v (Northanger Abbey)"
    if [ -z "$best" ] || awk -v a="$v" -v b="$best_val" 'BEGIN { exit !(a < b) }'; then best=$lr best_val=$v; fi
  done
  best_lr[$opt]=$best
  echo "tune: $opt: lr $best chosen (val loss $best_val)"
done

groups=()
for opt in $OPTS; do
  lr=${best_lr[$opt]}
  if [ "$TRAIN" = 1 ]; then
    for seed in $SEEDS; do
      # shellcheck disable=SC2046
      ROOT="$ROOT/report" TAG="_lr$lr" LR=$lr scripts/run_cpu_small.sh "$opt" "$seed" $(flags_of "$opt")
    done
  fi
  groups+=(--group "$opt lr $lr=$ROOT/report/${opt}_seed*_lr$lr")
done
paired=()
case " $OPTS " in *" adamw "*) paired=(--paired "adamw lr ${best_lr[adamw]}") ;; esac
"$PYTHON" scripts/make_table.py "${groups[@]}" --step "$STEPS" "${paired[@]}" --out "$ROOT/table.md"
