// Counter-based Gaussian noise for IVON / IVON-PoCo: eps(seed, rank, step, sample, stream, index) is a
// pure function, bit-identical in C (CPU), CUDA and Python (ivon_noise.py).
// Philox4x32-10 (llmc/philox.h) with
//   key     = (seed & 0xffffffff, seed >> 32)
//   counter = (quad & 0xffffffff, step, sample, (stream << 24) | (rank & 0xffffff)),  quad = index >> 2
// and lane = index & 3 picks one of the 4 normals of that block. Box-Muller on words (0, 1) and (2, 3):
//   u = ((x >> 9) + 0.5) * 2^-23, r = sqrt(-2 ln u_a), z_a = r cos(2 pi u_b), z_b = r sin(2 pi u_b).
// stream < 256; rank uses its low 24 bits; the block counter uses quad's low 32 bits (indices < 2^34 distinct).
// The trainers pass rank 0: data-parallel runs number the samples over all processes instead (llmc/dist.h).
// ln, sin, cos are built here from IEEE-754 fp32 +, -, *, /, sqrt and integer bit operations only, in a fixed
// order with one rounding per operation (no FMA, no libm), so every target rounds identically:
//   C: build with -ffp-contract=off (GCC's GNU modes default to =fast, which fuses a*b+c into FMA); then the
//      functions inline and noise_fill vectorizes. Guards for other builds: GCC's optimize("fp-contract=off")
//      on each function (GCC then keeps them out of line in callers built with contraction: still exact),
//      clang's fp contract(off) (honored unless -ffp-contract=fast). noise_check_build() is a known-answer
//      check a program can call at startup to detect a build that changed the rounding anyway.
//   CUDA: __fadd_rn / __fsub_rn / __fmul_rn / __fdiv_rn / __fsqrt_rn (never contracted into FMA).
//   Python: numpy float32 elementwise ops in the same order (ivon_noise.py).
// Accuracy (dev/test/test_noise): noise_logf <= 1.7 ulp on the noise uniforms, sin/cos(2 pi u) abs err < 9e-8,
// eps vs double Box-Muller on the same Philox words abs err < 7e-7.
#ifndef LLMC_NOISE_H
#define LLMC_NOISE_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include "philox.h"
#include "utils.h"

// noise streams (counter word 3, bits 24..31)
#define NOISE_STREAM_SAMPLE 0u  // IVON/PoCo inner sample of micro-batch `sample` in optimizer step `step`
#define NOISE_STREAM_ANCHOR 1u  // PoCo anchor-refresh mega-batch micro-batch `sample` (step = next step)
#define NOISE_STREAM_OUTER 2u   // PoCo theta_out noise when shared noise is off
#define NOISE_STREAM_BMA 3u     // BMA eval sample `sample` at step `step`

#ifdef __CUDACC__
#define NOISE_FN __host__ __device__ static inline
#else
#define NOISE_FN static inline
#endif

// contraction guards for host compilers (GCC: function attribute; clang: scoped pragma at function start)
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDA_ARCH__)
#define NOISE_NOCONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define NOISE_NOCONTRACT
#endif
#if defined(__clang__) && !defined(__CUDACC__)
#define NOISE_NOCONTRACT_SCOPE _Pragma("clang fp contract(off)")
#else
#define NOISE_NOCONTRACT_SCOPE
#endif

// fp32 operations with one IEEE round-to-nearest-even rounding each
#ifdef __CUDA_ARCH__
#define NOISE_ADD(a, b) __fadd_rn((a), (b))
#define NOISE_SUB(a, b) __fsub_rn((a), (b))
#define NOISE_MUL(a, b) __fmul_rn((a), (b))
#define NOISE_DIV(a, b) __fdiv_rn((a), (b))
#define NOISE_SQRT(a) __fsqrt_rn(a)
#else
#define NOISE_ADD(a, b) ((a) + (b))
#define NOISE_SUB(a, b) ((a) - (b))
#define NOISE_MUL(a, b) ((a) * (b))
#define NOISE_DIV(a, b) ((a) / (b))
#define NOISE_SQRT(a) noise_sqrt_host(a)
#endif

// polynomial coefficients as exact fp32 hex literals (ivon_noise.py uses the same bit patterns)
// ln(m) = 2s + 2s * t * (1/3 + t (1/5 + t (1/7 + t/9))), s = (m-1)/(m+1), t = s^2, m in [sqrt(1/2), sqrt(2)]
#define NOISE_L3 0x1.555556p-2f   // 1/3
#define NOISE_L5 0x1.99999ap-3f   // 1/5
#define NOISE_L7 0x1.24924ap-3f   // 1/7
#define NOISE_L9 0x1.c71c72p-4f   // 1/9
#define NOISE_LN2_HI 0x1.62e4p-1f     // ln 2, high 16 bits (e * LN2_HI is exact)
#define NOISE_LN2_LO 0x1.7f7d1cp-20f  // ln 2 - LN2_HI
// sin(pi/2 f) = f (S1 + t (S3 + t (S5 + t (S7 + t S9)))), t = f^2, |f| <= 1/2 (Taylor of sin((pi/2) f))
#define NOISE_S1 0x1.921fb6p+0f
#define NOISE_S3 -0x1.4abbcep-1f
#define NOISE_S5 0x1.466bc6p-4f
#define NOISE_S7 -0x1.32d2ccp-8f
#define NOISE_S9 0x1.507834p-13f
// cos(pi/2 f) = 1 + t (C2 + t (C4 + t (C6 + t (C8 + t C10))))
#define NOISE_C2 -0x1.3bd3ccp+0f
#define NOISE_C4 0x1.03c1f0p-2f
#define NOISE_C6 -0x1.55d3c8p-6f
#define NOISE_C8 0x1.e1f506p-11f
#define NOISE_C10 -0x1.a6d1f2p-16f

// IEEE square root (correctly rounded) on the host
static inline float noise_sqrt_host(float x) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_sqrtf(x);
#else
    return sqrtf(x);
#endif
}

NOISE_FN uint32_t noise_f2u(float x) {
#ifdef __CUDA_ARCH__
    return __float_as_uint(x);
#else
    uint32_t u;
    memcpy(&u, &x, sizeof(u));
    return u;
#endif
}

NOISE_FN float noise_u2f(uint32_t u) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float x;
    memcpy(&x, &u, sizeof(x));
    return x;
#endif
}

// natural log of a finite, positive, normal fp32 x. Max error ~1 ulp of the result (test_noise measures it).
// x = m 2^e with m in (sqrt(1/2), sqrt(2)]; ln x = e ln2 + 2 atanh((m-1)/(m+1)).
NOISE_NOCONTRACT NOISE_FN float noise_logf(float x) {
    NOISE_NOCONTRACT_SCOPE
    uint32_t b = noise_f2u(x);
    int32_t e = (int32_t)(b >> 23) - 127;
    uint32_t mb = b & 0x7fffffu;
    int32_t up = mb > 0x3504f3u;  // mantissa above sqrt(2): use m/2, e+1
    float m = noise_u2f(mb | (up ? 0x3f000000u : 0x3f800000u));
    e += up;
    float s = NOISE_DIV(NOISE_SUB(m, 1.0f), NOISE_ADD(m, 1.0f));
    float t = NOISE_MUL(s, s);
    float p = NOISE_ADD(NOISE_L7, NOISE_MUL(t, NOISE_L9));
    p = NOISE_ADD(NOISE_L5, NOISE_MUL(t, p));
    p = NOISE_ADD(NOISE_L3, NOISE_MUL(t, p));
    p = NOISE_MUL(t, p);
    float s2 = NOISE_ADD(s, s);
    float lm = NOISE_ADD(s2, NOISE_MUL(s2, p));
    float ef = (float)e;
    return NOISE_ADD(NOISE_MUL(ef, NOISE_LN2_HI), NOISE_ADD(lm, NOISE_MUL(ef, NOISE_LN2_LO)));
}

// sin(2 pi u) and cos(2 pi u) for u in [0, 1]. Reduced by quadrant on 4u (exact): 4u = q + f, |f| <= 1/2,
// then sin/cos(pi/2 f) by polynomials in f and a quadrant rotation (exact sign/swap).
NOISE_NOCONTRACT NOISE_FN void noise_sincos2pi(float u, float* sin_out, float* cos_out) {
    NOISE_NOCONTRACT_SCOPE
    float x = NOISE_MUL(u, 4.0f);
    int32_t q = (int32_t)x;                  // truncation, x >= 0
    float f = NOISE_SUB(x, (float)q);        // exact, in [0, 1)
    int32_t up = f > 0.5f;
    f = up ? NOISE_SUB(f, 1.0f) : f;         // exact, in [-1/2, 1/2]
    q = (q + up) & 3;
    float t = NOISE_MUL(f, f);
    float sp = NOISE_ADD(NOISE_S7, NOISE_MUL(t, NOISE_S9));
    sp = NOISE_ADD(NOISE_S5, NOISE_MUL(t, sp));
    sp = NOISE_ADD(NOISE_S3, NOISE_MUL(t, sp));
    sp = NOISE_ADD(NOISE_S1, NOISE_MUL(t, sp));
    float s = NOISE_MUL(f, sp);
    float cp = NOISE_ADD(NOISE_C8, NOISE_MUL(t, NOISE_C10));
    cp = NOISE_ADD(NOISE_C6, NOISE_MUL(t, cp));
    cp = NOISE_ADD(NOISE_C4, NOISE_MUL(t, cp));
    cp = NOISE_ADD(NOISE_C2, NOISE_MUL(t, cp));
    float c = NOISE_ADD(1.0f, NOISE_MUL(t, cp));
    // q = 0: (s, c); 1: (c, -s); 2: (-s, -c); 3: (-c, s)   as (sin, cos)
    uint32_t sb = noise_f2u((q & 1) ? c : s);
    uint32_t cb = noise_f2u((q & 1) ? s : c);
    sb ^= (q & 2) ? 0x80000000u : 0u;
    cb ^= ((q + 1) & 2) ? 0x80000000u : 0u;
    *sin_out = noise_u2f(sb);
    *cos_out = noise_u2f(cb);
}

// Box-Muller on two Philox words: z0 = r cos(2 pi u_b), z1 = r sin(2 pi u_b), r = sqrt(-2 ln u_a)
NOISE_NOCONTRACT NOISE_FN void noise_box_muller(uint32_t a, uint32_t b, float* z0, float* z1) {
    NOISE_NOCONTRACT_SCOPE
    float ua = philox_uniform(a);  // exact: ((a >> 9) + 0.5) 2^-23
    float ub = philox_uniform(b);
    float r = NOISE_SQRT(NOISE_MUL(-2.0f, noise_logf(ua)));
    float sn, cs;
    noise_sincos2pi(ub, &sn, &cs);
    *z0 = NOISE_MUL(r, cs);
    *z1 = NOISE_MUL(r, sn);
}

// the 4 normals of Philox block `quad` (flat indices 4 quad .. 4 quad + 3)
NOISE_NOCONTRACT NOISE_FN void noise_normal4(uint64_t seed, uint32_t rank, uint32_t step, uint32_t sample,
                                             uint32_t stream, uint64_t quad, float out[4]) {
    NOISE_NOCONTRACT_SCOPE
    uint32_t ctr[4] = {(uint32_t)quad, step, sample, (stream << 24) | (rank & 0xffffffu)};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t w[4];
    philox4x32_10(ctr, key, w);
    noise_box_muller(w[0], w[1], &out[0], &out[1]);
    noise_box_muller(w[2], w[3], &out[2], &out[3]);
}

// eps of one flat parameter index
NOISE_NOCONTRACT NOISE_FN float noise_normal(uint64_t seed, uint32_t rank, uint32_t step, uint32_t sample,
                                             uint32_t stream, uint64_t index) {
    NOISE_NOCONTRACT_SCOPE
    float z[4];
    noise_normal4(seed, rank, step, sample, stream, index >> 2, z);
    return z[index & 3];
}

// the arguments of one noise draw, for code that passes them around together
typedef struct {
    uint64_t seed;
    uint32_t rank, step, sample, stream;
} NoiseKey;

NOISE_FN NoiseKey noise_key(uint64_t seed, uint32_t rank, uint32_t step, uint32_t sample, uint32_t stream) {
    NoiseKey k = {seed, rank, step, sample, stream};
    return k;
}

NOISE_NOCONTRACT NOISE_FN void noise_key_normal4(NoiseKey k, uint64_t quad, float out[4]) {
    NOISE_NOCONTRACT_SCOPE
    noise_normal4(k.seed, k.rank, k.step, k.sample, k.stream, quad, out);
}

NOISE_NOCONTRACT NOISE_FN float noise_key_normal(NoiseKey k, uint64_t index) {
    NOISE_NOCONTRACT_SCOPE
    return noise_normal(k.seed, k.rank, k.step, k.sample, k.stream, index);
}

// ---- host only ----

// Host batch of m <= NOISE_HOST_CHUNK whole blocks q0 .. q0+m-1 into out (m, 4): the same operations as
// noise_normal4, laid out as loops over the blocks so that the compiler vectorizes them. The reference of the
// AVX-512 path below, and the path of builds without AVX-512.
#define NOISE_HOST_CHUNK 64
NOISE_NOCONTRACT static inline void noise_chunk_scalar(float* out, uint64_t q0, int m, uint64_t seed, uint32_t rank,
                                                     uint32_t step, uint32_t sample, uint32_t stream) {
    NOISE_NOCONTRACT_SCOPE
    uint32_t x0[NOISE_HOST_CHUNK], x1[NOISE_HOST_CHUNK], x2[NOISE_HOST_CHUNK], x3[NOISE_HOST_CHUNK];
    float z[4][NOISE_HOST_CHUNK];
    uint32_t w3 = (stream << 24) | (rank & 0xffffffu);
    for (int i = 0; i < m; i++) {
        x0[i] = (uint32_t)(q0 + (uint64_t)i);
        x1[i] = step;
        x2[i] = sample;
        x3[i] = w3;
    }
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < PHILOX_ROUNDS; r++) {
        for (int i = 0; i < m; i++) {
            uint64_t p0 = (uint64_t)PHILOX_M0 * x0[i];
            uint64_t p1 = (uint64_t)PHILOX_M1 * x2[i];
            uint32_t y0 = (uint32_t)(p1 >> 32) ^ x1[i] ^ k0;
            uint32_t y2 = (uint32_t)(p0 >> 32) ^ x3[i] ^ k1;
            x0[i] = y0;
            x1[i] = (uint32_t)p1;
            x2[i] = y2;
            x3[i] = (uint32_t)p0;
        }
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    for (int i = 0; i < m; i++) noise_box_muller(x0[i], x1[i], &z[0][i], &z[1][i]);
    for (int i = 0; i < m; i++) noise_box_muller(x2[i], x3[i], &z[2][i], &z[3][i]);
    for (int i = 0; i < m; i++) {
        out[4 * i + 0] = z[0][i];
        out[4 * i + 1] = z[1][i];
        out[4 * i + 2] = z[2][i];
        out[4 * i + 3] = z[3][i];
    }
}


// AVX-512F path (builds with -march=native or -mavx512f; other builds use noise_chunk_scalar): 16 Philox blocks
// per vector, one lane per block, with the same IEEE fp32 operations in the same order as the scalar functions.
// The fp32 operations are the explicitly rounded intrinsics (round to nearest even), builtins that the compiler
// never contracts into FMA whatever -ffp-contract says; div and sqrt are correctly rounded, as the scalar ones.
// C only: g++ 12 warns (-Wuninitialized) inside its own AVX-512 headers in C++; the CPU backend of the CUDA sources
// (dev/cuda_cpu, C++) keeps the scalar path.
#if defined(__AVX512F__) && !defined(__CUDACC__) && !defined(__cplusplus)
#include <immintrin.h>
#define NOISE_HOST_AVX512 1
#define NOISE_V_RN (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define NOISE_V_ADD(a, b) _mm512_add_round_ps((a), (b), NOISE_V_RN)
#define NOISE_V_SUB(a, b) _mm512_sub_round_ps((a), (b), NOISE_V_RN)
#define NOISE_V_MUL(a, b) _mm512_mul_round_ps((a), (b), NOISE_V_RN)
#define NOISE_V_DIV(a, b) _mm512_div_round_ps((a), (b), NOISE_V_RN)
#define NOISE_V_SQRT(a) _mm512_sqrt_round_ps((a), NOISE_V_RN)
#define NOISE_V_C(x) _mm512_set1_ps(x)

// the 32x32 -> 64 products x * M of 16 lanes: high and low words
static inline void noise_v_mulhilo(__m512i x, __m512i mv, __m512i* hi, __m512i* lo) {
    __m512i ev = _mm512_mul_epu32(x, mv);                                   // lanes 0, 2, .. as 64-bit products
    __m512i od = _mm512_mul_epu32(_mm512_shuffle_epi32(x, _MM_PERM_CDAB), mv);  // lanes 1, 3, ..
    *hi = _mm512_mask_shuffle_epi32(od, 0x5555, ev, _MM_PERM_CDAB);  // even lanes: the high word of ev
    *lo = _mm512_mask_shuffle_epi32(ev, 0xAAAA, od, _MM_PERM_CDAB);  // odd lanes: the low word of od
}

// philox4x32_10 on 16 counters (x0..x3, one block per lane), in place
static inline void noise_v_philox(__m512i x[4], uint32_t k0, uint32_t k1) {
    const __m512i m0 = _mm512_set1_epi64(PHILOX_M0), m1 = _mm512_set1_epi64(PHILOX_M1);
    for (int r = 0; r < PHILOX_ROUNDS; r++) {
        __m512i hi0, lo0, hi1, lo1;
        noise_v_mulhilo(x[0], m0, &hi0, &lo0);
        noise_v_mulhilo(x[2], m1, &hi1, &lo1);
        x[0] = _mm512_ternarylogic_epi32(hi1, x[1], _mm512_set1_epi32((int)k0), 0x96);  // hi1 ^ x1 ^ k0
        x[1] = lo1;
        x[2] = _mm512_ternarylogic_epi32(hi0, x[3], _mm512_set1_epi32((int)k1), 0x96);  // hi0 ^ x3 ^ k1
        x[3] = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
}

// philox_uniform: ((float)(x >> 9) + 0.5) * 2^-23 (exact)
static inline __m512 noise_v_uniform(__m512i x) {
    __m512 f = _mm512_cvtepi32_ps(_mm512_srli_epi32(x, 9));
    return NOISE_V_MUL(NOISE_V_ADD(f, NOISE_V_C(0.5f)), NOISE_V_C(1.0f / 8388608.0f));
}

// noise_logf on 16 lanes
static inline __m512 noise_v_logf(__m512 x) {
    __m512i b = _mm512_castps_si512(x);
    __m512i e = _mm512_sub_epi32(_mm512_srli_epi32(b, 23), _mm512_set1_epi32(127));
    __m512i mb = _mm512_and_si512(b, _mm512_set1_epi32(0x7fffff));
    __mmask16 up = _mm512_cmpgt_epi32_mask(mb, _mm512_set1_epi32(0x3504f3));
    __m512i ex = _mm512_mask_blend_epi32(up, _mm512_set1_epi32(0x3f800000), _mm512_set1_epi32(0x3f000000));
    __m512 m = _mm512_castsi512_ps(_mm512_or_si512(mb, ex));
    e = _mm512_mask_add_epi32(e, up, e, _mm512_set1_epi32(1));
    __m512 s = NOISE_V_DIV(NOISE_V_SUB(m, NOISE_V_C(1.0f)), NOISE_V_ADD(m, NOISE_V_C(1.0f)));
    __m512 t = NOISE_V_MUL(s, s);
    __m512 p = NOISE_V_ADD(NOISE_V_C(NOISE_L7), NOISE_V_MUL(t, NOISE_V_C(NOISE_L9)));
    p = NOISE_V_ADD(NOISE_V_C(NOISE_L5), NOISE_V_MUL(t, p));
    p = NOISE_V_ADD(NOISE_V_C(NOISE_L3), NOISE_V_MUL(t, p));
    p = NOISE_V_MUL(t, p);
    __m512 s2 = NOISE_V_ADD(s, s);
    __m512 lm = NOISE_V_ADD(s2, NOISE_V_MUL(s2, p));
    __m512 ef = _mm512_cvtepi32_ps(e);
    return NOISE_V_ADD(NOISE_V_MUL(ef, NOISE_V_C(NOISE_LN2_HI)),
                       NOISE_V_ADD(lm, NOISE_V_MUL(ef, NOISE_V_C(NOISE_LN2_LO))));
}

// noise_sincos2pi on 16 lanes
static inline void noise_v_sincos2pi(__m512 u, __m512* sin_out, __m512* cos_out) {
    __m512 x = NOISE_V_MUL(u, NOISE_V_C(4.0f));
    __m512i q = _mm512_cvttps_epi32(x);
    __m512 f = NOISE_V_SUB(x, _mm512_cvtepi32_ps(q));
    __mmask16 up = _mm512_cmp_ps_mask(f, NOISE_V_C(0.5f), _CMP_GT_OQ);
    f = _mm512_mask_sub_round_ps(f, up, f, NOISE_V_C(1.0f), NOISE_V_RN);
    q = _mm512_and_si512(_mm512_mask_add_epi32(q, up, q, _mm512_set1_epi32(1)), _mm512_set1_epi32(3));
    __m512 t = NOISE_V_MUL(f, f);
    __m512 sp = NOISE_V_ADD(NOISE_V_C(NOISE_S7), NOISE_V_MUL(t, NOISE_V_C(NOISE_S9)));
    sp = NOISE_V_ADD(NOISE_V_C(NOISE_S5), NOISE_V_MUL(t, sp));
    sp = NOISE_V_ADD(NOISE_V_C(NOISE_S3), NOISE_V_MUL(t, sp));
    sp = NOISE_V_ADD(NOISE_V_C(NOISE_S1), NOISE_V_MUL(t, sp));
    __m512 s = NOISE_V_MUL(f, sp);
    __m512 cp = NOISE_V_ADD(NOISE_V_C(NOISE_C8), NOISE_V_MUL(t, NOISE_V_C(NOISE_C10)));
    cp = NOISE_V_ADD(NOISE_V_C(NOISE_C6), NOISE_V_MUL(t, cp));
    cp = NOISE_V_ADD(NOISE_V_C(NOISE_C4), NOISE_V_MUL(t, cp));
    cp = NOISE_V_ADD(NOISE_V_C(NOISE_C2), NOISE_V_MUL(t, cp));
    __m512 c = NOISE_V_ADD(NOISE_V_C(1.0f), NOISE_V_MUL(t, cp));
    // q odd: (sin, cos) = (c, s), sign of sin from bit 1 of q, of cos from bit 1 of q + 1
    __mmask16 odd = _mm512_test_epi32_mask(q, _mm512_set1_epi32(1));
    __m512i sb = _mm512_castps_si512(_mm512_mask_blend_ps(odd, s, c));
    __m512i cb = _mm512_castps_si512(_mm512_mask_blend_ps(odd, c, s));
    __m512i two = _mm512_set1_epi32(2);
    sb = _mm512_xor_si512(sb, _mm512_slli_epi32(_mm512_and_si512(q, two), 30));
    cb = _mm512_xor_si512(cb, _mm512_slli_epi32(_mm512_and_si512(_mm512_add_epi32(q, _mm512_set1_epi32(1)), two), 30));
    *sin_out = _mm512_castsi512_ps(sb);
    *cos_out = _mm512_castsi512_ps(cb);
}

// noise_box_muller on 16 lanes
static inline void noise_v_box_muller(__m512i a, __m512i b, __m512* z0, __m512* z1) {
    __m512 r = NOISE_V_SQRT(NOISE_V_MUL(NOISE_V_C(-2.0f), noise_v_logf(noise_v_uniform(a))));
    __m512 sn, cs;
    noise_v_sincos2pi(noise_v_uniform(b), &sn, &cs);
    *z0 = NOISE_V_MUL(r, cs);
    *z1 = NOISE_V_MUL(r, sn);
}

// the 64 normals of the 16 blocks q0 .. q0+15 into out (16, 4): noise_normal4 of each block
static inline void noise_block16_avx512(float* out, uint64_t q0, uint64_t seed, uint32_t rank, uint32_t step,
                                        uint32_t sample, uint32_t stream) {
    __m512i x[4];
    x[0] = _mm512_add_epi32(_mm512_set1_epi32((int)(uint32_t)q0),
                            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    x[1] = _mm512_set1_epi32((int)step);
    x[2] = _mm512_set1_epi32((int)sample);
    x[3] = _mm512_set1_epi32((int)((stream << 24) | (rank & 0xffffffu)));
    noise_v_philox(x, (uint32_t)seed, (uint32_t)(seed >> 32));
    __m512 z[4];
    noise_v_box_muller(x[0], x[1], &z[0], &z[1]);
    noise_v_box_muller(x[2], x[3], &z[2], &z[3]);
    // (4, 16) -> (16, 4): pairs (z0, z1) and (z2, z3) interleaved, then the pairs of each block side by side
    const __m512i pl = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i ph = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const __m512i ql = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
    const __m512i qh = _mm512_setr_epi32(8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
    __m512 a_lo = _mm512_permutex2var_ps(z[0], pl, z[1]), a_hi = _mm512_permutex2var_ps(z[0], ph, z[1]);
    __m512 b_lo = _mm512_permutex2var_ps(z[2], pl, z[3]), b_hi = _mm512_permutex2var_ps(z[2], ph, z[3]);
    _mm512_storeu_ps(out, _mm512_permutex2var_ps(a_lo, ql, b_lo));
    _mm512_storeu_ps(out + 16, _mm512_permutex2var_ps(a_lo, qh, b_lo));
    _mm512_storeu_ps(out + 32, _mm512_permutex2var_ps(a_hi, ql, b_hi));
    _mm512_storeu_ps(out + 48, _mm512_permutex2var_ps(a_hi, qh, b_hi));
}
#endif

// AVX2 path (builds with AVX2 but not AVX-512F, C only as above): the AVX-512 path on 8 lanes. AVX2 has no
// rounding-mode intrinsics, and gcc lowers _mm256_mul_ps to a plain vector product that -ffp-contract=fast could
// fuse with an add; so every product goes through an empty asm that the compiler cannot see through (no FMA can
// form across it), and the rest are single correctly rounded operations in the default rounding (nearest even).
#if defined(__AVX2__) && !defined(NOISE_HOST_AVX512) && !defined(__CUDACC__) && !defined(__cplusplus)
#include <immintrin.h>
#define NOISE_HOST_AVX2 1
static inline __m256 noise_w_mul(__m256 a, __m256 b) {
    __m256 r = _mm256_mul_ps(a, b);
    __asm__("" : "+x"(r));
    return r;
}
#define NOISE_W_ADD(a, b) _mm256_add_ps((a), (b))
#define NOISE_W_SUB(a, b) _mm256_sub_ps((a), (b))
#define NOISE_W_MUL(a, b) noise_w_mul((a), (b))
#define NOISE_W_C(x) _mm256_set1_ps(x)
#define NOISE_W_I(x) _mm256_set1_epi32((int)(x))

// the 32x32 -> 64 products x * M of 8 lanes: high and low words
static inline void noise_w_mulhilo(__m256i x, __m256i mv, __m256i* hi, __m256i* lo) {
    __m256i ev = _mm256_mul_epu32(x, mv);                         // lanes 0, 2, .. as 64-bit products
    __m256i od = _mm256_mul_epu32(_mm256_srli_epi64(x, 32), mv);  // lanes 1, 3, ..
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(ev, 32), od, 0xAA);
    *lo = _mm256_blend_epi32(ev, _mm256_slli_epi64(od, 32), 0xAA);
}

// philox4x32_10 on 8 counters (x0..x3, one block per lane), in place
static inline void noise_w_philox(__m256i x[4], uint32_t k0, uint32_t k1) {
    const __m256i m0 = _mm256_set1_epi64x(PHILOX_M0), m1 = _mm256_set1_epi64x(PHILOX_M1);
    for (int r = 0; r < PHILOX_ROUNDS; r++) {
        __m256i hi0, lo0, hi1, lo1;
        noise_w_mulhilo(x[0], m0, &hi0, &lo0);
        noise_w_mulhilo(x[2], m1, &hi1, &lo1);
        x[0] = _mm256_xor_si256(_mm256_xor_si256(hi1, x[1]), NOISE_W_I(k0));
        x[1] = lo1;
        x[2] = _mm256_xor_si256(_mm256_xor_si256(hi0, x[3]), NOISE_W_I(k1));
        x[3] = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
}

// philox_uniform: ((float)(x >> 9) + 0.5) * 2^-23 (exact)
static inline __m256 noise_w_uniform(__m256i x) {
    __m256 f = _mm256_cvtepi32_ps(_mm256_srli_epi32(x, 9));
    return NOISE_W_MUL(NOISE_W_ADD(f, NOISE_W_C(0.5f)), NOISE_W_C(1.0f / 8388608.0f));
}

// noise_logf on 8 lanes
static inline __m256 noise_w_logf(__m256 x) {
    __m256i b = _mm256_castps_si256(x);
    __m256i e = _mm256_sub_epi32(_mm256_srli_epi32(b, 23), NOISE_W_I(127));
    __m256i mb = _mm256_and_si256(b, NOISE_W_I(0x7fffff));
    __m256i up = _mm256_cmpgt_epi32(mb, NOISE_W_I(0x3504f3));  // all ones in the lanes that take exponent -1
    __m256i ex = _mm256_blendv_epi8(NOISE_W_I(0x3f800000), NOISE_W_I(0x3f000000), up);
    __m256 m = _mm256_castsi256_ps(_mm256_or_si256(mb, ex));
    e = _mm256_sub_epi32(e, up);  // + 1 where up
    __m256 s = _mm256_div_ps(NOISE_W_SUB(m, NOISE_W_C(1.0f)), NOISE_W_ADD(m, NOISE_W_C(1.0f)));
    __m256 t = NOISE_W_MUL(s, s);
    __m256 p = NOISE_W_ADD(NOISE_W_C(NOISE_L7), NOISE_W_MUL(t, NOISE_W_C(NOISE_L9)));
    p = NOISE_W_ADD(NOISE_W_C(NOISE_L5), NOISE_W_MUL(t, p));
    p = NOISE_W_ADD(NOISE_W_C(NOISE_L3), NOISE_W_MUL(t, p));
    p = NOISE_W_MUL(t, p);
    __m256 s2 = NOISE_W_ADD(s, s);
    __m256 lm = NOISE_W_ADD(s2, NOISE_W_MUL(s2, p));
    __m256 ef = _mm256_cvtepi32_ps(e);
    return NOISE_W_ADD(NOISE_W_MUL(ef, NOISE_W_C(NOISE_LN2_HI)),
                       NOISE_W_ADD(lm, NOISE_W_MUL(ef, NOISE_W_C(NOISE_LN2_LO))));
}

// noise_sincos2pi on 8 lanes
static inline void noise_w_sincos2pi(__m256 u, __m256* sin_out, __m256* cos_out) {
    __m256 x = NOISE_W_MUL(u, NOISE_W_C(4.0f));
    __m256i q = _mm256_cvttps_epi32(x);
    __m256 f = NOISE_W_SUB(x, _mm256_cvtepi32_ps(q));
    __m256 up = _mm256_cmp_ps(f, NOISE_W_C(0.5f), _CMP_GT_OQ);
    f = _mm256_blendv_ps(f, NOISE_W_SUB(f, NOISE_W_C(1.0f)), up);
    q = _mm256_and_si256(_mm256_sub_epi32(q, _mm256_castps_si256(up)), NOISE_W_I(3));
    __m256 t = NOISE_W_MUL(f, f);
    __m256 sp = NOISE_W_ADD(NOISE_W_C(NOISE_S7), NOISE_W_MUL(t, NOISE_W_C(NOISE_S9)));
    sp = NOISE_W_ADD(NOISE_W_C(NOISE_S5), NOISE_W_MUL(t, sp));
    sp = NOISE_W_ADD(NOISE_W_C(NOISE_S3), NOISE_W_MUL(t, sp));
    sp = NOISE_W_ADD(NOISE_W_C(NOISE_S1), NOISE_W_MUL(t, sp));
    __m256 s = NOISE_W_MUL(f, sp);
    __m256 cp = NOISE_W_ADD(NOISE_W_C(NOISE_C8), NOISE_W_MUL(t, NOISE_W_C(NOISE_C10)));
    cp = NOISE_W_ADD(NOISE_W_C(NOISE_C6), NOISE_W_MUL(t, cp));
    cp = NOISE_W_ADD(NOISE_W_C(NOISE_C4), NOISE_W_MUL(t, cp));
    cp = NOISE_W_ADD(NOISE_W_C(NOISE_C2), NOISE_W_MUL(t, cp));
    __m256 c = NOISE_W_ADD(NOISE_W_C(1.0f), NOISE_W_MUL(t, cp));
    // q odd: (sin, cos) = (c, s), sign of sin from bit 1 of q, of cos from bit 1 of q + 1
    __m256 odd = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(q, NOISE_W_I(1)), NOISE_W_I(1)));
    __m256i sb = _mm256_castps_si256(_mm256_blendv_ps(s, c, odd));
    __m256i cb = _mm256_castps_si256(_mm256_blendv_ps(c, s, odd));
    __m256i two = NOISE_W_I(2);
    sb = _mm256_xor_si256(sb, _mm256_slli_epi32(_mm256_and_si256(q, two), 30));
    cb = _mm256_xor_si256(cb, _mm256_slli_epi32(_mm256_and_si256(_mm256_add_epi32(q, NOISE_W_I(1)), two), 30));
    *sin_out = _mm256_castsi256_ps(sb);
    *cos_out = _mm256_castsi256_ps(cb);
}

// noise_box_muller on 8 lanes
static inline void noise_w_box_muller(__m256i a, __m256i b, __m256* z0, __m256* z1) {
    __m256 r = _mm256_sqrt_ps(NOISE_W_MUL(NOISE_W_C(-2.0f), noise_w_logf(noise_w_uniform(a))));
    __m256 sn, cs;
    noise_w_sincos2pi(noise_w_uniform(b), &sn, &cs);
    *z0 = NOISE_W_MUL(r, cs);
    *z1 = NOISE_W_MUL(r, sn);
}

// the 32 normals of the 8 blocks q0 .. q0+7 into out (8, 4): noise_normal4 of each block
static inline void noise_block8_avx2(float* out, uint64_t q0, uint64_t seed, uint32_t rank, uint32_t step,
                                     uint32_t sample, uint32_t stream) {
    __m256i x[4];
    x[0] = _mm256_add_epi32(NOISE_W_I((uint32_t)q0), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    x[1] = NOISE_W_I(step);
    x[2] = NOISE_W_I(sample);
    x[3] = NOISE_W_I((stream << 24) | (rank & 0xffffffu));
    noise_w_philox(x, (uint32_t)seed, (uint32_t)(seed >> 32));
    __m256 z[4];
    noise_w_box_muller(x[0], x[1], &z[0], &z[1]);
    noise_w_box_muller(x[2], x[3], &z[2], &z[3]);
    // (4, 8) -> (8, 4): u_k holds blocks k and k + 4 (z0..z3 each), then the 128-bit halves in block order
    __m256 t0 = _mm256_unpacklo_ps(z[0], z[1]), t1 = _mm256_unpackhi_ps(z[0], z[1]);
    __m256 t2 = _mm256_unpacklo_ps(z[2], z[3]), t3 = _mm256_unpackhi_ps(z[2], z[3]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    _mm256_storeu_ps(out, _mm256_permute2f128_ps(u0, u1, 0x20));
    _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(u2, u3, 0x20));
    _mm256_storeu_ps(out + 16, _mm256_permute2f128_ps(u0, u1, 0x31));
    _mm256_storeu_ps(out + 24, _mm256_permute2f128_ps(u2, u3, 0x31));
}
#endif

// noise_chunk_scalar's output by the fastest path of the build: AVX-512 for whole groups of 16 blocks, AVX2 of 8
static inline void noise_chunk_host(float* out, uint64_t q0, int m, uint64_t seed, uint32_t rank, uint32_t step,
                                    uint32_t sample, uint32_t stream) {
    int j = 0;
#ifdef NOISE_HOST_AVX512
    for (; j + 16 <= m; j += 16) noise_block16_avx512(out + 4 * j, q0 + (uint64_t)j, seed, rank, step, sample, stream);
#endif
#ifdef NOISE_HOST_AVX2
    for (; j + 8 <= m; j += 8) noise_block8_avx2(out + 4 * j, q0 + (uint64_t)j, seed, rank, step, sample, stream);
#endif
    if (j < m) noise_chunk_scalar(out + 4 * j, q0 + (uint64_t)j, m - j, seed, rank, step, sample, stream);
}

// eps[i] = eps(start + i) for i in [0, n); any start (partial blocks at both ends); OpenMP over blocks
NOISE_NOCONTRACT static inline void noise_fill(float* eps, size_t n, uint64_t start, uint64_t seed, uint32_t rank,
                                               uint32_t step, uint32_t sample, uint32_t stream) {
    NOISE_NOCONTRACT_SCOPE
    if (n == 0) return;
    uint64_t end = start + n;
    uint64_t qa = (start + 3) >> 2;  // first whole block
    uint64_t qb = end >> 2;          // one past the last whole block
    if (qb < qa) {                   // [start, end) lies inside one block
        for (uint64_t i = start; i < end; i++) eps[i - start] = noise_normal(seed, rank, step, sample, stream, i);
        return;
    }
    // partial block at the start: [start, 4 qa)
    for (uint64_t i = start; i < (qa << 2); i++) eps[i - start] = noise_normal(seed, rank, step, sample, stream, i);
    // whole blocks [qa, qb)
    long long nq = (long long)(qb - qa);
    float* body = eps + ((qa << 2) - start);  // (nq, 4)
    long long nchunks = (nq + NOISE_HOST_CHUNK - 1) / NOISE_HOST_CHUNK;
    OMP_PRAGMA(parallel for schedule(static) if (nq > 4096))
    for (long long c = 0; c < nchunks; c++) {
        long long j0 = c * NOISE_HOST_CHUNK;
        int m = (int)(nq - j0 < NOISE_HOST_CHUNK ? nq - j0 : NOISE_HOST_CHUNK);
        noise_chunk_host(body + 4 * j0, qa + (uint64_t)j0, m, seed, rank, step, sample, stream);
    }
    // partial block at the end: [4 qb, end)
    for (uint64_t i = qb << 2; i < end; i++) eps[i - start] = noise_normal(seed, rank, step, sample, stream, i);
}

NOISE_NOCONTRACT static inline void noise_key_fill(float* eps, size_t n, uint64_t start, NoiseKey k) {
    noise_fill(eps, n, start, k.seed, k.rank, k.step, k.sample, k.stream);
}

// Known-answer check of this translation unit's build: 1 when the noise functions round as specified,
// 0 when the compiler changed them (e.g. FMA contraction without -ffp-contract=off). Deliberately without
// the contraction guards, so that it is compiled like any caller in the same file. The expected values are
// eps(seed 0x0123456789abcdef, rank 1, step 2, sample 3, stream SAMPLE, index 0..31) of ivon_noise.py.
static inline int noise_check_build(void) {
    static const uint32_t want[32] = {
        0x3f8949b1u, 0xbddeb6b4u, 0x3eaf1611u, 0xbf8a1ac9u, 0x3fcea8a9u, 0xbe89605bu, 0x3fb98dbfu, 0x3f01b42bu,
        0x3ec250aau, 0x3f69fe35u, 0x3df3dcc3u, 0x3c32cb76u, 0xbfb326ebu, 0xbedcf01bu, 0x3e25175du, 0x3f2bf00au,
        0x3e3391c4u, 0xbf3676deu, 0xbfc3969du, 0xbf079912u, 0xbff495ccu, 0xbee8a534u, 0xbfcc264du, 0xbe098d88u,
        0x3dac66f1u, 0x3e2dc703u, 0xbf9d93e4u, 0x3ed30a12u, 0xbf09c8bau, 0x3f486f3fu, 0x3f903771u, 0x3e761c98u,
    };
    const uint64_t seed = 0x0123456789abcdefull;
    float fill[32];
    noise_fill(fill, 32, 0, seed, 1, 2, 3, NOISE_STREAM_SAMPLE);
    int ok = 1;
    for (uint64_t q = 0; q < 8; q++) {
        float z[4];
        noise_normal4(seed, 1, 2, 3, NOISE_STREAM_SAMPLE, q, z);
        for (int l = 0; l < 4; l++) {
            ok &= noise_f2u(z[l]) == want[4 * q + l];
            ok &= noise_f2u(fill[4 * q + l]) == want[4 * q + l];
        }
    }
    return ok;
}
#endif // LLMC_NOISE_H
