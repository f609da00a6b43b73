// CPU backend: __half and __half2 (IEEE binary16) with the conversions CUDA documents; float -> half rounds to
// nearest even. Arithmetic in fp32, rounded once.
#ifndef CUDA_CPU_FP16_H
#define CUDA_CPU_FP16_H

#include <stdint.h>
#include <string.h>
#include "cuda_cpu_defs.h"

static inline unsigned short cuda_cpu_f2h_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (unsigned short)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // NaN, quiet
    if (a >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);  // >= 65520 rounds to infinity
    if (a < 0x38800000u) {  // below 2^-14: a subnormal half, q = |f| * 2^24 rounded to an integer
        uint32_t e = a >> 23;
        if (e < 102) return (unsigned short)sign;  // below 2^-25: rounds to zero
        uint32_t m = (a & 0x7fffffu) | 0x800000u, shift = 126 - e;  // |f| = m * 2^(e - 150)
        uint32_t q = m >> shift, rest = m & ((1u << shift) - 1u), halfway = 1u << (shift - 1);
        if (rest > halfway || (rest == halfway && (q & 1u))) q++;
        return (unsigned short)(sign | q);
    }
    uint32_t r = a - 0x38000000u;  // exponent bias 127 -> 15
    r += 0xfffu + ((r >> 13) & 1u);
    return (unsigned short)(sign | (r >> 13));
}

static inline float cuda_cpu_h_bits2f(unsigned short h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
    if (e == 0x1f) u = sign | 0x7f800000u | (m << 13);
    else if (e != 0) u = sign | ((e + 112u) << 23) | (m << 13);
    else {
        float f = (float)m * (1.0f / 16777216.0f);
        memcpy(&u, &f, 4);
        u |= sign;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

struct __half_raw { unsigned short x; };

struct __half {
    unsigned short __x;
    __half() = default;
    __half(const __half_raw& r) : __x(r.x) {}
    __half(float f) : __x(cuda_cpu_f2h_bits(f)) {}
    __half(double f) : __x(cuda_cpu_f2h_bits((float)f)) {}
    __half(int i) : __x(cuda_cpu_f2h_bits((float)i)) {}
    operator float() const { return cuda_cpu_h_bits2f(__x); }
    operator __half_raw() const { __half_raw r; r.x = __x; return r; }
};
typedef __half half;

struct __half2 {
    __half x, y;
    __half2() = default;
    __half2(__half a, __half b) : x(a), y(b) {}
};
typedef __half2 half2;

static inline float __half2float(__half a) { return cuda_cpu_h_bits2f(a.__x); }
static inline __half __float2half(float f) { __half_raw r; r.x = cuda_cpu_f2h_bits(f); return __half(r); }
static inline __half __float2half_rn(float f) { return __float2half(f); }
static inline __half2 __floats2half2_rn(float a, float b) { return __half2(__float2half(a), __float2half(b)); }
static inline float2 __half22float2(__half2 a) { return make_float2(__half2float(a.x), __half2float(a.y)); }
static inline unsigned short __half_as_ushort(__half a) { return a.__x; }
static inline __half __ushort_as_half(unsigned short u) { __half_raw r; r.x = u; return __half(r); }

#endif
