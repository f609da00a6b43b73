// CPU backend: the cuBLAS GEMMs (cublasGemmEx, cublasGemmStridedBatchedEx, cublasSgemm, cublasSgemmStridedBatched)
// on the host, with the handle functions around them. Numerics: see cuda_cpu_gemm.h (fp32 accumulation in a fixed
// order, one rounding of each output, bitwise independent of the thread count).
// Implemented: A and B of one type, CUDA_R_32F, CUDA_R_16BF or CUDA_R_16F, C of that type or CUDA_R_32F;
// CUBLAS_COMPUTE_32F and CUBLAS_COMPUTE_32F_PEDANTIC (alpha, beta: float); CUBLAS_GEMM_DEFAULT and
// CUBLAS_GEMM_DEFAULT_TENSOR_OP; math modes CUBLAS_DEFAULT_MATH and CUBLAS_PEDANTIC_MATH (optionally with
// CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION); host or device pointer mode (both are host memory here).
// Anything else returns CUBLAS_STATUS_NOT_SUPPORTED (or INVALID_VALUE, as cuBLAS documents) with one line on stderr
// naming the function and the value. Calls run synchronously; the stream is kept and returned, nothing more.
#ifndef CUDA_CPU_CUBLAS_V2_H
#define CUDA_CPU_CUBLAS_V2_H

#include <new>
#include <cuda_runtime.h>
#include "cuda_cpu_gemm.h"

#define CUBLAS_VER_MAJOR 12
#define CUBLAS_VER_MINOR 0
#define CUBLAS_VER_PATCH 0

typedef enum {
    CUBLAS_DEFAULT_MATH = 0,
    CUBLAS_TENSOR_OP_MATH = 1,
    CUBLAS_PEDANTIC_MATH = 2,
    CUBLAS_TF32_TENSOR_OP_MATH = 3,
    CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION = 16
} cublasMath_t;

typedef enum {
    CUBLAS_GEMM_DEFAULT = -1,
    CUBLAS_GEMM_DFALT = -1,
    CUBLAS_GEMM_DEFAULT_TENSOR_OP = 99,
    CUBLAS_GEMM_DFALT_TENSOR_OP = 99
} cublasGemmAlgo_t;

struct cublasContext {
    cudaStream_t stream;
    cublasMath_t math;
    cublasPointerMode_t pointer_mode;
};
typedef struct cublasContext* cublasHandle_t;

#define cublasCreate cublasCreate_v2
#define cublasDestroy cublasDestroy_v2
#define cublasSetStream cublasSetStream_v2
#define cublasGetStream cublasGetStream_v2
#define cublasSetPointerMode cublasSetPointerMode_v2
#define cublasGetPointerMode cublasGetPointerMode_v2
#define cublasSgemm cublasSgemm_v2

inline cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
    if (handle == nullptr) {
        cuda_cpu_gemm::report("cublasCreate", "handle is NULL");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    cublasContext* h = new (std::nothrow) cublasContext;
    if (h == nullptr) return CUBLAS_STATUS_ALLOC_FAILED;
    h->stream = 0;
    h->math = CUBLAS_DEFAULT_MATH;
    h->pointer_mode = CUBLAS_POINTER_MODE_HOST;
    *handle = h;
    return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasGetStream_v2(cublasHandle_t handle, cudaStream_t* stream) {
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (stream == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *stream = handle->stream;
    return CUBLAS_STATUS_SUCCESS;
}

// DEFAULT and PEDANTIC give the numerics of cuda_cpu_gemm.h; the reduced-precision modes (TENSOR_OP = fp16
// inputs, TF32) would change the results and are refused
inline cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    int base = (int)mode & ~(int)CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION;
    if (base == CUBLAS_DEFAULT_MATH || base == CUBLAS_PEDANTIC_MATH) {
        handle->math = mode;
        return CUBLAS_STATUS_SUCCESS;
    }
    const char* name = base == CUBLAS_TENSOR_OP_MATH ? " (CUBLAS_TENSOR_OP_MATH)"
                       : base == CUBLAS_TF32_TENSOR_OP_MATH ? " (CUBLAS_TF32_TENSOR_OP_MATH)" : "";
    if (base == CUBLAS_TENSOR_OP_MATH || base == CUBLAS_TF32_TENSOR_OP_MATH) {
        cuda_cpu_gemm::report("cublasSetMathMode", "math mode %d%s is not implemented by the CPU backend (only "
                              "CUBLAS_DEFAULT_MATH and CUBLAS_PEDANTIC_MATH)", (int)mode, name);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    cuda_cpu_gemm::report("cublasSetMathMode", "math mode %d is not a cublasMath_t value", (int)mode);
    return CUBLAS_STATUS_INVALID_VALUE;
}

inline cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode) {
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *mode = handle->math;
    return CUBLAS_STATUS_SUCCESS;
}

// device memory is host memory in this backend, so alpha and beta are read the same way in both modes
inline cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t mode) {
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode != CUBLAS_POINTER_MODE_HOST && mode != CUBLAS_POINTER_MODE_DEVICE) {
        cuda_cpu_gemm::report("cublasSetPointerMode", "pointer mode %d is not a cublasPointerMode_t value",
                              (int)mode);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    handle->pointer_mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasGetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t* mode) {
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *mode = handle->pointer_mode;
    return CUBLAS_STATUS_SUCCESS;
}

namespace cuda_cpu_gemm {

inline const char* op_name(int op) {
    return op == CUBLAS_OP_N ? "CUBLAS_OP_N" : op == CUBLAS_OP_T ? "CUBLAS_OP_T" : "CUBLAS_OP_C";
}

// the checks cuBLAS documents for its GEMMs, then the product: C = alpha op(A) op(B) + beta C per batch item
inline cublasStatus_t blas_gemm(const char* fn, cublasHandle_t handle, cublasOperation_t transa,
                                cublasOperation_t transb, int64_t m, int64_t n, int64_t k, const void* alpha,
                                const void* A, int atype, int64_t lda, int64_t sa, const void* B, int btype,
                                int64_t ldb, int64_t sb, const void* beta, void* C, int ctype, int64_t ldc,
                                int64_t sc, int64_t batch, int compute, int algo) {
    if (handle == nullptr) {
        report(fn, "handle is NULL (cublasCreate was not called)");
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    if (transa < CUBLAS_OP_N || transa > CUBLAS_OP_C || transb < CUBLAS_OP_N || transb > CUBLAS_OP_C) {
        report(fn, "transa %d / transb %d: each must be CUBLAS_OP_N, CUBLAS_OP_T or CUBLAS_OP_C", (int)transa,
               (int)transb);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (m < 0 || n < 0 || k < 0 || batch < 0) {
        report(fn, "negative size: m %lld, n %lld, k %lld, batchCount %lld", (long long)m, (long long)n,
               (long long)k, (long long)batch);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;  // op C is op T for real types
    int64_t rows_a = ta ? k : m, rows_b = tb ? n : k;
    if (lda < max64(1, rows_a) || ldb < max64(1, rows_b) || ldc < max64(1, m)) {
        report(fn, "leading dimension too small: lda %lld (needs >= %lld), ldb %lld (>= %lld), ldc %lld (>= %lld)",
               (long long)lda, (long long)max64(1, rows_a), (long long)ldb, (long long)max64(1, rows_b),
               (long long)ldc, (long long)max64(1, m));
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (alpha == nullptr || beta == nullptr) {
        report(fn, "alpha or beta is NULL");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    cublasStatus_t st = check_compute_type(fn, compute);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    if (algo != CUBLAS_GEMM_DEFAULT && algo != CUBLAS_GEMM_DEFAULT_TENSOR_OP) {
        report(fn, "algo %d is not implemented by the CPU backend (only CUBLAS_GEMM_DEFAULT and "
                   "CUBLAS_GEMM_DEFAULT_TENSOR_OP)", algo);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (!type_supported(atype) || btype != atype || (ctype != atype && ctype != CUDA_R_32F)) {
        report(fn, "types A %s, B %s, C %s are not implemented by the CPU backend (A and B both CUDA_R_32F, "
                   "CUDA_R_16BF or CUDA_R_16F; C the same or CUDA_R_32F)", type_name(atype), type_name(btype),
               type_name(ctype));
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    Gemm g = gemm_init();
    g.m = m;
    g.n = n;
    g.k = k;
    g.batch = batch;
    g.ta = ta;
    g.tb = tb;
    g.a = Matrix{A, atype, lda, sa};
    g.b = Matrix{B, btype, ldb, sb};
    g.c = Matrix{C, ctype, ldc, sc};
    g.d = C;
    g.ldd = ldc;
    g.sd = sc;
    g.dtype = ctype;
    g.alpha = *(const float*)alpha;
    g.beta = *(const float*)beta;
    if ((st = check_operands(fn, g, "C")) != CUBLAS_STATUS_SUCCESS) return st;
    return run(g, fn);
}

}  // namespace cuda_cpu_gemm

inline cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
                                   int n, int k, const void* alpha, const void* A, cudaDataType Atype, int lda,
                                   const void* B, cudaDataType Btype, int ldb, const void* beta, void* C,
                                   cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                                   cublasGemmAlgo_t algo) {
    return cuda_cpu_gemm::blas_gemm("cublasGemmEx", handle, transa, transb, m, n, k, alpha, A, Atype, lda, 0, B,
                                    Btype, ldb, 0, beta, C, Ctype, ldc, 0, 1, computeType, algo);
}

inline cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa,
                                                 cublasOperation_t transb, int m, int n, int k, const void* alpha,
                                                 const void* A, cudaDataType Atype, int lda, long long int strideA,
                                                 const void* B, cudaDataType Btype, int ldb, long long int strideB,
                                                 const void* beta, void* C, cudaDataType Ctype, int ldc,
                                                 long long int strideC, int batchCount,
                                                 cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
    return cuda_cpu_gemm::blas_gemm("cublasGemmStridedBatchedEx", handle, transa, transb, m, n, k, alpha, A, Atype,
                                    lda, strideA, B, Btype, ldb, strideB, beta, C, Ctype, ldc, strideC, batchCount,
                                    computeType, algo);
}

inline cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                     int m, int n, int k, const float* alpha, const float* A, int lda,
                                     const float* B, int ldb, const float* beta, float* C, int ldc) {
    return cuda_cpu_gemm::blas_gemm("cublasSgemm", handle, transa, transb, m, n, k, alpha, A, CUDA_R_32F, lda, 0, B,
                                    CUDA_R_32F, ldb, 0, beta, C, CUDA_R_32F, ldc, 0, 1, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT);
}

inline cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa,
                                                cublasOperation_t transb, int m, int n, int k, const float* alpha,
                                                const float* A, int lda, long long int strideA, const float* B,
                                                int ldb, long long int strideB, const float* beta, float* C, int ldc,
                                                long long int strideC, int batchCount) {
    return cuda_cpu_gemm::blas_gemm("cublasSgemmStridedBatched", handle, transa, transb, m, n, k, alpha, A,
                                    CUDA_R_32F, lda, strideA, B, CUDA_R_32F, ldb, strideB, beta, C, CUDA_R_32F, ldc,
                                    strideC, batchCount, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

#endif  // CUDA_CPU_CUBLAS_V2_H
