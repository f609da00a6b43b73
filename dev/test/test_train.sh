#!/usr/bin/env bash
# End-to-end checks of ./train_gpt2 on the Austen shards:
#  - a short d2 run lowers the val loss (AdamW; IVON and IVON-PoCo with the invariant-checking build);
#  - checkpoint + resume reproduces an uninterrupted run bit for bit (model and state files) for adamw, ivon and
#    poco (anchor refreshes before and after the resume point), with gradient accumulation 2.
# Bad flags and files: dev/test/test_bad_inputs.sh; crashes, rolling checkpoints, NaN skips: test_crash_resume.sh.
# TEST_TRAIN_SHORT=1 (make test-asan): B=2, T=32 and 2 val batches, the learning runs shortened to 6 steps (the
# invariant-checking build must still run them clean; no loss-drop threshold) and the 40-step AdamW run left out:
# the same code under the sanitizers in a fraction of the time.
set -u
cd "$(dirname "$0")/../.."
TRAIN=${TRAIN_BIN:-./train_gpt2}  # the sanitizer run (make test-asan) sets build/asan/train_gpt2
CHECKS=${CHECKS:-dev/test/bin/train_gpt2_checks}  # built with -DIVON_CHECKS (make train_gpt2_checks)
pass=0; fail=0
ok()  { echo "OK   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
SHORT=${TEST_TRAIN_SHORT:-0}
# d2, B=4, T=64 (TEST_TRAIN_SHORT=1: B=2, T=32, 2 val batches); accum: 2 micro-batches per step for the resume checks
shape=(-e d2 -b 4 -t 64) val_batches=10 accum=512
[ "$SHORT" = 1 ] && shape=(-e d2 -b 2 -t 32) val_batches=2 accum=128
common=("${shape[@]}" -l 1e-3 -u 5 -s 0 -m "$val_batches" -seed 7)

# 1. loss goes down
if [ "$SHORT" = 1 ]; then
  echo "(TEST_TRAIN_SHORT=1: the 40-step AdamW run left out)"
elif $TRAIN "${common[@]}" -x 40 -v 40 > "$tmp/run.txt" 2>&1; then
  first=$(grep -m1 ': val loss' "$tmp/run.txt" | awk '{print $NF}')
  last=$(grep ': val loss' "$tmp/run.txt" | tail -n1 | awk '{print $NF}')
  if awk -v a="$first" -v b="$last" 'BEGIN{exit !(b < a - 1.0)}'; then
    ok "40 d2 steps lower val loss by > 1.0 ($first -> $last)"
  else
    bad "val loss did not fall enough ($first -> $last)"
  fi
else
  bad "training run exited non-zero"; tail -n 5 "$tmp/run.txt"
fi

# 1a. the AdamW settings -ab1 -ab2 -ae reach the update: each changes the step-3 loss, the defaults spelled out do not
adamw_loss3() { $TRAIN "${shape[@]}" -x 3 -v 0 -s 0 "$@" 2>&1 | awk '/^step +3\/3/ {print $5}'; }
l_def=$(adamw_loss3)
l_same=$(adamw_loss3 -ab1 0.9 -ab2 0.95 -ae 1e-8)
l_b1=$(adamw_loss3 -ab1 0.5); l_b2=$(adamw_loss3 -ab2 0.999); l_eps=$(adamw_loss3 -ae 1e-3)
if [ -n "$l_def" ] && [ "$l_def" = "$l_same" ] && [ "$l_b1" != "$l_def" ] && [ "$l_b2" != "$l_def" ] &&
   [ -n "$l_eps" ] && [ "$l_eps" != "$l_def" ]; then
  ok "-ab1 -ab2 -ae change the AdamW step (loss 3: $l_def default, $l_b1, $l_b2, $l_eps)"
else
  bad "AdamW flags: loss 3 default '$l_def', defaults spelled out '$l_same', -ab1 '$l_b1', -ab2 '$l_b2', -ae '$l_eps'"
fi

# 1b. IVON and IVON-PoCo learn. The default clip radius -r 1e-3 limits a coordinate to lr_eff * r = 3e-4 per
# step, too slow for 40 steps (val 10.83 -> 9.58 with -ess 1e8); -r 1e-2 learns with the default ess (= train tokens).
# Built with the invariant checks: any violation of h + delta > 0, (h' + delta) >= (h + delta) / 2, finite sigma or
# |dm| <= lr_eff r ends the run with an error.
learns() {  # learns "name" min_drop args...
  local name=$1 drop=$2; shift 2
  if [ ! -x "$CHECKS" ]; then bad "$name: $CHECKS is not built"; return; fi
  if [ "$SHORT" = 1 ]; then
    # shellcheck disable=SC2015
    $CHECKS "${common[@]}" "$@" -x 6 -v 6 -pst 2 -pp 2 -pmb 2 > "$tmp/$name.txt" 2>&1 &&
      ok "$name: 6 steps, invariants held every step (TEST_TRAIN_SHORT=1)" ||
      { bad "$name: short run exited non-zero"; tail -n 3 "$tmp/$name.txt"; }
    return
  fi
  if $CHECKS "${common[@]}" "$@" > "$tmp/$name.txt" 2>&1; then
    first=$(grep -m1 ': val loss' "$tmp/$name.txt" | awk '{print $5}')
    last=$(grep ': val loss' "$tmp/$name.txt" | tail -n1 | awk '{print $5}')
    bma=$(grep ': val loss' "$tmp/$name.txt" | tail -n1 | awk '{print $NF}')
    if awk -v a="$first" -v b="$last" -v d="$drop" -v c="$bma" 'BEGIN{exit !(b < a - d && c > 0 && c < a)}'; then
      ok "$name: val loss $first -> $last (> $drop lower; bma $bma), invariants held every step"
    else
      bad "$name: val loss did not fall enough ($first -> $last, bma $bma)"
    fi
  else
    bad "$name: training run exited non-zero"; tail -n 3 "$tmp/$name.txt"
  fi
}
learns ivon 2.0 -opt ivon -l -1 -r 1e-2 -x 40 -v 40
learns poco 2.0 -opt poco -l -1 -r 1e-2 -x 30 -v 30 -pst 15 -pp 8 -pmb 4 -bma 2

# 2. resume == never stopped (grad accumulation 2, checkpoints every 3 steps), per optimizer
resume_check() {  # resume_check name args...
  local name=$1; shift
  local ckpt=(-x 6 -n 3 -d "$accum" -v 0)
  local full="$tmp/full_$name" part="$tmp/part_$name"
  $TRAIN "${common[@]}" "${ckpt[@]}" "$@" -o "$full" > "$full.txt" 2>&1 || bad "$name: uninterrupted run failed"
  $TRAIN "${common[@]}" "${ckpt[@]}" "$@" -o "$part" > /dev/null 2>&1
  # drop the step-6 checkpoint so that the resume starts from step 3
  rm -f "$part/DONE_00000006" "$part/model_00000006.bin" "$part/state_00000006.bin"
  $TRAIN "${common[@]}" "${ckpt[@]}" "$@" -o "$part" -y 1 > "$part.txt" 2>&1 || bad "$name: resumed run failed"
  if grep -q "resumed from" "$part.txt" && cmp -s "$full/model_00000006.bin" "$part/model_00000006.bin" \
     && cmp -s "$full/state_00000006.bin" "$part/state_00000006.bin"; then
    ok "$name: resume from step 3 gives bitwise-equal model and optimizer state at step 6"
  else
    bad "$name: resumed run differs from the uninterrupted run"
  fi
  if diff <(grep '^step *[456]/' "$full.txt" | cut -d'|' -f1-3) <(grep '^step *[456]/' "$part.txt" | cut -d'|' -f1-3) > /dev/null \
     && [ "$(grep -c '^step *[456]/' "$part.txt")" -eq 3 ]; then
    ok "$name: resumed run prints the same losses for steps 4-6"
  else
    bad "$name: resumed losses differ"
  fi
}
resume_check adamw
resume_check ivon -opt ivon -l -1 -r 1e-2
# anchor refreshes before steps 1 and 4: one before and one after the resume point 3
resume_check poco -opt poco -l -1 -r 1e-2 -pst 1 -pp 3 -pmb 2
if grep -q "anchor refreshed" "$tmp/part_poco.txt" && [ "$(grep -c 'anchor refreshed' "$tmp/full_poco.txt")" -eq 2 ]; then
  ok "poco: anchor refreshes at steps 1 and 4 (the resumed run refreshes after the resume point)"
else
  bad "poco: expected anchor refreshes at steps 1 and 4"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
