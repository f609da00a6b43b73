#!/usr/bin/env bash
# Crash safety, rolling checkpoints and NaN/Inf skipping of ./train_gpt2 (d2, 2x32 tokens per step, 1 thread):
#  1. a run is killed with SIGKILL at many moments (after K printed steps, while a model file is being written, between the
#     state file and the DONE marker, widened by the test-only IVON_TEST_SAVE_SLEEP_MS), then restarted with -y 1
#     until it finishes: every restart resumes from the newest checkpoint with a DONE marker, and the final model and
#     state files equal an uninterrupted run's (cmp), for adamw and ivon; the ivon run keeps the last 2 checkpoints
#     (-nk 2) plus the majors (-nm 4), which is checked at the end;
#  2. files without a DONE marker and temporaries (orphans) do not confuse -y 1;
#  3. a NaN injected into the gradient (test-only IVON_TEST_NAN_STEP) skips the step: counted, logged, and the model
#     and optimizer state after it are bitwise those before it (adamw, ivon, and poco with the NaN in an anchor
#     refresh); NaNs in a row stop the run after -sx steps with exit 1.
set -u
cd "$(dirname "$0")/../.."
TRAIN=${TRAIN_BIN:-./train_gpt2}
export OMP_NUM_THREADS=1  # the same thread count for every run (bitwise comparisons), fast on a busy machine
pass=0; fail=0
ok()  { echo "OK   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
tmp=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
common=(-e d2 -b 2 -t 32 -x 12 -n 2 -v 0 -s 0 -seed 11)
STEPS=12

latest_done() {  # newest step with a DONE marker in $1, -1 if none
  local best=-1 f s
  for f in "$1"/DONE_????????; do
    [ -e "$f" ] || continue
    s=$((10#${f##*/DONE_}))
    [ "$s" -gt "$best" ] && best=$s
  done
  echo "$best"
}
body_eq() { cmp -s <(tail -c +1025 "$1") <(tail -c +1025 "$2"); }  # state files equal after the 1024-byte header
hdr_int() { od -An -t d4 -j $((4 * $2)) -N 4 "$1" | tr -d ' '; }  # int32 slot $2 of a header

# --- 1. SIGKILL at many moments, resume, compare ---------------------------------------------------------------
# kill modes: +K = once the run has printed K step lines (progress, not time, so that the kills spread over the
# run on a fast or a slow machine); "model" = while a model file is written (.tmp present);
# "state" = after a state file is complete but before its DONE marker; "startup" = before any checkpoint
crash_run() {  # crash_run name extra-args...
  local name=$1; shift
  local ref="$tmp/ref_$name" dir="$tmp/crash_$name"
  "$TRAIN" "${common[@]}" "$@" -o "$ref" > "$ref.txt" 2>&1 || { bad "$name: uninterrupted run failed"; return; }
  local modes=(+1 state +3 model state +2 startup model state +3 +2 model) kills=0 in_save=0 resumes=0 wrong=0 runs=0
  local m before t0 done_now rc
  for m in "${modes[@]}" finish; do
    before=$(latest_done "$dir")
    runs=$((runs + 1))
    touch "$tmp/stamp"
    # line-buffered stdout, so that the "resumed from" line survives the kill
    IVON_TEST_SAVE_SLEEP_MS=150 stdbuf -oL "$TRAIN" "${common[@]}" "$@" -o "$dir" -y 1 > "$tmp/run.txt" 2>&1 &
    pid=$!
    if [ "$m" != finish ]; then
      t0=$(date +%s%N)
      case $m in
        startup) sleep 0.05 ;;
        model) while kill -0 "$pid" 2>/dev/null && ! ls "$dir"/model_*.bin.tmp > /dev/null 2>&1; do sleep 0.005; done ;;
        state) while kill -0 "$pid" 2>/dev/null; do
                 done_now=$(latest_done "$dir")
                 [ -e "$dir/state_$(printf %08d $((done_now < 0 ? 2 : done_now + 2))).bin" ] && break
                 sleep 0.005
               done ;;
        +*) while kill -0 "$pid" 2>/dev/null && [ "$(grep -c '^step ' "$tmp/run.txt")" -lt "${m#+}" ]; do
              sleep 0.005
            done ;;
      esac
      kill -9 "$pid" 2>/dev/null && kills=$((kills + 1))
    fi
    wait "$pid" 2>/dev/null; rc=$?
    pid=""
    # a kill inside a save leaves files of a step without its marker, written by this run
    for f in "$dir"/model_*.bin* "$dir"/state_*.bin*; do
      [ -e "$f" ] && [ "$f" -nt "$tmp/stamp" ] || continue
      s=${f##*/}; s=${s#model_}; s=${s#state_}; s=${s%%.*}
      if [ ! -e "$dir/DONE_$s" ]; then in_save=$((in_save + 1)); break; fi
    done
    if [ "$before" -ge 0 ]; then
      if grep -q "resumed from $dir/state_$(printf %08d "$before").bin at step $before" "$tmp/run.txt"; then
        resumes=$((resumes + 1))
      elif grep -q -e "resumed from" -e "^step " "$tmp/run.txt"; then
        # (a run killed during its startup prints neither)
        wrong=$((wrong + 1)); echo "  $name: expected a resume from step $before: $(grep 'resumed from' "$tmp/run.txt")"
      fi
    fi
    [ "$m" = finish ] && [ "$rc" -ne 0 ] && bad "$name: the last run (no kill) exited $rc: $(tail -n 2 "$tmp/run.txt")"
  done
  if [ "$wrong" -eq 0 ] && [ "$resumes" -ge 5 ]; then
    ok "$name: $kills SIGKILLs ($in_save inside a save), $resumes restarts all resumed from the newest checkpoint with a DONE marker"
  else
    bad "$name: $resumes restarts resumed correctly, $wrong from the wrong checkpoint ($kills kills)"
  fi
  [ "$in_save" -ge 3 ] && ok "$name: $in_save kills left a checkpoint without its DONE marker, ignored by the resume" \
                       || bad "$name: only $in_save kills landed inside a save"
  local fin
  fin=$(printf %08d $STEPS)
  if cmp -s "$ref/model_$fin.bin" "$dir/model_$fin.bin" && cmp -s "$ref/state_$fin.bin" "$dir/state_$fin.bin"; then
    ok "$name: after $runs runs the final model and state files equal the uninterrupted run's (cmp)"
  else
    bad "$name: final files differ from the uninterrupted run"
  fi
}
crash_run adamw
crash_run ivon -opt ivon -l -1 -r 1e-2 -nk 2 -nm 4
marks=$(cd "$tmp/crash_ivon" && ls DONE_* | tr '\n' ' ')
others=$(cd "$tmp/crash_ivon" && ls | grep -v -E '^(DONE|model|state)_000000(04|08|10|12)(\.bin)?$|^main\.log$' | tr '\n' ' ')
if [ "$marks" = "DONE_00000004 DONE_00000008 DONE_00000010 DONE_00000012 " ] && [ -z "$others" ]; then
  ok "ivon -nk 2 -nm 4: left checkpoints 4, 8 (major), 10, 12 and no other file"
else
  bad "ivon -nk 2 -nm 4: markers '$marks', other files '$others'"
fi

# --- 2. orphans and temporaries do not confuse -y 1 ------------------------------------------------------------
o="$tmp/orphans"
cp -r "$tmp/ref_adamw" "$o"
head -c 5000 /dev/urandom > "$o/model_00000014.bin"        # newer files without a marker
head -c 5000 /dev/urandom > "$o/state_00000014.bin"
head -c 100 /dev/urandom > "$o/state_00000016.bin.tmp"
: > "$o/DONE_00000018.tmp"                                  # an interrupted marker write
"$TRAIN" "${common[@]}" -x 14 -o "$o" -y 1 > "$tmp/orph.txt" 2>&1; rc=$?
cp -r "$tmp/ref_adamw" "$tmp/ref14"  # the same resume without the orphans
"$TRAIN" "${common[@]}" -x 14 -o "$tmp/ref14" -y 1 > /dev/null 2>&1
if [ "$rc" -eq 0 ] && grep -q "resumed from $o/state_00000012.bin at step 12" "$tmp/orph.txt" \
   && cmp -s "$o/model_00000014.bin" "$tmp/ref14/model_00000014.bin" && cmp -s "$o/state_00000014.bin" "$tmp/ref14/state_00000014.bin"; then
  ok "orphan files of step 14 and temporaries ignored: resumed from 12, step 14 rewritten as without the orphans"
else
  bad "orphans: exit $rc, $(grep -m1 'resumed from' "$tmp/orph.txt")"
fi

# --- 3. NaN skip -----------------------------------------------------------------------------------------------
nan_check() {  # nan_check name nan_step args...: checkpoints every step, the NaN at step S (1-based)
  local name=$1 S=$2; shift 2
  local d="$tmp/nan_$name" prev cur
  IVON_TEST_NAN_STEP=$S "$TRAIN" -e d2 -b 2 -t 32 -x $((S + 1)) -n 1 -v 0 -s 0 -seed 11 "$@" -o "$d" > "$d.txt" 2>&1 \
    || { bad "$name: run with a NaN at step $S failed: $(tail -n 2 "$d.txt")"; return; }
  prev=$(printf %08d $((S - 1))); cur=$(printf %08d "$S")
  if cmp -s "$d/model_$prev.bin" "$d/model_$cur.bin" && body_eq "$d/state_$prev.bin" "$d/state_$cur.bin" \
     && ! cmp -s "$d/model_$cur.bin" "$d/model_$(printf %08d $((S + 1))).bin"; then
    ok "$name: step $S with a NaN gradient skipped: model and optimizer state after it bitwise equal those before; step $((S + 1)) updates again"
  else
    bad "$name: the state changed across the skipped step $S (or step $((S + 1)) did not update)"
  fi
  if grep -q "^step *$S/.*skipped (non-finite)" "$d.txt" && grep -q "^s:$S skip:non-finite .* row:1 total:1" "$d/main.log" \
     && [ "$(hdr_int "$d/state_$cur.bin" 67)" = 1 ] && grep -q "skipped steps: 1" "$d.txt"; then
    ok "$name: the skip is printed, logged in main.log and counted in the state file"
  else
    bad "$name: skip not reported as expected"
  fi
}
nan_check adamw 3
nan_check ivon 3 -opt ivon -l -1 -r 1e-2 -d 128
# anchor refreshes before steps 2 and 4 (1-based 3): the NaN hits the mega-batch of the second refresh
nan_check poco 4 -opt poco -l -1 -r 1e-2 -pst 1 -pp 2 -pmb 2
if grep -q "^step *4/.*anchor refreshed" "$tmp/nan_poco.txt"; then
  bad "poco: the failed refresh was reported as done"
else
  ok "poco: the anchor refresh with a NaN kept the previous anchor (state incl. anchor buffers unchanged)"
fi

d="$tmp/nan_row"
IVON_TEST_NAN_STEP=3:10 "$TRAIN" -e d2 -b 2 -t 32 -x 20 -v 0 -s 0 -sx 4 -o "$d" > "$d.txt" 2> "$d.err"; rc=$?
if [ "$rc" -eq 1 ] && grep -q "^error: 4 consecutive optimizer steps skipped (last: step 6, non-finite); stopping (flag -sx)" "$d.err" \
   && [ "$(grep -c 'skip:non-finite' "$d/main.log")" -eq 4 ] && ! grep -q "^step *7/" "$d.txt"; then
  ok "NaNs at steps 3.. stop the run after -sx 4 skipped steps in a row with exit 1"
else
  bad "consecutive NaNs: exit $rc, $(cat "$d.err")"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
