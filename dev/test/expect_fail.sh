#!/usr/bin/env bash
# Self-check that a test can fail: runs the given command (a test run on deliberately
# perturbed input) and passes only if it exits non-zero and reports at least one FAIL.
set -u
out=$("$@" 2>&1); rc=$?
echo "$out" | tail -n 5
# a sanitizer report (make test-asan) is a crash, not a detected perturbation
if echo "$out" | grep -qE "runtime error:|ERROR: [A-Za-z]+Sanitizer"; then
  echo "expect_fail: the test hit a sanitizer report (exit $rc)"
  echo "0 passed, 1 failed"
  exit 1
fi
if [ "$rc" -ne 0 ] && echo "$out" | grep -q "FAIL"; then
  echo "expect_fail: the test detected the perturbation (exit $rc)"
  echo "1 passed, 0 failed"
  exit 0
fi
echo "expect_fail: the test did NOT fail on perturbed input (exit $rc)"
echo "0 passed, 1 failed"
exit 1
