"""
Prepare the default corpus (Jane Austen's six novels) as llm.c token shards,
and write the GPT-2 tokenizer file gpt2_tokenizer.bin.

Run:  /usr/bin/python3 dev/data/prepro_austen.py [--out-dir DIR] [--tokenizer PATH] [--force]
Defaults: --out-dir dev/data/austen, --tokenizer gpt2_tokenizer.bin (repo root);
relative paths are taken relative to the repo root, whatever the cwd.

Source: Debian package r-cran-janeaustenr (fetched with `apt-get download`
into dev/data/cache/, unpacked with `dpkg-deb -x`; R is not needed). The
novels are character vectors (one element per line of the Project Gutenberg
text) in the package's lazy-load database data/Rdata.rdb/.rdx, read by
dev/data/rserial.py.

Corpus: the six novels in austen_books() order (Sense & Sensibility, Pride &
Prejudice, Mansfield Park, Emma, Northanger Abbey, Persuasion), every line
followed by "\\n" (equivalently: all lines joined with "\\n" plus one trailing
"\\n"); 4,025,029 bytes of UTF-8 with sha256
f2516f2139e3cecf49657122fed58ac46313f1fdff32a26fc66789293e92d573.
The script stops with an error if this does not match.

Documents and splits: each novel is one document whose text is its lines
joined with "\\n" (no trailing newline). The <|endoftext|> token (50256) is
placed before every document (llm.c style), so each split starts with EOT:
  train = EOT S&S EOT P&P EOT MP EOT Emma EOT NA   (five novels, in order)
  val   = EOT Persuasion
Tokenizer: GPT-2 BPE (dev/data/gpt2_bpe.py, identical to tiktoken "gpt2").

Outputs (llm.c formats):
  DIR/austen_train.bin, DIR/austen_val.bin: int32[256] little-endian header
    [0]=20240520 magic, [1]=1 version, [2]=number of tokens; then uint16 tokens.
  gpt2_tokenizer.bin: int32[256] header [0]=20240328, [1]=3, [2]=50257
    (vocab size), [3]=50256 (EOT id), [4]=50000 (merges); then for ids
    0..50256 one uint8 length followed by the token's raw bytes; then the BPE
    merges in rank order as int32 triples (left id, right id, merged id), what
    the C encoder (llmc/bpe.h) needs. Version 2 files (no merges) still load
    for decoding.
  DIR/austen_train.txt, DIR/austen_val.txt: the split texts as UTF-8 with the
    literal <|endoftext|> before each document (the shards are their encoding
    with special tokens allowed; dev/test/test_bpe.sh encodes them in C).
  DIR/.stamp.json: sha256 of the outputs and of the inputs (scripts, corpus,
    vocabulary); a rerun with everything matching does nothing.
"""

import argparse
import glob
import hashlib
import json
import os
import struct
import subprocess
import sys
import time

DATA_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(DATA_DIR))
CACHE_DIR = os.path.join(DATA_DIR, "cache")
sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, DATA_DIR)

import gpt2_bpe  # noqa: E402
import rserial  # noqa: E402

DEB_PACKAGE = "r-cran-janeaustenr"
DEB_DIR = os.path.join(CACHE_DIR, "janeaustenr_deb")
CORPUS_SHA256 = "f2516f2139e3cecf49657122fed58ac46313f1fdff32a26fc66789293e92d573"
CORPUS_BYTES = 4025029

# austen_books() order: (title, R object name)
NOVELS = [
    ("Sense & Sensibility", "sensesensibility"),
    ("Pride & Prejudice", "prideprejudice"),
    ("Mansfield Park", "mansfieldpark"),
    ("Emma", "emma"),
    ("Northanger Abbey", "northangerabbey"),
    ("Persuasion", "persuasion"),
]
VAL_NOVELS = ["persuasion"]

SHARD_MAGIC, SHARD_VERSION = 20240520, 1
TOK_MAGIC, TOK_VERSION = 20240328, 3
HEADER_INTS = 256

STAMP_VERSION = 1


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _run(cmd, cwd):
    return subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def fetch_deb():
    """Download and unpack r-cran-janeaustenr into the cache; return the unpack dir."""
    os.makedirs(CACHE_DIR, exist_ok=True)
    debs = sorted(glob.glob(os.path.join(CACHE_DIR, DEB_PACKAGE + "_*.deb")))
    if not debs:
        print("fetching %s with apt-get download into %s" % (DEB_PACKAGE, CACHE_DIR))
        r = _run(["apt-get", "download", DEB_PACKAGE], CACHE_DIR)
        if r.returncode != 0:
            print("apt-get download failed; running apt-get update and retrying")
            _run(["apt-get", "update"], CACHE_DIR)
            r = _run(["apt-get", "download", DEB_PACKAGE], CACHE_DIR)
        debs = sorted(glob.glob(os.path.join(CACHE_DIR, DEB_PACKAGE + "_*.deb")))
        if r.returncode != 0 or not debs:
            raise SystemExit("error: apt-get download %s failed:\n%s"
                             % (DEB_PACKAGE, r.stdout.decode(errors="replace")))
    deb = debs[-1]
    marker = os.path.join(DEB_DIR, ".unpacked_from")
    if not (os.path.exists(marker) and open(marker).read() == os.path.basename(deb)):
        os.makedirs(DEB_DIR, exist_ok=True)
        r = _run(["dpkg-deb", "-x", deb, DEB_DIR], CACHE_DIR)
        if r.returncode != 0:
            raise SystemExit("error: dpkg-deb -x %s failed:\n%s" % (deb, r.stdout.decode(errors="replace")))
        with open(marker, "w") as f:
            f.write(os.path.basename(deb))
    return DEB_DIR


def load_novels():
    """Return {R object name: list of lines} for the six novels."""
    root = fetch_deb()
    bases = []
    for rel in ("data/Rdata", "R/sysdata"):
        bases += glob.glob(os.path.join(root, "usr/lib/R/site-library/janeaustenr", rel + ".rdb"))
    if not bases:
        raise SystemExit("error: %s: no data/Rdata.rdb or R/sysdata.rdb in the unpacked package" % root)
    objs = {}
    for rdb in bases:
        base = rdb[:-len(".rdb")]
        try:
            objs.update(rserial.read_lazyload_db(base))
        except (rserial.RFormatError, OSError, EOFError, ValueError) as e:
            raise SystemExit("error: %s.rdb/.rdx: %s" % (base, e))
    novels = {}
    for title, name in NOVELS:
        v = objs.get(name)
        if not isinstance(v, rserial.RVector) or v.type != rserial.STRSXP:
            raise SystemExit("error: janeaustenr data has no character vector %r (%s)" % (name, title))
        if any(s is None for s in v.data):
            raise SystemExit("error: janeaustenr %s contains NA lines" % name)
        novels[name] = list(v.data)
    return novels


def novel_texts():
    """Return [(name, text)] in austen_books() order, after verifying the corpus hash."""
    novels = load_novels()
    corpus = "".join(line + "\n" for _, name in NOVELS for line in novels[name]).encode("utf-8")
    got = hashlib.sha256(corpus).hexdigest()
    if got != CORPUS_SHA256 or len(corpus) != CORPUS_BYTES:
        raise SystemExit("error: assembled Austen corpus is %d bytes with sha256 %s; expected %d bytes, sha256 %s"
                         % (len(corpus), got, CORPUS_BYTES, CORPUS_SHA256))
    docs = [(name, "\n".join(novels[name])) for _, name in NOVELS]
    for name, text in docs:
        if gpt2_bpe.EOT_TEXT in text:
            raise SystemExit("error: novel %s contains the literal %s" % (name, gpt2_bpe.EOT_TEXT))
    return docs


def split_docs():
    """Return {"train": [texts], "val": [texts]}."""
    docs = novel_texts()
    return {
        "train": [t for n, t in docs if n not in VAL_NOVELS],
        "val": [t for n, t in docs if n in VAL_NOVELS],
    }


def split_text(docs):
    """The split as one string with the EOT marker before each document."""
    return "".join(gpt2_bpe.EOT_TEXT + d for d in docs)


def encode_split(enc, docs):
    ids = []
    for d in docs:
        ids.append(gpt2_bpe.EOT_ID)
        ids.extend(enc.encode_ordinary(d))
    return ids


def shard_bytes(ids):
    header = [0] * HEADER_INTS
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, len(ids)
    if any(i < 0 or i > 0xFFFF for i in ids):
        raise SystemExit("error: token id out of uint16 range")
    return struct.pack("<256i", *header) + struct.pack("<%dH" % len(ids), *ids)


def read_shard(path):
    """Return the token list of an llm.c shard; raises ValueError on a bad file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 * HEADER_INTS:
        raise ValueError("%s: shorter than the 1024-byte header" % path)
    header = struct.unpack_from("<256i", data, 0)
    if header[0] != SHARD_MAGIC or header[1] != SHARD_VERSION:
        raise ValueError("%s: bad magic/version %d/%d" % (path, header[0], header[1]))
    n = header[2]
    if len(data) != 4 * HEADER_INTS + 2 * n:
        raise ValueError("%s: size %d does not match %d tokens" % (path, len(data), n))
    return list(struct.unpack_from("<%dH" % n, data, 4 * HEADER_INTS))


def tokenizer_bytes(enc):
    header = [0] * HEADER_INTS
    merges = enc.merge_ids()
    header[0], header[1], header[2], header[3] = TOK_MAGIC, TOK_VERSION, gpt2_bpe.VOCAB_SIZE, gpt2_bpe.EOT_ID
    header[4] = len(merges)
    parts = [struct.pack("<256i", *header)]
    for i in range(gpt2_bpe.VOCAB_SIZE):
        b = enc.token_bytes(i)
        if not 0 < len(b) < 256:
            raise SystemExit("error: token %d has %d bytes, does not fit a uint8 length" % (i, len(b)))
        parts.append(bytes([len(b)]) + b)
    parts.append(struct.pack("<%di" % (3 * len(merges)), *[x for m in merges for x in m]))
    return b"".join(parts)


def read_tokenizer(path, with_merges=False):
    """Token byte strings and the EOT id of gpt2_tokenizer.bin (version 2 or 3), and with with_merges the
    (left, right, result) merge triples (empty for version 2); raises ValueError."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 * HEADER_INTS:
        raise ValueError("%s: shorter than the header" % path)
    header = struct.unpack_from("<256i", data, 0)
    if header[0] != TOK_MAGIC or header[1] not in (2, 3):
        raise ValueError("%s: bad magic/version %d/%d" % (path, header[0], header[1]))
    n = header[2]
    pos = 4 * HEADER_INTS
    toks = []
    for i in range(n):
        if pos >= len(data):
            raise ValueError("%s: truncated at token %d" % (path, i))
        ln = data[pos]
        toks.append(data[pos + 1:pos + 1 + ln])
        pos += 1 + ln
    nm = header[4] if header[1] == 3 else 0
    if len(data) - pos != 12 * nm:
        raise ValueError("%s: %d bytes after the tokens, want %d for %d merges" % (path, len(data) - pos, 12 * nm, nm))
    flat = struct.unpack_from("<%di" % (3 * nm), data, pos)
    merges = [tuple(flat[3 * k:3 * k + 3]) for k in range(nm)]
    return (toks, header[3], merges) if with_merges else (toks, header[3])


def write_atomic(path, data):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def resolve(path):
    return path if os.path.isabs(path) else os.path.join(REPO_ROOT, path)


def input_hashes():
    return {
        "stamp_version": STAMP_VERSION,
        "corpus_sha256": CORPUS_SHA256,
        "encoder_json_sha256": gpt2_bpe.ENCODER_JSON_SHA256,
        "vocab_bpe_sha256": gpt2_bpe.VOCAB_BPE_SHA256,
        "scripts": {os.path.basename(p): sha256_file(p) for p in (
            os.path.join(DATA_DIR, "prepro_austen.py"),
            os.path.join(DATA_DIR, "gpt2_bpe.py"),
            os.path.join(DATA_DIR, "rserial.py"))},
    }


def outputs(out_dir, tok_path):
    return {
        "train": os.path.join(out_dir, "austen_train.bin"),
        "val": os.path.join(out_dir, "austen_val.bin"),
        "train_text": os.path.join(out_dir, "austen_train.txt"),
        "val_text": os.path.join(out_dir, "austen_val.txt"),
        "tokenizer": tok_path,
    }


def up_to_date(stamp_path, outs, inputs):
    try:
        with open(stamp_path) as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return None
    if stamp.get("inputs") != inputs:
        return None
    recorded = stamp.get("outputs", {})
    for key, path in outs.items():
        rec = recorded.get(key)
        if not rec or rec.get("path") != os.path.abspath(path) or not os.path.exists(path):
            return None
        if sha256_file(path) != rec.get("sha256"):
            return None
    return stamp


def main(argv=None):
    ap = argparse.ArgumentParser(description="Tokenize the Jane Austen corpus into llm.c shards.")
    ap.add_argument("--out-dir", default="dev/data/austen",
                    help="shard directory (relative to repo root), default dev/data/austen")
    ap.add_argument("--tokenizer", default="gpt2_tokenizer.bin",
                    help="tokenizer output (relative to repo root), default gpt2_tokenizer.bin")
    ap.add_argument("--force", action="store_true", help="rebuild even if outputs are up to date")
    args = ap.parse_args(argv)

    out_dir = resolve(args.out_dir)
    tok_path = resolve(args.tokenizer)
    stamp_path = os.path.join(out_dir, ".stamp.json")
    outs = outputs(out_dir, tok_path)
    inputs = input_hashes()

    if not args.force:
        stamp = up_to_date(stamp_path, outs, inputs)
        if stamp is not None:
            print("up to date: %s (train %d tokens, val %d tokens), %s"
                  % (out_dir, stamp["tokens"]["train"], stamp["tokens"]["val"], tok_path))
            return 0

    t0 = time.time()
    splits = split_docs()
    enc = gpt2_bpe.GPT2BPE.load()
    t1 = time.time()
    counts = {}
    for split in ("train", "val"):
        ids = encode_split(enc, splits[split])
        counts[split] = len(ids)
        write_atomic(outs[split], shard_bytes(ids))
        write_atomic(outs[split + "_text"], split_text(splits[split]).encode("utf-8"))
        print("%s: %d documents, %d tokens -> %s" % (split, len(splits[split]), len(ids), outs[split]))
    write_atomic(tok_path, tokenizer_bytes(enc))
    print("tokenizer: %d tokens -> %s" % (gpt2_bpe.VOCAB_SIZE, tok_path))
    stamp = {
        "inputs": inputs,
        "outputs": {k: {"path": os.path.abspath(p), "sha256": sha256_file(p)} for k, p in outs.items()},
        "tokens": counts,
    }
    write_atomic(stamp_path, (json.dumps(stamp, indent=1, sort_keys=True) + "\n").encode())
    print("done in %.1fs (load %.1fs, encode+write %.1fs)" % (time.time() - t0, t1 - t0, time.time() - t1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
