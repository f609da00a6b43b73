// CPU backend: the CUDA C++ qualifiers as host C++, and the built-in vector types (CUDA programming guide,
// "Built-in Vector Types"). Included by every other header of dev/cuda_cpu/include.
#ifndef CUDA_CPU_DEFS_H
#define CUDA_CPU_DEFS_H

#ifndef __cplusplus
#error "the CPU backend of the CUDA sources is C++17 (g++ -std=c++17)"
#endif

#define __host__
#define __device__
#define __global__
#define __constant__
#define __managed__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __align__(n) alignas(n)
#define __launch_bounds__(...)
#define __grid_constant__
// static shared memory: one instance per OS thread, and an OS thread runs one block at a time, so each block
// sees its own copy, NaN-filled at its start (CUDA_CPU_SHARED_POISON, added by dev/cuda_cpu/cu2cpp.py; dynamic
// shared memory, `extern __shared__`, is rewritten there too)
#define __shared__ static thread_local

#define CUDA_CPU_VEC1(T, name) struct __align__(sizeof(T)) name { T x; };
#define CUDA_CPU_VEC2(T, name, al) struct __align__(al) name { T x, y; };
#define CUDA_CPU_VEC3(T, name) struct name { T x, y, z; };
#define CUDA_CPU_VEC4(T, name, al) struct __align__(al) name { T x, y, z, w; };
#define CUDA_CPU_VECS(T, base, al2, al4)                                                                  \
    CUDA_CPU_VEC1(T, base##1) CUDA_CPU_VEC2(T, base##2, al2) CUDA_CPU_VEC3(T, base##3)                    \
    CUDA_CPU_VEC4(T, base##4, al4)                                                                        \
    static inline base##1 make_##base##1(T x) { return base##1{x}; }                                      \
    static inline base##2 make_##base##2(T x, T y) { return base##2{x, y}; }                              \
    static inline base##3 make_##base##3(T x, T y, T z) { return base##3{x, y, z}; }                      \
    static inline base##4 make_##base##4(T x, T y, T z, T w) { return base##4{x, y, z, w}; }
CUDA_CPU_VECS(signed char, char, 2, 4)
CUDA_CPU_VECS(unsigned char, uchar, 2, 4)
CUDA_CPU_VECS(short, short, 4, 8)
CUDA_CPU_VECS(unsigned short, ushort, 4, 8)
CUDA_CPU_VECS(int, int, 8, 16)
CUDA_CPU_VECS(unsigned int, uint, 8, 16)
CUDA_CPU_VECS(long long, longlong, 16, 16)
CUDA_CPU_VECS(unsigned long long, ulonglong, 16, 16)
CUDA_CPU_VECS(float, float, 8, 16)
CUDA_CPU_VECS(double, double, 16, 16)
#undef CUDA_CPU_VECS
#undef CUDA_CPU_VEC1
#undef CUDA_CPU_VEC2
#undef CUDA_CPU_VEC3
#undef CUDA_CPU_VEC4

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

#endif
