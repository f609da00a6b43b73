#!/usr/bin/env bash
# End-to-end checks of ./train_gpt2 on the Austen shards:
#  - a short d2 run lowers the val loss;
#  - checkpoint + resume reproduces an uninterrupted run bit for bit (model and state files);
#  - bad flags and bad files end with one error line naming the flag or file and exit 1.
set -u
cd "$(dirname "$0")/../.."
TRAIN=./train_gpt2
pass=0; fail=0
ok()  { echo "OK   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
common=(-e d2 -b 4 -t 64 -l 1e-3 -u 5 -s 0 -m 10 -seed 7)

# 1. loss goes down
if $TRAIN "${common[@]}" -x 40 -v 40 > "$tmp/run.txt" 2>&1; then
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

# 2. resume == never stopped (grad accumulation 2, checkpoints every 3 steps)
ckpt=(-x 6 -n 3 -d 512 -v 0)
$TRAIN "${common[@]}" "${ckpt[@]}" -o "$tmp/full" > "$tmp/full.txt" 2>&1 || bad "uninterrupted run failed"
$TRAIN "${common[@]}" -x 6 -n 3 -d 512 -v 0 -o "$tmp/part" > /dev/null 2>&1
# drop the step-6 checkpoint so that the resume starts from step 3
rm -f "$tmp/part/DONE_00000006" "$tmp/part/model_00000006.bin" "$tmp/part/state_00000006.bin"
$TRAIN "${common[@]}" "${ckpt[@]}" -o "$tmp/part" -y 1 > "$tmp/part.txt" 2>&1 || bad "resumed run failed"
if grep -q "resumed from" "$tmp/part.txt" && cmp -s "$tmp/full/model_00000006.bin" "$tmp/part/model_00000006.bin" \
   && cmp -s "$tmp/full/state_00000006.bin" "$tmp/part/state_00000006.bin"; then
  ok "resume from step 3 gives bitwise-equal model and optimizer state at step 6"
else
  bad "resumed run differs from the uninterrupted run"
fi
if diff <(grep '^step *[456]/' "$tmp/full.txt" | cut -d'|' -f1-3) <(grep '^step *[456]/' "$tmp/part.txt" | cut -d'|' -f1-3) > /dev/null; then
  ok "resumed run prints the same losses for steps 4-6"
else
  bad "resumed losses differ"
fi

# 3. bad input: exit 1 and one line naming the flag or file
expect_error() {  # expect_error "what" "pattern in message" args...
  local what=$1 pat=$2; shift 2
  out=$($TRAIN "$@" 2>&1); rc=$?
  if [ "$rc" -eq 1 ] && echo "$out" | grep -q -- "$pat"; then ok "$what"; else bad "$what (exit $rc): $(echo "$out" | tail -n 2)"; fi
}
printf 'garbage' > "$tmp/bad_model.bin"
head -c 2000 /dev/urandom > "$tmp/bad_shard.bin"
expect_error "unknown flag" "-zz" -zz 3
expect_error "non-numeric value" "-b" -b four
expect_error "out-of-range value" "-t" -t 0
expect_error "bad schedule" "-k" -k sometimes
expect_error "missing train file" "nonexistent_shard" -i "$tmp/nonexistent_shard.bin"
expect_error "bad shard magic" "bad_shard.bin" -i "$tmp/bad_shard.bin"
expect_error "truncated model file" "bad_model.bin" -e "$tmp/bad_model.bin"
expect_error "T beyond the model context" "-t" -e d2 -t 2048
expect_error "-d not a multiple of B*T" "-d" -e d2 -b 4 -t 64 -d 1000

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
