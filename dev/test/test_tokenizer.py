"""
Tests for the GPT-2 BPE tokenizer (dev/data/gpt2_bpe.py) and the Austen data
pipeline (dev/data/prepro_austen.py).

Run: /usr/bin/python3 dev/test/test_tokenizer.py [--encoder ./encode_gpt2]
With --encoder, the C encoder (llmc/bpe.h) is checked against the same tiktoken references, on the whole corpus
(its shards must equal the Python-written ones byte for byte) and on bad inputs.
Reference: tiktoken's "gpt2" encoding from npm (WASM), installed on first use
with `npm install --prefix dev/data/cache/node tiktoken` and driven through
dev/data/tiktoken_encode.mjs. Runs prepro_austen.py first (no-op when up to date).
Last line: "N passed, N failed"; exit status 1 on any failure.
"""

import os
import random
import struct
import subprocess
import sys
import tempfile
import time
import traceback

TEST_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(TEST_DIR))
DATA_DIR = os.path.join(REPO_ROOT, "dev", "data")
NODE_PREFIX = os.path.join(DATA_DIR, "cache", "node")
TIKTOKEN_JS = os.path.join(DATA_DIR, "tiktoken_encode.mjs")
sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, DATA_DIR)

import gpt2_bpe  # noqa: E402
import prepro_austen  # noqa: E402

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok   %s" % name)
    else:
        failed += 1
        print("FAIL %s%s" % (name, (": " + detail) if detail else ""))


def first_diff(a, b):
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return "first difference at %d: %r vs %r (lengths %d, %d)" % (
                i, a[max(0, i - 3):i + 4], b[max(0, i - 3):i + 4], len(a), len(b))
    if len(a) != len(b):
        return "lengths %d vs %d" % (len(a), len(b))
    return ""


def ensure_tiktoken():
    if os.path.exists(os.path.join(NODE_PREFIX, "node_modules", "tiktoken", "package.json")):
        return
    os.makedirs(NODE_PREFIX, exist_ok=True)
    print("installing tiktoken with npm into %s" % NODE_PREFIX)
    r = subprocess.run(["npm", "install", "--prefix", NODE_PREFIX, "tiktoken"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise SystemExit("error: npm install tiktoken failed:\n%s" % r.stdout.decode(errors="replace"))


def tiktoken_encode(texts, tmpdir, allow_special=False):
    """Encode each text with tiktoken (node); returns a list of id lists."""
    out = []
    for k, text in enumerate(texts):
        src = os.path.join(tmpdir, "in%d.txt" % k)
        dst = os.path.join(tmpdir, "out%d.i32" % k)
        with open(src, "wb") as f:
            f.write(text.encode("utf-8"))
        cmd = ["node", TIKTOKEN_JS, src, dst] + (["--allow-special"] if allow_special else [])
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise SystemExit("error: %s failed:\n%s" % (" ".join(cmd), r.stdout.decode(errors="replace")))
        with open(dst, "rb") as f:
            data = f.read()
        out.append(list(struct.unpack("<%di" % (len(data) // 4), data)))
    return out


MIXED = (
    "Hello,   world!\tTabs\t\there; newlines\n\n\nand  trailing spaces   \n"
    "Numbers: 3.14159, 1,000,000 and 2024-05-20 12345678901234567890.\n"
    "Accents: café, naïve, résumé, Ærøskøbing, Ελληνικά, русский, 日本語のテキスト.\n"
    "Decomposed: cafe\u0301 n\u0303\n"
    "Emoji: 😀👍🏽 👨‍👩‍👧‍👦 🇫🇷!!\n"
    "Curly quotes: \u201cShe said\u2019s\u201d \u2018it\u2019ll\u2019 \u2014 dash\u2026\n"
    "Contractions: I'm, you're, we've, they'll, he'd, it's, IT'S, don't'\n"
    "Spaces:\u00a0nbsp,\u3000ideographic,\u2009thin \r\n windows line\r\n"
    "   \n\t \n"
    "Symbols: <|endof text|> #$%^&*()_+-=[]{}|;':\",./<>?`~ \\ @@ "
    "x\u200by \ufeffBOM \U0001d54f math \u0660\u0661 arabic digits \u00b2\u00bd"
)


# pre-tokenizer edge cases: White_Space vs other controls, long runs, lone marks, empty and one-byte texts
EDGE = [
    "", "a", " ", "\n", "  x", "x  ", "a\x1cb\x1f c", "a\x85b \x85\x85 c", "\u2028\u2029 x\u00a0\u00a0y",
    " " * 5000 + "end", "a" * 5000, "'s's 'S 'll'd 'm're've't", "12345 123 1.5e-7 \u0663\u0664",
    "\u0301\u0301a", "tab\t\t\tend\t", "\r\n\r\n", "x" + "\u200d" * 10, "<|endof", "|>",
]


def c_encode(encoder, text, tmp, special=0):
    """Token ids of the C encoder for text (via a shard file); None and the error line when it fails."""
    src, out = os.path.join(tmp, "in.txt"), os.path.join(tmp, "out.bin")
    with open(src, "wb") as f:
        f.write(text.encode("utf-8") if isinstance(text, str) else text)
    r = subprocess.run([encoder, "-i", src, "-o", out, "-special", str(special)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    if r.returncode != 0:
        return None, r.stdout.decode(errors="replace").strip()
    return prepro_austen.read_shard(out), ""


def c_encoder_checks(encoder, cases, train_path, val_path):
    with tempfile.TemporaryDirectory() as tmp:
        for name, text, ref in cases:
            ids, err = c_encode(encoder, text, tmp)
            check("C encoder: %s == tiktoken" % name, ids == ref, err or first_diff(ids, ref))
        for name, path in (("train", train_path), ("val", val_path)):
            txt = os.path.join(os.path.dirname(path), "austen_%s.txt" % name)
            out = os.path.join(tmp, name + ".bin")
            r = subprocess.run([encoder, "-i", txt, "-o", out, "-special", "1"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
            with open(path, "rb") as f:
                want = f.read()
            same = r.returncode == 0 and open(out, "rb").read() == want
            check("C encoder: austen_%s.txt -> shard == the Python shard, byte for byte" % name, same,
                  r.stdout.decode(errors="replace").strip())
        # bad inputs: one error line naming the file or flag, non-zero exit
        bad = [
            ("invalid UTF-8", b"ok \xff\xfe", "not valid UTF-8 at byte 3", 0),
            ("truncated UTF-8", "caf\u00e9".encode("utf-8")[:-1], "not valid UTF-8 at byte 3", 0),
            ("overlong UTF-8", b"a\xc0\xafb", "not valid UTF-8 at byte 1", 0),
            ("surrogate in UTF-8", b"a\xed\xa0\x80", "not valid UTF-8 at byte 1", 0),
            ("EOT without -special 1", "a<|endoftext|>b", "contains <|endoftext|> at byte 1", 0),
        ]
        for name, data, want, special in bad:
            ids, err = c_encode(encoder, data, tmp, special)
            check("C encoder rejects %s" % name, ids is None and want in err and err.count("\n") == 0, err)
        ids, _ = c_encode(encoder, "a<|endoftext|>b<|endoftext|>", tmp, 1)
        check("C encoder: -special 1 makes each <|endoftext|> the EOT id", ids == [64, 50256, 65, 50256], str(ids))


def random_text(rng, n):
    pools = [
        " ", "  ", "\n", "\t", "\r\n", "'", "'s", "'S", "'ll", "’", "“", ".", ",", "!?",
        "a", "the", "The", "Elizabeth", "Mr.", "0", "42", "1999", "é", "ß", "\u0301",
        "ñ", "ж", "中", "😀", "\u200d", "\u00a0", "-", "--", "\u2014", "(", ")", "&",
    ]
    return "".join(rng.choice(pools) for _ in range(n))


def main():
    t0 = time.time()
    r = subprocess.run([sys.executable, os.path.join(DATA_DIR, "prepro_austen.py")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    print(r.stdout.decode(errors="replace").rstrip())
    check("prepro_austen.py runs", r.returncode == 0)
    # A second run must be a no-op.
    r2 = subprocess.run([sys.executable, os.path.join(DATA_DIR, "prepro_austen.py")],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    check("prepro_austen.py second run is up to date",
          r2.returncode == 0 and r2.stdout.decode().startswith("up to date"), r2.stdout.decode())

    enc = gpt2_bpe.GPT2BPE.load()
    check("hello world", enc.encode("hello world") == [31373, 995], str(enc.encode("hello world")))
    s = "That's my beautiful and sweet string"
    check("That's my beautiful and sweet string",
          enc.encode(s) == [2504, 338, 616, 4950, 290, 6029, 4731], str(enc.encode(s)))
    check("<|endoftext|> allowed -> [50256]",
          enc.encode("<|endoftext|>", allow_special=True) == [50256])
    try:
        enc.encode("a<|endoftext|>b")
        check("<|endoftext|> rejected when not allowed", False)
    except ValueError:
        check("<|endoftext|> rejected when not allowed", True)
    check("empty text", enc.encode("") == [] and enc.decode([]) == "")

    ensure_tiktoken()
    encoder = sys.argv[sys.argv.index("--encoder") + 1] if "--encoder" in sys.argv else None
    splits = prepro_austen.split_docs()
    train_text = prepro_austen.split_text(splits["train"])
    val_text = prepro_austen.split_text(splits["val"])
    rng = random.Random(1234)
    randoms = [random_text(rng, 400) for _ in range(4)]

    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.time()
        ref_mixed, *ref_rand = tiktoken_encode([MIXED] + randoms, tmp)
        ref_edge = tiktoken_encode(EDGE, tmp)
        ref_train, ref_val = tiktoken_encode([train_text, val_text], tmp, allow_special=True)
        t_tik = time.time() - t1

    ids = enc.encode(MIXED)
    check("mixed text == tiktoken", ids == ref_mixed, first_diff(ids, ref_mixed))
    check("mixed text round trip", enc.decode(ids) == MIXED)
    for k, (text, ref) in enumerate(zip(randoms, ref_rand)):
        ids = enc.encode(text)
        check("random text %d == tiktoken" % k, ids == ref, first_diff(ids, ref))
        check("random text %d round trip" % k, enc.decode(ids) == text)

    t1 = time.time()
    train_ids = enc.encode(train_text, allow_special=True)
    val_ids = enc.encode(val_text, allow_special=True)
    t_enc = time.time() - t1
    check("train corpus == tiktoken (%d tokens)" % len(ref_train), train_ids == ref_train,
          first_diff(train_ids, ref_train))
    check("val corpus == tiktoken (%d tokens)" % len(ref_val), val_ids == ref_val,
          first_diff(val_ids, ref_val))
    check("train round trip", enc.decode(train_ids) == train_text)
    check("val round trip", enc.decode(val_ids) == val_text)
    check("train has one EOT per document, first token EOT",
          train_ids.count(50256) == len(splits["train"]) == 5 and train_ids[0] == 50256)
    check("val has one EOT per document, first token EOT",
          val_ids.count(50256) == len(splits["val"]) == 1 and val_ids[0] == 50256)

    train_path = os.path.join(REPO_ROOT, "dev", "data", "austen", "austen_train.bin")
    val_path = os.path.join(REPO_ROOT, "dev", "data", "austen", "austen_val.bin")
    tok_path = os.path.join(REPO_ROOT, "gpt2_tokenizer.bin")
    shards = {}
    for name, path, ref in (("train", train_path, train_ids), ("val", val_path, val_ids)):
        try:
            shards[name] = prepro_austen.read_shard(path)
            check("%s shard == encoding of split text" % name, shards[name] == ref,
                  first_diff(shards[name], ref))
        except (OSError, ValueError) as e:
            check("%s shard readable" % name, False, str(e))
    with open(train_path, "rb") as f:
        hdr = struct.unpack("<3i", f.read(12))
    check("shard header magic/version/count", hdr == (20240520, 1, len(train_ids)), str(hdr))

    try:
        toks, eot, merges = prepro_austen.read_tokenizer(tok_path, with_merges=True)
        with open(tok_path, "rb") as f:
            thdr = struct.unpack("<5i", f.read(20))
        check("tokenizer header", thdr == (20240328, 3, 50257, 50256, 50000) and eot == 50256, str(thdr))
        check("tokenizer table == encoder bytes",
              len(toks) == 50257 and all(toks[i] == enc.token_bytes(i) for i in range(50257)))
        check("tokenizer merges == vocab.bpe in rank order", merges == enc.merge_ids())
        check("every merge result = left + right bytes",
              all(toks[c] == toks[a] + toks[b] for a, b, c in merges))
        for name, text in (("train", train_text), ("val", val_text)):
            with open(os.path.join(os.path.dirname(train_path), "austen_%s.txt" % name), "rb") as f:
                check("austen_%s.txt = the split text" % name, f.read() == text.encode("utf-8"))
        for name, text in (("train", train_text), ("val", val_text)):
            got = b"".join(toks[i] for i in shards.get(name, []))
            check("tokenizer.bin decodes %s shard to split text" % name, got == text.encode("utf-8"))
    except (OSError, ValueError) as e:
        check("tokenizer file readable", False, str(e))

    # Corrupt inputs must be rejected, not misread.
    with tempfile.TemporaryDirectory() as tmp:
        bad = os.path.join(tmp, "bad.bin")
        with open(train_path, "rb") as f:
            data = f.read()
        with open(bad, "wb") as f:
            f.write(data[:-2])
        try:
            prepro_austen.read_shard(bad)
            check("truncated shard rejected", False)
        except ValueError:
            check("truncated shard rejected", True)

    if encoder is not None:
        c_encoder_checks(encoder, [("mixed text", MIXED, ref_mixed)] +
                         [("random text %d" % k, t, r) for k, (t, r) in enumerate(zip(randoms, ref_rand))] +
                         [("edge %d %r" % (k, t[:24]), t, r) for k, (t, r) in enumerate(zip(EDGE, ref_edge))],
                         train_path, val_path)

    print("timing: total %.1fs, tiktoken (node) %.1fs, own encoder on corpus %.2fs"
          % (time.time() - t0, t_tik, t_enc))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        rc = main()
    except (SystemExit, Exception) as e:
        # Setup errors (prepro, npm, node missing) count as a failure; keep the summary line last.
        if isinstance(e, SystemExit):
            print(e.code if isinstance(e.code, str) else "error: exit status %s" % e.code)
        else:
            traceback.print_exc(file=sys.stdout)
        check("test setup / unexpected error", False)
        print("%d passed, %d failed" % (passed, failed))
        rc = 1
    sys.exit(rc)
