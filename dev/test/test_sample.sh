#!/usr/bin/env bash
# sample_gpt2 end to end on a small IVON checkpoint trained here (d2, 30 steps): the mean-weights and BMA val loss of
# teacher forcing equal what the trainer printed at the checkpoint's step (same val batches, same BMA noise stream;
# also for a 20-step PoCo checkpoint);
# per-token MI >= 0 and MI = 0 exactly at tau 0; the same seed gives the same text and JSON lines; top-k 1 = greedy
# (temperature 0); -bma 1 gives aleatoric = entropy; the KV-cache checks of test_sample on the checkpoint.
# Environment: SAMPLE_BIN (./sample_gpt2), TRAIN_BIN (./train_gpt2), TEST_SAMPLE_BIN (dev/test/bin/test_sample),
# PYTHON (/usr/bin/python3). Last line: "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
SAMPLE=${SAMPLE_BIN:-./sample_gpt2}
TRAIN=${TRAIN_BIN:-./train_gpt2}
TSAMPLE=${TEST_SAMPLE_BIN:-dev/test/bin/test_sample}
PY=${PYTHON:-/usr/bin/python3}
VAL=dev/data/austen/austen_val.bin
pass=0; fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { echo "OK   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }

for f in "$SAMPLE" "$TRAIN" "$TSAMPLE" "$VAL" gpt2_tokenizer.bin ref/gpt2_d2.bin; do
  if [ ! -e "$f" ]; then echo "FAIL missing $f (run make test, which builds it)"; echo "0 passed, 1 failed"; exit 1; fi
done

# the checkpoint: val (B 4, T 64, 2 batches, bma 4) at step 30, then the checkpoint of step 30
if ! "$TRAIN" -e d2 -b 4 -t 64 -u 5 -s 0 -m 2 -seed 7 -opt ivon -l -1 -r 1e-2 -x 30 -v 30 -n 30 -o "$tmp/ck" \
    > "$tmp/train.txt" 2>&1; then
  echo "FAIL training the checkpoint: $(tail -n 3 "$tmp/train.txt" | tr '\n' ' ')"; echo "0 passed, 1 failed"; exit 1
fi
read -r tmean tbma <<< "$(awk '/^step 30: val loss/ {print $5, $9}' "$tmp/train.txt")"

# 1. teacher forcing on the trainer's val batches = the trainer's val loss (mean weights) and BMA loss
"$SAMPLE" -o "$tmp/ck" -i "$VAL" -b 4 -t 64 -m 2 -bma 4 -jl "$tmp/doc.jl" > "$tmp/doc.txt" 2> "$tmp/doc.err"
read -r snll smean <<< "$("$PY" -c 'import json,sys; d=json.loads(open(sys.argv[1]).readline()); print(d["nll"], d["nll_mean"])' "$tmp/doc.jl" 2>/dev/null)"
cmp_loss() {  # what trainer ours: equal within 2e-6 (the trainer prints 6 decimals; its sums are fp32 per batch)
  if "$PY" -c 'import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(abs(a - b) > 2e-6)' "$2" "$3" 2>/dev/null; then
    ok "$1: trainer $2, sample_gpt2 $3"
  else
    bad "$1: trainer '$2', sample_gpt2 '$3' (want equal within 2e-6)"
  fi
}
cmp_loss "val loss (mean weights) = trainer's" "$tmean" "$smean"
cmp_loss "val loss bma(4) = trainer's" "$tbma" "$snll"
# the same for a PoCo checkpoint (20 steps; its state holds m and h as IVON's)
if "$TRAIN" -e d2 -b 4 -t 64 -u 5 -s 0 -m 2 -seed 7 -opt poco -l -1 -r 1e-2 -x 20 -v 20 -n 20 -o "$tmp/pk" \
    > "$tmp/train_poco.txt" 2>&1; then
  read -r pmean pbma <<< "$(awk '/^step 20: val loss/ {print $5, $9}' "$tmp/train_poco.txt")"
  "$SAMPLE" -o "$tmp/pk" -i "$VAL" -b 4 -t 64 -m 2 -bma 4 -jl "$tmp/pdoc.jl" > /dev/null 2>&1
  read -r psnll psmean <<< "$("$PY" -c 'import json,sys; d=json.loads(open(sys.argv[1]).readline()); print(d["nll"], d["nll_mean"])' "$tmp/pdoc.jl" 2>/dev/null)"
  cmp_loss "PoCo: val loss (mean weights) = trainer's" "$pmean" "$psmean"
  cmp_loss "PoCo: val loss bma(4) = trainer's" "$pbma" "$psnll"
else
  bad "training the PoCo checkpoint: $(tail -n 3 "$tmp/train_poco.txt" | tr '\n' ' ')"
fi

# 2. generation: MI >= 0 on every token, and the JSON lines say the mode
gen() { "$SAMPLE" -o "$tmp/ck" -p "It is a truth universally acknowledged" -g 24 -show plain "$@"; }
check_jl() {  # what file python-condition-over-list-of-records
  if "$PY" -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; sys.exit(not (len(r) > 0 and ('"$3"')))' "$2"; then
    ok "$1"
  else
    bad "$1 ($(head -c 300 "$2"))"
  fi
}
gen -bma 4 -jl "$tmp/g1.jl" > "$tmp/g1.txt" 2>/dev/null
check_jl "generation bma(4): MI >= 0 on every token, mode bma" "$tmp/g1.jl" \
  'all(x["mode"] == "bma" and x["samples"] == 4 and x["mi"] >= 0 for x in r) and any(x["mi"] > 0 for x in r)'
check_jl "generation bma(4): entropy = aleatoric + MI" "$tmp/g1.jl" \
  'all(abs(x["entropy"] - x["aleatoric"] - x["mi"]) < 1e-6 for x in r)'
gen -bma 4 -tau 0 -jl "$tmp/g0.jl" > /dev/null 2>&1
check_jl "generation tau 0: MI = 0 exactly on every token" "$tmp/g0.jl" 'all(x["mi"] == 0.0 for x in r)'
gen -bma 0 -jl "$tmp/gm.jl" > /dev/null 2>&1
check_jl "generation mean weights: entropy only, mode mean" "$tmp/gm.jl" \
  'all(x["mode"] == "mean" and "mi" not in x and x["entropy"] > 0 for x in r)'
"$SAMPLE" -o "$tmp/ck" -i "$VAL" -b 1 -t 64 -m 2 -bma 4 -tau 0 -jl "$tmp/d0.jl" > /dev/null 2>&1
# (the BMA loss is the trainer's fp32 logsumexp over the samples: equal to the mean loss within rounding)
check_jl "teacher forcing tau 0: MI = 0 exactly, BMA loss = mean-weights loss" "$tmp/d0.jl" \
  'r[0]["mi"] == 0.0 and abs(r[0]["nll"] - r[0]["nll_mean"]) < 1e-6 and r[0]["entropy"] == r[0]["aleatoric"]'
"$SAMPLE" -o "$tmp/ck" -i "$VAL" -b 1 -t 64 -m 2 -bma 1 -jl "$tmp/d1.jl" > /dev/null 2>&1
check_jl "teacher forcing bma(1): MI = 0, aleatoric = entropy" "$tmp/d1.jl" \
  'r[0]["mi"] == 0.0 and r[0]["entropy"] == r[0]["aleatoric"] and r[0]["samples"] == 1'

# 3. determinism: the same seed gives the same text and JSON lines, another seed another text
gen -bma 4 -jl "$tmp/g2.jl" > "$tmp/g2.txt" 2>/dev/null
if cmp -s "$tmp/g1.txt" "$tmp/g2.txt" && cmp -s "$tmp/g1.jl" "$tmp/g2.jl"; then ok "same seed: the same text and JSON lines"
else bad "same seed: the text or the JSON lines differ"; fi
gen -bma 4 -seed 99 > "$tmp/g3.txt" 2>/dev/null
if ! cmp -s "$tmp/g1.txt" "$tmp/g3.txt"; then ok "another seed: another text"; else bad "seeds 1337 and 99 gave the same text"; fi

# 4. top-k 1 = greedy (temperature 0), also with top-p
gen -bma 4 -topk 1 > "$tmp/k1.txt" 2>/dev/null
gen -bma 4 -temp 0 > "$tmp/t0.txt" 2>/dev/null
gen -bma 4 -topk 1 -topp 0.5 -temp 2 -seed 5 > "$tmp/k1b.txt" 2>/dev/null
if cmp -s "$tmp/k1.txt" "$tmp/t0.txt" && cmp -s "$tmp/k1.txt" "$tmp/k1b.txt" && [ -s "$tmp/k1.txt" ]; then
  ok "top-k 1 = greedy (temperature 0), for any seed and temperature"
else
  bad "top-k 1 and temperature 0 differ: '$(head -c 100 "$tmp/k1.txt")' vs '$(head -c 100 "$tmp/t0.txt")'"
fi
# a very small top-p is greedy too (the nucleus is the most likely token)
gen -bma 4 -topp 1e-6 > "$tmp/p0.txt" 2>/dev/null
if cmp -s "$tmp/k1.txt" "$tmp/p0.txt"; then ok "top-p 1e-6 = greedy"; else bad "top-p 1e-6 differs from greedy"; fi

# 5. piped output is plain text (no escape codes) with -show auto
gen -bma 4 > "$tmp/auto.txt" 2>/dev/null
if ! grep -q $'\033' "$tmp/auto.txt" && cmp -s "$tmp/auto.txt" "$tmp/g1.txt"; then ok "-show auto piped: plain text"
else bad "-show auto piped: escape codes or a different text"; fi
gen -bma 4 -show shade -smax 1e-3 > "$tmp/shade.txt" 2>/dev/null
if grep -q $'\033\\[48;5;' "$tmp/shade.txt"; then ok "-show shade: ANSI background shading"
else bad "-show shade: no shading codes"; fi
gen -bma 4 -show brackets > "$tmp/br.txt" 2>/dev/null
if grep -qE '\[[0-9]+\.[0-9]{3}\]' "$tmp/br.txt"; then ok "-show brackets: MI in brackets after each token"
else bad "-show brackets: no [MI] after the tokens"; fi

# 6. the KV-cache checks on a posterior sample of this checkpoint
if "$TSAMPLE" ref/gpt2_d2.bin "$tmp/ck" > "$tmp/kv.txt" 2>&1; then ok "test_sample on the checkpoint: $(tail -n 1 "$tmp/kv.txt")"
else bad "test_sample on the checkpoint: $(grep FAIL "$tmp/kv.txt" | head -n 3 | tr '\n' ' ')"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
