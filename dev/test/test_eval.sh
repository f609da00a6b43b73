#!/usr/bin/env bash
# Posterior evaluation and export (doc/evaluate.md) on short d2 runs of ./train_gpt2 (IVON -bma 3, val and a
# checkpoint at step 2; PoCo -bma 2 at step 3):
#  - eval_gpt2 at tau 1 and the run's S on the same val batches prints the trainer's BMA val loss and BMA ECE of
#    that step, and its mean row the trainer's mean val loss and ECE (the same evaluation functions and samples);
#  - a sample-count x temperature grid: all rows and 15 bins per row in the CSVs, the temperature changes the
#    samples, tau -> 0 approaches the mean row; scripts/plot_eval.py writes the two PNGs;
#  - export_gpt2 -sigma 1 passes dev/test/check_export.py (every tensor of model.safetensors and sigma.safetensors
#    read back with an independent reader), and the reference model's export gives the reference logits in torch;
#    a flipped float, or sigma exported with another ess, makes the checker fail.
# Bad flags and files: dev/test/test_bad_inputs.sh. Ends with `N passed, N failed`; exit 1 on any failure.
set -u
cd "$(dirname "$0")/../.."
TRAIN=${TRAIN_BIN:-./train_gpt2}
EVAL=${EVAL_BIN:-./eval_gpt2}
EXPORT=${EXPORT_BIN:-./export_gpt2}
PY=${PYTHON:-/usr/bin/python3}
pass=0; fail=0
ok()  { echo "OK   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
vt=(-b 4 -t 64 -m 3)

# 1. the trainer's numbers at the checkpoint step: matches NAME STEP S trainer-args...
matches() {
  local name=$1 step=$2 S=$3; shift 3
  if ! $TRAIN -e d2 "${vt[@]}" -l 1e-3 -u 5 -s 0 -seed 7 -r 1e-2 -x "$step" -v "$step" -n "$step" -bma "$S" \
      -o "$tmp/$name" "$@" > "$tmp/$name.txt" 2>&1; then
    bad "$name: training run exited non-zero"; tail -n 3 "$tmp/$name.txt"; return
  fi
  local t_loss t_ece e_loss e_ece
  t_loss=$(awk -v s="$step:" '$1 == "step" && $2 == s && $3 == "val" {print $5, $NF}' "$tmp/$name.txt")  # mean, bma
  t_ece=$(awk -v s="$step:" '$1 == "step" && $2 == s && $3 == "calibration" {print $6, $NF}' "$tmp/$name.txt")
  if ! $EVAL -c "$tmp/$name" "${vt[@]}" -S "$S" -tau 1 -o "$tmp/$name.csv" > "$tmp/$name.eval.txt" 2>&1; then
    bad "$name: eval_gpt2 exited non-zero"; tail -n 3 "$tmp/$name.eval.txt"; return
  fi
  e_loss=$(awk '$1 == "mean" {m = $8} $1 == "bma" {b = $8} END {print m, b}' "$tmp/$name.eval.txt")
  e_ece=$(awk '$1 == "mean" {m = $12} $1 == "bma" {b = $12} END {print m, b}' "$tmp/$name.eval.txt")
  if [ -n "$t_loss" ] && [ "$t_loss" = "$e_loss" ] && [ "$t_ece" = "$e_ece" ]; then
    ok "$name: eval_gpt2 = trainer at step $step: val loss mean, bma($S) $e_loss; ECE mean, bma($S) $e_ece"
  else
    bad "$name: eval_gpt2 (loss '$e_loss', ECE '$e_ece') != trainer (loss '$t_loss', ECE '$t_ece')"
  fi
}
matches run 2 3 -opt ivon
matches poco 3 2 -opt poco -pst 1 -pp 1 -pmb 2  # anchor refreshed in steps 2 and 3

# 2. a grid of sample counts and temperatures, the CSVs and the PNGs
if $EVAL -c "$tmp/run" -b 4 -t 64 -m 1 -S 1,2 -tau 1e-12,0.5,2 -o "$tmp/g.csv" > "$tmp/grid.txt" 2>&1; then
  "$PY" - "$tmp/g.csv" "$tmp/g_bins.csv" > "$tmp/grid_check.txt" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
bins = list(csv.DictReader(open(sys.argv[2])))
nll = {(r["kind"], int(r["samples"]), float(r["tau"])): float(r["nll"]) for r in rows}
mean = nll[("mean", 0, 0.0)]
problems = []
if len(rows) != 7: problems.append("%d rows, want 7" % len(rows))
if len(bins) != 7 * 15: problems.append("%d bin rows, want 105" % len(bins))
if not (nll[("bma", 1, 0.5)] != nll[("bma", 1, 2.0)]): problems.append("tau 0.5 and 2 give the same NLL")
if abs(nll[("bma", 2, 1e-12)] - mean) > 1e-4: problems.append("tau 1e-12 is %.6f, mean %.6f" % (nll[("bma", 2, 1e-12)], mean))
for r in rows:
    acc = float(r["accuracy"]); ece = float(r["ece"])
    if not (0 <= acc <= 1 and 0 <= ece <= 1): problems.append("row %s out of [0, 1]" % r)
print("; ".join(problems) if problems else "ok")
EOF
  if [ "$(cat "$tmp/grid_check.txt")" = ok ]; then ok "grid -S 1,2 -tau 1e-12,0.5,2: 7 rows, 105 bin rows, tau reaches the samples, tau 1e-12 = mean"
  else bad "grid CSVs: $(cat "$tmp/grid_check.txt")"; fi
  if "$PY" scripts/plot_eval.py "$tmp/g.csv" --out "$tmp/png" > "$tmp/plot.txt" 2>&1 &&
     [ "$(head -c 4 "$tmp/png/nll_vs_samples.png" | tail -c 3)" = PNG ] &&
     [ "$(head -c 4 "$tmp/png/reliability.png" | tail -c 3)" = PNG ]; then
    ok "plot_eval.py: nll_vs_samples.png and reliability.png"
  else
    bad "plot_eval.py: $(tail -n 2 "$tmp/plot.txt")"
  fi
else
  bad "eval_gpt2 grid exited non-zero"; tail -n 3 "$tmp/grid.txt"
fi

# 3. export, read back independently
m=$tmp/run/model_00000002.bin; s=$tmp/run/state_00000002.bin
if $EXPORT -c "$tmp/run" -od "$tmp/hf" -sigma 1 > "$tmp/x.txt" 2>&1 &&
   "$PY" dev/test/check_export.py --dir "$tmp/hf" --model "$m" --state "$s" > "$tmp/xc.txt" 2>&1; then
  ok "export -sigma 1: $(tail -n 1 "$tmp/xc.txt") (check_export.py: names, shapes, every tensor, config.json)"
else
  bad "export of the IVON checkpoint: $(grep -h 'FAIL\|error' "$tmp/x.txt" "$tmp/xc.txt" | head -n 3)"
fi
if $EXPORT -e ref/gpt2_d2.bin -od "$tmp/hfref" > "$tmp/xr.txt" 2>&1 &&
   "$PY" dev/test/check_export.py --dir "$tmp/hfref" --model ref/gpt2_d2.bin \
     --debug-state ref/gpt2_d2_debug_state.bin > "$tmp/xrc.txt" 2>&1 && grep -q '^OK   torch' "$tmp/xrc.txt"; then
  ok "export of ref/gpt2_d2.bin: $(grep '^OK   torch' "$tmp/xrc.txt" | cut -c6-)"
else
  bad "export of ref/gpt2_d2.bin: $(grep -h 'FAIL\|error\|note' "$tmp/xr.txt" "$tmp/xrc.txt" | head -n 3)"
fi
# the checker can fail: one float of the data flipped; sigma with another ess
cp -r "$tmp/hf" "$tmp/hf_bad"
"$PY" - "$tmp/hf_bad/model.safetensors" <<'EOF'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    f.seek(8 + n + 4 * 12345); x = struct.unpack("<f", f.read(4))[0]
    f.seek(8 + n + 4 * 12345); f.write(struct.pack("<f", x + 1.0))
EOF
if "$PY" dev/test/check_export.py --dir "$tmp/hf_bad" --model "$m" > "$tmp/bad1.txt" 2>&1; then
  bad "check_export.py passed a model.safetensors with a changed float"
else ok "check_export.py fails on a changed float ($(grep -m1 FAIL "$tmp/bad1.txt" | cut -c6-))"; fi
if $EXPORT -c "$tmp/run" -od "$tmp/hf_ess" -sigma 1 -ess 1000 > /dev/null 2>&1 &&
   ! "$PY" dev/test/check_export.py --dir "$tmp/hf_ess" --model "$m" --state "$s" > "$tmp/bad2.txt" 2>&1; then
  ok "check_export.py fails on sigma exported with -ess 1000 ($(grep -m1 FAIL "$tmp/bad2.txt" | cut -c6-))"
else bad "check_export.py passed sigma exported with another ess"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
