# shellcheck shell=bash
# Shared sweep engine of scripts/sweep_{lr,ivon,poco}.sh (sourced, not run).
#   sweep_lists VAR...     checks that the list variables are not empty
#   sweep_init NAME        resolves TARGET, STEPS, ROOT, TAG_SUFFIX, EXTRA (see below)
#   sweep_add OPT SEED TAG LR FLAGS...   queues one run (LR empty = the run script's default lr)
#   sweep_run              runs the queue in order, then prints (and writes) the summary table; returns 1 if a run
#                          failed
# Each run has its own log directory: TARGET=cpu (default): scripts/run_cpu_small.sh OPT SEED FLAGS with TAG and
# LR in the environment, in $ROOT/<opt>_seed<SEED><TAG> (ROOT default log_runs/cpu_small); TARGET=gpu:
# scripts/run_gpt2_124M_<opt>.sh [-l LR] FLAGS with OUT=$ROOT/<opt>_seed<SEED><TAG> (ROOT default
# log_runs/gpt2_124M). A run whose directory holds a finished log of the same command (the val line of step STEPS)
# is skipped by the run script, so a sweep started again resumes where it stopped.
# Environment: TARGET (cpu|gpu), STEPS (the run script's default), ROOT, TAG_SUFFIX (appended to every run's
# tag, to keep variants apart), EXTRA (trainer flags added to every run, split at spaces), SUMMARY (file for the
# summary table; default $ROOT/sweep_<NAME>.md), PYTHON (/usr/bin/python3).

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

sweep_die() { echo "error: $(basename "$0" .sh): $*" >&2; exit 1; }

sweep_init() {
  SWEEP_NAME=$1
  TARGET=${TARGET:-cpu}
  PYTHON=${PYTHON:-/usr/bin/python3}
  case $TARGET in
    cpu) ROOT=${ROOT:-log_runs/cpu_small}; STEPS=${STEPS:-$(scripts/run_cpu_small.sh --default-steps)} ;;
    gpu) ROOT=${ROOT:-log_runs/gpt2_124M}; STEPS=${STEPS:-$(bash scripts/run_gpt2_124M_adamw.sh --default-steps)} ;;
    *) sweep_die "TARGET '$TARGET' is not cpu or gpu" ;;
  esac
  if ! [[ $STEPS =~ ^[0-9]+$ ]] || [ "$STEPS" -lt 1 ]; then sweep_die "STEPS '$STEPS' is not a positive integer"; fi
  TAG_SUFFIX=${TAG_SUFFIX:-}
  EXTRA=${EXTRA:-}
  SUMMARY=${SUMMARY:-$ROOT/sweep_$SWEEP_NAME.md}
  export STEPS ROOT
  SWEEP_Q=()
}

# checks that each named list variable holds at least one word; run in the sweep's own shell (not in $(...))
sweep_lists() {
  local name
  for name in "$@"; do [ -n "${!name// /}" ] || sweep_die "$name is empty"; done
}

sweep_add() {
  local opt=$1 seed=$2 tag=$3 lr=$4
  shift 4
  case $opt in adamw|ivon|poco) ;; *) sweep_die "optimizer '$opt' is not one of adamw, ivon, poco" ;; esac
  [[ $seed =~ ^[0-9]+$ ]] || sweep_die "seed '$seed' is not a non-negative integer"
  [[ $tag$TAG_SUFFIX =~ ^[A-Za-z0-9._=+-]*$ ]] || sweep_die "run tag '$tag$TAG_SUFFIX' has characters other than letters, digits and ._=+-"
  SWEEP_Q+=("$opt"$'\x1f'"$seed"$'\x1f'"$tag$TAG_SUFFIX"$'\x1f'"$lr"$'\x1f'"$*")
}

sweep_dir() { echo "$ROOT/$1_seed$2$3"; }

sweep_run() {
  local entry opt seed tag lr flags dir rc n=0 total=${#SWEEP_Q[@]}
  local -a ok=() failed=() extra
  read -r -a extra <<< "$EXTRA"
  echo "sweep $SWEEP_NAME: $total runs, target $TARGET, $STEPS steps, run dirs under $ROOT"
  for entry in "${SWEEP_Q[@]}"; do
    IFS=$'\x1f' read -r opt seed tag lr flags <<< "$entry"
    local -a fl=()
    read -r -a fl <<< "$flags"
    fl+=("${extra[@]}")
    dir=$(sweep_dir "$opt" "$seed" "$tag")
    n=$((n + 1))
    echo "== [$n/$total] $dir"
    rc=0
    if [ "$TARGET" = cpu ]; then
      if [ -n "$lr" ]; then
        TAG=$tag LR=$lr scripts/run_cpu_small.sh "$opt" "$seed" "${fl[@]}" || rc=$?
      else
        TAG=$tag scripts/run_cpu_small.sh "$opt" "$seed" "${fl[@]}" || rc=$?
      fi
    else
      if [ -n "$lr" ]; then fl=(-l "$lr" "${fl[@]}"); fi
      OUT=$dir SEED=$seed bash "scripts/run_gpt2_124M_$opt.sh" "${fl[@]}" || rc=$?
    fi
    if [ "$rc" -eq 0 ] && [ -f "$dir/main.log" ] && grep -qE "^s:$STEPS tel:" "$dir/main.log"; then
      ok+=("$dir")
    else
      failed+=("$dir")
    fi
  done
  sweep_summary "${ok[@]+"${ok[@]}"}"
  if [ ${#failed[@]} -gt 0 ]; then
    printf 'failed: %s\n' "${failed[@]}" | tee -a "$SUMMARY"
    echo "sweep $SWEEP_NAME: ${#failed[@]} of $total runs failed (their output: <dir>/train.out)"
    return 1
  fi
  return 0
}

# summary table of the finished runs (one row each, named by the run dir) at step STEPS, via make_table.py
sweep_summary() {
  local -a groups=()
  local d
  for d in "$@"; do groups+=(--group "$(basename "$d")=$d"); done
  mkdir -p "$(dirname "$SUMMARY")"
  if [ ${#groups[@]} -eq 0 ]; then
    echo "sweep $SWEEP_NAME: no finished run" | tee "$SUMMARY"
    return 0
  fi
  echo
  { echo "sweep $SWEEP_NAME ($TARGET, $STEPS steps)"; echo; "$PYTHON" scripts/make_table.py --step "$STEPS" --name-header run "${groups[@]}"; } \
    | tee "$SUMMARY"
  echo "summary written to $SUMMARY"
}
