#!/usr/bin/env bash
# GPT-2 124M (d12), AdamW, data parallel across nodes with Open MPI: one train_gpt2cu process per GPU, the NCCL
# communicator created through MPI (rank 0 makes the NCCL id, MPI_Bcast sends it).
# usage: HOSTFILE=hosts.txt scripts/multi_node/run_gpt2_124M_mpi.sh [extra trainer flags...]
#   hosts.txt (Open MPI hostfile): one line per node, e.g. "node1 slots=8"; run from the repo root of a checkout
#   that every node sees at the same path (or with the same files there), with the data and OUT on shared storage.
# Trainer flags set here (doc/data_parallel.md; llmc/cuda_dist.h):
#   -dm mpi   processes find each other through MPI (train_gpt2cu built with MPI: `make train_gpt2cu` with mpicc on
#             PATH, not NO_MPI=1)
#   -dl N     GPU of a process = rank % N; GPUS_PER_NODE (default -1: Open MPI's local rank, i.e. one process per GPU
#             in the order mpirun places them)
#   -zs 0|1   ZERO: 0 = gradients all-reduced (overlapped with the backward), 1 = ZeRO-1 (reduce-scatter, sharded
#             master weights and AdamW state, all-gather)
#   plus the recipe of scripts/multi_node/common.sh (-d is the total over all processes; -m the total val batches).
# Environment: HOSTFILE (required), NP (processes; default: the sum of slots= in HOSTFILE), GPUS_PER_NODE (-1),
#   MPIRUN (mpirun), MPIRUN_ARGS (extra mpirun options, e.g. "--mca btl_tcp_if_include eth0"), ZERO (0), and the
#   recipe's variables (scripts/multi_node/common.sh: OUT, SEED, STEPS, DATA, B, T, TOTAL_BATCH, ...).
# NCCL_* variables of this shell (NCCL_DEBUG, NCCL_SOCKET_IFNAME, NCCL_IB_HCA, ...) are passed to every process.
# An error on any rank ends all of them (MPI_Abort). Extra flags are appended last and override.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
MN_SCRIPT=run_gpt2_124M_mpi
die() { echo "error: $MN_SCRIPT: $*" >&2; exit 1; }

HOSTFILE=${HOSTFILE:-}
[ -n "$HOSTFILE" ] || die "set HOSTFILE to an Open MPI hostfile (one line per node: 'host slots=<GPUs>')"
[ -r "$HOSTFILE" ] || die "HOSTFILE '$HOSTFILE' is not a readable file"
if [ -z "${NP:-}" ]; then
  NP=$(grep -v '^[[:space:]]*#' "$HOSTFILE" | grep -oE 'slots=[0-9]+' | cut -d= -f2 | awk '{s += $1} END {if (NR) print s}')
  [ -n "$NP" ] || die "HOSTFILE '$HOSTFILE' has no slots=N entries: set NP"
fi
GPUS_PER_NODE=${GPUS_PER_NODE:--1}
[[ $GPUS_PER_NODE =~ ^(-1|[1-9][0-9]*)$ ]] || die "GPUS_PER_NODE '$GPUS_PER_NODE' must be -1 or a positive integer"
MPIRUN=${MPIRUN:-mpirun}
command -v "$MPIRUN" >/dev/null || die "'$MPIRUN' (MPIRUN) not found"

# shellcheck source=scripts/multi_node/common.sh
source scripts/multi_node/common.sh

env_args=(-x PATH -x LD_LIBRARY_PATH)
for v in $(env | grep -oE '^(NCCL_[A-Z0-9_]+|CUDA_VISIBLE_DEVICES)=' | tr -d =); do env_args+=(-x "$v"); done
read -r -a mpirun_extra <<< "${MPIRUN_ARGS:-}"
cmd=("$MPIRUN" -np "$NP" --hostfile "$HOSTFILE" "${env_args[@]}" "${mpirun_extra[@]}"
     "$TRAINER" "${MN_ARGS[@]}" -dm mpi -dl "$GPUS_PER_NODE" "$@")
printf '%q ' "${cmd[@]}" > "$OUT/cmd.txt"; echo >> "$OUT/cmd.txt"
echo "run: $(cat "$OUT/cmd.txt")"
"${cmd[@]}" 2>&1 | tee -a "$OUT/train.out"
