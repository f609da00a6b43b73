#!/usr/bin/env bash
# Tests of scripts/make_table.py and scripts/plot_logs.py on small synthetic main.log files in a temp dir:
# the table's means and sample stds of known values, the choice of the step (largest common val step, --step),
# resumed logs (the later line of a step wins), partial keys ("k of n"), the error exits (group without runs,
# missing step, empty log, missing file, dir without main.log), and the PNG files plot_logs.py writes.
# Ends with `N passed, N failed`; exit 1 on any failure.
set -u
cd "$(dirname "$0")/../.." || exit 1
PYTHON=${PYTHON:-/usr/bin/python3}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "ok: $1"; }
bad() { fail=$((fail + 1)); echo "FAIL: $1"; }
# check NAME FILE STRING: FILE contains STRING (fixed string)
check() { if grep -qF -- "$3" "$2"; then ok "$1"; else bad "$1: '$3' not in output:"; sed 's/^/    /' "$2"; fi; }
# fails NAME CMD...: exit status 1 and exactly one line starting with error:, on stderr
fails() {
  local name=$1; shift
  "$@" > "$TMP/out" 2> "$TMP/err"; local rc=$?
  local n; n=$(grep -c '^error:' "$TMP/err")
  if [ "$rc" -eq 1 ] && [ "$n" -eq 1 ] && [ "$(wc -l < "$TMP/err")" -eq 1 ]; then ok "$name ($(cat "$TMP/err"))"
  else bad "$name: rc $rc, $n error lines:"; sed 's/^/    /' "$TMP/err"; fi
}

# a run log: steps 1..100 (train loss 6 - s/100 + the run's final offset), val lines at 0, 50, 100
# mklog DIR TEL100 TRL100 [extra key:values of the step-100 val line] [more lines appended]
mklog() {
  local dir=$1 tel=$2 trl=$3 extra=${4:-}
  mkdir -p "$dir"
  {
    echo "s:0 tel:10.9000"
    for s in $(seq 1 99); do
      echo "s:$s trl:$(awk -v s="$s" 'BEGIN { printf "%.4f", 6 - s / 100 }') lr:0.001 norm:1.0 ms:500.0 tok/s:2048"
    done
    echo "s:50 tel:7.0000"
    echo "s:100 trl:$trl lr:0 norm:1.0 ms:500.0 tok/s:2048"
    echo "s:100 tel:$tel $extra"
  } > "$dir/main.log"
}

# group a: val 5.0 / 5.1 / 5.2, train 5.5 / 5.6 / 5.7 at step 100
mklog "$TMP/runs/a_seed1" 5.0000 5.5000
mklog "$TMP/runs/a_seed2" 5.1000 5.6000
mklog "$TMP/runs/a_seed3" 5.2000 5.7000
# group b: IVON-like, val 4.0 / 4.2 with bma 3.9 / 4.1, ece 0.02 / 0.04, bece in one run only; run 1 resumed:
# a first val line of step 100 (9.9) comes before the final one; run 2 has one more val step (150) than the others
mklog "$TMP/runs/b_seed1" 9.9000 5.0000 "bma:9.9000"
cat >> "$TMP/runs/b_seed1/main.log" <<'EOF'
s:100 tel:4.0000 bma:3.9000 ece:0.0200 bece:0.0100
s:100 h01:1.0e-03 h50:1.1e-03 h99:1.3e-03 sig01:3.0e-02 sig50:3.3e-02 sig99:3.4e-02 clip:0.50000 dm:1.0e-04
EOF
mklog "$TMP/runs/b_seed2" 4.2000 5.2000 "bma:4.1000 ece:0.0400"
cat >> "$TMP/runs/b_seed2/main.log" <<'EOF'
s:150 trl:4.0000 lr:0 norm:1.0 ms:500.0 tok/s:2048 tok:1024 mega:4096
s:150 tel:3.0000 bma:2.9000
EOF
# a PoCo-like log with tok: and mega: keys and diagnostics
mkdir -p "$TMP/runs/poco"
{
  echo "s:0 tel:10.9 bma:10.95"
  echo "s:0 h01:1e-3 h50:1e-3 h99:1e-3 sig01:3e-2 sig50:3e-2 sig99:3e-2 clip:0 dm:0"
  for s in $(seq 1 20); do echo "s:$s trl:$((20 - s / 2)).5 lr:300 norm:3 ms:900.0 tok/s:1138 tok:1024 mega:$(( s > 10 ? 5120 : 0 ))"; done
  echo "s:20 tel:8.5 bma:8.4 ece:0.1 bece:0.05"
  echo "s:20 h01:9e-4 h50:1e-3 h99:1.1e-3 sig01:3e-2 sig50:3.1e-2 sig99:3.2e-2 clip:0.8 dm:2e-6"
  echo "s:20 skip:nonfinite loss:nan norm:nan zl:nan zn:nan row:1 total:1"
} > "$TMP/runs/poco/main.log"
: > "$TMP/empty.log"
mkdir -p "$TMP/nolog" "$TMP/junk"
printf 'hello\nstep 1 loss 3\ns:x trl:1\n' > "$TMP/junk/main.log"

MT=("$PYTHON" scripts/make_table.py)
PL=("$PYTHON" scripts/plot_logs.py)

# --- make_table: numbers
"${MT[@]}" --group "a=$TMP/runs/a_seed*" --group "b=$TMP/runs/b_seed*" --out "$TMP/table.md" > "$TMP/t1" 2> "$TMP/e1"
rc=$?
if [ $rc -eq 0 ]; then ok "make_table exits 0"; else bad "make_table exit $rc: $(cat "$TMP/e1")"; fi
check "default step = largest common val step (100, not 150)" "$TMP/t1" "Val at step 100"
check "group a: 3 runs, val 5.1 ± 0.1 (sample std)" "$TMP/t1" "| a | 3 | 5.1000 ± 0.1000 |"
check "group a: ppl mean ± sample std of exp(loss)" "$TMP/t1" "| 164.57 ± 16.44 |"
check "group a: no BMA/ECE: dashes; train loss 5.6 ± 0.1" "$TMP/t1" "| — | — | — | 5.6000 ± 0.1000 |"
check "group b: later line of a resumed step wins (4.0, 4.2)" "$TMP/t1" "| b | 2 | 4.1000 ± 0.1414 | 60.64 ± 8.55 |"
check "group b: BMA 4.0 ± 0.1414, ECE 0.03 ± 0.0141, BMA ECE in 1 of 2" "$TMP/t1" \
  "| 4.0000 ± 0.1414 | 0.0300 ± 0.0141 | 0.0100 (1 of 2) | 5.1000 ± 0.1414 |"
check "the caption says sample std" "$TMP/t1" "sample std"
if cmp -s "$TMP/t1" "$TMP/table.md"; then ok "--out writes the printed table"; else bad "--out file differs from stdout"; fi

"${MT[@]}" --group "b=$TMP/runs/b_seed2" --group "p=$TMP/runs/poco" > "$TMP/t2" 2>&1
check "common step of runs with different val steps (0, 20 vs 0, 50, 100, 150) is 0" "$TMP/t2" "Val at step 0"
"${MT[@]}" --group "a=$TMP/runs/a_seed*" --step 50 > "$TMP/t3" 2>&1
check "--step 50 picks the step-50 val lines" "$TMP/t3" "| a | 3 | 7.0000 ± 0.0000 |"
"${MT[@]}" --group "a=$TMP/runs/a_seed1" --group "a=$TMP/runs/a_seed3" > "$TMP/t4" 2>&1
check "a repeated group name adds runs (5.0, 5.2)" "$TMP/t4" "| a | 2 | 5.1000 ± 0.1414 |"
"${MT[@]}" --group "a=$TMP/runs/a_seed1" > "$TMP/t5" 2>&1
check "one run: the mean alone" "$TMP/t5" "| a | 1 | 5.0000 | 148.41 |"
"${MT[@]}" --group "a=$TMP/runs/a_seed*" --train-avg 2 > "$TMP/t6" 2>&1
# runs: mean(5.01, 5.5)=5.255, mean(5.01, 5.6)=5.305, mean(5.01, 5.7)=5.355
check "--train-avg 2 averages the step lines 99..100" "$TMP/t6" "5.3050 ± 0.0500 |"
"${MT[@]}" --group "a=$TMP/runs/a_seed*" --format tsv > "$TMP/t7" 2>&1
check "tsv: raw mean and std" "$TMP/t7" $'a\t3\t100\t5.1'
"${MT[@]}" --group "a=$TMP/runs/a_seed*" --group "b=$TMP/runs/b_seed*" --best --paired a > "$TMP/t8" 2>&1
# best val up to step 100: a 5.0/5.1/5.2 (the step-0/50 lines are higher); b 4.0/4.2 (150 is after the step)
check "--best: lowest val loss up to the step" "$TMP/t8" "| 5.1000 ± 0.1000 | — | — | — |"
# paired b - a by seed: 4.0 - 5.0 = -1.0, 4.2 - 5.1 = -0.9; BMA: a has none
check "--paired: per-seed differences (-1.0, -0.9)" "$TMP/t8" "| -0.9500 ± 0.0707 | — |"
check "--paired: REF row and caption" "$TMP/t8" "Δ = paired difference to a"

# --- make_table: errors
fails "make_table: --paired names no group" "${MT[@]}" --group "a=$TMP/runs/a_seed*" --paired zz
fails "make_table: group glob matching nothing" "${MT[@]}" --group "a=$TMP/runs/zzz*"
fails "make_table: a run without the step" "${MT[@]}" --group "a=$TMP/runs/a_seed*" --step 75
fails "make_table: empty log" "${MT[@]}" --group "e=$TMP/empty.log"
fails "make_table: log without a parsable line" "${MT[@]}" --group "j=$TMP/junk"
fails "make_table: dir without main.log" "${MT[@]}" --group "n=$TMP/nolog"
fails "make_table: --group without =" "${MT[@]}" --group "abc"
fails "make_table: no --group" "${MT[@]}"

# --- plot_logs
"${PL[@]}" "$TMP/runs/a_seed1" "$TMP/runs/b_seed1/main.log" "$TMP/runs/poco" --out "$TMP/plots" > "$TMP/p1" 2>&1
rc=$?
if [ $rc -eq 0 ]; then ok "plot_logs exits 0"; else bad "plot_logs exit $rc:"; sed 's/^/    /' "$TMP/p1"; fi
for f in loss_vs_step loss_vs_tokens loss_vs_tokens_mega bma_vs_mean calibration diagnostics; do
  if [ -s "$TMP/plots/$f.png" ] && [ "$(head -c 8 "$TMP/plots/$f.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; then
    ok "plot_logs wrote $f.png (a PNG)"
  else bad "plot_logs: $f.png missing or not a PNG"; fi
done
check "tokens per step estimated from tok/s x ms / 1000 (2048 x 0.5 = 1024)" "$TMP/p1" \
  "note: a_seed1: no tok: key; tokens per step estimated as 1024"
if grep -q "note: poco: no tok" "$TMP/p1"; then bad "plot_logs estimated tokens of a log with tok:"; else ok "tok: key preferred"; fi
"${PL[@]}" "$TMP/runs/a_seed1" --out "$TMP/plots2" --no-count-mega --tokens-per-step 512 > "$TMP/p2" 2>&1
if [ -s "$TMP/plots2/loss_vs_step.png" ] && [ -s "$TMP/plots2/loss_vs_tokens.png" ] && \
   [ ! -e "$TMP/plots2/loss_vs_tokens_mega.png" ] && [ ! -e "$TMP/plots2/bma_vs_mean.png" ] && \
   [ ! -e "$TMP/plots2/diagnostics.png" ]; then
  ok "--no-count-mega and a run without bma/diagnostics: only the loss plots"
else bad "plot_logs --no-count-mega wrote: $(ls "$TMP/plots2")"; fi
if grep -q "estimated" "$TMP/p2"; then bad "--tokens-per-step did not replace the estimate"; else ok "--tokens-per-step used"; fi
# token axis: the parsed series (step -> tokens, mega) of the PoCo log
$PYTHON - "$TMP/runs/poco/main.log" > "$TMP/p3" 2>&1 <<'EOF'
import sys
sys.path.insert(0, "scripts")
from plot_logs import Series
from make_table import parse_log
se = Series(parse_log(sys.argv[1]), None)
print("tokens20", se.tokens[20], "mega20", se.mega[20], "mega10", se.mega[10], "x", se.x_tokens([20], True)[0])
EOF
check "token axis: 20 steps x 1024 tokens, + 5120 mega-batch tokens" "$TMP/p3" \
  "tokens20 20480.0 mega20 5120.0 mega10 0.0 x 25600.0"

# --- plot_logs: errors
fails "plot_logs: missing file" "${PL[@]}" "$TMP/nope/main.log" --out "$TMP/p"
fails "plot_logs: empty log" "${PL[@]}" "$TMP/empty.log" --out "$TMP/p"
fails "plot_logs: dir without main.log" "${PL[@]}" "$TMP/nolog" --out "$TMP/p"
fails "plot_logs: --tokens-per-step 0" "${PL[@]}" "$TMP/runs/a_seed1" --out "$TMP/p" --tokens-per-step 0

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
