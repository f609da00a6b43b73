// CUDA-only utilities for train_gpt2.cu / test_gpt2.cu: error checks that name file:line, the floatX
// precision switch (bf16 default, fp32 with -DENABLE_FP32), and small device helpers.
#ifndef LLMC_CUDA_COMMON_H
#define LLMC_CUDA_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>
#include <cublasLt.h>
#include "utils.h"

// ----------------------------------------------------------------------------
// error checks: one line naming the call site, then exit 1 through LLMC_FATAL_EXIT (llmc/utils.h), so that a
// data-parallel run's fatal hook ends the other ranks too

static inline void cuda_check(cudaError_t err, const char* file, int line) {
    if (err != cudaSuccess) {
        fprintf(stderr, "error: CUDA at %s:%d: %s\n", file, line, cudaGetErrorString(err));
        LLMC_FATAL_EXIT();
    }
}
#define cudaCheck(err) cuda_check((err), __FILE__, __LINE__)

static inline void cublas_check(cublasStatus_t status, const char* file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "error: cuBLAS at %s:%d: status %d\n", file, line, (int)status);
        LLMC_FATAL_EXIT();
    }
}
#define cublasCheck(status) cublas_check((status), __FILE__, __LINE__)

// after a kernel launch: launch errors (bad config) at once; execution errors surface at the next sync
#define cudaCheckLaunch() cuda_check(cudaGetLastError(), __FILE__, __LINE__)

// ----------------------------------------------------------------------------
// precision: floatX is the type of the working weights, activations and gradients

#ifdef ENABLE_FP32
typedef float floatX;
#define PRECISION_NAME "fp32"
#define CUDA_R_X CUDA_R_32F
#else
typedef __nv_bfloat16 floatX;
#define PRECISION_NAME "bf16"
#define CUDA_R_X CUDA_R_16BF
#endif

__device__ __forceinline__ float x2f(floatX x) { return (float)x; }
__device__ __forceinline__ floatX f2x(float x) { return (floatX)x; }

static inline int ceil_div(size_t a, size_t b) { return (int)((a + b - 1) / b); }

// ----------------------------------------------------------------------------
// reductions: fixed order, so results are bitwise reproducible

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `shared` holds 32 floats; the call ends with a barrier so `shared` can be reused.
__device__ __forceinline__ float block_sum(float v, float* shared) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    float r = lane < nwarps ? shared[lane] : 0.0f;
    r = warp_sum(r);
    __syncthreads();
    return r;
}

__device__ __forceinline__ float block_max(float v, float* shared) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    float r = lane < nwarps ? shared[lane] : -INFINITY;
    r = warp_max(r);
    __syncthreads();
    return r;
}

#endif // LLMC_CUDA_COMMON_H
