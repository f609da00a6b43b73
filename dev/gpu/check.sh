#!/usr/bin/env bash
# One-command GPU check (make gpu-check): on an H100/H200 with the CUDA toolkit (and PyTorch, for its NCCL when the
# system has none), no network:
#  1. builds train_gpt2cu, test_gpt2cu, build/cuda/test_gpt2fp32cu and the kernel lab (parallel make)
#  2. the CUDA tests against the PyTorch reference files: test_gpt2cu and test_gpt2fp32cu on ref/gpt2_d2.bin +
#     ref/gpt2_d2_debug_state.bin, then with --opt on ref/gpt2_d2_{ivon,poco,poco_alt}_state.bin ("not available in
#     this build" while test_gpt2cu has no --opt)
#  3. the kernel lab (dev/cuda): every program in validate mode, then the bf16 builds in bench mode (n = 124M)
#  4. train_gpt2cu GPT-2 124M (d12), T=1024, the largest micro-batch of 64, 32, 16, 8 that fits, -opt adamw, ivon,
#     poco: tok/s and MFU (the trainer's average iteration time and mfu lines, first step left out), the IVON/PoCo
#     step time over AdamW's, peak GPU memory (nvidia-smi, polled), bytes per parameter (the trainer's memory line).
#     ivon/poco are first probed with a 1-step d2 run: "not available in this build" when it fails.
# Writes one Markdown report to $OUT/gpu_check.md when OUT is set, else build/gpu_check.md; logs in
# build/gpu_check/. Every step runs under `timeout`, capped by what is left of the budget (GPU_CHECK_BUDGET seconds,
# default 470), so one hang cannot eat the rest. Ends with `N passed, N failed`; exit 1 on a failed test or build.
# --cpu-backend (or GPU_CHECK_CPU=1): the same steps on the CPU backend (build/cuda_cpu binaries, make test's run
# of this script) at tiny sizes: d2, the small debug state, one --opt state (fp32), two lab programs, lab bench at
# n = 20000, trainer d2 B=2 T=32 3 steps.
# Needs the git-ignored ref/ files and dev/data/austen/ (a synthetic token shard is written when the data is absent).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

CPU=${GPU_CHECK_CPU:-0}
for a in "$@"; do
  case "$a" in
    --cpu-backend) CPU=1 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: dev/gpu/check.sh: unknown argument '$a' (--cpu-backend, --help)" >&2; exit 1 ;;
  esac
done
[ "$CPU" = 0 ] || [ "$CPU" = 1 ] || { echo "error: dev/gpu/check.sh: GPU_CHECK_CPU must be 0 or 1, not '$CPU'" >&2; exit 1; }
BUDGET=${GPU_CHECK_BUDGET:-470}
[[ $BUDGET =~ ^[0-9]+$ ]] || { echo "error: dev/gpu/check.sh: GPU_CHECK_BUDGET '$BUDGET' is not a number of seconds" >&2; exit 1; }
REPORT_DIR=${OUT:-build}
REPORT=$REPORT_DIR/gpu_check.md
WORK=build/gpu_check
mkdir -p "$WORK" "$REPORT_DIR" || exit 1
rm -f "$WORK"/*.log "$WORK"/*.md
START=$SECONDS
pass=0
fail=0

LAB_NAMES="adamw ivon_sample ivon_accumulate ivon_update poco_update"
if [ "$CPU" = 1 ]; then
  MODE="CPU backend (dev/cuda_cpu)"
  TRAIN=build/cuda_cpu/train_gpt2cu; TEST=build/cuda_cpu/test_gpt2cu; TESTFP=build/cuda_cpu/test_gpt2fp32cu
  LAB=build/cuda_cpu/dev/cuda
  BUILD_TARGETS="$TRAIN $TEST $TESTFP cuda-lab-cpu"
  JOBS=2
  DEBUG_STATE=ref/small/gpt2_d2_debug_state.bin; DEBUG_MODEL=ref/small/gpt2_d2.bin
  OPT_STATES="ref/gpt2_d2_ivon_state.bin"; OPT_TESTS="$TESTFP"
  LAB_NAMES="adamw ivon_update"  # every program in both modes: dev/test/test_cuda_lab.sh
  LAB_BENCH_ARGS="-n 20000 -r 2"
  MODEL=d2; T=32; BATCHES="2"; STEPS=3
  T_BUILD=600; T_TEST=150; T_LAB=120; T_TRAIN=120
else
  MODE="GPU"
  TRAIN=./train_gpt2cu; TEST=./test_gpt2cu; TESTFP=build/cuda/test_gpt2fp32cu
  LAB=build/cuda/lab
  BUILD_TARGETS="train_gpt2cu test_gpt2cu $TESTFP cuda-lab"
  JOBS=$(nproc 2>/dev/null || echo 8)
  DEBUG_STATE=ref/gpt2_d2_debug_state.bin; DEBUG_MODEL=ref/gpt2_d2.bin
  OPT_STATES="ref/gpt2_d2_ivon_state.bin ref/gpt2_d2_poco_state.bin ref/gpt2_d2_poco_alt_state.bin"
  OPT_TESTS="$TEST $TESTFP"
  LAB_BENCH_ARGS=""
  MODEL=d12; T=1024; BATCHES="64 32 16 8"; STEPS=12
  T_BUILD=300; T_TEST=120; T_LAB=90; T_TRAIN=150
fi

# ---- report pieces (written out at exit, whatever happened)
{ echo "| step | result | seconds |"; echo "|---|---|---|"; } > "$WORK/steps.md"
: > "$WORK/lab_bench.md"
{ echo "| program | version | block | ms | GB/s | % of peak | bytes/elem | ms vs AdamW's fastest |"
  echo "|---|---|---|---|---|---|---|---|"; } > "$WORK/lab_best.md"
{ echo "| optimizer | B | tok/s | MFU | ms/step | step time vs AdamW | peak GPU memory | bytes/param | note |"
  echo "|---|---|---|---|---|---|---|---|---|"; } > "$WORK/train.md"
write_report() {
  {
    echo "# GPU check ($MODE)"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "- device: ${DEVICE:-?}"
    echo "- nvcc: $( { /usr/local/cuda/bin/nvcc --version 2>/dev/null || nvcc --version 2>/dev/null; } | tail -n 1 || echo '?')"
    echo "- total: $((SECONDS - START)) s of a $BUDGET s budget; $pass passed, $fail failed"
    echo
    echo "## Steps"
    echo
    cat "$WORK/steps.md"
    echo
    echo "## Kernel lab bench (dev/cuda, doc/kernel_lab.md)"
    echo
    if [ -s "$WORK/lab_bench.md" ]; then
      echo "The fastest block size of each version (bf16 builds, n as in the tables below; GB/s from the bytes each"
      echo "element must move, the last column the time over AdamW's fastest kernel):"
      echo
      cat "$WORK/lab_best.md"
      echo
      echo "Every version and block size:"
      echo
      echo '```'; cat "$WORK/lab_bench.md"; echo '```'
    else echo "not run"; fi
    echo
    echo "## train_gpt2cu $MODEL, T=$T, $STEPS steps (the first left out of the averages)"
    echo
    cat "$WORK/train.md"
    echo
    echo "PoCo runs with -pst 0 -pmb 1 (every step a corrected step, the anchor refresh before step 1 a single"
    echo "micro-batch), so its row is the steady-state step. Logs: $WORK/."
  } > "$REPORT"
  echo "report: $REPORT"
}
trap write_report EXIT

left() { echo $((BUDGET - (SECONDS - START))); }

# run NAME LIMIT CMD...: CMD under timeout min(LIMIT, budget left), output in $WORK/NAME.log; sets RC and DT
run() {
  local name=$1 limit=$2; shift 2
  local l; l=$(left)
  [ "$l" -lt "$limit" ] && limit=$l
  if [ "$limit" -le 5 ]; then RC=124; DT=0; echo "time budget spent" > "$WORK/$name.log"; return; fi
  local t0=$SECONDS
  timeout "$limit" "$@" > "$WORK/$name.log" 2>&1
  RC=$?
  DT=$((SECONDS - t0))
}

row() { echo "| $1 | $2 | $3 |" >> "$WORK/steps.md"; echo "$1: $2 (${3}s)"; }
ok() { pass=$((pass + 1)); row "$1" "PASS $2" "$3"; }
bad() {  # bad LABEL RESULT SECONDS LOG: the log's first error or FAIL line goes into the report
  local e=""
  [ -e "$WORK/$4.log" ] && e=$(grep -m 1 -E '^(error|FAIL)' "$WORK/$4.log" | cut -c1-140 | tr '|' '/')
  fail=$((fail + 1)); row "$1" "**FAIL** $2${e:+: $e}" "$3"; tail -n 5 "$WORK/$4.log" 2>/dev/null | sed 's/^/    /'
}
info() { row "$1" "$2" "$3"; }
counts() { grep -E '^([a-z_]+: )?[0-9]+ passed, [0-9]+ failed' "$WORK/$1.log" | tail -n 1 | sed -E 's/^[a-z_]+: //'; }
why() { [ "$RC" -eq 124 ] || [ "$RC" -eq 137 ] && echo "timed out (${DT}s)" || echo "exit $RC"; }

# ---- 0. device, NCCL
if [ "$CPU" = 0 ]; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    DEVICE=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader -i "${CUDA_VISIBLE_DEVICES:-0}" 2>/dev/null | head -n 1)
  fi
  # NCCL: the system's, NCCL_HOME, or the one PyTorch's wheels bring (nvidia.nccl: include/, lib/libnccl.so.2)
  if [ -z "${NCCL_HOME:-}" ] && ! ls /usr/include/nccl.h /usr/local/cuda/include/nccl.h /usr/local/include/nccl.h >/dev/null 2>&1; then
    pydir=$(python3 -c 'import nvidia.nccl as n; print(list(n.__path__)[0])' 2>/dev/null)
    if [ -n "$pydir" ] && [ -e "$pydir/include/nccl.h" ] && [ -e "$pydir/lib/libnccl.so.2" ]; then
      mkdir -p build/nccl/lib
      ln -sfn "$pydir/include" build/nccl/include
      ln -sf "$pydir/lib/libnccl.so.2" build/nccl/lib/libnccl.so
      export NCCL_HOME=$PWD/build/nccl
      export LD_LIBRARY_PATH=$pydir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
      echo "NCCL from PyTorch's nvidia-nccl package: $pydir"
    fi
  fi
else
  DEVICE="CPU backend, $(nproc) cores"
fi

# ---- 1. build
# shellcheck disable=SC2086
run build "$T_BUILD" make -j"$JOBS" $BUILD_TARGETS
if [ "$RC" -eq 0 ]; then ok "build ($BUILD_TARGETS)" "" "$DT"; else bad "build ($BUILD_TARGETS)" "$(why)" "$DT" build; fi

# ---- 2. CUDA tests
test_row() {  # test_row NAME LABEL CMD...
  local name=$1 label=$2; shift 2
  run "$name" "$T_TEST" "$@"
  local c; c=$(counts "$name")
  if [ "$RC" -eq 0 ] && [ -n "$c" ]; then ok "$label" "$c" "$DT"
  elif grep -q "unknown option '--opt'" "$WORK/$name.log"; then info "$label" "not available in this build (no --opt)" "$DT"
  else bad "$label" "$(why)${c:+, $c}" "$DT" "$name"; fi
}
for f in "$DEBUG_MODEL" "$DEBUG_STATE"; do [ -e "$f" ] || bad "ref file $f" "missing (carry ref/)" 0 none; done
for b in "$TEST" "$TESTFP"; do
  test_row "test_$(basename "$b")" "$(basename "$b") $(basename "$DEBUG_STATE")" "$b" "$DEBUG_MODEL" "$DEBUG_STATE"
done
for s in $OPT_STATES; do
  [ -e "$s" ] || { bad "ref file $s" "missing (carry ref/)" 0 none; continue; }
  for b in $OPT_TESTS; do
    test_row "test_$(basename "$b")_$(basename "$s" .bin)" "$(basename "$b") --opt $(basename "$s")" "$b" --opt ref/gpt2_d2.bin "$s"
  done
done

# ---- 3. kernel lab
for name in $LAB_NAMES; do
  for v in "" fp32; do
    test_row "lab_$name$v" "lab $name$v validate" "$LAB/$name$v" validate
  done
done
for name in $LAB_NAMES; do
  # shellcheck disable=SC2086
  run "lab_bench_$name" "$T_LAB" "$LAB/$name" bench $LAB_BENCH_ARGS
  c=$(counts "lab_bench_$name")
  if [ "$RC" -eq 0 ]; then
    ok "lab $name bench" "$c" "$DT"
    sed -n '/ bench: /,$p' "$WORK/lab_bench_$name.log" | grep -v ' passed, ' >> "$WORK/lab_bench.md"
    echo >> "$WORK/lab_bench.md"
    # the fastest block size of each version; time relative to AdamW's fastest version
    awk -v base="${lab_adamw_ms:-}" '$2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/ && NF == 7 {
           if (!($2 in best) || $4 < best[$2]) { best[$2] = $4; line[$2] = $0 } }
         END { for (v in best) { split(line[v], f, " "); rel = base > 0 ? sprintf("%.2fx", f[4] / base) : "-"
                 printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", f[1], f[2], f[3], f[4], f[5], f[6], f[7], rel } }' \
      "$WORK/lab_bench_$name.log" | sort >> "$WORK/lab_best.md"
    if [ "$name" = adamw ]; then
      lab_adamw_ms=$(awk '$2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/ && NF == 7 && (m == "" || $4 < m) {m = $4} END {print m}' "$WORK/lab_bench_$name.log")
    fi
  else bad "lab $name bench" "$(why)${c:+, $c}" "$DT" "lab_bench_$name"; fi
done

# ---- 4. trainer benchmark
TRAIN_DATA=dev/data/austen/austen_train.bin
VAL_DATA=dev/data/austen/austen_val.bin
if [ ! -e "$TRAIN_DATA" ] || [ ! -e "$VAL_DATA" ]; then
  # llm.c shard: int32[256] header (20240520, 1, ntokens), uint16 tokens; uniform random GPT-2 tokens
  TRAIN_DATA=$WORK/synthetic_train.bin; VAL_DATA=$WORK/synthetic_val.bin
  python3 - "$TRAIN_DATA" "$VAL_DATA" <<'EOF'
import random, struct, sys
for path, n in ((sys.argv[1], 1 << 20), (sys.argv[2], 1 << 18)):
    r = random.Random(n)
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", 20240520, 1, n, *([0] * 253)))
        f.write(struct.pack("<%dH" % n, *(r.randrange(50257) for _ in range(n))))
EOF
  info "train data" "dev/data/austen missing: synthetic shards in $WORK" 0
fi
DATA_ARGS=(-i "$TRAIN_DATA" -j "$VAL_DATA" -v 0 -s 0)
POCO_ARGS=(-pst 0 -pmb 1)

# peak GPU memory of the running trainer (nvidia-smi memory.used, MiB, polled every 0.5 s)
mem_poll() {
  local max=0 v
  while kill -0 "$1" 2>/dev/null; do
    v=$(timeout 5 nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "${CUDA_VISIBLE_DEVICES:-0}" 2>/dev/null | head -n 1)
    [[ $v =~ ^[0-9]+$ ]] && [ "$v" -gt "$max" ] && max=$v
    sleep 0.5
  done
  echo "$max"
}

# train_run NAME OPT B STEPS MODEL T: one trainer run; sets RC, DT, PEAK_MIB
train_run() {
  local name=$1 opt=$2 b=$3 steps=$4 model=$5 t=$6 extra=()
  [ "$opt" = poco ] && extra=("${POCO_ARGS[@]}")
  local limit=$T_TRAIN l; l=$(left)
  [ "$l" -lt "$limit" ] && limit=$l
  PEAK_MIB=n/a
  if [ "$limit" -le 5 ]; then RC=124; DT=0; echo "time budget spent" > "$WORK/$name.log"; return; fi
  local t0=$SECONDS
  timeout "$limit" "$TRAIN" -e "$model" -b "$b" -t "$t" -x "$steps" -opt "$opt" "${DATA_ARGS[@]}" "${extra[@]}" \
    > "$WORK/$name.log" 2>&1 &
  local pid=$!
  if [ "$CPU" = 0 ] && command -v nvidia-smi >/dev/null 2>&1; then PEAK_MIB="$(mem_poll "$pid") MiB"; fi
  wait "$pid"
  RC=$?
  DT=$((SECONDS - t0))
}

adamw_ms=""
chosen_b=""
for opt in adamw ivon poco; do
  if [ "$opt" != adamw ]; then
    train_run "probe_$opt" "$opt" 2 1 d2 32
    if [ "$RC" -ne 0 ]; then
      msg=$(grep -m 1 -E '^error' "$WORK/probe_$opt.log" | cut -c1-120)
      info "train_gpt2cu -opt $opt probe (d2, 1 step)" "not available in this build: ${msg:-$(why)}" "$DT"
      echo "| $opt | - | - | - | - | - | - | - | not available in this build: ${msg:-$(why)} |" >> "$WORK/train.md"
      continue
    fi
  fi
  done_row=0
  for b in ${chosen_b:-$BATCHES}; do
    [ -n "$chosen_b" ] && [ "$b" -gt "$chosen_b" ] && continue
    name="train_${opt}_b$b"
    train_run "$name" "$opt" "$b" "$STEPS" "$MODEL" "$T"
    if [ "$RC" -ne 0 ] && grep -qi "out of memory" "$WORK/$name.log"; then
      info "train_gpt2cu -opt $opt B=$b" "out of memory, next B" "$DT"; continue
    fi
    if [ "$RC" -ne 0 ]; then
      bad "train_gpt2cu -opt $opt B=$b" "$(why)" "$DT" "$name"
      echo "| $opt | $b | - | - | - | - | - | - | failed: $(why) |" >> "$WORK/train.md"
      done_row=1; break
    fi
    ms=$(sed -nE 's/^total average iteration time: ([0-9.]+) ms.*/\1/p' "$WORK/$name.log" | tail -n 1)
    mfu=$(sed -nE 's/^ *mfu ([0-9.]+)%.*/\1/p' "$WORK/$name.log" | tail -n +2 | awk '{s += $1; n++} END {if (n) printf "%.1f%%", s / n; else print "n/a"}')
    bpp=$(sed -nE 's/^memory: ([0-9.]+) bytes per parameter.*/\1/p' "$WORK/$name.log" | head -n 1)
    if [ -z "$ms" ]; then bad "train_gpt2cu -opt $opt B=$b" "no average iteration time line" "$DT" "$name"; done_row=1; break; fi
    toks=$(awk -v b="$b" -v t="$T" -v ms="$ms" 'BEGIN {printf "%.0f", b * t * 1000 / ms}')
    if [ "$opt" = adamw ]; then adamw_ms=$ms; chosen_b=$b; rel="-"
    elif [ -n "$adamw_ms" ]; then rel=$(awk -v a="$adamw_ms" -v m="$ms" 'BEGIN {printf "%+.1f%%", 100 * (m / a - 1)}')
    else rel="n/a"; fi
    [ -n "$adamw_ms" ] && [ "$opt" != adamw ] && [ "$b" != "$chosen_b" ] && rel="$rel (B differs)"
    echo "| $opt | $b | $toks | $mfu | $ms | $rel | $PEAK_MIB | ${bpp:-?} | |" >> "$WORK/train.md"
    ok "train_gpt2cu -opt $opt B=$b" "$toks tok/s, $ms ms/step, MFU $mfu" "$DT"
    done_row=1; break
  done
  if [ "$done_row" = 0 ]; then
    bad "train_gpt2cu -opt $opt" "no micro-batch of ${chosen_b:-$BATCHES} fits" 0 none
    echo "| $opt | - | - | - | - | - | - | - | out of memory at every B |" >> "$WORK/train.md"
  fi
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
