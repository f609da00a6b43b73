// CPU backend: __nv_bfloat16 and __nv_bfloat162 with the conversions and operators CUDA documents.
// float -> bf16 rounds to nearest even (NaN stays a quiet NaN); bf16 -> float is exact. Arithmetic on bf16 values
// is done in fp32 and rounded once, as the CUDA device operators do.
#ifndef CUDA_CPU_BF16_H
#define CUDA_CPU_BF16_H

#include <stdint.h>
#include <string.h>
#include "cuda_cpu_defs.h"

struct __nv_bfloat16_raw { unsigned short x; };

static inline unsigned short cuda_cpu_f2bf_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x0040u);  // NaN: keep it quiet
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}

static inline float cuda_cpu_bf_bits2f(unsigned short b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

struct __nv_bfloat16 {
    unsigned short __x;
    __nv_bfloat16() = default;
    __nv_bfloat16(const __nv_bfloat16_raw& r) : __x(r.x) {}
    __nv_bfloat16(float f) : __x(cuda_cpu_f2bf_bits(f)) {}
    __nv_bfloat16(double f) : __x(cuda_cpu_f2bf_bits((float)f)) {}
    __nv_bfloat16(int i) : __x(cuda_cpu_f2bf_bits((float)i)) {}
    __nv_bfloat16(unsigned int i) : __x(cuda_cpu_f2bf_bits((float)i)) {}
    __nv_bfloat16(long long i) : __x(cuda_cpu_f2bf_bits((float)i)) {}
    __nv_bfloat16(unsigned long long i) : __x(cuda_cpu_f2bf_bits((float)i)) {}
    operator float() const { return cuda_cpu_bf_bits2f(__x); }
    operator __nv_bfloat16_raw() const { __nv_bfloat16_raw r; r.x = __x; return r; }
    __nv_bfloat16& operator=(float f) { __x = cuda_cpu_f2bf_bits(f); return *this; }
    __nv_bfloat16& operator=(double f) { __x = cuda_cpu_f2bf_bits((float)f); return *this; }
};
typedef __nv_bfloat16 nv_bfloat16;

struct __nv_bfloat162 {
    __nv_bfloat16 x, y;
    __nv_bfloat162() = default;
    __nv_bfloat162(__nv_bfloat16 a, __nv_bfloat16 b) : x(a), y(b) {}
};
typedef __nv_bfloat162 nv_bfloat162;

__host__ __device__ static inline float __bfloat162float(__nv_bfloat16 a) { return cuda_cpu_bf_bits2f(a.__x); }
__host__ __device__ static inline __nv_bfloat16 __float2bfloat16(float f) {
    __nv_bfloat16_raw r;
    r.x = cuda_cpu_f2bf_bits(f);
    return __nv_bfloat16(r);
}
__host__ __device__ static inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
__host__ __device__ static inline __nv_bfloat16 __double2bfloat16(double f) { return __float2bfloat16((float)f); }
__host__ __device__ static inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
    return __nv_bfloat162(__float2bfloat16(a), __float2bfloat16(b));
}
__host__ __device__ static inline __nv_bfloat162 __float22bfloat162_rn(float2 f) { return __floats2bfloat162_rn(f.x, f.y); }
__host__ __device__ static inline float2 __bfloat1622float2(__nv_bfloat162 a) {
    return make_float2(__bfloat162float(a.x), __bfloat162float(a.y));
}
__host__ __device__ static inline __nv_bfloat162 __bfloat162bfloat162(__nv_bfloat16 a) { return __nv_bfloat162(a, a); }
__host__ __device__ static inline __nv_bfloat16 __low2bfloat16(__nv_bfloat162 a) { return a.x; }
__host__ __device__ static inline __nv_bfloat16 __high2bfloat16(__nv_bfloat162 a) { return a.y; }
__host__ __device__ static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 a) { return a.__x; }
__host__ __device__ static inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) {
    __nv_bfloat16_raw r;
    r.x = u;
    return __nv_bfloat16(r);
}
__host__ __device__ static inline int __hisnan(__nv_bfloat16 a) { return (a.__x & 0x7fffu) > 0x7f80u; }
__host__ __device__ static inline int __hisinf(__nv_bfloat16 a) {
    return (a.__x & 0x7fffu) == 0x7f80u ? ((a.__x & 0x8000u) ? -1 : 1) : 0;
}

// arithmetic: fp32, one rounding
#define CUDA_CPU_BF16_BINOP(name, op)                                                                    \
    __host__ __device__ static inline __nv_bfloat16 name(__nv_bfloat16 a, __nv_bfloat16 b) {             \
        return __float2bfloat16(__bfloat162float(a) op __bfloat162float(b));                             \
    }
CUDA_CPU_BF16_BINOP(__hadd, +)
CUDA_CPU_BF16_BINOP(__hsub, -)
CUDA_CPU_BF16_BINOP(__hmul, *)
CUDA_CPU_BF16_BINOP(__hdiv, /)
#undef CUDA_CPU_BF16_BINOP
__host__ __device__ static inline __nv_bfloat16 __hfma(__nv_bfloat16 a, __nv_bfloat16 b, __nv_bfloat16 c) {
    return __float2bfloat16(__builtin_fmaf(__bfloat162float(a), __bfloat162float(b), __bfloat162float(c)));
}
__host__ __device__ static inline __nv_bfloat16 __hneg(__nv_bfloat16 a) { return __ushort_as_bfloat16(a.__x ^ 0x8000u); }
__host__ __device__ static inline __nv_bfloat16 __habs(__nv_bfloat16 a) { return __ushort_as_bfloat16(a.__x & 0x7fffu); }
__host__ __device__ static inline __nv_bfloat16 __hmax(__nv_bfloat16 a, __nv_bfloat16 b) {
    return __float2bfloat16(__builtin_fmaxf(__bfloat162float(a), __bfloat162float(b)));
}
__host__ __device__ static inline __nv_bfloat16 __hmin(__nv_bfloat16 a, __nv_bfloat16 b) {
    return __float2bfloat16(__builtin_fminf(__bfloat162float(a), __bfloat162float(b)));
}

static inline __nv_bfloat16 operator+(__nv_bfloat16 a, __nv_bfloat16 b) { return __hadd(a, b); }
static inline __nv_bfloat16 operator-(__nv_bfloat16 a, __nv_bfloat16 b) { return __hsub(a, b); }
static inline __nv_bfloat16 operator*(__nv_bfloat16 a, __nv_bfloat16 b) { return __hmul(a, b); }
static inline __nv_bfloat16 operator/(__nv_bfloat16 a, __nv_bfloat16 b) { return __hdiv(a, b); }
static inline __nv_bfloat16 operator-(__nv_bfloat16 a) { return __hneg(a); }
static inline __nv_bfloat16& operator+=(__nv_bfloat16& a, __nv_bfloat16 b) { return a = __hadd(a, b); }
static inline __nv_bfloat16& operator-=(__nv_bfloat16& a, __nv_bfloat16 b) { return a = __hsub(a, b); }
static inline __nv_bfloat16& operator*=(__nv_bfloat16& a, __nv_bfloat16 b) { return a = __hmul(a, b); }
static inline __nv_bfloat16& operator/=(__nv_bfloat16& a, __nv_bfloat16 b) { return a = __hdiv(a, b); }
static inline bool operator==(__nv_bfloat16 a, __nv_bfloat16 b) { return __bfloat162float(a) == __bfloat162float(b); }
static inline bool operator!=(__nv_bfloat16 a, __nv_bfloat16 b) { return __bfloat162float(a) != __bfloat162float(b); }
static inline bool operator<(__nv_bfloat16 a, __nv_bfloat16 b) { return __bfloat162float(a) < __bfloat162float(b); }
static inline bool operator>(__nv_bfloat16 a, __nv_bfloat16 b) { return __bfloat162float(a) > __bfloat162float(b); }
static inline bool operator<=(__nv_bfloat16 a, __nv_bfloat16 b) { return __bfloat162float(a) <= __bfloat162float(b); }
static inline bool operator>=(__nv_bfloat16 a, __nv_bfloat16 b) { return __bfloat162float(a) >= __bfloat162float(b); }

#endif
