#!/usr/bin/env bash
# One small CPU run of ./train_gpt2: the d4 model (16.3M parameters) on the Austen corpus, B=8, T=128
# (1,024 tokens per step), the same number of steps for every optimizer.
#
# Usage: scripts/run_cpu_small.sh OPT [SEED] [extra trainer flags...]
#   OPT    adamw | ivon | poco
#   SEED   -seed of the run (default: $SEED, else 1337)
#   extra flags go to ./train_gpt2 after the script's own, so they override them (the parser keeps the last value)
# Output: $ROOT/<opt>_seed<SEED><TAG>/ with main.log (trainer log), train.out (trainer stdout/stderr),
#         cmd.txt (the exact command) and wall_s (wall-clock seconds of the run).
#
# The recipe is OPTIMIZERS.md §7.1 (IVON paper, GPT-2), adapted to this model and corpus:
#   - model d4 on Austen (878,249 train tokens) instead of GPT-2 125M on OpenWebText; B*T = 8*128 tokens per step,
#     one micro-batch = one IVON MC sample per step (the recipe: 24 micro-batches of 20*1024).
#   - ess: -ess -1, the number of train tokens (the recipe's lambda = 1e10 is of the order of its train tokens).
#   - run length: STEPS (default 200: 1.5 to 4 minutes per run on 2 cores) instead of 100k; warmup 2% of the steps
#     (recipe: 2,000 of 100k), cosine to FINAL_LR_FRAC (default 0, as the recipe) at the last step: the decay spans
#     the whole run.
#   - lr: AdamW 1e-3 (the quickstart's; the recipe's 6e-4 is for 125M), IVON/PoCo 300 (recipe, effective 0.3).
#   - IVON constants as the recipe (trainer defaults): h0 1e-3, beta1 0.9, beta2 0.99999, r 1e-3, delta 1e-6 / 0,
#     per-micro-batch clip 1.0. AdamW: betas (0.9, 0.95), wd 0.1, clip 1.0.
#   - eval: every 50 steps on the first 20 val batches (-m 20, 20,480 tokens of Persuasion) at the mean, plus the
#     BMA val loss with 4 samples for IVON/PoCo (trainer default); recipe: every 1,000 steps, 200 batches.
#   - PoCo: first corrected step -pst = STEPS/2 (trainer default 50%), refresh period -pp = min(32, (STEPS - pst)/4)
#     so that the corrected half has at least 4 anchor refreshes; other switches at their defaults.
#   - no samples (-s 0), no checkpoints.
#
# Environment:
#   STEPS (200), TAG (suffix of the run dir name, e.g. _lr3e-4), ROOT (log_runs/cpu_small),
#   LR (peak lr; default per optimizer as above), WARMUP (2% of STEPS, at least 1), FINAL_LR_FRAC (0),
#   POCO_START (STEPS/2), POCO_PERIOD (see above), TRAIN_DATA / VAL_DATA (dev/data/austen/austen_{train,val}.bin),
#   TRAINER (./train_gpt2), VERBOSE (1: show the trainer's output), FORCE (1: rerun a finished run),
#   OMP_NUM_THREADS (all cores), OMP_WAIT_POLICY (passive).
# A run dir that already holds a finished run (main.log has the val line of the last step) of the same command is
# skipped (exit 0, "skip:" line), so that sweeps resume; one of a different command stops the script with an error.
# --default-steps prints the default STEPS and exits.
set -euo pipefail
cd "$(dirname "$0")/.."

DEFAULT_STEPS=200
die() { echo "error: run_cpu_small: $*" >&2; exit 1; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

if [ "${1:-}" = "--default-steps" ]; then echo "$DEFAULT_STEPS"; exit 0; fi
[ $# -ge 1 ] || die "missing OPT; usage: scripts/run_cpu_small.sh adamw|ivon|poco [SEED] [extra flags...]"
OPT=$1; shift
case $OPT in adamw|ivon|poco) ;; *) die "OPT '$OPT' is not one of adamw, ivon, poco" ;; esac
SEED=${SEED:-1337}
if [ $# -ge 1 ] && [[ $1 != -* ]]; then SEED=$1; shift; fi
is_uint "$SEED" || die "SEED '$SEED' is not a non-negative integer"

STEPS=${STEPS:-$DEFAULT_STEPS}
if ! is_uint "$STEPS" || [ "$STEPS" -lt 1 ]; then die "STEPS '$STEPS' is not a positive integer"; fi
TAG=${TAG:-}
[[ $TAG =~ ^[A-Za-z0-9._=+-]*$ ]] || die "TAG '$TAG' has characters other than letters, digits and ._=+-"
ROOT=${ROOT:-log_runs/cpu_small}
WARMUP=${WARMUP:-$(( STEPS * 2 / 100 > 0 ? STEPS * 2 / 100 : 1 ))}
FINAL_LR_FRAC=${FINAL_LR_FRAC:-0}
TRAIN_DATA=${TRAIN_DATA:-dev/data/austen/austen_train.bin}
VAL_DATA=${VAL_DATA:-dev/data/austen/austen_val.bin}
TRAINER=${TRAINER:-./train_gpt2}
is_uint "$WARMUP" || die "WARMUP '$WARMUP' is not a non-negative integer"
case $OPT in adamw) LR=${LR:-1e-3} ;; *) LR=${LR:-300} ;; esac

compgen -G "$TRAIN_DATA" >/dev/null || die "train data '$TRAIN_DATA' (TRAIN_DATA) not found; run 'make data'"
compgen -G "$VAL_DATA" >/dev/null || die "val data '$VAL_DATA' (VAL_DATA) not found; run 'make data'"

dir="$ROOT/${OPT}_seed${SEED}${TAG}"
args=(-i "$TRAIN_DATA" -j "$VAL_DATA" -e d4 -b 8 -t 128 -x "$STEPS" -k cosine -u "$WARMUP" -q "$FINAL_LR_FRAC"
      -v 50 -m 20 -s 0 -opt "$OPT" -l "$LR" -seed "$SEED")
if [ "$OPT" != adamw ]; then args+=(-ess -1); fi
if [ "$OPT" = poco ]; then
  POCO_START=${POCO_START:-$(( STEPS / 2 ))}
  is_uint "$POCO_START" || die "POCO_START '$POCO_START' is not a non-negative integer"
  pp=$(( (STEPS - POCO_START) / 4 )); pp=$(( pp < 1 ? 1 : (pp > 32 ? 32 : pp) ))
  POCO_PERIOD=${POCO_PERIOD:-$pp}
  args+=(-pst "$POCO_START" -pp "$POCO_PERIOD")
fi
args+=("$@" -o "$dir")
cmd="$TRAINER $(printf '%q ' "${args[@]}")"
cmd=${cmd% }

# a finished run: the val line of the last step is in main.log (a resumed run appends; any occurrence counts)
if [ -f "$dir/main.log" ] && grep -qE "^s:$STEPS tel:" "$dir/main.log"; then
  if [ -f "$dir/cmd.txt" ] && [ "$(cat "$dir/cmd.txt")" = "$cmd" ]; then
    if [ "${FORCE:-0}" != 1 ]; then echo "skip: $dir (finished run of the same command)"; exit 0; fi
  elif [ "${FORCE:-0}" != 1 ]; then
    die "run dir '$dir' holds a finished run of another command (see $dir/cmd.txt); use another TAG or FORCE=1"
  fi
fi

if [ "$TRAINER" = ./train_gpt2 ]; then make -s train_gpt2 >/dev/null || die "'make train_gpt2' failed"; fi
[ -x "$TRAINER" ] || die "trainer '$TRAINER' (TRAINER) is not an executable file"
mkdir -p "$dir"
printf '%s\n' "$cmd" > "$dir/cmd.txt"
rm -f "$dir/wall_s"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
echo "run: $dir: $cmd"
t0=$(date +%s.%N)
if [ "${VERBOSE:-0}" = 1 ]; then
  set +o pipefail
  "$TRAINER" "${args[@]}" 2>&1 | tee "$dir/train.out"; rc=${PIPESTATUS[0]}
  set -o pipefail
else
  rc=0; "$TRAINER" "${args[@]}" > "$dir/train.out" 2>&1 || rc=$?
fi
t1=$(date +%s.%N)
if [ "$rc" -ne 0 ]; then
  why=$(grep -E "^error:" "$dir/train.out" | tail -n 1 || true)
  die "trainer exited with $rc${why:+ ($why)}; output in $dir/train.out"
fi
wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
echo "$wall" > "$dir/wall_s"
val=$(grep -E "^s:$STEPS tel:" "$dir/main.log" | tail -n 1 || true)
[ -n "$val" ] || die "no val line for step $STEPS in $dir/main.log (is -v 0 among the extra flags?)"
echo "done: $dir: ${val#"s:$STEPS "} wall ${wall}s ($(sed -nE 's/total average iteration time: (.*)/\1/p' "$dir/train.out") per step)"
