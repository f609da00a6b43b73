#!/usr/bin/env bash
# train_gpt2cu on the CPU backend (dev/cuda_cpu, `make cuda-cpu`), against itself and against the CPU trainer:
#  1. thread schedules: forward, reverse and shuffled thread orders inside every block (and blocks in reverse
#     order) give bitwise-identical runs (model, optimizer state, logged losses), bf16 and fp32; so do 1 and 2
#     OpenMP threads
#  2. the fp32 build against train_gpt2 on the same flags, with 2 micro-batches per step (the accumulation path of
#     gpt2_optimizer_step) and val losses, within compare_runs.py's default tolerance (4e-6 + 1e-4 |b| per element
#     of model and state, losses within 1.5e-4), except for up to 1000 weights within 3e-4: AdamW's
#     per-element normalization turns the rounding differences of a gradient that nearly cancels into a different
#     step (measured, d2, B=2, T=32, 4 steps: 14 of 7.0M weights outside, the largest 6.1e-5 = 0.1 lr)
#     and the same sampled text from the same weights (-l 0 -s 1 -g 16: the generation path, single-row softmax)
#  3. the step guard: a NaN injected into one step's gradient (IVON_TEST_NAN_STEP) skips that step, as the CPU
#     trainer does (the same tolerance against its run)
#  4. checkpoints across trainers: train_gpt2 to step 2, train_gpt2fp32cu resumes to step 4, train_gpt2 resumes to
#     step 6: equal to an uninterrupted train_gpt2 run within the tolerance (constant lr: -x differs between the
#     segments, and the cosine schedule depends on it)
#  5. IVON and IVON-PoCo(Mo) (anchor refreshes at steps 1 and 3, 2 micro-batches per step, BMA val): the fp32 build
#     against train_gpt2 within the same tolerance as 2. (measured, d2, B=2, T=32, 4 steps, -r 1e-2: ivon 150 of
#     7.0M weights outside, the largest 1.9e-5; poco 92, the largest 2.6e-5; every loss, val and BMA loss equal to
#     4 decimals); PoCo with the other switches (own theta_out noise, prox in the momentum, no momentum, clip of the
#     difference, mega-batch at m_out, linear gamma) too, up to 5000 weights outside (measured 1125, state 983)
#  6. the IVON/PoCo kernels under thread schedules: bf16 PoCo runs (the IVON update before the start step) bitwise
#     equal under forward and shuffled orders, for both switch sets
#  7. bit-exact resume (bf16): adamw (4 micro-batches per step: the fp32 gradient sum), ivon, poco runs stopped at
#     step 2 and resumed to step 4 = uninterrupted runs, bitwise; and a PoCo state handed over train_gpt2 -> train_gpt2fp32cu -> train_gpt2 (within the tolerance)
#  8. GELU fusion (-ge 0|1|2) with every recompute mode (-rc 0|1|2), 2 steps: fp32 all nine runs bitwise equal (the
#     backend's epilogue computes the kernels' GELU formulas in fp32 on the same values); bf16 -rc 2 bitwise equal to
#     -rc 1 at each -ge, -ge 0 -rc 1 to -ge 0 -rc 0, and -ge 1, 2 within FUSE_TOL of -ge 0 (the fused forward rounds
#     the pre-activation to bf16 once less, the fused backward the fcproj dinp; under -rc 1 the backward
#     recomputes fch_gelu from the bf16 fch, so the fcprojw gradient moves by a rounding)
# Every run has a time limit (RUN_TIMEOUT seconds), so a hang fails. Prints PASS/FAIL lines and `N passed, N failed`.
# TEST_FULL=1 (make test-full) runs every variant; by default (make test, CI) each section runs a subset: 1. bf16
# forward and shuffled orders, 5. ivon and poco, 6. poco, 7. adamw, ivon and the PoCo hand-over, 8. fp32 -ge/-rc
# 00 10 21 22 and bf16 00 01 10 20 21 22.
# Environment: CUDA_CPU_BIN (default build/cuda_cpu), TRAIN_BIN (default ./train_gpt2), PYTHON, TEST_FULL.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
PY=${PYTHON:-/usr/bin/python3}
BIN=${CUDA_CPU_BIN:-build/cuda_cpu}
CPU=${TRAIN_BIN:-./train_gpt2}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
FULL=${TEST_FULL:-0}
pass=0
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for f in "$BIN/train_gpt2cu" "$BIN/train_gpt2fp32cu" "$CPU" dev/data/austen/austen_train.bin; do
  [ -e "$f" ] || { echo "FAIL missing $f (make cuda-cpu train_gpt2 data)"; echo "0 passed, 1 failed"; exit 1; }
done

ok() { echo "PASS $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }

# d2, B=2, T=32, 2 micro-batches per step, val and checkpoints
BASE="-e d2 -b 2 -t 32 -d 128 -v 2 -m 2 -s 0 -seed 11"
# the two implementations: at most 1000 of 7.0M weights (1.4e-4) outside the elementwise tolerance, each within lr / 2
XTOL="--max-outside 1000 --outlier-atol 3e-4"
# bf16 -ge 1, 2 against -ge 0 (section 8), 2 AdamW steps at lr 6e-4: a rounding of a bf16 gradient that nearly cancels
# flips AdamW's normalized step, so many weights move by up to ~2 lr per step. Measured (d2, B=2, T=32): 201K-457K
# of 7.0M weights (6.6%) outside the default elementwise tolerance, the largest 1.78e-3 (3 lr); state 11K floats,
# 8.4e-5; losses within 3e-4. The losses and the count are what a wrong epilogue would move (test_gpt2.cu checks the
# gradients per tensor); the negative control (another seed) shows the comparison can fail.
FUSE_TOL="--max-outside 1000000 --outlier-atol 3.6e-3 --log-atol 6e-4"

# run <name> <binary> <flags...>: output in $tmp/<name>.out, checkpoints and main.log in $tmp/<name>
run() {
  local name=$1 bin=$2; shift 2
  # shellcheck disable=SC2086
  timeout "$RUN_TIMEOUT" "$bin" $BASE "$@" -o "$tmp/$name" > "$tmp/$name.out" 2>&1 && return 0
  echo "  $name failed (rc $?):"; tail -3 "$tmp/$name.out" | sed 's/^/    /'
  return 1
}
# same <what> <dir a> <dir b> <step> [compare_runs options]
same() {
  local what=$1 a=$2 b=$3 step=$4; shift 4
  if "$PY" dev/test/compare_runs.py "$tmp/$a" "$tmp/$b" "$step" "$@" > "$tmp/cmp.out" 2>&1; then
    ok "$what ($(grep -m1 -E 'max|identical' "$tmp/cmp.out" | tr -s ' '))"
  else
    bad "$what:"; sed 's/^/    /' "$tmp/cmp.out" | head -8
  fi
}

# 1. schedules and thread counts (bf16: all; fp32: one shuffled order)
precs="bf16 fp32" bf16_schedules="reverse shuffle:3"
[ "$FULL" = 1 ] || precs=bf16 bf16_schedules=shuffle:3
for prec in $precs; do
  bin="$BIN/train_gpt2cu" schedules=$bf16_schedules
  [ "$prec" = fp32 ] && bin="$BIN/train_gpt2fp32cu" schedules="shuffle:5"
  CUDA_CPU_SCHEDULE=forward run "$prec-fwd" "$bin" -x 3 -n 3 || bad "$prec forward run"
  for sch in $schedules; do
    if CUDA_CPU_SCHEDULE=$sch run "$prec-$sch" "$bin" -x 3 -n 3; then
      same "$prec: schedule $sch bitwise equal to forward" "$prec-fwd" "$prec-$sch" 3 --exact
    else
      bad "$prec schedule $sch run"
    fi
  done
done
if [ "$FULL" = 1 ]; then
  if OMP_NUM_THREADS=1 run bf16-omp1 "$BIN/train_gpt2cu" -x 3 -n 3; then
    same "bf16: 1 OpenMP thread bitwise equal to 2" bf16-fwd bf16-omp1 3 --exact
  else
    bad "bf16 1-thread run"
  fi
fi

# 2. fp32 build against the CPU trainer
if run cpu "$CPU" -x 4 -n 4 && run cu "$BIN/train_gpt2fp32cu" -x 4 -n 4; then
  same "train_gpt2fp32cu = train_gpt2 (2 micro-batches per step, 4 steps)" cpu cu 4 $XTOL
  # the classifier in chunks of 24 rows (a micro-batch has 64: chunks of 24, 24, 16; training, val and ECE paths)
  if IVON_TEST_CLASSIFIER_ROWS=24 run cu_chunks "$BIN/train_gpt2fp32cu" -x 4 -n 4; then
    same "train_gpt2fp32cu with 24-row classifier chunks = train_gpt2" cpu cu_chunks 4 $XTOL
  else
    bad "classifier chunk run"
  fi
  # negative control: another seed must fail the same comparison
  if run cpu_seed "$CPU" -x 4 -n 4 -seed 12; then
    same "negative control: another seed differs beyond the tolerance" cpu cpu_seed 4 $XTOL --expect-differ
  fi
else
  bad "trainer comparison runs"
fi
# the generation path (single-row softmax, also over 24-row chunks): text sampled after one step at lr 0, so that
# both trainers sample from the same weights (after training steps the models differ by AdamW-amplified roundings,
# and the sampled tokens with them); the probabilities agree to ~1e-6, the same seed gives the same tokens
sample() { awk '/^generating:/ {g = 1; next} /^---$/ {g = g == 1 ? 2 : 0; next} g == 2' "$tmp/$1.out"; }
if run gen_cpu "$CPU" -x 1 -l 0 -v 0 -s 1 -g 16 && run gen_cu "$BIN/train_gpt2fp32cu" -x 1 -l 0 -v 0 -s 1 -g 16 &&
   IVON_TEST_CLASSIFIER_ROWS=24 run gen_chunks "$BIN/train_gpt2fp32cu" -x 1 -l 0 -v 0 -s 1 -g 16; then
  if [ -n "$(sample gen_cu)" ] && [ "$(sample gen_cu)" = "$(sample gen_cpu)" ]; then
    ok "sampled text equal to train_gpt2's: $(sample gen_cu | head -c 60)"
  else
    bad "sampled text differs: '$(sample gen_cu | tr '\n' '|')' vs '$(sample gen_cpu | tr '\n' '|')'"
  fi
  [ "$(sample gen_chunks)" = "$(sample gen_cpu)" ] && ok "24-row classifier chunks: the same sampled text" ||
    bad "24-row classifier chunks: sampled text differs"
else
  bad "sampling runs"
fi

# 3. step guard: step 2 (as printed) gets a NaN gradient and is skipped
if IVON_TEST_NAN_STEP=2 run cpu_nan "$CPU" -x 4 -n 4 && IVON_TEST_NAN_STEP=2 run cu_nan "$BIN/train_gpt2fp32cu" -x 4 -n 4; then
  cu_skip=$(grep ' skip:' "$tmp/cu_nan/main.log" | cut -d' ' -f1-2)
  cpu_skip=$(grep ' skip:' "$tmp/cpu_nan/main.log" | cut -d' ' -f1-2)
  if [ "$cu_skip" = "s:2 skip:non-finite" ] && [ "$cu_skip" = "$cpu_skip" ]; then
    ok "NaN gradient: train_gpt2cu skips exactly that step, as train_gpt2 ($cu_skip)"
  else
    bad "NaN gradient: skip lines '$cu_skip' (train_gpt2: '$cpu_skip')"
  fi
  same "NaN-skip run = train_gpt2's" cpu_nan cu_nan 4 $XTOL
else
  bad "NaN-skip runs"
fi

# 4. checkpoints across trainers: CPU -> CUDA -> CPU
if run mix "$CPU" -x 2 -n 2 -k constant && run mix "$BIN/train_gpt2fp32cu" -x 4 -n 2 -k constant -y 1 &&
   run mix "$CPU" -x 6 -n 2 -k constant -y 1 && run uninterrupted "$CPU" -x 6 -n 2 -k constant; then
  same "train_gpt2 -> train_gpt2fp32cu -> train_gpt2 checkpoints = uninterrupted train_gpt2" uninterrupted mix 6 $XTOL
else
  bad "checkpoint hand-over runs"
fi

# 5. IVON and PoCo: fp32 build against the CPU trainer
IVON="-opt ivon -l -1 -r 1e-2"
POCO="-opt poco -l -1 -r 1e-2 -pst 1 -pp 2 -pmb 2 -bma 2"
POCO_ALT="$POCO -psn 0 -ppm 1 -pmo 0 -pce 0 -pmn 0 -pgs linear"
cfgs="ivon poco poco_alt"
[ "$FULL" = 1 ] || cfgs="ivon poco"
for cfg in $cfgs; do
  case $cfg in ivon) flags=$IVON ;; poco) flags=$POCO ;; *) flags=$POCO_ALT ;; esac
  # shellcheck disable=SC2086
  if run "cpu-$cfg" "$CPU" -x 4 -n 4 $flags && run "cu-$cfg" "$BIN/train_gpt2fp32cu" -x 4 -n 4 $flags; then
    # poco_alt (no momentum, proximal term in the momentum) amplifies the drift: measured 1125 of 7.0M weights and
    # 983 state floats outside, the largest 4.5e-5 (poco: 92, 2.6e-5)
    tol=$XTOL
    [ "$cfg" = poco_alt ] && tol="--max-outside 5000 --outlier-atol 3e-4"
    same "$cfg: train_gpt2fp32cu = train_gpt2 (2 micro-batches per step, 4 steps)" "cpu-$cfg" "cu-$cfg" 4 $tol
  else
    bad "$cfg trainer comparison runs"
  fi
done

# 6. the IVON/PoCo kernels under thread schedules (bf16)
cfgs="poco poco_alt"
[ "$FULL" = 1 ] || cfgs=poco
for cfg in $cfgs; do
  flags=$POCO
  [ "$cfg" = poco_alt ] && flags=$POCO_ALT
  # shellcheck disable=SC2086
  if CUDA_CPU_SCHEDULE=forward run "bf16-$cfg-fwd" "$BIN/train_gpt2cu" -x 3 -n 3 $flags &&
     CUDA_CPU_SCHEDULE=shuffle:7 run "bf16-$cfg-shuf" "$BIN/train_gpt2cu" -x 3 -n 3 $flags; then
    same "$cfg bf16: schedule shuffle:7 bitwise equal to forward" "bf16-$cfg-fwd" "bf16-$cfg-shuf" 3 --exact
  else
    bad "$cfg bf16 schedule runs"
  fi
done

# 7. resume: stopped at step 2, resumed to step 4 (constant lr: -x differs between the segments); AdamW over 4
# micro-batches (-d 256: its bf16 gradients summed in fp32, gpt2_grad_fold)
cfgs="adamw ivon poco"
[ "$FULL" = 1 ] || cfgs="adamw ivon"
for cfg in $cfgs; do
  case $cfg in adamw) flags="-k constant -d 256" ;; ivon) flags="$IVON -k constant" ;; *) flags="$POCO -k constant" ;; esac
  # shellcheck disable=SC2086
  if run "res-$cfg" "$BIN/train_gpt2cu" -x 2 -n 2 $flags && run "res-$cfg" "$BIN/train_gpt2cu" -x 4 -n 2 $flags -y 1 &&
     run "full-$cfg" "$BIN/train_gpt2cu" -x 4 -n 2 $flags; then
    same "$cfg bf16: resumed at step 2 bitwise equal to the uninterrupted run" "full-$cfg" "res-$cfg" 4 --exact
    if [ "$cfg" = adamw ]; then
      if grep -q 'memory: adamw 20 bytes per parameter.*+ fp32 gradient sum 4' "$tmp/full-adamw.out"; then
        ok "adamw bf16, 4 micro-batches: the fp32 gradient sum allocated (startup memory line)"
      else
        bad "adamw bf16, 4 micro-batches: no fp32 gradient sum in the memory line: $(grep -m1 'memory: adamw' "$tmp/full-adamw.out")"
      fi
    fi
  else
    bad "$cfg resume runs"
  fi
done
# shellcheck disable=SC2086
if run pmix "$CPU" -x 2 -n 2 $POCO -k constant && run pmix "$BIN/train_gpt2fp32cu" -x 4 -n 2 $POCO -k constant -y 1 &&
   run pmix "$CPU" -x 6 -n 2 $POCO -k constant -y 1 && run puninterrupted "$CPU" -x 6 -n 2 $POCO -k constant; then
  same "poco: train_gpt2 -> train_gpt2fp32cu -> train_gpt2 checkpoints = uninterrupted train_gpt2" puninterrupted pmix 6 $XTOL
else
  bad "poco checkpoint hand-over runs"
fi

# 8. gelu fusion x recompute: runs named by -ge and -rc
ge_fp32="00 01 02 10 11 12 20 21 22" ge_bf16="00 01 02 10 11 12 20 21 22"
[ "$FULL" = 1 ] || ge_fp32="00 10 21 22" ge_bf16="00 01 10 20 21 22"
for prec in fp32 bf16; do
  bin="$BIN/train_gpt2cu" list=$ge_bf16
  [ "$prec" = fp32 ] && bin="$BIN/train_gpt2fp32cu" list=$ge_fp32
  for gr in $list; do
    run "ge-$prec-$gr" "$bin" -x 2 -n 2 -ge "${gr:0:1}" -rc "${gr:1:1}" || bad "$prec -ge ${gr:0:1} -rc ${gr:1:1} run"
  done
done
for gr in $ge_fp32; do
  [ "$gr" = 00 ] || same "fp32: -ge ${gr:0:1} -rc ${gr:1:1} bitwise equal to -ge 0 -rc 0" ge-fp32-00 "ge-fp32-$gr" 2 --exact
done
for gr in $ge_bf16; do
  g=${gr:0:1} r=${gr:1:1}
  case $gr in
    00) ;;
    ?2) same "bf16: -ge $g -rc 2 bitwise equal to -ge $g -rc 1" "ge-bf16-${g}1" "ge-bf16-$gr" 2 --exact ;;
    01) same "bf16: -ge 0 -rc 1 bitwise equal to -ge 0 -rc 0" ge-bf16-00 ge-bf16-01 2 --exact ;;
    # shellcheck disable=SC2086
    *) same "bf16: -ge $g -rc $r = -ge 0 -rc 0 within the fusion tolerance" ge-bf16-00 "ge-bf16-$gr" 2 $FUSE_TOL ;;
  esac
done
if run ge-bf16-seed "$BIN/train_gpt2cu" -x 2 -n 2 -ge 0 -rc 0 -seed 12; then
  # shellcheck disable=SC2086
  same "negative control: another seed differs beyond the fusion tolerance" ge-bf16-00 ge-bf16-seed 2 $FUSE_TOL --expect-differ
else
  bad "bf16 seed run"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
