# shellcheck shell=bash disable=SC2034
# Shared body of scripts/multi_node/run_gpt2_124M_{mpi,tcp}.sh and run_gpt2_124M_slurm_fs.sbatch (sourced, not run):
# the GPT-2 124M (d12) AdamW recipe of scripts/run_gpt2_124M_adamw.sh for NP data-parallel processes (one per GPU).
# The caller sets NP and gets the trainer flags in the array MN_ARGS (the data-parallel flags -dm/-dp/-dr/-ds/-df/-dl
# are the caller's), then appends its own and the user's extra flags, which override (the last value of a flag wins).
#
# Recipe (as the single-GPU script): T 1024, -d 491,520 tokens per step in all, STEPS 20,000, warmup 2% of STEPS,
# cosine to 0, peak lr 6e-4, weight decay 0.1, clip 1.0, val every STEPS/100 steps on ~4.1M tokens, checkpoints every
# STEPS/20 steps (-nk 2, -nm STEPS/4), -y 1 (a rerun resumes from the newest checkpoint in OUT).
# B: the largest micro-batch <= BMAX (48) that divides TOTAL_BATCH / (T * NP) (so -d is a multiple of B*T*NP); the
# micro-batches per step per process are then TOTAL_BATCH / (B * T * NP).
#
# Environment: NP (set by the caller), OUT (log_runs/gpt2_124M_dp/adamw_np<NP>_seed<SEED>; must be on storage shared
#   by all nodes: rank 0 writes the checkpoints, every rank reads them on a resume), SEED (1337), STEPS (20000),
#   DATA (fineweb10B: dev/data/<DATA>/*_train*.bin, *_val*.bin), TRAIN_DATA, VAL_DATA, B (auto), BMAX (48), T (1024),
#   TOTAL_BATCH (491520), ZERO (0; 1 = ZeRO-1, -zs 1), MODEL (d12), WARMUP, VAL_EVERY, VAL_BATCHES, CKPT_EVERY,
#   CKPT_KEEP (2), CKPT_MAJOR, TRAINER (./train_gpt2cu; the same path on every node).
# The GPU trainer runs AdamW only for now (-opt ivon|poco are refused by train_gpt2cu).

mn_die() { echo "error: $MN_SCRIPT: $*" >&2; exit 1; }
mn_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
mn_pos() { mn_uint "$1" && [ "$1" -ge 1 ]; }

mn_pos "${NP:-}" || mn_die "NP '${NP:-}' (number of processes) is not a positive integer"
SEED=${SEED:-1337}
STEPS=${STEPS:-20000}
T=${T:-1024}
TOTAL_BATCH=${TOTAL_BATCH:-491520}
BMAX=${BMAX:-48}
ZERO=${ZERO:-0}
MODEL=${MODEL:-d12}
mn_uint "$SEED" || mn_die "SEED '$SEED' is not a non-negative integer"
for v in STEPS T TOTAL_BATCH BMAX; do mn_pos "${!v}" || mn_die "$v '${!v}' is not a positive integer"; done
[ "$ZERO" = 0 ] || [ "$ZERO" = 1 ] || mn_die "ZERO '$ZERO' must be 0 or 1"
[ $(( TOTAL_BATCH % (T * NP) )) -eq 0 ] || mn_die "TOTAL_BATCH $TOTAL_BATCH is not a multiple of T*NP = $((T * NP))"
per=$(( TOTAL_BATCH / (T * NP) ))  # sequences per process per step
if [ -z "${B:-}" ]; then
  B=1
  for ((b = BMAX; b >= 1; b--)); do if [ $(( per % b )) -eq 0 ]; then B=$b; break; fi; done
fi
mn_pos "$B" || mn_die "B '$B' is not a positive integer"
[ $(( per % B )) -eq 0 ] || mn_die "TOTAL_BATCH $TOTAL_BATCH is not a multiple of B*T*NP = $((B * T * NP))"
OUT=${OUT:-log_runs/gpt2_124M_dp/adamw_np${NP}_seed${SEED}}
DATA=${DATA:-fineweb10B}
TRAIN_DATA=${TRAIN_DATA:-dev/data/$DATA/*_train*.bin}
VAL_DATA=${VAL_DATA:-dev/data/$DATA/*_val*.bin}
WARMUP=${WARMUP:-$(( STEPS * 2 / 100 > 0 ? STEPS * 2 / 100 : 1 ))}
VAL_EVERY=${VAL_EVERY:-$(( STEPS / 100 > 0 ? STEPS / 100 : 1 ))}
# -m is the total over the processes (each evaluates -m / NP): ~4,096,000 tokens, a multiple of NP
VAL_BATCHES=${VAL_BATCHES:-$(( ((4096000 + B * T - 1) / (B * T) + NP - 1) / NP * NP ))}
CKPT_EVERY=${CKPT_EVERY:-$(( STEPS / 20 > 0 ? STEPS / 20 : 1 ))}
CKPT_KEEP=${CKPT_KEEP:-2}
CKPT_MAJOR=${CKPT_MAJOR:-$(( STEPS / 4 ))}
for v in WARMUP VAL_EVERY VAL_BATCHES CKPT_EVERY CKPT_KEEP CKPT_MAJOR; do
  mn_uint "${!v}" || mn_die "$v '${!v}' is not a non-negative integer"
done
compgen -G "$TRAIN_DATA" >/dev/null || mn_die "no train shards match '$TRAIN_DATA' (DATA=$DATA / TRAIN_DATA)"
compgen -G "$VAL_DATA" >/dev/null || mn_die "no val shards match '$VAL_DATA' (DATA=$DATA / VAL_DATA)"
TRAINER=${TRAINER:-./train_gpt2cu}
[ -x "$TRAINER" ] || mn_die "trainer '$TRAINER' (TRAINER) is not an executable file (make train_gpt2cu)"
mkdir -p "$OUT" || mn_die "cannot create OUT '$OUT'"

MN_ARGS=(-i "$TRAIN_DATA" -j "$VAL_DATA" -e "$MODEL" -b "$B" -t "$T" -d "$TOTAL_BATCH" -x "$STEPS"
         -k cosine -u "$WARMUP" -q 0 -l 6e-4 -c 0.1 -gc 1.0 -opt adamw -seed "$SEED"
         -v "$VAL_EVERY" -m "$VAL_BATCHES" -s 0 -n "$CKPT_EVERY" -nk "$CKPT_KEEP" -nm "$CKPT_MAJOR"
         -zs "$ZERO" -o "$OUT" -y 1)
echo "$MN_SCRIPT: $NP processes, B=$B T=$T, $(( per / B )) micro-batches per process, $TOTAL_BATCH tokens per step," \
     "ZeRO-$ZERO, OUT=$OUT"
