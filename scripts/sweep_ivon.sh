#!/usr/bin/env bash
# IVON sweep over the effective sample size (-ess, lambda) and the initial Hessian (-h0): every pair of the two
# lists, for each seed of SEEDS; one run dir each, <opt>_seed<S>_ess<E>_h0<H>; finished runs are skipped, so the
# sweep resumes; a summary table at the end. With -rescale 1 (default) the effective lr is lr x (h0 + delta),
# so h0 moves the step size too; the initial sigma is 1/sqrt(ess (h0 + delta)).
# Usage: scripts/sweep_ivon.sh                  (or with the environment below; nothing on the command line)
# Environment: OPT (ivon; poco also works), ESSS ("-1 1e7 1e8"; -1 = the train token count), H0S
#   ("3e-4 1e-3 3e-3"), LR (the run script's default lr when unset), SEEDS ("1337"), TARGET (cpu|gpu), STEPS,
#   ROOT, TAG_SUFFIX, EXTRA, SUMMARY (scripts/sweep_common.sh).
# shellcheck source=scripts/sweep_common.sh
source "$(dirname "$0")/sweep_common.sh"
[ $# -eq 0 ] || sweep_die "takes no arguments (got '$*'); set the lists in the environment"
sweep_init ivon
OPT=${OPT:-ivon}
case $OPT in ivon|poco) ;; *) sweep_die "OPT '$OPT' must be ivon or poco (the flags -ess/-h0 are IVON's)" ;; esac
ESSS=${ESSS:--1 1e7 1e8}
H0S=${H0S:-3e-4 1e-3 3e-3}
SEEDS=${SEEDS:-1337}
LR=${LR:-}
sweep_lists SEEDS ESSS H0S
for seed in $SEEDS; do
  for ess in $ESSS; do
    [[ $ess =~ ^[0-9.eE+-]+$ ]] || sweep_die "ESSS: '$ess' is not a number"
    for h0 in $H0S; do
      [[ $h0 =~ ^[0-9.eE+-]+$ ]] || sweep_die "H0S: '$h0' is not a number"
      sweep_add "$OPT" "$seed" "_ess${ess}_h0${h0}" "$LR" -ess "$ess" -h0 "$h0"
    done
  done
done
sweep_run
