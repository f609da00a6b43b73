"""Compares two training runs' checkpoints and logs: the model file and the optimizer state buffers at one step
(elementwise |a - b| <= atol + rtol |b|) and the numbers of main.log (train loss, val loss, BMA val loss, printed with 4
decimals: |a - b| <= log_atol). Prints the largest differences; exit 0 if within tolerance, 1 if not, 2 on bad input.
With --expect-differ the verdict is reversed: exit 0 only if the models differ beyond the tolerance (a negative
control that shows the comparison can fail).

With --max-outside N, up to N elements of each file may exceed the elementwise tolerance if they stay within
--outlier-atol (for runs of two implementations: AdamW normalizes each element, so an element whose gradient is of the
order of its sum's rounding differences takes a step that differs by a fraction of lr).

usage: compare_runs.py DIR_A DIR_B STEP [--atol X] [--rtol X] [--log-atol X] [--max-outside N --outlier-atol X]
                       [--expect-differ] [--exact]
"""
import argparse
import os
import sys

import numpy as np

HEADER_BYTES = 256 * 4


def fail(msg):
    print(f"error: {msg}")
    sys.exit(2)


def read_floats(path):
    if not os.path.isfile(path):
        fail(f"missing file '{path}'")
    raw = open(path, "rb").read()
    if len(raw) < HEADER_BYTES or (len(raw) - HEADER_BYTES) % 4:
        fail(f"'{path}' is truncated or not a checkpoint file")
    return np.frombuffer(raw[HEADER_BYTES:], dtype=np.float32), raw[:HEADER_BYTES]


def read_log(path):
    if not os.path.isfile(path):
        fail(f"missing file '{path}'")
    vals = {}
    for line in open(path):
        parts = line.split()
        if not parts or not parts[0].startswith("s:"):
            continue
        step = int(parts[0][2:])
        for kv in parts[1:]:
            k, _, v = kv.partition(":")
            if k in ("trl", "tel", "bma"):
                vals[(k, step)] = float(v)
    if not vals:
        fail(f"'{path}' has no loss lines")
    return vals


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("step", type=int)
    ap.add_argument("--atol", type=float, default=4e-6)
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--log-atol", type=float, default=1.5e-4)
    ap.add_argument("--max-outside", type=int, default=0)
    ap.add_argument("--outlier-atol", type=float, default=0.0)
    ap.add_argument("--expect-differ", action="store_true")
    ap.add_argument("--exact", action="store_true", help="files must be byte-identical")
    args = ap.parse_args()

    ok = True
    worst = 0.0
    for name in (f"model_{args.step:08d}.bin", f"state_{args.step:08d}.bin"):
        a, ha = read_floats(os.path.join(args.a, name))
        b, hb = read_floats(os.path.join(args.b, name))
        if a.shape != b.shape:
            fail(f"{name}: {a.size} vs {b.size} floats")
        if args.exact:
            same = a.tobytes() == b.tobytes()
            print(f"{name}: {'identical' if same else 'DIFFERENT'} ({a.size} floats)")
            ok = ok and same
            continue
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        bound = args.atol + args.rtol * np.abs(b.astype(np.float64))
        excess = diff / bound
        n_bad = int(np.count_nonzero(diff > bound))
        worst = max(worst, float(excess.max()))
        print(f"{name}: max |a-b| {diff.max():.3e}, max |a-b|/tol {excess.max():.3f}, {n_bad} of {a.size} outside "
              f"atol {args.atol:g} + rtol {args.rtol:g}")
        ok = ok and (n_bad == 0 or (n_bad <= args.max_outside and float(diff.max()) <= args.outlier_atol))
    la = read_log(os.path.join(args.a, "main.log"))
    lb = read_log(os.path.join(args.b, "main.log"))
    if set(la) != set(lb):
        print(f"main.log: different entries ({len(la)} vs {len(lb)})")
        ok = False
    else:
        dmax = max(abs(la[k] - lb[k]) for k in la)
        print(f"main.log: {len(la)} losses, max difference {dmax:.1e} (tolerance {args.log_atol:g})")
        ok = ok and (dmax == 0.0 if args.exact else dmax <= args.log_atol)
    if args.expect_differ:
        print("expected a difference:", "found" if not ok else "NOT found")
        sys.exit(0 if not ok else 1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
