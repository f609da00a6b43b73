#!/usr/bin/env python3
"""Markdown table of final results over groups of runs (one group per optimizer or setting).

Usage:
  make_table.py --group adamw='log_runs/cpu_small/adamw_seed*' --group ivon='log_runs/cpu_small/ivon_seed*' \
                [--step N] [--train-avg K] [--format md|tsv] [--out FILE]

A run is a directory holding main.log, or a main.log file. For each run the val line at step N is taken (the last
one, when a resumed run logged the step twice); N defaults to the largest val step common to all runs of all
groups. Columns: runs, val loss at the mean weights, perplexity exp(val loss) (computed per run, then averaged),
BMA val loss (bma:), ECE (ece:), BMA ECE (bece:), train loss (trl: of step line N, or the mean over the step
lines N-K+1..N with --train-avg K). Each cell is mean ± sample standard deviation over the group's runs (n - 1 in
the denominator; the mean alone for a single value); "—" when no run of the group logs the key, and "(k of n)"
when only k runs do.
--best adds the best val loss (the lowest tel: of the val lines up to step N, at the mean weights) and the best BMA
val loss (the lowest bma:). --paired REF adds the paired difference of val loss (and BMA val loss) to group REF:
runs are matched by the seed in their directory name (`seed<digits>`), the difference taken per seed, then
mean ± sample std over the seeds both groups have; REF's own row shows "—".

Also the log parser that scripts/plot_logs.py uses (parse_log). main.log lines are `s:<step> key:value ...`:
  step lines        trl lr norm ms tok/s [tok] [mega]
  val lines         tel [bma] [ece] [bece]
  diagnostics lines h01 h50 h99 sig01 sig50 sig99 clip dm
  skip lines        skip:<reason> ...
A resumed run appends to main.log, so a step can appear twice: per line kind and step, later values win.
Bad input (no such file, no parsable line, a group without runs, a run without the step) ends the program with
one `error:` line and exit status 1.
"""
import argparse
import glob
import math
import os
import re
import sys

VAL_KEYS = ("tel", "bma", "ece", "bece")
DIAG_KEYS = ("h01", "h50", "h99", "sig01", "sig50", "sig99", "clip", "dm")


class InputError(Exception):
    pass


class RunLog:
    """main.log of one run: per line kind, a dict step -> {key: value}."""

    def __init__(self, path, label):
        self.path = path
        self.label = label
        self.train = {}  # step lines (1-based step after the update)
        self.val = {}    # val lines (step = optimizer steps done)
        self.diag = {}
        self.skip = {}
        self.other = {}

    def val_steps(self):
        return sorted(s for s, d in self.val.items() if "tel" in d)


def _value(text):
    try:
        return float(text)
    except ValueError:
        return text


def log_path_of(arg):
    """main.log of a run argument: the file itself, or <dir>/main.log."""
    if os.path.isdir(arg):
        path = os.path.join(arg, "main.log")
        if not os.path.isfile(path):
            raise InputError(f"run directory '{arg}' holds no main.log")
        return path
    if not os.path.isfile(arg):
        raise InputError(f"no such run directory or log file: '{arg}'")
    return arg


def run_label(path):
    """label of a run: the name of the directory holding its main.log"""
    d = os.path.dirname(os.path.abspath(path))
    return os.path.basename(d) or d


def parse_log(path, label=None):
    """Parses one main.log; raises InputError when it cannot be read or has no parsable line."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError as e:
        raise InputError(f"cannot read '{path}': {e.strerror}")
    run = RunLog(path, label if label is not None else run_label(path))
    parsed = 0
    for line in lines:
        parts = line.split()
        if not parts or not parts[0].startswith("s:"):
            continue
        try:
            step = int(parts[0][2:])
        except ValueError:
            continue
        kv = {}
        ok = True
        for p in parts[1:]:
            k, sep, v = p.partition(":")
            if not sep or not k:
                ok = False
                break
            kv[k] = _value(v)
        if not ok or not kv:
            continue
        parsed += 1
        if "skip" in kv:
            table = run.skip
        elif "trl" in kv:
            table = run.train
        elif any(k in kv for k in VAL_KEYS):
            table = run.val
        elif any(k in kv for k in DIAG_KEYS):
            table = run.diag
        else:
            table = run.other
        table.setdefault(step, {}).update(kv)
    if parsed == 0:
        raise InputError(f"'{path}' has no parsable log line (want 's:<step> key:value ...')")
    return run


def mean_std(xs):
    """mean and sample standard deviation (n - 1); std is None for one value"""
    n = len(xs)
    m = sum(xs) / n
    if n < 2:
        return m, None
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))


def expand_groups(specs):
    """--group NAME=GLOB arguments -> list of (name, [RunLog]); a group name may repeat to add globs"""
    groups = []
    for spec in specs:
        name, sep, pattern = spec.partition("=")
        if not sep or not name or not pattern:
            raise InputError(f"flag --group: '{spec}' is not NAME=GLOB")
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise InputError(f"flag --group: group '{name}': '{pattern}' matches no run")
        runs = [parse_log(log_path_of(m)) for m in matches]
        for g in groups:
            if g[0] == name:
                g[1].extend(runs)
                break
        else:
            groups.append((name, runs))
    return groups


def common_step(groups):
    steps = None
    for _, runs in groups:
        for r in runs:
            s = set(r.val_steps())
            steps = s if steps is None else steps & s
    if not steps:
        raise InputError("no val step (tel:) common to all runs; pass --step")
    return max(steps)


def run_seed(run):
    """the seed of a run from its directory name (seed<digits>), or None"""
    m = re.search(r"seed(\d+)", run.label)
    return int(m.group(1)) if m else None


def best_val(run, step, key):
    """lowest value of key over the val lines at steps <= step, or None"""
    xs = [d[key] for s, d in run.val.items() if s <= step and isinstance(d.get(key), float)]
    return min(xs) if xs else None


def paired_diffs(name, runs, ref_runs, step, key):
    """per-seed differences run - ref of key at step (the seeds both groups have)"""
    ref = {}
    for r in ref_runs:
        seed = run_seed(r)
        if seed is None:
            raise InputError(f"flag --paired: run '{r.path}' has no seed<digits> in its directory name")
        ref[seed] = r
    out = []
    for r in runs:
        seed = run_seed(r)
        if seed is None:
            raise InputError(f"flag --paired: run '{r.path}' (group '{name}') has no seed<digits> in its directory name")
        a, b = r.val.get(step, {}).get(key), ref[seed].val.get(step, {}).get(key) if seed in ref else None
        if isinstance(a, float) and isinstance(b, float):
            out.append(a - b)
    return out


def summarize(name, runs, step, train_avg, ref=None):
    """one table row: dict of column -> (mean, std, k) or None, plus the run count; ref: (name, runs) of --paired"""
    cols = {"tel": [], "ppl": [], "bma": [], "ece": [], "bece": [], "trl": [], "best": [], "bbest": []}
    for r in runs:
        v = r.val.get(step)
        if v is None or not isinstance(v.get("tel"), float):
            raise InputError(f"run '{r.path}' (group '{name}') has no val line at step {step}")
        cols["tel"].append(v["tel"])
        cols["ppl"].append(math.exp(v["tel"]))
        for k in ("bma", "ece", "bece"):
            if isinstance(v.get(k), float):
                cols[k].append(v[k])
        tl = [r.train[s]["trl"] for s in range(step - train_avg + 1, step + 1)
              if s in r.train and isinstance(r.train[s].get("trl"), float)]
        if tl:
            cols["trl"].append(sum(tl) / len(tl))
        for col, key in (("best", "tel"), ("bbest", "bma")):
            b = best_val(r, step, key)
            if b is not None:
                cols[col].append(b)
    if ref is not None and ref[0] != name:
        cols["dtel"] = paired_diffs(name, runs, ref[1], step, "tel")
        cols["dbma"] = paired_diffs(name, runs, ref[1], step, "bma")
    row = {"name": name, "runs": len(runs)}
    for k, xs in cols.items():
        row[k] = (*mean_std(xs), len(xs)) if xs else None
    return row


def fmt_cell(cell, n, digits):
    if cell is None:
        return "—"
    m, s, k = cell
    text = f"{m:.{digits}f}" + ("" if s is None else f" ± {s:.{digits}f}")
    if k < n:
        text += f" ({k} of {n})"
    return text


def table_markdown(rows, step, train_avg, name_header="optimizer", best=False, paired=None):
    trl_head = f"train loss (step {step})" if train_avg == 1 else \
        f"train loss (mean of steps {step - train_avg + 1}..{step})"
    out = [f"Val at step {step}: mean ± sample std over runs (n − 1 in the denominator; no ± for a single value; "
           f"— = not logged). Perplexity = exp(val loss) per run. ECE = expected calibration error at the mean "
           f"weights, BMA ECE of the BMA predictive." +
           (f" Best = the lowest val loss of the val lines up to step {step}." if best else "") +
           (f" Δ = paired difference to {paired} (per seed, then mean ± std; negative = lower loss)."
            if paired else ""),
           "",
           f"| {name_header} | runs | val loss | val ppl | BMA val loss | ECE | BMA ECE | {trl_head} |" +
           (" best val loss | best BMA val loss |" if best else "") +
           (f" Δ val loss vs {paired} | Δ BMA val loss vs {paired} |" if paired else ""),
           "|---|---|---|---|---|---|---|---|" + ("---|---|" if best else "") + ("---|---|" if paired else "")]
    for r in rows:
        n = r["runs"]
        line = (f"| {r['name']} | {n} | {fmt_cell(r['tel'], n, 4)} | {fmt_cell(r['ppl'], n, 2)} | "
                f"{fmt_cell(r['bma'], n, 4)} | {fmt_cell(r['ece'], n, 4)} | {fmt_cell(r['bece'], n, 4)} | "
                f"{fmt_cell(r['trl'], n, 4)} |")
        if best:
            line += f" {fmt_cell(r['best'], n, 4)} | {fmt_cell(r['bbest'], n, 4)} |"
        if paired:
            line += f" {fmt_cell(r.get('dtel'), n, 4)} | {fmt_cell(r.get('dbma'), n, 4)} |"
        out.append(line)
    return "\n".join(out) + "\n"


def table_tsv(rows, step):
    keys = ("tel", "ppl", "bma", "ece", "bece", "trl")
    head = ["group", "runs", "step"] + [f"{k}_{x}" for k in keys for x in ("mean", "std")]
    out = ["\t".join(head)]
    for r in rows:
        cells = [r["name"], str(r["runs"]), str(step)]
        for k in keys:
            c = r[k]
            if c is None:
                cells += ["-", "-"]
            else:
                cells += [repr(c[0]), "-" if c[1] is None else repr(c[1])]
        out.append("\t".join(cells))
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--group", action="append", default=[], metavar="NAME=GLOB",
                    help="runs of one table row: a glob of run directories (or main.log files); repeatable")
    ap.add_argument("--step", type=int, default=None,
                    help="val step to report (default: the largest val step common to all runs)")
    ap.add_argument("--train-avg", type=int, default=1, metavar="K",
                    help="train loss = mean of the step lines N-K+1..N (default 1: step N's own loss)")
    ap.add_argument("--format", choices=("md", "tsv"), default="md", help="Markdown (default) or tab-separated")
    ap.add_argument("--out", default=None, help="also write the table to this file")
    ap.add_argument("--name-header", default="optimizer", help="header of the first column (default: optimizer)")
    ap.add_argument("--best", action="store_true", help="add the best (lowest) val and BMA val loss up to the step")
    ap.add_argument("--paired", default=None, metavar="REF",
                    help="add the per-seed paired difference of val and BMA val loss to group REF")
    args = ap.parse_args(argv)
    try:
        if not args.group:
            raise InputError("flag --group: at least one --group NAME=GLOB is needed")
        if args.train_avg < 1:
            raise InputError(f"flag --train-avg: {args.train_avg} must be >= 1")
        if args.step is not None and args.step < 0:
            raise InputError(f"flag --step: {args.step} must be >= 0")
        groups = expand_groups(args.group)
        step = args.step if args.step is not None else common_step(groups)
        ref = None
        if args.paired is not None:
            ref = next((g for g in groups if g[0] == args.paired), None)
            if ref is None:
                raise InputError(f"flag --paired: no group named '{args.paired}'")
        rows = [summarize(name, runs, step, args.train_avg, ref) for name, runs in groups]
        text = (table_markdown(rows, step, args.train_avg, args.name_header, args.best, args.paired)
                if args.format == "md" else table_tsv(rows, step))
        if args.out:
            try:
                d = os.path.dirname(args.out)
                if d:
                    os.makedirs(d, exist_ok=True)
                with open(args.out, "w", encoding="utf-8") as f:
                    f.write(text)
            except OSError as e:
                raise InputError(f"flag --out: cannot write '{args.out}': {e.strerror}")
    except InputError as e:
        print(f"error: make_table: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
