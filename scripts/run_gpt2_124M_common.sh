# shellcheck shell=bash
# Shared body of scripts/run_gpt2_124M_{adamw,ivon,poco}.sh (sourced, not run): GPT-2 124M (d12) on one GPU with
# ./train_gpt2cu, llm.c style. The caller sets OPT (adamw|ivon|poco) and OPT_FLAGS (array of optimizer flags)
# and passes its "$@" (extra trainer flags, appended last so that they override).
#
# Recipe: OPTIMIZERS.md §7.1 (125M column), adapted to one GPU and to the data under dev/data/:
#   - data: DATA names a folder dev/data/<DATA>/ with llm.c token shards *_train*.bin / *_val*.bin (default
#     fineweb10B, llm.c's FineWeb 10B shards, ~9.9e9 train tokens; DATA=austen for the Austen corpus), or set
#     TRAIN_DATA / VAL_DATA (glob patterns). The recipe trains on OpenWebText.
#   - batch: T 1024, -d 491,520 tokens per step (the recipe's 20 x 24 x 1024), micro-batch B 48 for an 80 GB GPU
#     (bf16, -rc 1: ~31 GiB of activations by gpt2_allocate's table, room left for the IVON/PoCo state), so 10
#     micro-batches = 10 IVON MC samples per step (the recipe: 24; B=20 gives 24).
#   - ess: -ess -1 = the number of train tokens (fineweb10B ~9.9e9; the recipe's lambda 1e10 ~ its train tokens).
#   - run length: STEPS (default 20,000 steps = 9.8e9 tokens, one pass over fineweb10B) instead of 100k; warmup 2%
#     of STEPS (the recipe: 2,000 of 100k), cosine to 0 at the last step (-q 0), so the decay spans the run.
#   - eval: every STEPS/100 steps (the recipe: every 1,000 of 100k) on ceil(4,096,000 / (B*T)) val batches (the
#     recipe's 200 batches of 20 x 1024 tokens), at the mean; IVON/PoCo add the BMA val loss (-bma 4).
#   - checkpoints every STEPS/20 steps, the last 2 kept (-nk 2), every STEPS/4 steps kept for good (-nm); -y 1
#     resumes from the newest complete checkpoint in OUT, and a failed run is retried RETRIES times (llm.c style).
#   - one seed (-seed SEED) for init, data order and noise; the recipe uses 1337 + rank on 8 GPUs.
#
# Environment: OUT (log_runs/gpt2_124M/<opt>_seed<SEED>), SEED (1337), STEPS (20000), DATA (fineweb10B),
#   TRAIN_DATA, VAL_DATA, B (48), T (1024), TOTAL_BATCH (491520), WARMUP, FINAL_LR_FRAC (0), VAL_EVERY,
#   VAL_BATCHES, CKPT_EVERY, CKPT_KEEP (2), CKPT_MAJOR, SAMPLE_EVERY (0 = off), MODEL (d12),
#   TRAINER (./train_gpt2cu; built with make unless set), RETRIES (3), FORCE (1: run even if OUT holds a
#   finished run or checkpoints of another command).
# Output in OUT: main.log, train.out (trainer output of every attempt), cmd.txt (the command), checkpoints.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

gpu_die() { echo "error: run_gpt2_124M_$OPT: $*" >&2; exit 1; }
gpu_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
gpu_pos() { gpu_uint "$1" && [ "$1" -ge 1 ]; }

GPU_DEFAULT_STEPS=20000
if [ "${1:-}" = "--default-steps" ]; then echo "$GPU_DEFAULT_STEPS"; exit 0; fi

SEED=${SEED:-1337}
STEPS=${STEPS:-$GPU_DEFAULT_STEPS}
B=${B:-48}
T=${T:-1024}
TOTAL_BATCH=${TOTAL_BATCH:-491520}
MODEL=${MODEL:-d12}
gpu_uint "$SEED" || gpu_die "SEED '$SEED' is not a non-negative integer"
for v in STEPS B T TOTAL_BATCH; do gpu_pos "${!v}" || gpu_die "$v '${!v}' is not a positive integer"; done
[ $(( TOTAL_BATCH % (B * T) )) -eq 0 ] || gpu_die "TOTAL_BATCH $TOTAL_BATCH is not a multiple of B*T = $((B * T))"
OUT=${OUT:-log_runs/gpt2_124M/${OPT}_seed${SEED}}
DATA=${DATA:-fineweb10B}
TRAIN_DATA=${TRAIN_DATA:-dev/data/$DATA/*_train*.bin}
VAL_DATA=${VAL_DATA:-dev/data/$DATA/*_val*.bin}
WARMUP=${WARMUP:-$(( STEPS * 2 / 100 > 0 ? STEPS * 2 / 100 : 1 ))}
FINAL_LR_FRAC=${FINAL_LR_FRAC:-0}
VAL_EVERY=${VAL_EVERY:-$(( STEPS / 100 > 0 ? STEPS / 100 : 1 ))}
VAL_BATCHES=${VAL_BATCHES:-$(( (4096000 + B * T - 1) / (B * T) ))}
CKPT_EVERY=${CKPT_EVERY:-$(( STEPS / 20 > 0 ? STEPS / 20 : 1 ))}
CKPT_KEEP=${CKPT_KEEP:-2}
CKPT_MAJOR=${CKPT_MAJOR:-$(( STEPS / 4 ))}
SAMPLE_EVERY=${SAMPLE_EVERY:-0}
RETRIES=${RETRIES:-3}
for v in WARMUP VAL_EVERY VAL_BATCHES CKPT_EVERY CKPT_KEEP CKPT_MAJOR SAMPLE_EVERY RETRIES; do
  gpu_uint "${!v}" || gpu_die "$v '${!v}' is not a non-negative integer"
done
gpu_pos "$VAL_EVERY" || gpu_die "VAL_EVERY must be >= 1 (the final val line marks a finished run)"
gpu_pos "$CKPT_EVERY" || gpu_die "CKPT_EVERY must be >= 1 (retries resume from checkpoints; the last one marks a finished run)"

compgen -G "$TRAIN_DATA" >/dev/null || \
  gpu_die "no train shards match '$TRAIN_DATA' (DATA=$DATA / TRAIN_DATA); put llm.c token shards under dev/data/$DATA/"
compgen -G "$VAL_DATA" >/dev/null || \
  gpu_die "no val shards match '$VAL_DATA' (DATA=$DATA / VAL_DATA); put llm.c token shards under dev/data/$DATA/"
build=0
if [ -z "${TRAINER:-}" ]; then TRAINER=./train_gpt2cu; build=1; fi

args=(-i "$TRAIN_DATA" -j "$VAL_DATA" -e "$MODEL" -b "$B" -t "$T" -d "$TOTAL_BATCH" -x "$STEPS"
      -k cosine -u "$WARMUP" -q "$FINAL_LR_FRAC" -v "$VAL_EVERY" -m "$VAL_BATCHES" -s "$SAMPLE_EVERY" -g 144
      -n "$CKPT_EVERY" -nk "$CKPT_KEEP" -nm "$CKPT_MAJOR" -opt "$OPT" "${OPT_FLAGS[@]}" -seed "$SEED"
      "$@" -o "$OUT" -y 1)
cmd="$TRAINER $(printf '%q ' "${args[@]}")"
cmd=${cmd% }
done_file=$(printf '%s/DONE_%08d' "$OUT" "$STEPS")

gpu_finished() { [ -f "$done_file" ] && [ -f "$OUT/main.log" ] && grep -qE "^s:$STEPS tel:" "$OUT/main.log"; }
same_cmd=0
if [ -f "$OUT/cmd.txt" ] && [ "$(cat "$OUT/cmd.txt")" = "$cmd" ]; then same_cmd=1; fi
if gpu_finished && [ "${FORCE:-0}" != 1 ]; then
  [ "$same_cmd" = 1 ] || gpu_die "OUT '$OUT' holds a finished run of another command (see $OUT/cmd.txt); set OUT or FORCE=1"
  echo "skip: $OUT (finished run of the same command)"
  exit 0
fi
if [ "$same_cmd" = 0 ] && compgen -G "$OUT/DONE_*" >/dev/null && [ "${FORCE:-0}" != 1 ]; then
  gpu_die "OUT '$OUT' holds checkpoints of another command (see $OUT/cmd.txt); -y 1 would resume them; set OUT or FORCE=1"
fi

if [ "$build" = 1 ]; then
  make -s train_gpt2cu >/dev/null || gpu_die "'make train_gpt2cu' failed (needs CUDA; see doc/cuda.md)"
fi
[ -x "$TRAINER" ] || gpu_die "trainer '$TRAINER' (TRAINER) is not an executable file"
mkdir -p "$OUT"
printf '%s\n' "$cmd" > "$OUT/cmd.txt"
echo "run: $OUT: $cmd"
attempt=0
while :; do
  lines=0; if [ -f "$OUT/train.out" ]; then lines=$(wc -l < "$OUT/train.out"); fi
  set +o pipefail
  "$TRAINER" "${args[@]}" 2>&1 | tee -a "$OUT/train.out"; rc=${PIPESTATUS[0]}
  set -o pipefail
  if [ "$rc" -eq 0 ] && gpu_finished; then break; fi
  attempt=$((attempt + 1))
  why=$(tail -n +"$((lines + 1))" "$OUT/train.out" | grep -E "^error:" | tail -n 1 || true)
  # a bad flag or file fails the same way every time: no retry
  if [ "$attempt" -gt "$RETRIES" ] || [[ $why =~ ^error:\ (flag|data file|model file|state file|tokenizer file|no data files) ]]; then
    gpu_die "trainer exited with $rc after $attempt attempt(s)${why:+ ($why)}; output in $OUT/train.out"
  fi
  echo "run_gpt2_124M_$OPT: trainer exited with $rc; retry $attempt of $RETRIES from the newest checkpoint in 10 s"
  sleep 10
done
echo "done: $OUT: $(grep -E "^s:$STEPS tel:" "$OUT/main.log" | tail -n 1)"
