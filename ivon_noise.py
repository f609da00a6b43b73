"""Counter-based Gaussian noise for IVON / IVON-PoCo, bit-identical to llmc/noise.h (C and CUDA).

eps(seed, rank, step, sample, stream, index) is a pure function:
  Philox4x32-10 with key = (seed & 0xffffffff, seed >> 32) and
  counter = (quad & 0xffffffff, step, sample, (stream << 24) | (rank & 0xffffff)), quad = index >> 2;
  lane = index & 3 picks one of the block's 4 normals. Box-Muller on words (0, 1) and (2, 3) with
  u = ((x >> 9) + 0.5) * 2^-23, r = sqrt(-2 ln u_a), z_a = r cos(2 pi u_b), z_b = r sin(2 pi u_b).
ln / sin / cos use only fp32 +, -, *, /, sqrt and integer bit operations in the same order as noise.h,
each numpy float32 operation rounding once, so the values equal the C ones bit for bit.

normal(seed, rank, step, sample, stream, start, n) -> torch.float32 tensor of eps(start .. start+n-1).
normal_numpy(...) returns the numpy array. Works with numpy 1.x / 2.x and torch 1.13 / 2.x.
"""
import numpy as np

STREAM_SAMPLE = 0  # IVON/PoCo inner sample of micro-batch `sample` in optimizer step `step`
STREAM_ANCHOR = 1  # PoCo anchor-refresh mega-batch micro-batch `sample` (step = the step after the refresh)
STREAM_OUTER = 2   # PoCo theta_out noise when shared noise is off
STREAM_BMA = 3     # BMA eval sample `sample` at step `step`

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = 0x9E3779B9
_W1 = 0xBB67AE85
_MASK = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_ROUNDS = 10

_f = np.float32


def _h(s):
    # fp32 constant from the exact hex literal used in noise.h
    return _f(float.fromhex(s))


_L3, _L5, _L7, _L9 = _h("0x1.555556p-2"), _h("0x1.99999ap-3"), _h("0x1.24924ap-3"), _h("0x1.c71c72p-4")
_LN2_HI, _LN2_LO = _h("0x1.62e4p-1"), _h("0x1.7f7d1cp-20")
_S1, _S3, _S5, _S7, _S9 = (_h("0x1.921fb6p+0"), _h("-0x1.4abbcep-1"), _h("0x1.466bc6p-4"),
                           _h("-0x1.32d2ccp-8"), _h("0x1.507834p-13"))
_C2, _C4, _C6, _C8, _C10 = (_h("-0x1.3bd3ccp+0"), _h("0x1.03c1f0p-2"), _h("-0x1.55d3c8p-6"),
                            _h("0x1.e1f506p-11"), _h("-0x1.a6d1f2p-16"))
_ONE, _HALF, _TWO_NEG, _FOUR = _f(1.0), _f(0.5), _f(-2.0), _f(4.0)
_INV_2_23 = _f(1.0 / 8388608.0)

_CHUNK = 1 << 18  # Philox blocks per vectorized batch (bounds temporary memory)


def _check_args(seed, rank, step, sample, stream, start, n):
    for name, v, hi in (("seed", seed, 1 << 64), ("rank", rank, 1 << 32), ("step", step, 1 << 32),
                        ("sample", sample, 1 << 32), ("stream", stream, 1 << 8), ("start", start, 1 << 64),
                        ("n", n, 1 << 62)):
        if int(v) != v or not 0 <= int(v) < hi:
            raise ValueError("ivon_noise: %s=%r out of range [0, %d)" % (name, v, hi))


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on uint64 arrays holding 32-bit words; k0, k1 python ints. Returns 4 uint64 arrays."""
    x0, x1, x2, x3 = (np.asarray(c, dtype=np.uint64) & _MASK for c in (c0, c1, c2, c3))
    x0, x1, x2, x3 = np.broadcast_arrays(x0, x1, x2, x3)
    k0, k1 = int(k0) & 0xFFFFFFFF, int(k1) & 0xFFFFFFFF
    for _ in range(_ROUNDS):
        p0 = x0 * _M0
        p1 = x2 * _M1
        y0 = (p1 >> _S32) ^ x1 ^ np.uint64(k0)
        y2 = (p0 >> _S32) ^ x3 ^ np.uint64(k1)
        x0, x1, x2, x3 = y0, p1 & _MASK, y2, p0 & _MASK
        k0 = (k0 + _W0) & 0xFFFFFFFF
        k1 = (k1 + _W1) & 0xFFFFFFFF
    return x0, x1, x2, x3


def uniform(x):
    """uint32 words -> fp32 uniforms in (0, 1): ((x >> 9) + 0.5) * 2^-23 (exact)."""
    x = np.asarray(x, dtype=np.uint64)
    return ((x >> np.uint64(9)).astype(np.float32) + _HALF) * _INV_2_23


def logf(x):
    """noise_logf: ln of finite positive normal fp32 values, same operations as noise.h."""
    x = np.asarray(x, dtype=np.float32)
    b = x.view(np.uint32)
    e = (b >> np.uint32(23)).astype(np.int32) - np.int32(127)
    mb = b & np.uint32(0x7FFFFF)
    up = mb > np.uint32(0x3504F3)
    m = (mb | np.where(up, np.uint32(0x3F000000), np.uint32(0x3F800000))).view(np.float32)
    e = e + up.astype(np.int32)
    s = (m - _ONE) / (m + _ONE)
    t = s * s
    p = _L7 + t * _L9
    p = _L5 + t * p
    p = _L3 + t * p
    p = t * p
    s2 = s + s
    lm = s2 + s2 * p
    ef = e.astype(np.float32)
    return ef * _LN2_HI + (lm + ef * _LN2_LO)


def sincos2pi(u):
    """noise_sincos2pi: (sin(2 pi u), cos(2 pi u)) for fp32 u in [0, 1], same operations as noise.h."""
    u = np.asarray(u, dtype=np.float32)
    x = u * _FOUR
    q = x.astype(np.int32)  # truncation, x >= 0
    f = x - q.astype(np.float32)
    up = f > _HALF
    f = np.where(up, f - _ONE, f)
    q = (q + up.astype(np.int32)) & np.int32(3)
    t = f * f
    sp = _S7 + t * _S9
    sp = _S5 + t * sp
    sp = _S3 + t * sp
    sp = _S1 + t * sp
    s = f * sp
    cp = _C8 + t * _C10
    cp = _C6 + t * cp
    cp = _C4 + t * cp
    cp = _C2 + t * cp
    c = _ONE + t * cp
    odd = (q & np.int32(1)) != 0
    sb = np.where(odd, c, s).view(np.uint32)
    cb = np.where(odd, s, c).view(np.uint32)
    sign = np.uint32(0x80000000)
    sb = sb ^ np.where((q & np.int32(2)) != 0, sign, np.uint32(0))
    cb = cb ^ np.where(((q + np.int32(1)) & np.int32(2)) != 0, sign, np.uint32(0))
    return sb.view(np.float32), cb.view(np.float32)


def box_muller(a, b):
    """Two Philox words -> (z_a, z_b) = (r cos(2 pi u_b), r sin(2 pi u_b)), r = sqrt(-2 ln u_a)."""
    r = np.sqrt(_TWO_NEG * logf(uniform(a)))
    sn, cs = sincos2pi(uniform(b))
    return r * cs, r * sn


def normal4(seed, rank, step, sample, stream, quads):
    """The 4 normals of each Philox block in `quads` (uint64 array): float32 array (len(quads), 4)."""
    seed = int(seed)
    quads = np.asarray(quads, dtype=np.uint64)
    w3 = ((int(stream) << 24) | (int(rank) & 0xFFFFFF)) & 0xFFFFFFFF
    x0, x1, x2, x3 = philox4x32_10(quads & _MASK, np.uint64(step), np.uint64(sample), np.uint64(w3),
                                   seed & 0xFFFFFFFF, seed >> 32)
    out = np.empty((quads.shape[0], 4), dtype=np.float32)
    out[:, 0], out[:, 1] = box_muller(x0, x1)
    out[:, 2], out[:, 3] = box_muller(x2, x3)
    return out


def normal_numpy(seed, rank, step, sample, stream, start, n):
    """eps for flat indices [start, start+n) as a float32 numpy array (bit-identical to noise_fill)."""
    _check_args(seed, rank, step, sample, stream, start, n)
    start, n = int(start), int(n)
    out = np.empty(n, dtype=np.float32)
    if n == 0:
        return out
    q_first, q_last = start >> 2, (start + n - 1) >> 2
    lead = start & 3  # lanes of the first block before start
    q = q_first
    pos = 0  # next output element
    while q <= q_last:
        qn = min(q_last + 1, q + _CHUNK)
        blk = normal4(seed, rank, step, sample, stream, np.arange(q, qn, dtype=np.uint64)).reshape(-1)
        lo = lead if q == q_first else 0
        take = min(blk.shape[0] - lo, n - pos)
        out[pos:pos + take] = blk[lo:lo + take]
        pos += take
        q = qn
    return out


def normal(seed, rank, step, sample, stream, start, n):
    """eps for flat indices [start, start+n) as a torch.float32 CPU tensor (bit-identical to noise_fill)."""
    import torch
    a = normal_numpy(seed, rank, step, sample, stream, start, n)
    try:
        return torch.from_numpy(a)
    except (RuntimeError, TypeError, ValueError):
        # torch built against another numpy ABI: copy through a byte buffer
        return torch.frombuffer(bytearray(a.tobytes()), dtype=torch.float32)
