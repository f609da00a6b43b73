"""Independent check of export_gpt2's output (doc/evaluate.md).

Reads the safetensors files with a reader written from the format spec (u64 little-endian header length, JSON
header of dtype / shape / data_offsets, raw little-endian data) and numpy, and compares every tensor to the llm.c
model file read with numpy (the Hugging Face names and Conv1D (in, out) layout mapped here, not by the exporter),
config.json to the model header, sigma.safetensors to 1 / sqrt(ess (h + delta)) in fp32 from the state file, and
with --debug-state the logits of a torch GPT-2 (train_gpt2.py's model) loaded from the HF names to the reference
logits of that file (the ones test_gpt2 checks the C model against).
Usage: check_export.py --dir OUT --model model.bin [--state state.bin] [--debug-state debug_state.bin]
Prints OK/FAIL per check and `N passed, N failed`; exit 1 on a failure.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

HEADER_INTS = 256
# llm.c tensor -> (HF suffix, per layer, transposed); 2-D weight group (the -pr prior) as llmc/model.h
LAYOUT = [
    ("wte", "wte.weight", False, False, True), ("wpe", "wpe.weight", False, False, True),
    ("ln1w", "ln_1.weight", True, False, False), ("ln1b", "ln_1.bias", True, False, False),
    ("qkvw", "attn.c_attn.weight", True, True, True), ("qkvb", "attn.c_attn.bias", True, False, False),
    ("attprojw", "attn.c_proj.weight", True, True, True), ("attprojb", "attn.c_proj.bias", True, False, False),
    ("ln2w", "ln_2.weight", True, False, False), ("ln2b", "ln_2.bias", True, False, False),
    ("fcw", "mlp.c_fc.weight", True, True, True), ("fcb", "mlp.c_fc.bias", True, False, False),
    ("fcprojw", "mlp.c_proj.weight", True, True, True), ("fcprojb", "mlp.c_proj.bias", True, False, False),
    ("lnfw", "ln_f.weight", False, False, False), ("lnfb", "ln_f.bias", False, False, False),
]

passed = failed = 0


def check(ok, what):
    global passed, failed
    print(("OK   " if ok else "FAIL ") + what)
    if ok:
        passed += 1
    else:
        failed += 1
    return ok


def read_safetensors(path):
    """{name: float32 array} from a safetensors file; raises ValueError on a malformed file."""
    raw = open(path, "rb").read()
    if len(raw) < 8:
        raise ValueError("%s: shorter than the 8-byte header length" % path)
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError("%s: header length %d exceeds the file" % (path, n))
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    header.pop("__metadata__", None)
    spans, out = [], {}
    for name, e in header.items():
        if e["dtype"] != "F32":
            raise ValueError("%s: %s has dtype %s" % (path, name, e["dtype"]))
        a, b = e["data_offsets"]
        if b - a != 4 * int(np.prod(e["shape"], dtype=np.int64)):
            raise ValueError("%s: %s offsets %d..%d do not fit shape %s" % (path, name, a, b, e["shape"]))
        spans.append((a, b))
        out[name] = np.frombuffer(data, dtype="<f4", count=(b - a) // 4, offset=a).reshape(e["shape"])
    spans.sort()
    pos = 0
    for a, b in spans:  # contiguous, no overlap, covering the data exactly (the spec's rule)
        if a != pos:
            raise ValueError("%s: data gap or overlap at byte %d" % (path, a))
        pos = b
    if pos != len(data):
        raise ValueError("%s: %d data bytes, the tensors cover %d" % (path, len(data), pos))
    return out


def read_model(path):
    """config dict and {llm.c name: array} of an fp32 llm.c model file."""
    raw = open(path, "rb").read()
    h = np.frombuffer(raw, dtype="<i4", count=HEADER_INTS)
    assert h[0] == 20240326 and h[1] == 3, "%s: not an fp32 llm.c model file" % path
    maxT, V, L, NH, C, Vp = (int(x) for x in h[2:8])
    cfg = dict(max_seq_len=maxT, vocab_size=V, num_layers=L, num_heads=NH, channels=C, padded_vocab_size=Vp)
    shapes = [(Vp, C), (maxT, C), (L, C), (L, C), (L, 3 * C, C), (L, 3 * C), (L, C, C), (L, C), (L, C), (L, C),
              (L, 4 * C, C), (L, 4 * C), (L, C, 4 * C), (L, C), (C,), (C,)]
    flat = np.frombuffer(raw, dtype="<f4", offset=HEADER_INTS * 4)
    assert flat.size == sum(int(np.prod(s)) for s in shapes), "%s: size does not match its header" % path
    out, off = {}, 0
    for (name, *_), s in zip(LAYOUT, shapes):
        n = int(np.prod(s))
        out[name] = flat[off:off + n].reshape(s)
        off += n
    return cfg, out


def hf_from_llmc(cfg, t):
    """{HF name: array} expected from llm.c tensors t."""
    out = {}
    for name, hf, per_layer, transpose, _ in LAYOUT:
        a = t[name]
        if name == "wte":
            a = a[:cfg["vocab_size"]]
        if per_layer:
            for l in range(cfg["num_layers"]):
                out["transformer.h.%d.%s" % (l, hf)] = a[l].T if transpose else a[l]
        else:
            out["transformer." + hf] = a
    return out


def compare_all(what, got, want, source):
    check(sorted(got) == sorted(want), "%s: the %d tensor names (%d expected)" % (what, len(got), len(want)))
    bad = [k for k in want if k not in got or got[k].shape != want[k].shape or
           not np.array_equal(got[k].view(np.uint32), np.ascontiguousarray(want[k]).view(np.uint32))]
    check(not bad, "%s: every tensor bit-equal to %s (%d differ%s)" % (
        what, source, len(bad), (": " + ", ".join(bad[:3])) if bad else ""))


def sigma_from_state(path, cfg, t):
    raw = open(path, "rb").read()
    h = np.frombuffer(raw, dtype="<i4", count=HEADER_INTS)
    opt, nparam, nbuf = int(h[3]), int(h[4].astype(np.uint32)) | (int(h[5].astype(np.uint32)) << 32), int(h[6])
    assert opt in (1, 2), "%s: optimizer %d is not IVON/PoCo" % (path, opt)
    extra = h[64:128].view(np.uint32)

    def dbl(slot):
        return struct.unpack("<d", struct.pack("<II", int(extra[slot]), int(extra[slot + 1])))[0]

    ess, pr2, pr1 = dbl(10), dbl(12), dbl(14)
    hess = np.frombuffer(raw, dtype="<f4", count=nparam, offset=HEADER_INTS * 4 + 4 * nparam)
    out, off = {}, 0
    for name, _, _, _, decay in LAYOUT:
        n = t[name].size
        delta = np.float32(pr2 if decay else pr1)
        s = np.float32(1.0) / np.sqrt(np.float32(ess) * (hess[off:off + n] + delta))
        out[name] = s.astype(np.float32).reshape(t[name].shape)
        off += n
    return out, ess, nbuf


def torch_logits_check(st, cfg, debug_path):
    try:
        import torch
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
        import train_gpt2
    except ImportError as e:
        print("note: torch check left out (%s)" % e)
        return
    model = train_gpt2.GPT2(cfg)
    L = cfg["num_layers"]
    with torch.no_grad():  # the HF names mapped back to the reference model's tensors
        for name, hf, per_layer, transpose, _ in LAYOUT:
            p = getattr(model, name)
            if per_layer:
                parts = [st["transformer.h.%d.%s" % (l, hf)] for l in range(L)]
                a = np.stack([x.T if transpose else x for x in parts])
            else:
                a = st["transformer." + hf]
            p.zero_()
            p[:a.shape[0]].copy_(torch.from_numpy(np.array(a)))
    raw = open(debug_path, "rb").read()
    h = np.frombuffer(raw, dtype="<i4", count=HEADER_INTS)
    B, T, V = int(h[2]), int(h[3]), int(h[5])
    off = HEADER_INTS * 4
    inputs = np.frombuffer(raw, dtype="<i4", count=B * T, offset=off).reshape(B, T)
    want = np.frombuffer(raw, dtype="<f4", count=B * T * V, offset=off + 8 * B * T).reshape(B, T, V)
    with torch.no_grad():
        logits, _ = model(torch.from_numpy(inputs.astype(np.int64)))
    err = float(np.max(np.abs(logits.numpy() - want)))
    check(err < 1e-4, "torch GPT-2 from the HF names: logits on the reference batch (%dx%d) max |diff| %.3g" % (
        B, T, err))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--state")
    ap.add_argument("--debug-state")
    args = ap.parse_args()
    cfg, t = read_model(args.model)
    want = hf_from_llmc(cfg, t)
    try:
        st = read_safetensors(os.path.join(args.dir, "model.safetensors"))
        check(True, "model.safetensors parses (%d tensors)" % len(st))
        compare_all("model.safetensors", st, want, "the model file's")
    except (ValueError, OSError, KeyError) as e:
        check(False, "model.safetensors: %s" % e)
        st = None
    c = json.load(open(os.path.join(args.dir, "config.json")))
    check(c.get("architectures") == ["GPT2LMHeadModel"] and c.get("n_layer") == cfg["num_layers"] and
          c.get("n_head") == cfg["num_heads"] and c.get("n_embd") == cfg["channels"] and
          c.get("n_positions") == cfg["max_seq_len"] and c.get("vocab_size") == cfg["vocab_size"],
          "config.json: GPT2LMHeadModel, n_layer %d n_head %d n_embd %d n_positions %d vocab_size %d" % (
              cfg["num_layers"], cfg["num_heads"], cfg["channels"], cfg["max_seq_len"], cfg["vocab_size"]))
    if args.state:
        sig, ess, _ = sigma_from_state(args.state, cfg, t)
        try:
            ss = read_safetensors(os.path.join(args.dir, "sigma.safetensors"))
            compare_all("sigma.safetensors (ess %g)" % ess, ss, hf_from_llmc(cfg, sig),
                        "1 / sqrt(ess (h + delta)) from the state file")
        except (ValueError, OSError, KeyError) as e:
            check(False, "sigma.safetensors: %s" % e)
    if args.debug_state and st is not None:
        torch_logits_check(st, cfg, args.debug_state)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
