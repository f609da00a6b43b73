# shellcheck shell=bash disable=SC2154
# Helpers of the data-parallel tests of train_gpt2cu, sourced by dev/test/test_dist_gpu.sh (GPUs) and
# dev/test/test_dist_cuda_cpu.sh (the CPU backend, dev/cuda_cpu). The sourcing script sets, before calling them:
#   tmp          scratch directory (run directories and outputs go there)
#   BASE         flags of every training run
#   RUN_TIMEOUT  seconds per run: a hang fails the check instead of blocking
#   PY           a python with numpy (dev/test/compare_runs.py)
#   MPIRUN       the MPI launcher
# Each check prints one PASS / FAIL / SKIP line; dist_summary prints `N passed, N failed` and fails on a FAIL.
# Not executable on its own.

pass=0
fail=0
skip=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
skipped() { echo "SKIP $1"; skip=$((skip + 1)); }
dist_summary() {
  echo "$pass passed, $fail failed ($skip skipped)"
  [ "$fail" -eq 0 ]
}

# run <name> <binary> <flags...>: one process, output in $tmp/<name>.out, checkpoints in $tmp/<name>
run() {
  local name=$1 bin=$2; shift 2
  # shellcheck disable=SC2086
  timeout "$RUN_TIMEOUT" "$bin" $BASE "$@" -o "$tmp/$name" > "$tmp/$name.out" 2>&1 ||
    { echo "  $name failed (rc $?):"; tail -3 "$tmp/$name.out" | sed 's/^/    /'; return 1; }
}

# runmpi <name> <processes> <binary> <flags...>: under $MPIRUN -np <processes>, output (rank 0's stdout, every
# rank's stderr) in $tmp/<name>.out
runmpi() {
  local name=$1 np=$2 bin=$3; shift 3
  # shellcheck disable=SC2086
  timeout "$RUN_TIMEOUT" "$MPIRUN" -np "$np" "$bin" $BASE "$@" -o "$tmp/$name" > "$tmp/$name.out" 2>&1 ||
    { echo "  $name failed (rc $?):"; tail -3 "$tmp/$name.out" | sed 's/^/    /'; return 1; }
}

# a TCP port nobody listens on now (rank 0 of -dm tcp binds it a moment later)
free_port() {
  $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_ranks <name> <fs|tcp> <ranks> <binary> <flags...>: starts <ranks> processes in the background, each under
# timeout, with -dm fs (a fresh rendezvous dir per run) or -dm tcp (a free port on 127.0.0.1), all writing to
# -o $tmp/<name>; rank r's stdout and stderr go to $tmp/<name>.<r>.out. Rank 1 alone also gets R1_ENV
# (VAR=value words) in its environment and R1_FLAGS on its command line (a fault on one rank). The pids (of
# timeout) are in rank_pids[r].
start_ranks() {
  local name=$1 method=$2 np=$3 bin=$4; shift 4
  local r rdv envs flags
  if [ "$method" = tcp ]; then rdv="-ds 127.0.0.1:$(free_port)"; else rdv="-df $tmp/rdv_$name"; fi
  rank_pids=()
  for r in $(seq 0 $((np - 1))); do
    envs=""; flags=""
    [ "$r" -eq 1 ] && { envs=${R1_ENV:-}; flags=${R1_FLAGS:-}; }
    # shellcheck disable=SC2086
    env $envs timeout "$RUN_TIMEOUT" "$bin" $BASE "$@" $flags -dm "$method" -dp "$np" -dr "$r" $rdv \
      -o "$tmp/$name" > "$tmp/$name.$r.out" 2>&1 &
    rank_pids[r]=$!
  done
}

# wait_ranks <name>: waits for the ranks of start_ranks; their exit codes go to $tmp/<name>.rc (124: the time
# limit), rank 0's output is copied to $tmp/<name>.out; returns the last non-zero exit code, else 0
wait_ranks() {
  local name=$1 r one rc=0 rcs=""
  for r in "${!rank_pids[@]}"; do
    one=0
    { wait "${rank_pids[$r]}"; } 2>/dev/null || one=$?
    rcs="$rcs $one"
    [ "$one" -ne 0 ] && rc=$one
  done
  echo "$rcs" > "$tmp/$name.rc"
  cp "$tmp/$name.0.out" "$tmp/$name.out"
  return "$rc"
}

# runnet <name> <fs|tcp> <ranks> <binary> <flags...>: start_ranks, then wait_ranks; prints the ranks' last lines
# on a failure
runnet() {
  local name=$1 np=$3 r rc=0
  start_ranks "$@"
  wait_ranks "$name" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "  $name failed (rc $rc):"
    for r in $(seq 0 $((np - 1))); do tail -2 "$tmp/$name.$r.out" | sed "s/^/    rank $r: /"; done
    return 1
  fi
}
runfs() {  # runfs <name> <ranks> <binary> <flags...>
  local name=$1; shift
  runnet "$name" fs "$@"
}

# compare <label> <step> <dir a> <dir b> <compare_runs.py args...>: one PASS / FAIL line, then its report
compare() {
  local label=$1 step=$2 a=$3 b=$4; shift 4
  local out
  if out=$($PY dev/test/compare_runs.py "$tmp/$a" "$tmp/$b" "$step" "$@" 2>&1); then ok "$label"; else bad "$label"; fi
  echo "$out" | sed 's/^/    /'
}

# the NCCL line proves that the run went through a communicator
has_nccl() { grep -q "^nccl: version" "$tmp/$1.out"; }

# err_case <label> <pattern> <command...>: the command must exit non-zero (not by the time limit) with a line on
# stderr matching the pattern
err_case() {
  local label=$1 pat=$2; shift 2
  local out rc
  out=$(timeout "$RUN_TIMEOUT" "$@" 2>&1 >/dev/null); rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 124 ] && printf '%s\n' "$out" | grep -q -- "$pat"; then ok "$label"
  else bad "$label (rc $rc): $(printf '%s\n' "$out" | head -2)"; fi
}
