#!/usr/bin/env bash
# Runs every test suite, echoes their output, sums their closing `N passed, N failed` lines.
# Each argument is one suite command (a string run by bash). Exit 1 if any suite fails. Prints each suite's seconds
# when it ends and the slowest suites at the end.
set -u
total_pass=0; total_fail=0; bad_suites=(); times=(); t_all=$SECONDS
for cmd in "$@"; do
  echo "=== $cmd"
  t0=$SECONDS
  out=$(mktemp)
  bash -c "$cmd" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  times+=("$((SECONDS - t0)) s  $cmd")
  echo "=== $((SECONDS - t0)) s (total $((SECONDS - t_all)) s): $cmd"
  line=$(grep -E '^([A-Za-z_]+: )?[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
  rm -f "$out"
  if [ -z "$line" ]; then
    echo "=== suite printed no 'N passed, N failed' line: $cmd"
    total_fail=$((total_fail + 1)); bad_suites+=("$cmd")
    continue
  fi
  p=$(echo "$line" | sed -E 's/^([A-Za-z_]+: )?([0-9]+) passed, ([0-9]+) failed.*/\2/')
  f=$(echo "$line" | sed -E 's/^([A-Za-z_]+: )?([0-9]+) passed, ([0-9]+) failed.*/\3/')
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "=== suite exited $rc: $cmd"
    total_fail=$((total_fail + 1))
  fi
  if [ "$rc" -ne 0 ] || [ "$f" -ne 0 ]; then bad_suites+=("$cmd"); fi
done
echo
echo "=== seconds per suite, slowest first:"
printf '%s\n' "${times[@]}" | sort -rn | head -n 15
echo
for s in "${bad_suites[@]+"${bad_suites[@]}"}"; do echo "FAILED suite: $s"; done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ] && [ ${#bad_suites[@]} -eq 0 ]
