#!/usr/bin/env bash
# IVON-PoCo sweep over the correction strength gamma (-pg) and the anchor refresh period T_out (-pp): every pair
# of the two lists, for each seed of SEEDS; one run dir each, poco_seed<S>_pg<G>_pp<P>; finished runs are skipped,
# so the sweep resumes; a summary table at the end. The mega-batch of a refresh is -pp x micro-batches per step
# (-pmb -1), so the mega-batch tokens of a run barely depend on -pp; the corrected phase starts at -pst (the run
# script's default: STEPS/2; cpu: POCO_START in the environment).
# Usage: scripts/sweep_poco.sh                  (or with the environment below; nothing on the command line)
# Environment: PGS ("0.25 0.5 1"), PPS ("8 16 32"), LR (the run script's default lr when unset), SEEDS ("1337"),
#   TARGET (cpu|gpu), STEPS, ROOT, TAG_SUFFIX, EXTRA, SUMMARY (scripts/sweep_common.sh).
# shellcheck source=scripts/sweep_common.sh
source "$(dirname "$0")/sweep_common.sh"
[ $# -eq 0 ] || sweep_die "takes no arguments (got '$*'); set the lists in the environment"
sweep_init poco
PGS=${PGS:-0.25 0.5 1}
PPS=${PPS:-8 16 32}
SEEDS=${SEEDS:-1337}
LR=${LR:-}
sweep_lists SEEDS PGS PPS
for seed in $SEEDS; do
  for pg in $PGS; do
    [[ $pg =~ ^[0-9.eE+-]+$ ]] || sweep_die "PGS: '$pg' is not a number"
    for pp in $PPS; do
      [[ $pp =~ ^[0-9]+$ ]] || sweep_die "PPS: '$pp' is not a positive integer"
      sweep_add poco "$seed" "_pg${pg}_pp${pp}" "$LR" -pg "$pg" -pp "$pp"
    done
  done
done
sweep_run
