// CPU backend: the GEMM under cublas_v2.h and cublasLt.h, and the cuBLAS types both APIs use (cublasStatus_t,
// cublasOperation_t, cublasComputeType_t; names and values as in the CUDA toolkit).
//
// Numerics, the same for every entry point, blocking and thread count. Matrices are column-major; for each batch
// item and each element (i, j) of D:
//   1. elements of A, B, C, bias and aux are converted to fp32 exactly (fp32, bf16 or fp16 storage);
//   2. acc = 0, then acc = fmaf(op(A)(i,p), op(B)(p,j), acc) for p = 0, 1, ..., k-1 in this order: one fp32
//      accumulator, one rounding per step (bf16 and fp16 products are exact in fp32, so for them this is the sum of
//      the exact products rounded after each addition);
//   3. t = alpha * acc, then t = t + beta * c when beta != 0; beta == 0 means C is not read (NaN or Inf in C does
//      not propagate). When alpha == 0 or k == 0, A and B are not read and t = beta * c (0 when beta == 0);
//   4. epilogue, in this order: t = t + bias[i] (BIAS); aux(i,j) = t rounded to the aux type (GELU_AUX);
//      t = gelu(t) (GELU); t = t * gelu'(aux(i,j)) (DGELU); gelu is the tanh approximation below;
//   5. D(i,j) = t rounded once to D's type (round to nearest even for bf16 and fp16, NaN stays NaN).
// BGRADA / BGRADB write bias[r] = the fp32 sum over p = 0..k-1, in order, of op(A)(r,p) / op(B)(p,r), rounded once.
// Every step is one fp32 operation rounded once; the only fused operation is the explicit fmaf of step 2 (the
// backend is built with -ffp-contract=off so that the compiler adds no others). Each output element is computed by
// one thread in this order, so the result is bitwise the same for any number of OpenMP threads.
//
// Implementation: the outputs are cut into tiles (at most 256 x 264) that the OpenMP threads take in any order. A
// thread converts and packs the tile's rows of op(A) and columns of op(B) into fp32 slabs (KC deep, MR-row and
// NR-column panels), a register-tile kernel (AVX-512 when available, else plain C++ with fmaf) carries the tile's
// fp32 accumulators from one slab to the next, and the epilogue runs on the tile after its last slab.
#ifndef CUDA_CPU_GEMM_H
#define CUDA_CPU_GEMM_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __AVX512F__
#include <immintrin.h>
#endif
#include "../../../llmc/sanitize.h"  // (relative to this header: no -I needed)
#include <library_types.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_ARCH_MISMATCH = 8,
    CUBLAS_STATUS_MAPPING_ERROR = 11,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_INTERNAL_ERROR = 14,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
    CUBLAS_STATUS_LICENSE_ERROR = 16
} cublasStatus_t;

typedef enum {
    CUBLAS_OP_N = 0,
    CUBLAS_OP_T = 1,
    CUBLAS_OP_C = 2,
    CUBLAS_OP_HERMITAN = 2,
    CUBLAS_OP_CONJG = 3
} cublasOperation_t;

typedef enum {
    CUBLAS_COMPUTE_16F = 64,
    CUBLAS_COMPUTE_16F_PEDANTIC = 65,
    CUBLAS_COMPUTE_32F = 68,
    CUBLAS_COMPUTE_32F_PEDANTIC = 69,
    CUBLAS_COMPUTE_32F_FAST_16F = 74,
    CUBLAS_COMPUTE_32F_FAST_16BF = 75,
    CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
    CUBLAS_COMPUTE_32F_EMULATED_16BFX9 = 78,
    CUBLAS_COMPUTE_64F = 70,
    CUBLAS_COMPUTE_64F_PEDANTIC = 71,
    CUBLAS_COMPUTE_64F_EMULATED_FIXEDPOINT = 79,
    CUBLAS_COMPUTE_32I = 72,
    CUBLAS_COMPUTE_32I_PEDANTIC = 73
} cublasComputeType_t;

typedef enum { CUBLAS_POINTER_MODE_HOST = 0, CUBLAS_POINTER_MODE_DEVICE = 1 } cublasPointerMode_t;

inline const char* cublasGetStatusName(cublasStatus_t status) {
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

inline const char* cublasGetStatusString(cublasStatus_t status) {
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    case CUBLAS_STATUS_LICENSE_ERROR: return "an error was detected when checking the current licensing";
    }
    return "unknown status";
}

namespace cuda_cpu_gemm {

constexpr int MR = 32;                          // rows of a register tile (two zmm of fp32)
constexpr int NR = 12;                          // columns of a register tile
constexpr int KC = 256;                         // depth of a packed slab
constexpr int TILE_M = 8 * MR;                  // rows of an output tile (256)
constexpr int TILE_N = 22 * NR;                 // columns of an output tile (264)
// smaller products run on the calling thread: a parallel region costs more than it saves, and far more when the
// cores are shared and a worker thread waits for the OS to run it
constexpr int64_t PARALLEL_MIN = (int64_t)1 << 23;  // multiply-adds (about 50 us on one core)
constexpr uint64_t ALGO_TAG = 0x6375646163707567ull;  // marks a cublasLtMatmulAlgo_t made by this backend

// one line on stderr: "cuda_cpu: FUNCTION: message"
inline void report(const char* fn, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
inline void report(const char* fn, const char* fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "cuda_cpu: %s: %s\n", fn, msg);
}

inline const char* type_name(int t) {
    switch (t) {
    case CUDA_R_16F: return "CUDA_R_16F";
    case CUDA_C_16F: return "CUDA_C_16F";
    case CUDA_R_16BF: return "CUDA_R_16BF";
    case CUDA_C_16BF: return "CUDA_C_16BF";
    case CUDA_R_32F: return "CUDA_R_32F";
    case CUDA_C_32F: return "CUDA_C_32F";
    case CUDA_R_64F: return "CUDA_R_64F";
    case CUDA_C_64F: return "CUDA_C_64F";
    case CUDA_R_8I: return "CUDA_R_8I";
    case CUDA_C_8I: return "CUDA_C_8I";
    case CUDA_R_8U: return "CUDA_R_8U";
    case CUDA_R_32I: return "CUDA_R_32I";
    case CUDA_R_32U: return "CUDA_R_32U";
    case CUDA_R_8F_E4M3: return "CUDA_R_8F_E4M3";
    case CUDA_R_8F_E5M2: return "CUDA_R_8F_E5M2";
    }
    return "an unknown cudaDataType";
}

inline const char* compute_type_name(int t) {
    switch (t) {
    case CUBLAS_COMPUTE_16F: return "CUBLAS_COMPUTE_16F";
    case CUBLAS_COMPUTE_16F_PEDANTIC: return "CUBLAS_COMPUTE_16F_PEDANTIC";
    case CUBLAS_COMPUTE_32F: return "CUBLAS_COMPUTE_32F";
    case CUBLAS_COMPUTE_32F_PEDANTIC: return "CUBLAS_COMPUTE_32F_PEDANTIC";
    case CUBLAS_COMPUTE_32F_FAST_16F: return "CUBLAS_COMPUTE_32F_FAST_16F";
    case CUBLAS_COMPUTE_32F_FAST_16BF: return "CUBLAS_COMPUTE_32F_FAST_16BF";
    case CUBLAS_COMPUTE_32F_FAST_TF32: return "CUBLAS_COMPUTE_32F_FAST_TF32";
    case CUBLAS_COMPUTE_32F_EMULATED_16BFX9: return "CUBLAS_COMPUTE_32F_EMULATED_16BFX9";
    case CUBLAS_COMPUTE_64F: return "CUBLAS_COMPUTE_64F";
    case CUBLAS_COMPUTE_64F_PEDANTIC: return "CUBLAS_COMPUTE_64F_PEDANTIC";
    case CUBLAS_COMPUTE_64F_EMULATED_FIXEDPOINT: return "CUBLAS_COMPUTE_64F_EMULATED_FIXEDPOINT";
    case CUBLAS_COMPUTE_32I: return "CUBLAS_COMPUTE_32I";
    case CUBLAS_COMPUTE_32I_PEDANTIC: return "CUBLAS_COMPUTE_32I_PEDANTIC";
    }
    return "an unknown cublasComputeType_t";
}

// storage types of the matrices and vectors: fp32, bf16, fp16
inline bool type_supported(int t) { return t == CUDA_R_32F || t == CUDA_R_16BF || t == CUDA_R_16F; }
inline int type_size(int t) { return t == CUDA_R_32F ? 4 : 2; }

// the fp32 compute types whose numerics are the ones above (the pedantic variant promises exactly these)
inline bool compute_supported(int t) { return t == CUBLAS_COMPUTE_32F || t == CUBLAS_COMPUTE_32F_PEDANTIC; }

// checks the compute type; the FAST / EMULATED variants would round the inputs (to tf32, bf16, fp16), so they are
// refused rather than computed as plain fp32
inline cublasStatus_t check_compute_type(const char* fn, int t) {
    if (compute_supported(t)) return CUBLAS_STATUS_SUCCESS;
    report(fn, "compute type %d (%s) is not implemented by the CPU backend (only CUBLAS_COMPUTE_32F and "
               "CUBLAS_COMPUTE_32F_PEDANTIC)", t, compute_type_name(t));
    return CUBLAS_STATUS_NOT_SUPPORTED;
}

template <typename T> inline float to_f32(T x);
template <> inline float to_f32<float>(float x) { return x; }
template <> inline float to_f32<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <> inline float to_f32<__half>(__half x) { return __half2float(x); }
template <typename T> inline T from_f32(float x);
template <> inline float from_f32<float>(float x) { return x; }
template <> inline __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <> inline __half from_f32<__half>(float x) { return __float2half(x); }

template <typename T> inline void load_seg_t(const void* src, int64_t off, float* dst, int n) {
    const T* s = (const T*)src + off;
#pragma omp simd
    for (int i = 0; i < n; i++) dst[i] = to_f32<T>(s[i]);
}
template <typename T> inline void store_seg_t(void* dst, int64_t off, const float* src, int n) {
    T* d = (T*)dst + off;
#pragma omp simd
    for (int i = 0; i < n; i++) d[i] = from_f32<T>(src[i]);
}

// dst[i] = src[off + i] in fp32, i < n (src of storage type t)
inline void load_seg(int t, const void* src, int64_t off, float* dst, int n) {
    if (t == CUDA_R_32F) load_seg_t<float>(src, off, dst, n);
    else if (t == CUDA_R_16BF) load_seg_t<__nv_bfloat16>(src, off, dst, n);
    else load_seg_t<__half>(src, off, dst, n);
}
// dst[off + i] = src[i] rounded to storage type t, i < n
inline void store_seg(int t, void* dst, int64_t off, const float* src, int n) {
    if (t == CUDA_R_32F) store_seg_t<float>(dst, off, src, n);
    else if (t == CUDA_R_16BF) store_seg_t<__nv_bfloat16>(dst, off, src, n);
    else store_seg_t<__half>(dst, off, src, n);
}

// GELU, tanh approximation, and its derivative (the formulas and operation order of train_gpt2.cu's kernels)
constexpr float GELU_S = 0.7978845608028654f;  // sqrt(2/pi)
inline float gelu(float x) {
    float u = GELU_S * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}
inline float gelu_grad(float x) {
    float u = GELU_S * (x + 0.044715f * x * x * x);
    float th = tanhf(u);
    float du = GELU_S * (1.0f + 3.0f * 0.044715f * x * x);
    return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
}

// a column-major operand: element (r, c) of batch item b at p[b * stride + r + c * ld]
struct Matrix {
    const void* p;
    int type;
    int64_t ld, stride;
};

// one (batched) product, checked by the API layer: shapes, leading dimensions, types and pointers are valid
struct Gemm {
    int64_t m, n, k, batch;
    bool ta, tb;            // op(A) = A^T, op(B) = B^T
    Matrix a, b, c;         // c.p is not read when beta == 0
    void* d;                // D: same type as C
    int64_t ldd, sd;
    int dtype;
    float alpha, beta;
    const void* bias;       // BIAS: added to row i; nullptr when none
    int bias_type;
    int64_t bias_stride;    // between batch items
    void* aux;              // GELU_AUX output or DGELU input (m x n, aux_ld); nullptr when none
    int aux_type;
    int64_t aux_ld, aux_stride;
    bool aux_out, gelu, dgelu;
    int bgrad;              // 0 none, 'A' or 'B': bias gradient of op(A) rows / op(B) columns into bgrad_out
    void* bgrad_out;
    int bgrad_type;
};

inline Gemm gemm_init() {
    Gemm g;
    memset(&g, 0, sizeof(g));
    g.batch = 1;
    g.alpha = 1.0f;
    return g;
}

inline int max_threads() {
#ifdef _OPENMP
    return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    return 1;
#endif
}
// 64-byte aligned fp32 buffer, grown on demand, kept for the life of the thread
struct Workspace {
    float* p = nullptr;
    size_t len = 0;
    float* get(size_t n) {
        if (n > len) {
            free(p);
            len = 0;
            size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
            p = (float*)aligned_alloc(64, bytes);
            if (p == nullptr) return nullptr;
            len = n;
        }
        return p;
    }
    ~Workspace() { free(p); }
};
inline Workspace& thread_workspace() {
    static thread_local Workspace w;
    return w;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// Packs rows [i0, i0 + rows) x depth [p0, p0 + kc) of op(A) into one MR-row panel: dst[p * MR + i]; rows past
// `rows` are zero. A(i, p) is a[i + p * lda], or a[p + i * lda] when ta.
template <typename T>
inline void pack_a(float* __restrict dst, const T* a, int64_t lda, bool ta, int64_t i0, int rows, int64_t p0,
                   int kc) {
    if (!ta) {
        for (int p = 0; p < kc; p++) {
            const T* s = a + i0 + (p0 + p) * lda;
            float* d = dst + p * MR;
            if (rows == MR) {
#pragma omp simd
                for (int i = 0; i < MR; i++) d[i] = to_f32<T>(s[i]);
            } else {
                for (int i = 0; i < rows; i++) d[i] = to_f32<T>(s[i]);
                for (int i = rows; i < MR; i++) d[i] = 0.0f;
            }
        }
        return;
    }
    // depth is contiguous: transpose 16 depths at a time so each source row segment is used whole
    for (int q = 0; q < kc; q += 16) {
        int qe = q + 16 < kc ? q + 16 : kc;
        for (int i = 0; i < rows; i++) {
            const T* s = a + p0 + (i0 + i) * lda;
            for (int p = q; p < qe; p++) dst[p * MR + i] = to_f32<T>(s[p]);
        }
    }
    for (int p = 0; p < kc; p++)
        for (int i = rows; i < MR; i++) dst[p * MR + i] = 0.0f;
}

// Packs depth [p0, p0 + kc) x columns [j0, j0 + cols) of op(B) into one NR-column panel: dst[p * NR + j]; columns
// past `cols` are zero. B(p, j) is b[p + j * ldb], or b[j + p * ldb] when tb.
template <typename T>
inline void pack_b(float* __restrict dst, const T* b, int64_t ldb, bool tb, int64_t j0, int cols, int64_t p0,
                   int kc) {
    if (tb) {
        for (int p = 0; p < kc; p++) {
            const T* s = b + j0 + (p0 + p) * ldb;
            float* d = dst + p * NR;
            if (cols == NR) {
#pragma omp simd
                for (int j = 0; j < NR; j++) d[j] = to_f32<T>(s[j]);
            } else {
                for (int j = 0; j < cols; j++) d[j] = to_f32<T>(s[j]);
                for (int j = cols; j < NR; j++) d[j] = 0.0f;
            }
        }
        return;
    }
    for (int q = 0; q < kc; q += 16) {
        int qe = q + 16 < kc ? q + 16 : kc;
        for (int j = 0; j < cols; j++) {
            const T* s = b + p0 + (j0 + j) * ldb;
            for (int p = q; p < qe; p++) dst[p * NR + j] = to_f32<T>(s[p]);
        }
    }
    for (int p = 0; p < kc; p++)
        for (int j = cols; j < NR; j++) dst[p * NR + j] = 0.0f;
}

// the regions kernel() reads and writes: both packed panels, the NR columns of the tile (a no-op without ASan)
inline void kernel_check(int kc, const float* ap, const float* bp, const float* c, int64_t ldc) {
#ifdef LLMC_ASAN
    sanitize_check_region("cuda_cpu_gemm::kernel", "packed A panel", ap, (size_t)kc * MR * sizeof(float));
    sanitize_check_region("cuda_cpu_gemm::kernel", "packed B panel", bp, (size_t)kc * NR * sizeof(float));
    for (int j = 0; j < NR; j++)
        sanitize_check_region("cuda_cpu_gemm::kernel", "accumulator column", c + j * ldc, MR * sizeof(float));
#else
    (void)kc; (void)ap; (void)bp; (void)c; (void)ldc;
#endif
}

// acc (MR x NR tile, column-major, ld ldc) = (first ? 0 : acc) accumulated over kc depths of one A panel and one
// B panel: acc(i, j) = fmaf(ap[p * MR + i], bp[p * NR + j], acc(i, j)) for p in order.
#ifdef __AVX512F__
// LLMC_NO_SANITIZE: kernel_check covers its regions (llmc/sanitize.h)
LLMC_NO_SANITIZE inline void kernel(int kc, const float* __restrict ap, const float* __restrict bp,
                                             float* __restrict c, int64_t ldc, bool first) {
    __m512 c0[NR], c1[NR];
#pragma GCC unroll 12
    for (int j = 0; j < NR; j++) {
        c0[j] = first ? _mm512_setzero_ps() : _mm512_load_ps(c + j * ldc);
        c1[j] = first ? _mm512_setzero_ps() : _mm512_load_ps(c + j * ldc + 16);
    }
    for (int p = 0; p < kc; p++) {
        __m512 a0 = _mm512_load_ps(ap + p * MR), a1 = _mm512_load_ps(ap + p * MR + 16);
        const float* b = bp + p * NR;
#pragma GCC unroll 12
        for (int j = 0; j < NR; j++) {
            __m512 bj = _mm512_set1_ps(b[j]);
            c0[j] = _mm512_fmadd_ps(a0, bj, c0[j]);
            c1[j] = _mm512_fmadd_ps(a1, bj, c1[j]);
        }
    }
#pragma GCC unroll 12
    for (int j = 0; j < NR; j++) {
        _mm512_store_ps(c + j * ldc, c0[j]);
        _mm512_store_ps(c + j * ldc + 16, c1[j]);
    }
}
#else
// LLMC_NO_SANITIZE: kernel_check covers its regions (llmc/sanitize.h)
LLMC_NO_SANITIZE inline void kernel(int kc, const float* __restrict ap, const float* __restrict bp,
                                             float* __restrict c, int64_t ldc, bool first) {
    float t[NR][MR];
    for (int j = 0; j < NR; j++)
        for (int i = 0; i < MR; i++) t[j][i] = first ? 0.0f : c[j * ldc + i];
    for (int p = 0; p < kc; p++)
        for (int j = 0; j < NR; j++)
            for (int i = 0; i < MR; i++) t[j][i] = fmaf(ap[p * MR + i], bp[p * NR + j], t[j][i]);
    for (int j = 0; j < NR; j++)
        for (int i = 0; i < MR; i++) c[j * ldc + i] = t[j][i];
}
#endif

// Steps 3-5 of the numerics for rows [i0, i0 + rows) x columns [j0, j0 + cols) of batch item bi; acc(i, j) is at
// acc[(i - i0) + (j - j0) * ldacc], or acc == nullptr when there is no product (alpha == 0 or k == 0).
inline void epilogue(const Gemm& g, int64_t bi, const float* acc, int64_t ldacc, int64_t i0, int rows, int64_t j0,
                     int cols) {
    float t[TILE_M], x[TILE_M], bias[TILE_M];
    if (g.bias != nullptr) load_seg(g.bias_type, g.bias, bi * g.bias_stride + i0, bias, rows);
    const float alpha = g.alpha, beta = g.beta;
    for (int j = 0; j < cols; j++) {
        int64_t col = j0 + j;
        if (acc != nullptr) {
            const float* a = acc + j * ldacc;
#pragma omp simd
            for (int i = 0; i < rows; i++) t[i] = alpha * a[i];
        }
        if (beta != 0.0f) {
            load_seg(g.c.type, g.c.p, bi * g.c.stride + i0 + col * g.c.ld, x, rows);
            if (acc != nullptr) {
#pragma omp simd
                for (int i = 0; i < rows; i++) t[i] = t[i] + beta * x[i];
            } else {
#pragma omp simd
                for (int i = 0; i < rows; i++) t[i] = beta * x[i];
            }
        } else if (acc == nullptr) {
            for (int i = 0; i < rows; i++) t[i] = 0.0f;
        }
        if (g.bias != nullptr) {
#pragma omp simd
            for (int i = 0; i < rows; i++) t[i] = t[i] + bias[i];
        }
        int64_t aux_off = bi * g.aux_stride + i0 + col * g.aux_ld;
        if (g.aux_out) store_seg(g.aux_type, g.aux, aux_off, t, rows);
        if (g.gelu)
            for (int i = 0; i < rows; i++) t[i] = gelu(t[i]);
        if (g.dgelu) {
            load_seg(g.aux_type, g.aux, aux_off, x, rows);
            for (int i = 0; i < rows; i++) t[i] = t[i] * gelu_grad(x[i]);
        }
        store_seg(g.dtype, g.d, bi * g.sd + i0 + col * g.ldd, t, rows);
    }
}

// output tiles: mt x nt (multiples of MR, NR), tm x tn of them per batch item
struct Tiling {
    int64_t mt, nt, tm, tn;
    size_t floats() const { return (size_t)(mt * nt + (mt + nt) * KC); }  // accumulators, A slab, B slab
};

// even tiles of at most TILE_M x TILE_N; smaller ones (down to 128 x 132) while there are fewer than two per thread
inline Tiling make_tiling(int64_t m, int64_t n, int64_t batch, int nth) {
    auto split = [](int64_t len, int64_t most, int64_t unit, int64_t* count) {
        int64_t t = ceil_div(ceil_div(len, ceil_div(len, most)), unit) * unit;
        *count = ceil_div(len, t);
        return t;
    };
    Tiling t;
    int64_t mmax = TILE_M, nmax = TILE_N;
    for (;;) {
        t.mt = split(m, mmax, MR, &t.tm);
        t.nt = split(n, nmax, NR, &t.tn);
        if (batch * t.tm * t.tn >= 2 * nth || (t.mt <= 128 && t.nt <= 132)) return t;
        if (t.mt >= t.nt) mmax = t.mt / 2;
        else nmax = t.nt / 2;
    }
}

// Output rows [i0, i0 + rows) x columns [j0, j0 + cols) of batch item bi, all of k, by one thread: for each KC slab
// pack op(A) rows and op(B) columns into ws and accumulate into the tile's fp32 accumulators (ld ldacc >= rows),
// then the epilogue.
template <typename T>
inline void gemm_tile(const Gemm& g, int64_t bi, int64_t i0, int rows, int64_t j0, int cols, float* ws,
                      int64_t ldacc) {
    if (g.k == 0 || g.alpha == 0.0f) {
        epilogue(g, bi, nullptr, 0, i0, rows, j0, cols);
        return;
    }
    const T* A = (const T*)g.a.p + bi * g.a.stride;
    const T* B = (const T*)g.b.p + bi * g.b.stride;
    int mp = (int)ceil_div(rows, MR), np = (int)ceil_div(cols, NR);
    float* acc = ws;
    float* as = acc + ldacc * np * NR;
    float* bs = as + (size_t)mp * MR * KC;
    for (int64_t p0 = 0; p0 < g.k; p0 += KC) {
        int kc = (int)min64(KC, g.k - p0);
        for (int r = 0; r < mp; r++)
            pack_a<T>(as + (size_t)r * MR * kc, A, g.a.ld, g.ta, i0 + r * MR, rows - r * MR < MR ? rows - r * MR : MR,
                      p0, kc);
        for (int q = 0; q < np; q++)
            pack_b<T>(bs + (size_t)q * NR * kc, B, g.b.ld, g.tb, j0 + q * NR, cols - q * NR < NR ? cols - q * NR : NR,
                      p0, kc);
        for (int q = 0; q < np; q++)
            for (int r = 0; r < mp; r++) {
                kernel_check(kc, as + (size_t)r * MR * kc, bs + (size_t)q * NR * kc, acc + r * MR + q * NR * ldacc,
                             ldacc);
                kernel(kc, as + (size_t)r * MR * kc, bs + (size_t)q * NR * kc, acc + r * MR + q * NR * ldacc, ldacc,
                       p0 == 0);
            }
    }
    epilogue(g, bi, acc, ldacc, i0, rows, j0, cols);
}

// out[r] = sum over p < depth, in order, of X(r, p) at x[r * rs + p * ps], r < rows; rounded to type ot
template <typename T>
inline void sums(const T* x, int64_t rows, int64_t depth, int64_t rs, int64_t ps, void* out, int ot, int nth) {
    (void)nth;  // without OpenMP
#pragma omp parallel for schedule(static) num_threads(nth) if (nth > 1)
    for (int64_t r0 = 0; r0 < rows; r0 += TILE_M) {
        int nr = (int)min64(TILE_M, rows - r0);
        float s[TILE_M];
        for (int i = 0; i < nr; i++) s[i] = 0.0f;
        if (rs == 1) {
            for (int64_t p = 0; p < depth; p++) {
                const T* xp = x + r0 + p * ps;
#pragma omp simd
                for (int i = 0; i < nr; i++) s[i] = s[i] + to_f32<T>(xp[i]);
            }
        } else {
            // 8 rows side by side: independent sums, each still in p order
            for (int i = 0; i < nr; i += 8) {
                int ne = nr - i < 8 ? nr - i : 8;
                for (int64_t p = 0; p < depth; p++)
                    for (int ii = 0; ii < ne; ii++) s[i + ii] = s[i + ii] + to_f32<T>(x[(r0 + i + ii) * rs + p * ps]);
            }
        }
        store_seg(ot, out, r0, s, nr);
    }
}

template <typename T>
inline cublasStatus_t run_t(const Gemm& g, const char* fn) {
    if (g.bgrad == 'A') {
        int nth = g.m * g.k < PARALLEL_MIN ? 1 : max_threads();
        if (g.ta) sums<T>((const T*)g.a.p, g.m, g.k, g.a.ld, 1, g.bgrad_out, g.bgrad_type, nth);
        else sums<T>((const T*)g.a.p, g.m, g.k, 1, g.a.ld, g.bgrad_out, g.bgrad_type, nth);
    } else if (g.bgrad == 'B') {
        int nth = g.n * g.k < PARALLEL_MIN ? 1 : max_threads();
        if (g.tb) sums<T>((const T*)g.b.p, g.n, g.k, 1, g.b.ld, g.bgrad_out, g.bgrad_type, nth);
        else sums<T>((const T*)g.b.p, g.n, g.k, g.b.ld, 1, g.bgrad_out, g.bgrad_type, nth);
    }
    if (g.m == 0 || g.n == 0 || g.batch == 0) return CUBLAS_STATUS_SUCCESS;
    int nth = g.batch * g.m * g.n * max64(g.k, 1) < PARALLEL_MIN ? 1 : max_threads();
    // tiles in any order on any thread (no barriers: a thread that the OS stalls holds up one tile, not a team)
    Tiling t = make_tiling(g.m, g.n, g.batch, nth);
    int64_t tiles = g.batch * t.tm * t.tn;
    int failed = 0;
#pragma omp parallel num_threads(nth) if (nth > 1 && tiles > 1) reduction(| : failed)
    {
        float* ws = thread_workspace().get(t.floats());
        if (ws == nullptr) failed = 1;
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < tiles; it++) {
            if (ws == nullptr) continue;
            int64_t ti = it % t.tm, tj = it / t.tm % t.tn, bi = it / (t.tm * t.tn);
            int64_t i0 = ti * t.mt, j0 = tj * t.nt;
            gemm_tile<T>(g, bi, i0, (int)min64(t.mt, g.m - i0), j0, (int)min64(t.nt, g.n - j0), ws, t.mt);
        }
    }
    if (failed) {
        report(fn, "cannot allocate %zu bytes of workspace", t.floats() * sizeof(float));
        return CUBLAS_STATUS_ALLOC_FAILED;
    }
    return CUBLAS_STATUS_SUCCESS;
}

// runs a checked product (A and B have the same type)
inline cublasStatus_t run(const Gemm& g, const char* fn) {
    if (g.a.type == CUDA_R_32F) return run_t<float>(g, fn);
    if (g.a.type == CUDA_R_16BF) return run_t<__nv_bfloat16>(g, fn);
    return run_t<__half>(g, fn);
}

// checks a pointer: non-null and aligned to its element size
inline cublasStatus_t check_ptr(const char* fn, const char* what, const void* p, int type) {
    if (p == nullptr) {
        report(fn, "%s is NULL", what);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if ((uintptr_t)p % (uintptr_t)type_size(type) != 0) {
        report(fn, "%s (%p) is not aligned to its %d-byte elements (%s)", what, p, type_size(type), type_name(type));
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_SUCCESS;
}

// the pointer checks every product needs: A and B when read, C when beta != 0, D (named d_name: cuBLAS calls it C)
inline cublasStatus_t check_operands(const char* fn, const Gemm& g, const char* d_name) {
    cublasStatus_t st;
    if (g.m == 0 || g.n == 0 || g.batch == 0) return CUBLAS_STATUS_SUCCESS;
    if (g.k > 0 && g.alpha != 0.0f) {
        if ((st = check_ptr(fn, "A", g.a.p, g.a.type)) != CUBLAS_STATUS_SUCCESS) return st;
        if ((st = check_ptr(fn, "B", g.b.p, g.b.type)) != CUBLAS_STATUS_SUCCESS) return st;
    }
    if (g.beta != 0.0f && (st = check_ptr(fn, "C", g.c.p, g.c.type)) != CUBLAS_STATUS_SUCCESS) return st;
    if (g.batch > 1 && g.sd == 0) {
        report(fn, "%s has batch stride 0: the %lld batch items would all write the same matrix", d_name,
               (long long)g.batch);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    return check_ptr(fn, d_name, g.d, g.dtype);
}

}  // namespace cuda_cpu_gemm

#endif  // CUDA_CPU_GEMM_H
