"""Bit-identity of ivon_noise.py with llmc/noise.h.

Usage: /usr/bin/python3 dev/test/test_noise.py TEST_NOISE_BINARY [MORE_BINARIES...]
Each binary writes its dump (`--dump FILE`: fixed keys and index ranges); every value of ivon_noise.normal must
equal the C value bit for bit. Also: the known-answer table of noise.h, the torch API (dtype, shape, the copy path
used when torch.from_numpy is unavailable), argument checks, speed for the d2 model size.
Last line: "N passed, N failed"; exit 1 on any failure.
"""
import os
import re
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, ROOT)
import ivon_noise  # noqa: E402

passed = 0
failed = 0


def check(cond, msg):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL " + msg)


def read_dump(path):
    with open(path, "rb") as f:
        data = f.read()
    magic, version, count = struct.unpack_from("<3i", data, 0)
    if magic != 20241201 or version != 1:
        raise ValueError("%s: not a noise dump (magic %d version %d)" % (path, magic, version))
    off = 12
    recs = []
    for _ in range(count):
        seed, rank, step, sample, stream, start, n = struct.unpack_from("<Q4IQQ", data, off)
        off += 8 + 16 + 16
        vals = np.frombuffer(data, dtype=np.uint32, count=n, offset=off)
        off += 4 * n
        recs.append(((seed, rank, step, sample, stream, start, n), vals))
    if off != len(data):
        raise ValueError("%s: %d trailing bytes" % (path, len(data) - off))
    return recs


def check_binary(binary):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "noise.dump")
        r = subprocess.run([binary, "--dump", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        check(r.returncode == 0, "%s --dump exited %d: %s" % (binary, r.returncode, r.stdout.decode()[-500:]))
        if r.returncode != 0:
            return
        recs = read_dump(path)
    check(len(recs) >= 10, "%s: only %d dump records" % (binary, len(recs)))
    for args, want in recs:
        t0 = time.time()
        got = ivon_noise.normal(*args)
        dt = time.time() - t0
        ok_type = isinstance(got, torch.Tensor) and got.dtype == torch.float32 and tuple(got.shape) == (args[6],)
        check(ok_type, "normal%s: type %s shape %s" % (args, type(got), getattr(got, "shape", None)))
        if not ok_type:
            continue
        bits = got.contiguous().view(torch.int32).numpy().view(np.uint32)
        diff = np.nonzero(bits != want)[0]
        if diff.size:
            i = int(diff[0])
            print("  first mismatch at index %d: python %08x C %08x (%d of %d differ)"
                  % (args[5] + i, bits[i], want[i], diff.size, args[6]))
        check(diff.size == 0, "%s: normal%s is not bit-identical to C" % (os.path.basename(binary), args))
        if args[6] >= 5000000:
            print("ivon_noise.normal: %d values in %.2f s (%.0f ns/value)" % (args[6], dt, dt / args[6] * 1e9))
            check(dt < 30.0, "ivon_noise.normal too slow: %.1f s for %d values" % (dt, args[6]))
    print("%s: %d dump records compared" % (binary, len(recs)))


def check_header_table():
    # the known-answer table of noise_check_build in llmc/noise.h
    with open(os.path.join(ROOT, "llmc", "noise.h")) as f:
        src = f.read()
    m = re.search(r"want\[32\] = \{([^}]*)\}", src)
    check(m is not None, "noise.h: no want[32] table")
    if m is None:
        return
    want = np.array([int(v, 16) for v in re.findall(r"0x([0-9a-f]{8})u", m.group(1))], dtype=np.uint32)
    got = ivon_noise.normal_numpy(0x0123456789ABCDEF, 1, 2, 3, ivon_noise.STREAM_SAMPLE, 0, 32).view(np.uint32)
    check(want.shape == (32,) and np.array_equal(got, want), "noise.h known-answer table differs from ivon_noise")


def check_torch_api():
    # tensors as the optimizer code uses them, with APIs of torch 1.13 and 2.x only
    a = ivon_noise.normal(11, 0, 3, 1, ivon_noise.STREAM_BMA, 6, 1001)
    check(a.is_contiguous() and a.device.type == "cpu" and a.dtype == torch.float32, "normal: layout")
    check(bool(torch.isfinite(a).all()), "normal: non-finite values")
    b = ivon_noise.normal(11, 0, 3, 1, ivon_noise.STREAM_BMA, 6, 1001)
    check(torch.equal(a, b), "normal: not deterministic")
    c = ivon_noise.normal(11, 0, 3, 1, ivon_noise.STREAM_BMA, 10, 997)
    check(torch.equal(a[4:], c), "normal: a shifted range is not the same sequence")
    check(ivon_noise.normal(1, 0, 0, 0, 0, 5, 0).shape == (0,), "normal: n = 0")
    # the copy path taken when torch.from_numpy is unavailable (torch and numpy built for different ABIs)
    saved = torch.from_numpy

    def broken(_):
        raise RuntimeError("Numpy is not available")

    torch.from_numpy = broken
    try:
        d = ivon_noise.normal(11, 0, 3, 1, ivon_noise.STREAM_BMA, 6, 1001)
    finally:
        torch.from_numpy = saved
    check(torch.equal(a.view(torch.int32), d.view(torch.int32)), "normal: fallback copy path differs")
    # arithmetic like the optimizer's: theta = m + eps / sqrt(ess * (h + delta)), in float32
    m = torch.zeros(1001)
    h = torch.full((1001,), 1e-3)
    theta = m + a / torch.sqrt(1e4 * (h + 1e-6))
    check(theta.dtype == torch.float32 and bool(torch.isfinite(theta).all()), "normal: use in torch arithmetic")
    # streams are the noise.h values
    check((ivon_noise.STREAM_SAMPLE, ivon_noise.STREAM_ANCHOR, ivon_noise.STREAM_OUTER, ivon_noise.STREAM_BMA)
          == (0, 1, 2, 3), "stream constants")
    # bad arguments are errors naming the argument
    for bad in ((-1, 0, 0, 0, 0, 0, 4, "seed"), (0, 0, 0, 0, 256, 0, 4, "stream"), (0, 0, 1 << 32, 0, 0, 0, 4, "step"),
                (0, 0, 0, 0, 0, -3, 4, "start"), (0, 0, 0, 0, 0, 0, 1.5, "n")):
        try:
            ivon_noise.normal(*bad[:7])
            check(False, "normal%s: no error" % (bad[:7],))
        except ValueError as e:
            check(bad[7] in str(e), "normal%s: error %r does not name %s" % (bad[:7], str(e), bad[7]))


def main():
    if len(sys.argv) < 2:
        print("usage: test_noise.py TEST_NOISE_BINARY [MORE_BINARIES...]", file=sys.stderr)
        sys.exit(2)
    print("torch %s, numpy %s" % (torch.__version__, np.__version__))
    for binary in sys.argv[1:]:
        check_binary(binary)
    check_header_table()
    check_torch_api()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
