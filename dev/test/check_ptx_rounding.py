"""Checks that nvcc cannot change the bits of the optimizer kernels by contraction: in the PTX of train_gpt2.cu, every
kernel whose name matches the pattern may hold no fused multiply-add (fma / mad on f32 or f64) and no plain (not
.rn) f32/f64 multiplication except by a power of two (exact, so an FMA formed from it by ptxas rounds the same).
The element formulas use the rounded intrinsics of llmc/optim_elem.h / llmc/noise.h (__fmul_rn, __fadd_rn, ...),
which are never contracted; this check fails when a plain operator slips into those kernels.
Prints one line per kernel and `N passed, N failed`; exit 1 on a failure, 2 on bad input.

usage: check_ptx_rounding.py FILE.ptx [PATTERN]   (PATTERN: a regular expression, default the optimizer kernels)
"""
import re
import struct
import sys

DEFAULT = r"ivon_|adamw_kernel|diff_sumsq|nonfinite_partial|partial3_final"


def power_of_two_f32(hexbits):
    v = struct.unpack(">f", bytes.fromhex(hexbits))[0]
    if v == 0.0 or v != v:
        return False
    m = abs(v)
    while m >= 2.0:
        m /= 2.0
    while m < 1.0:
        m *= 2.0
    return m == 1.0


def check_kernel(body):
    """list of the offending instructions of one kernel body"""
    bad = []
    for line in body.split("\n"):
        ins = line.strip()
        if re.match(r"(fma|mad)(\.\w+)*\.f(32|64)\s", ins):
            bad.append(ins)
            continue
        m = re.match(r"mul(\.ftz)?\.f(32|64)\s+[^,]+,\s*([^,]+),\s*([^;]+);", ins)
        if m is None:
            continue
        consts = [a.strip() for a in (m.group(3), m.group(4)) if re.fullmatch(r"0[fF][0-9A-Fa-f]{8}", a.strip())]
        if not any(power_of_two_f32(c[2:]) for c in consts):
            bad.append(ins)
    return bad


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__)
        sys.exit(2)
    pattern = re.compile(sys.argv[2] if len(sys.argv) == 3 else DEFAULT)
    try:
        ptx = open(sys.argv[1]).read()
    except OSError as e:
        print(f"error: cannot read '{sys.argv[1]}': {e}")
        sys.exit(2)
    passed = failed = 0
    for m in re.finditer(r"\.entry (\S+)\(", ptx):
        name = m.group(1)
        if not pattern.search(name):
            continue
        end = ptx.find("\n}\n", m.end())
        bad = check_kernel(ptx[m.end():end])
        if bad:
            failed += 1
            print(f"FAIL {name}: {len(bad)} contractible operations, e.g. '{bad[0]}'")
        else:
            passed += 1
            print(f"OK   {name}")
    if passed + failed == 0:
        print(f"error: no kernel in '{sys.argv[1]}' matches '{pattern.pattern}'")
        sys.exit(2)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
