// Philox4x32-10 counter-based RNG (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as
// 1, 2, 3", SC 2011) plus uniform and normal transforms. Every draw is a pure function of a 128-bit
// counter and a 64-bit key: no state to carry, the same bits on CPU, GPU and in Python.
// All functions are `static inline` and, under nvcc, __host__ __device__.
#ifndef LLMC_PHILOX_H
#define LLMC_PHILOX_H

#include <stdint.h>
#include <math.h>

#ifdef __CUDACC__
#define PHILOX_FN __host__ __device__ static inline
#else
#define PHILOX_FN static inline
#endif

#define PHILOX_M0 0xD2511F53u  // round multipliers
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u  // key schedule (Weyl) increments
#define PHILOX_W1 0xBB67AE85u
#define PHILOX_ROUNDS 10

// one Philox round: two 32x32->64 multiplies, the high halves mixed with the other words and the key
PHILOX_FN void philox4x32_round(uint32_t x[4], uint32_t k0, uint32_t k1) {
    uint64_t p0 = (uint64_t)PHILOX_M0 * x[0];
    uint64_t p1 = (uint64_t)PHILOX_M1 * x[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t y0 = hi1 ^ x[1] ^ k0;
    uint32_t y2 = hi0 ^ x[3] ^ k1;
    x[0] = y0;
    x[1] = lo1;
    x[2] = y2;
    x[3] = lo0;
}

// Philox4x32-10: out = bijection_key(ctr). out may alias ctr.
PHILOX_FN void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t x[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < PHILOX_ROUNDS; r++) {
        philox4x32_round(x, k0, k1);
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = x[0];
    out[1] = x[1];
    out[2] = x[2];
    out[3] = x[3];
}

// uint32 -> uniform float in the open interval (0, 1): u = ((x >> 9) + 0.5) * 2^-23.
// The top 23 bits are used so that every value is exact in fp32 (min 2^-24, max 1 - 2^-24);
// logf(u) is therefore always finite.
PHILOX_FN float philox_uniform(uint32_t x) {
    return ((float)(x >> 9) + 0.5f) * (1.0f / 8388608.0f);
}

// Box-Muller, fp32 math: r = sqrt(-2 ln u1), z0 = r cos(2 pi u2), z1 = r sin(2 pi u2).
// u1, u2 in (0, 1). z0, z1 are independent standard normals. CPU libm and CUDA's logf/cosf/sinf
// may differ in the last ulp, so normals agree across targets to ~1e-6 relative, not bitwise.
PHILOX_FN void philox_box_muller(float u1, float u2, float* z0, float* z1) {
    const float two_pi = 6.28318530717958647692f;
    float r = sqrtf(-2.0f * logf(u1));
    float a = two_pi * u2;
    *z0 = r * cosf(a);
    *z1 = r * sinf(a);
}

// 4 standard normals from one Philox block: key = (key0, key1), ctr = (c0, c1, c2, c3).
// out[0], out[1] from words 0, 1; out[2], out[3] from words 2, 3.
PHILOX_FN void philox_normal4(uint32_t key0, uint32_t key1, uint32_t c0, uint32_t c1, uint32_t c2,
                              uint32_t c3, float out[4]) {
    uint32_t ctr[4] = {c0, c1, c2, c3};
    uint32_t key[2] = {key0, key1};
    uint32_t r[4];
    philox4x32_10(ctr, key, r);
    philox_box_muller(philox_uniform(r[0]), philox_uniform(r[1]), &out[0], &out[1]);
    philox_box_muller(philox_uniform(r[2]), philox_uniform(r[3]), &out[2], &out[3]);
}

// 4 uniforms in (0, 1) from one Philox block, same counter/key layout as philox_normal4
PHILOX_FN void philox_uniform4(uint32_t key0, uint32_t key1, uint32_t c0, uint32_t c1, uint32_t c2,
                               uint32_t c3, float out[4]) {
    uint32_t ctr[4] = {c0, c1, c2, c3};
    uint32_t key[2] = {key0, key1};
    uint32_t r[4];
    philox4x32_10(ctr, key, r);
    for (int i = 0; i < 4; i++) out[i] = philox_uniform(r[i]);
}

#endif // LLMC_PHILOX_H
