#!/usr/bin/env bash
# Data-parallel checks of train_gpt2cu on the CPU backend (dev/cuda_cpu: NCCL between processes over POSIX shared
# memory, any number of ranks on the one CPU "device"): the NCCL paths of llmc/cuda_dist.h and train_gpt2.cu with
# real collectives between 2 processes, which one GPU cannot run (dev/test/test_dist_gpu.sh). d2, B=2, T=32,
# -d 128 (2 micro-batches for one process, 1 per rank for 2), 2 AdamW steps, checkpoints at steps 1 and 2, val at
# steps 0 and 2.
#  1. 1 rank through NCCL (-dm fs -dp 1 -dr 0; mpirun -np 1 -dm mpi), ZeRO-0 and ZeRO-1, bitwise equal to the
#     plain run without a communicator: model, state and main.log losses (compare_runs.py --exact).
#  2. mpirun -np 2 x 1 micro-batch against 1 process x 2, ZeRO-0 and ZeRO-1: fp32 within compare_runs.py's default
#     tolerance (4e-6 + 1e-4 |b| per element, losses 1.5e-4); bf16 within the tolerance below, with a negative
#     control (1 process x 1 micro-batch, i.e. both ranks on the same data) that must fall outside it.
#  2b. IVON (rank noise) and PoCo (shared noise, gradient-only reduction, an anchor refresh) 2 ranks against 1
#     process, fp32, ZeRO-0 and ZeRO-1 (reduce-scatter of the accumulators, the update on the shard, m and h
#     all-gathered), within the default tolerance; the ZeRO-1 runs bitwise equal to the ZeRO-0 runs (model, state
#     and main.log losses): both reduce with the same rank-order mean, and the update is elementwise.
#  3. The same 2-rank fp32 run through -dm tcp (ZeRO-0) and -dm fs (ZeRO-1), two processes started here: within
#     the default tolerance of 1 process, and bitwise equal to the mpirun run (only the rendezvous differs).
#     TEST_FULL=1 (make test-full) only.
#  4. A 2-rank bf16 ZeRO-1 run resumed (-y 1) from its step-1 checkpoint ends bitwise equal to the whole run.
#  5. A NaN injected into rank 1's gradient only (IVON_TEST_NAN_STEP=2 in rank 1's environment, -dm fs, ZeRO-1):
#     rank 0 reports the step skipped, and the model and state gathered from both shards after step 2 equal those
#     after step 1 bitwise (neither rank updated); step 1 equals the mpirun run's bitwise.
#  6. An error on one rank ends both within KILL_GRACE seconds, no process left, no hang: (a) -dm tcp, rank 1
#     killed (SIGKILL) once step 2 is logged (rank 1 prints nothing; the steps are in lockstep): rank 0 exits
#     non-zero with an error line naming rank 1; (b) the same under mpirun -np 2: mpirun exits non-zero naming
#     rank 1; (c) -dm fs, rank 1 given a train shard of the right size whose tokens are all 65535 (the header checks
#     pass, the first batch does not): rank 1 exits non-zero naming the file, rank 0 (good shard) naming rank 1.
# bf16 tolerance: 1 process adds its 2 micro-batch gradients in bf16, 2 ranks average two bf16 gradients in float
# and round once, so a gradient element can differ in its last bit, and where the gradient is that small AdamW's
# normalized step (|update| <= lr per step) moves the element differently. Measured at step 2: model max |a-b|
# 6.8e-4, 1310 of 7.0M elements outside atol 1e-5 + rtol 1e-2 (~2.5 bf16 ulps); state max 7.8e-5, 8 of 13.9M
# outside; losses 2e-4 apart. Allowed: 7000 elements outside per file, none beyond 2e-3 (2 (lr_1 + lr_2) = 1.9e-3,
# the most two AdamW steps can differ by), losses 5e-4. The negative control: 2.1M model and 324k state elements
# outside, state max 8.2e-3, losses 6.2e-2 apart.
# Every process runs under timeout (RUN_TIMEOUT seconds), so a hang fails a check instead of blocking.
# About 210 CPU seconds: 155 s on 2 idle cores (2026-12-03, 2-core AMD EPYC).
# usage: dev/test/test_dist_cuda_cpu.sh   (from anywhere; needs `make cuda-cpu` and the Austen data; prints
#        `N passed, N failed`, exit 1 on a failure)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
PY=${PYTHON:-/usr/bin/python3}
MPIRUN=${MPIRUN:-mpirun}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
KILL_GRACE=${KILL_GRACE:-10}
BF16_TOL="--atol 1e-5 --rtol 1e-2 --max-outside 7000 --outlier-atol 2e-3 --log-atol 5e-4"
# root in CI containers; 2 ranks on 2 cores; one OpenMP thread per process (also the same thread count for the
# bitwise checks); short rendezvous and shared-memory join waits
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=1 IVON_DIST_TIMEOUT=20 NCCL_CPU_TIMEOUT=20
tmp=$(mktemp -d)
started=()  # pids of background processes, killed at exit if still there
trap 'for p in "${started[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$tmp"' EXIT

BF=build/cuda_cpu/train_gpt2cu
FP=build/cuda_cpu/train_gpt2fp32cu
for f in "$BF" "$FP" dev/data/austen/austen_train.bin dev/data/austen/austen_val.bin; do
  [ -e "$f" ] || { echo "error: $f is missing (make cuda-cpu data)"; exit 1; }
done
command -v "$MPIRUN" >/dev/null 2>&1 || { echo "error: $MPIRUN not found (Open MPI)"; exit 1; }

# ok, bad, skipped, run, runmpi, start_ranks, wait_ranks, runnet, compare, has_nccl, dist_summary
. dev/test/dist_lib.sh

BASE="-e d2 -b 2 -t 32 -d 128 -x 2 -n 1 -v 2 -m 2 -s 0 -seed 7"
t_start=$SECONDS

# one-process runs side by side (a core each): bg <command...> starts one, join waits for all, statuses in st[i]
bg_pids=()
bg() {
  "$@" &
  bg_pids+=($!)
  started+=($!)
}
join() {
  local p s
  st=()
  for p in "${bg_pids[@]}"; do s=0; wait "$p" || s=$?; st+=("$s"); done
  bg_pids=()
}
# exact <label> <status> <dir a> <dir b>: step 2 bitwise, after checking that b went through a communicator
exact() {
  if [ "$2" -ne 0 ]; then bad "$1 (run failed)"
  elif has_nccl "$4"; then compare "$1" 2 "$3" "$4" --exact
  else bad "$1 (no communicator in $4)"; fi
}

echo "== 1 rank through NCCL vs plain (bit-exact)"
bg run plain_bf "$BF"
bg run plain_fp "$FP"
join
[ "${st[0]}" -eq 0 ] || bad "plain run (bf16)"
[ "${st[1]}" -eq 0 ] || bad "plain run (fp32)"
bg run fs1_zs0 "$BF" -zs 0 -dm fs -dp 1 -dr 0 -df "$tmp/rdv_fs1_zs0"
bg run fs1_zs1 "$BF" -zs 1 -dm fs -dp 1 -dr 0 -df "$tmp/rdv_fs1_zs1"
bg run neg_bf "$BF" -d 64  # the negative control of section 2
join
exact "bf16 ZeRO-0, -dm fs -dp 1 = plain" "${st[0]}" plain_bf fs1_zs0
exact "bf16 ZeRO-1, -dm fs -dp 1 = plain" "${st[1]}" plain_bf fs1_zs1
st_neg=${st[2]}
bg runmpi mpi1_zs0 1 "$BF" -dm mpi -zs 0
bg runmpi mpi1_zs1 1 "$BF" -dm mpi -zs 1
join
exact "bf16 ZeRO-0, mpirun -np 1 -dm mpi = plain" "${st[0]}" plain_bf mpi1_zs0
exact "bf16 ZeRO-1, mpirun -np 1 -dm mpi = plain" "${st[1]}" plain_bf mpi1_zs1
rm -rf "$tmp"/fs1_zs? "$tmp"/mpi1_zs?

echo "== 2 ranks x 1 micro-batch vs 1 process x 2 (mpirun -np 2)"
for zs in 0 1; do
  if runmpi "mpi2_fp_zs$zs" 2 "$FP" -dm mpi -zs "$zs"; then
    compare "fp32 ZeRO-$zs, 2 ranks = 1 process (default tolerance)" 2 plain_fp "mpi2_fp_zs$zs"
  else bad "fp32 ZeRO-$zs, 2 ranks (run failed)"; fi
done
for zs in 0 1; do
  if runmpi "mpi2_bf_zs$zs" 2 "$BF" -dm mpi -zs "$zs"; then
    # shellcheck disable=SC2086
    compare "bf16 ZeRO-$zs, 2 ranks = 1 process (bf16 tolerance)" 2 plain_bf "mpi2_bf_zs$zs" $BF16_TOL
  else bad "bf16 ZeRO-$zs, 2 ranks (run failed)"; fi
done
if [ "$st_neg" -eq 0 ]; then
  # shellcheck disable=SC2086
  compare "negative control: 1 process x 1 micro-batch differs beyond the bf16 tolerance" 2 plain_bf neg_bf \
    $BF16_TOL --expect-differ
else bad "negative control (run failed)"; fi

echo "== IVON / PoCo: 2 ranks x 1 micro-batch vs 1 process x 2 (mpirun -np 2, fp32, ZeRO-0 and ZeRO-1)"
# IVON with rank noise (the 2 ranks draw samples 0 and 1, as the 1-process run); PoCo with shared noise (-dn
# shared: the gradient-only reduction, eps * sigma * mean gradient rebuilt on each rank) against 1 process with
# -dg 2, an anchor refresh before step 1. Measured: model max |a-b| 2.7e-7 (ivon), 4.1e-7 (poco), state 1.7e-9
# (ivon), 5.4e-7 (poco), the same at ZeRO-0 and ZeRO-1
IV="-opt ivon -l -1 -r 1e-2 -bma 2"
PC="-opt poco -l -1 -r 1e-2 -pst 1 -pp 1 -pmb 2 -bma 2"
for c in "ivon rank" "poco shared"; do
  # shellcheck disable=SC2086
  set -- $c
  flags=$IV one=""
  [ "$1" = poco ] && flags=$PC one="-dg 2"
  # shellcheck disable=SC2086
  if run "one_$1" "$FP" $flags $one && runmpi "two_$1" 2 "$FP" -dm mpi $flags -dn "$2"; then
    compare "fp32 $1, -dn $2: 2 ranks = 1 process (default tolerance)" 2 "one_$1" "two_$1"
  else bad "fp32 $1, -dn $2, 2 ranks (run failed)"; fi
  # shellcheck disable=SC2086
  if [ -e "$tmp/one_$1/DONE_00000002" ] && runmpi "two_${1}_zs1" 2 "$FP" -dm mpi $flags -dn "$2" -zs 1; then
    compare "fp32 $1 ZeRO-1, -dn $2: 2 ranks = 1 process (default tolerance)" 2 "one_$1" "two_${1}_zs1"
    if [ -e "$tmp/two_$1/DONE_00000002" ]; then
      compare "fp32 $1, -dn $2: 2 ranks ZeRO-1 = ZeRO-0 (bit-exact)" 2 "two_$1" "two_${1}_zs1" --exact
    else bad "fp32 $1, -dn $2: 2 ranks ZeRO-1 = ZeRO-0 (no ZeRO-0 run)"; fi
  else bad "fp32 $1 ZeRO-1, -dn $2, 2 ranks (run failed or no 1-process run)"; fi
done
rm -rf "$tmp"/one_* "$tmp"/two_*

# (TEST_FULL=1 only: sections 5 and 6 start ranks through both rendezvous too)
rendezvous=()
[ "${TEST_FULL:-0}" = 1 ] && rendezvous=("tcp 0" "fs 1") && echo "== 2 ranks through the TCP and FS rendezvous"
for m in "${rendezvous[@]+"${rendezvous[@]}"}"; do
  # shellcheck disable=SC2086
  set -- $m  # method, ZeRO stage
  name="${1}2_fp_zs$2"
  if runnet "$name" "$1" 2 "$FP" -zs "$2"; then
    compare "fp32 ZeRO-$2, -dm $1 2 ranks = 1 process (default tolerance)" 2 plain_fp "$name"
    compare "fp32 ZeRO-$2, -dm $1 2 ranks = mpirun 2 ranks (bit-exact)" 2 "mpi2_fp_zs$2" "$name" --exact
  else bad "fp32 ZeRO-$2, -dm $1 2 ranks (run failed)"; fi
done
rm -rf "$tmp"/mpi2_fp_zs? "$tmp"/tcp2_fp_zs0 "$tmp"/fs2_fp_zs1 "$tmp"/plain_fp "$tmp"/neg_bf

echo "== resume of a 2-rank ZeRO-1 run from its step-1 checkpoint (bit-exact)"
# the interrupted run: the whole run's directory cut back to step 1 (checkpoint files and main.log)
if [ -e "$tmp/mpi2_bf_zs1/DONE_00000002" ]; then
  mkdir -p "$tmp/resume"
  cp "$tmp"/mpi2_bf_zs1/*_00000001* "$tmp/resume/"
  awk '{ s = substr($1, 3) + 0 } s <= 1' "$tmp/mpi2_bf_zs1/main.log" > "$tmp/resume/main.log"
  if runmpi resume 2 "$BF" -dm mpi -zs 1 -y 1 && grep -q "resumed from .* at step 1" "$tmp/resume.out"; then
    compare "bf16 ZeRO-1, 2 ranks, resumed at step 1 = whole run" 2 mpi2_bf_zs1 resume --exact
  else bad "bf16 ZeRO-1, 2 ranks, resume (run failed or no resume)"; fi
else bad "bf16 ZeRO-1, 2 ranks, resume (no whole run)"; fi

echo "== NaN in rank 1's gradient at step 2: both ranks skip it"
if R1_ENV="IVON_TEST_NAN_STEP=2" runnet nan fs 2 "$BF" -zs 1; then
  if grep -q "IVON_TEST_NAN_STEP" "$tmp/nan.1.out" && ! grep -q "IVON_TEST_NAN_STEP" "$tmp/nan.0.out" &&
     grep -q "skipped (non-finite)" "$tmp/nan.out"; then ok "rank 0 reports the step with rank 1's NaN skipped"
  else bad "rank 0 reports the step with rank 1's NaN skipped"; grep -h "NAN\|skip" "$tmp"/nan.[01].out | sed 's/^/    /'; fi
  same=1
  for f in model state; do
    cmp -s -i 1024 "$tmp/nan/${f}_00000001.bin" "$tmp/nan/${f}_00000002.bin" || { same=0; echo "    $f: step 2 differs from step 1"; }
  done
  if [ $same -eq 1 ]; then ok "gathered model and state after the skipped step = before it (both shards, bit-exact)"
  else bad "gathered model and state after the skipped step = before it (both shards, bit-exact)"; fi
  same=1
  for f in model state; do
    cmp -s "$tmp/mpi2_bf_zs1/${f}_00000001.bin" "$tmp/nan/${f}_00000001.bin" || { same=0; echo "    $f: step 1 differs"; }
  done
  if [ $same -eq 1 ]; then ok "step 1, before the NaN, = mpirun 2 ranks (bit-exact)"
  else bad "step 1, before the NaN, = mpirun 2 ranks (bit-exact)"; fi
else bad "NaN on rank 1 (run failed)"; fi
rm -rf "$tmp"/mpi2_bf_zs? "$tmp"/resume "$tmp"/nan "$tmp"/plain_bf

echo "== an error on one rank ends both"
# longer runs without val and checkpoints: rank 1 is killed while both still train
BASE="-e d2 -b 2 -t 32 -d 128 -x 20 -v 0 -s 0 -seed 7"
now() { date +%s.%N; }
elapsed() { $PY -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$(now)"; }
within() { $PY -c "import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)" "$1" "$KILL_GRACE"; }
# children <pid> <n>: the pids of pid's children (timeout's trainer, mpirun's ranks) once there are n, one line
children() {
  local c
  for _ in $(seq 1 100); do
    c=$(pgrep -P "$1")
    # shellcheck disable=SC2086
    [ "$(echo "$c" | grep -c .)" -ge "$2" ] && { echo $c; return 0; }  # unquoted: on one line
    sleep 0.1
  done
  return 1
}
alive() { [ -e "/proc/$1" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]; }
# none_left <label> <pid...>: PASS when none of the processes is still running after 5 s
none_left() {
  local label=$1 p left; shift
  for _ in $(seq 1 50); do
    left=""; for p in "$@"; do alive "$p" && left="$left $p"; done
    [ -z "$left" ] && { ok "$label: no process left"; return; }
    sleep 0.1
  done
  bad "$label: processes left:$left"
}
# log_step <dir> <step> <pid>: waits until main.log in dir has step's line (0), or pid ended (1)
log_step() {
  while alive "$3"; do grep -q "^s:$2 " "$1/main.log" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
# err_line <file>: its first error message (stdout is block buffered, so it may follow other text on a line)
err_line() { grep -o 'error: .*' "$1" | head -1; }

# (c0, c1, mp, ranks hold zero or more pids: unquoted on purpose)
# shellcheck disable=SC2086,SC2206
{
# (a) -dm tcp, rank 1 killed
start_ranks kill_tcp tcp 2 "$BF"
r0=${rank_pids[0]} r1=${rank_pids[1]}
c0=$(children "$r0" 1) c1=$(children "$r1" 1)
started+=("$r0" "$r1" $c0 $c1)
if log_step "$tmp/kill_tcp" 2 "$r0" && [ -n "$c1" ]; then
  kill -KILL "$c1"; t0=$(now)
  wait_ranks kill_tcp; dt=$(elapsed "$t0")
  read -r rc0 rc1 < "$tmp/kill_tcp.rc"
  e=$(err_line "$tmp/kill_tcp.0.out")
  if [ "$rc0" -ne 0 ] && [ "$rc0" -ne 124 ] && within "$dt" && echo "$e" | grep -q "rank 1"; then
    ok "-dm tcp, rank 1 killed at step 3: rank 0 exits $rc0 after $dt s"
  else bad "-dm tcp, rank 1 killed at step 3: rank 0 exit $rc0 after $dt s (limit $KILL_GRACE s)"; fi
  echo "    rank 0: $e"
  none_left "-dm tcp, rank 1 killed" "$r0" "$r1" $c0 $c1
else bad "-dm tcp, rank 1 killed: the run did not reach step 2"; wait_ranks kill_tcp; tail -2 "$tmp"/kill_tcp.[01].out; fi

# (b) mpirun -np 2, rank 1 killed
timeout "$RUN_TIMEOUT" "$MPIRUN" -np 2 "$BF" $BASE -dm mpi -o "$tmp/kill_mpi" > "$tmp/kill_mpi.out" 2>&1 &
tp=$!
mp=$(children "$tp" 1); ranks=$(children "$mp" 2)
started+=("$tp" $mp $ranks)
rank1=""
for p in $ranks; do tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 && rank1=$p; done
if [ -n "$rank1" ] && log_step "$tmp/kill_mpi" 2 "$tp"; then
  kill -KILL "$rank1"; t0=$(now)
  rc=0; { wait "$tp"; } 2>/dev/null || rc=$?
  dt=$(elapsed "$t0")
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && within "$dt" && grep -q "rank 1" "$tmp/kill_mpi.out"; then
    ok "mpirun -np 2, rank 1 killed at step 3: mpirun exits $rc after $dt s"
  else bad "mpirun -np 2, rank 1 killed at step 3: mpirun exit $rc after $dt s (limit $KILL_GRACE s)"; fi
  grep -h "rank 1" "$tmp/kill_mpi.out" | head -2 | sed 's/^/    /'
  none_left "mpirun -np 2, rank 1 killed" "$tp" $mp $ranks
else bad "mpirun -np 2, rank 1 killed: no rank 1, or the run did not reach step 2"; wait "$tp"; tail -3 "$tmp/kill_mpi.out"; fi

# (c) -dm fs, a corrupt train shard on rank 1 only: same size as the good one, every token 65535
src=dev/data/austen/austen_train.bin
{ head -c 1024 "$src"; tr '\0' '\377' < /dev/zero | head -c $(( $(stat -c %s "$src") - 1024 )); } > "$tmp/bad_train.bin"
R1_FLAGS="-i $tmp/bad_train.bin" start_ranks bad_shard fs 2 "$BF"
r0=${rank_pids[0]} r1=${rank_pids[1]}
c0=$(children "$r0" 1) c1=$(children "$r1" 1)
started+=("$r0" "$r1" $c0 $c1)
rc1=0; { wait "$r1"; } 2>/dev/null || rc1=$?
t0=$(now)
rc0=0; { wait "$r0"; } 2>/dev/null || rc0=$?
dt=$(elapsed "$t0")
e0=$(err_line "$tmp/bad_shard.0.out") e1=$(err_line "$tmp/bad_shard.1.out")
if [ "$rc1" -ne 0 ] && [ "$rc1" -ne 124 ] && echo "$e1" | grep -q "bad_train.bin"; then
  ok "-dm fs, corrupt shard on rank 1: rank 1 exits $rc1 naming the file"
else bad "-dm fs, corrupt shard on rank 1: rank 1 exit $rc1"; fi
echo "    rank 1: $e1"
if [ "$rc0" -ne 0 ] && [ "$rc0" -ne 124 ] && within "$dt" && echo "$e0" | grep -q "rank 1"; then
  ok "-dm fs, corrupt shard on rank 1: rank 0 exits $rc0, $dt s after rank 1, naming rank 1"
else bad "-dm fs, corrupt shard on rank 1: rank 0 exit $rc0, $dt s after rank 1 (limit $KILL_GRACE s)"; fi
echo "    rank 0: $e0"
none_left "-dm fs, corrupt shard on rank 1" "$r0" "$r1" $c0 $c1
}

echo "$(( SECONDS - t_start )) s"
dist_summary
