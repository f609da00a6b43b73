#!/usr/bin/env bash
# GPT-2 124M (d12), AdamW, data parallel across nodes without MPI or Slurm: run this script once on every node; it
# starts one train_gpt2cu per GPU of the node. Rank 0 (node 0, first GPU) listens on MASTER_ADDR:MASTER_PORT and
# sends the NCCL id to every other rank that connects (-dm tcp); the others retry until IVON_DIST_TIMEOUT seconds
# (default 600) have passed, so the nodes may be started in any order.
# usage, on each of the NNODES nodes (NODE_RANK 0 .. NNODES-1; MASTER_ADDR = an address of node 0 that the other
#   nodes reach; the repo at the same path, data and OUT on shared storage):
#   MASTER_ADDR=node0 MASTER_PORT=29500 NNODES=2 NODE_RANK=0 GPUS_PER_NODE=8 scripts/multi_node/run_gpt2_124M_tcp.sh [flags...]
# Trainer flags set here (doc/data_parallel.md):
#   -dm tcp                     rendezvous over TCP
#   -ds MASTER_ADDR:MASTER_PORT where rank 0 listens (MASTER_PORT default 29500; a free port on node 0)
#   -dp NNODES*GPUS_PER_NODE    number of processes; -dr NODE_RANK*GPUS_PER_NODE + g for the g-th GPU of the node
#   -dl GPUS_PER_NODE           GPU = rank % GPUS_PER_NODE = g
#   -zs 0|1                     ZERO (0: all-reduce overlapped with the backward; 1: ZeRO-1)
#   plus the recipe of scripts/multi_node/common.sh (OUT, SEED, STEPS, DATA, B, T, TOTAL_BATCH, ...).
# Environment: MASTER_ADDR (required), MASTER_PORT (29500), NNODES (required), NODE_RANK (required), GPUS_PER_NODE
#   (default: the GPUs nvidia-smi lists), and the recipe's variables. Only rank 0 prints training output; every
#   rank's errors go to this terminal. When one process of this node fails, the script stops the node's other
#   processes and exits 1 (ranks on other nodes then lose their NCCL connections and fail too). Extra flags are
#   appended last and override.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
MN_SCRIPT=run_gpt2_124M_tcp
die() { echo "error: $MN_SCRIPT: $*" >&2; exit 1; }
[ -n "${MASTER_ADDR:-}" ] || die "set MASTER_ADDR (an address of node 0 reachable from every node)"
MASTER_PORT=${MASTER_PORT:-29500}
[[ $MASTER_PORT =~ ^[0-9]+$ ]] && [ "$MASTER_PORT" -ge 1 ] && [ "$MASTER_PORT" -le 65535 ] ||
  die "MASTER_PORT '$MASTER_PORT' is not a port in 1..65535"
[[ ${NNODES:-} =~ ^[1-9][0-9]*$ ]] || die "NNODES '${NNODES:-}' (number of nodes) is not a positive integer"
[[ ${NODE_RANK:-} =~ ^[0-9]+$ ]] && [ "$NODE_RANK" -lt "$NNODES" ] ||
  die "NODE_RANK '${NODE_RANK:-}' must be in 0 .. NNODES-1 = $((NNODES - 1))"
if [ -z "${GPUS_PER_NODE:-}" ]; then
  GPUS_PER_NODE=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
fi
[[ $GPUS_PER_NODE =~ ^[1-9][0-9]*$ ]] || die "GPUS_PER_NODE '$GPUS_PER_NODE' is not a positive integer (no GPU found?)"
NP=$(( NNODES * GPUS_PER_NODE ))
# shellcheck source=scripts/multi_node/common.sh
source scripts/multi_node/common.sh

pids=()
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap 'stop_all; exit 130' INT TERM
for g in $(seq 0 $((GPUS_PER_NODE - 1))); do
  rank=$(( NODE_RANK * GPUS_PER_NODE + g ))
  "$TRAINER" "${MN_ARGS[@]}" -dm tcp -dp "$NP" -dr "$rank" -ds "$MASTER_ADDR:$MASTER_PORT" -dl "$GPUS_PER_NODE" "$@" &
  pids+=($!)
done
echo "$MN_SCRIPT: node $NODE_RANK started ranks $(( NODE_RANK * GPUS_PER_NODE )) .. $(( (NODE_RANK + 1) * GPUS_PER_NODE - 1 )) of $NP"
rc=0
for _ in "${pids[@]}"; do
  # the first process to end: on a failure stop the others
  set +e
  wait -n
  r=$?
  set -e
  if [ "$r" -ne 0 ]; then
    echo "error: $MN_SCRIPT: a trainer process on node $NODE_RANK exited with $r; stopping the others" >&2
    rc=$r
    stop_all
    wait 2>/dev/null || true
    break
  fi
done
exit "$rc"
