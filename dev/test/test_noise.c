// Tests of llmc/noise.h: Philox KAT, accuracy of the fp32 ln / sin / cos against libm double, moments and
// tails of eps, independence across streams / samples / steps / ranks / seeds, noise_fill vs noise_normal
// for every alignment, the AVX-512 path against the scalar reference, determinism across thread counts, the build
// known-answer check, timing.
// Build: gcc -O3 -march=native -fopenmp -std=gnu11 -ffp-contract=off -Wall -Wextra
//        -o dev/test/bin/test_noise dev/test/test_noise.c -lm
// Run:   dev/test/bin/test_noise            (last line "N passed, N failed"; exit 1 on any failure)
//        dev/test/bin/test_noise --dump F   (writes eps for a fixed list of keys and ranges, read by test_noise.py)
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "../../llmc/utils.h"
#include "../../llmc/noise.h"

static int g_pass = 0, g_fail = 0;

#define CHECK(cond, ...) do { if (cond) { g_pass++; } else { g_fail++; printf("FAIL [%s:%d] ", __FILE__, __LINE__); \
                              printf(__VA_ARGS__); printf("\n"); } } while (0)

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// ------------------------------------------------------------------------------------------------
// dump: fixed keys and index ranges for the Python bit-identity check
// file: int32 magic 20241201, int32 version 1, int32 count; per record: uint64 seed, uint32 rank, step, sample,
// stream, uint64 start, uint64 n, then float32 eps[n]

typedef struct {
    uint64_t seed;
    uint32_t rank, step, sample, stream;
    uint64_t start, n;
} DumpCase;

static const DumpCase dump_cases[] = {
    {0, 0, 0, 0, NOISE_STREAM_SAMPLE, 0, 1000},
    {42, 0, 1, 0, NOISE_STREAM_SAMPLE, 1, 4099},                        // unaligned start, partial tail
    {42, 0, 1, 0, NOISE_STREAM_ANCHOR, 3, 777},                         // all 4 streams
    {42, 0, 1, 0, NOISE_STREAM_OUTER, 2, 777},
    {42, 0, 1, 0, NOISE_STREAM_BMA, 5, 777},
    {42, 1, 1, 0, NOISE_STREAM_SAMPLE, 0, 64},                          // rank > 0
    {42, 7, 9, 3, NOISE_STREAM_SAMPLE, 6, 3},                           // inside one block
    {42, 0, 0, 0, NOISE_STREAM_SAMPLE, 1, 1},
    {(1ull << 32) + 5, 3, 1000, 7, NOISE_STREAM_OUTER, (1ull << 32) + 2, 513},  // seed and index > 2^32
    {0x9E3779B97F4A7C15ull, 123456, 77, 2, NOISE_STREAM_BMA, 123456789013ull, 1029},
    {0xffffffffffffffffull, 0xffffff, 0xffffffff, 0xffffffff, NOISE_STREAM_BMA, (1ull << 34) - 5, 10},  // quad wraps
    {5, 0x1000002, 3, 1, NOISE_STREAM_SAMPLE, 17, 40},                  // rank above 24 bits (masked)
    {1234, 0, 11, 4, NOISE_STREAM_SAMPLE, 12345, (1u << 20) + 3},        // many chunks, OpenMP path
    {7, 0, 1, 0, NOISE_STREAM_SAMPLE, 5, 7000000},                      // size of the d2 model
};
#define NUM_DUMP_CASES (int)(sizeof(dump_cases) / sizeof(dump_cases[0]))

static void write_dump(const char* path) {
    FILE* fp = fopenCheck(path, "wb");
    int32_t head[3] = {20241201, 1, NUM_DUMP_CASES};
    fwriteCheck(head, sizeof(int32_t), 3, fp, path);
    for (int c = 0; c < NUM_DUMP_CASES; c++) {
        const DumpCase* d = &dump_cases[c];
        float* eps = (float*)mallocCheck(d->n * sizeof(float) + 1);
        noise_fill(eps, d->n, d->start, d->seed, d->rank, d->step, d->sample, d->stream);
        fwriteCheck(&d->seed, sizeof(uint64_t), 1, fp, path);
        uint32_t w[4] = {d->rank, d->step, d->sample, d->stream};
        fwriteCheck(w, sizeof(uint32_t), 4, fp, path);
        fwriteCheck(&d->start, sizeof(uint64_t), 1, fp, path);
        fwriteCheck(&d->n, sizeof(uint64_t), 1, fp, path);
        fwriteCheck(eps, sizeof(float), d->n, fp, path);
        free(eps);
    }
    fcloseCheck(fp, path);
}

// ------------------------------------------------------------------------------------------------

static void test_philox_kat(void) {
    const uint32_t ctr[4] = {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344};
    const uint32_t key[2] = {0xa4093822, 0x299f31d0};
    const uint32_t want[4] = {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1};
    uint32_t out[4];
    philox4x32_10(ctr, key, out);
    CHECK(memcmp(out, want, sizeof(out)) == 0, "philox KAT: %08x %08x %08x %08x", out[0], out[1], out[2], out[3]);
    CHECK(noise_check_build() == 1, "noise_check_build: this build does not round the noise functions as specified");
}

// ln over every uniform the noise uses, (k + 0.5) 2^-23, and over a grid of all positive normal floats
static void test_logf_accuracy(void) {
    double max_rel = 0.0, max_ulp = 0.0;
    float worst = 0.0f;
    for (uint32_t k = 0; k < (1u << 23); k++) {
        float u = philox_uniform(k << 9);
        double want = log((double)u);
        float got = noise_logf(u);
        double rel = fabs((double)got - want) / fabs(want);
        double ulp = fabs((double)got - want) / ldexp(1.0, ilogb(want) - 23);
        if (rel > max_rel) { max_rel = rel; worst = u; }
        if (ulp > max_ulp) max_ulp = ulp;
    }
    printf("noise_logf on all 2^23 noise uniforms: max rel err %.3g (at u=%.9g), max %.3f ulp\n", max_rel,
           (double)worst, max_ulp);
    CHECK(max_rel < 2e-7, "noise_logf max rel err %.3g over the noise uniforms", max_rel);
    double max_abs_g = 0.0, max_rel_g = 0.0;
    for (uint32_t b = 0x00800000u; b < 0x7f800000u; b += 97) {
        float x = noise_u2f(b);
        double want = log((double)x);
        double err = fabs((double)noise_logf(x) - want);
        if (err > max_abs_g) max_abs_g = err;
        if (fabs(want) > 1e-3 && err / fabs(want) > max_rel_g) max_rel_g = err / fabs(want);
    }
    printf("noise_logf on positive normal floats (every 97th): max abs err %.3g, max rel err %.3g (|ln x| > 1e-3)\n",
           max_abs_g, max_rel_g);
    CHECK(max_abs_g < 2e-7 * 90.0 && max_rel_g < 2e-7, "noise_logf general: abs %.3g rel %.3g", max_abs_g, max_rel_g);
    CHECK(noise_logf(1.0f) == 0.0f, "noise_logf(1) = %g", (double)noise_logf(1.0f));
}

// sin / cos of 2 pi u over every uniform the noise uses and over [0, 1] on a fine grid
static void test_sincos_accuracy(void) {
    double max_s = 0.0, max_c = 0.0, max_pyth = 0.0;
    for (uint32_t k = 0; k < (1u << 23); k++) {
        float u = philox_uniform(k << 9);
        float s, c;
        noise_sincos2pi(u, &s, &c);
        double a = 2.0 * M_PI * (double)u;
        double es = fabs((double)s - sin(a)), ec = fabs((double)c - cos(a));
        if (es > max_s) max_s = es;
        if (ec > max_c) max_c = ec;
        double p = fabs((double)s * s + (double)c * c - 1.0);
        if (p > max_pyth) max_pyth = p;
    }
    printf("noise_sincos2pi on all 2^23 noise uniforms: max abs err sin %.3g cos %.3g, |s^2+c^2-1| <= %.3g\n", max_s,
           max_c, max_pyth);
    CHECK(max_s < 1.5e-7 && max_c < 1.5e-7, "sincos abs err sin %.3g cos %.3g", max_s, max_c);
    double max_g = 0.0;
    for (uint32_t k = 0; k <= (1u << 24); k += 3) {
        float u = (float)k * (1.0f / 16777216.0f);
        float s, c;
        noise_sincos2pi(u, &s, &c);
        double a = 2.0 * M_PI * (double)u;
        double e = fmax(fabs((double)s - sin(a)), fabs((double)c - cos(a)));
        if (e > max_g) max_g = e;
    }
    printf("noise_sincos2pi on k/2^24, k in [0, 2^24]: max abs err %.3g\n", max_g);
    CHECK(max_g < 1.5e-7, "sincos grid abs err %.3g", max_g);
    float s, c;
    noise_sincos2pi(0.0f, &s, &c);
    CHECK(s == 0.0f && c == 1.0f, "sincos2pi(0) = %g %g", (double)s, (double)c);
    noise_sincos2pi(0.25f, &s, &c);
    CHECK(s == 1.0f && c == 0.0f, "sincos2pi(1/4) = %g %g", (double)s, (double)c);
    noise_sincos2pi(0.5f, &s, &c);
    CHECK(s == 0.0f && c == -1.0f, "sincos2pi(1/2) = %g %g", (double)s, (double)c);
}

// eps against Box-Muller evaluated in double from the same Philox words
static void test_normal_accuracy(void) {
    double max_rel = 0.0, max_abs = 0.0;
    for (uint64_t q = 0; q < 1000000; q++) {
        uint32_t ctr[4] = {(uint32_t)q, 3, 1, (NOISE_STREAM_SAMPLE << 24) | 2u}, key[2] = {99, 0}, w[4];
        philox4x32_10(ctr, key, w);
        float z[4];
        noise_normal4(99, 2, 3, 1, NOISE_STREAM_SAMPLE, q, z);
        for (int h = 0; h < 2; h++) {
            double u1 = (double)philox_uniform(w[2 * h]), u2 = (double)philox_uniform(w[2 * h + 1]);
            double r = sqrt(-2.0 * log(u1));
            double want[2] = {r * cos(2.0 * M_PI * u2), r * sin(2.0 * M_PI * u2)};
            for (int l = 0; l < 2; l++) {
                double err = fabs((double)z[2 * h + l] - want[l]);
                if (err > max_abs) max_abs = err;
                if (fabs(want[l]) > 1e-2 && err / fabs(want[l]) > max_rel) max_rel = err / fabs(want[l]);
            }
        }
    }
    printf("eps vs double Box-Muller (4e6 values): max abs err %.3g, max rel err %.3g (|eps| > 0.01)\n", max_abs,
           max_rel);
    CHECK(max_abs < 2e-6 && max_rel < 2e-5, "eps accuracy abs %.3g rel %.3g", max_abs, max_rel);
}

// moments, CDF points and tails over 1e7 draws
static void test_moments(float* buf, size_t n) {
    double t0 = now_s();
    noise_fill(buf, n, 0, 20240601, 0, 0, 0, NOISE_STREAM_SAMPLE);
    double dt = now_s() - t0;
    double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
    size_t b3 = 0, b4 = 0, cdf_cnt[5] = {0, 0, 0, 0, 0};
    const double cdf_x[5] = {-2, -1, 0, 1, 2}, cdf_p[5] = {0.022750131948179, 0.158655253931457, 0.5,
                                                           0.841344746068543, 0.977249868051821};
    float zmax = 0.0f;
    int finite = 1;
    for (size_t i = 0; i < n; i++) {
        double z = buf[i];
        if (!isfinite(buf[i])) finite = 0;
        s1 += z; s2 += z * z; s3 += z * z * z; s4 += z * z * z * z;
        double az = fabs(z);
        if (az > 3.0) b3++;
        if (az > 4.0) b4++;
        if (fabsf(buf[i]) > zmax) zmax = fabsf(buf[i]);
        for (int c = 0; c < 5; c++) cdf_cnt[c] += z < cdf_x[c];
    }
    double N = (double)n, mean = s1 / N, var = s2 / N - mean * mean;
    double skew = (s3 / N) / pow(var, 1.5), kurt = (s4 / N) / (var * var) - 3.0;
    printf("1e7 draws (%.3f s): mean %.2e var %.6f skew %.2e excess kurtosis %.2e max |z| %.3f\n", dt, mean, var,
           skew, kurt, (double)zmax);
    CHECK(finite, "non-finite eps");
    CHECK(fabs(mean) < 5.0 / sqrt(N), "mean %.3g", mean);
    CHECK(fabs(var - 1.0) < 5.0 * sqrt(2.0 / N), "var %.6f", var);
    CHECK(fabs(skew) < 5.0 * sqrt(6.0 / N), "skew %.3g", skew);
    CHECK(fabs(kurt) < 5.0 * sqrt(24.0 / N), "excess kurtosis %.3g", kurt);
    // largest |z| Box-Muller can give with u1 >= 2^-24 is sqrt(48 ln 2) = 5.768
    CHECK(zmax < 5.77f && zmax > 4.5f, "max |z| %.3f", (double)zmax);
    double p3 = 0.0026997960632601866, p4 = 6.334248366623996e-05;
    double f3 = (double)b3 / N, f4 = (double)b4 / N;
    printf("tails: P(|z|>3) %.6f (normal %.6f), P(|z|>4) %.3e (normal %.3e)\n", f3, p3, f4, p4);
    CHECK(fabs(f3 - p3) < 5.0 * sqrt(p3 * (1 - p3) / N), "P(|z|>3) %.6f vs %.6f", f3, p3);
    CHECK(fabs(f4 - p4) < 5.0 * sqrt(p4 * (1 - p4) / N), "P(|z|>4) %.3e vs %.3e", f4, p4);
    for (int c = 0; c < 5; c++) {
        double f = (double)cdf_cnt[c] / N;
        CHECK(fabs(f - cdf_p[c]) < 5.0 * sqrt(cdf_p[c] * (1 - cdf_p[c]) / N), "P(z < %g) = %.6f vs %.6f", cdf_x[c],
              f, cdf_p[c]);
    }
    // lag-1 .. lag-4 autocorrelation within the sequence (lanes of one block and neighbouring blocks)
    for (int lag = 1; lag <= 4; lag++) {
        double sxy = 0.0;
        for (size_t i = 0; i + (size_t)lag < n; i++) sxy += (double)buf[i] * buf[i + lag];
        double rho = sxy / (N - lag) / var;
        CHECK(fabs(rho) < 5.0 / sqrt(N), "lag-%d autocorrelation %.3g", lag, rho);
        // squares: the two normals of one Box-Muller pair share r, yet are independent
        double a = 0.0, sa = 0.0, sb = 0.0, saa = 0.0, sbb = 0.0;
        for (size_t i = 0; i + (size_t)lag < n; i++) {
            double x = (double)buf[i] * buf[i], y = (double)buf[i + lag] * buf[i + lag];
            a += x * y; sa += x; sb += y; saa += x * x; sbb += y * y;
        }
        double M = N - lag;
        double cov = a / M - (sa / M) * (sb / M);
        double rho2 = cov / sqrt((saa / M - (sa / M) * (sa / M)) * (sbb / M - (sb / M) * (sb / M)));
        CHECK(fabs(rho2) < 5.0 / sqrt(M), "lag-%d correlation of squares %.3g", lag, rho2);
    }
}

// correlation of eps between keys that differ in one field
static double corr_keys(NoiseKey a, NoiseKey b, float* x, float* y, size_t n, uint64_t start) {
    noise_key_fill(x, n, start, a);
    noise_key_fill(y, n, start, b);
    double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
    for (size_t i = 0; i < n; i++) {
        sx += x[i]; sy += y[i]; sxx += (double)x[i] * x[i]; syy += (double)y[i] * y[i]; sxy += (double)x[i] * y[i];
    }
    double N = (double)n;
    double cov = sxy / N - (sx / N) * (sy / N);
    return cov / sqrt((sxx / N - (sx / N) * (sx / N)) * (syy / N - (sy / N) * (sy / N)));
}

static void test_independence(float* x, float* y) {
    const size_t n = 1000000;
    const double lim = 5.0 / sqrt((double)n);
    NoiseKey base = noise_key(1234, 0, 10, 2, NOISE_STREAM_SAMPLE);
    struct { const char* what; NoiseKey other; } v[] = {
        {"stream SAMPLE vs ANCHOR", noise_key(1234, 0, 10, 2, NOISE_STREAM_ANCHOR)},
        {"stream SAMPLE vs OUTER", noise_key(1234, 0, 10, 2, NOISE_STREAM_OUTER)},
        {"stream SAMPLE vs BMA", noise_key(1234, 0, 10, 2, NOISE_STREAM_BMA)},
        {"sample 2 vs 3", noise_key(1234, 0, 10, 3, NOISE_STREAM_SAMPLE)},
        {"step 10 vs 11", noise_key(1234, 0, 11, 2, NOISE_STREAM_SAMPLE)},
        {"rank 0 vs 1", noise_key(1234, 1, 10, 2, NOISE_STREAM_SAMPLE)},
        {"seed 1234 vs 1235", noise_key(1235, 0, 10, 2, NOISE_STREAM_SAMPLE)},
        {"seed hi word", noise_key(1234 + (1ull << 32), 0, 10, 2, NOISE_STREAM_SAMPLE)},
        {"step <-> sample swapped", noise_key(1234, 0, 2, 10, NOISE_STREAM_SAMPLE)},
    };
    for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++) {
        double rho = corr_keys(base, v[k].other, x, y, n, 0);
        CHECK(fabs(rho) < lim, "correlation %s = %.3g", v[k].what, rho);
        if (k == 0) printf("independence: |corr| limit %.4f; %s %.2e", lim, v[k].what, rho);
        else printf(", %s %.2e", v[k].what, rho);
    }
    printf("\n");
    // the same key gives the same values; shifted index ranges are different values
    double same = corr_keys(base, base, x, y, n, 0);
    CHECK(same > 0.999999, "same key correlation %.6f", same);
    noise_key_fill(x, n, 0, base);
    noise_key_fill(y, n, 4, base);
    CHECK(memcmp(x + 4, y, (n - 4) * sizeof(float)) == 0, "fill at start 4 is the same sequence shifted by 4");
    // rank is masked to 24 bits (documented layout)
    CHECK(noise_normal(5, 2, 3, 1, 0, 17) == noise_normal(5, 0x1000002, 3, 1, 0, 17), "rank not masked to 24 bits");
    CHECK(noise_normal(5, 2, 3, 1, 0, 17) != noise_normal(5, 3, 3, 1, 0, 17), "rank 2 and 3 give the same value");
}

// noise_fill(start, n) equals noise_normal per index for every alignment and length class
static void test_fill_vs_normal(float* buf) {
    const uint64_t starts[] = {0, 1, 2, 3, 4, 5, 6, 7, 255, 256, 257, 4095, (1ull << 32) - 3, (1ull << 32) + 1,
                               (1ull << 34) - 7, 98765432101ull};
    const size_t lens[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 255, 256, 257, 258, 259, 16389, 70001};
    int bad = 0, cases = 0;
    for (size_t a = 0; a < sizeof(starts) / sizeof(starts[0]); a++) {
        for (size_t b = 0; b < sizeof(lens) / sizeof(lens[0]); b++) {
            uint64_t s = starts[a];
            size_t n = lens[b];
            buf[n] = 12345.0f;  // sentinel: noise_fill writes exactly n values
            noise_fill(buf, n, s, 777, 5, 6, 7, NOISE_STREAM_OUTER);
            int ok = buf[n] == 12345.0f;
            for (size_t i = 0; i < n && ok; i++) {
                float want = noise_normal(777, 5, 6, 7, NOISE_STREAM_OUTER, s + i);
                ok = noise_f2u(buf[i]) == noise_f2u(want);
            }
            cases++;
            if (!ok) { bad++; printf("  noise_fill mismatch start %llu n %zu\n", (unsigned long long)s, n); }
        }
    }
    CHECK(bad == 0, "noise_fill vs noise_normal: %d of %d (start, n) cases differ", bad, cases);
    // noise_normal4 lanes are indices 4q .. 4q+3
    int ok4 = 1;
    for (uint64_t q = 0; q < 1000; q += 37) {
        float z[4];
        noise_normal4(9, 1, 2, 3, NOISE_STREAM_BMA, q, z);
        for (int l = 0; l < 4; l++) ok4 &= noise_f2u(z[l]) == noise_f2u(noise_normal(9, 1, 2, 3, NOISE_STREAM_BMA, 4 * q + l));
    }
    CHECK(ok4, "noise_normal4 lanes differ from noise_normal");
}

static uint64_t test_splitmix64(uint64_t* st) {
    uint64_t z = (*st += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#if defined(NOISE_HOST_AVX512) || defined(NOISE_HOST_AVX2)
// the build's vector Box-Muller on `lanes` word pairs (wa, wb) -> (z0, z1)
#ifdef NOISE_HOST_AVX512
#define TEST_BM_LANES 16
#define TEST_BM_NAME "AVX-512"
static void test_vector_box_muller(const uint32_t* wa, const uint32_t* wb, float* z0, float* z1) {
    __m512 v0, v1;
    noise_v_box_muller(_mm512_loadu_si512(wa), _mm512_loadu_si512(wb), &v0, &v1);
    _mm512_storeu_ps(z0, v0);
    _mm512_storeu_ps(z1, v1);
}
#else
#define TEST_BM_LANES 8
#define TEST_BM_NAME "AVX2"
static void test_vector_box_muller(const uint32_t* wa, const uint32_t* wb, float* z0, float* z1) {
    __m256 v0, v1;
    noise_w_box_muller(_mm256_loadu_si256((const __m256i*)wa), _mm256_loadu_si256((const __m256i*)wb), &v0, &v1);
    _mm256_storeu_ps(z0, v0);
    _mm256_storeu_ps(z1, v1);
}
#endif

// the vector Box-Muller vs the scalar function: every pair of edge words (uniforms at both ends, quadrant
// boundaries of 4u, the log's mantissa split), then 2^22 pseudo-random and strided word pairs (every uniform of the
// upper 23 bits in turn)
static void test_box_muller_vector(uint64_t* st) {
    const uint32_t edge[] = {0u, 1u, 0x1ffu, 0x200u, 0x3ffu, 0x7fffffffu, 0x80000000u, 0x80000200u, 0xfffffe00u,
                             0xffffffffu, 0x3fffffffu, 0x40000000u, 0x40000200u, 0xbfffffffu, 0xc0000000u,
                             0x1fffffffu, 0x20000000u, 0x5fffffffu, 0x60000000u, 0x9fffffffu, 0xa0000000u,
                             0xdfffffffu, 0xe0000000u, 0x6a09e600u, 0xb504f300u, 0x3504f3u << 9, 0x3504f4u << 9};
    const long ne = (long)(sizeof(edge) / sizeof(edge[0]));
    const int L = TEST_BM_LANES;
    int bad = 0;
    long cases = 0;
    for (long it = 0; it < (1l << 22) / L + ne * ne; it++) {
        uint32_t wa[TEST_BM_LANES], wb[TEST_BM_LANES];
        for (int l = 0; l < L; l++) {
            long k = it * L + l;
            if (k < ne * ne) {
                wa[l] = edge[k / ne];
                wb[l] = edge[k % ne];
            } else if (it % 2) {
                wa[l] = (uint32_t)test_splitmix64(st);
                wb[l] = (uint32_t)test_splitmix64(st);
            } else {
                wa[l] = (uint32_t)(k * 512);
                wb[l] = (uint32_t)(k * 0x9E3779B9u);
            }
        }
        float v0[TEST_BM_LANES], v1[TEST_BM_LANES];
        test_vector_box_muller(wa, wb, v0, v1);
        for (int l = 0; l < L; l++) {
            float s0, s1;
            noise_box_muller(wa[l], wb[l], &s0, &s1);
            cases++;
            if (noise_f2u(s0) != noise_f2u(v0[l]) || noise_f2u(s1) != noise_f2u(v1[l])) {
                bad++;
                if (bad <= 5) printf("  box-muller mismatch words %08x %08x\n", wa[l], wb[l]);
            }
        }
    }
    CHECK(bad == 0, TEST_BM_NAME " Box-Muller vs noise_box_muller: %d of %ld word pairs differ", bad, cases);
}
#endif

// The build's noise_chunk_host (AVX-512 or AVX2 when compiled in) equals the scalar reference noise_chunk_scalar bit for
// bit: random keys, block starts across the 2^32 wrap, every chunk length 0..64 (partial vector groups), and the
// vector Box-Muller against noise_box_muller (test_box_muller_vector).
static void test_vector_vs_scalar(void) {
#if defined(NOISE_HOST_AVX512)
    printf("noise_chunk_host: AVX-512 path (16 blocks per vector)\n");
#elif defined(NOISE_HOST_AVX2)
    printf("noise_chunk_host: AVX2 path (8 blocks per vector)\n");
#else
    printf("noise_chunk_host: scalar path (no AVX-512 or AVX2 in this build)\n");
#endif
    float a[4 * NOISE_HOST_CHUNK + 1], b[4 * NOISE_HOST_CHUNK + 1];
    uint64_t st = 2024;
    int bad = 0, cases = 0;
    const uint64_t fixed_q0[] = {0, 1, 15, 16, 17, (1ull << 32) - 16, (1ull << 32) - 9, (1ull << 32) - 1, 1ull << 32,
                                 (1ull << 34) - 33};
    for (int c = 0; c < 3000; c++) {
        uint64_t seed = c % 7 == 0 ? (uint64_t)c : test_splitmix64(&st);
        uint32_t rank = (uint32_t)test_splitmix64(&st), step = (uint32_t)test_splitmix64(&st);
        uint32_t sample = (uint32_t)(c % 5 == 0 ? (uint64_t)c : test_splitmix64(&st)), stream = (uint32_t)(c & 3);
        uint64_t q0 = c < 10 * 65 ? fixed_q0[c / 65] : test_splitmix64(&st) >> (c % 40);
        int m = c % (NOISE_HOST_CHUNK + 1);
        a[4 * m] = b[4 * m] = 12345.0f;  // sentinels: exactly 4 m values written
        noise_chunk_host(a, q0, m, seed, rank, step, sample, stream);
        noise_chunk_scalar(b, q0, m, seed, rank, step, sample, stream);
        int ok = a[4 * m] == 12345.0f && b[4 * m] == 12345.0f;
        for (int i = 0; i < 4 * m && ok; i++) ok = noise_f2u(a[i]) == noise_f2u(b[i]);
        cases++;
        if (!ok) {
            bad++;
            if (bad <= 5) printf("  chunk mismatch seed %llu q0 %llu m %d\n", (unsigned long long)seed,
                                 (unsigned long long)q0, m);
        }
    }
    CHECK(bad == 0, "noise_chunk_host vs noise_chunk_scalar: %d of %d cases differ", bad, cases);
#if defined(NOISE_HOST_AVX512) || defined(NOISE_HOST_AVX2)
    test_box_muller_vector(&st);
#endif
}

// the same values for 1, 2, 3 and 4 threads; ns/element for 1 and 2 threads
static void test_threads(float* x, float* y, size_t n) {
#ifdef _OPENMP
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    noise_fill(x, n, 3, 555, 0, 1, 2, NOISE_STREAM_SAMPLE);
    for (int t = 2; t <= 4; t++) {
        omp_set_num_threads(t);
        noise_fill(y, n, 3, 555, 0, 1, 2, NOISE_STREAM_SAMPLE);
        CHECK(memcmp(x, y, n * sizeof(float)) == 0, "noise_fill with %d threads differs from 1 thread", t);
    }
    for (int t = 1; t <= 2; t++) {
        omp_set_num_threads(t);
        double best = 1e30;
        for (int r = 0; r < 3; r++) {
            double t0 = now_s();
            noise_fill(y, n, 1, 555, 0, 1, 2, NOISE_STREAM_SAMPLE);
            double dt = now_s() - t0;
            if (dt < best) best = dt;
        }
        printf("noise_fill speed: %d thread(s) %.2f ns/element (best of 3, n = %zu)\n", t, best / (double)n * 1e9, n);
    }
    omp_set_num_threads(saved);
#else
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t0 = now_s();
        noise_fill(y, n, 1, 555, 0, 1, 2, NOISE_STREAM_SAMPLE);
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    printf("noise_fill speed (no OpenMP): %.2f ns/element (best of 3, n = %zu)\n", best / (double)n * 1e9, n);
    noise_fill(x, n, 1, 555, 0, 1, 2, NOISE_STREAM_SAMPLE);
    CHECK(memcmp(x, y, n * sizeof(float)) == 0, "noise_fill is not deterministic");
#endif
}

int main(int argc, char** argv) {
    if (argc == 3 && strcmp(argv[1], "--dump") == 0) {
        write_dump(argv[2]);
        return 0;
    }
    if (argc != 1) {
        fprintf(stderr, "usage: %s [--dump FILE]\n", argv[0]);
        return 2;
    }
    const size_t n = 10000000;
    float* x = (float*)mallocCheck((n + 1) * sizeof(float));
    float* y = (float*)mallocCheck((n + 1) * sizeof(float));
    test_philox_kat();
    test_logf_accuracy();
    test_sincos_accuracy();
    test_normal_accuracy();
    test_moments(x, n);
    test_independence(x, y);
    test_fill_vs_normal(x);
    test_vector_vs_scalar();
    test_threads(x, y, n);
    free(x);
    free(y);
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail == 0 ? 0 : 1;
}
