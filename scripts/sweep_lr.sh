#!/usr/bin/env bash
# Learning-rate sweep: every optimizer of OPTS at each lr of its list, for each seed of SEEDS; one run dir each,
# <opt>_seed<S>_lr<LR>; finished runs are skipped, so the sweep resumes; a summary table at the end.
# Usage: scripts/sweep_lr.sh                    (or with the environment below; nothing on the command line)
# Environment: OPTS ("adamw ivon poco"), LRS_ADAMW ("1e-4 3e-4 1e-3 3e-3"), LRS_IVON and LRS_POCO ("100 300 1000 3000",
#   the un-rescaled peak lr -l; effective = lr x (h0 + delta)), SEEDS ("1337"), TARGET (cpu: run_cpu_small.sh,
#   gpu: run_gpt2_124M_<opt>.sh), STEPS, ROOT, TAG_SUFFIX, EXTRA, SUMMARY (scripts/sweep_common.sh).
# PoCo's -pst / -pp: the run script's defaults (cpu: POCO_START, POCO_PERIOD in the environment).
# shellcheck source=scripts/sweep_common.sh
source "$(dirname "$0")/sweep_common.sh"
[ $# -eq 0 ] || sweep_die "takes no arguments (got '$*'); set the lists in the environment"
sweep_init lr
OPTS=${OPTS:-adamw ivon poco}
LRS_ADAMW=${LRS_ADAMW:-1e-4 3e-4 1e-3 3e-3}
LRS_IVON=${LRS_IVON:-100 300 1000 3000}
LRS_POCO=${LRS_POCO:-100 300 1000 3000}
SEEDS=${SEEDS:-1337}
sweep_lists SEEDS OPTS
for opt in $OPTS; do
  case $opt in adamw) sweep_lists LRS_ADAMW ;; ivon) sweep_lists LRS_IVON ;; poco) sweep_lists LRS_POCO ;; esac
done
for seed in $SEEDS; do
  for opt in $OPTS; do
    case $opt in adamw) lrs=LRS_ADAMW ;; ivon) lrs=LRS_IVON ;; poco) lrs=LRS_POCO ;;
      *) sweep_die "OPTS: '$opt' is not one of adamw, ivon, poco" ;; esac
    for lr in ${!lrs}; do
      [[ $lr =~ ^[0-9.eE+-]+$ ]] || sweep_die "$lrs: '$lr' is not a number"
      sweep_add "$opt" "$seed" "_lr$lr" "$lr"
    done
  done
done
sweep_run
