#!/usr/bin/env python3
"""Plots of one or more training runs (main.log files, or directories holding main.log) into PNG files.

Usage: plot_logs.py RUN [RUN ...] --out DIR [--tokens-per-step N] [--no-count-mega] [--smooth K] [--title TEXT]

Writes into DIR (each file path is printed):
  loss_vs_step.png        train loss (step lines) and val loss at the mean (val lines) against the step
  loss_vs_tokens.png      the same against the train tokens consumed (optimizer steps x tokens per step)
  loss_vs_tokens_mega.png the same with PoCo's mega-batch tokens (mega:) added to the token axis (with --count-mega,
                          the default; runs without mega: lines are the same as in loss_vs_tokens.png)
  bma_vs_mean.png         val loss at the mean and BMA val loss (bma:), and their difference (runs that log bma:)
  calibration.png         ECE at the mean (ece:) and of the BMA predictive (bece:) (runs that log them)
  diagnostics.png         IVON/PoCo state: h and sigma quantiles (h01 h50 h99, sig01 sig50 sig99), the fraction
                          of clipped coordinates (clip) and the mean |dm| (runs with diagnostics lines)
A figure whose data no run logs is left out with a "note:" line.

Labels are the names of the runs' directories (parent/name when two runs share a name).
Tokens per step of a run: the tok: key of its step lines when present; else --tokens-per-step; else an
approximation: the median over the step lines of tok/s x ms / 1000 (both are rounded in the log, tok/s to an
integer and ms to 0.1, so one line is off by up to ~1%; the median over a run is much closer; the tokens per
step are constant within a run). The val line of step s counts the tokens of step lines 1..s.
A resumed run appends to main.log; the later line of a step wins.
Bad input (no such file, a directory without main.log, a log without parsable lines) ends the program with one
`error:` line and exit status 1.
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_table import InputError, log_path_of, parse_log  # noqa: E402



def finish(plt, fig, args, path):
    """Title, layout, PNG file, figure closed."""
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

def unique_labels(paths):
    """directory names of the runs; parent/name where names repeat, then #i where those repeat too"""
    dirs = [os.path.dirname(os.path.abspath(p)) for p in paths]
    labels = [os.path.basename(d) for d in dirs]
    for i, lab in enumerate(labels):
        if labels.count(lab) > 1:
            labels[i] = os.path.join(os.path.basename(os.path.dirname(dirs[i])), os.path.basename(dirs[i]))
    seen = {}
    for i, lab in enumerate(labels):
        if labels.count(lab) > 1:
            seen[lab] = seen.get(lab, 0) + 1
            labels[i] = f"{lab}#{seen[lab]}"
    return labels


def tokens_per_step(run, flag_value):
    """(dict step -> tokens of that step, constant for steps without a line, how it was found)"""
    per = {s: d["tok"] for s, d in run.train.items() if isinstance(d.get("tok"), float)}
    if per:
        return per, statistics.median(per.values()), "tok: key"
    if flag_value is not None:
        return {}, float(flag_value), "--tokens-per-step"
    est = [d["tok/s"] * d["ms"] / 1000.0 for d in run.train.values()
           if isinstance(d.get("tok/s"), float) and isinstance(d.get("ms"), float) and d["ms"] > 0]
    if not est:
        return {}, None, "none"
    return {}, float(round(statistics.median(est))), "tok/s x ms / 1000 (median)"


class Series:
    """per-run arrays for plotting: tokens and mega tokens after s steps"""

    def __init__(self, run, flag_tps):
        self.run = run
        per, const, self.tps_source = tokens_per_step(run, flag_tps)
        self.tps_const = const
        steps = set(run.train) | set(run.val) | set(run.diag)
        last = max(steps) if steps else 0
        self.tokens = [0.0] * (last + 1)
        self.mega = [0.0] * (last + 1)
        mega = 0.0
        for s in range(1, last + 1):
            t = per.get(s, const)
            self.tokens[s] = self.tokens[s - 1] + (t if t is not None else float("nan"))
            m = run.train.get(s, {}).get("mega")
            if isinstance(m, float):
                mega = m
            self.mega[s] = mega

    def x_tokens(self, steps, with_mega):
        return [self.tokens[s] + (self.mega[s] if with_mega else 0.0) for s in steps]


def smooth(ys, k):
    if k <= 1:
        return ys
    out, acc = [], []
    for y in ys:
        acc.append(y)
        if len(acc) > k:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def points(table, key):
    steps = sorted(s for s, d in table.items() if isinstance(d.get(key), float))
    return steps, [table[s][key] for s in steps]


def tidy_ylim(ax, values_after_start):
    """clip the top of the y axis to the values past the first 10% of the run (the init losses dwarf the rest)"""
    if values_after_start:
        lo, hi = min(values_after_start), max(values_after_start)
        pad = 0.05 * (hi - lo) if hi > lo else 0.1
        ax.set_ylim(lo - pad, hi + pad)


def plot_losses(plt, series, labels, args, xmode, path):
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    names = {"step": "step", "tokens": "train tokens", "mega": "train tokens + PoCo mega-batch tokens"}
    for ax, (kind, key) in zip(axes, (("train", "trl"), ("val", "tel"))):
        tail = []
        for i, (se, lab) in enumerate(zip(series, labels)):
            table = se.run.train if kind == "train" else se.run.val
            steps, ys = points(table, key)
            if not steps:
                continue
            if kind == "train":
                ys = smooth(ys, args.smooth)
            if xmode == "step":
                xs = steps
            else:
                if se.tps_const is None:
                    continue
                xs = se.x_tokens(steps, xmode == "mega")
            cut = max(steps) * 0.1
            tail += [y for s, y in zip(steps, ys) if s >= cut]
            ax.plot(xs, ys, color=f"C{i % 10}", label=lab, lw=0.8 if kind == "train" else 1.5,
                    marker=None if kind == "train" else "o", ms=3)
        tidy_ylim(ax, tail)
        ax.set_xlabel(names[xmode])
        ax.set_ylabel(f"{kind} loss" + (" (mean weights)" if kind == "val" else ""))
        ttl = f"{kind} loss"
        if kind == "train" and args.smooth > 1:
            ttl += f" (moving average of {args.smooth} steps)"
        ax.set_title(ttl)
        ax.grid(alpha=0.3)
        if xmode != "step":
            ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    axes[1].legend(fontsize=8)
    finish(plt, fig, args, path)


def plot_bma(plt, series, labels, args, path):
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    tail = []
    for i, (se, lab) in enumerate(zip(series, labels)):
        sm, ym = points(se.run.val, "tel")
        sb, yb = points(se.run.val, "bma")
        if not sb:
            continue
        c = f"C{i % 10}"
        axes[0].plot(sm, ym, color=c, marker="o", ms=3, label=f"{lab} mean")
        axes[0].plot(sb, yb, color=c, marker="s", ms=3, ls="--", label=f"{lab} BMA")
        cut = max(sm + sb) * 0.1
        tail += [y for s, y in zip(sm + sb, ym + yb) if s >= cut]
        both = [s for s in sb if s in se.run.val and isinstance(se.run.val[s].get("tel"), float)]
        axes[1].plot(both, [se.run.val[s]["bma"] - se.run.val[s]["tel"] for s in both], color=c, marker="o", ms=3,
                     label=lab)
    tidy_ylim(axes[0], tail)
    axes[0].set_title("val loss: mean weights (solid) and BMA predictive (dashed)")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("val loss")
    axes[1].axhline(0.0, color="k", lw=0.5)
    axes[1].set_title("BMA - mean val loss (< 0: BMA better)")
    axes[1].set_xlabel("step")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    finish(plt, fig, args, path)


def plot_calibration(plt, series, labels, args, path):
    fig, ax = plt.subplots(figsize=(7, 5))
    for i, (se, lab) in enumerate(zip(series, labels)):
        c = f"C{i % 10}"
        s1, y1 = points(se.run.val, "ece")
        s2, y2 = points(se.run.val, "bece")
        if s1:
            ax.plot(s1, y1, color=c, marker="o", ms=3, label=f"{lab} ECE (mean)")
        if s2:
            ax.plot(s2, y2, color=c, marker="s", ms=3, ls="--", label=f"{lab} ECE (BMA)")
    ax.set_title("expected calibration error on the val batches")
    ax.set_xlabel("step")
    ax.set_ylabel("ECE")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    finish(plt, fig, args, path)


def plot_diagnostics(plt, series, labels, args, path):
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    panels = ((axes[0][0], ("h01", "h50", "h99"), "h quantiles: 1% dashed, 50% solid, 99% dotted", True),
              (axes[0][1], ("sig01", "sig50", "sig99"), "sigma quantiles: 1% dashed, 50% solid, 99% dotted", True),
              (axes[1][0], ("clip",), "fraction of clipped coordinates", False),
              (axes[1][1], ("dm",), "mean |dm| of the last update", True))
    styles = ("--", "-", ":")
    for ax, keys, title, logy in panels:
        for i, (se, lab) in enumerate(zip(series, labels)):
            for k, ls in zip(keys, styles if len(keys) == 3 else ("-",)):
                steps, ys = points(se.run.diag, k)
                if logy:
                    steps, ys = zip(*[(s, y) for s, y in zip(steps, ys) if y > 0]) if any(y > 0 for y in ys) else ((), ())
                if steps:
                    ax.plot(steps, ys, color=f"C{i % 10}", ls=ls, marker="o", ms=2,
                            label=lab if len(keys) == 1 or k.endswith("50") else None)
        if logy and ax.lines:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    finish(plt, fig, args, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", metavar="RUN", help="main.log file or a directory holding main.log")
    ap.add_argument("--out", required=True, help="output directory for the PNG files (created)")
    ap.add_argument("--tokens-per-step", type=float, default=None, metavar="N",
                    help="tokens per optimizer step for logs without a tok: key (default: tok/s x ms / 1000)")
    ap.add_argument("--count-mega", dest="count_mega", action="store_true", default=True,
                    help="also write loss_vs_tokens_mega.png, with PoCo's mega-batch tokens on the axis (default)")
    ap.add_argument("--no-count-mega", dest="count_mega", action="store_false", help="leave that figure out")
    ap.add_argument("--smooth", type=int, default=1, metavar="K",
                    help="moving average of K steps over the train loss (default 1: none)")
    ap.add_argument("--title", default="", help="title over every figure")
    args = ap.parse_args(argv)
    try:
        if args.tokens_per_step is not None and not args.tokens_per_step > 0:
            raise InputError(f"flag --tokens-per-step: {args.tokens_per_step:g} must be > 0")
        if args.smooth < 1:
            raise InputError(f"flag --smooth: {args.smooth} must be >= 1")
        paths = [log_path_of(r) for r in args.runs]
        labels = unique_labels(paths)
        runs = [parse_log(p, lab) for p, lab in zip(paths, labels)]
        try:
            os.makedirs(args.out, exist_ok=True)
        except OSError as e:
            raise InputError(f"flag --out: cannot create '{args.out}': {e.strerror}")
    except InputError as e:
        print(f"error: plot_logs: {e}", file=sys.stderr)
        return 1

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [Series(r, args.tokens_per_step) for r in runs]
    for se in series:
        if se.tps_source.startswith("tok/s"):
            print(f"note: {se.run.label}: no tok: key; tokens per step estimated as {se.tps_const:.0f} "
                  f"(median of tok/s x ms / 1000)")
        elif se.tps_const is None:
            print(f"note: {se.run.label}: no step lines with tokens; left out of the token plots")
    written = []

    def out(name):
        p = os.path.join(args.out, name)
        written.append(p)
        return p

    plot_losses(plt, series, labels, args, "step", out("loss_vs_step.png"))
    plot_losses(plt, series, labels, args, "tokens", out("loss_vs_tokens.png"))
    if args.count_mega:
        plot_losses(plt, series, labels, args, "mega", out("loss_vs_tokens_mega.png"))
    if any(points(r.val, "bma")[0] for r in runs):
        plot_bma(plt, series, labels, args, out("bma_vs_mean.png"))
    else:
        print("note: no run logs bma:; bma_vs_mean.png left out")
    if any(points(r.val, "ece")[0] or points(r.val, "bece")[0] for r in runs):
        plot_calibration(plt, series, labels, args, out("calibration.png"))
    else:
        print("note: no run logs ece: or bece:; calibration.png left out")
    if any(r.diag for r in runs):
        plot_diagnostics(plt, series, labels, args, out("diagnostics.png"))
    else:
        print("note: no run logs diagnostics (h01 ...); diagnostics.png left out")
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
