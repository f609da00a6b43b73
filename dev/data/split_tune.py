"""
Split the Austen train shard into a tuning pair and a small shard, so that settings are chosen without looking at the val
split (Persuasion) that the results tables report:
  austen_tune_train.bin = the train shard's first four novels (S&S, P&P, MP, Emma), 772,866 tokens
  austen_tune_val.bin   = its fifth novel (Northanger Abbey), 105,383 tokens
  austen_small_train.bin = the train shard's first 65,536 tokens (most of S&S), for the data-limited runs
All keep the <|endoftext|> before each document and the llm.c shard format (int32[256] header, uint16 tokens).

Run:  python3 dev/data/split_tune.py [--dir DIR]   (default dev/data/austen; needs austen_train.bin there)
Plain Python 3 (no numpy, no torch). Rewrites the two files only when their content would change.
"""

import argparse
import array
import os
import struct
import sys

MAGIC, VERSION, EOT = 20240520, 1, 50256
TUNE_DOCS = 4  # documents of the tuning train shard; the rest is the tuning val shard
SMALL_TOKENS = 65536  # the data-limited train shard


def read_shard(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 1024:
        sys.exit(f"error: split_tune: {path}: shorter than the 1024-byte header")
    header = struct.unpack("<256i", data[:1024])
    if header[0] != MAGIC or header[1] != VERSION:
        sys.exit(f"error: split_tune: {path}: bad magic/version {header[0]}/{header[1]}")
    n = header[2]
    if len(data) != 1024 + 2 * n:
        sys.exit(f"error: split_tune: {path}: {len(data)} bytes, the header says {n} tokens")
    tokens = array.array("H")
    tokens.frombytes(data[1024:])
    if sys.byteorder != "little":
        tokens.byteswap()
    return tokens


def shard_bytes(tokens):
    header = [0] * 256
    header[0], header[1], header[2] = MAGIC, VERSION, len(tokens)
    body = array.array("H", tokens)
    if sys.byteorder != "little":
        body.byteswap()
    return struct.pack("<256i", *header) + body.tobytes()


def write_if_changed(path, data):
    if os.path.exists(path) and open(path, "rb").read() == data:
        return False
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)
    return True


def main():
    ap = argparse.ArgumentParser(description="split the Austen train shard into tuning train/val shards")
    ap.add_argument("--dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "austen"))
    args = ap.parse_args()
    src = os.path.join(args.dir, "austen_train.bin")
    if not os.path.exists(src):
        sys.exit(f"error: split_tune: {src} not found; run 'make data'")
    tokens = read_shard(src)
    starts = [i for i, t in enumerate(tokens) if t == EOT]
    if len(starts) <= TUNE_DOCS or starts[0] != 0:
        sys.exit(f"error: split_tune: {src}: {len(starts)} documents, need more than {TUNE_DOCS} starting at token 0")
    cut = starts[TUNE_DOCS]
    parts = (("austen_tune_train.bin", tokens[:cut]), ("austen_tune_val.bin", tokens[cut:]),
             ("austen_small_train.bin", tokens[:SMALL_TOKENS]))
    for name, part in parts:
        path = os.path.join(args.dir, name)
        changed = write_if_changed(path, shard_bytes(part))
        print(f"split_tune: {path}: {len(part)} tokens{'' if changed else ' (unchanged)'}")


if __name__ == "__main__":
    main()
