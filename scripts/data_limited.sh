#!/usr/bin/env bash
# The data-limited comparison: the d4 model trained for several epochs over a small slice of the Austen train
# split, where AdamW overfits; val on Persuasion (the val split) every 25 steps. AdamW, IVON and IVON-PoCoMo at
# the same steps and tokens per step, seeds 1337-1339, through scripts/run_cpu_small.sh; then a table of the final
# and best val loss, BMA val loss and ECE (scripts/make_table.py --best --paired adamw) and the plots.
#   train:  dev/data/austen/austen_small_train.bin (the first 65,536 train tokens, `make data` writes it)
#   steps:  STEPS (400) of 1,024 tokens: 6.25 epochs
#   lrs:    the short-run recipe's (doc/runs.md): AdamW 1e-3, IVON/PoCo 300 (effective 0.3) with -ess 1e8
# Finished runs are reused (the run script skips them). Usage: scripts/data_limited.sh [--no-train]
# Environment: STEPS (400), SEEDS ("1337 1338 1339"), OPTS ("adamw ivon poco"), ROOT (log_runs/data_limited),
#   IVON_FLAGS ("-ess 1e8"), PYTHON (/usr/bin/python3).
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "error: data_limited: $*" >&2; exit 1; }
TRAIN=1
for a in "$@"; do
  case $a in --no-train) TRAIN=0 ;; *) die "unknown argument '$a' (usage: scripts/data_limited.sh [--no-train])" ;; esac
done
PYTHON=${PYTHON:-/usr/bin/python3}
export STEPS=${STEPS:-400} ROOT=${ROOT:-log_runs/data_limited}
export TRAIN_DATA=${TRAIN_DATA:-dev/data/austen/austen_small_train.bin}
SEEDS=${SEEDS:-1337 1338 1339}
OPTS=${OPTS:-adamw ivon poco}
IVON_FLAGS=${IVON_FLAGS:--ess 1e8}
[ -f "$TRAIN_DATA" ] || die "train data '$TRAIN_DATA' not found; run 'make data'"
if [ "$TRAIN" = 1 ]; then
  for seed in $SEEDS; do
    for opt in $OPTS; do
      # shellcheck disable=SC2086
      if [ "$opt" = adamw ]; then scripts/run_cpu_small.sh adamw "$seed" -v 25
      else scripts/run_cpu_small.sh "$opt" "$seed" $IVON_FLAGS -v 25; fi
    done
  done
fi
groups=()
for opt in $OPTS; do groups+=(--group "$opt=$ROOT/${opt}_seed*"); done
paired=()
case " $OPTS " in *" adamw "*) paired=(--paired adamw) ;; esac
"$PYTHON" scripts/make_table.py "${groups[@]}" --step "$STEPS" --best "${paired[@]}" --out "$ROOT/table.md"
runs=()
for opt in $OPTS; do runs+=("$ROOT/${opt}_seed${SEEDS%% *}"); done
"$PYTHON" scripts/plot_logs.py "${runs[@]}" --out "$ROOT/plots" --title "data-limited: d4, 64K train tokens, seed ${SEEDS%% *}"
