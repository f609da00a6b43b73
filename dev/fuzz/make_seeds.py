"""Writes the seed corpora of the fuzz harnesses (dev/fuzz/fuzz_*.c) into OUT/<harness>/.

Usage: python3 dev/fuzz/make_seeds.py OUT

Seeds are small valid files cut from the real ones (the Austen val shard, ref/gpt2_d2.bin, gpt2_tokenizer.bin)
with their headers rewritten to match, plus truncated copies that the parsers must reject. A real file that is
missing (no `make data` / `make ref` yet) is replaced by generated contents of the same format.
"""
import os
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def read_real(rel, nbytes):
    path = os.path.join(ROOT, rel)
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return f.read(nbytes)


def header(*ints):
    h = list(ints) + [0] * (256 - len(ints))
    return struct.pack("<256i", *h)


def write(out, harness, name, data):
    d = os.path.join(out, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def shard_seeds(out):
    real = read_real("dev/data/austen/austen_val.bin", 1024 + 2 * 400)
    tokens = real[1024:] if real else struct.pack("<400H", *[(i * 97) % 50257 for i in range(400)])
    for n, settings in [(33, bytes([1, 7, 0, 0, 0, 0, 0, 1])), (100, bytes([3, 15, 0, 0, 1, 1, 0, 2])),
                        (400, bytes([0, 3, 2, 2, 1, 2, 0, 5]))]:
        write(out, "shard", "val_%d" % n, settings + header(20240520, 1, n) + tokens[:2 * n])
    write(out, "shard", "truncated", bytes(8) + header(20240520, 1, 1000) + tokens[:100])
    if real:
        write(out, "shard", "real_head", bytes(8) + real[:1200])


# tiny GPT-2 config: maxT, V, L, NH, C, Vp (model file header order: maxT V L NH C Vp)
TINY = (4, 8, 1, 2, 4, 8)


def num_params(maxT, V, L, NH, C, Vp):
    return Vp * C + maxT * C + 2 * L * C + 3 * L * C * C + 3 * L * C + L * C * C + L * C + 2 * L * C \
        + 4 * L * C * C + 4 * L * C + 4 * L * C * C + L * C + 2 * C


def model_seeds(out):
    n = num_params(*TINY)
    real = read_real("ref/gpt2_d2.bin", 1024 + 4 * n)
    w = real[1024:] if real else struct.pack("<%df" % n, *[((i * 37) % 101 - 50) / 1000.0 for i in range(n)])
    write(out, "model", "tiny_fp32", header(20240326, 3, *TINY) + w)
    bf16 = b"".join(w[4 * i + 2:4 * i + 4] for i in range(n))  # top halves of the little-endian floats
    write(out, "model", "tiny_bf16", header(20240326, 5, *TINY) + bf16)
    if real:
        write(out, "model", "real_head", real[:1024 + 64])


def state_seeds(out):
    n = 300
    body = struct.pack("<%df" % n, *[i / 300.0 for i in range(n)])
    # settings: nbuf = 1 + b0 % 6, n = 1 + (b1 | b2 << 8), kind = b3 % 3, b3 & 4: resume at the file's own step
    for name, kind, nbuf, step, loader, extra in [("adamw", 0, 2, 3, (0, 1, 2), ()), ("ivon", 1, 3, 5, (1, 0, 5), ()),
                                                  ("poco", 2, 6, 3, (0, 1, 11), (2, 1234))]:
        settings = bytes([nbuf - 1, (n - 1) & 0xff, (n - 1) >> 8, kind | 4])
        ints = [20241123, 1, step, kind, n, 0, nbuf, loader[0], 0, loader[1], 0, loader[2], 0, 1337, 0]
        ints += [0] * (64 - len(ints)) + list(extra)
        write(out, "state", name, settings + header(*ints) + body * nbuf)
    write(out, "state", "truncated", bytes([1, 43, 1, 4]) + header(20241123, 1, 3, 0, n, 0, 2) + body)


def tokenizer_seeds(out):
    real = read_real("gpt2_tokenizer.bin", 1 << 20)
    if real:
        pieces, pos = [], 1024
        while pos < len(real):
            k = real[pos]
            pieces.append(real[pos:pos + 1 + k])
            pos += 1 + k
    else:
        pieces = [bytes([1, i]) for i in range(256)] + [bytes([13]) + b"<|endoftext|>"]
    write(out, "tokenizer", "first_64", header(20240328, 2, 64, 63) + b"".join(pieces[:64]))
    write(out, "tokenizer", "first_256", header(20240328, 2, 256, 0) + b"".join(pieces[:256]))
    write(out, "tokenizer", "last_64", header(20240328, 2, 64, 63) + b"".join(pieces[-64:]))
    write(out, "tokenizer", "truncated", header(20240328, 2, 50257, 50256) + b"".join(pieces[:100]))


def cli_seeds(out):
    lines = [
        ["-e", "d2", "-b", "4", "-t", "64", "-x", "40", "-l", "1e-3", "-u", "5", "-s", "0", "-m", "10", "-seed", "7"],
        ["-e", "d4", "-b", "8", "-t", "128", "-x", "300", "-l", "1e-3", "-u", "20", "-k", "cosine", "-q", "0.1",
         "-v", "50", "-m", "20", "-s", "100", "-g", "64", "-o", "log_quickstart"],
        ["-opt", "poco", "-pg", "0.5", "-pp", "32", "-pgs", "linear", "-pst", "7", "-pmb", "9", "-psn", "0"],
        ["-opt", "ivon", "-d", "4096", "-bma", "8", "-v", "25", "-ess", "1e10", "-h0", "1e-3", "-b2", "0.99999"],
        ["-k", "wsd", "-u", "10", "-x", "100", "-seed", "18446744073709551615"],
        ["-b", "four"],
        ["--help"],
    ]
    for i, args in enumerate(lines):
        write(out, "cli", "args_%d" % i, b"\0".join(a.encode() for a in args))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    shard_seeds(out)
    model_seeds(out)
    state_seeds(out)
    tokenizer_seeds(out)
    cli_seeds(out)
    print("seeds in %s: %s" % (out, ", ".join("%s %d" % (h, len(os.listdir(os.path.join(out, h))))
                                              for h in sorted(os.listdir(out)))))


if __name__ == "__main__":
    main()
