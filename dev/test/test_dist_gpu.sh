#!/usr/bin/env bash
# Data-parallel GPU checks of train_gpt2cu (NCCL; llmc/cuda_dist.h). Needs a GPU, `make cuda` and the Austen data.
#  1. The 1-rank NCCL path against the plain single-process path (no NCCL call), d2, 6 AdamW steps with val and
#     checkpoints: model, state and the main.log losses must be bitwise equal (compare_runs.py --exact), for ZeRO-0
#     (per-layer all-reduce inside the backward) and ZeRO-1 (reduce-scatter, shard update, all-gather, shard gathers
#     for the checkpoints), through -dm fs -dp 1 -dr 0 and, when train_gpt2cu has MPI and mpirun exists, through
#     mpirun -np 1 ... -dm mpi. With one rank every average is a copy or a multiplication by 1, so equality is exact.
#  2. The same with an injected NaN (IVON_TEST_NAN_STEP): the reduced norm makes the step guard skip the same step.
#  3. Checkpoint at step 3 and resume (-y 1) of the 1-rank ZeRO-1 run (every rank reads the files, keeps its shard)
#     ends bit-identical to the uninterrupted run.
#  4. Two ranks. NCCL refuses two ranks on one GPU (ncclCommInitRank: "Duplicate GPU detected"), so with one GPU
#     the check is that a 2-rank run on it ends with an error on both ranks (no hang) - or, should the installed NCCL
#     allow it, that it matches one process. With two or more GPUs (-dl 2, one rank per GPU): 2 ranks x K/2
#     micro-batches against 1 process x K with the fp32 build (build/cuda/train_gpt2fp32cu; bf16 rounds the two
#     reductions differently), ZeRO-0 and ZeRO-1, within compare_runs.py's default tolerance (4e-6 + 1e-4 |b| per
#     element, losses within 1.5e-4), and a bit-exact resume of a 2-rank ZeRO-1 run.
# Every run has a time limit (RUN_TIMEOUT seconds, default 300), so a hang fails instead of blocking.
# usage: dev/test/test_dist_gpu.sh   (from anywhere; prints `N passed, N failed`, exit 1 on a failure)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
PY=${PYTHON:-/usr/bin/python3}
MPIRUN=${MPIRUN:-mpirun}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export IVON_DIST_TIMEOUT=${IVON_DIST_TIMEOUT:-120}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

BF=./train_gpt2cu
FP=./build/cuda/train_gpt2fp32cu
for f in "$BF" "$FP" dev/data/austen/austen_train.bin dev/data/austen/austen_val.bin; do
  [ -e "$f" ] || { echo "error: $f is missing (make cuda data)"; exit 1; }
done
command -v nvidia-smi >/dev/null 2>&1 || { echo "error: nvidia-smi not found: this test needs a GPU"; exit 1; }
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
[ "$ngpu" -ge 1 ] || { echo "error: no GPU visible (nvidia-smi -L)"; exit 1; }
echo "GPUs visible: $ngpu"

# ok, bad, skipped, run, runmpi, runfs, compare, has_nccl, err_case, dist_summary
. dev/test/dist_lib.sh

# d2, B=4, T=64: -d 512 = 2 micro-batches per step for one process (accumulation, then the overlapped reduction of
# the last one); checkpoints at step 3 and 6
BASE="-e d2 -b 4 -t 64 -x 6 -v 3 -m 4 -s 0 -n 3 -seed 7 -d 512"

echo "== 1 rank through NCCL vs plain (bit-exact)"
run plain0 "$BF" || bad "plain run (bf16)"
for zs in 0 1; do
  if runfs "fs_zs$zs" 1 "$BF" -zs "$zs" && has_nccl "fs_zs$zs"; then
    compare "bf16 ZeRO-$zs, -dm fs, 1 rank = plain" 6 plain0 "fs_zs$zs" --exact
  else bad "bf16 ZeRO-$zs, -dm fs, 1 rank (run failed or no communicator)"; fi
done
if runfs fp_fs_zs1 1 "$FP" -zs 1 && run fp_plain "$FP"; then
  compare "fp32 ZeRO-1, -dm fs, 1 rank = plain" 6 fp_plain fp_fs_zs1 --exact
else bad "fp32 ZeRO-1, 1 rank (run failed)"; fi
if command -v "$MPIRUN" >/dev/null 2>&1; then
  for zs in 0 1; do
    name="mpi_zs$zs"
    # shellcheck disable=SC2086
    if timeout "$RUN_TIMEOUT" "$MPIRUN" -np 1 "$BF" $BASE -zs "$zs" -dm mpi -o "$tmp/$name" > "$tmp/$name.out" 2>&1; then
      if has_nccl "$name"; then compare "bf16 ZeRO-$zs, mpirun -np 1 -dm mpi = plain" 6 plain0 "$name" --exact
      else bad "mpirun -np 1 -dm mpi: no communicator"; fi
    elif grep -q "this build has no MPI" "$tmp/$name.out"; then
      skipped "mpirun -np 1 -dm mpi (train_gpt2cu built without MPI)"
    else bad "mpirun -np 1 -dm mpi ZeRO-$zs (run failed)"; tail -3 "$tmp/$name.out" | sed 's/^/    /'; fi
  done
else
  skipped "mpirun -np 1 -dm mpi ($MPIRUN not found)"
fi

echo "== step guard: an injected NaN skips the same step on the NCCL path (bit-exact)"
for zs in 0 1; do
  if IVON_TEST_NAN_STEP=2 run "nan_plain$zs" "$BF" -zs "$zs" && IVON_TEST_NAN_STEP=2 runfs "nan_fs$zs" 1 "$BF" -zs "$zs"; then
    if grep -q "skipped (non-finite)" "$tmp/nan_fs$zs.out"; then
      compare "NaN at step 2, ZeRO-$zs: skipped like the plain run" 6 "nan_plain$zs" "nan_fs$zs" --exact
    else bad "NaN at step 2, ZeRO-$zs: no skip line"; fi
  else bad "NaN at step 2, ZeRO-$zs (run failed)"; fi
done

echo "== resume of the 1-rank ZeRO-1 run from its step-3 checkpoint (bit-exact)"
if runfs res_full 1 "$BF" -zs 1 && runfs res_part 1 "$BF" -zs 1; then
  rm -f "$tmp/res_part"/*_00000006*
  if runfs res_part 1 "$BF" -zs 1 -y 1 && grep -q "resumed from .* at step 3" "$tmp/res_part.out"; then
    compare "resume ZeRO-1, 1 rank" 6 res_full res_part --exact
  else bad "resume ZeRO-1, 1 rank (no resume)"; fi
else bad "resume ZeRO-1, 1 rank (run failed)"; fi

echo "== 2 ranks"
# -d 1024: one process runs 4 micro-batches per step, each of 2 ranks runs 2
if [ "$ngpu" -ge 2 ]; then
  if run fp_one "$FP" -d 1024; then
    for zs in 0 1; do
      if runfs "fp_two_zs$zs" 2 "$FP" -d 1024 -zs "$zs" -dl 2; then
        compare "fp32 2 ranks x 2 micro-batches = 1 process x 4, ZeRO-$zs" 6 fp_one "fp_two_zs$zs"
      else bad "fp32 2 ranks, ZeRO-$zs (run failed)"; fi
    done
  else bad "fp32 1 process x 4 micro-batches (run failed)"; fi
  if runfs two_full 2 "$BF" -zs 1 -dl 2 && runfs two_part 2 "$BF" -zs 1 -dl 2; then
    rm -f "$tmp/two_part"/*_00000006*
    if runfs two_part 2 "$BF" -zs 1 -dl 2 -y 1 && grep -q "resumed from .* at step 3" "$tmp/two_part.out"; then
      compare "resume ZeRO-1, 2 ranks" 6 two_full two_part --exact
    else bad "resume ZeRO-1, 2 ranks (no resume)"; fi
  else bad "resume ZeRO-1, 2 ranks (run failed)"; fi
else
  # one GPU: both ranks on device 0 (-dl 1)
  if runfs one_gpu_two 2 "$FP" -d 1024 -dl 1; then
    if run fp_one "$FP" -d 1024; then compare "2 ranks on one GPU (NCCL allowed it) = 1 process" 6 fp_one one_gpu_two
    else bad "fp32 1 process x 4 micro-batches (run failed)"; fi
  else
    n_err=$(cat "$tmp"/one_gpu_two.[01].out | grep -c '^error: ')
    if [ "$n_err" -ge 2 ] && ! grep -qw 124 "$tmp/one_gpu_two.rc"; then
      ok "2 ranks on one GPU: refused with an error on both ranks, no hang"
      grep -h '^error: ' "$tmp"/one_gpu_two.[01].out | head -2 | sed 's/^/    /'
    else bad "2 ranks on one GPU: expected an error line on both ranks"; fi
  fi
  skipped "2 ranks on 2 GPUs vs 1 process (needs 2 GPUs)"
fi

echo "== launch errors (one error line, exit 1)"
E="-e d2 -b 4 -t 64 -x 1 -v 0 -s 0"
mkdir -p "$tmp/stale" && : > "$tmp/stale/ncclUniqueId.bin"
# shellcheck disable=SC2086
{
err_case "-dm fs with a stale id file" "already exists" "$BF" $E -dm fs -dp 1 -dr 0 -df "$tmp/stale"
err_case "-dm tcp, rank 1 without rank 0" "flag -ds: rank 1 got no NCCL id" env IVON_DIST_TIMEOUT=3 "$BF" $E -dm tcp -dp 2 -dr 1 -ds 127.0.0.1:29591
err_case "-dm fs, rank 1 without rank 0" "flag -df: rank 1 found no NCCL id" env IVON_DIST_TIMEOUT=3 "$BF" $E -dm fs -dp 2 -dr 1 -df "$tmp/none"
err_case "-dl beyond the visible GPUs" "flag -dl" "$BF" $E -dm fs -dp $((ngpu + 1)) -dr "$ngpu" -df "$tmp/dl" -dl $((ngpu + 1))
err_case "-opt ivon on the GPU" "flag -opt" "$BF" $E -opt ivon
}

dist_summary
