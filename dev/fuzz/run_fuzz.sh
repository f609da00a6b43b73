#!/usr/bin/env bash
# Runs the fuzz harnesses (build/fuzz/fuzz_<name>, `make fuzz-build`): first every saved input under
# dev/fuzz/regressions/<name>/ (a crash found once, fixed since: it must stay fixed), then, for SECONDS > 0,
# a libFuzzer campaign of SECONDS on the corpus build/fuzz/corpus/<name> seeded from build/fuzz/seeds/<name>
# (`make fuzz-seeds`). A crash, sanitizer report, leak, timeout or out-of-memory fails; the input is kept under
# build/fuzz/crashes/<name>/. Prints OK/FAIL lines and `N passed, N failed`; exits 1 on any failure.
# Usage: dev/fuzz/run_fuzz.sh SECONDS [name ...]    (names default to all harnesses)
set -u
cd "$(dirname "$0")/../.."
secs=${1:?usage: run_fuzz.sh SECONDS [name ...]}; shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(shard model state tokenizer cli)
FUZZ=build/fuzz
MAX_LEN=${FUZZ_MAX_LEN:-4096}
pass=0; fail=0
ok()  { echo "OK   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
mkdir -p "$FUZZ/logs"
for h in "${names[@]}"; do
  bin=$FUZZ/fuzz_$h
  if [ ! -x "$bin" ]; then bad "$h: $bin is not built (make fuzz-build)"; continue; fi
  regs=()
  [ -d "dev/fuzz/regressions/$h" ] && while IFS= read -r f; do regs+=("$f"); done \
    < <(find "dev/fuzz/regressions/$h" -type f ! -name '*.md' | sort)
  if [ ${#regs[@]} -gt 0 ]; then
    if "$bin" "${regs[@]}" > "$FUZZ/logs/${h}_regress.log" 2>&1; then
      ok "$h: ${#regs[@]} regression inputs replay without a crash"
    else
      bad "$h: a regression input crashes again (log $FUZZ/logs/${h}_regress.log)"; tail -n 30 "$FUZZ/logs/${h}_regress.log"
    fi
  fi
  [ "$secs" -gt 0 ] || continue
  mkdir -p "$FUZZ/corpus/$h" "$FUZZ/crashes/$h" "$FUZZ/seeds/$h"
  log=$FUZZ/logs/$h.log
  "$bin" -max_total_time="$secs" -max_len="$MAX_LEN" -timeout=10 -rss_limit_mb=2048 -close_fd_mask=3 \
    -print_final_stats=1 -artifact_prefix="$FUZZ/crashes/$h/" "$FUZZ/corpus/$h" "$FUZZ/seeds/$h" > "$log" 2>&1
  rc=$?
  runs=$(grep -m1 '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | grep -oE 'cov: [0-9]+' || true)
  if [ "$rc" -eq 0 ]; then
    ok "$h: ${runs:-?} inputs in ${secs} s, ${cov:-cov ?}, corpus $(ls "$FUZZ/corpus/$h" | wc -l) files, no crash"
  else
    crash=$(grep -oE "Test unit written to [^ ]+" "$log" | tail -n 1 | sed 's/Test unit written to //')
    bad "$h: libFuzzer exit $rc, input ${crash:-?} (log $log); once fixed, keep it under dev/fuzz/regressions/$h/"
    grep -E "ERROR|runtime error|SUMMARY|fuzz:" "$log" | head -n 20
  fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
