"""PyTorch reference for the C trainer: GPT-2 as in train_gpt2.c, plus the outputs test_gpt2.c checks.

The model is written out operation by operation to match the C code: learned position embeddings,
pre-LayerNorm blocks (eps 1e-5), causal multi-head attention from one qkv linear (scale 1/sqrt(hs)),
tanh-approximate GELU, a final LayerNorm and an lm head tied to wte. wte has Vp (padded) rows; the loss
uses only the first V logit columns (cross-entropy, mean over B*T). All computation is float32.

Parameters are held directly in the model-file layout of llmc/model.h (PARAM_TABLE order and shapes):
per-layer tensors are stacked over L, e.g. qkvw is (L, 3C, C) = the L layers' (3C, C) weights, and every
linear weight is (out, in) like torch's nn.Linear. So the parameters, and their gradients, are written
to disk by concatenating the 16 tensors in order.

Initialisation (seeded with torch.manual_seed): N(0, 0.02) for wte (rows < V; padded rows are zero), wpe,
qkvw, attprojw, fcw, fcprojw, where attprojw and fcprojw are further scaled by 1/sqrt(2L); layernorm
weights 1, all biases 0.

Optimizer, as the C trainer's AdamW (torch.optim.AdamW does the update): beta1 0.9, beta2 0.95, eps 1e-8,
decoupled weight decay only on the 2-D weights (wte, wpe, qkvw, attprojw, fcw, fcprojw), constant lr, and
global-norm gradient clipping written out here: scale = clip/norm if norm > clip else 1.

IVON / IVON-PoCo (--opt ivon|poco): the optimizers of ivon_torch.py (spec OPTIMIZERS.md §2, §6) run from the
model file --init (default <out>/gpt2_<model>.bin, the AdamW reference's initial model) on consecutive windows
of the val shard: window b = tokens[b*B*T : b*B*T + B*T + 1] (inputs = [0:B*T], targets = [1:B*T+1]) in the
order the optimizer consumes them (per step: the anchor mega-batch micro-batches first when a refresh happens
before that step, then the K inner micro-batches). The noise is ivon_noise.normal (llmc/noise.h's twin) with
seed --noise-seed and rank --rank. lr of step s: --lr * s / --warmup for s < --warmup, else --lr (un-rescaled).
All hyper-parameters are rounded to float32 first: the C test reads them from the float32 header.

Usage:
  /usr/bin/python3 train_gpt2.py --model d2 --batch 4 --seq 64 --steps 10 --lr 1e-3 --weight-decay 0.1 \
      --val dev/data/austen/austen_val.bin --out ref/ --seed 42
  /usr/bin/python3 train_gpt2.py --opt ivon --model d2 --val dev/data/austen/austen_val.bin --out ref/
  /usr/bin/python3 train_gpt2.py --opt poco --model d2 --val dev/data/austen/austen_val.bin --out ref/

Outputs in --out:
  gpt2_<model>.bin   the initial model, llm.c model file: int32[256] header (magic 20240326, version 3,
                     [2]=maxT [3]=V [4]=L [5]=NH [6]=C [7]=Vp), then the 16 tensors in table order as
                     little-endian float32.
  gpt2_<model>_debug_state.bin, the debug state:
    int32[256] header:
      [0] 20240327 magic       [1] 1 version            [2] B          [3] T
      [4] N (AdamW steps)      [5] V                    [6] Vp
      [7] num_parameters, low 32 bits    [8] num_parameters, high 32 bits
      [10] lr  [11] beta1  [12] beta2  [13] eps  [14] weight_decay  [15] grad_clip   (float32 bit patterns)
      all other entries 0
    int32   inputs[B*T]            first B*T tokens of the val shard, as (B, T)
    int32   targets[B*T]           tokens 1..B*T of the val shard, as (B, T)
    float32 logits[B*T*V]          initial model, first V columns only, (B, T, V)
    float32 loss                   initial model, mean cross-entropy
    float32 grads[num_parameters]  d loss / d params of the initial model, model-file layout (padded wte
                                   rows included, they are zero)
    float32 losses[N]              loss before AdamW step s = 0..N-1 (same batch every step)
    float32 grad_norms[N]          global gradient norm before clipping, before step s
  with --opt ivon|poco instead: gpt2_<model>_<opt><tag>_state.bin (the model file is not written):
    int32[256] header:
      [0] 20241124 magic  [1] 1 version  [2] B  [3] T  [4] N steps  [5] K micro-batches per step
      [6] optimizer (1 ivon, 2 poco)  [7] num_parameters low 32 bits  [8] high 32 bits  [9] nb batches stored
      [10] noise seed low 32 bits  [11] high 32 bits  [12] rank  [13] poco start  [14] poco period
      [15] poco mega micro-batches  [16] flags: bit0 debias, bit1 rescale_lr, bit2 shared noise, bit3 prox,
      bit4 prox in momentum, bit5 momentum, bit6 clip each, bit7 mega noise  [17] gamma schedule (0 const, 1 linear)
      float32 bit patterns: [32] ess [33] h0 [34] beta1 [35] beta2 [36] clip_radius (0 = none) [37] prior 2-D
      [38] prior 1-D [39] grad_clip [40] gamma [41 + s] lr of step s, s < N <= 64
    int32   tokens[nb][B*T+1]      the micro-batches in consumption order
    float32 losses[N]              mean of the K inner micro-batch losses of step s (at theta_in)
    float32 mean[num_parameters]   final m (model-file layout)
    float32 momentum[num_parameters]
    float32 hess[num_parameters]
"""

import argparse
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

MODEL_MAGIC = 20240326
MODEL_VERSION_FP32 = 3
DEBUG_MAGIC = 20240327
DEBUG_VERSION = 1
OPT_STATE_MAGIC = 20241124
OPT_STATE_VERSION = 1
OPT_IDS = {"adamw": 0, "ivon": 1, "poco": 2}
MAX_OPT_STEPS = 64
SHARD_MAGIC = 20240520
SHARD_VERSION = 1
GPT2_VOCAB = 50257
GPT2_PADDED_VOCAB = 50304
HEADER_INTS = 256

# (name, 2-D weight group) in model-file order, as PARAM_TABLE in llmc/model.h
PARAM_TABLE = [
    ("wte", True), ("wpe", True), ("ln1w", False), ("ln1b", False),
    ("qkvw", True), ("qkvb", False), ("attprojw", True), ("attprojb", False),
    ("ln2w", False), ("ln2b", False), ("fcw", True), ("fcb", False),
    ("fcprojw", True), ("fcprojb", False), ("lnfw", False), ("lnfb", False),
]


def config_from_descriptor(desc):
    """Same rule as gpt2_config_from_descriptor in llmc/model.h."""
    if len(desc) < 2 or desc[0] != "d" or not desc[1:].isdigit():
        raise ValueError("--model must be a descriptor dN such as d2, d4, d12, got '%s'" % desc)
    depth = int(desc[1:])
    if depth < 1 or depth > 64:
        raise ValueError("--model depth must be 1..64, got '%s'" % desc)
    channels = {6: 384, 12: 768, 24: 1024, 36: 1280, 48: 1600}.get(depth, 64 * depth)
    return dict(max_seq_len=1024, vocab_size=GPT2_VOCAB, padded_vocab_size=GPT2_PADDED_VOCAB,
                num_layers=depth, num_heads=channels // 64, channels=channels)


def param_shapes(cfg):
    Vp, maxT = cfg["padded_vocab_size"], cfg["max_seq_len"]
    L, C = cfg["num_layers"], cfg["channels"]
    return {
        "wte": (Vp, C), "wpe": (maxT, C), "ln1w": (L, C), "ln1b": (L, C),
        "qkvw": (L, 3 * C, C), "qkvb": (L, 3 * C), "attprojw": (L, C, C), "attprojb": (L, C),
        "ln2w": (L, C), "ln2b": (L, C), "fcw": (L, 4 * C, C), "fcb": (L, 4 * C),
        "fcprojw": (L, C, 4 * C), "fcprojb": (L, C), "lnfw": (C,), "lnfb": (C,),
    }


class GPT2(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        shapes = param_shapes(cfg)
        # registered in table order, so self.parameters() is the model-file order
        for name, _ in PARAM_TABLE:
            setattr(self, name, torch.nn.Parameter(torch.zeros(shapes[name], dtype=torch.float32)))

    def init_weights(self):
        cfg = self.cfg
        V, L = cfg["vocab_size"], cfg["num_layers"]
        std = 0.02
        proj_std = std / math.sqrt(2 * L)
        with torch.no_grad():
            for name, _ in PARAM_TABLE:
                p = getattr(self, name)
                if name == "wte":
                    p.zero_()
                    p[:V].normal_(0.0, std)
                elif name in ("wpe", "qkvw", "fcw"):
                    p.normal_(0.0, std)
                elif name in ("attprojw", "fcprojw"):
                    p.normal_(0.0, proj_std)
                elif name in ("ln1w", "ln2w", "lnfw"):
                    p.fill_(1.0)
                else:
                    p.zero_()

    def named_table_params(self):
        return [(name, getattr(self, name)) for name, _ in PARAM_TABLE]

    def forward(self, idx, targets=None):
        cfg = self.cfg
        B, T = idx.shape
        L, C, NH, V = cfg["num_layers"], cfg["channels"], cfg["num_heads"], cfg["vocab_size"]
        hs = C // NH
        scale = 1.0 / math.sqrt(hs)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        x = self.wte[idx] + self.wpe[:T]  # (B, T, C)
        for l in range(L):
            h = F.layer_norm(x, (C,), self.ln1w[l], self.ln1b[l], 1e-5)
            qkv = F.linear(h, self.qkvw[l], self.qkvb[l])  # (B, T, 3C)
            q, k, v = qkv.split(C, dim=2)
            q = q.view(B, T, NH, hs).transpose(1, 2)  # (B, NH, T, hs)
            k = k.view(B, T, NH, hs).transpose(1, 2)
            v = v.view(B, T, NH, hs).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * scale  # (B, NH, T, T)
            att = att.masked_fill(~causal, float("-inf"))
            att = F.softmax(att, dim=-1)
            y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
            x = x + F.linear(y, self.attprojw[l], self.attprojb[l])
            h = F.layer_norm(x, (C,), self.ln2w[l], self.ln2b[l], 1e-5)
            h = F.linear(h, self.fcw[l], self.fcb[l])  # (B, T, 4C)
            h = F.gelu(h, approximate="tanh")
            x = x + F.linear(h, self.fcprojw[l], self.fcprojb[l])
        x = F.layer_norm(x, (C,), self.lnfw, self.lnfb, 1e-5)
        logits = F.linear(x, self.wte)[:, :, :V]  # (B, T, V), padded columns dropped
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T))
        return logits, loss


def read_shard(path, need):
    """First `need` tokens of an llm.c token shard; validates the header."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            raw = f.read(HEADER_INTS * 4)
            body = f.read(2 * need)
    except OSError as e:
        sys.exit("error: cannot open val shard '%s': %s" % (path, e.strerror))
    if len(raw) < HEADER_INTS * 4:
        sys.exit("error: val shard '%s' is truncated: %d bytes, header needs 1024" % (path, size))
    header = np.frombuffer(raw, dtype="<i4", count=HEADER_INTS)
    if header[0] != SHARD_MAGIC:
        sys.exit("error: val shard '%s' has bad magic %d (want %d)" % (path, header[0], SHARD_MAGIC))
    if header[1] != SHARD_VERSION:
        sys.exit("error: val shard '%s' has unsupported version %d (want %d)" % (path, header[1], SHARD_VERSION))
    ntok = int(header[2])
    if ntok < 0 or size != HEADER_INTS * 4 + 2 * ntok:
        sys.exit("error: val shard '%s' has %d bytes but its header says %d tokens" % (path, size, ntok))
    if ntok < need:
        sys.exit("error: val shard '%s' has %d tokens, B*T+1 = %d needed" % (path, ntok, need))
    tokens = np.frombuffer(body, dtype="<u2", count=need).astype(np.int64)
    if tokens.max() >= GPT2_VOCAB:
        sys.exit("error: val shard '%s' has token %d >= vocab size %d" % (path, tokens.max(), GPT2_VOCAB))
    return tokens


def f32_bits(x):
    return struct.unpack("<i", struct.pack("<f", x))[0]


def f32(x):
    """x rounded to float32, as a Python float: the value the C side reads from the header."""
    return float(np.float32(x))


def flat_params(model, grads=False):
    parts = []
    for _, p in model.named_table_params():
        t = p.grad if grads else p
        parts.append(t.detach().reshape(-1).numpy().astype("<f4", copy=False))
    return parts


def write_model(path, model):
    cfg = model.cfg
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0:8] = [MODEL_MAGIC, MODEL_VERSION_FP32, cfg["max_seq_len"], cfg["vocab_size"],
                   cfg["num_layers"], cfg["num_heads"], cfg["channels"], cfg["padded_vocab_size"]]
    with open(path, "wb") as f:
        f.write(header.tobytes())
        for part in flat_params(model):
            f.write(part.tobytes())


def global_grad_norm(model):
    # float64 accumulation: the reference value for the C norm
    total = 0.0
    for _, p in model.named_table_params():
        total += float(p.grad.double().pow(2).sum())
    return math.sqrt(total)


def write_debug_state(path, header, model, inputs, targets, N, lr, beta1, beta2, eps, wd, clip):
    """Writes the debug state (format in the module docstring); trains `model` for N AdamW steps."""
    decay = [p for (_, d), p in zip(PARAM_TABLE, model.parameters()) if d]
    no_decay = [p for (_, d), p in zip(PARAM_TABLE, model.parameters()) if not d]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(beta1, beta2), eps=eps)
    losses, norms = [], []
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(inputs.numpy().astype("<i4").tobytes())
        f.write(targets.numpy().astype("<i4").tobytes())
        # initial model: logits, loss, grads
        opt.zero_grad()
        logits, loss = model(inputs, targets)
        loss.backward()
        f.write(logits.detach().numpy().astype("<f4").tobytes())
        f.write(np.array([loss.item()], dtype="<f4").tobytes())
        for part in flat_params(model, grads=True):
            f.write(part.tobytes())
        print("initial loss %.6f" % loss.item())
        del logits
        # N AdamW steps on the same batch; step 0 reuses the gradients above
        for s in range(N):
            if s > 0:
                opt.zero_grad()
                _, loss = model(inputs, targets)
                loss.backward()
            norm = global_grad_norm(model)
            if clip > 0 and norm > clip:
                scale = clip / norm
                with torch.no_grad():
                    for p in model.parameters():
                        p.grad.mul_(scale)
            opt.step()
            losses.append(loss.item())
            norms.append(norm)
            print("step %d/%d: loss %.6f grad norm %.6f" % (s + 1, N, losses[-1], norm))
        f.write(np.array(losses, dtype="<f4").tobytes())
        f.write(np.array(norms, dtype="<f4").tobytes())


def read_model(path, model):
    """Loads an llm.c fp32 model file into `model`; its config must match."""
    cfg = model.cfg
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        sys.exit("error: cannot open --init model '%s': %s (write it first with --opt adamw)" % (path, e.strerror))
    if len(raw) < HEADER_INTS * 4:
        sys.exit("error: --init model '%s' is truncated: %d bytes, header needs 1024" % (path, len(raw)))
    header = np.frombuffer(raw, dtype="<i4", count=HEADER_INTS)
    if header[0] != MODEL_MAGIC or header[1] != MODEL_VERSION_FP32:
        sys.exit("error: --init model '%s' is not an fp32 llm.c model file (magic %d version %d)" % (
            path, header[0], header[1]))
    want = [cfg["max_seq_len"], cfg["vocab_size"], cfg["num_layers"], cfg["num_heads"], cfg["channels"],
            cfg["padded_vocab_size"]]
    if list(header[2:8]) != want:
        sys.exit("error: --init model '%s' has config %s, --model wants %s" % (path, list(header[2:8]), want))
    n = sum(p.numel() for p in model.parameters())
    if len(raw) != HEADER_INTS * 4 + 4 * n:
        sys.exit("error: --init model '%s' has %d bytes, its header implies %d" % (path, len(raw), 1024 + 4 * n))
    flat = torch.from_numpy(np.frombuffer(raw, dtype="<f4", offset=HEADER_INTS * 4).copy())
    off = 0
    with torch.no_grad():
        for _, p in model.named_table_params():
            p.copy_(flat[off:off + p.numel()].view_as(p))
            off += p.numel()


def ivon_lr_schedule(lr, warmup, N):
    """Un-rescaled lr of steps 0..N-1 (float32 values): linear warmup from 0 over `warmup` steps, then constant."""
    return [f32(lr * s / warmup) if s < warmup else f32(lr) for s in range(N)]


def ivon_batches_needed(args, N, K):
    """Number of micro-batches the run consumes."""
    if args.opt == "ivon":
        return N * K
    refreshes = sum(1 for s in range(N) if s >= args.poco_start and (s - args.poco_start) % args.poco_period == 0)
    return N * K + refreshes * args.poco_mega


def run_ivon_reference(args, model, tokens, B, T, N, K, lrs, hp):
    """Trains `model` with IVON or IVON-PoCo for N steps; returns (per-step losses, optimizer, batches used)."""
    import ivon_torch
    BT = B * T
    decay = [p for (_, d), p in zip(PARAM_TABLE, model.parameters()) if d]
    no_decay = [p for (_, d), p in zip(PARAM_TABLE, model.parameters()) if not d]
    groups = [{"params": decay, "weight_decay": hp["prior_2d"]}, {"params": no_decay, "weight_decay": hp["prior_1d"]}]
    common = dict(ess=hp["ess"], hess_init=hp["h0"], beta1=hp["beta1"], beta2=hp["beta2"],
                  clip_radius=hp["clip_radius"], grad_clip=hp["grad_clip"], debias=args.debias,
                  rescale_lr=args.rescale, seed=args.noise_seed, rank=args.rank, param_order=list(model.parameters()))
    if args.opt == "ivon":
        opt = ivon_torch.IVON(groups, **common)
    else:
        opt = ivon_torch.IVONPoCo(groups, gamma=hp["gamma"], gamma_schedule=args.gamma_schedule,
                                  poco_start=args.poco_start, poco_period=args.poco_period, poco_mega=args.poco_mega,
                                  total_steps=N, shared_noise=args.shared_noise, prox=args.prox,
                                  prox_in_momentum=args.prox_in_momentum, momentum=args.momentum,
                                  clip_each=args.clip_each, mega_noise=args.mega_noise, **common)
    used = [0]

    def next_batch():
        b = used[0]
        used[0] += 1
        row = tokens[b * BT:b * BT + BT + 1]
        return (torch.from_numpy(row[:BT].reshape(B, T).copy()), torch.from_numpy(row[1:].reshape(B, T).copy()))

    def backward(batch):
        _, loss = model(*batch)
        loss.backward()
        return loss.item()

    losses = []
    for s in range(N):
        for group in opt.param_groups:
            group["lr"] = lrs[s]
        refreshed = args.opt == "poco" and opt.anchor_due()
        if refreshed:
            opt.anchor_begin()
            for k in range(args.poco_mega):
                opt.anchor_sample(k)
                backward(next_batch())
                opt.anchor_accumulate()
            opt.anchor_end()
        step_losses = []
        for j in range(K):
            batch = next_batch()
            opt.sample(j)
            step_losses.append(backward(batch))
            opt.accumulate()
            if args.opt == "poco" and opt.correcting():
                opt.sample_out(j)
                backward(batch)
                opt.accumulate_out()
        opt.step()
        losses.append(sum(step_losses) / K)
        st = opt.last_stats
        print("step %d/%d: lr %g loss %.6f%s | clipped %d, mean |dm| %.3e" % (
            s + 1, N, lrs[s], losses[-1], " (anchor refreshed)" if refreshed else "", st["clipped"],
            st["sum_abs_dm"] / opt.num_parameters))
    return losses, opt, used[0]


def write_opt_state(path, args, model, tokens, nb, B, T, N, K, lrs, hp, losses, opt):
    """Writes the IVON/PoCo reference file (format in the module docstring)."""
    num_params = opt.num_parameters
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0:7] = [OPT_STATE_MAGIC, OPT_STATE_VERSION, B, T, N, K, OPT_IDS[args.opt]]
    header[7] = np.uint32(num_params & 0xFFFFFFFF).view(np.int32)
    header[8] = num_params >> 32
    header[9] = nb
    header[10] = np.uint32(args.noise_seed & 0xFFFFFFFF).view(np.int32)
    header[11] = np.uint32(args.noise_seed >> 32).view(np.int32)
    header[12] = args.rank
    if args.opt == "poco":
        header[13:16] = [args.poco_start, args.poco_period, args.poco_mega]
        header[17] = 0 if args.gamma_schedule == "constant" else 1
    flags = [args.debias, args.rescale]
    if args.opt == "poco":
        flags += [args.shared_noise, args.prox, args.prox_in_momentum, args.momentum, args.clip_each, args.mega_noise]
    header[16] = sum(1 << i for i, on in enumerate(flags) if on)
    header[32:41] = [f32_bits(hp[k]) for k in ("ess", "h0", "beta1", "beta2", "clip_radius", "prior_2d", "prior_1d",
                                              "grad_clip", "gamma")]
    header[41:41 + N] = [f32_bits(x) for x in lrs]
    BT = B * T
    rows = np.stack([tokens[b * BT:b * BT + BT + 1] for b in range(nb)]).astype("<i4")
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(rows.tobytes())
        f.write(np.array(losses, dtype="<f4").tobytes())
        for key in ("mean", "momentum", "hess"):
            for p in model.parameters():
                f.write(opt.state[p][key].reshape(-1).numpy().astype("<f4").tobytes())


def main_ivon(args, cfg, B, T, N):
    """--opt ivon|poco: runs the reference optimizer and writes gpt2_<model>_<opt>_state.bin."""
    import time
    K = args.micro_batches if args.micro_batches is not None else {"ivon": 3, "poco": 2}[args.opt]
    if N < 1 or N > MAX_OPT_STEPS:
        sys.exit("error: --steps must be in 1..%d for --opt %s, got %d" % (MAX_OPT_STEPS, args.opt, N))
    if K < 1:
        sys.exit("error: --micro-batches must be >= 1, got %d" % K)
    if not all(ch.isalnum() or ch in "_-" for ch in args.tag):
        sys.exit("error: --tag may hold letters, digits, '_' and '-' only, got '%s'" % args.tag)
    if args.warmup < 0:
        sys.exit("error: --warmup must be >= 0, got %d" % args.warmup)
    checks = (("--lr", args.lr >= 0), ("--ess", args.ess > 0), ("--h0", args.h0 > 0),
              ("--beta1", 0 <= args.beta1 < 1), ("--beta2", 0 <= args.beta2 <= 1),
              ("--clip-radius", args.clip_radius >= 0), ("--prior", args.prior >= 0),
              ("--prior-1d", args.prior_1d >= 0), ("--grad-clip", args.grad_clip >= 0),
              ("--gamma", 0 <= args.gamma <= 1), ("--noise-seed", 0 <= args.noise_seed < 2 ** 64),
              ("--rank", 0 <= args.rank < 2 ** 24), ("--poco-start", args.poco_start >= 0),
              ("--poco-period", args.poco_period >= 1), ("--poco-mega", args.poco_mega >= 1))
    for flag, ok in checks:
        if not ok:
            sys.exit("error: %s has an invalid value" % flag)
    # the C side reads float32 settings; use exactly those values here
    hp = dict(ess=f32(args.ess), h0=f32(args.h0), beta1=f32(args.beta1), beta2=f32(args.beta2),
              clip_radius=f32(args.clip_radius), prior_2d=f32(args.prior), prior_1d=f32(args.prior_1d),
              grad_clip=f32(args.grad_clip), gamma=f32(args.gamma) if args.opt == "poco" else 0.0)
    lrs = ivon_lr_schedule(args.lr, args.warmup, N)
    nb = ivon_batches_needed(args, N, K)
    tokens = read_shard(args.val, nb * B * T + 1)
    if hasattr(torch, "use_deterministic_algorithms"):
        torch.use_deterministic_algorithms(True)
    model = GPT2(cfg)
    init = args.init if args.init is not None else os.path.join(args.out, "gpt2_%s.bin" % args.model)
    read_model(init, model)
    num_params = sum(p.numel() for p in model.parameters())
    print("%s reference: model %s from %s (%d parameters); B=%d T=%d N=%d K=%d, %d micro-batches; "
          "lr %s; ess %g" % (args.opt, args.model, init, num_params, B, T, N, K, nb,
                             " ".join("%g" % x for x in lrs), hp["ess"]))
    t0 = time.time()
    losses, opt, used = run_ivon_reference(args, model, tokens, B, T, N, K, lrs, hp)
    if used != nb:
        sys.exit("error: internal: the run consumed %d micro-batches, %d expected" % (used, nb))
    path = os.path.join(args.out, "gpt2_%s_%s%s_state.bin" % (args.model, args.opt, args.tag))
    try:
        os.makedirs(args.out, exist_ok=True)
        write_opt_state(path, args, model, tokens, nb, B, T, N, K, lrs, hp, losses, opt)
    except OSError as e:
        sys.exit("error: cannot write to --out '%s': %s" % (args.out, e))
    print("wrote %s (%.1f s)" % (path, time.time() - t0))


def main():
    ap = argparse.ArgumentParser(description="PyTorch GPT-2 reference: writes a model file and a debug state "
                                             "(AdamW), or an IVON / IVON-PoCo reference state.")
    ap.add_argument("--opt", default="adamw", choices=["adamw", "ivon", "poco"], help="optimizer of the reference")
    ap.add_argument("--model", default="d2", help="size descriptor dN (d2, d4, d6, d12, ...)")
    ap.add_argument("--batch", type=int, default=4, help="batch size B")
    ap.add_argument("--seq", type=int, default=64, help="sequence length T")
    ap.add_argument("--steps", type=int, default=None, help="steps N [adamw 10, ivon 5, poco 6]")
    ap.add_argument("--lr", type=float, default=None,
                    help="adamw: constant lr [1e-3]; ivon/poco: peak un-rescaled lr [300]")
    ap.add_argument("--weight-decay", type=float, default=0.1, help="adamw: decoupled weight decay (2-D weights)")
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=None, help="[adamw 0.95, ivon/poco 0.99999]")
    ap.add_argument("--eps", type=float, default=1e-8, help="adamw epsilon")
    ap.add_argument("--grad-clip", type=float, default=1.0,
                    help="adamw: global-norm clip; ivon/poco: per micro-batch (0 = off)")
    ap.add_argument("--val", default="dev/data/austen/austen_val.bin", help="token shard for the batches")
    ap.add_argument("--out", default="ref", help="output directory")
    ap.add_argument("--seed", type=int, default=42, help="torch.manual_seed for the initialisation (adamw)")
    # IVON / PoCo
    ap.add_argument("--init", default=None, help="ivon/poco: initial model file [<out>/gpt2_<model>.bin]")
    ap.add_argument("--micro-batches", type=int, default=None, help="ivon/poco: K micro-batches per step [ivon 3, poco 2]")
    ap.add_argument("--warmup", type=int, default=2, help="ivon/poco: linear lr warmup steps from lr 0 at step 0")
    ap.add_argument("--ess", type=float, default=1e8, help="ivon/poco: effective sample size lambda")
    ap.add_argument("--h0", type=float, default=1e-3, help="ivon/poco: initial Hessian")
    ap.add_argument("--clip-radius", type=float, default=1e-3, help="ivon/poco: clip radius r (0 = none)")
    ap.add_argument("--prior", type=float, default=1e-6, help="ivon/poco: prior precision delta of 2-D tensors")
    ap.add_argument("--prior-1d", type=float, default=0.0, help="ivon/poco: prior precision delta of 1-D tensors")
    ap.add_argument("--debias", type=int, default=1, choices=[0, 1])
    ap.add_argument("--rescale", type=int, default=1, choices=[0, 1], help="ivon/poco: rescale_lr")
    ap.add_argument("--noise-seed", type=int, default=1234, help="ivon/poco: noise seed")
    ap.add_argument("--rank", type=int, default=0, help="ivon/poco: rank in the noise counter")
    ap.add_argument("--gamma", type=float, default=0.5, help="poco: correction strength")
    ap.add_argument("--gamma-schedule", default="constant", choices=["constant", "linear"])
    ap.add_argument("--poco-start", type=int, default=2, help="poco: first corrected step")
    ap.add_argument("--poco-period", type=int, default=2, help="poco: steps between anchor refreshes")
    ap.add_argument("--poco-mega", type=int, default=2, help="poco: micro-batches per anchor refresh")
    ap.add_argument("--shared-noise", type=int, default=1, choices=[0, 1])
    ap.add_argument("--prox", type=int, default=1, choices=[0, 1])
    ap.add_argument("--prox-in-momentum", type=int, default=0, choices=[0, 1])
    ap.add_argument("--momentum", type=int, default=1, choices=[0, 1], help="poco: 1 PoCoMo, 0 PoCo")
    ap.add_argument("--clip-each", type=int, default=1, choices=[0, 1])
    ap.add_argument("--mega-noise", type=int, default=1, choices=[0, 1])
    ap.add_argument("--tag", default="", help="ivon/poco: output name gpt2_<model>_<opt><tag>_state.bin")
    args = ap.parse_args()

    try:
        cfg = config_from_descriptor(args.model)
    except ValueError as e:
        sys.exit("error: %s" % e)
    is_ivon = args.opt != "adamw"
    B, T = args.batch, args.seq
    N = args.steps if args.steps is not None else {"adamw": 10, "ivon": 5, "poco": 6}[args.opt]
    if args.lr is None:
        args.lr = 300.0 if is_ivon else 1e-3
    if args.beta2 is None:
        args.beta2 = 0.99999 if is_ivon else 0.95
    if B < 1:
        sys.exit("error: --batch must be >= 1, got %d" % B)
    if T < 1 or T > cfg["max_seq_len"]:
        sys.exit("error: --seq must be in 1..%d, got %d" % (cfg["max_seq_len"], T))
    if N < 0:
        sys.exit("error: --steps must be >= 0, got %d" % N)
    if is_ivon:
        return main_ivon(args, cfg, B, T, N)
    for flag, val in (("--lr", args.lr), ("--eps", args.eps)):
        if not val > 0:
            sys.exit("error: %s must be > 0, got %g" % (flag, val))
    if args.weight_decay < 0 or args.grad_clip < 0:
        sys.exit("error: --weight-decay and --grad-clip must be >= 0")
    if not (0 <= args.beta1 < 1 and 0 <= args.beta2 < 1):
        sys.exit("error: --beta1 and --beta2 must be in [0, 1)")
    # the C side reads float32 settings; use exactly those values here
    lr, beta1, beta2, eps = f32(args.lr), f32(args.beta1), f32(args.beta2), f32(args.eps)
    wd, clip = f32(args.weight_decay), f32(args.grad_clip)

    torch.manual_seed(args.seed)
    if hasattr(torch, "use_deterministic_algorithms"):
        torch.use_deterministic_algorithms(True)

    tokens = read_shard(args.val, B * T + 1)
    inputs = torch.from_numpy(tokens[:B * T].reshape(B, T).copy())
    targets = torch.from_numpy(tokens[1:B * T + 1].reshape(B, T).copy())

    model = GPT2(cfg)
    model.init_weights()
    num_params = sum(p.numel() for p in model.parameters())
    V, Vp = cfg["vocab_size"], cfg["padded_vocab_size"]
    print("model %s: L=%d C=%d NH=%d, %d parameters; B=%d T=%d N=%d" % (
        args.model, cfg["num_layers"], cfg["channels"], cfg["num_heads"], num_params, B, T, N))

    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0:7] = [DEBUG_MAGIC, DEBUG_VERSION, B, T, N, V, Vp]
    header[7] = np.uint32(num_params & 0xFFFFFFFF).view(np.int32)
    header[8] = num_params >> 32
    header[10:16] = [f32_bits(x) for x in (lr, beta1, beta2, eps, wd, clip)]

    model_path = os.path.join(args.out, "gpt2_%s.bin" % args.model)
    state_path = os.path.join(args.out, "gpt2_%s_debug_state.bin" % args.model)
    try:
        os.makedirs(args.out, exist_ok=True)
        write_model(model_path, model)
        write_debug_state(state_path, header, model, inputs, targets, N, lr, beta1, beta2, eps, wd, clip)
    except OSError as e:
        sys.exit("error: cannot write to --out '%s': %s" % (args.out, e))
    print("wrote %s and %s" % (model_path, state_path))

if __name__ == "__main__":
    main()
