// CPU backend: the device math functions, intrinsics and atomics of the CUDA programming guide that are not already
// C/C++ library functions. The _rn intrinsics are IEEE operations with one round-to-nearest-even rounding, exactly
// as on the GPU; rsqrtf, __expf, __logf, __fdividef and the other approximate forms are computed correctly rounded
// here (the GPU's may differ by a few ulp). Atomics are real atomics: blocks run in parallel on the OS threads.
#ifndef CUDA_CPU_MATH_H
#define CUDA_CPU_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include "cuda_cpu_defs.h"
#include "cuda_bf16.h"
#include "cuda_fp16.h"

// integer and floating min/max as CUDA declares them for host and device code
#define CUDA_CPU_MINMAX(T)                                              \
    static inline T min(T a, T b) { return a < b ? a : b; }             \
    static inline T max(T a, T b) { return a > b ? a : b; }
CUDA_CPU_MINMAX(int)
CUDA_CPU_MINMAX(unsigned int)
CUDA_CPU_MINMAX(long)
CUDA_CPU_MINMAX(unsigned long)
CUDA_CPU_MINMAX(long long)
CUDA_CPU_MINMAX(unsigned long long)
#undef CUDA_CPU_MINMAX
static inline unsigned int min(int a, unsigned int b) { return min((unsigned int)a, b); }
static inline unsigned int min(unsigned int a, int b) { return min(a, (unsigned int)b); }
static inline unsigned int max(int a, unsigned int b) { return max((unsigned int)a, b); }
static inline unsigned int max(unsigned int a, int b) { return max(a, (unsigned int)b); }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }

static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float rcbrtf(float x) { return 1.0f / cbrtf(x); }
static inline float normcdff(float x) { return 0.5f * erfcf(-x * 0.70710678118654752f); }
static inline void sincospif(float x, float* s, float* c) { *s = sinf((float)M_PI * x); *c = cosf((float)M_PI * x); }
static inline float __saturatef(float x) { return x != x ? 0.0f : (x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x)); }
static inline float __fdividef(float x, float y) { return x / y; }
// __expf, __logf, __sinf, __cosf, __powf, __sincosf, ...: glibc declares these names as its own exact functions

// one IEEE rounding each (no contraction: the project builds with -ffp-contract=off)
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __frcp_rn(float a) { return 1.0f / a; }
static inline float __fsqrt_rn(float a) { return __builtin_sqrtf(a); }
static inline float __fmaf_rn(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __fma_rn(double a, double b, double c) { return __builtin_fma(a, b, c); }

static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
static inline float __uint_as_float(unsigned int i) { float f; memcpy(&f, &i, 4); return f; }
static inline unsigned int __float_as_uint(float f) { unsigned int i; memcpy(&i, &f, 4); return i; }
static inline double __longlong_as_double(long long i) { double f; memcpy(&f, &i, 8); return f; }
static inline long long __double_as_longlong(double f) { long long i; memcpy(&i, &f, 8); return i; }
static inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
static inline int __float2int_rz(float x) { return (int)x; }
static inline unsigned int __float2uint_rn(float x) { return (unsigned int)nearbyintf(x); }
static inline float __int2float_rn(int x) { return (float)x; }

static inline int __popc(unsigned int x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
static inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }
static inline unsigned int __brev(unsigned int x) {
    unsigned int r = 0;
    for (int i = 0; i < 32; i++) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}
static inline unsigned int __umulhi(unsigned int a, unsigned int b) { return (unsigned int)(((uint64_t)a * b) >> 32); }
static inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
static inline int __mulhi(int a, int b) { return (int)(((int64_t)a * b) >> 32); }

// cache-hinted loads and stores: plain accesses
template <class T> static inline T __ldg(const T* p) { return *p; }
template <class T> static inline T __ldcg(const T* p) { return *p; }
template <class T> static inline T __ldca(const T* p) { return *p; }
template <class T> static inline T __ldcs(const T* p) { return *p; }
template <class T> static inline T __ldlu(const T* p) { return *p; }
template <class T> static inline T __ldcv(const T* p) { return *p; }
template <class T> static inline void __stcg(T* p, T v) { *p = v; }
template <class T> static inline void __stcs(T* p, T v) { *p = v; }
template <class T> static inline void __stwb(T* p, T v) { *p = v; }
template <class T> static inline void __stwt(T* p, T v) { *p = v; }

static inline void __threadfence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_block(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_system(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline long long clock64(void) { return (long long)__builtin_ia32_rdtsc(); }

// ---------------------------------------------------------------------------------------------
// atomics (they return the old value)

#define CUDA_CPU_ATOMIC_INT(T)                                                                                   \
    static inline T atomicAdd(T* p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }                 \
    static inline T atomicSub(T* p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }                 \
    static inline T atomicExch(T* p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }               \
    static inline T atomicAnd(T* p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); }                 \
    static inline T atomicOr(T* p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }                   \
    static inline T atomicXor(T* p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST); }                 \
    static inline T atomicCAS(T* p, T cmp, T v) {                                                                \
        __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                      \
        return cmp;                                                                                              \
    }                                                                                                            \
    static inline T atomicMax(T* p, T v) {                                                                       \
        T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);                                                            \
        while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) { \
        }                                                                                                        \
        return old;                                                                                              \
    }                                                                                                            \
    static inline T atomicMin(T* p, T v) {                                                                       \
        T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);                                                            \
        while (old > v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) { \
        }                                                                                                        \
        return old;                                                                                              \
    }
CUDA_CPU_ATOMIC_INT(int)
CUDA_CPU_ATOMIC_INT(unsigned int)
CUDA_CPU_ATOMIC_INT(unsigned long long)
#undef CUDA_CPU_ATOMIC_INT
static inline unsigned short atomicCAS(unsigned short* p, unsigned short cmp, unsigned short v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return cmp;
}
static inline unsigned int atomicInc(unsigned int* p, unsigned int lim) {
    unsigned int old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
    while (!__atomic_compare_exchange_n(p, &old, old >= lim ? 0u : old + 1u, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
    return old;
}

// floating atomics: compare-and-swap on the bits, the operation rounded once as on the GPU
template <class F, class U, class Op> static inline F cuda_cpu_atomic_float(F* p, Op op) {
    static_assert(sizeof(F) == sizeof(U), "atomic width");
    U* q = (U*)p;
    U old = __atomic_load_n(q, __ATOMIC_SEQ_CST), nv;
    do {
        F f;
        memcpy(&f, &old, sizeof(F));
        F r = op(f);
        memcpy(&nv, &r, sizeof(F));
    } while (!__atomic_compare_exchange_n(q, &old, nv, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    F f;
    memcpy(&f, &old, sizeof(F));
    return f;
}
static inline float atomicAdd(float* p, float v) {
    return cuda_cpu_atomic_float<float, uint32_t>(p, [v](float a) { return a + v; });
}
static inline double atomicAdd(double* p, double v) {
    return cuda_cpu_atomic_float<double, uint64_t>(p, [v](double a) { return a + v; });
}
static inline float atomicExch(float* p, float v) {
    return cuda_cpu_atomic_float<float, uint32_t>(p, [v](float) { return v; });
}
static inline float atomicMax(float* p, float v) {
    return cuda_cpu_atomic_float<float, uint32_t>(p, [v](float a) { return fmaxf(a, v); });
}
static inline float atomicMin(float* p, float v) {
    return cuda_cpu_atomic_float<float, uint32_t>(p, [v](float a) { return fminf(a, v); });
}
static inline __nv_bfloat16 atomicAdd(__nv_bfloat16* p, __nv_bfloat16 v) {
    return cuda_cpu_atomic_float<__nv_bfloat16, uint16_t>(p, [v](__nv_bfloat16 a) { return __hadd(a, v); });
}
static inline __half atomicAdd(__half* p, __half v) {
    return cuda_cpu_atomic_float<__half, uint16_t>(
        p, [v](__half a) { return __float2half(__half2float(a) + __half2float(v)); });
}

#endif
