#!/usr/bin/env bash
# Trains the quickstart model (d4 on Austen) with AdamW, IVON and IVON-PoCo(Mo) for the same steps and prints a
# table of the final val loss and ECE at the mean and, for IVON/PoCo, of the BMA predictive. IVON and PoCo use the
# short-run recipe (doc/runs.md): un-rescaled lr 300, -ess 1e8 (sigma0 3.2e-3), -b2 0.999; `make compare` runs it.
# Usage: scripts/quickstart_compare.sh [outdir]   (default log_compare; one subdirectory per optimizer)
# Environment: STEPS (300), SEED (1337), ADAMW_ARGS (-l 1e-3), IVON_ARGS, POCO_ARGS (-l 300 -ess 1e8 -b2 0.999),
#              OPTS ("adamw ivon poco"), TAG (appended to the run directory names).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-log_compare}
STEPS=${STEPS:-300}
SEED=${SEED:-1337}
ADAMW_ARGS=${ADAMW_ARGS:--l 1e-3}
IVON_ARGS=${IVON_ARGS:--l 300 -ess 1e8 -b2 0.999}
POCO_ARGS=${POCO_ARGS:--l 300 -ess 1e8 -b2 0.999}
OPTS=${OPTS:-adamw ivon poco}
TAG=${TAG:-}
# the quickstart settings (Makefile QUICKSTART_ARGS) without the lr, the sampling and the output dir
BASE="-e d4 -b 8 -t 128 -x $STEPS -u 20 -k cosine -q 0.1 -v 50 -m 20 -s 0 -seed $SEED"

make -s data train_gpt2
mkdir -p "$out"
for opt in $OPTS; do
  case $opt in
    adamw) extra=$ADAMW_ARGS ;;
    ivon) extra=$IVON_ARGS ;;
    poco) extra=$POCO_ARGS ;;
    *) echo "quickstart_compare: unknown optimizer '$opt' in OPTS" >&2; exit 2 ;;
  esac
  dir="$out/$opt$TAG"
  echo "== $opt: ./train_gpt2 $BASE -opt $opt $extra -o $dir"
  # shellcheck disable=SC2086
  ./train_gpt2 $BASE -opt "$opt" $extra -o "$dir" > "$dir.out" 2>&1 || { tail -3 "$dir.out"; exit 1; }
  tail -1 "$dir.out"
done

printf "\n| optimizer | extra flags | steps | val loss (mean) | val loss (BMA) | ECE (mean) | ECE (BMA) | mega-batch tokens | ms/step |\n"
printf "|---|---|---|---|---|---|---|---|---|\n"
for opt in $OPTS; do
  dir="$out/$opt$TAG"
  case $opt in adamw) extra=$ADAMW_ARGS ;; ivon) extra=$IVON_ARGS ;; poco) extra=$POCO_ARGS ;; esac
  # last val line of main.log: "s:N tel:X [bma:Y]"
  val=$(grep -E "^s:$STEPS tel:" "$dir/main.log" | tail -1)
  tel=$(sed -E 's/.*tel:([0-9.]+).*/\1/' <<<"$val")
  bma=$(grep -q "bma:" <<<"$val" && sed -E 's/.*bma:([0-9.]+).*/\1/' <<<"$val" || echo "-")
  ece=$(grep -q "ece:" <<<"$val" && sed -E 's/.* ece:([0-9.]+).*/\1/' <<<"$val" || echo "-")
  bece=$(grep -q "bece:" <<<"$val" && sed -E 's/.*bece:([0-9.]+).*/\1/' <<<"$val" || echo "-")
  mega=$(grep -E "^s:$STEPS trl:" "$dir/main.log" | grep -q "mega:" && \
         grep -E "^s:$STEPS trl:" "$dir/main.log" | sed -E 's/.*mega:([0-9]+).*/\1/' || echo "0")
  ms=$(sed -nE 's/total average iteration time: ([0-9.]+) ms/\1/p' "$dir.out")
  printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n" "$opt" "${extra:--}" "$STEPS" "$tel" "$bma" "$ece" "$bece" \
    "$mega" "$ms"
done
