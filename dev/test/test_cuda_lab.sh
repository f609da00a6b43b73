#!/usr/bin/env bash
# The kernel lab (dev/cuda, doc/kernel_lab.md) on the CPU backend (`make cuda-lab-cpu`):
#  1. every program, bf16 and fp32 build, in validate mode: each version and block size against the CPU passes
#     of llmc/optim.h, bit for bit (the programs' own `N passed, N failed` lines are summed here)
#  2. the update programs (block reductions of the statistics) under a reversed and a shuffled thread order
#  3. self-check: with -p (one bit of every reference flipped) every program must fail
#  4. bad flags end with one error line and a non-zero exit
# Every run has a time limit (RUN_TIMEOUT seconds). Environment: LAB_BIN (default build/cuda_cpu/dev/cuda).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
BIN=${LAB_BIN:-build/cuda_cpu/dev/cuda}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
NAMES="adamw ivon_sample ivon_accumulate ivon_update poco_update"
pass=0
fail=0
ok() { echo "PASS $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# runs "$@", adds its closing counts; a non-zero exit or a missing line is one failure
counted() {
  local label=$1; shift
  timeout "$RUN_TIMEOUT" "$@" > "$out" 2>&1
  local rc=$? line
  line=$(grep -E '^[a-z_]+: [0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1)
  if [ -z "$line" ]; then tail -n 5 "$out"; bad "$label: no closing line (exit $rc)"; return; fi
  local p f
  p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\1/')
  f=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed/\2/')
  grep '^FAIL' "$out" | head -n 5
  echo "$label: $p passed, $f failed (exit $rc)"
  pass=$((pass + p)); fail=$((fail + f))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then bad "$label: exit $rc"; fi
}

for name in $NAMES; do
  for v in "" fp32; do
    b="$BIN/$name$v"
    [ -x "$b" ] || { bad "missing $b (make cuda-lab-cpu)"; continue; }
    counted "$name$v validate" "$b" validate
  done
done

for name in ivon_update poco_update; do
  for s in reverse shuffle:5; do counted "$name schedule $s" env CUDA_CPU_SCHEDULE=$s "$BIN/$name" validate -b 64; done
done

for name in $NAMES; do
  timeout "$RUN_TIMEOUT" "$BIN/$name" validate -p -b 128 > "$out" 2>&1
  rc=$?
  if [ "$rc" -ne 0 ] && grep -q "^FAIL" "$out" && grep -qE ": 0 passed, [1-9][0-9]* failed$" "$out"; then
    ok "$name -p: every comparison fails on the perturbed reference (exit $rc)"
  else
    tail -n 3 "$out"; bad "$name -p: the perturbed reference was not caught (exit $rc)"
  fi
done

expect_error() {  # expect_error WHAT ARGS...: exit != 0 and one `error:` line naming WHAT
  local what=$1; shift
  timeout "$RUN_TIMEOUT" "$BIN/ivon_sample" "$@" > "$out" 2>&1
  local rc=$?
  if [ "$rc" -ne 0 ] && grep -q "^error: .*$what" "$out"; then ok "ivon_sample $*: $(head -n 1 "$out")"
  else cat "$out"; bad "ivon_sample $*: expected an error naming '$what' (exit $rc)"; fi
}
expect_error "flag -b" -b 100
expect_error "flag -k" -k 5
expect_error "flag -n" -n 0
expect_error "flag -r" -r x
expect_error "unknown argument '--nope'" --nope

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
