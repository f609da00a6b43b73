// Tests of the IVON / IVON-PoCo(Mo) optimizer (llmc/optim.h and gpt2_optimizer_step in train_gpt2.c):
// element passes against the §2.9 formulas, the reductions of §2.8 and §6.6, the Price estimator, the
// positivity invariant, Welford accumulation, the flag resolution, and whole steps on a tiny GPT-2
// (V=64, C=16, L=1, NH=2, maxT=8, B=2, T=4) with synthetic batches.
// Build: gcc -O3 -march=native -ffp-contract=off -fopenmp -Wall -Wextra -o dev/test/bin/test_optim dev/test/test_optim.c -lm
// Last line: "N passed, N failed"; exit status non-zero on any failure.
#ifndef TESTING
#define TESTING
#endif
#include "../../train_gpt2.c"

static int g_pass = 0, g_fail = 0;

#define CHECK(cond, ...) do { if (cond) { g_pass++; printf("OK   "); } else { g_fail++; printf("FAIL "); } \
                              printf(__VA_ARGS__); printf("\n"); } while (0)

static uint64_t g_rng = 12345;
static float rnd_uniform(float lo, float hi) {  // in [lo, hi)
    return lo + (hi - lo) * (float)((model_init_splitmix64(&g_rng) >> 40) / 16777216.0);
}
static float rnd_normal(void) {
    double u1 = ((model_init_splitmix64(&g_rng) >> 11) + 0.5) / 9007199254740992.0;
    double u2 = ((model_init_splitmix64(&g_rng) >> 11) + 0.5) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

// |a - ref| in units in the last place of `scale` (the largest magnitude that enters the result: the old value
// and the terms of the step); an fp32 evaluation of a few operations lands within a few of these units
static double ulps_of(float a, double ref, double scale) {
    float sc = (float)fabs(scale);
    float u = nextafterf(sc, INFINITY) - sc;
    return fabs((double)a - ref) / (double)u;
}

static int same_bits(const float* a, const float* b, size_t n, size_t* first_diff) {
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
            if (first_diff) *first_diff = i;
            return 0;
        }
    }
    return 1;
}

// ----------------------------------------------------------------------------------------------
// element level

// §2.9 transcribed line by line, one element, for comparison with the library loops
static void ref_newton(float* m, float* g, float* h, float acc_g, float acc_ng, const IvonScalars* s) {
    float gg = (s->b1f * *g) + (s->omb1 * acc_g);
    float hw = *h + s->wdf;
    float f = (acc_ng * hw) * s->essf;
    float d = *h - f;
    float hn = ((s->b2f * *h) + (s->omb2 * f)) + ((s->c2 * (d * d)) / hw);
    float u = ((gg / s->bc) + (s->wdf * *m)) / (hn + s->wdf);
    u = fminf(fmaxf(u, -s->r), s->r);
    *m = *m - s->lr_eff * u;
    *g = gg;
    *h = hn;
}

static OptimizerConfig ivon_cfg(double ess) {
    OptimizerConfig oc;
    optimizer_config_defaults(&oc, OPT_IVON);
    oc.ess = ess;
    oc.seed = 99;
    oc.max_steps = 100;
    return oc;
}

static void test_scalars(void) {
    OptimizerConfig oc = ivon_cfg(1e10);
    IvonScalars s = ivon_scalars(&oc, 300.0, 1e-6, 3);
    int ok = s.b1f == (float)0.9 && s.omb1 == (float)(1.0 - 0.9) && s.b2f == (float)0.99999 &&
             s.omb2 == (float)(1.0 - 0.99999) && s.c2 == (float)(0.5 * (1.0 - 0.99999) * (1.0 - 0.99999)) &&
             s.essf == 1e10f && s.wdf == (float)1e-6 && s.lr_eff == (float)(300.0 * (1e-3 + 1e-6)) &&
             s.bc == (float)(1.0 - pow(0.9, 3)) && s.r == (float)1e-3;
    CHECK(ok, "ivon_scalars: every scalar formed in double and rounded once (§2.9)");
    CHECK(s.omb2 != 1.0f - s.b2f, "omb2 = (float)(1 - beta2) differs from 1.0f - b2f (%.9g vs %.9g), as intended",
          (double)s.omb2, (double)(1.0f - s.b2f));
    oc.clip_radius = 0.0;
    oc.rescale_lr = 0;
    oc.debias = 0;
    s = ivon_scalars(&oc, 0.5, 0.0, 1);
    CHECK(isinf(s.r) && s.lr_eff == 0.5f && s.bc == 1.0f, "r = 0 -> +inf, rescale off, debias off");
    OptimizerConfig pc = oc;
    pc.kind = OPT_POCO;
    pc.poco_momentum = 0;
    pc.debias = 1;
    s = ivon_scalars(&pc, 0.5, 0.0, 2);
    CHECK(s.b1f == 0.0f && s.omb1 == 1.0f && s.bc == 1.0f, "PoCo without momentum: beta1 0, no debias");
}

// sample: theta = m + eps / sqrtf(essf (h + wdf)) with eps = noise_normal of the flat index; accumulate (regenerated
// noise) equals accumulate with the stored noise bit for bit; slices at offsets that are not multiples of 4
static void test_sample_accumulate(void) {
    const size_t n = 5000, start = 4093;  // crosses chunk boundaries, odd start
    float* buf = (float*)mallocCheck(12 * n * sizeof(float));
    float *m = buf, *h = buf + n, *theta = buf + 2 * n, *noise = buf + 3 * n, *grad = buf + 4 * n;
    float *ag1 = buf + 5 * n, *an1 = buf + 6 * n, *ag2 = buf + 7 * n, *an2 = buf + 8 * n;
    for (size_t i = 0; i < n; i++) {
        m[i] = rnd_normal() * 0.02f;
        h[i] = rnd_uniform(1e-4f, 1.0f);
    }
    float essf = 1e6f, wdf = 1e-6f;
    int ok_theta = 1, ok_acc = 1;
    for (int k = 1; k <= 4; k++) {
        IvonNoiseKey key = {77, 3, 11, (uint32_t)k, NOISE_STREAM_SAMPLE, 0};
        ivon_sample(theta, noise, m, h, n, start, essf, wdf, &key);
        for (size_t i = 0; i < n; i++) {
            float e = noise_normal(77, 3, 11, (uint32_t)k, NOISE_STREAM_SAMPLE, start + i);
            float nz = e / sqrtf(essf * (h[i] + wdf));
            float t = m[i] + nz;
            if (memcmp(&t, &theta[i], 4) != 0 || memcmp(&nz, &noise[i], 4) != 0) ok_theta = 0;
            grad[i] = rnd_normal();
        }
        float c = k == 2 ? 0.37f : 1.0f;
        ivon_accumulate(ag1, an1, grad, c, h, n, start, essf, wdf, &key, k);
        ivon_accumulate_noise(ag2, an2, grad, c, noise, n, k);
        if (!same_bits(ag1, ag2, n, NULL) || !same_bits(an1, an2, n, NULL)) ok_acc = 0;
    }
    CHECK(ok_theta, "ivon_sample: theta and noise equal m + noise_normal(i) / sqrtf(essf (h + wdf)) bitwise");
    CHECK(ok_acc, "ivon_accumulate (regenerated noise) == ivon_accumulate_noise (stored noise) bitwise, 4 samples");
    // noise off: theta = m
    IvonNoiseKey off = {77, 0, 0, 0, 0, 1};
    ivon_sample(theta, noise, m, h, n, start, essf, wdf, &off);
    CHECK(same_bits(theta, m, n, NULL), "noise_off: theta = m");
    free(buf);
}

// Welford mean of K samples equals the arithmetic mean (double) to fp32 tolerance: |diff| <= K * 2^-24 * max|x|
static void test_welford(void) {
    const size_t n = 4096;
    const int K = 24;
    float* x = (float*)mallocCheck((size_t)K * n * sizeof(float));
    float* acc_g = (float*)mallocCheck(n * sizeof(float));
    float* acc_ng = (float*)mallocCheck(n * sizeof(float));
    float* noise = (float*)mallocCheck(n * sizeof(float));
    for (size_t i = 0; i < n; i++) noise[i] = 1.0f;
    for (size_t i = 0; i < (size_t)K * n; i++) x[i] = rnd_normal() * (i % 7 == 0 ? 100.0f : 1.0f);
    for (int k = 1; k <= K; k++) ivon_accumulate_noise(acc_g, acc_ng, x + (size_t)(k - 1) * n, 1.0f, noise, n, k);
    double worst = 0.0;
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        double mean = 0.0, mx = 0.0;
        for (int k = 0; k < K; k++) {
            mean += x[(size_t)k * n + i];
            mx = fmax(mx, fabs(x[(size_t)k * n + i]));
        }
        mean /= K;
        double err = fabs(acc_g[i] - mean) / (mx * K * 5.96e-8);
        if (err > worst) worst = err;
        if (err > 1.0 || acc_ng[i] != acc_g[i]) ok = 0;
    }
    CHECK(ok, "Welford mean of %d samples == arithmetic mean within K * 2^-24 * max|x| (worst %.3f of that bound)", K,
          worst);
    free(x); free(acc_g); free(acc_ng); free(noise);
}

// library update loop == the §2.9 lines transcribed here, bitwise, over random states and both groups
static void test_update_formula(void) {
    const size_t n = 3000;
    float* b = (float*)mallocCheck(10 * n * sizeof(float));
    float *m = b, *g = b + n, *h = b + 2 * n, *ag = b + 3 * n, *an = b + 4 * n;
    float *m2 = b + 5 * n, *g2 = b + 6 * n, *h2 = b + 7 * n;
    for (size_t i = 0; i < n; i++) {
        m[i] = rnd_normal() * 0.05f;
        g[i] = rnd_normal() * 0.01f;
        h[i] = rnd_uniform(1e-4f, 2.0f);
        ag[i] = rnd_normal() * 0.1f;
        an[i] = rnd_normal() * 1e-4f;
    }
    memcpy(m2, m, 3 * n * sizeof(float));
    OptimizerConfig oc = ivon_cfg(1e8);
    int ok = 1;
    for (int t = 1; t <= 5 && ok; t++) {
        IvonScalars s = ivon_scalars(&oc, 300.0 / t, t % 2 ? 1e-6 : 0.0, t);
        ivon_update(m, g, h, ag, an, n, &s);
        for (size_t i = 0; i < n; i++) ref_newton(&m2[i], &g2[i], &h2[i], ag[i], an[i], &s);
        ok = same_bits(m, m2, n, NULL) && same_bits(g, g2, n, NULL) && same_bits(h, h2, n, NULL);
    }
    CHECK(ok, "ivon_update == the §2.9 lines (one rounding each, no FMA) bitwise, 5 steps");
    // clipping: |dm| <= lr_eff * r and the statistics
    for (size_t i = 0; i < n; i++) ag[i] = rnd_normal() * 10.0f;
    IvonScalars s = ivon_scalars(&oc, 300.0, 1e-6, 7);
    memcpy(m2, m, n * sizeof(float));
    IvonUpdateStats st = ivon_update(m, g, h, ag, an, n, &s);
    double maxdm = 0.0, sumdm = 0.0;
    for (size_t i = 0; i < n; i++) {
        double dm = fabs((double)m[i] - (double)m2[i]);
        maxdm = fmax(maxdm, dm);
        sumdm += fabsf(m[i] - m2[i]);
    }
    CHECK(maxdm <= (double)s.lr_eff * s.r * (1 + 1e-6) + 0.1 * 1.2e-7 && st.clipped > n / 2 && st.n == n &&
          fabs(st.sum_abs_dm - sumdm) <= 1e-9 * sumdm,
          "clipped update: max|dm| %.7g <= lr_eff r = %.7g + 1 ulp of max|m|; %zu of %zu clipped; sum|dm| reported", maxdm,
          (double)s.lr_eff * s.r, st.clipped, n);
    free(b);
}

// §2.8: beta2 = 1, eps = 0, beta1 = 0, debias off, r = inf, rescale on: m <- m - lr (acc_g + delta m)
static void test_sgd_reduction_elem(void) {
    OptimizerConfig oc = ivon_cfg(1e6);
    oc.beta2 = 1.0;
    oc.beta1 = 0.0;
    oc.debias = 0;
    oc.clip_radius = 0.0;
    const size_t n = 4000;
    float* b = (float*)mallocCheck(5 * n * sizeof(float));
    float *m = b, *g = b + n, *h = b + 2 * n, *ag = b + 3 * n, *an = b + 4 * n;
    double worst = 0.0;
    for (int grp = 0; grp < 2; grp++) {
        double delta = grp ? 1e-2 : 0.0;
        float h0 = (float)oc.hess_init;
        for (size_t i = 0; i < n; i++) {
            m[i] = rnd_normal();
            g[i] = 0.0f;
            h[i] = h0;
            ag[i] = rnd_normal() * 0.1f;
            an[i] = 0.0f;  // eps = 0
        }
        double lr = 0.05;
        IvonScalars s = ivon_scalars(&oc, lr, delta, 1);
        double* mref = (double*)mallocCheck(2 * n * sizeof(double));
        double* scale = mref + n;
        for (size_t i = 0; i < n; i++) {
            double step = lr * ((double)ag[i] + delta * (double)m[i]);
            mref[i] = (double)m[i] - step;
            scale[i] = fmax(fabs((double)m[i]), fabs(step));
        }
        ivon_update(m, g, h, ag, an, n, &s);
        for (size_t i = 0; i < n; i++) {
            worst = fmax(worst, ulps_of(m[i], mref[i], scale[i]));
            if (h[i] != h0) worst = 1e9;
        }
        free(mref);
    }
    CHECK(worst <= 4.0, "§2.8 element level: IVON(beta2=1, eps=0, beta1=0, debias off, r=inf) == SGD+L2 "
          "m - lr (g + delta m): |diff to the exact (double) result| <= 4 ulp of max(|m|, |step|) (worst %.2f; the "
          "rescaled lr_eff / (h0f + wdf) differs from lr by rounding), h stays h0", worst);
    free(b);
}

// §6.6 b at the element level: m = m_out, h = h_out, g_out = g_in, gbar_out = g_out, hbar_out = f_out => x = acc_g,
// f = f_in, P = 0 exactly
static void test_cancellation_elem(void) {
    int ok = 1;
    for (int i = 0; i < 100000; i++) {
        float m = rnd_normal(), h = rnd_uniform(1e-5f, 3.0f), ag = rnd_normal(), an = rnd_normal() * 1e-3f;
        float essf = 1e7f, wdf = i % 2 ? 1e-6f : 0.0f, gamma = rnd_uniform(0.0f, 1.0f);
        float hbar = (an * (h + wdf)) * essf;
        float x, f, p;
        poco_vr_elem(ag, an, h, ag, an, h, ag, hbar, m, m, gamma, essf, wdf, &x, &f, &p);
        float f_in = (an * (h + wdf)) * essf;
        if (x != ag || f != f_in || p != 0.0f) ok = 0;
    }
    CHECK(ok, "§6.6b element level: anchor = current posterior, same batch and noise => g_vr = g_in, h_vr = h_in, "
          "P = 0 exactly (1e5 random cases)");
}

// §6.6 c at the element level: noise off, beta2 = 1, beta1 = 0, r = inf, prox off, rescale on =>
// m <- m - lr (g_in - gamma (g_out - gbar_out) + delta m)
static void test_svrg_reduction_elem(void) {
    OptimizerConfig oc;
    optimizer_config_defaults(&oc, OPT_POCO);
    oc.ess = 1e6;
    oc.beta2 = 1.0;
    oc.poco_momentum = 0;
    oc.clip_radius = 0.0;
    oc.poco_prox = 0;
    oc.poco_start = 0;
    const size_t n = 4000;
    float* b = (float*)mallocCheck(12 * n * sizeof(float));
    float *m = b, *g = b + n, *h = b + 2 * n, *ag = b + 3 * n, *an = b + 4 * n, *ago = b + 5 * n, *ano = b + 6 * n;
    float *mo = b + 7 * n, *ho = b + 8 * n, *gbar = b + 9 * n, *hbar = b + 10 * n;
    double* mref = (double*)mallocCheck(2 * n * sizeof(double));
    double* scale = mref + n;
    double worst = 0.0;
    float gamma = 0.7f;
    double delta = 1e-3, lr = 0.02;
    float h0 = (float)oc.hess_init;
    for (size_t i = 0; i < n; i++) {
        m[i] = rnd_normal();
        g[i] = 0.0f;
        h[i] = h0;
        ag[i] = rnd_normal();
        ago[i] = rnd_normal();
        gbar[i] = rnd_normal();
        an[i] = ano[i] = 0.0f;
        mo[i] = rnd_normal();
        ho[i] = h0;
        hbar[i] = h0;
        double vr = (double)ag[i] - (double)gamma * ((double)ago[i] - (double)gbar[i]);
        mref[i] = (double)m[i] - lr * (vr + delta * (double)m[i]);
        scale[i] = fmax(fabs((double)m[i]), lr * fmax(fabs((double)ag[i]), gamma * fmax(fabs((double)ago[i]), fabs((double)gbar[i]))));
    }
    IvonScalars s = ivon_scalars(&oc, lr, delta, 1);
    PocoSlice ps = {ago, ano, mo, ho, gbar, hbar, gamma, IVON_PROX_NONE};
    poco_update(m, g, h, ag, an, &ps, n, &s);
    int hok = 1;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, ulps_of(m[i], mref[i], scale[i]));
        if (h[i] != h0) hok = 0;
    }
    CHECK(worst <= 8.0 && hok, "§6.6c element level: PoCo(eps=0, beta2=1, beta1=0, r=inf, prox off) == alpha-SVRG+L2 "
          "m - lr (g_in - gamma (g_out - gbar) + delta m): |diff to the double result| <= 8 ulp of the largest term "
          "(worst %.2f)", worst);
    free(mref);
    free(b);
}

// The last accumulation folded into the update (IvonLastAcc) == ivon_accumulate / ivon_accumulate_noise, then the
// update, bitwise (m, momentum, h, theta and the statistics), IVON and PoCo, k = 1 and 3, the noise stored by the
// sample or regenerated, eps = 0; a slice at an odd flat index over several blocks (ivon_eps_range's partial blocks).
static void test_last_acc_fold(void) {
    const size_t n = 3 * OPT_BLOCK + 777, start = 4099;
    float* b = (float*)mallocCheck(22 * n * sizeof(float));
    float* a[22];
    for (int j = 0; j < 22; j++) a[j] = b + (size_t)j * n;
    // a[0..3] m, g, h, theta (separate); a[4..7] the same (folded); a[8] grad; a[9] noise; a[10..13] acc_g, acc_ng,
    // acc_g_out, acc_ng_out (separate), a[14..15] acc_g_out, acc_ng_out before the last sample; a[16..21] PoCo state
    float *grad = a[8], *noise = a[9];
    float *mo = a[16], *ho = a[17], *gbar = a[18], *hbar = a[19], *ag_in = a[20], *an_in = a[21];
    OptimizerConfig oc = ivon_cfg(1e6);
    int ok = 1, cases = 0;
    for (int poco = 0; poco <= 1; poco++)
        for (int k = 1; k <= 3; k += 2)
            for (int stored = 0; stored <= 1; stored++)
                for (int off = 0; off <= 1; off++) {
                    for (size_t i = 0; i < n; i++) {
                        a[0][i] = rnd_normal() * 0.05f;
                        a[1][i] = rnd_normal() * 0.01f;
                        a[2][i] = rnd_uniform(1e-4f, 2.0f);
                        grad[i] = rnd_normal() * 0.1f;
                        a[14][i] = rnd_normal() * 0.1f;  // running means of samples 1 .. k - 1
                        a[15][i] = rnd_normal() * 1e-4f;
                        mo[i] = rnd_normal() * 0.05f;
                        ho[i] = rnd_uniform(1e-4f, 2.0f);
                        gbar[i] = rnd_normal() * 0.1f;
                        hbar[i] = rnd_uniform(1e-4f, 2.0f);
                        ag_in[i] = rnd_normal() * 0.1f;
                        an_in[i] = rnd_normal() * 1e-4f;
                    }
                    memcpy(a[4], a[0], 3 * n * sizeof(float));
                    IvonNoiseKey key = ivon_noise_key(&oc, 3 + k, 1, poco ? NOISE_STREAM_OUTER : NOISE_STREAM_SAMPLE);
                    key.off = off;
                    float essf = (float)oc.ess, wdf = 1e-3f, clip = 0.37f;
                    const float* hs = poco ? ho : a[2];  // the h of the sample
                    ivon_sample(a[3], noise, poco ? mo : a[0], hs, n, start, essf, wdf, &key);
                    float *acc_g = poco ? a[12] : a[10], *acc_ng = poco ? a[13] : a[11];
                    memcpy(acc_g, a[14], n * sizeof(float));
                    memcpy(acc_ng, a[15], n * sizeof(float));
                    if (stored) ivon_accumulate_noise(acc_g, acc_ng, grad, clip, noise, n, k);
                    else ivon_accumulate(acc_g, acc_ng, grad, clip, hs, n, start, essf, wdf, &key, k);
                    IvonScalars s = ivon_scalars(&oc, 300.0, wdf, 2);
                    IvonLastAcc la = {grad, stored ? noise : NULL, &key, start, clip, k};
                    IvonUpdateStats s1, s2;
                    if (poco) {
                        PocoSlice ps = {acc_g, acc_ng, mo, ho, gbar, hbar, 0.6f, IVON_PROX_NEXT_TO_DECAY};
                        s1 = poco_update_to(a[3], a[0], a[1], a[2], ag_in, an_in, &ps, n, &s);
                        PocoSlice pf = {a[14], a[15], mo, ho, gbar, hbar, 0.6f, IVON_PROX_NEXT_TO_DECAY};
                        s2 = poco_update_acc_to(a[7], a[4], a[5], a[6], ag_in, an_in, &pf, &la, n, &s);
                    } else {
                        s1 = ivon_update_to(a[3], a[0], a[1], a[2], acc_g, acc_ng, n, &s);
                        memcpy(a[12], a[14], 2 * n * sizeof(float));  // acc_g, acc_ng before the last sample
                        s2 = ivon_update_acc_to(a[7], a[4], a[5], a[6], a[12], a[13], &la, n, &s);
                    }
                    for (int j = 0; j < 4; j++) ok = ok && same_bits(a[j], a[4 + j], n, NULL);
                    ok = ok && s1.clipped == s2.clipped && s1.sum_abs_dm == s2.sum_abs_dm && s1.n == s2.n;
                    cases++;
                }
    CHECK(ok, "update with the last accumulation folded in == accumulate then update, bitwise (m, momentum, h, theta, "
          "statistics), %d cases: IVON/PoCo, k = 1/3, noise stored/regenerated, eps = 0", cases);
    free(b);
}

// Price estimator on l(theta) = a/2 (theta - b)^2: mean of f = (n g) (h + delta) lambda over draws is a
static void test_price_unbiased(void) {
    const size_t N = (size_t)1 << 18;
    float* b = (float*)mallocCheck(7 * N * sizeof(float));
    float *m = b, *h = b + N, *theta = b + 2 * N, *noise = b + 3 * N, *grad = b + 4 * N, *ag = b + 5 * N, *an = b + 6 * N;
    const float a = 2.5f, bb = 0.3f, mean0 = 0.31f, essf = 1e4f, wdf = 0.0f;
    for (size_t i = 0; i < N; i++) {
        m[i] = mean0;
        h[i] = 1.0f;  // sigma = 0.01
    }
    IvonNoiseKey key = {2024, 0, 5, 0, NOISE_STREAM_SAMPLE, 0};
    ivon_sample(theta, noise, m, h, N, 0, essf, wdf, &key);
    for (size_t i = 0; i < N; i++) grad[i] = a * (theta[i] - bb);
    ivon_accumulate_noise(ag, an, grad, 1.0f, noise, N, 1);
    ivon_price_hessian(an, h, N, essf, wdf);
    double s1 = 0.0, s2 = 0.0, e1 = 0.0, e2 = 0.0;
    for (size_t i = 0; i < N; i++) {
        s1 += an[i];
        s2 += (double)an[i] * an[i];
        double e = (double)noise[i] / 0.01;
        e1 += e;
        e2 += e * e;
    }
    double mean = s1 / N, var = s2 / N - mean * mean, se = sqrt(var / N);
    CHECK(fabs(mean - a) <= 4.0 * se, "Price estimator unbiased: mean f = %.5f, a = %.2f, |diff| %.2e <= 4 SE = %.2e "
          "(N = %zu draws; a false failure has probability 6e-5)", mean, (double)a, fabs(mean - a), 4 * se, N);
    double emean = e1 / N, evar = e2 / N - emean * emean;
    CHECK(fabs(emean) < 4.0 / sqrt((double)N) && fabs(evar - 1.0) < 4.0 * sqrt(2.0 / N),
          "noise of the sampler: mean %.2e, variance %.5f (N(0,1) within 4 SE)", emean, evar);
    free(b);
}

// h + delta > 0 and (h' + delta) >= 0.5 (h + delta) for adversarial f: huge positive/negative, random, and the
// exact minimizer f = h - (h + delta) / (1 - beta2) of the new precision
static void test_positivity(void) {
    const double betas[4] = {0.99999, 0.999, 0.9, 0.5};
    const double deltas[3] = {0.0, 1e-6, 1e-2};
    double min_ratio = 1e30;
    int ok = 1;
    long cases = 0;
    for (int bi = 0; bi < 4; bi++) {
        for (int di = 0; di < 3; di++) {
            OptimizerConfig oc = ivon_cfg(1e10);
            oc.beta2 = betas[bi];
            IvonScalars s = ivon_scalars(&oc, 300.0, deltas[di], 1);
            for (int i = 0; i < 20000; i++) {
                float h = rnd_uniform(1e-6f, 1.0f);
                if (i % 5 == 0) h = (float)(deltas[di] * 0.5);  // h < delta allowed when delta > 0
                if (!(h + s.wdf > 0.0f)) h = 1e-6f;
                float hw = h + s.wdf;
                float f;
                switch (i % 6) {
                    case 0: f = rnd_uniform(1e10f, 1e15f); break;
                    case 1: f = -rnd_uniform(1e10f, 1e15f); break;
                    case 2: f = rnd_normal() * 1e6f; break;
                    case 3: f = (float)((double)h - (double)hw / (1.0 - betas[bi])); break;  // S' = S / 2
                    case 4: f = (float)((double)h - (double)hw / (1.0 - betas[bi])) * rnd_uniform(0.9f, 1.1f); break;
                    default: f = rnd_normal() * hw; break;
                }
                float m = rnd_normal(), g = rnd_normal(), hh = h;
                int c, bad;
                ivon_newton_elem(&m, &g, &hh, 0.1f, f, 0.0f, IVON_PROX_NONE, s, &c, &bad);
                float hw_new = hh + s.wdf;
                double ratio = (double)hw_new / (double)hw;
                if (ratio < min_ratio) min_ratio = ratio;
                if (!(hw_new > 0.0f) || !isfinite(hw_new) || ratio < 0.5 * (1.0 - 1e-5)) ok = 0;
                cases++;
            }
        }
    }
    CHECK(ok, "positivity: h' + delta > 0 and (h' + delta) >= 0.5 (h + delta) (1 - 1e-5) for %ld adversarial cases "
          "(|f| up to 1e15, beta2 0.5..0.99999, delta 0..1e-2); min ratio %.7f", cases, min_ratio);
}

// ----------------------------------------------------------------------------------------------
// whole steps on a tiny model

#define TB 2
#define TT 4
static GPT2Config tiny_config(void) {
    GPT2Config c = {8, 64, 64, 1, 2, 16};  // maxT, V, Vp, L, NH, C
    return c;
}

// synthetic batches: batch id -> tokens from splitmix; ids from a list (or the call counter when list == NULL)
typedef struct {
    int calls;
    const int* ids;     // batch id of each call, NULL = id = calls
    int n_ids;
    int tokens[TB * TT + 1];
} SynthBatches;

static void synth_next(void* ctx, const int** inputs, const int** targets) {
    SynthBatches* sb = (SynthBatches*)ctx;
    int id = sb->calls;
    if (sb->ids != NULL) {
        if (sb->calls >= sb->n_ids) fatalf("synthetic batches: call %d beyond the %d ids", sb->calls, sb->n_ids);
        id = sb->ids[sb->calls];
    }
    sb->calls++;
    uint64_t st = 1000003ull * (uint64_t)(id + 1);
    for (int i = 0; i < TB * TT + 1; i++) sb->tokens[i] = (int)(model_init_splitmix64(&st) % 64);
    *inputs = sb->tokens;
    *targets = sb->tokens + 1;
}

static void tiny_model(GPT2* model, uint64_t seed) {
    gpt2_build_random(model, tiny_config(), seed);
    gpt2_allocate(model, TB, TT);
}

static float sched_lr(int step) { return 0.6f + 0.1f * (float)(step % 3); }

// runs `steps` optimizer steps; returns the sum of the reported losses
static double run_steps(GPT2* model, const OptimizerConfig* oc, int steps, int K, SynthBatches* sb, float lr_scale) {
    double loss = 0.0;
    for (int s = 0; s < steps; s++) {
        StepStats st;
        gpt2_optimizer_step(model, oc, s, sched_lr(s) * lr_scale, K, synth_next, sb, NULL, &st);
        loss += st.loss;
    }
    return loss;
}

// PARAM_TABLE decay flag of flat parameter index idx
static int decay_of(const GPT2* model, size_t idx) {
    size_t off = 0;
    for (int t = 0; t < NUM_PARAMETER_TENSORS; t++) {
        if (idx < off + model->param_sizes[t]) return PARAM_TABLE[t].decay;
        off += model->param_sizes[t];
    }
    return 0;
}

// delta of flat parameter index idx, as double
static double delta_of(const GPT2* model, const OptimizerConfig* oc, size_t idx) {
    return ivon_group_delta(oc, decay_of(model, idx));
}

// IVON through gpt2_optimizer_step == an independent per-element implementation of §2.4 (own sampling loop,
// clip, Welford, §2.9 update) on a second model instance, bit for bit after 4 steps of K = 3
static void test_ivon_step_reference(void) {
    OptimizerConfig oc = ivon_cfg(1e5);
    oc.prior_1d = 1e-4;  // both groups with delta > 0 and different
    oc.grad_clip = 0.5;  // clipping active for some micro-batches
    const int K = 3, steps = 4;
    GPT2 a, r;
    tiny_model(&a, 5);
    tiny_model(&r, 5);
    gpt2_optimizer_init(&a, &oc);
    SynthBatches sa = {0, NULL, 0, {0}}, sr = {0, NULL, 0, {0}};
    size_t np = a.num_parameters;
    float* st = (float*)mallocCheck(6 * np * sizeof(float));
    float *m = st, *g = st + np, *h = st + 2 * np, *ag = st + 3 * np, *an = st + 4 * np, *nz = st + 5 * np;
    memcpy(m, r.params_memory, np * sizeof(float));
    for (size_t i = 0; i < np; i++) { g[i] = 0.0f; h[i] = (float)oc.hess_init; }
    float essf = (float)oc.ess;
    int clipped_any = 0;
    double loss_a = 0.0, loss_r = 0.0;
    for (int s = 0; s < steps; s++) {
        StepStats sts;
        float lr = sched_lr(s) * 100.0f;
        gpt2_optimizer_step(&a, &oc, s, lr, K, synth_next, &sa, NULL, &sts);
        loss_a += sts.loss;
        for (int j = 0; j < K; j++) {
            const int *in, *tg;
            synth_next(&sr, &in, &tg);
            for (size_t i = 0; i < np; i++) {
                float e = noise_normal(oc.seed, 0, (uint32_t)s, (uint32_t)j, NOISE_STREAM_SAMPLE, i);
                nz[i] = e / sqrtf(essf * (h[i] + (float)delta_of(&r, &oc, i)));
                r.params_memory[i] = m[i] + nz[i];
            }
            gpt2_zero_grad(&r);
            gpt2_forward(&r, in, tg, TB, TT);
            gpt2_backward(&r, 1.0f);
            loss_r += r.mean_loss / K;
            float norm = gpt2_grad_norm(&r);
            float c = fminf(1.0f, (float)oc.grad_clip / (norm + 1e-6f));
            if (c < 1.0f) clipped_any = 1;
            for (size_t i = 0; i < np; i++) {
                float x = r.grads_memory[i] * c, y = nz[i] * x;
                if (j == 0) { ag[i] = x; an[i] = y; }
                else { ag[i] = ag[i] + (x - ag[i]) / (float)(j + 1); an[i] = an[i] + (y - an[i]) / (float)(j + 1); }
            }
        }
        for (size_t i = 0; i < np; i++) {
            IvonScalars sc = ivon_scalars(&oc, lr, delta_of(&r, &oc, i), s + 1);
            ref_newton(&m[i], &g[i], &h[i], ag[i], an[i], &sc);
        }
    }
    size_t d = 0;
    int ok_m = same_bits(a.mean, m, np, &d), ok_g = same_bits(a.momentum, g, np, NULL), ok_h = same_bits(a.hess, h, np, NULL);
    int ok_p = same_bits(a.params_memory, a.mean, np, NULL);
    CHECK(ok_m && ok_g && ok_h && ok_p && clipped_any,
          "IVON step (K=3, 4 steps, per-micro-batch clip active) == independent reference of §2.4/§2.9 bitwise: "
          "m %d momentum %d h %d; params = m after the step %d", ok_m, ok_g, ok_h, ok_p);
    CHECK((float)(loss_a / steps) == (float)(loss_r / steps) || fabs(loss_a - loss_r) < 1e-5 * fabs(loss_r),
          "reported loss = mean over the K micro-batches at the samples (%.6f vs %.6f)", loss_a / steps, loss_r / steps);
    int moved = 0;
    for (size_t i = 0; i < np; i++) if (h[i] != (float)oc.hess_init) { moved = 1; break; }
    CHECK(moved, "h moved from h0 (the Hessian update is exercised)");
    free(st);
    gpt2_free(&a);
    gpt2_free(&r);
}

// §2.8 through the step: noise off, beta2 = 1, beta1 = 0, debias off, r = inf => m - lr (mean_j clip(g_j) + delta m)
static void test_sgd_reduction_step(void) {
    OptimizerConfig oc = ivon_cfg(1e5);
    oc.noise_off = 1;
    oc.beta2 = 1.0;
    oc.beta1 = 0.0;
    oc.debias = 0;
    oc.clip_radius = 0.0;
    oc.prior_2d = 1e-2;
    const int K = 2, steps = 3;
    GPT2 a, r;
    tiny_model(&a, 9);
    tiny_model(&r, 9);
    gpt2_optimizer_init(&a, &oc);
    SynthBatches sa = {0, NULL, 0, {0}}, sr = {0, NULL, 0, {0}};
    size_t np = a.num_parameters;
    float* acc = (float*)mallocCheck(np * sizeof(float));
    double worst = 0.0;
    for (int s = 0; s < steps; s++) {
        StepStats st;
        float lr = 0.3f;
        gpt2_optimizer_step(&a, &oc, s, lr, K, synth_next, &sa, NULL, &st);
        for (int j = 0; j < K; j++) {
            const int *in, *tg;
            synth_next(&sr, &in, &tg);
            float c = optim_clip_scale(oc.grad_clip, gpt2_micro_grad(&r, in, tg));
            for (size_t i = 0; i < np; i++) {
                float x = r.grads_memory[i] * c;
                acc[i] = j == 0 ? x : acc[i] + (x - acc[i]) / (float)(j + 1);
            }
        }
        for (size_t i = 0; i < np; i++) {
            double d = delta_of(&r, &oc, i), mo = r.params_memory[i];
            double step = (double)lr * ((double)acc[i] + d * mo);
            worst = fmax(worst, ulps_of(a.mean[i], mo - step, fmax(fabs(mo), fabs(step))));
            r.params_memory[i] = a.mean[i];  // compare one step at a time
        }
    }
    CHECK(worst <= 4.0, "§2.8 through gpt2_optimizer_step (K=2, 3 steps): IVON reduces to SGD+L2 with per-micro-batch "
          "clip: |diff to the double step| <= 4 ulp of max(|m|, |step|) (worst %.2f)", worst);
    free(acc);
    gpt2_free(&a);
    gpt2_free(&r);
}

static OptimizerConfig poco_cfg(void) {
    OptimizerConfig oc;
    optimizer_config_defaults(&oc, OPT_POCO);
    oc.ess = 1e5;
    oc.seed = 321;
    oc.prior_1d = 1e-5;
    oc.poco_start = 2;
    oc.poco_period = 3;
    oc.poco_mega_batches = 3;
    oc.max_steps = 10;
    return oc;
}

// batch ids that IVON consumes when PoCo's refreshes (kmega batches before refresh steps) are left out
static int ivon_ids(const OptimizerConfig* poco, int steps, int K, int* ids) {
    int id = 0, n = 0;
    for (int s = 0; s < steps; s++) {
        if (poco_refresh_at(poco, s)) id += poco->poco_mega_batches;
        for (int j = 0; j < K; j++) ids[n++] = id++;
    }
    return n;
}

// §6.6a: gamma = 0 => the same m, momentum and h as IVON, bit for bit, through refreshes (prox on, PoCoMo)
static void test_poco_gamma0(void) {
    const int K = 2, steps = 8;
    for (int variant = 0; variant < 2; variant++) {
        OptimizerConfig pc = poco_cfg();
        pc.poco_gamma = 0.0;
        if (variant == 1) {
            pc.poco_shared_noise = 0;
            pc.poco_prox_in_momentum = 1;
        }
        OptimizerConfig ic = pc;
        ic.kind = OPT_IVON;
        GPT2 a, b;
        tiny_model(&a, 3);
        tiny_model(&b, 3);
        gpt2_optimizer_init(&a, &pc);
        gpt2_optimizer_init(&b, &ic);
        int ids[64];
        int n = ivon_ids(&pc, steps, K, ids);
        SynthBatches sa = {0, NULL, 0, {0}}, sb = {0, ids, n, {0}};
        int refreshes = 0;
        for (int s = 0; s < steps; s++) {
            StepStats st;
            gpt2_optimizer_step(&a, &pc, s, sched_lr(s) * 100.0f, K, synth_next, &sa, NULL, &st);
            refreshes += st.anchor_refreshed;
            gpt2_optimizer_step(&b, &ic, s, sched_lr(s) * 100.0f, K, synth_next, &sb, NULL, &st);
        }
        size_t np = a.num_parameters;
        int ok = same_bits(a.mean, b.mean, np, NULL) && same_bits(a.momentum, b.momentum, np, NULL) &&
                 same_bits(a.hess, b.hess, np, NULL);
        CHECK(ok && refreshes == 2 && a.mega_tokens == 2LL * 3 * TB * TT,
              "§6.6a PoCo gamma = 0 == IVON bit for bit (m, momentum, h) after %d steps with %d anchor refreshes "
              "(%s)", steps, refreshes, variant ? "independent outer noise, prox in momentum" : "shared noise, prox");
        gpt2_free(&a);
        gpt2_free(&b);
    }
}

// §6.6b through the step: noise off (theta_in = m, theta_out = m_out), refresh before every step with the
// mega-batch = the step's own K batches => the corrections cancel and PoCo(gamma = 0.5, prox on) == IVON bitwise
static void test_poco_cancellation_step(void) {
    const int K = 2, steps = 4;
    OptimizerConfig pc = poco_cfg();
    pc.noise_off = 1;
    pc.poco_start = 0;
    pc.poco_period = 1;
    pc.poco_mega_batches = K;
    pc.poco_gamma = 0.5;
    OptimizerConfig ic = pc;
    ic.kind = OPT_IVON;
    int pids[64], iids[64], np_ = 0, ni = 0;
    for (int s = 0; s < steps; s++) {
        for (int j = 0; j < K; j++) pids[np_++] = s * K + j;  // mega-batch
        for (int j = 0; j < K; j++) { pids[np_++] = s * K + j; iids[ni++] = s * K + j; }
    }
    GPT2 a, b;
    tiny_model(&a, 4);
    tiny_model(&b, 4);
    gpt2_optimizer_init(&a, &pc);
    gpt2_optimizer_init(&b, &ic);
    SynthBatches sa = {0, pids, np_, {0}}, sb = {0, iids, ni, {0}};
    run_steps(&a, &pc, steps, K, &sa, 50.0f);
    run_steps(&b, &ic, steps, K, &sb, 50.0f);
    size_t n = a.num_parameters;
    int ok = same_bits(a.mean, b.mean, n, NULL) && same_bits(a.momentum, b.momentum, n, NULL) &&
             same_bits(a.hess, b.hess, n, NULL);
    CHECK(ok, "§6.6b through the step: anchor = current m, mega-batch = inner batches, same (zero) noise => "
          "PoCo(gamma 0.5, prox on) == IVON bitwise over %d steps", steps);
    gpt2_free(&a);
    gpt2_free(&b);
}

// §6.6c through the step: noise off, beta2 = 1, beta1 = 0 (IVON-PoCo), r = inf, prox off, rescale on =>
// m <- m - lr (g_in - gamma (g_out - gbar_out) + delta m), g at m, m_out (clipped per micro-batch), gbar over the
// mega-batch at m_out. The reference recomputes every gradient on a second model; one step at a time.
static void test_svrg_step(void) {
    const int K = 2, steps = 5;
    OptimizerConfig pc = poco_cfg();
    pc.noise_off = 1;
    pc.beta2 = 1.0;
    pc.poco_momentum = 0;
    pc.clip_radius = 0.0;
    pc.poco_prox = 0;
    pc.poco_start = 1;
    pc.poco_period = 2;
    pc.poco_mega_batches = 3;
    pc.poco_gamma = 0.8;
    pc.prior_2d = 1e-2;
    GPT2 a, r;
    tiny_model(&a, 8);
    tiny_model(&r, 8);
    gpt2_optimizer_init(&a, &pc);
    size_t np = a.num_parameters;
    float* buf = (float*)mallocCheck(5 * np * sizeof(float));
    float *m = buf, *mo = buf + np, *gbar = buf + 2 * np, *gin = buf + 3 * np, *gout = buf + 4 * np;
    memcpy(m, r.params_memory, np * sizeof(float));
    SynthBatches sa = {0, NULL, 0, {0}}, sr = {0, NULL, 0, {0}};
    double worst = 0.0;
    for (int s = 0; s < steps; s++) {
        StepStats st;
        float lr = 0.2f;
        gpt2_optimizer_step(&a, &pc, s, lr, K, synth_next, &sa, NULL, &st);
        int active = s >= pc.poco_start;
        float gamma = active ? (float)pc.poco_gamma : 0.0f;
        if (poco_refresh_at(&pc, s)) {
            memcpy(mo, m, np * sizeof(float));
            memcpy(r.params_memory, mo, np * sizeof(float));
            for (int k = 0; k < pc.poco_mega_batches; k++) {
                const int *in, *tg;
                synth_next(&sr, &in, &tg);
                float c = optim_clip_scale(pc.grad_clip, gpt2_micro_grad(&r, in, tg));
                for (size_t i = 0; i < np; i++) {
                    float x = r.grads_memory[i] * c;
                    gbar[i] = k == 0 ? x : gbar[i] + (x - gbar[i]) / (float)(k + 1);
                }
            }
        }
        for (int j = 0; j < K; j++) {
            const int *in, *tg;
            synth_next(&sr, &in, &tg);
            memcpy(r.params_memory, m, np * sizeof(float));
            float c = optim_clip_scale(pc.grad_clip, gpt2_micro_grad(&r, in, tg));
            for (size_t i = 0; i < np; i++) {
                float x = r.grads_memory[i] * c;
                gin[i] = j == 0 ? x : gin[i] + (x - gin[i]) / (float)(j + 1);
            }
            if (!active) continue;
            memcpy(r.params_memory, mo, np * sizeof(float));
            c = optim_clip_scale(pc.grad_clip, gpt2_micro_grad(&r, in, tg));
            for (size_t i = 0; i < np; i++) {
                float x = r.grads_memory[i] * c;
                gout[i] = j == 0 ? x : gout[i] + (x - gout[i]) / (float)(j + 1);
            }
        }
        for (size_t i = 0; i < np; i++) {
            double d = delta_of(&r, &pc, i);
            double vr = active ? (double)gin[i] - (double)gamma * ((double)gout[i] - (double)gbar[i]) : (double)gin[i];
            double want = (double)m[i] - (double)lr * (vr + d * (double)m[i]);
            double sc = fmax(fabs((double)m[i]), (double)lr * fmax(fabs((double)gin[i]),
                             active ? (double)gamma * fmax(fabs((double)gout[i]), fabs((double)gbar[i])) : 0.0));
            worst = fmax(worst, ulps_of(a.mean[i], want, sc));
            m[i] = a.mean[i];  // one step at a time
        }
    }
    CHECK(worst <= 8.0, "§6.6c through gpt2_optimizer_step (%d steps, 2 refreshes, gamma 0.8): PoCo reduces to "
          "alpha-SVRG + L2: |diff to the double step| <= 8 ulp of the largest term (worst %.2f)", steps, worst);
    free(buf);
    gpt2_free(&a);
    gpt2_free(&r);
}

// PoCo with gamma > 0: runs, stays finite, differs from IVON, keeps h + delta > 0; the checkpoint buffer lists
static void test_poco_runs(void) {
    const int K = 2, steps = 8;
    for (int v = 0; v < 4; v++) {
        OptimizerConfig pc = poco_cfg();
        pc.poco_gamma = 0.5;
        if (v == 1) { pc.poco_clip_each = 0; pc.grad_clip = 0.3; }
        if (v == 2) { pc.poco_mega_noise = 0; pc.poco_gamma_schedule = POCO_GAMMA_LINEAR; }
        if (v == 3) { pc.poco_momentum = 0; pc.poco_prox = 0; pc.poco_shared_noise = 0; }
        GPT2 a;
        tiny_model(&a, 3);
        gpt2_optimizer_init(&a, &pc);
        SynthBatches sa = {0, NULL, 0, {0}};
        double loss = run_steps(&a, &pc, steps, K, &sa, 100.0f);
        size_t np = a.num_parameters;
        int finite = isfinite(loss), pos = 1;
        for (size_t i = 0; i < np; i++) {
            if (!isfinite(a.mean[i]) || !isfinite(a.hess[i])) finite = 0;
            if (!(a.hess[i] + (float)delta_of(&a, &pc, i) > 0.0f)) pos = 0;
        }
        float* bufs[6];
        int nb = gpt2_optimizer_state_buffers(&a, bufs);
        const char* what[4] = {"defaults", "-pce 0 (clip the difference)", "-pmn 0, linear gamma", "-pmo 0 -ppx 0 -psn 0"};
        CHECK(finite && pos && nb == 6 && bufs[2] == a.anchor_mean && a.anchor_step == 5 && sa.calls == 2 * 3 + steps * K,
              "PoCo %s: 8 steps finite, h + delta > 0, anchor at step %d, %d batches consumed, 6 state buffers", what[v],
              a.anchor_step, sa.calls);
        gpt2_free(&a);
    }
    // gamma schedule
    OptimizerConfig pc = poco_cfg();
    pc.poco_gamma_schedule = POCO_GAMMA_LINEAR;
    pc.poco_gamma = 0.6;
    pc.poco_start = 2;
    pc.max_steps = 12;  // last step 11
    CHECK(poco_gamma_at(&pc, 1) == 0.0f && poco_gamma_at(&pc, 2) == 0.6f && poco_gamma_at(&pc, 11) == 0.0f &&
          poco_gamma_at(&pc, 5) == (float)(0.6 * 6.0 / 9.0),
          "linear gamma: 0 before start, gamma0 at start, 0 at the last step, linear between");
    CHECK(poco_refresh_at(&pc, 2) && !poco_refresh_at(&pc, 3) && poco_refresh_at(&pc, 5) && !poco_refresh_at(&pc, 1),
          "anchor refresh at start + k period");
}

static int cmp_float(const void* a, const void* b) {
    float x = *(const float*)a, y = *(const float*)b;
    return (x > y) - (x < y);
}

// the quantile selection of the diagnostics == sorting, with duplicates and tiny arrays
static void test_select(void) {
    int ok = 1;
    float a[3000], b[3000], c[3000];
    for (int trial = 0; trial < 300 && ok; trial++) {
        size_t n = 1 + (size_t)(model_init_splitmix64(&g_rng) % 3000);
        for (size_t i = 0; i < n; i++) a[i] = trial % 3 == 0 ? (float)(model_init_splitmix64(&g_rng) % 5) : rnd_normal();
        memcpy(b, a, n * sizeof(float));
        qsort(b, n, sizeof(float), cmp_float);
        for (int q = 0; q < 4; q++) {
            size_t k = q == 3 ? n - 1 : (size_t)(model_init_splitmix64(&g_rng) % n);
            memcpy(c, a, n * sizeof(float));
            if (train_select_kth(c, n, k) != b[k]) ok = 0;
        }
    }
    CHECK(ok, "diagnostics quantile selection (quickselect, no allocation) == sort, 300 random arrays");
    // diagnostics on a tiny IVON model: h = h0 everywhere -> every quantile h0, sigma = 1/sqrt(ess (h0 + delta))
    OptimizerConfig oc = ivon_cfg(1e6);
    GPT2 m;
    tiny_model(&m, 1);
    gpt2_optimizer_init(&m, &oc);
    OptimizerDiagnostics d;
    gpt2_optimizer_diagnostics(&m, &oc, &d);
    float s2 = ivon_sigma((float)oc.hess_init, (float)oc.ess, (float)oc.prior_2d);
    float s1 = ivon_sigma((float)oc.hess_init, (float)oc.ess, (float)oc.prior_1d);
    CHECK(d.h_q[0] == (float)oc.hess_init && d.h_q[2] == (float)oc.hess_init && d.sigma_q[1] == s2 &&
          (d.sigma_q[2] == s1 || d.sigma_q[2] == s2), "diagnostics at init: h quantiles h0, sigma 1/sqrt(ess (h0 + delta))");
    gpt2_free(&m);
}

// ----------------------------------------------------------------------------------------------
// flags -> OptimizerConfig

static int resolve(const char* const* args, int n, OptimizerConfig* oc, float* lr, int* bma, char* err) {
    TrainConfig c;
    char* argv[64];
    if (n + 1 > (int)(sizeof(argv) / sizeof(argv[0]))) fatalf("resolve: %d flags do not fit argv", n);
    argv[0] = (char*)"train";
    for (int i = 0; i < n; i++) argv[i + 1] = (char*)args[i];
    cli_defaults(&c);
    if (cli_parse(&c, n + 1, argv, err, 256) != 0) return -2;
    return optimizer_config_from_train(oc, &c, 878249, 300, lr, bma, err, 256);
}

static void test_flags(void) {
    OptimizerConfig oc;
    float lr;
    int bma;
    char err[256];
    const char* a0[] = {"-opt", "adamw"};
    CHECK(resolve(a0, 2, &oc, &lr, &bma, err) == 0 && oc.kind == OPT_ADAMW && lr == 6e-4f && bma == 0 &&
          oc.grad_clip == 1.0, "adamw defaults: lr 6e-4, bma 0, clip 1");
    const char* a1[] = {"-opt", "ivon"};
    CHECK(resolve(a1, 2, &oc, &lr, &bma, err) == 0 && oc.kind == OPT_IVON && lr == 300.0f && bma == 4 &&
          oc.ess == 878249.0 && oc.hess_init == 1e-3 && oc.beta1 == 0.9 && oc.beta2 == 0.99999 &&
          oc.clip_radius == 1e-3 && oc.prior_2d == 1e-6 && oc.prior_1d == 0.0 && oc.debias && oc.rescale_lr,
          "ivon defaults: lr 300, bma 4, ess = train tokens, h0 1e-3, betas 0.9/0.99999 (exact doubles), r 1e-3, "
          "priors 1e-6/0");
    const char* a2[] = {"-opt", "poco"};
    CHECK(resolve(a2, 2, &oc, &lr, &bma, err) == 0 && oc.kind == OPT_POCO && oc.poco_start == 150 &&
          oc.poco_gamma == 0.5 && oc.poco_period == 32 && oc.poco_mega_batches == -1 && oc.poco_shared_noise &&
          oc.poco_prox && !oc.poco_prox_in_momentum && oc.poco_momentum && oc.poco_clip_each && oc.poco_mega_noise,
          "poco defaults: start = max_steps / 2, gamma 0.5, period 32, switches as §6.4");
    const char* a3[] = {"-opt", "poco", "-ess", "1e10", "-l", "150", "-pg", "0.25", "-pgs", "linear", "-pst", "7",
                        "-pp", "4", "-pmb", "9", "-psn", "0", "-ppx", "0", "-ppm", "1", "-pmo", "0", "-pce", "0",
                        "-pmn", "0", "-bma", "2", "-b2", "0.999", "-r", "0", "-pr1", "1e-4", "-debias", "0", "-rescale", "0"};
    CHECK(resolve(a3, (int)(sizeof(a3) / sizeof(a3[0])), &oc, &lr, &bma, err) == 0 && oc.ess == 1e10 && lr == 150.0f && oc.poco_gamma == 0.25 &&
          oc.poco_gamma_schedule == POCO_GAMMA_LINEAR && oc.poco_start == 7 && oc.poco_period == 4 &&
          oc.poco_mega_batches == 9 && !oc.poco_shared_noise && !oc.poco_prox && oc.poco_prox_in_momentum &&
          !oc.poco_momentum && !oc.poco_clip_each && !oc.poco_mega_noise && bma == 2 && oc.beta2 == 0.999 &&
          oc.clip_radius == 0.0 && oc.prior_1d == 1e-4 && !oc.debias && !oc.rescale_lr, "every poco flag lands: %s", err);
    struct { const char* args[4]; int n; const char* flag; } bad[] = {
        {{"-opt", "adamw", "-bma", "2"}, 4, "flag -bma:"},
        {{"-opt", "ivon", "-h0", "0"}, 4, "flag -h0:"},
        {{"-opt", "ivon", "-b1", "1"}, 4, "flag -b1:"},
        {{"-opt", "ivon", "-b2", "1.5"}, 4, "flag -b2:"},
        {{"-opt", "ivon", "-ess", "0"}, 4, "flag -ess:"},
        {{"-opt", "ivon", "-ess", "-3"}, 4, "flag -ess:"},
        {{"-opt", "ivon", "-l", "-0.5"}, 4, "flag -l:"},
        {{"-opt", "poco", "-pg", "1.5"}, 4, "flag -pg:"},
        {{"-opt", "poco", "-pmb", "0"}, 4, "flag -pmb:"},
        {{"-opt", "poco", "-pp", "0"}, 4, "flag -pp:"},
        {{"-opt", "poco", "-pgs", "cubic"}, 4, "flag -pgs:"},
        {{"-opt", "sgd"}, 2, "flag -opt:"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        int rc = resolve(bad[i].args, bad[i].n, &oc, &lr, &bma, err);
        CHECK(rc != 0 && strncmp(err, bad[i].flag, strlen(bad[i].flag)) == 0, "bad %s %s rejected: %s", bad[i].args[2] ?
              bad[i].args[2] : bad[i].args[0], bad[i].args[3] ? bad[i].args[3] : bad[i].args[1], err);
    }
}

// ECE (llmc/train_common.h): known bins, argmax tie rule, perfect calibration
static void test_ece(void) {
    EceBins e;
    ece_reset(&e);
    float a[4] = {0.9f, 0.05f, 0.03f, 0.02f};  // confidence 0.9, correct
    float b[4] = {0.1f, 0.6f, 0.2f, 0.1f};     // confidence 0.6, wrong (target 0)
    ece_add(&e, a, 4, 0);
    ece_add(&e, b, 4, 0);
    // bins: 0.9 -> |1 - 0.9| = 0.1, 0.6 -> |0 - 0.6| = 0.6; ECE = (0.1 + 0.6) / 2
    CHECK(fabs(ece_value(&e) - 0.35) < 1e-6, "ECE of two tokens %.6f (expected 0.35)", ece_value(&e));
    ece_reset(&e);
    float c[2] = {0.5f, 0.5f};
    for (int i = 0; i < 10; i++) ece_add(&e, c, 2, i % 2);  // confidence 0.5, argmax 0 (first), right half the time
    CHECK(fabs(ece_value(&e)) < 1e-9, "ECE of a calibrated coin is 0 (%.3g)", ece_value(&e));
    float one[3] = {0.0f, 1.0f, 0.0f};
    ece_reset(&e);
    ece_add(&e, one, 3, 1);
    CHECK(fabs(ece_value(&e)) < 1e-9 && e.n[ECE_BINS - 1] == 1.0, "confidence 1 goes to the last bin");
}

int main(void) {
    test_ece();
    test_scalars();
    test_sample_accumulate();
    test_welford();
    test_update_formula();
    test_last_acc_fold();
    test_sgd_reduction_elem();
    test_cancellation_elem();
    test_svrg_reduction_elem();
    test_price_unbiased();
    test_positivity();
    test_ivon_step_reference();
    test_sgd_reduction_step();
    test_poco_gamma0();
    test_poco_cancellation_step();
    test_svrg_step();
    test_poco_runs();
    test_select();
    test_flags();
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail == 0 ? 0 : 1;
}
