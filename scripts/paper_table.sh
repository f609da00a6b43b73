#!/usr/bin/env bash
# The comparison table of AdamW, IVON and IVON-PoCoMo on the small CPU configuration (scripts/run_cpu_small.sh),
# start to end:
#   1. lr sweep at seed 1337: each optimizer at each lr of its list (equal counts; AdamW around 1e-3, IVON/PoCo
#      on the un-rescaled peak lr -l around 300), via scripts/sweep_lr.sh;
#   2. per optimizer the lr with the lowest val loss (at the mean weights) at the last step;
#   3. seeds 1337, 1338, 1339 at that lr (the sweep's seed-1337 run is reused: same run dir, same command);
#   4. scripts/make_table.py over the three seeds per optimizer -> $OUT/table.md (mean ± sample std);
#   5. scripts/plot_logs.py of those runs -> $OUT/*.png, and of the whole lr sweep -> $OUT/sweep_plots/*.png.
# Finished runs are never trained again (the run script skips them), so a stopped pipeline resumes.
# PoCo: -pst = STEPS/2 and -pp = min(32, (STEPS - pst)/4) (at least 4 anchor refreshes in the corrected half),
# passed to the run script as POCO_START / POCO_PERIOD.
#
# Usage: scripts/paper_table.sh [--no-train]
#   --no-train  steps 2, 4, 5 only, from the runs already on disk (make plots); a missing run is an error.
# Environment: STEPS (run_cpu_small.sh's default), LRS_ADAMW ("1e-4 3e-4 1e-3 3e-3"), LRS_IVON ("100 300 1000 3000"),
#   LRS_POCO ("100 300 1000 3000"), SEEDS ("1337 1338 1339"; the first one is the sweep's), OUT (log_runs/paper_table),
#   ROOT (run dirs, log_runs/cpu_small), TAG_SUFFIX (appended to every run dir name), TARGET (cpu; gpu runs the
#   run_gpt2_124M_*.sh scripts instead, untested), PYTHON (/usr/bin/python3).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "error: paper_table: $*" >&2; exit 1; }
TRAIN=1
for a in "$@"; do
  case $a in --no-train) TRAIN=0 ;; *) die "unknown argument '$a' (usage: scripts/paper_table.sh [--no-train])" ;; esac
done

PYTHON=${PYTHON:-/usr/bin/python3}
TARGET=${TARGET:-cpu}
case $TARGET in
  cpu) STEPS=${STEPS:-$(scripts/run_cpu_small.sh --default-steps)}; ROOT=${ROOT:-log_runs/cpu_small} ;;
  gpu) STEPS=${STEPS:-$(bash scripts/run_gpt2_124M_adamw.sh --default-steps)}; ROOT=${ROOT:-log_runs/gpt2_124M} ;;
  *) die "TARGET '$TARGET' is not cpu or gpu" ;;
esac
if ! [[ $STEPS =~ ^[0-9]+$ ]] || [ "$STEPS" -lt 2 ]; then die "STEPS '$STEPS' is not an integer >= 2"; fi
LRS_ADAMW=${LRS_ADAMW:-1e-4 3e-4 1e-3 3e-3}
LRS_IVON=${LRS_IVON:-100 300 1000 3000}
LRS_POCO=${LRS_POCO:-100 300 1000 3000}
SEEDS=${SEEDS:-1337 1338 1339}
OUT=${OUT:-log_runs/paper_table}
TAG_SUFFIX=${TAG_SUFFIX:-}
read -r -a seeds <<< "$SEEDS"
[ ${#seeds[@]} -ge 1 ] || die "SEEDS is empty"
for s in "${seeds[@]}"; do [[ $s =~ ^[0-9]+$ ]] || die "SEEDS: '$s' is not a non-negative integer"; done
n_adamw=$(wc -w <<< "$LRS_ADAMW"); n_ivon=$(wc -w <<< "$LRS_IVON"); n_poco=$(wc -w <<< "$LRS_POCO")
if [ "$n_adamw" -lt 1 ] || [ "$n_adamw" != "$n_ivon" ] || [ "$n_ivon" != "$n_poco" ]; then
  die "LRS_ADAMW, LRS_IVON, LRS_POCO must hold the same number of lrs, at least 1 (have $n_adamw, $n_ivon, $n_poco)"
fi
POCO_START=$(( STEPS / 2 ))
pp=$(( (STEPS - POCO_START) / 4 ))
POCO_PERIOD=$(( pp < 1 ? 1 : (pp > 32 ? 32 : pp) ))
export STEPS ROOT TARGET PYTHON TAG_SUFFIX POCO_START POCO_PERIOD LRS_ADAMW LRS_IVON LRS_POCO
mkdir -p "$OUT"
sweep_seed=${seeds[0]}
run_dir() { echo "$ROOT/$1_seed$2_lr$3$TAG_SUFFIX"; }
# a finished run: the val line of the last step in main.log, and not listed as failed by the last sweep here
# (a run dir holding a finished run of another command fails in the run script, so it is not taken either)
finished() {
  [ -f "$1/main.log" ] && grep -qE "^s:$STEPS tel:" "$1/main.log" || return 1
  ! grep -qxF "failed: $1" "$OUT/sweep_lr.md" "$OUT/seeds.md" 2>/dev/null
}
lrs_of() { case $1 in adamw) echo "$LRS_ADAMW" ;; ivon) echo "$LRS_IVON" ;; poco) echo "$LRS_POCO" ;; esac; }

echo "paper_table: $TARGET, $STEPS steps, seeds $SEEDS, PoCo -pst $POCO_START -pp $POCO_PERIOD, runs in $ROOT, output in $OUT"

# 1. lr sweep (a failed run, e.g. a divergence, leaves its lr out of the choice)
if [ "$TRAIN" = 1 ]; then
  OPTS="adamw ivon poco" SEEDS=$sweep_seed SUMMARY="$OUT/sweep_lr.md" bash scripts/sweep_lr.sh || \
    echo "paper_table: some sweep runs failed (see $OUT/sweep_lr.md); choosing among the finished ones"
fi

# 2. best lr per optimizer: lowest val loss at step STEPS among the finished sweep runs
declare -A best
best_tsv=$(printf 'optimizer\tbest_lr\tval_loss\tlrs_finished')
sweep_dirs=()
for opt in adamw ivon poco; do
  groups=()
  for lr in $(lrs_of $opt); do
    d=$(run_dir $opt "$sweep_seed" "$lr")
    if finished "$d"; then groups+=(--group "$lr=$d"); sweep_dirs+=("$d"); fi
  done
  [ ${#groups[@]} -gt 0 ] || die "no finished lr-sweep run of $opt (seed $sweep_seed, lrs '$(lrs_of $opt)', under $ROOT); run scripts/paper_table.sh without --no-train"
  pick=$("$PYTHON" scripts/make_table.py --format tsv --step "$STEPS" "${groups[@]}" | \
         awk -F'\t' 'NR > 1 && $4 ~ /^[0-9]/ && (best == "" || $4 + 0 < bv) { best = $1; bv = $4 + 0 } END { print best "\t" bv }')
  best[$opt]=${pick%%$'\t'*}
  [ -n "${best[$opt]}" ] || die "no finite val loss among the lr-sweep runs of $opt"
  best_tsv+=$(printf '\n%s\t%s\t%s\t%s' "$opt" "${best[$opt]}" "${pick#*$'\t'}" "$(( ${#groups[@]} / 2 ))")
  echo "paper_table: $opt: best lr ${best[$opt]} (val loss ${pick#*$'\t'} at step $STEPS, seed $sweep_seed)"
done

printf '%s\n' "$best_tsv" > "$OUT/best_lr.tsv"

# 3. all seeds at the best lrs (the seed-$sweep_seed runs are the sweep's, skipped as finished)
if [ "$TRAIN" = 1 ]; then
  OPTS="adamw ivon poco" SEEDS="$SEEDS" LRS_ADAMW=${best[adamw]} LRS_IVON=${best[ivon]} LRS_POCO=${best[poco]} \
    SUMMARY="$OUT/seeds.md" bash scripts/sweep_lr.sh || echo "paper_table: some seed runs failed (see $OUT/seeds.md)"
fi

# 4. the table
groups=(); final_dirs=()
for opt in adamw ivon poco; do
  for s in "${seeds[@]}"; do
    d=$(run_dir $opt "$s" "${best[$opt]}")
    finished "$d" || die "run '$d' is missing or unfinished (no val line at step $STEPS)"
    groups+=(--group "$opt=$d"); final_dirs+=("$d")
  done
done
{
  echo "AdamW vs IVON vs IVON-PoCoMo, $TARGET configuration, $STEPS steps, seeds ${SEEDS}; each optimizer at its best"
  echo "lr of the seed-$sweep_seed sweep (adamw ${best[adamw]}, ivon ${best[ivon]}, poco ${best[poco]}; $OUT/best_lr.tsv)."
  echo
  "$PYTHON" scripts/make_table.py --step "$STEPS" "${groups[@]}"
} > "$OUT/table.md"
cat "$OUT/table.md"

# 5. plots: the final runs, and the whole lr sweep
"$PYTHON" scripts/plot_logs.py "${final_dirs[@]}" --out "$OUT" --smooth 10 \
  --title "best lr per optimizer, seeds $SEEDS, $STEPS steps"
"$PYTHON" scripts/plot_logs.py "${sweep_dirs[@]}" --out "$OUT/sweep_plots" --smooth 10 \
  --title "lr sweep, seed $sweep_seed, $STEPS steps"
echo "paper_table: table in $OUT/table.md, plots in $OUT and $OUT/sweep_plots"
