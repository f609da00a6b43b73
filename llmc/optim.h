// CPU reference optimizer updates: AdamW, IVON and IVON-PoCo(Mo) (spec: OPTIMIZERS.md §2, §6).
// The element formulas are in llmc/optim_elem.h (host and device); the passes here are loops around them.
// The IVON arithmetic follows §2.9 exactly: per-group scalars are formed in double and rounded to fp32 once,
// every line below is one fp32 rounding in the written order (no FMA contraction).
//   sample:      n = eps / sqrtf(essf * (h + wdf));   theta = m + n
//   accumulate:  x = grad * clip_scale;  y = n * x;   k == 1: acc = x;  else acc = acc + (x - acc) / (float)k
//   newton step: g  = (b1f*g) + (omb1*x)
//                hw = h + wdf;  d = h - f
//                hn = ((b2f*h) + (omb2*f)) + ((c2*(d*d)) / hw)
//                u  = ((g / bc) + (wdf*m)) / (hn + wdf);  u = min(max(u, -r), r)
//                m  = m - lr_eff*u;  h = hn
//   IVON:        x = acc_g,  f = (acc_ng*hw) * essf
//   PoCo:        f_in = (acc_ng*hw) * essf;  f_out = (acc_ng_out*hwo) * essf   (hwo = h_out + wdf)
//                x = acc_g - (gamma*(acc_g_out - gbar_out));  f = f_in - (gamma*(f_out - hbar_out))
//                P = (gamma*(hbar_out - f_out)) * (m - m_out), added next to wdf*m (or to x, in the momentum)
// The noise eps of flat parameter index i comes from llmc/noise.h (a pure function of seed, rank, step,
// sample, stream, i), so the accumulate pass regenerates the noise of the sample pass bit for bit.
#ifndef LLMC_OPTIM_H
#define LLMC_OPTIM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <math.h>

#include "utils.h"
#include "noise.h"
#include "optim_elem.h"
#include "optim_config.h"

// ----------------------------------------------------------------------------------------------
// AdamW

// AdamW with decoupled weight decay on n elements (adamw_elem); t is the 1-based step, g = grad * grad_scale.
// gcc vectorizes this loop only with -fno-math-errno (sqrtf otherwise may set errno).
static inline void adamw_update(float* param, const float* grad, float* m, float* v, size_t n, float lr, float beta1,
                                float beta2, float eps, float weight_decay, float grad_scale, int t) {
    float bc1 = 1.0f - powf(beta1, (float)t);
    float bc2 = 1.0f - powf(beta2, (float)t);
    OMP_PRAGMA(parallel for schedule(static))
    for (size_t i = 0; i < n; i++)
        adamw_elem(&param[i], &m[i], &v[i], grad[i] * grad_scale, lr, beta1, beta2, bc1, bc2, eps, weight_decay);
}


// ----------------------------------------------------------------------------------------------
// IVON: scalars, noise, element passes

// lr: scheduled (un-rescaled) lr; delta: the group's prior precision; t: 1-based update count.
// PoCo without momentum (poco_momentum 0) uses beta1 = 0 and no debias.
static inline IvonScalars ivon_scalars(const OptimizerConfig* oc, double lr, double delta, int t) {
    double b1 = oc->beta1, b2 = oc->beta2;
    int debias = oc->debias;
    if (oc->kind == OPT_POCO && !oc->poco_momentum) {
        b1 = 0.0;
        debias = 0;
    }
    IvonScalars s;
    s.b1f = (float)b1;
    s.omb1 = (float)(1.0 - b1);
    s.b2f = (float)b2;
    s.omb2 = (float)(1.0 - b2);
    s.c2 = (float)(0.5 * (1.0 - b2) * (1.0 - b2));
    s.essf = (float)oc->ess;
    s.wdf = (float)delta;
    s.lr_eff = (float)(oc->rescale_lr ? lr * (oc->hess_init + delta) : lr);
    s.bc = (float)(debias ? 1.0 - pow(b1, (double)t) : 1.0);
    s.r = oc->clip_radius > 0.0 ? (float)oc->clip_radius : INFINITY;
    return s;
}

// prior precision delta of parameter tensor i (PARAM_TABLE order): -pr for 2-D, -pr1 for 1-D
static inline double ivon_group_delta(const OptimizerConfig* oc, int decay) {
    return decay ? oc->prior_2d : oc->prior_1d;
}

// Which noise: eps(i) = noise_normal(seed, rank, step, sample, stream, i); off = 1 gives eps = 0.
typedef struct {
    uint64_t seed;
    uint32_t rank, step, sample, stream;
    int off;
} IvonNoiseKey;

static inline IvonNoiseKey ivon_noise_key(const OptimizerConfig* oc, int step, int sample, uint32_t stream) {
    IvonNoiseKey k = {oc->seed, oc->rank, (uint32_t)step, (uint32_t)sample, stream, oc->noise_off};
    return k;
}

// eps of the flat indices [g0, g0 + IVON_CHUNK) (g0 a multiple of 4) into e
#define IVON_CHUNK 1024  // a multiple of 4 * NOISE_HOST_CHUNK
static inline void ivon_eps_chunk(const IvonNoiseKey* key, size_t g0, float* e) {
    if (key->off) {
        for (int i = 0; i < IVON_CHUNK; i++) e[i] = 0.0f;
        return;
    }
    uint64_t q0 = g0 >> 2;
    for (int q = 0; q < IVON_CHUNK / 4; q += NOISE_HOST_CHUNK)
        noise_chunk_host(e + 4 * q, q0 + (uint64_t)q, NOISE_HOST_CHUNK, key->seed, key->rank, key->step, key->sample,
                         key->stream);
}

// Loops over the slice [start, start + n) of flat indices in chunks of IVON_CHUNK aligned indices (OpenMP-parallel
// over chunks); BODY sees the slice index i and its normal e.
#define IVON_FOR_EACH_ELEM(key, start, n, BODY)                                              \
    do {                                                                                    \
        size_t s_ = (start), end_ = (start) + (n);                                          \
        size_t c0_ = s_ / IVON_CHUNK, c1_ = (end_ + IVON_CHUNK - 1) / IVON_CHUNK;           \
        OMP_PRAGMA(parallel for schedule(static))                                           \
        for (size_t c_ = c0_; c_ < c1_; c_++) {                                             \
            float ebuf_[IVON_CHUNK];                                                        \
            size_t g0_ = c_ * IVON_CHUNK;                                                   \
            ivon_eps_chunk(key, g0_, ebuf_);                                                \
            size_t lo_ = g0_ > s_ ? g0_ : s_;                                               \
            size_t hi_ = g0_ + IVON_CHUNK < end_ ? g0_ + IVON_CHUNK : end_;                 \
            for (size_t idx_ = lo_; idx_ < hi_; idx_++) {                                   \
                size_t i = idx_ - s_;                                                       \
                float e = ebuf_[idx_ - g0_];                                                \
                BODY                                                                        \
            }                                                                               \
        }                                                                                   \
    } while (0)

// theta = m + n, n = eps / sqrtf(essf * (h + wdf)), on the slice at flat index start (n elements; pointers at the
// slice). noise (may be NULL) receives n for ivon_accumulate_noise.
static inline void ivon_sample(float* theta, float* noise, const float* m, const float* h, size_t n, size_t start,
                               float essf, float wdf, const IvonNoiseKey* key) {
    IVON_FOR_EACH_ELEM(key, start, n, {
        float nz = ivon_noise_elem(e, h[i], essf, wdf);
        theta[i] = ivon_sample_elem(m[i], nz);
        if (noise != NULL) noise[i] = nz;
    });
}

// Welford accumulation of sample k (1-based) of the clipped gradient x = grad * clip_scale and of
// n * x with the noise n of ivon_sample, regenerated from the same key and h.
static inline void ivon_accumulate(float* acc_g, float* acc_ng, const float* grad, float clip_scale, const float* h,
                                   size_t n, size_t start, float essf, float wdf, const IvonNoiseKey* key, int k) {
    float kf = (float)k;
    IVON_FOR_EACH_ELEM(key, start, n, {
        float nz = ivon_noise_elem(e, h[i], essf, wdf);
        ivon_accumulate_elem(&acc_g[i], &acc_ng[i], grad[i], clip_scale, nz, k, kf);
    });
}

// The same accumulation with the noise n stored by ivon_sample (bit-identical to ivon_accumulate; one noise
// generation per sample instead of two).
static inline void ivon_accumulate_noise(float* acc_g, float* acc_ng, const float* grad, float clip_scale,
                                         const float* noise, size_t n, int k) {
    float kf = (float)k;
    OMP_PRAGMA(parallel for schedule(static))
    for (size_t i = 0; i < n; i++) ivon_accumulate_elem(&acc_g[i], &acc_ng[i], grad[i], clip_scale, noise[i], k, kf);
}

// Welford accumulation of the clipped gradient alone (PoCo mega-batch at m_out, no noise)
static inline void ivon_accumulate_grad(float* acc_g, const float* grad, float clip_scale, size_t n, int k) {
    float kf = (float)k;
    OMP_PRAGMA(parallel for schedule(static))
    for (size_t i = 0; i < n; i++) acc_g[i] = ivon_welford_elem(acc_g[i], grad[i] * clip_scale, k, kf);
}

// hbar = (acc_ng * (h + wdf)) * essf in place: the Price Hessian estimate from the noise-gradient mean
static inline void ivon_price_hessian(float* acc_ng, const float* h, size_t n, float essf, float wdf) {
    OMP_PRAGMA(parallel for schedule(static))
    for (size_t i = 0; i < n; i++) acc_ng[i] = ivon_price_elem(acc_ng[i], h[i], essf, wdf);
}

// statistics of one update over a slice
typedef struct {
    size_t n;            // elements
    size_t clipped;      // coordinates with |u| > r
    double sum_abs_dm;   // sum |m_new - m_old|
    size_t violations;   // IVON_CHECKS: invariant violations (0 without the checks)
} IvonUpdateStats;

static inline void ivon_stats_add(IvonUpdateStats* a, const IvonUpdateStats* b) {
    a->n += b->n;
    a->clipped += b->clipped;
    a->sum_abs_dm += b->sum_abs_dm;
    a->violations += b->violations;
}

// The update loops run over blocks of OPT_BLOCK elements (OpenMP over blocks); each block is a plain loop with
// restrict pointers and the scalars by value, so that gcc vectorizes it.
#define OPT_BLOCK 8192
#if defined(__GNUC__)
#define OPT_NOINLINE __attribute__((noinline, unused))  // keeps restrict (lost when inlined into the OpenMP body)
#define OPT_RESTRICT __restrict__
#else
#define OPT_NOINLINE
#define OPT_RESTRICT
#endif
#define OPT_FOR_BLOCKS(n, lo, hi, BODY)                                                           \
    do {                                                                                          \
        size_t nb_ = ((n) + OPT_BLOCK - 1) / OPT_BLOCK;                                           \
        OMP_PRAGMA(parallel for schedule(static) reduction(+:clipped, viol, sum_dm))              \
        for (size_t b_ = 0; b_ < nb_; b_++) {                                                     \
            size_t lo = b_ * OPT_BLOCK, hi = lo + OPT_BLOCK < (n) ? lo + OPT_BLOCK : (n);         \
            BODY                                                                                  \
        }                                                                                         \
    } while (0)

// The last accumulation of a step folded into the update (no pass of its own): the update forms the running means
// of sample k from grad * clip and the sample's noise n in registers, as ivon_accumulate would have stored them (k > 1:
// from the means read; k == 1 reads none), and stores no means. noise: the n of ivon_sample at the slice, or NULL:
// regenerated from key and the h of the sample (IVON: h, PoCo: h_out), which the update reads before changing it.
// IVON folds the IN accumulation, PoCo the OUT one.
typedef struct {
    const float* grad;        // the micro-batch gradient at the slice
    const float* noise;       // the sample's noise at the slice, or NULL
    const IvonNoiseKey* key;  // noise == NULL: the sample's key
    size_t start;             // flat index of the slice (the noise index)
    float clip;               // clip scale
    int k;                    // 1-based sample number
} IvonLastAcc;

// eps of the flat indices [g, g + count) into e (count <= OPT_BLOCK): whole noise blocks of 4 generated from the block
// of g on, eps(g) at e[g & 3]; e holds OPT_BLOCK + 8 floats
static inline const float* ivon_eps_range(const IvonNoiseKey* key, size_t g, size_t count, float* e) {
    size_t skip = g & 3;
    if (key->off) {
        for (size_t i = 0; i < skip + count; i++) e[i] = 0.0f;
        return e + skip;
    }
    uint64_t q0 = g >> 2;
    long long nq = (long long)((skip + count + 3) / 4);
    for (long long q = 0; q < nq; q += NOISE_HOST_CHUNK) {
        int m = (int)(nq - q < NOISE_HOST_CHUNK ? nq - q : NOISE_HOST_CHUNK);
        noise_chunk_host(e + 4 * q, q0 + (uint64_t)q, m, key->seed, key->rank, key->step, key->sample, key->stream);
    }
    return e + skip;
}

// the noise n of the slice elements [lo, hi) of a folded accumulation: la->noise, or regenerated with h into nbuf
// (OPT_BLOCK floats; ebuf OPT_BLOCK + 8); indexed from lo
static inline const float* ivon_last_acc_noise(const IvonLastAcc* la, const float* h, size_t lo, size_t hi, float essf,
                                               float wdf, float* nbuf, float* ebuf) {
    if (la->noise != NULL) return la->noise + lo;
    const float* e = ivon_eps_range(la->key, la->start + lo, hi - lo, ebuf);
    for (size_t i = lo; i < hi; i++) nbuf[i - lo] = ivon_noise_elem(e[i - lo], h[i], essf, wdf);
    return nbuf;
}

// running means (*ag, *an) of sample k of a folded accumulation; first: k == 1 (acc_g, acc_ng not read)
static inline void ivon_last_acc_elem(float* ag, float* an, const float* acc_g, const float* acc_ng, size_t i,
                                      float grad, float clip, float nz, int first, int k, float kf) {
    *ag = first ? 0.0f : acc_g[i];
    *an = first ? 0.0f : acc_ng[i];
    ivon_accumulate_elem(ag, an, grad, clip, nz, k, kf);
}

// one element of the IVON update from the running means (ag, an); returns |dm|
static inline float ivon_update_elem(float* theta, float* m, float* g, float* h, size_t i, float ag, float an,
                                     IvonScalars s, int* clipped, int* viol) {
    float f = ivon_price_elem(an, h[i], s.essf, s.wdf);
    int c, b;
    float adm = ivon_newton_elem(&m[i], &g[i], &h[i], ag, f, 0.0f, IVON_PROX_NONE, s, &c, &b);
    if (theta != NULL) theta[i] = m[i];
    *clipped += c;
    *viol += b;
    return adm;
}

OPT_NOINLINE static void ivon_update_block(float* OPT_RESTRICT theta, float* OPT_RESTRICT m, float* OPT_RESTRICT g,
                                           float* OPT_RESTRICT h,
                                           const float* OPT_RESTRICT acc_g, const float* OPT_RESTRICT acc_ng, size_t lo, size_t hi,
                                           IvonScalars s, IvonUpdateStats* st) {
    int clipped = 0, viol = 0;
    double sum_dm = 0.0;
    OMP_PRAGMA(simd reduction(+:clipped, viol, sum_dm))  // the statistics in lane order
    for (size_t i = lo; i < hi; i++)
        sum_dm += (double)ivon_update_elem(theta, m, g, h, i, acc_g[i], acc_ng[i], s, &clipped, &viol);
    IvonUpdateStats r = {hi - lo, (size_t)clipped, sum_dm, (size_t)viol};
    *st = r;
}

// ivon_update_block with the last accumulation folded in (grad, nz from lo: see IvonLastAcc)
OPT_NOINLINE static void ivon_update_acc_block(float* OPT_RESTRICT theta, float* OPT_RESTRICT m, float* OPT_RESTRICT g,
                                               float* OPT_RESTRICT h, const float* OPT_RESTRICT acc_g,
                                               const float* OPT_RESTRICT acc_ng, const float* OPT_RESTRICT grad,
                                               const float* OPT_RESTRICT nz, float clip, int k, size_t lo, size_t hi,
                                               IvonScalars s, IvonUpdateStats* st) {
    int clipped = 0, viol = 0;
    double sum_dm = 0.0;
    float kf = (float)k, ag, an;
    if (k == 1) {
        OMP_PRAGMA(simd reduction(+:clipped, viol, sum_dm) private(ag, an))
        for (size_t i = lo; i < hi; i++) {
            ivon_last_acc_elem(&ag, &an, acc_g, acc_ng, i, grad[i], clip, nz[i - lo], 1, 1, 1.0f);
            sum_dm += (double)ivon_update_elem(theta, m, g, h, i, ag, an, s, &clipped, &viol);
        }
    } else {
        OMP_PRAGMA(simd reduction(+:clipped, viol, sum_dm) private(ag, an))
        for (size_t i = lo; i < hi; i++) {
            ivon_last_acc_elem(&ag, &an, acc_g, acc_ng, i, grad[i], clip, nz[i - lo], 0, k, kf);
            sum_dm += (double)ivon_update_elem(theta, m, g, h, i, ag, an, s, &clipped, &viol);
        }
    }
    IvonUpdateStats r = {hi - lo, (size_t)clipped, sum_dm, (size_t)viol};
    *st = r;
}

// IVON update (§2.4 D) on a slice: x = acc_g, f = (acc_ng * (h + wdf)) * essf; theta (may be NULL) = the new m
// (the weights after the step, written in the same pass). la (may be NULL): the last accumulation, folded in.
static inline IvonUpdateStats ivon_update_acc_to(float* theta, float* m, float* g, float* h, const float* acc_g,
                                                 const float* acc_ng, const IvonLastAcc* la, size_t n,
                                                 const IvonScalars* s) {
    size_t clipped = 0, viol = 0;
    double sum_dm = 0.0;
    OPT_FOR_BLOCKS(n, lo, hi, {
        IvonUpdateStats b;
        if (la == NULL) {
            ivon_update_block(theta, m, g, h, acc_g, acc_ng, lo, hi, *s, &b);
        } else {
            float nbuf[OPT_BLOCK];  // (no comma: a macro argument)
            float ebuf[OPT_BLOCK + 8];
            const float* nz = ivon_last_acc_noise(la, h, lo, hi, s->essf, s->wdf, nbuf, ebuf);
            ivon_update_acc_block(theta, m, g, h, acc_g, acc_ng, la->grad, nz, la->clip, la->k, lo, hi, *s, &b);
        }
        clipped += b.clipped;
        viol += b.violations;
        sum_dm += b.sum_abs_dm;
    });
    IvonUpdateStats st = {n, clipped, sum_dm, viol};
    return st;
}

static inline IvonUpdateStats ivon_update_to(float* theta, float* m, float* g, float* h, const float* acc_g,
                                             const float* acc_ng, size_t n, const IvonScalars* s) {
    return ivon_update_acc_to(theta, m, g, h, acc_g, acc_ng, NULL, n, s);
}

static inline IvonUpdateStats ivon_update(float* m, float* g, float* h, const float* acc_g, const float* acc_ng,
                                          size_t n, const IvonScalars* s) {
    return ivon_update_to(NULL, m, g, h, acc_g, acc_ng, n, s);
}

// PoCo inputs of one slice: the outer accumulators, the anchor state and gamma (§6.3)
typedef struct {
    const float* acc_g_out;   // mean of clipped g_out
    const float* acc_ng_out;  // mean of n_out * g_out
    const float* m_out;       // anchor mean
    const float* h_out;       // anchor h (h_out_state)
    const float* gbar_out;    // mega-batch gradient
    const float* hbar_out;    // mega-batch Hessian estimate
    float gamma;
    int prox_mode;            // IVON_PROX_*
} PocoSlice;

// one element of the PoCo update from the OUT running means (ago, ano); returns |dm|
static inline float poco_update_elem(float* theta, float* m, float* g, float* h, size_t i, const float* acc_g,
                                     const float* acc_ng, float ago, float ano, const float* m_out, const float* h_out,
                                     const float* gbar_out, const float* hbar_out, float gamma, int prox_mode,
                                     IvonScalars s, int* clipped, int* viol) {
    float x, f, p;
    poco_vr_elem(acc_g[i], acc_ng[i], h[i], ago, ano, h_out[i], gbar_out[i], hbar_out[i], m[i], m_out[i], gamma,
                 s.essf, s.wdf, &x, &f, &p);
    int c, b;
    float adm = ivon_newton_elem(&m[i], &g[i], &h[i], x, f, p, prox_mode, s, &c, &b);
    if (theta != NULL) theta[i] = m[i];
    *clipped += c;
    *viol += b;
    return adm;
}

OPT_NOINLINE static void poco_update_block(float* OPT_RESTRICT theta, float* OPT_RESTRICT m, float* OPT_RESTRICT g,
                                           float* OPT_RESTRICT h,
                                           const float* OPT_RESTRICT acc_g, const float* OPT_RESTRICT acc_ng,
                                           const float* OPT_RESTRICT acc_g_out, const float* OPT_RESTRICT acc_ng_out,
                                           const float* OPT_RESTRICT m_out, const float* OPT_RESTRICT h_out,
                                           const float* OPT_RESTRICT gbar_out, const float* OPT_RESTRICT hbar_out, float gamma,
                                           int prox_mode, size_t lo, size_t hi, IvonScalars s, IvonUpdateStats* st) {
    int clipped = 0, viol = 0;
    double sum_dm = 0.0;
    OMP_PRAGMA(simd reduction(+:clipped, viol, sum_dm))  // the statistics in lane order
    for (size_t i = lo; i < hi; i++)
        sum_dm += (double)poco_update_elem(theta, m, g, h, i, acc_g, acc_ng, acc_g_out[i], acc_ng_out[i], m_out, h_out,
                                           gbar_out, hbar_out, gamma, prox_mode, s, &clipped, &viol);
    IvonUpdateStats r = {hi - lo, (size_t)clipped, sum_dm, (size_t)viol};
    *st = r;
}

// poco_update_block with the last OUT accumulation folded in (grad, nz from lo: see IvonLastAcc)
OPT_NOINLINE static void poco_update_acc_block(float* OPT_RESTRICT theta, float* OPT_RESTRICT m, float* OPT_RESTRICT g,
                                               float* OPT_RESTRICT h,
                                               const float* OPT_RESTRICT acc_g, const float* OPT_RESTRICT acc_ng,
                                               const float* OPT_RESTRICT acc_g_out, const float* OPT_RESTRICT acc_ng_out,
                                               const float* OPT_RESTRICT m_out, const float* OPT_RESTRICT h_out,
                                               const float* OPT_RESTRICT gbar_out, const float* OPT_RESTRICT hbar_out,
                                               float gamma, int prox_mode, const float* OPT_RESTRICT grad,
                                               const float* OPT_RESTRICT nz, float clip, int k, size_t lo, size_t hi,
                                               IvonScalars s, IvonUpdateStats* st) {
    int clipped = 0, viol = 0;
    double sum_dm = 0.0;
    float kf = (float)k, ago, ano;
    if (k == 1) {
        OMP_PRAGMA(simd reduction(+:clipped, viol, sum_dm) private(ago, ano))
        for (size_t i = lo; i < hi; i++) {
            ivon_last_acc_elem(&ago, &ano, acc_g_out, acc_ng_out, i, grad[i], clip, nz[i - lo], 1, 1, 1.0f);
            sum_dm += (double)poco_update_elem(theta, m, g, h, i, acc_g, acc_ng, ago, ano, m_out, h_out, gbar_out,
                                               hbar_out, gamma, prox_mode, s, &clipped, &viol);
        }
    } else {
        OMP_PRAGMA(simd reduction(+:clipped, viol, sum_dm) private(ago, ano))
        for (size_t i = lo; i < hi; i++) {
            ivon_last_acc_elem(&ago, &ano, acc_g_out, acc_ng_out, i, grad[i], clip, nz[i - lo], 0, k, kf);
            sum_dm += (double)poco_update_elem(theta, m, g, h, i, acc_g, acc_ng, ago, ano, m_out, h_out, gbar_out,
                                               hbar_out, gamma, prox_mode, s, &clipped, &viol);
        }
    }
    IvonUpdateStats r = {hi - lo, (size_t)clipped, sum_dm, (size_t)viol};
    *st = r;
}

// IVON-PoCo update on a slice: the Newton step with the variance-reduced x, f and the proximal term; theta as in
// ivon_update_to. la (may be NULL): the last OUT accumulation, folded in (ps->acc_g_out, acc_ng_out hold its k - 1
// means).
static inline IvonUpdateStats poco_update_acc_to(float* theta, float* m, float* g, float* h, const float* acc_g,
                                                 const float* acc_ng, const PocoSlice* ps, const IvonLastAcc* la,
                                                 size_t n, const IvonScalars* s) {
    size_t clipped = 0, viol = 0;
    double sum_dm = 0.0;
    OPT_FOR_BLOCKS(n, lo, hi, {
        IvonUpdateStats b;
        if (la == NULL) {
            poco_update_block(theta, m, g, h, acc_g, acc_ng, ps->acc_g_out, ps->acc_ng_out, ps->m_out, ps->h_out,
                              ps->gbar_out, ps->hbar_out, ps->gamma, ps->prox_mode, lo, hi, *s, &b);
        } else {
            float nbuf[OPT_BLOCK];  // (no comma: a macro argument)
            float ebuf[OPT_BLOCK + 8];
            const float* nz = ivon_last_acc_noise(la, ps->h_out, lo, hi, s->essf, s->wdf, nbuf, ebuf);
            poco_update_acc_block(theta, m, g, h, acc_g, acc_ng, ps->acc_g_out, ps->acc_ng_out, ps->m_out, ps->h_out,
                                  ps->gbar_out, ps->hbar_out, ps->gamma, ps->prox_mode, la->grad, nz, la->clip, la->k,
                                  lo, hi, *s, &b);
        }
        clipped += b.clipped;
        viol += b.violations;
        sum_dm += b.sum_abs_dm;
    });
    IvonUpdateStats st = {n, clipped, sum_dm, viol};
    return st;
}

static inline IvonUpdateStats poco_update_to(float* theta, float* m, float* g, float* h, const float* acc_g,
                                             const float* acc_ng, const PocoSlice* ps, size_t n, const IvonScalars* s) {
    return poco_update_acc_to(theta, m, g, h, acc_g, acc_ng, ps, NULL, n, s);
}

static inline IvonUpdateStats poco_update(float* m, float* g, float* h, const float* acc_g, const float* acc_ng,
                                          const PocoSlice* ps, size_t n, const IvonScalars* s) {
    return poco_update_to(NULL, m, g, h, acc_g, acc_ng, ps, n, s);
}

#endif // LLMC_OPTIM_H
