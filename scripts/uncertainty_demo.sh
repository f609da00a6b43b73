#!/usr/bin/env bash
# `make uncertainty-demo`: the document-level uncertainty of sample_gpt2 (teacher forcing, BMA over 4 IVON posterior
# samples) on Austen's val novel (in distribution), the King James Bible (Debian bible-kjv: Genesis 1-11, another
# English) and the Austen val tokens shuffled (no language at all). Trains a small IVON checkpoint first (d2, 200
# steps, in build/demo/ck; reused when present). Prints a table and the time taken.
# Environment: DEMO_DIR (build/demo), DEMO_STEPS (200), DEMO_BATCHES (16 batches of 4 x 64 tokens per document).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
DIR=${DEMO_DIR:-build/demo}
STEPS=${DEMO_STEPS:-200}
NB=${DEMO_BATCHES:-16}
VAL=dev/data/austen/austen_val.bin
mkdir -p "$DIR"

bash scripts/setup.sh --with-demo
for f in ./train_gpt2 ./sample_gpt2 "$VAL" gpt2_tokenizer.bin; do
  [ -e "$f" ] || { echo "uncertainty-demo: missing $f (make train_gpt2 sample_gpt2 data)" >&2; exit 1; }
done

# the King James Bible text: `bible` (bible-kjv) prints "Ge1:1 text" lines; the verse references are cut off
if [ ! -s "$DIR/kjv_genesis.txt" ]; then
  bible -f "Gen1:1-Gen11:32" | sed -E 's/^[^ ]+ //' > "$DIR/kjv_genesis.txt"
fi

if ! ls "$DIR"/ck/DONE_* > /dev/null 2>&1; then
  echo "uncertainty-demo: training a d2 IVON model for $STEPS steps into $DIR/ck"
  ./train_gpt2 -e d2 -b 8 -t 64 -opt ivon -l -1 -r 1e-2 -u 10 -x "$STEPS" -v "$STEPS" -m 4 -s 0 -n "$STEPS" \
    -o "$DIR/ck" > "$DIR/train.txt"
  grep "val loss" "$DIR/train.txt" | tail -n 1
fi

run() {  # name, sample_gpt2 flags
  local name=$1; shift
  ./sample_gpt2 -o "$DIR/ck" -b 4 -t 64 -m "$NB" -bma 4 -jl "$DIR/$name.jl" "$@" > /dev/null 2> "$DIR/$name.err" ||
    { cat "$DIR/$name.err" >&2; exit 1; }
}
run austen_val -i "$VAL"
run kjv_genesis -i "$DIR/kjv_genesis.txt"
run austen_shuffled -i "$VAL" -shuffle 1

echo
echo "document-level uncertainty, bma(4) over the IVON posterior of $DIR/ck (nats per token, $NB x 4 x 64 tokens)"
printf "%-18s %8s %8s %9s %10s %9s\n" document tokens nll entropy aleatoric MI
for name in austen_val kjv_genesis austen_shuffled; do
  /usr/bin/python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).readline())
print("%-18s %8d %8.4f %9.4f %10.4f %9.5f" % (sys.argv[2], d["tokens"], d["nll"], d["entropy"], d["aleatoric"], d["mi"]))' \
    "$DIR/$name.jl" "$name"
done
echo "uncertainty-demo: $(( $(date +%s) - t0 )) s"
