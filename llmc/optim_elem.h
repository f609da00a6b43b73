// Element formulas of the optimizers, one place for host and device: AdamW, the IVON sample, the Welford
// accumulation, the Price Hessian, the Newton step and the PoCo correction (spec OPTIMIZERS.md §2.9, §6.3).
// The CPU passes (llmc/optim.h) and the CUDA kernels are loops around these functions.
// Every operation is one fp32 rounding in the written order: OPT_ADD/SUB/MUL/DIV/SQRT are the correctly rounded
// operations of llmc/noise.h (__fadd_rn ... under nvcc, never contracted into FMA; plain operators on the host,
// built with -ffp-contract=off), so gcc and nvcc give the same bits.
#ifndef LLMC_OPTIM_ELEM_H
#define LLMC_OPTIM_ELEM_H

#include <math.h>
#include "noise.h"

#ifdef __CUDACC__
#define OPT_FN __host__ __device__ static inline
#else
#define OPT_FN static inline
#endif

#define OPT_ADD(a, b) NOISE_ADD(a, b)
#define OPT_SUB(a, b) NOISE_SUB(a, b)
#define OPT_MUL(a, b) NOISE_MUL(a, b)
#define OPT_DIV(a, b) NOISE_DIV(a, b)
#define OPT_SQRT(a) NOISE_SQRT(a)

// ----------------------------------------------------------------------------------------------
// AdamW with decoupled weight decay; g is the scaled gradient, bc1 = 1 - beta1^t, bc2 = 1 - beta2^t.
//   m = (b1 m) + ((1 - b1) g);  v = (b2 v) + (((1 - b2) g) g)
//   p = p - lr ((m / bc1) / (sqrt(v / bc2) + eps) + wd p)
OPT_FN void adamw_elem(float* p, float* m, float* v, float g, float lr, float beta1, float beta2, float bc1,
                       float bc2, float eps, float wd) {
    float mi = OPT_ADD(OPT_MUL(beta1, *m), OPT_MUL(OPT_SUB(1.0f, beta1), g));
    float vi = OPT_ADD(OPT_MUL(beta2, *v), OPT_MUL(OPT_MUL(OPT_SUB(1.0f, beta2), g), g));
    *m = mi;
    *v = vi;
    float mhat = OPT_DIV(mi, bc1);
    float vhat = OPT_DIV(vi, bc2);
    float pi = *p;
    *p = OPT_SUB(pi, OPT_MUL(lr, OPT_ADD(OPT_DIV(mhat, OPT_ADD(OPT_SQRT(vhat), eps)), OPT_MUL(wd, pi))));
}

// ----------------------------------------------------------------------------------------------
// IVON

// fp32 scalars of one parameter group, formed in double and rounded once (§2.9; ivon_scalars in llmc/optim.h)
typedef struct {
    float b1f, omb1, b2f, omb2, c2;  // beta1, 1 - beta1, beta2, 1 - beta2, 0.5 (1 - beta2)^2
    float essf, wdf;                 // lambda, delta of the group
    float lr_eff;                    // lr * (h0 + delta) with rescale_lr, else lr
    float bc;                        // 1 - beta1^t with debias, else 1
    float r;                         // clip radius, +inf for none
} IvonScalars;

// sigma = 1 / sqrt(essf (h + wdf))
OPT_FN float ivon_sigma(float h, float essf, float wdf) {
    return OPT_DIV(1.0f, OPT_SQRT(OPT_MUL(essf, OPT_ADD(h, wdf))));
}

// the noise n = eps / sqrt(essf (h + wdf)) of one element (a true division, as ivon-opt); theta = m + n
OPT_FN float ivon_noise_elem(float e, float h, float essf, float wdf) {
    return OPT_DIV(e, OPT_SQRT(OPT_MUL(essf, OPT_ADD(h, wdf))));
}

OPT_FN float ivon_sample_elem(float m, float n) {
    return OPT_ADD(m, n);
}

// Welford mean of sample k (1-based, kf = (float)k): k == 1: x; else acc + (x - acc) / kf
OPT_FN float ivon_welford_elem(float acc, float x, int k, float kf) {
    return k == 1 ? x : OPT_ADD(acc, OPT_DIV(OPT_SUB(x, acc), kf));
}

// accumulation of sample k: x = grad clip_scale into acc_g, n x into acc_ng (n = the sample's noise)
OPT_FN void ivon_accumulate_elem(float* acc_g, float* acc_ng, float grad, float clip_scale, float n, int k,
                                 float kf) {
    float x = OPT_MUL(grad, clip_scale);
    float y = OPT_MUL(n, x);
    *acc_g = ivon_welford_elem(*acc_g, x, k, kf);
    *acc_ng = ivon_welford_elem(*acc_ng, y, k, kf);
}

// the Price Hessian estimate f = (acc_ng (h + wdf)) essf
OPT_FN float ivon_price_elem(float acc_ng, float h, float essf, float wdf) {
    return OPT_MUL(OPT_MUL(acc_ng, OPT_ADD(h, wdf)), essf);
}

// prox placement of the Newton step
#define IVON_PROX_NONE 0
#define IVON_PROX_NEXT_TO_DECAY 1
#define IVON_PROX_IN_MOMENTUM 2

// The Newton step of one element, shared by IVON and PoCo: x = gradient estimate, f = Hessian estimate,
// p = proximal term (used per prox_mode). Updates *m, *g, *h; returns |dm|; *clipped = 1 if u was clipped.
//   g = (b1f g) + (omb1 x);  hw = h + wdf;  d = h - f;  hn = ((b2f h) + (omb2 f)) + ((c2 (d d)) / hw)
//   u = ((g / bc) + (wdf m)) / (hn + wdf);  u = min(max(u, -r), r);  m = m - lr_eff u;  h = hn
// With IVON_CHECKS, *bad = 1 on an invariant violation (§9.2): h + delta > 0, (h' + delta) >= 0.5 (h + delta),
// finite sigma, |dm| <= lr_eff * r * (1 + 1e-6) + 1 ulp of |m| (the rounding of m - lr_eff u).
OPT_FN float ivon_newton_elem(float* m, float* g, float* h, float x, float f, float p, int prox_mode,
                              IvonScalars sv, int* clipped, int* bad) {
    const IvonScalars* s = &sv;  // by value: no aliasing with m, g, h (the CPU loops vectorize)
    x = prox_mode == IVON_PROX_IN_MOMENTUM ? OPT_ADD(x, p) : x;  // selects, no branches: the loops vectorize
    float gn = OPT_ADD(OPT_MUL(s->b1f, *g), OPT_MUL(s->omb1, x));
    float ho = *h;
    float hw = OPT_ADD(ho, s->wdf);
    float d = OPT_SUB(ho, f);
    float hn = OPT_ADD(OPT_ADD(OPT_MUL(s->b2f, ho), OPT_MUL(s->omb2, f)), OPT_DIV(OPT_MUL(s->c2, OPT_MUL(d, d)), hw));
    float num = OPT_ADD(OPT_DIV(gn, s->bc), OPT_MUL(s->wdf, *m));
    num = prox_mode == IVON_PROX_NEXT_TO_DECAY ? OPT_ADD(num, p) : num;
    float u = OPT_DIV(num, OPT_ADD(hn, s->wdf));
    float r = s->r;
    *clipped = (u > r) | (u < -r);
    u = u < -r ? -r : u;
    u = u > r ? r : u;
    float mo = *m;
    float mn = OPT_SUB(mo, OPT_MUL(s->lr_eff, u));
    *m = mn;
    *g = gn;
    *h = hn;
    float adm = fabsf(OPT_SUB(mn, mo));
#ifdef IVON_CHECKS
    float hw_new = OPT_ADD(hn, s->wdf);
    float sigma = ivon_sigma(hn, s->essf, s->wdf);
    *bad = !(hw > 0.0f) || !(hw_new > 0.0f) || !((double)hw_new >= 0.5 * (double)hw * (1.0 - 1e-5)) ||
           !isfinite(sigma) || !isfinite(mn) || !isfinite(gn) ||
           !((double)adm <= (double)s->lr_eff * (double)s->r * (1.0 + 1e-6) + 1.2e-7 * fmax(fabs(mo), fabs(mn)));
#else
    *bad = 0;
#endif
    return adm;
}

// ----------------------------------------------------------------------------------------------
// PoCo

// The variance-reduced estimates of one element (§6.3):
//   f_in = (acc_ng (h + wdf)) essf;  f_out = (acc_ng_out (h_out + wdf)) essf
//   x = acc_g - gamma (acc_g_out - gbar_out);  f = f_in - gamma (f_out - hbar_out);  p = gamma (hbar_out - f_out) (m - m_out)
OPT_FN void poco_vr_elem(float acc_g, float acc_ng, float h, float acc_g_out, float acc_ng_out, float h_out,
                         float gbar_out, float hbar_out, float m, float m_out, float gamma, float essf, float wdf,
                         float* x, float* f, float* p) {
    float f_in = ivon_price_elem(acc_ng, h, essf, wdf);
    float f_out = ivon_price_elem(acc_ng_out, h_out, essf, wdf);
    *x = OPT_SUB(acc_g, OPT_MUL(gamma, OPT_SUB(acc_g_out, gbar_out)));
    *f = OPT_SUB(f_in, OPT_MUL(gamma, OPT_SUB(f_out, hbar_out)));
    *p = OPT_MUL(OPT_MUL(gamma, OPT_SUB(hbar_out, f_out)), OPT_SUB(m, m_out));
}

#endif // LLMC_OPTIM_ELEM_H
