#!/usr/bin/env python3
"""PNGs of an eval_gpt2 run (doc/evaluate.md).

Usage: plot_eval.py EVAL.csv [--bins EVAL_bins.csv] --out DIR [--title TEXT]

Writes into DIR (each file path is printed):
  nll_vs_samples.png  BMA NLL against the number of MC samples (log2 axis), one line per posterior temperature,
                      the mean-weight NLL as a dashed line; accuracy and ECE in a second and third panel
  reliability.png     reliability diagram: per confidence bin the accuracy against the mean confidence (the
                      diagonal = calibrated), for the mean weights and the BMA predictive with the most samples at
                      each temperature; bar width: the bin, labels with the ECE
--bins defaults to EVAL.csv with _bins before .csv (eval_gpt2's -ob default).
Bad input (a missing file, a CSV without eval_gpt2's columns) ends with one `error:` line and exit status 1.
"""
import argparse
import csv
import os
import sys

EVAL_COLS = ["kind", "samples", "tau", "nll", "accuracy", "ece"]
BIN_COLS = ["kind", "samples", "tau", "bin", "lo", "hi", "count", "confidence", "accuracy"]


def fail(msg):
    print("error: " + msg, file=sys.stderr)
    sys.exit(1)


def read_csv(path, cols):
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        fail("cannot read '%s': %s" % (path, e.strerror))
    if not rows or any(c not in rows[0] for c in cols):
        fail("'%s' has no rows with the columns %s (an eval_gpt2 CSV)" % (path, ",".join(cols)))
    try:
        for r in rows:
            for c in cols:
                if c != "kind":
                    r[c] = float(r[c])
    except ValueError:
        fail("'%s' has a non-numeric value" % path)
    return rows


def plot_nll(plt, rows, path, title):
    mean = [r for r in rows if r["kind"] == "mean"]
    bma = [r for r in rows if r["kind"] == "bma"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, key in zip(axes, ["nll", "accuracy", "ece"]):
        for tau in sorted({r["tau"] for r in bma}):
            pts = sorted((r["samples"], r[key]) for r in bma if r["tau"] == tau)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label="BMA tau %g" % tau)
        for r in mean:
            ax.axhline(r[key], linestyle="--", color="k", label="mean weights")
        if bma:
            ax.set_xscale("log", base=2)
        ax.set_xlabel("MC samples")
        ax.set_ylabel(key)
        ax.legend(fontsize=8)
    axes[0].set_title("val NLL vs samples")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(path)


def plot_reliability(plt, rows, bins, path, title):
    ece = {(r["kind"], r["samples"], r["tau"]): r["ece"] for r in rows}
    sets = [(k, s, t) for (k, s, t) in ece if k == "mean"]
    for tau in sorted({t for (k, s, t) in ece if k == "bma"}):
        smax = max(s for (k, s, t) in ece if k == "bma" and t == tau)
        sets.append(("bma", smax, tau))
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot([0, 1], [0, 1], color="gray", linewidth=1, label="calibrated")
    for i, key in enumerate(sets):
        bs = [b for b in bins if (b["kind"], b["samples"], b["tau"]) == key and b["count"] > 0]
        w = (1.0 / 15) / max(1, len(sets))
        name = "mean weights" if key[0] == "mean" else "BMA S=%d tau %g" % (key[1], key[2])
        ax.bar([b["lo"] + i * w for b in bs], [b["accuracy"] for b in bs], width=w, align="edge", alpha=0.6,
               label="%s (ECE %.4f)" % (name, ece[key]))
        ax.plot([b["confidence"] for b in bs], [b["accuracy"] for b in bs], marker=".", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (bin)")
    ax.set_ylabel("accuracy")
    ax.set_title(title or "reliability diagram")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(path)


def main():
    ap = argparse.ArgumentParser(description="PNGs of an eval_gpt2 CSV")
    ap.add_argument("csv")
    ap.add_argument("--bins")
    ap.add_argument("--out", required=True)
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    bins_path = args.bins
    if bins_path is None:
        stem = args.csv[:-4] if args.csv.endswith(".csv") else args.csv
        bins_path = stem + "_bins.csv"
    rows = read_csv(args.csv, EVAL_COLS)
    bins = read_csv(bins_path, BIN_COLS)
    os.makedirs(args.out, exist_ok=True)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plot_nll(plt, rows, os.path.join(args.out, "nll_vs_samples.png"), args.title)
    plot_reliability(plt, rows, bins, os.path.join(args.out, "reliability.png"), args.title)


if __name__ == "__main__":
    main()
