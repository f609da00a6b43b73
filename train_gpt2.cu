// GPT-2 training on one or more GPUs: hand-written CUDA kernels (encoder, layernorm, causal flash attention on
// tensor cores via nvcuda::wmma, GELU, fused classifier, grad norm, AdamW), cuBLASLt for the linear layers.
// bf16 working weights/activations/gradients with fp32 master weights and AdamW state (default), or all fp32
// (-DENABLE_FP32, `make train_gpt2fp32cu`). Same flags, data, checkpoints and output lines as train_gpt2.c.
// Data parallel over NCCL, one process per GPU (llmc/dist.h, llmc/cuda_dist.h; section "data parallel" below).
#ifdef USE_CUDNN
#error "USE_CUDNN=1: cuDNN flash attention (backend graph API) is not implemented yet in train_gpt2.cu"
#endif
#ifndef USE_NCCL
#error "train_gpt2.cu needs NCCL: build with -DUSE_NCCL and -lnccl (the Makefile does)"
#endif
// an error on one process ends all of them (cuda_dist_fatal_abort), not only this one
#ifndef LLMC_FATAL_HOOK
#define LLMC_FATAL_HOOK
#define TRAIN_CUDA_ABORT_HOOK
#endif
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include "llmc/cuda_common.h"
#ifndef ENABLE_FP32
#include <mma.h>
namespace wmma = nvcuda::wmma;
#endif
#include "llmc/utils.h"
#include "llmc/model.h"
#include "llmc/model_init.h"
#include "llmc/optim.h"
#include "llmc/checkpoint.h"
#include "llmc/cli.h"
#include "llmc/dataloader.h"
#include "llmc/logger.h"
#include "llmc/philox.h"
#include "llmc/schedule.h"
#include "llmc/tokenizer.h"
#include "llmc/train_common.h"
#include "llmc/dist.h"
#include "llmc/cuda_dist.h"

#define LN_EPS 1e-5f
#define GELU_SCALE 0.7978845608028654f  // sqrt(2/pi)
// chunks of rows for the deterministic column sums (bias / layernorm parameter gradients); at B*T = 48K, 192 chunks:
// layernorm_backward_kernel's blocks fill the SMs
#define COLSUM_MAX_CHUNKS 256
#define COLSUM_ROWS_PER_CHUNK 256
// rows of logits per classifier chunk: the logits buffer is (min(B*T, this), Vp), not (B*T, Vp)
#define CLASSIFIER_ROWS 8192
// cuBLASLt workspace
#define CUBLASLT_WORKSPACE_BYTES (32u << 20)
// recompute modes of the backward (function parameter of gpt2_allocate)
#define RECOMPUTE_NONE 0
#define RECOMPUTE_GELU 1     // fch_gelu is recomputed from fch in the backward (one layer of storage)
#define RECOMPUTE_GELU_LN 2  // also ln1 / ln2 (from the residual stream and the kept mean / rstd)
// GELU fused into the cuBLASLt epilogues of the MLP matmuls (GPT2.gelu_fusion, flag -ge; llm.c's gelu_fusion)
#define GELU_FUSION_NONE 0      // fc matmul + bias, then gelu_forward; backward gelu_backward after the fcproj dinp
#define GELU_FUSION_FORWARD 1   // forward: one matmul, CUBLASLT_EPILOGUE_GELU_AUX_BIAS (fch as its aux output)
#define GELU_FUSION_BACKWARD 2  // also the backward: the fcproj dinp matmul with CUBLASLT_EPILOGUE_DGELU (aux fch)

#ifdef TRAIN_CUDA_ABORT_HOOK
void llmc_fatal_hook(void) { cuda_dist_fatal_abort(); }
#endif

static int gpt2_classifier_rows = CLASSIFIER_ROWS;  // read by gpt2_allocate (tests set fewer)
static cublasLtHandle_t cublaslt_handle;
static void* cublaslt_workspace = NULL;

// ----------------------------------------------------------------------------
// kernels. N = B*T rows. Parameter-gradient outputs are accumulated (+=), activation gradients overwritten
// unless noted.

// 128-bit vectors of floatX (8 bf16 or 4 fp32); p 16-byte aligned
#define X128 (16 / (int)sizeof(floatX))
struct __align__(16) x128 { floatX v[X128]; };
__device__ __forceinline__ x128 load128(const floatX* p) {
    int4 bits = *reinterpret_cast<const int4*>(p);
    x128 r;
    memcpy(&r, &bits, sizeof(r));
    return r;
}
__device__ __forceinline__ void store128(floatX* p, x128 r) {
    int4 bits;
    memcpy(&bits, &r, sizeof(bits));
    *reinterpret_cast<int4*>(p) = bits;
}

// The elementwise kernels below take vec = X128 (one thread per 128-bit vector: the element count, row length or
// offsets a multiple of X128 and the pointers 16-byte aligned, see vec128) or 1 (one thread per element); the
// per-element arithmetic is the same either way.

// out[b,t,:] = wte[inp[b,t],:] + wpe[t,:]; vec divides C
__global__ void encoder_forward_kernel(floatX* out, const int* inp, const floatX* wte, const floatX* wpe, int N,
                                       int T, int C, int vec) {
    // out (N, C), inp (N), wte (Vp, C), wpe (maxT, C)
    size_t idx = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * vec;
    if (idx >= (size_t)N * C) return;
    int bt = (int)(idx / C), c = (int)(idx % C);
    int t = bt % T;
    const floatX* we = wte + (size_t)inp[bt] * C + c;
    const floatX* pe = wpe + (size_t)t * C + c;
    if (vec == X128) {
        x128 a = load128(we), b = load128(pe), o;
        for (int l = 0; l < X128; l++) o.v[l] = f2x(x2f(a.v[l]) + x2f(b.v[l]));
        store128(out + idx, o);
    } else {
        out[idx] = f2x(x2f(*we) + x2f(*pe));
    }
}

// dwpe[t, c] += sum_b dout[b, t, c], b in order; vec divides T * C
__global__ void encoder_backward_wpe_kernel(floatX* dwpe, const floatX* dout, int B, int T, int C, int vec) {
    size_t idx = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * vec;
    if (idx >= (size_t)T * C) return;
    if (vec == X128) {
        float s[X128] = {0.0f};
        for (int b = 0; b < B; b++) {
            x128 d = load128(dout + (size_t)b * T * C + idx);
            for (int l = 0; l < X128; l++) s[l] += x2f(d.v[l]);
        }
        x128 w = load128(dwpe + idx);
        for (int l = 0; l < X128; l++) w.v[l] = f2x(x2f(w.v[l]) + s[l]);
        store128(dwpe + idx, w);
    } else {
        float s = 0.0f;
        for (int b = 0; b < B; b++) s += x2f(dout[(size_t)b * T * C + idx]);
        dwpe[idx] = f2x(x2f(dwpe[idx]) + s);
    }
}

// dwte[tok, :] += sum of dout rows of the positions holding tok; one block per distinct token (the largest buckets
// first), the positions in increasing order (bucket_pos[bucket_off[u] .. bucket_off[u+1]) ), so no atomics and a
// fixed order
__global__ void encoder_backward_wte_kernel(floatX* dwte, const floatX* dout, const int* bucket_tok,
                                            const int* bucket_off, const int* bucket_pos, int C) {
    int u = blockIdx.x;
    int tok = bucket_tok[u], p0 = bucket_off[u], p1 = bucket_off[u + 1];
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float s = 0.0f;
        for (int p = p0; p < p1; p++) s += x2f(dout[(size_t)bucket_pos[p] * C + c]);
        size_t i = (size_t)tok * C + c;
        dwte[i] = f2x(x2f(dwte[i]) + s);
    }
}

// One warp per row: out = (x - mean) * rstd * weight + bias, with x = inp1 (+ inp2 when inp2 != NULL; then
// residual_out = x, rounded to floatX, and the statistics use the rounded x the backward will see).
__global__ void layernorm_forward_kernel(floatX* out, float* mean, float* rstd, floatX* residual_out,
                                         const floatX* inp1, const floatX* inp2, const floatX* weight,
                                         const floatX* bias, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const floatX* x1 = inp1 + (size_t)row * C;
    if (inp2 != NULL) {
        const floatX* x2 = inp2 + (size_t)row * C;
        floatX* r = residual_out + (size_t)row * C;
        for (int c = lane; c < C; c += 32) r[c] = f2x(x2f(x1[c]) + x2f(x2[c]));
        __syncwarp();
        x1 = r;
    }
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += x2f(x1[c]);
    float m = warp_sum(s) / C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float d = x2f(x1[c]) - m;
        v += d * d;
    }
    float rs = rsqrtf(warp_sum(v) / C + LN_EPS);
    floatX* o = out + (size_t)row * C;
    for (int c = lane; c < C; c += 32) o[c] = f2x((x2f(x1[c]) - m) * rs * x2f(weight[c]) + x2f(bias[c]));
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = rs;
    }
}

// Column sums over a chunk of rows, stage 1 of the deterministic bias-gradient reduction.
// grid (ceil(C / 32), chunks), block (32, 8): column c = blockIdx.x * 32 + threadIdx.x, rows of chunk
// blockIdx.y strided by 8 over threadIdx.y, then the 8 partial sums added in order: part[chunk, c] = sum dout.
__global__ void colsum_partial_kernel(float* part, const floatX* dout, int N, int C, int rows_per_chunk) {
    __shared__ float s[8][32];
    int c = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * rows_per_chunk, r1 = min(N, r0 + rows_per_chunk);
    float a = 0.0f;
    if (c < C) {
        for (int r = r0 + threadIdx.y; r < r1; r += 8) a += x2f(dout[(size_t)r * C + c]);
    }
    s[threadIdx.y][threadIdx.x] = a;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float t = 0.0f;
        for (int k = 0; k < 8; k++) t += s[k][threadIdx.x];
        part[(size_t)blockIdx.y * C + c] = t;
    }
}

// stage 2: out[c] += sum over chunks k (in order) of part[k, c]
__global__ void colsum_final_kernel(floatX* out, const float* part, int chunks, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int k = 0; k < chunks; k++) s += part[(size_t)k * C + c];
    out[c] = f2x(x2f(out[c]) + s);
}

// The layernorm backward in one pass over a chunk of rows per block (grid: colsum_chunks(N), block 1024 = 32 warps):
//  1. one warp per row: dinp += rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dout * weight
//  2. the block's column sums of dout * xhat (dweight) and dout (dbias) over its rows while they are in L1/L2:
//     4 tiles of 32 columns at a time, 8 warps per tile, each warp's rows strided by 8 and the 8 partials added
//     in order (bias_backward's order), into part0 / part1 (chunks, C)
//  3. the last block to finish (done counts them; it resets it to 0) adds the chunks' partials in order to dweight
//     and dbias (colsum_final_kernel's order), so the result is the same for any block order
#define LN_BWD_THREADS 1024
__global__ void __launch_bounds__(LN_BWD_THREADS) layernorm_backward_kernel(floatX* dinp, floatX* dweight,
        floatX* dbias, float* part0, float* part1, unsigned int* done, const floatX* dout, const floatX* inp,
        const floatX* weight, const float* mean, const float* rstd, int N, int C, int rows_per_chunk) {
    constexpr int warps = LN_BWD_THREADS / 32, tiles = warps / 8;
    __shared__ float s0[warps][32], s1[warps][32];
    __shared__ bool last;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int r0 = blockIdx.x * rows_per_chunk, r1 = min(N, r0 + rows_per_chunk);
    for (int row = r0 + warp; row < r1; row += warps) {
        const floatX* x = inp + (size_t)row * C;
        const floatX* d = dout + (size_t)row * C;
        floatX* di = dinp + (size_t)row * C;
        float m = mean[row], r = rstd[row];
        float sum_d = 0.0f, sum_dx = 0.0f;
        for (int c = lane; c < C; c += 32) {
            float dxhat = x2f(d[c]) * x2f(weight[c]);
            sum_d += dxhat;
            sum_dx += dxhat * (x2f(x[c]) - m) * r;
        }
        sum_d = warp_sum(sum_d) / C;
        sum_dx = warp_sum(sum_dx) / C;
        for (int c = lane; c < C; c += 32) {
            float xhat = (x2f(x[c]) - m) * r;
            di[c] = f2x(x2f(di[c]) + r * (x2f(d[c]) * x2f(weight[c]) - sum_d - xhat * sum_dx));
        }
    }
    int tile = warp / 8, wt = warp % 8;  // this warp's column tile within a pass, and its rows r0 + wt + 8j
    for (int c0 = 0; c0 < C; c0 += 32 * tiles) {
        int c = c0 + tile * 32 + lane;
        float a0 = 0.0f, a1 = 0.0f;
        if (c < C) {
            for (int r = r0 + wt; r < r1; r += 8) {
                float d = x2f(dout[(size_t)r * C + c]);
                a0 += d * (x2f(inp[(size_t)r * C + c]) - mean[r]) * rstd[r];
                a1 += d;
            }
        }
        s0[warp][lane] = a0;
        s1[warp][lane] = a1;
        __syncthreads();
        if (wt == 0 && c < C) {
            float t0 = 0.0f, t1 = 0.0f;
            for (int k = 0; k < 8; k++) {
                t0 += s0[tile * 8 + k][lane];
                t1 += s1[tile * 8 + k][lane];
            }
            part0[(size_t)blockIdx.x * C + c] = t0;
            part1[(size_t)blockIdx.x * C + c] = t1;
        }
        __syncthreads();
    }
    // the partials visible to every block before this block counts itself done
    __threadfence();
    if (threadIdx.x == 0) last = atomicAdd(done, 1u) == gridDim.x - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float t0 = 0.0f, t1 = 0.0f;
        for (int k = 0; k < (int)gridDim.x; k++) {
            t0 += __ldcg(&part0[(size_t)k * C + c]);
            t1 += __ldcg(&part1[(size_t)k * C + c]);
        }
        dweight[c] = f2x(x2f(dweight[c]) + t0);
        dbias[c] = f2x(x2f(dbias[c]) + t1);
    }
    if (threadIdx.x == 0) *done = 0;
}

__device__ __forceinline__ float gelu_value(float x) {
    float u = GELU_SCALE * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

// tanh-approximation GELU; vec divides n
__global__ void gelu_forward_kernel(floatX* out, const floatX* inp, size_t n, int vec) {
    size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * vec;
    if (i >= n) return;
    if (vec == X128) {
        x128 x = load128(inp + i), o;
        for (int l = 0; l < X128; l++) o.v[l] = f2x(gelu_value(x2f(x.v[l])));
        store128(out + i, o);
    } else {
        out[i] = f2x(gelu_value(x2f(inp[i])));
    }
}

// gelu'(x) * d
__device__ __forceinline__ float gelu_backward_elem(float x, float d) {
    float u = GELU_SCALE * (x + 0.044715f * x * x * x);
    float th = tanhf(u);
    float du = GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
    float grad = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
    return grad * d;
}

// dinout = gelu'(inp) * dinout (in place: the gradient of the GELU output becomes that of its input); vec divides n
__global__ void gelu_backward_kernel(floatX* dinout, const floatX* inp, size_t n, int vec) {
    size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * vec;
    if (i >= n) return;
    if (vec == X128) {
        x128 x = load128(inp + i), d = load128(dinout + i);
        for (int l = 0; l < X128; l++) d.v[l] = f2x(gelu_backward_elem(x2f(x.v[l]), x2f(d.v[l])));
        store128(dinout + i, d);
    } else {
        dinout[i] = f2x(gelu_backward_elem(x2f(inp[i]), x2f(dinout[i])));
    }
}

// Causal flash attention (the FlashAttention-2 scheme). Q, K, V are read straight from qkv (B, T, 3C) and the
// output written to (B, T, C): no (T, T) matrix and no permuted copies. A block owns one (b, h) and one tile of
// FLASH_BR query rows (forward, dq) or FLASH_BC keys (dk, dv); key tiles above the diagonal are skipped. The forward
// keeps the running max and sum of each row (online softmax) and stores lse = max + log(sum) per row (scaled
// scores); the backward recomputes P = exp(scale q.k - lse) from it, with D = rowsum(dout * out) precomputed.
// dK, dV: one block per key tile over the query tiles at or below it; dQ: a second pass, one block per query tile
// over its key tiles. No atomics: the gradients are the same bits on every run (and CPU-backend schedule), for
// recomputing S and dP once more. Tile products in shared memory: the bf16 build uses nvcuda::wmma 16x16x16 (bf16
// in, fp32 accumulate), the fp32 build plain fp32 loops over the same tiles (tf32 is not exact enough for its tests).
#define FLASH_BR 32        // query rows per tile
#define FLASH_BC 32        // keys per tile (= the warp size: one lane per key in the softmax)
#define FLASH_WARPS 4
#define FLASH_THREADS (32 * FLASH_WARPS)
#define FLASH_MAX_HS 128
#if FLASH_BR != FLASH_BC
#error "the flash kernels take the query and key tiles of one size (the tile counts and the 32-row buffers)"
#endif
// shared-memory leading dimensions (elements): rows padded by 16 bytes so the rows of a 16x16 wmma tile spread over
// the banks; every wmma tile pointer stays 256-bit aligned and every ldm a multiple of 16 bytes
#define FLASH_LDS (FLASH_BC + 4)  // fp32 score tiles (BR, BC)
#define FLASH_LDP (FLASH_BC + 8)  // floatX P / dS tiles (BR, BC)
__host__ __device__ static inline int flash_ldx(int hs) { return hs + 8; }  // floatX Q/K/V/dout tiles (32, hs)
__host__ __device__ static inline int flash_ldo(int hs) { return hs + 4; }  // fp32 accumulator tiles (32, hs)
__host__ __device__ static inline size_t flash_align(size_t bytes) { return (bytes + 127) & ~(size_t)127; }

// dynamic shared memory of a kernel with nx floatX (32, hs) tiles, ns fp32 score tiles, np floatX P/dS tiles, no
// fp32 (32, hs) accumulators and nv fp32 row vectors, in the order flash_take carves them
static size_t flash_smem_bytes(int hs, int nx, int ns, int np, int no, int nv) {
    return nx * flash_align((size_t)32 * flash_ldx(hs) * sizeof(floatX)) +
           ns * flash_align((size_t)FLASH_BR * FLASH_LDS * sizeof(float)) +
           np * flash_align((size_t)FLASH_BR * FLASH_LDP * sizeof(floatX)) +
           no * flash_align((size_t)32 * flash_ldo(hs) * sizeof(float)) + nv * flash_align(FLASH_BR * sizeof(float));
}

__device__ __forceinline__ void* flash_take(unsigned char** p, size_t bytes) {
    void* r = *p;
    *p += flash_align(bytes);
    return r;
}

#ifndef ENABLE_FP32
template <int COL> struct flash_layout { typedef wmma::row_major type; };
template <> struct flash_layout<1> { typedef wmma::col_major type; };

// c (M, N) fp32 (ldc) = (accumulate ? c : 0) + a (M, K) b (K, N), all in shared memory. Element (m, k) of a is
// a[m * lda + k] (A_COL: a[k * lda + m]), (k, n) of b is b[k * ldb + n] (B_COL: b[n * ldb + k]); M, N, K multiples
// of 16. The block's warps take the 16x16 output tiles round-robin; no barrier inside.
template <int A_COL, int B_COL>
__device__ void flash_mma(float* c, int ldc, const floatX* a, int lda, const floatX* b, int ldb, int M, int N, int K,
                          int accumulate) {
    int warp = threadIdx.x / 32, tn = N / 16;
    for (int t = warp; t < (M / 16) * tn; t += FLASH_WARPS) {
        int m = t / tn * 16, n = t % tn * 16;
        float* cp = c + (size_t)m * ldc + n;
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        if (accumulate) wmma::load_matrix_sync(acc, cp, ldc, wmma::mem_row_major);
        else wmma::fill_fragment(acc, 0.0f);
        for (int k = 0; k < K; k += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, floatX, typename flash_layout<A_COL>::type> fa;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, floatX, typename flash_layout<B_COL>::type> fb;
            wmma::load_matrix_sync(fa, A_COL ? a + (size_t)k * lda + m : a + (size_t)m * lda + k, lda);
            wmma::load_matrix_sync(fb, B_COL ? b + (size_t)n * ldb + k : b + (size_t)k * ldb + n, ldb);
            wmma::mma_sync(acc, fa, fb, acc);
        }
        wmma::store_matrix_sync(cp, acc, ldc, wmma::mem_row_major);
    }
}
#else
// the fp32 build: the same product with one output element per thread and step, k ascending
template <int A_COL, int B_COL>
__device__ void flash_mma(float* c, int ldc, const floatX* a, int lda, const floatX* b, int ldb, int M, int N, int K,
                          int accumulate) {
    for (int i = threadIdx.x; i < M * N; i += FLASH_THREADS) {
        int m = i / N, n = i % N;
        float acc = accumulate ? c[(size_t)m * ldc + n] : 0.0f;
        for (int k = 0; k < K; k++)
            acc += a[A_COL ? (size_t)k * lda + m : (size_t)m * lda + k] *
                   b[B_COL ? (size_t)n * ldb + k : (size_t)k * ldb + n];
        c[(size_t)m * ldc + n] = acc;
    }
}
#endif

// dst (32, ldx) in shared memory = rows [0, 32) of src (row stride `stride` elements, hs columns); rows at or past
// `rows` are zero. 128-bit loads, consecutive threads along a row (coalesced).
__device__ void flash_load_tile(floatX* dst, int ldx, const floatX* src, size_t stride, int rows, int hs) {
    const int vec = 16 / sizeof(floatX), per_row = hs / vec;
    for (int i = threadIdx.x; i < 32 * per_row; i += FLASH_THREADS) {
        int r = i / per_row, c = i % per_row * vec;
        int4 v = make_int4(0, 0, 0, 0);
        if (r < rows) v = *(const int4*)(src + (size_t)r * stride + c);
        *(int4*)(dst + (size_t)r * ldx + c) = v;
    }
}

// grid (ceil(T / BR), NH, B), FLASH_THREADS threads. qkv (B, T, 3C) -> out (B, T, C), lse (B, NH, T).
// Occupancy on sm_90 (hs 64; 228 KiB shared memory and 64K registers per SM, 1 KiB reserved per block): bf16 29 KiB
// and 80 registers (ptxas) -> 6 blocks (24 of 64 warps) per SM, register-bound; fp32 45 KiB, 64 registers -> 4.
__global__ void __launch_bounds__(FLASH_THREADS) flash_forward_kernel(floatX* out, float* lse, const floatX* qkv,
                                                                      int T, int NH, int hs, float scale) {
    extern __shared__ __align__(128) unsigned char flash_smem[];
    int qt = gridDim.x - 1 - blockIdx.x;  // the rows with the most key tiles first
    int h = blockIdx.y, b = blockIdx.z, q0 = qt * FLASH_BR, C = NH * hs;
    int ldx = flash_ldx(hs), ldo = flash_ldo(hs), warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    unsigned char* p = flash_smem;
    floatX* sQ = (floatX*)flash_take(&p, 32 * ldx * sizeof(floatX));
    floatX* sK = (floatX*)flash_take(&p, 32 * ldx * sizeof(floatX));
    floatX* sV = (floatX*)flash_take(&p, 32 * ldx * sizeof(floatX));
    float* sS = (float*)flash_take(&p, FLASH_BR * FLASH_LDS * sizeof(float));
    floatX* sP = (floatX*)flash_take(&p, FLASH_BR * FLASH_LDP * sizeof(floatX));
    float* sO = (float*)flash_take(&p, 32 * ldo * sizeof(float));
    const floatX* base = qkv + (size_t)b * T * 3 * C + (size_t)h * hs;
    flash_load_tile(sQ, ldx, base + (size_t)q0 * 3 * C, 3 * C, min(FLASH_BR, T - q0), hs);
    for (int i = threadIdx.x; i < FLASH_BR * ldo; i += FLASH_THREADS) sO[i] = 0.0f;
    // running max and sum of the rows warp + FLASH_WARPS * i (the same in every lane of the warp)
    float m[FLASH_BR / FLASH_WARPS], l[FLASH_BR / FLASH_WARPS];
    for (int i = 0; i < FLASH_BR / FLASH_WARPS; i++) m[i] = -INFINITY, l[i] = 0.0f;
    for (int kt = 0; kt <= qt; kt++) {
        int k0 = kt * FLASH_BC;
        const floatX* kv = base + (size_t)k0 * 3 * C + C;
        flash_load_tile(sK, ldx, kv, 3 * C, min(FLASH_BC, T - k0), hs);
        flash_load_tile(sV, ldx, kv + C, 3 * C, min(FLASH_BC, T - k0), hs);
        __syncthreads();
        flash_mma<0, 1>(sS, FLASH_LDS, sQ, ldx, sK, ldx, FLASH_BR, FLASH_BC, hs, 0);  // S = Q K^T
        __syncthreads();
        for (int i = 0; i < FLASH_BR / FLASH_WARPS; i++) {
            int r = warp + FLASH_WARPS * i, key = k0 + lane;
            float s = key <= q0 + r && key < T ? scale * sS[r * FLASH_LDS + lane] : -INFINITY;
            float mn = fmaxf(m[i], warp_max(s));  // finite: key 0 is in every row
            float e = expf(s - mn), alpha = expf(m[i] - mn);
            l[i] = alpha * l[i] + warp_sum(e);
            m[i] = mn;
            sP[r * FLASH_LDP + lane] = f2x(e);
            for (int d = lane; d < hs; d += 32) sO[r * ldo + d] *= alpha;
        }
        __syncthreads();
        flash_mma<0, 0>(sO, ldo, sP, FLASH_LDP, sV, ldx, FLASH_BR, hs, FLASH_BC, 1);  // O += P V
        __syncthreads();
    }
    for (int i = 0; i < FLASH_BR / FLASH_WARPS; i++) {
        int r = warp + FLASH_WARPS * i, t = q0 + r;
        if (t >= T) break;
        float inv = 1.0f / l[i];
        floatX* o = out + ((size_t)b * T + t) * C + (size_t)h * hs;
        for (int d = lane; d < hs; d += 32) o[d] = f2x(sO[r * ldo + d] * inv);
        if (lane == 0) lse[((size_t)b * NH + h) * T + t] = m[i] + logf(l[i]);
    }
}

// D (B, NH, T) = rowsum(dout * out) per head; one warp per (b, t, h), 8 warps per block
__global__ void flash_backward_d_kernel(float* D, const floatX* dout, const floatX* out, int B, int T, int NH,
                                        int hs) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= B * T * NH) return;
    int h = row % NH, t = row / NH % T, b = row / NH / T;
    size_t o = (size_t)row * hs;  // (b, t, h) rows of (B, T, C) are consecutive
    float s = 0.0f;
    for (int d = lane; d < hs; d += 32) s += x2f(dout[o + d]) * x2f(out[o + d]);
    s = warp_sum(s);
    if (lane == 0) D[((size_t)b * NH + h) * T + t] = s;
}

// lse and D of the query rows [q0, q0 + BR) (0 past T) into shared memory
__device__ void flash_load_rows(float* sLse, float* sD, const float* lse, const float* D, int q0, int T) {
    for (int r = threadIdx.x; r < FLASH_BR; r += FLASH_THREADS) {
        sLse[r] = q0 + r < T ? lse[q0 + r] : 0.0f;
        sD[r] = q0 + r < T ? D[q0 + r] : 0.0f;
    }
}

// P = exp(scale S - lse) and dS = scale P (dP - D) of query q0 + r, key k0 + j; 0 above the diagonal and past T.
// sP may be NULL (the dq pass needs only dS).
__device__ void flash_probs_grads(floatX* sP, floatX* sdS, const float* sS, const float* sdP, const float* sLse,
                                  const float* sD, int q0, int k0, int T, float scale) {
    for (int i = threadIdx.x; i < FLASH_BR * FLASH_BC; i += FLASH_THREADS) {
        int r = i / FLASH_BC, j = i % FLASH_BC, q = q0 + r;
        float pr = 0.0f, ds = 0.0f;
        if (k0 + j <= q && q < T) {
            pr = expf(scale * sS[r * FLASH_LDS + j] - sLse[r]);
            ds = scale * pr * (sdP[r * FLASH_LDS + j] - sD[r]);
        }
        if (sP != NULL) sP[r * FLASH_LDP + j] = f2x(pr);
        sdS[r * FLASH_LDP + j] = f2x(ds);
    }
}

// grid (ceil(T / BC), NH, B): the dk and dv parts of dqkv (B, T, 3C) (overwrite); lse, D (B, NH, T).
// Occupancy (sm_90, hs 64): bf16 49.3 KiB, 64 registers -> 4 blocks (16 warps) per SM, shared-memory-bound; fp32
// 72.3 KiB, 32 registers -> 3.
__global__ void __launch_bounds__(FLASH_THREADS) flash_backward_dkdv_kernel(floatX* dqkv, const floatX* dout,
        const floatX* qkv, const float* lse, const float* D, int T, int NH, int hs, float scale) {
    extern __shared__ __align__(128) unsigned char flash_smem[];
    int kt = blockIdx.x, nq = gridDim.x;  // key tile kt meets query tiles kt..nq-1: the longest first
    int h = blockIdx.y, b = blockIdx.z, k0 = kt * FLASH_BC, C = NH * hs;
    int ldx = flash_ldx(hs), ldo = flash_ldo(hs);
    unsigned char* p = flash_smem;
    floatX* sK = (floatX*)flash_take(&p, 32 * ldx * sizeof(floatX));
    floatX* sV = (floatX*)flash_take(&p, 32 * ldx * sizeof(floatX));
    floatX* sQ = (floatX*)flash_take(&p, 32 * ldx * sizeof(floatX));
    floatX* sdO = (floatX*)flash_take(&p, 32 * ldx * sizeof(floatX));
    float* sS = (float*)flash_take(&p, FLASH_BR * FLASH_LDS * sizeof(float));
    float* sdP = (float*)flash_take(&p, FLASH_BR * FLASH_LDS * sizeof(float));
    floatX* sP = (floatX*)flash_take(&p, FLASH_BR * FLASH_LDP * sizeof(floatX));
    floatX* sdS = (floatX*)flash_take(&p, FLASH_BR * FLASH_LDP * sizeof(floatX));
    float* sdK = (float*)flash_take(&p, 32 * ldo * sizeof(float));
    float* sdV = (float*)flash_take(&p, 32 * ldo * sizeof(float));
    float* sLse = (float*)flash_take(&p, FLASH_BR * sizeof(float));
    float* sD = (float*)flash_take(&p, FLASH_BR * sizeof(float));
    const floatX* base = qkv + (size_t)b * T * 3 * C + (size_t)h * hs;
    const floatX* dbase = dout + (size_t)b * T * C + (size_t)h * hs;
    const float* lrow = lse + ((size_t)b * NH + h) * T;
    const float* drow = D + ((size_t)b * NH + h) * T;
    flash_load_tile(sK, ldx, base + (size_t)k0 * 3 * C + C, 3 * C, min(FLASH_BC, T - k0), hs);
    flash_load_tile(sV, ldx, base + (size_t)k0 * 3 * C + 2 * C, 3 * C, min(FLASH_BC, T - k0), hs);
    for (int i = threadIdx.x; i < FLASH_BC * ldo; i += FLASH_THREADS) sdK[i] = 0.0f, sdV[i] = 0.0f;
    for (int qt = kt; qt < nq; qt++) {
        int q0 = qt * FLASH_BR;
        flash_load_tile(sQ, ldx, base + (size_t)q0 * 3 * C, 3 * C, min(FLASH_BR, T - q0), hs);
        flash_load_tile(sdO, ldx, dbase + (size_t)q0 * C, C, min(FLASH_BR, T - q0), hs);
        flash_load_rows(sLse, sD, lrow, drow, q0, T);
        __syncthreads();
        flash_mma<0, 1>(sS, FLASH_LDS, sQ, ldx, sK, ldx, FLASH_BR, FLASH_BC, hs, 0);    // S = Q K^T
        flash_mma<0, 1>(sdP, FLASH_LDS, sdO, ldx, sV, ldx, FLASH_BR, FLASH_BC, hs, 0);  // dP = dO V^T
        __syncthreads();
        flash_probs_grads(sP, sdS, sS, sdP, sLse, sD, q0, k0, T, scale);
        __syncthreads();
        flash_mma<1, 0>(sdV, ldo, sP, FLASH_LDP, sdO, ldx, FLASH_BC, hs, FLASH_BR, 1);  // dV += P^T dO
        flash_mma<1, 0>(sdK, ldo, sdS, FLASH_LDP, sQ, ldx, FLASH_BC, hs, FLASH_BR, 1);  // dK += dS^T Q
        __syncthreads();
    }
    for (int i = threadIdx.x; i < FLASH_BC * hs; i += FLASH_THREADS) {
        int r = i / hs, d = i % hs;
        if (k0 + r >= T) break;
        floatX* g = dqkv + ((size_t)b * T + k0 + r) * 3 * C + (size_t)h * hs + d;
        g[C] = f2x(sdK[r * ldo + d]);
        g[2 * C] = f2x(sdV[r * ldo + d]);
    }
}

// grid (ceil(T / BR), NH, B): the dq part of dqkv (B, T, 3C) (overwrite).
// Occupancy (sm_90, hs 64): bf16 38.3 KiB, 56 registers -> 5 blocks (20 warps) per SM, shared-memory-bound; fp32
// 58.8 KiB, 32 registers -> 3.
__global__ void __launch_bounds__(FLASH_THREADS) flash_backward_dq_kernel(floatX* dqkv, const floatX* dout,
        const floatX* qkv, const float* lse, const float* D, int T, int NH, int hs, float scale) {
    extern __shared__ __align__(128) unsigned char flash_smem[];
    int qt = gridDim.x - 1 - blockIdx.x;
    int h = blockIdx.y, b = blockIdx.z, q0 = qt * FLASH_BR, C = NH * hs;
    int ldx = flash_ldx(hs), ldo = flash_ldo(hs);
    unsigned char* p = flash_smem;
    floatX* sQ = (floatX*)flash_take(&p, 32 * ldx * sizeof(floatX));
    floatX* sdO = (floatX*)flash_take(&p, 32 * ldx * sizeof(floatX));
    floatX* sK = (floatX*)flash_take(&p, 32 * ldx * sizeof(floatX));
    floatX* sV = (floatX*)flash_take(&p, 32 * ldx * sizeof(floatX));
    float* sS = (float*)flash_take(&p, FLASH_BR * FLASH_LDS * sizeof(float));
    float* sdP = (float*)flash_take(&p, FLASH_BR * FLASH_LDS * sizeof(float));
    floatX* sdS = (floatX*)flash_take(&p, FLASH_BR * FLASH_LDP * sizeof(floatX));
    float* sdQ = (float*)flash_take(&p, 32 * ldo * sizeof(float));
    float* sLse = (float*)flash_take(&p, FLASH_BR * sizeof(float));
    float* sD = (float*)flash_take(&p, FLASH_BR * sizeof(float));
    const floatX* base = qkv + (size_t)b * T * 3 * C + (size_t)h * hs;
    flash_load_tile(sQ, ldx, base + (size_t)q0 * 3 * C, 3 * C, min(FLASH_BR, T - q0), hs);
    flash_load_tile(sdO, ldx, dout + ((size_t)b * T + q0) * C + (size_t)h * hs, C, min(FLASH_BR, T - q0), hs);
    flash_load_rows(sLse, sD, lse + ((size_t)b * NH + h) * T, D + ((size_t)b * NH + h) * T, q0, T);
    for (int i = threadIdx.x; i < FLASH_BR * ldo; i += FLASH_THREADS) sdQ[i] = 0.0f;
    for (int kt = 0; kt <= qt; kt++) {
        int k0 = kt * FLASH_BC;
        const floatX* kv = base + (size_t)k0 * 3 * C + C;
        flash_load_tile(sK, ldx, kv, 3 * C, min(FLASH_BC, T - k0), hs);
        flash_load_tile(sV, ldx, kv + C, 3 * C, min(FLASH_BC, T - k0), hs);
        __syncthreads();
        flash_mma<0, 1>(sS, FLASH_LDS, sQ, ldx, sK, ldx, FLASH_BR, FLASH_BC, hs, 0);    // S = Q K^T
        flash_mma<0, 1>(sdP, FLASH_LDS, sdO, ldx, sV, ldx, FLASH_BR, FLASH_BC, hs, 0);  // dP = dO V^T
        __syncthreads();
        flash_probs_grads(NULL, sdS, sS, sdP, sLse, sD, q0, k0, T, scale);
        __syncthreads();
        flash_mma<0, 0>(sdQ, ldo, sdS, FLASH_LDP, sK, ldx, FLASH_BR, hs, FLASH_BC, 1);  // dQ += dS K
        __syncthreads();
    }
    for (int i = threadIdx.x; i < FLASH_BR * hs; i += FLASH_THREADS) {
        int r = i / hs, d = i % hs;
        if (q0 + r >= T) break;
        dqkv[((size_t)b * T + q0 + r) * 3 * C + (size_t)h * hs + d] = f2x(sdQ[r * ldo + d]);
    }
}


// online softmax: (m, s) with s = sum exp(x - m) over the values seen; adds x
__device__ __forceinline__ void softmax_add(float* m, float* s, float x) {
    if (x > *m) {
        *s = *s * expf(*m - x) + 1.0f;
        *m = x;
    } else {
        *s += expf(x - *m);
    }
}

// merges the state (m2, s2) into (m, s); an empty state has m = -inf, s = 0
__device__ __forceinline__ void softmax_merge(float* m, float* s, float m2, float s2) {
    float mx = fmaxf(*m, m2);
    if (mx == -INFINITY) return;
    *s = *s * expf(*m - mx) + s2 * expf(m2 - mx);
    *m = mx;
}

// (m, s) merged over the block in a fixed order (blockDim.x a multiple of 32); every thread gets the result.
// shm, shs: 32 floats each
__device__ void block_softmax_merge(float* m, float* s, float* shm, float* shs) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, *m, o), s2 = __shfl_xor_sync(0xffffffffu, *s, o);
        softmax_merge(m, s, m2, s2);
    }
    if (lane == 0) shm[warp] = *m, shs[warp] = *s;
    __syncthreads();
    *m = lane < nwarps ? shm[lane] : -INFINITY;
    *s = lane < nwarps ? shs[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, *m, o), s2 = __shfl_xor_sync(0xffffffffu, *s, o);
        softmax_merge(m, s, m2, s2);
    }
}

// Fused softmax + cross-entropy, one block per row of logits (N, Vp), softmax over the first V columns.
// One read of the row gives the max and the sum (online softmax); losses[row] = logsumexp - logit[target] when
// targets != NULL. With dloss != 0 a second pass overwrites the row in place by
// dlogits = dloss * (softmax - onehot(target)) (padded columns 0); the probabilities are never stored.
// probs != NULL (one row, sampling): probs[v] = softmax in fp32 (padded columns 0). 128-bit accesses when Vp is a
// multiple of X128 (the row starts 16-byte aligned), else one element at a time.
__global__ void fused_classifier_kernel(floatX* logits, float* losses, float* probs, const int* targets, float dloss,
                                        int V, int Vp) {
    __shared__ float shm[32], shs[32];
    int row = blockIdx.x;
    floatX* l = logits + (size_t)row * Vp;
    int vec = Vp % X128 == 0 ? X128 : 1, stride = blockDim.x * vec;
    int target = targets != NULL ? targets[row] : -1;
    float m = -INFINITY, s = 0.0f, xt = 0.0f;
    for (int v0 = threadIdx.x * vec; v0 < Vp; v0 += stride) {
        x128 x;
        if (vec > 1) x = load128(l + v0);
        else x.v[0] = l[v0];
        for (int k = 0; k < vec; k++) {
            if (v0 + k < V) softmax_add(&m, &s, x2f(x.v[k]));
            if (v0 + k == target) xt = x2f(x.v[k]);
        }
    }
    block_softmax_merge(&m, &s, shm, shs);
    // the thread that read the target's logit writes the loss (before any overwrite of the row below)
    if (target >= 0 && target / vec % blockDim.x == threadIdx.x) losses[row] = (logf(s) + m) - xt;
    if (probs == NULL && dloss == 0.0f) return;
    float inv = 1.0f / s;
    for (int v0 = threadIdx.x * vec; v0 < Vp; v0 += stride) {
        x128 x, d;
        if (vec > 1) x = load128(l + v0);
        else x.v[0] = l[v0];
        float p[X128];
        for (int k = 0; k < vec; k++) {
            p[k] = v0 + k < V ? expf(x2f(x.v[k]) - m) * inv : 0.0f;
            d.v[k] = f2x(dloss * (p[k] - (v0 + k == target ? 1.0f : 0.0f)));
        }
        if (probs != NULL && vec > 1) {
            for (int k = 0; k < vec; k += 4)
                *reinterpret_cast<float4*>(probs + v0 + k) = make_float4(p[k], p[k + 1], p[k + 2], p[k + 3]);
        } else if (probs != NULL) {
            probs[v0] = p[0];
        }
        if (dloss == 0.0f) continue;
        if (vec > 1) store128(l + v0, d);
        else l[v0] = d.v[0];
    }
}

// The mean of the N per-position losses: a double sum in one block in a fixed order, rounded to fp32 once.
// loss[1] = the mean; count: loss[0] += the mean (the step's loss sum, read once per step by the loss_sum op).
#define LOSS_THREADS 1024
__global__ void __launch_bounds__(LOSS_THREADS) loss_mean_kernel(double* loss, const float* losses, int N,
                                                                 int count) {
    __shared__ double s[LOSS_THREADS];
    int t = threadIdx.x;
    double v = 0.0;
    for (int i = t; i < N; i += LOSS_THREADS) v += (double)losses[i];
    s[t] = v;
    __syncthreads();
    for (int w = LOSS_THREADS / 2; w > 0; w >>= 1) {
        if (t < w) s[t] += s[t + w];
        __syncthreads();
    }
    if (t == 0) {
        float mean = (float)(s[0] / N);
        loss[1] = (double)mean;
        if (count) loss[0] += (double)mean;
    }
}

// sum of squares, stage 1: block b sums a fixed grid-strided set of elements; partial[b]
__global__ void sumsq_partial_kernel(float* partial, const floatX* x, size_t n) {
    __shared__ float shared[32];
    float s = 0.0f;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float v = x2f(x[i]);
        s += v * v;
    }
    s = block_sum(s, shared);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// stage 2, one block: out = sum of the n partials (fixed order)
__global__ void sumsq_final_kernel(float* out, const float* partial, int n) {
    __shared__ float shared[32];
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += partial[i];
    s = block_sum(s, shared);
    if (threadIdx.x == 0) *out = s;
}

// AdamW on one tensor (llmc/optim_elem.h adamw_elem, as the CPU's adamw_update): fp32 master and state,
// the floatX working copy written from the updated master. bc1 = 1 - beta1^t, bc2 = 1 - beta2^t.
__global__ void adamw_kernel(float* master, floatX* params, const floatX* grads, float* m, float* v, size_t n,
                             float lr, float beta1, float beta2, float bc1, float bc2, float eps, float wd,
                             float grad_scale) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    adamw_elem(&master[i], &m[i], &v[i], __fmul_rn(x2f(grads[i]), grad_scale), lr, beta1, beta2, bc1, bc2, eps, wd);
    if ((void*)params != (void*)master) params[i] = f2x(master[i]);
}

__global__ void float_to_x_kernel(floatX* out, const float* inp, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = f2x(inp[i]);
}

__global__ void x_to_float_kernel(float* out, const floatX* inp, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = x2f(inp[i]);
}

// ----------------------------------------------------------------------------
// IVON / PoCo kernels: thin loops around the element functions of llmc/optim_elem.h and the noise of llmc/noise.h
// (host and device code; the rounded intrinsics under nvcc, so the bits are those of the CPU passes in llmc/optim.h).
// Flat parameter indices [0, n); the group of index i (prior delta wdf0 for 1-D, wdf1 for 2-D tensors) comes from
// OptGroups. The noise eps of index i is lane i & 3 of Philox block i >> 2: the noise kernels run one thread per
// block of 4 and never store eps.

// tensor i of PARAM_TABLE covers the flat indices [end[i - 1], end[i]); bit i of decay: a 2-D tensor
typedef struct {
    size_t end[NUM_PARAMETER_TENSORS];
    unsigned decay;
} OptGroups;

// 1 if flat index i lies in a 2-D tensor
__device__ __forceinline__ int opt_group(const OptGroups& g, size_t i) {
    int t = 0;
    while (t < NUM_PARAMETER_TENSORS - 1 && i >= g.end[t]) t++;
    return (g.decay >> t) & 1u;
}

__device__ __forceinline__ float opt_wdf(const OptGroups& g, size_t i, float wdf0, float wdf1) {
    return opt_group(g, i) ? wdf1 : wdf0;
}

// the floats i0 .. i0 + 3 below n (i0 a multiple of 4, p 16-byte aligned: one 128-bit load when all 4 exist)
__device__ __forceinline__ void opt_load4(const float* p, size_t i0, size_t n, float v[4]) {
    if (i0 + 4 <= n) {
        float4 t = *reinterpret_cast<const float4*>(p + i0);
        v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
        return;
    }
    for (int l = 0; l < 4; l++) v[l] = i0 + l < n ? p[i0 + l] : 0.0f;
}

__device__ __forceinline__ void opt_store4(float* p, size_t i0, size_t n, const float v[4]) {
    if (i0 + 4 <= n) {
        *reinterpret_cast<float4*>(p + i0) = make_float4(v[0], v[1], v[2], v[3]);
        return;
    }
    for (int l = 0; l < 4; l++)
        if (i0 + l < n) p[i0 + l] = v[l];
}

// eps of the block of 4 at i0 (0 when the noise is off)
__device__ __forceinline__ void opt_eps4(NoiseKey key, int off, size_t i0, float e[4]) {
    if (off) {
        e[0] = e[1] = e[2] = e[3] = 0.0f;
        return;
    }
    noise_key_normal4(key, (uint64_t)(i0 >> 2), e);
}

// theta = m + eps / sqrt(essf (h + wdf)) (ivon_sample); theta (n) floatX, m, h (n) fp32
__global__ void ivon_sample_kernel(floatX* theta, const float* m, const float* h, size_t n, OptGroups g, float essf,
                                   float wdf0, float wdf1, NoiseKey key, int off) {
    size_t i0 = 4 * ((size_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (i0 >= n) return;
    float e[4], mv[4], hv[4];
    opt_eps4(key, off, i0, e);
    opt_load4(m, i0, n, mv);
    opt_load4(h, i0, n, hv);
    for (int l = 0; l < 4 && i0 + l < n; l++) {
        float nz = ivon_noise_elem(e[l], hv[l], essf, opt_wdf(g, i0 + l, wdf0, wdf1));
        theta[i0 + l] = f2x(ivon_sample_elem(mv[l], nz));
    }
}

// Welford accumulation of sample k (ivon_accumulate) over the flat indices [lo, n), lo a multiple of 4: x = grad
// clip into acc_g, n x into acc_ng, the noise n regenerated from key and h. G: floatX (the gradients) or float (the
// reduced accumulator, shared noise).
template <typename G>
__global__ void ivon_accumulate_kernel(float* acc_g, float* acc_ng, const G* grad, float clip, const float* h,
                                       size_t lo, size_t n, OptGroups g, float essf, float wdf0, float wdf1,
                                       NoiseKey key, int off, int k) {
    size_t i0 = lo + 4 * ((size_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (i0 >= n) return;
    float e[4], hv[4], ag[4], an[4];
    opt_eps4(key, off, i0, e);
    opt_load4(h, i0, n, hv);
    opt_load4(acc_g, i0, n, ag);
    opt_load4(acc_ng, i0, n, an);
    float kf = (float)k;
    for (int l = 0; l < 4 && i0 + l < n; l++) {
        float nz = ivon_noise_elem(e[l], hv[l], essf, opt_wdf(g, i0 + l, wdf0, wdf1));
        ivon_accumulate_elem(&ag[l], &an[l], (float)grad[i0 + l], clip, nz, k, kf);
    }
    opt_store4(acc_g, i0, n, ag);
    opt_store4(acc_ng, i0, n, an);
}

// Welford accumulation of the clipped gradient alone (ivon_accumulate_grad)
__global__ void ivon_accumulate_grad_kernel(float* acc_g, const floatX* grad, float clip, size_t n, int k) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    acc_g[i] = ivon_welford_elem(acc_g[i], OPT_MUL(x2f(grad[i]), clip), k, (float)k);
}

// acc_ng = (acc_ng (h + wdf)) essf in place (ivon_price_hessian)
__global__ void ivon_price_kernel(float* acc_ng, const float* h, size_t n, OptGroups g, float essf, float wdf0,
                                  float wdf1) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    acc_ng[i] = ivon_price_elem(acc_ng[i], h[i], essf, opt_wdf(g, i, wdf0, wdf1));
}

// the inputs of one IVON / PoCo update (PoCo pointers NULL for IVON)
typedef struct {
    floatX* theta;  // the working weights, = the new m
    float *m, *g, *h;
    const float *acc_g, *acc_ng;
    const float *acc_g_out, *acc_ng_out, *m_out, *h_out, *gbar_out, *hbar_out;
} OptUpdatePtrs;

#define OPT_STAT_BLOCKS 256  // fixed grid of the reductions: the partials are summed in a fixed order
#define OPT_STAT_THREADS 256

// per block: sums a, b, c of the threads into part[3 blockIdx.x ..] (tree in shared memory, fixed order)
__device__ __forceinline__ void opt_block_partial3(double* part, double a, double b, double c) {
    __shared__ double s[3][OPT_STAT_THREADS];
    int t = threadIdx.x;
    s[0][t] = a, s[1][t] = b, s[2][t] = c;
    __syncthreads();
    for (int w = OPT_STAT_THREADS / 2; w > 0; w >>= 1) {
        if (t < w)
            for (int j = 0; j < 3; j++) s[j][t] += s[j][t + w];
        __syncthreads();
    }
    if (t == 0)
        for (int j = 0; j < 3; j++) part[3 * blockIdx.x + j] = s[j][0];
}

// The IVON (poco 0: x = acc_g, f = Price Hessian) or PoCo update (poco_vr_elem) and the Newton step
// (ivon_newton_elem) of the flat indices [lo, n), theta = the new m; s0 / s1 the scalars of the 1-D / 2-D group.
// The momentum p.g is indexed from lo (ZeRO-1: the shard), everything else by the flat index.
// part[3 b ..] = clipped coordinates, invariant violations, sum |dm| of block b.
__global__ void ivon_update_kernel(OptUpdatePtrs p, size_t lo, size_t n, OptGroups g, IvonScalars s0, IvonScalars s1,
                                   int poco, float gamma, int prox_mode, double* part) {
    double clipped = 0.0, viol = 0.0, sum_dm = 0.0;
    for (size_t i = lo + (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        IvonScalars s = opt_group(g, i) ? s1 : s0;
        float x, f, pr = 0.0f;
        if (poco) {
            poco_vr_elem(p.acc_g[i], p.acc_ng[i], p.h[i], p.acc_g_out[i], p.acc_ng_out[i], p.h_out[i], p.gbar_out[i],
                         p.hbar_out[i], p.m[i], p.m_out[i], gamma, s.essf, s.wdf, &x, &f, &pr);
        } else {
            x = p.acc_g[i];
            f = ivon_price_elem(p.acc_ng[i], p.h[i], s.essf, s.wdf);
        }
        float m = p.m[i], mg = p.g[i - lo], h = p.h[i];
        int c, b;
        float adm = ivon_newton_elem(&m, &mg, &h, x, f, pr, poco ? prox_mode : IVON_PROX_NONE, s, &c, &b);
        p.m[i] = m, p.g[i - lo] = mg, p.h[i] = h;
        p.theta[i] = f2x(m);
        clipped += c;
        viol += b;
        sum_dm += (double)adm;
    }
    opt_block_partial3(part, clipped, viol, sum_dm);
}

// part: counts of the non-finite elements of x (n)
__global__ void nonfinite_partial_kernel(double* part, const float* x, size_t n) {
    double bad = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        bad += !isfinite(x[i]);
    opt_block_partial3(part, bad, 0.0, 0.0);
}

// part: sum of (a - gamma b)^2 with d = a - gamma b rounded to fp32 (the CPU's gpt2_diff_norm)
__global__ void diff_sumsq_partial_kernel(double* part, const floatX* a, const floatX* b, float gamma, size_t n) {
    double sq = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        double d = (double)OPT_SUB(x2f(a[i]), OPT_MUL(gamma, x2f(b[i])));
        sq = __dadd_rn(sq, __dmul_rn(d, d));  // never contracted into an FMA
    }
    opt_block_partial3(part, sq, 0.0, 0.0);
}

// out[j] = sum over the blocks (in order) of part[3 b + j], j < 3; one thread
__global__ void partial3_final_kernel(double* out, const double* part, int blocks) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    double s[3] = {0.0, 0.0, 0.0};
    for (int b = 0; b < blocks; b++)
        for (int j = 0; j < 3; j++) s[j] += part[3 * b + j];
    for (int j = 0; j < 3; j++) out[j] = s[j];
}

// the strided sample of h and sigma for the diagnostics: hs[k] = h[k stride], ss[k] = sigma of it (k < cap)
__global__ void ivon_diag_sample_kernel(float* hs, float* ss, const float* h, size_t n, size_t stride, size_t cap,
                                        OptGroups g, float essf, float wdf0, float wdf1) {
    size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t i = k * stride;
    if (k >= cap || i >= n) return;
    hs[k] = h[i];
    ss[k] = ivon_sigma(h[i], essf, opt_wdf(g, i, wdf0, wdf1));
}

// Per token of the last forward (one block per row of logits (N, Vp), softmax over the first V): conf = the largest
// probability, arg = its first index (ECE, llmc/metrics.h). prob_sum != NULL (BMA): prob_sum (N, Vp) = probs
// (s == 0) or += probs; with final, the mean over S = s + 1 samples gives conf and arg instead.
__global__ void token_conf_kernel(float* conf, int* arg, float* prob_sum, const floatX* logits, int V, int Vp, int s,
                                  int final) {
    __shared__ float shared[32];
    __shared__ float sbest[1024];
    __shared__ int sarg[1024];
    const floatX* x = logits + (size_t)blockIdx.x * Vp;
    float mx = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, x2f(x[v]));
    mx = block_max(mx, shared);
    float sum = 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) sum += expf(x2f(x[v]) - mx);
    sum = block_sum(sum, shared);
    float inv = 1.0f / sum;
    float* ps = prob_sum != NULL ? prob_sum + (size_t)blockIdx.x * Vp : NULL;
    float invS = 1.0f / (float)(s + 1);
    float best = -1.0f;
    int ba = 0;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float p = expf(x2f(x[v]) - mx) * inv;
        if (ps != NULL) {
            p = s == 0 ? p : ps[v] + p;
            ps[v] = p;
            p = p * invS;
        }
        if (p > best) best = p, ba = v;
    }
    sbest[threadIdx.x] = best;
    sarg[threadIdx.x] = ba;
    __syncthreads();
    if (threadIdx.x == 0 && (ps == NULL || final)) {
        float b = sbest[0];
        int a = sarg[0];
        for (int t = 1; t < (int)blockDim.x; t++)
            if (sbest[t] > b || (sbest[t] == b && sarg[t] < a)) b = sbest[t], a = sarg[t];
        conf[blockIdx.x] = b;
        arg[blockIdx.x] = a;
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

// X128 when n elements (or rows of n) at each pointer go as 128-bit vectors: n a multiple of X128 and the pointers
// 16-byte aligned; else 1
static int vec128(size_t n, const void* a, const void* b, const void* c) {
    uintptr_t any = (uintptr_t)a | (uintptr_t)b | (uintptr_t)c;
    return n % X128 == 0 && any % 16 == 0 ? X128 : 1;
}

static void encoder_forward(floatX* out, const int* inp, const floatX* wte, const floatX* wpe, int B, int T, int C) {
    size_t n = (size_t)B * T * C;
    int vec = vec128((size_t)C, out, wte, wpe);
    encoder_forward_kernel<<<ceil_div(n / vec, 256), 256>>>(out, inp, wte, wpe, B * T, T, C, vec);
    cudaCheckLaunch();
}

// residual_out != NULL: fused residual_out = inp1 + inp2, then the layernorm of it
static void layernorm_forward(floatX* out, float* mean, float* rstd, floatX* residual_out, const floatX* inp1,
                              const floatX* inp2, const floatX* weight, const floatX* bias, int N, int C) {
    layernorm_forward_kernel<<<ceil_div(N, 8), 256>>>(out, mean, rstd, residual_out, inp1, inp2, weight, bias, N, C);
    cudaCheckLaunch();
}

static int colsum_chunks(int N, int* rows_per_chunk) {
    int chunks = ceil_div(N, COLSUM_ROWS_PER_CHUNK);
    if (chunks > COLSUM_MAX_CHUNKS) chunks = COLSUM_MAX_CHUNKS;
    *rows_per_chunk = ceil_div(N, chunks);
    return chunks;
}

// dinp += ..., dweight += ..., dbias += ... (one kernel); scratch holds 2 * COLSUM_MAX_CHUNKS * C floats, done is 0
static void layernorm_backward(floatX* dinp, floatX* dweight, floatX* dbias, float* scratch, unsigned int* done,
                               const floatX* dout, const floatX* inp, const floatX* weight, const float* mean,
                               const float* rstd, int N, int C) {
    int rows;
    int chunks = colsum_chunks(N, &rows);
    float* p0 = scratch;
    float* p1 = scratch + (size_t)COLSUM_MAX_CHUNKS * C;
    layernorm_backward_kernel<<<chunks, LN_BWD_THREADS>>>(dinp, dweight, dbias, p0, p1, done, dout, inp, weight, mean,
                                                          rstd, N, C, rows);
    cudaCheckLaunch();
}

// dbias (OC) += column sums of dout (N, OC); scratch holds COLSUM_MAX_CHUNKS * OC floats
static void bias_backward(floatX* dbias, float* scratch, const floatX* dout, int N, int OC) {
    int rows;
    int chunks = colsum_chunks(N, &rows);
    colsum_partial_kernel<<<dim3(ceil_div(OC, 32), chunks), dim3(32, 8)>>>(scratch, dout, N, OC, rows);
    cudaCheckLaunch();
    colsum_final_kernel<<<ceil_div(OC, 256), 256>>>(dbias, scratch, chunks, OC);
    cudaCheckLaunch();
}

static void gelu_forward(floatX* out, const floatX* inp, size_t n) {
    int vec = vec128(n, out, inp, inp);
    gelu_forward_kernel<<<ceil_div(n / vec, 256), 256>>>(out, inp, n, vec);
    cudaCheckLaunch();
}

static void gelu_backward(floatX* dinout, const floatX* inp, size_t n) {
    int vec = vec128(n, dinout, inp, inp);
    gelu_backward_kernel<<<ceil_div(n / vec, 256), 256>>>(dinout, inp, n, vec);
    cudaCheckLaunch();
}

// largest power of two <= 256 dividing the address
static uint32_t matmul_alignment(const void* ptr) {
    uintptr_t x = (uintptr_t)ptr;
    uint32_t al = 256;
    while (al > 1 && x % al != 0) al >>= 1;
    return al;
}

// GELU epilogue of matmul_cublaslt
#define MATMUL_GELU_NONE 0
#define MATMUL_GELU_FORWARD 1   // D = gelu(t), t = op(A) op(B) (+ bias) also written to aux: GELU_AUX(_BIAS)
#define MATMUL_GELU_BACKWARD 2  // D = t * gelu'(aux), aux the forward's t: DGELU (no bias)

// Column-major cuBLASLt matmul D(m, n) = op(A) op(B) (+ bias(m) broadcast over columns) (+ beta * D), with an
// optional GELU epilogue (gelu, MATMUL_GELU_*) on the fp32 result before its one rounding to D's type; aux (m, n),
// ld m, of D's type (cuBLASLt: aux ld a multiple of 8, here m = 4C with C a multiple of the head size 16).
// A is (k, m) when trans_a (else (m, k)), B is (n, k) when trans_b (else (k, n)); leading dims are the row
// counts of the stored matrices.
static void matmul_cublaslt(floatX* d, const floatX* a, const floatX* b, const floatX* bias, floatX* aux, int gelu,
                            int m, int n, int k, int trans_a, int trans_b, float beta) {
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasCheck(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    if (gelu == MATMUL_GELU_BACKWARD && bias != NULL) fatalf("matmul_cublaslt: DGELU takes no bias");
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
    if (gelu == MATMUL_GELU_FORWARD) epi = bias != NULL ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
    else if (gelu == MATMUL_GELU_BACKWARD) epi = CUBLASLT_EPILOGUE_DGELU;
    else if (bias != NULL) epi = CUBLASLT_EPILOGUE_BIAS;
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
    if (bias != NULL) {
        cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
        cudaDataType_t bt = CUDA_R_X;
        cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)));
    }
    if (gelu != MATMUL_GELU_NONE) {
        // set before the heuristic, which reads the pointer's alignment; the aux type stays unset (-1): D's type,
        // the only one outside FP8 outputs
        int64_t aux_ld = m;
        cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux,
                                                   sizeof(aux)));
        cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld,
                                                   sizeof(aux_ld)));
    }
    cublasCheck(trans_a ? cublasLtMatrixLayoutCreate(&la, CUDA_R_X, k, m, k) : cublasLtMatrixLayoutCreate(&la, CUDA_R_X, m, k, m));
    cublasCheck(trans_b ? cublasLtMatrixLayoutCreate(&lb, CUDA_R_X, n, k, n) : cublasLtMatrixLayoutCreate(&lb, CUDA_R_X, k, n, k));
    cublasCheck(cublasLtMatrixLayoutCreate(&ld, CUDA_R_X, m, n, m));
    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = CUBLASLT_WORKSPACE_BYTES;
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    // the heuristic assumes 256-byte aligned operands unless told otherwise (layer slices may be less aligned)
    uint32_t al_a = matmul_alignment(a), al_b = matmul_alignment(b), al_d = matmul_alignment(d);
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof(al_a)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof(al_b)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d, sizeof(al_d)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof(al_d)));
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    cublasCheck(cublasLtMatmulAlgoGetHeuristic(cublaslt_handle, desc, la, lb, ld, ld, pref, 1, &heur, &found));
    if (found == 0)
        fatalf("cuBLASLt: no algorithm for m=%d n=%d k=%d trans_a=%d trans_b=%d bias=%d gelu=%d", m, n, k, trans_a,
               trans_b, bias != NULL, gelu);
    const float alpha = 1.0f;
    cublasCheck(cublasLtMatmul(cublaslt_handle, desc, &alpha, a, la, b, lb, &beta, d, ld, d, ld, &heur.algo,
                               cublaslt_workspace, ws, 0));
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    cublasCheck(cublasLtMatrixLayoutDestroy(la));
    cublasCheck(cublasLtMatrixLayoutDestroy(lb));
    cublasCheck(cublasLtMatrixLayoutDestroy(ld));
    cublasCheck(cublasLtMatmulDescDestroy(desc));
}

// out (N, OC) = inp (N, IC) @ weight (OC, IC)^T + bias (OC); bias may be NULL. pre_gelu != NULL: out = gelu of
// that, the pre-activation (N, OC) written to pre_gelu (one matmul, CUBLASLT_EPILOGUE_GELU_AUX_BIAS)
static void matmul_forward(floatX* out, const floatX* inp, const floatX* weight, const floatX* bias, int N, int IC,
                           int OC, floatX* pre_gelu) {
    matmul_cublaslt(out, weight, inp, bias, pre_gelu, pre_gelu != NULL ? MATMUL_GELU_FORWARD : MATMUL_GELU_NONE,
                    OC, N, IC, 1, 0, 0.0f);
}

// dinp (N, IC) = dout (N, OC) @ weight (OC, IC) (overwrite);  dweight (OC, IC) += dout^T @ inp;
// dbias (OC) += column sums of dout (when dbias != NULL). pre_gelu != NULL: inp = gelu(pre_gelu (N, IC)) and dinp
// is the gradient of pre_gelu, dinp * gelu'(pre_gelu) (CUBLASLT_EPILOGUE_DGELU)
static void matmul_backward(floatX* dinp, floatX* dweight, floatX* dbias, float* scratch, const floatX* dout,
                            const floatX* inp, const floatX* weight, int N, int IC, int OC, const floatX* pre_gelu) {
    matmul_cublaslt(dinp, weight, dout, NULL, (floatX*)pre_gelu,
                    pre_gelu != NULL ? MATMUL_GELU_BACKWARD : MATMUL_GELU_NONE, IC, N, OC, 0, 0, 0.0f);
    matmul_cublaslt(dweight, inp, dout, NULL, NULL, MATMUL_GELU_NONE, IC, OC, N, 0, 1, 1.0f);
    if (dbias != NULL) bias_backward(dbias, scratch, dout, N, OC);
}

static void attention_check_head_size(int hs) {
    if (hs % 16 != 0 || hs > FLASH_MAX_HS)
        fatalf("attention: head size %d must be a multiple of 16 and at most %d (flash attention tiles)", hs,
               FLASH_MAX_HS);
}

// Causal self-attention (flash). qkv (B, T, 3C) -> out (B, T, C); lse (B, NH, T) the log-sum-exp of each row of
// scaled scores, kept for the backward.
static void attention_forward(floatX* out, float* lse, const floatX* qkv, int B, int T, int C, int NH) {
    int hs = C / NH;
    attention_check_head_size(hs);
    size_t smem = flash_smem_bytes(hs, 3, 1, 1, 1, 0);
    cudaCheck(cudaFuncSetAttribute(flash_forward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid(ceil_div(T, FLASH_BR), NH, B);
    flash_forward_kernel<<<grid, FLASH_THREADS, smem>>>(out, lse, qkv, T, NH, hs, 1.0f / sqrtf((float)hs));
    cudaCheckLaunch();
}

// dqkv (B, T, 3C) (overwrite) from dout (B, T, C), the forward's qkv, out (B, T, C) and lse (B, NH, T);
// D (B, NH, T) scratch
static void attention_backward(floatX* dqkv, float* D, const floatX* dout, const floatX* qkv, const floatX* out,
                               const float* lse, int B, int T, int C, int NH) {
    int hs = C / NH;
    attention_check_head_size(hs);
    float scale = 1.0f / sqrtf((float)hs);
    int rows = B * T * NH;
    flash_backward_d_kernel<<<ceil_div(rows, 8), 256>>>(D, dout, out, B, T, NH, hs);
    cudaCheckLaunch();
    dim3 grid(ceil_div(T, FLASH_BR), NH, B);
    size_t smem_kv = flash_smem_bytes(hs, 4, 2, 2, 2, 2), smem_q = flash_smem_bytes(hs, 4, 2, 1, 1, 2);
    cudaCheck(cudaFuncSetAttribute(flash_backward_dkdv_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   (int)smem_kv));
    cudaCheck(cudaFuncSetAttribute(flash_backward_dq_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   (int)smem_q));
    flash_backward_dkdv_kernel<<<grid, FLASH_THREADS, smem_kv>>>(dqkv, dout, qkv, lse, D, T, NH, hs, scale);
    cudaCheckLaunch();
    flash_backward_dq_kernel<<<grid, FLASH_THREADS, smem_q>>>(dqkv, dout, qkv, lse, D, T, NH, hs, scale);
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------
// model

typedef struct {
    GPT2_PARAMETER_FIELDS(floatX)
} ParameterTensors;

// Activations (device). Per-layer tensors have L slots of the allocated (B, T) size (one slot when recomputed);
// a forward with a smaller B or T uses the first B*T rows of each slot, compact.
typedef struct {
    floatX* encoded;    // (B, T, C)
    floatX* ln1;        // (L or 1, B, T, C)
    float* ln1_mean;    // (L, B, T)
    float* ln1_rstd;    // (L, B, T)
    floatX* qkv;        // (L, B, T, 3C)
    floatX* atty;       // (L, B, T, C)
    float* att_lse;     // (L, B, NH, T) log-sum-exp of each row of scaled attention scores
    floatX* residual2;  // (L, B, T, C)
    floatX* ln2;        // (L or 1, B, T, C)
    float* ln2_mean;    // (L, B, T)
    float* ln2_rstd;    // (L, B, T)
    floatX* fch;        // (L, B, T, 4C)
    floatX* fch_gelu;   // (L or 1, B, T, 4C)
    floatX* residual3;  // (L, B, T, C)
    floatX* lnf;        // (B, T, C)
    float* lnf_mean;    // (B, T)
    float* lnf_rstd;    // (B, T)
    floatX* logits;     // (cls_rows, Vp) rows [logits_row0, + cls_rows) of the last forward's logits; dlogits in
                        // place during the backward
    float* losses;      // (B, T)
    // scratch
    floatX* proj;       // (B, T, C) attproj / fcproj output before the residual add
    floatX* dresidual;  // (B, T, C) gradient of the residual stream
    floatX* dbig;       // (B, T, 4C) gradient of fch_gelu / fch, then of qkv
    floatX* dsmall;     // (B, T, C) gradient of ln2 / atty / ln1 / lnf
    float* att_d;       // (B, NH, T) rowsum(datty * atty) per head, attention backward
    float* colsum;      // (2, COLSUM_MAX_CHUNKS, 4C) partial column sums
    unsigned int* colsum_done;  // (1) blocks of layernorm_backward_kernel done; 0 between calls
    float* probs;       // (Vp) one row of probabilities for sampling
    float* partial;     // (SUMSQ_BLOCKS + 1) grad-norm partials, then the result
} ActivationTensors;

#define SUMSQ_BLOCKS 1024

typedef struct {
    GPT2Config config;
    size_t param_sizes[NUM_PARAMETER_TENSORS];
    size_t num_parameters;
    float* host_params;       // (num_parameters) fp32 host copy: load, init, checkpoints
    float* master;            // (num_parameters) fp32 master weights (device)
    floatX* params_memory;    // (num_parameters) working weights (device; = master in the fp32 build)
    ParameterTensors params;
    floatX* grads_memory;     // (num_parameters) gradients (device)
    ParameterTensors grads;
    float* grad_acc;          // (padded_parameters) bf16 AdamW over >= 3 micro-batches: the fp32 running sum
    // optimizer state (device), one allocation (gpt2_allocate: AdamW; gpt2_optimizer_init: the kind's buffers)
    int opt_kind;             // OptimizerKind of the state
    float* opt_memory;
    float* m_memory;          // AdamW (2, shard_size) m, v
    float* v_memory;
    // IVON / PoCo, each (opt_stride) floats; the mean m is the master (fp32 build: its own buffer, the master
    // being the working weights theta); the accumulators are adjacent (IN pair, OUT pair: one collective)
    float *mean, *momentum, *hess, *acc_grad, *acc_noise_grad;
    float *acc_grad_out, *acc_noise_grad_out, *anchor_mean, *anchor_hess, *anchor_grad, *anchor_hess_est;
    floatX* grads_in;         // PoCo without clip_each: the saved g_in (padded_parameters)
    double* opt_part;         // (3 OPT_STAT_BLOCKS + 3) reduction partials, then the result
    float* diag_h;            // (2, diag_n) strided sample of h and sigma for the diagnostics
    size_t diag_n;
    size_t opt_stride;        // num_parameters rounded up to 64 (128-bit aligned buffers)
    int anchor_step;          // PoCo: step of the anchor, -1 = none
    long long mega_tokens;    // PoCo: tokens of all anchor refreshes
    IvonUpdateStats last_update;
    DistInfo dist_info;       // rank layout and noise group for the step driver (gpt2_set_dist_info)
    float* host_state;        // (nbuf, num_parameters) host staging of the state buffers for checkpoints
    // evaluation (gpt2_allocate_eval): per token of a forward the confidence and first argmax (ECE), the BMA sum of
    // the probabilities
    void* eval_memory;
    float* d_conf;            // (B*T)
    int* d_arg;               // (B*T)
    float* prob_sum;          // (B*T, Vp) BMA only
    float* h_conf;            // (B*T) pinned
    int* h_arg;               // (B*T) pinned
    ActivationTensors acts;
    void* acts_memory;
    size_t acts_bytes;
    int recompute;            // RECOMPUTE_*
    int gelu_fusion;          // GELU_FUSION_* (gpt2_set_gelu_fusion; default GELU_FUSION_BACKWARD)
    int batch_size, seq_len;  // allocated B, T
    int last_B, last_T;       // of the last forward
    int cls_rows;             // rows of the logits buffer: min(B*T, gpt2_classifier_rows), the classifier's chunk
    int logits_row0;          // first row of the last forward held in acts.logits, -1 = none (or dlogits)
    float mean_loss;          // of the last gpt2_forward with targets, -1.0f without (the training forward: unread)
    double* d_loss;           // (2) device: the step's counted loss sum, the mean loss of the last forward
    // tokens: device (inputs, targets, bucket tokens, bucket offsets, bucket positions), host mirrors in two pinned
    // slots used in turn, so that the host fills the next micro-batch's while the last one's copies are queued
    int* d_tokens;            // (5, B*T + 1)
    int *d_inputs, *d_targets, *d_bucket_tok, *d_bucket_off, *d_bucket_pos;
    int* h_tokens;            // (2, 5, B*T + 1) pinned
    int *h_inputs, *h_targets, *h_bucket_tok, *h_bucket_off, *h_bucket_pos;  // of the current slot
    int token_slot;
    cudaEvent_t tokens_copied[2];  // after the last copies out of each slot
    uint64_t* h_sort;         // (2, B*T) sort keys for the token buckets: (token, position), (size, start)
    int num_buckets;
    int has_targets;
    int has_buckets;          // the buckets of the last forward's inputs are built and queued for the device
    float* h_losses;          // (B*T) pinned
    float* h_probs;           // (Vp) pinned
    // data parallel (gpt2_set_dist, before gpt2_allocate); without a communicator: dist NULL, zero and overlap 0,
    // the shard is [0, np) and nothing is padded
    CudaDist* dist;
    int zero;                 // ZeRO-1: master, m, v hold only [shard_lo, shard_hi) (shard_size floats each)
    int overlap;              // ZeRO-0: the gradient all-reduce runs per layer inside the last micro-batch's backward
    size_t shard_lo, shard_hi;
    size_t shard_size;        // ZeRO-1: ceil(np / P), else np
    size_t padded_parameters; // ZeRO-1: P * shard_size elements of the working weights and gradients, else np
} GPT2;

static void gpt2_point_params(ParameterTensors* p, floatX* memory, const size_t sizes[NUM_PARAMETER_TENSORS]) {
    floatX** f[NUM_PARAMETER_TENSORS] = {&p->wte, &p->wpe, &p->ln1w, &p->ln1b, &p->qkvw, &p->qkvb,
                                         &p->attprojw, &p->attprojb, &p->ln2w, &p->ln2b, &p->fcw, &p->fcb,
                                         &p->fcprojw, &p->fcprojb, &p->lnfw, &p->lnfb};
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        *f[i] = memory;
        memory += sizes[i];
    }
}

// host_params -> master -> working copy (before gpt2_allocate shards the master weights under ZeRO-1)
static void gpt2_upload_params(GPT2* model) {
    size_t np = model->num_parameters;
    if (model->zero && model->acts_memory != NULL) fatalf("gpt2_upload_params after the ZeRO-1 sharding");
    cudaCheck(cudaMemcpy(model->master, model->host_params, np * sizeof(float), cudaMemcpyHostToDevice));
    if ((void*)model->params_memory != (void*)model->master) {
        float_to_x_kernel<<<ceil_div(np, 256), 256>>>(model->params_memory, model->master, np);
        cudaCheckLaunch();
    }
    cudaCheck(cudaDeviceSynchronize());
}

// this process's rank (0 without a communicator)
static int gpt2_rank(const GPT2* model) { return model->dist != NULL ? model->dist->rank : 0; }

// master -> host_params; under ZeRO-1 the shards gathered on rank 0 (collective: every rank calls it), with the
// gradient buffer as rank 0's receive scratch (P * shard_size floatX >= shard_size floats for P >= 2)
static void gpt2_download_params(GPT2* model) {
    if (model->zero) {
        cuda_dist_gather_to_host(model->dist, model->master, model->shard_size, model->num_parameters,
                                 model->host_params, (float*)model->grads_memory);
        return;
    }
    cudaCheck(cudaMemcpy(model->host_params, model->master, model->num_parameters * sizeof(float),
                         cudaMemcpyDeviceToHost));
}

static void gpt2_init_common(GPT2* model, GPT2Config c, const char* what) {
    gpt2_config_check(c, what);
    memset(model, 0, sizeof(*model));
    model->config = c;
    gpt2_param_sizes(model->param_sizes, c);
    model->num_parameters = gpt2_num_parameters(c);
    size_t np = model->num_parameters;
    model->host_params = (float*)mallocCheck(np * sizeof(float));
    cudaCheck(cudaMalloc((void**)&model->master, np * sizeof(float)));
#ifdef ENABLE_FP32
    model->params_memory = model->master;
#else
    cudaCheck(cudaMalloc((void**)&model->params_memory, np * sizeof(floatX)));
#endif
    gpt2_point_params(&model->params, model->params_memory, model->param_sizes);
    model->mean_loss = -1.0f;
    model->shard_lo = 0;
    model->shard_hi = np;
    model->shard_size = np;
    model->padded_parameters = np;
    model->opt_kind = OPT_ADAMW;
    model->anchor_step = -1;
    model->dist_info = dist_single();
    model->gelu_fusion = GELU_FUSION_BACKWARD;
}

// GELU_FUSION_* of the following forwards and backwards (every mode keeps fch, the pre-activation, per layer)
void gpt2_set_gelu_fusion(GPT2* model, int mode) {
    if (mode < GELU_FUSION_NONE || mode > GELU_FUSION_BACKWARD)
        fatalf("gelu fusion %d must be 0 (none), 1 (forward) or 2 (forward and backward)", mode);
    model->gelu_fusion = mode;
}

// one-time library setup (handles, cuBLASLt workspace); the default fp32 cuBLAS math (no TF32)
static void gpt2_cuda_init(void) {
    static int done = 0;
    if (done) return;
    done = 1;
    cublasCheck(cublasLtCreate(&cublaslt_handle));
    cudaCheck(cudaMalloc(&cublaslt_workspace, CUBLASLT_WORKSPACE_BYTES));
}

void gpt2_build_from_checkpoint(GPT2* model, const char* path) {
    gpt2_cuda_init();
    FILE* fp = fopenCheck(path, "rb");
    GPT2Config c;
    int version = model_read_header(fp, path, &c);
    gpt2_init_common(model, c, path);
    model_read_weights(fp, path, version, model->host_params, model->num_parameters);
    fcloseCheck(fp, path);
    gpt2_upload_params(model);
}

void gpt2_build_random(GPT2* model, GPT2Config config, uint64_t seed) {
    gpt2_cuda_init();
    gpt2_init_common(model, config, "random init");
    model_init_random(model->host_params, config, seed);
    gpt2_upload_params(model);
}

// ----------------------------------------------------------------------------
// data parallel (llmc/dist.h, llmc/cuda_dist.h): one process per GPU.
//   ZeRO-0 (AdamW): each rank accumulates its micro-batches' gradients (loss scale 1/K_local); in the backward of the
//     last micro-batch, as soon as layer l's backward has been issued, the 12 gradient slices of layer l (the
//     per-layer tensors are (L, ...) arrays, so a layer's gradient is 12 contiguous slices, not one block) are
//     averaged over the ranks in one NCCL group on the NCCL stream, after an event of the compute stream; lnfw/lnfb
//     go with layer L-1, wte and wpe (written again by the encoder backward at the very end) last. The compute
//     stream waits for the NCCL stream before the norm and the update. Every rank then holds the same mean gradient,
//     norm and update.
//   ZeRO-1 (-zs 1): after the backward one reduce-scatter of the flat gradient (padded to P * ceil(np / P); the
//     flat shards cut across tensors and layers, so it cannot start per layer), the global norm from the shards'
//     sums of squares (summed over the ranks together with the loss), AdamW on this rank's shard of the master
//     weights, m and v (only the shard is allocated), then one all-gather of the floatX weights.
//   IVON / PoCo, ZeRO-0: the accumulators (PoCo: and the OUT pair) averaged in one fp32 all-reduce after the
//     micro-batches (shared noise with one micro-batch per rank: the gradient means alone, acc_ng rebuilt).
//   IVON / PoCo, ZeRO-1: the same accumulators reduce-scattered (fp32 mean, one collective each; acc_ng rebuilt
//     on the shard only under shared noise), the update on this rank's shard of m, momentum and h (statistics
//     summed over the ranks by the driver), then m and h all-gathered (every rank samples theta = m + sigma(h) eps
//     over all parameters) and the working weights = m. Only the momentum is allocated as the shard; m, h, the
//     accumulators and the PoCo anchor stay full (the anchor refresh all-reduces its two means, as ZeRO-0).
// Loss, val loss and (ZeRO-1) the squared norm are summed over the ranks as host doubles, so the step guard sees the
// same values on every rank. Checkpoints hold the full state in the single-process format: rank 0 writes, ZeRO-1
// gathers the sharded buffers to it first; on resume every rank reads the files and keeps its shard of them.

// the layout of a data-parallel run; before gpt2_allocate. d == NULL or without a communicator: one process.
void gpt2_set_dist(GPT2* model, CudaDist* d, int zero_stage) {
    if (model->acts_memory != NULL) fatalf("gpt2_set_dist after gpt2_allocate");
    int comm = d != NULL && d->comm != NULL;
    size_t np = model->num_parameters;
    model->dist = comm ? d : NULL;
    model->zero = comm && zero_stage > 0;
    model->overlap = comm && !model->zero;
    model->shard_lo = 0;
    model->shard_hi = np;
    model->shard_size = np;
    model->padded_parameters = np;
    if (model->zero) {
        model->shard_size = dist_shard_size(np, d->world);
        model->padded_parameters = model->shard_size * (size_t)d->world;
        dist_shard(np, d->world, d->rank, &model->shard_lo, &model->shard_hi);
    }
}

// ZeRO-1: the working weights padded to P * shard_size, the master weights cut to this rank's shard
static void gpt2_shard_weights(GPT2* model) {
    size_t np = model->num_parameters, npad = model->padded_parameters, s = model->shard_size;
    size_t lo = model->shard_lo, hi = model->shard_hi;
    floatX* w;
    cudaCheck(cudaMalloc((void**)&w, npad * sizeof(floatX)));
    cudaCheck(cudaMemset(w, 0, npad * sizeof(floatX)));
    cudaCheck(cudaMemcpy(w, model->params_memory, np * sizeof(floatX), cudaMemcpyDeviceToDevice));
    float* ms;
    cudaCheck(cudaMalloc((void**)&ms, s * sizeof(float)));
    cudaCheck(cudaMemset(ms, 0, s * sizeof(float)));
    if (hi > lo) cudaCheck(cudaMemcpy(ms, model->master + lo, (hi - lo) * sizeof(float), cudaMemcpyDeviceToDevice));
    if ((void*)model->params_memory != (void*)model->master) cudaCheck(cudaFree(model->params_memory));
    cudaCheck(cudaFree(model->master));
    model->master = ms;
    model->params_memory = w;
    gpt2_point_params(&model->params, w, model->param_sizes);
}

// the gradient slices of layer l (and, with the last layer, lnfw / lnfb) = their mean over the ranks, on the NCCL
// stream after the compute work issued so far. Tensors 2..13 of PARAM_TABLE are the per-layer (L, ...) ones.
static void gpt2_reduce_layer_grads(GPT2* model, int l) {
    floatX* ptrs[NUM_PARAMETER_TENSORS];
    size_t counts[NUM_PARAMETER_TENSORS];
    int n = 0, L = model->config.num_layers;
    size_t off = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t sz = model->param_sizes[i];
        if (i >= 2 && i <= 13) {
            size_t per = sz / (size_t)L;
            ptrs[n] = model->grads_memory + off + (size_t)l * per;
            counts[n++] = per;
        } else if (i >= 14 && l == L - 1) {
            ptrs[n] = model->grads_memory + off;
            counts[n++] = sz;
        }
        off += sz;
    }
    cuda_dist_allreduce_mean_x(model->dist, ptrs, counts, n);
}

// wte and wpe gradients = their mean over the ranks (after the encoder backward)
static void gpt2_reduce_embedding_grads(GPT2* model) {
    floatX* ptrs[2] = {model->grads.wte, model->grads.wpe};
    size_t counts[2] = {model->param_sizes[0], model->param_sizes[1]};
    cuda_dist_allreduce_mean_x(model->dist, ptrs, counts, 2);
}

// bytes of one carved tensor, rounded up to 256 (cuBLASLt alignment)
static size_t gpt2_align(size_t bytes) { return (bytes + 255) & ~(size_t)255; }

// Allocates gradients, AdamW state and activations for micro-batches of (B, T), with a recompute mode.
void gpt2_allocate(GPT2* model, int B, int T, int recompute) {
    GPT2Config c = model->config;
    if (B < 1) fatalf("batch size B=%d must be at least 1", B);
    if (T < 1 || T > c.max_seq_len)
        fatalf("sequence length T=%d must be in 1..%d (the model's context)", T, c.max_seq_len);
    if (recompute < RECOMPUTE_NONE || recompute > RECOMPUTE_GELU_LN)
        fatalf("recompute mode %d must be 0 (none), 1 (GELU) or 2 (GELU and layernorm)", recompute);
    if (model->acts_memory != NULL) fatalf("gpt2_allocate called twice");
    size_t np = model->num_parameters, npad = model->padded_parameters, s = model->shard_size;
    if (model->zero) gpt2_shard_weights(model);
    cudaCheck(cudaMalloc((void**)&model->grads_memory, npad * sizeof(floatX)));
    cudaCheck(cudaMemset(model->grads_memory, 0, npad * sizeof(floatX)));
    gpt2_point_params(&model->grads, model->grads_memory, model->param_sizes);
    // AdamW m, v: this rank's shard under ZeRO-1 (s = np otherwise)
    cudaCheck(cudaMalloc((void**)&model->opt_memory, 2 * s * sizeof(float)));
    cudaCheck(cudaMemset(model->opt_memory, 0, 2 * s * sizeof(float)));
    model->m_memory = model->opt_memory;
    model->v_memory = model->opt_memory + s;
    model->host_state = (float*)mallocCheck(2 * np * sizeof(float));

    size_t L = c.num_layers, C = c.channels, NH = c.num_heads, Vp = c.padded_vocab_size, BT = (size_t)B * T;
    size_t Lgelu = recompute >= RECOMPUTE_GELU ? 1 : L, Lln = recompute >= RECOMPUTE_GELU_LN ? 1 : L;
    size_t X = sizeof(floatX), F = sizeof(float);
    if (gpt2_classifier_rows < 1) fatalf("classifier chunk of %d rows must be at least 1", gpt2_classifier_rows);
    int cls_rows = BT < (size_t)gpt2_classifier_rows ? (int)BT : gpt2_classifier_rows;
    ActivationTensors* a = &model->acts;
    struct { void** ptr; size_t bytes; } t[] = {
        {(void**)&a->encoded, BT * C * X},         {(void**)&a->ln1, Lln * BT * C * X},
        {(void**)&a->ln1_mean, L * BT * F},        {(void**)&a->ln1_rstd, L * BT * F},
        {(void**)&a->qkv, L * BT * 3 * C * X},     {(void**)&a->atty, L * BT * C * X},
        {(void**)&a->att_lse, L * BT * NH * F},    {(void**)&a->residual2, L * BT * C * X},
        {(void**)&a->ln2, Lln * BT * C * X},       {(void**)&a->ln2_mean, L * BT * F},
        {(void**)&a->ln2_rstd, L * BT * F},        {(void**)&a->fch, L * BT * 4 * C * X},
        {(void**)&a->fch_gelu, Lgelu * BT * 4 * C * X}, {(void**)&a->residual3, L * BT * C * X},
        {(void**)&a->lnf, BT * C * X},             {(void**)&a->lnf_mean, BT * F},
        {(void**)&a->lnf_rstd, BT * F},            {(void**)&a->logits, (size_t)cls_rows * Vp * X},
        {(void**)&a->losses, BT * F},              {(void**)&a->proj, BT * C * X},
        {(void**)&a->dresidual, BT * C * X},       {(void**)&a->dbig, BT * 4 * C * X},
        {(void**)&a->dsmall, BT * C * X},          {(void**)&a->att_d, BT * NH * F},
        {(void**)&a->colsum, 2 * COLSUM_MAX_CHUNKS * 4 * C * F}, {(void**)&a->colsum_done, sizeof(unsigned int)},
        {(void**)&a->probs, Vp * F},
        {(void**)&a->partial, (SUMSQ_BLOCKS + 1) * F},
    };
    int nt = (int)(sizeof(t) / sizeof(t[0]));
    size_t total = 0;
    for (int i = 0; i < nt; i++) total += gpt2_align(t[i].bytes);
    cudaCheck(cudaMalloc(&model->acts_memory, total));
    cudaCheck(cudaMemset(model->acts_memory, 0, total));
    char* p = (char*)model->acts_memory;
    for (int i = 0; i < nt; i++) {
        *t[i].ptr = p;
        p += gpt2_align(t[i].bytes);
    }
    model->acts_bytes = total;

    size_t nt5 = 5 * (BT + 1);
    cudaCheck(cudaMalloc((void**)&model->d_tokens, nt5 * sizeof(int)));
    cudaCheck(cudaMallocHost((void**)&model->h_tokens, 2 * nt5 * sizeof(int)));
    cudaCheck(cudaMalloc((void**)&model->d_loss, 2 * sizeof(double)));
    cudaCheck(cudaMemset(model->d_loss, 0, 2 * sizeof(double)));
    int** dptr[5] = {&model->d_inputs, &model->d_targets, &model->d_bucket_tok, &model->d_bucket_off,
                     &model->d_bucket_pos};
    for (int i = 0; i < 5; i++) *dptr[i] = model->d_tokens + i * (BT + 1);
    for (int i = 0; i < 2; i++) cudaCheck(cudaEventCreateWithFlags(&model->tokens_copied[i], cudaEventDisableTiming));
    model->token_slot = 1;
    model->h_sort = (uint64_t*)mallocCheck(2 * BT * sizeof(uint64_t));
    cudaCheck(cudaMallocHost((void**)&model->h_losses, BT * sizeof(float)));
    cudaCheck(cudaMallocHost((void**)&model->h_probs, Vp * sizeof(float)));
    model->recompute = recompute;
    model->cls_rows = cls_rows;
    model->logits_row0 = -1;
    model->batch_size = B;
    model->seq_len = T;
    model->mean_loss = -1.0f;
}

static int gpt2_cmp_u64(const void* a, const void* b) {
    uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
    return x < y ? -1 : x > y;
}

// the next host token slot: its copies of two forwards ago are done (normally long since)
static void gpt2_next_token_slot(GPT2* model) {
    int s = model->token_slot ^= 1;
    cudaCheck(cudaEventSynchronize(model->tokens_copied[s]));
    size_t stride = (size_t)model->batch_size * model->seq_len + 1;
    int* hp = model->h_tokens + (size_t)s * 5 * stride;
    int** hptr[5] = {&model->h_inputs, &model->h_targets, &model->h_bucket_tok, &model->h_bucket_off,
                     &model->h_bucket_pos};
    for (int i = 0; i < 5; i++) *hptr[i] = hp + i * stride;
}

// token buckets for the deterministic wte backward, built on the host and queued for the device (after the work
// already queued: the host sorts while the device runs the forward): the positions of each token in increasing
// order, the buckets largest first (ties by token), so the blocks of the most frequent tokens start first and the
// kernel's tail is the small ones
static void gpt2_build_buckets(GPT2* model, int N) {
    uint64_t* keys = model->h_sort;       // (N) (token, position)
    uint64_t* order = model->h_sort + N;  // (buckets) (N - size, first key index)
    for (int i = 0; i < N; i++) keys[i] = ((uint64_t)(uint32_t)model->h_inputs[i] << 32) | (uint32_t)i;
    qsort(keys, (size_t)N, sizeof(uint64_t), gpt2_cmp_u64);
    int u = 0;
    for (int i = 0; i < N; i++)
        if (i == 0 || keys[i] >> 32 != keys[i - 1] >> 32) order[u++] = (uint64_t)i;
    for (int b = 0; b < u; b++) {
        uint64_t size = (b + 1 < u ? (uint32_t)order[b + 1] : (uint64_t)N) - (uint32_t)order[b];
        order[b] |= ((uint64_t)N - size) << 32;
    }
    qsort(order, (size_t)u, sizeof(uint64_t), gpt2_cmp_u64);
    int p = 0;
    for (int v = 0; v < u; v++) {
        int first = (int)(uint32_t)order[v], size = N - (int)(order[v] >> 32);
        model->h_bucket_tok[v] = (int)(keys[first] >> 32);
        model->h_bucket_off[v] = p;
        for (int i = first; i < first + size; i++) model->h_bucket_pos[p++] = (int)(keys[i] & 0xffffffffu);
    }
    model->h_bucket_off[u] = N;
    model->num_buckets = u;
    size_t stride = (size_t)model->batch_size * model->seq_len + 1;
    cudaCheck(cudaMemcpyAsync(model->d_bucket_tok, model->h_bucket_tok, 3 * stride * sizeof(int),
                              cudaMemcpyHostToDevice));
    cudaCheck(cudaEventRecord(model->tokens_copied[model->token_slot]));
    model->has_buckets = 1;
}

// Makes acts.logits hold the last forward's logits of rows [r0, r0 + n), n = min(cls_rows, B*T - r0), computed
// from lnf unless they are there already; returns n. r0 is a multiple of cls_rows.
static int gpt2_logits_rows(GPT2* model, int r0) {
    GPT2Config c = model->config;
    int N = model->last_B * model->last_T, n = N - r0 < model->cls_rows ? N - r0 : model->cls_rows;
    if (model->logits_row0 != r0) {
        matmul_forward(model->acts.logits, model->acts.lnf + (size_t)r0 * c.channels, model->params.wte, NULL, n,
                       c.channels, c.padded_vocab_size, NULL);
        model->logits_row0 = r0;
    }
    return n;
}

// what a forward does besides the logits
enum { GPT2_FWD_BUCKETS = 1, GPT2_FWD_COUNT_LOSS = 2 };  // build the backward's token buckets; loss into the step sum

// Forward of (B, T) host tokens, queued without waiting for the device: the tokens through a pinned slot, with
// targets the per-position losses (acts.losses) and their mean (d_loss[1]), the last chunk of logits left in
// acts.logits; without targets no logits yet (gpt2_logits_rows computes a chunk when asked).
static void gpt2_forward_queue(GPT2* model, const int* inputs, const int* targets, int B, int T, int flags) {
    if (model->acts_memory == NULL) fatalf("gpt2_forward before gpt2_allocate");
    GPT2Config c = model->config;
    gpt2_forward_check(c, model->batch_size, model->seq_len, inputs, targets, B, T);
    int V = c.vocab_size, Vp = c.padded_vocab_size, L = c.num_layers, NH = c.num_heads, C = c.channels;
    int N = B * T;
    gpt2_next_token_slot(model);
    memcpy(model->h_inputs, inputs, (size_t)N * sizeof(int));
    cudaCheck(cudaMemcpyAsync(model->d_inputs, model->h_inputs, (size_t)N * sizeof(int), cudaMemcpyHostToDevice));
    if (targets != NULL) {
        memcpy(model->h_targets, targets, (size_t)N * sizeof(int));
        cudaCheck(cudaMemcpyAsync(model->d_targets, model->h_targets, (size_t)N * sizeof(int),
                                  cudaMemcpyHostToDevice));
    }
    cudaCheck(cudaEventRecord(model->tokens_copied[model->token_slot]));
    model->has_targets = targets != NULL;
    model->has_buckets = 0;
    model->logits_row0 = -1;
    model->last_B = B;
    model->last_T = T;

    ParameterTensors p = model->params;
    ActivationTensors a = model->acts;
    size_t slot = (size_t)model->batch_size * model->seq_len;  // rows per layer slot
    int rg = model->recompute >= RECOMPUTE_GELU, rl = model->recompute >= RECOMPUTE_GELU_LN;
    encoder_forward(a.encoded, model->d_inputs, p.wte, p.wpe, B, T, C);
    // ln1 of layer 0; the ln1 of layer l > 0 (and lnf) comes fused with the residual add ending layer l - 1
    layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, NULL, a.encoded, NULL, p.ln1w, p.ln1b, N, C);
    for (int l = 0; l < L; l++) {
        const floatX* residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * slot * C;
        floatX* ln1 = a.ln1 + (rl ? 0 : l * slot * C);
        floatX* qkv = a.qkv + l * slot * 3 * C;
        floatX* atty = a.atty + l * slot * C;
        floatX* residual2 = a.residual2 + l * slot * C;
        floatX* ln2 = a.ln2 + (rl ? 0 : l * slot * C);
        floatX* fch = a.fch + l * slot * 4 * C;
        floatX* fch_gelu = a.fch_gelu + (rg ? 0 : l * slot * 4 * C);
        floatX* residual3 = a.residual3 + l * slot * C;
        matmul_forward(qkv, ln1, p.qkvw + (size_t)l * 3 * C * C, p.qkvb + l * 3 * C, N, C, 3 * C, NULL);
        attention_forward(atty, a.att_lse + l * slot * NH, qkv, B, T, C, NH);
        matmul_forward(a.proj, atty, p.attprojw + (size_t)l * C * C, p.attprojb + l * C, N, C, C, NULL);
        layernorm_forward(ln2, a.ln2_mean + l * slot, a.ln2_rstd + l * slot, residual2, residual, a.proj,
                          p.ln2w + l * C, p.ln2b + l * C, N, C);
        // fch (N, 4C) = ln2 @ fcw^T + fcb, fch_gelu (N, 4C) = gelu(fch): fused, gelu of the fp32 pre-activation
        if (model->gelu_fusion >= GELU_FUSION_FORWARD) {
            matmul_forward(fch_gelu, ln2, p.fcw + (size_t)l * 4 * C * C, p.fcb + l * 4 * C, N, C, 4 * C, fch);
        } else {
            matmul_forward(fch, ln2, p.fcw + (size_t)l * 4 * C * C, p.fcb + l * 4 * C, N, C, 4 * C, NULL);
            gelu_forward(fch_gelu, fch, (size_t)N * 4 * C);
        }
        matmul_forward(a.proj, fch_gelu, p.fcprojw + (size_t)l * C * 4 * C, p.fcprojb + l * C, N, 4 * C, C, NULL);
        if (l + 1 < L) {
            floatX* next_ln1 = a.ln1 + (rl ? 0 : (l + 1) * slot * C);
            layernorm_forward(next_ln1, a.ln1_mean + (l + 1) * slot, a.ln1_rstd + (l + 1) * slot, residual3,
                              residual2, a.proj, p.ln1w + (l + 1) * C, p.ln1b + (l + 1) * C, N, C);
        } else {
            layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, residual3, residual2, a.proj, p.lnfw, p.lnfb, N, C);
        }
    }
    if (targets != NULL) {
        // per chunk of rows: the logits, then the losses; the last chunk stays in acts.logits
        for (int r0 = 0; r0 < N; r0 += model->cls_rows) {
            int n = gpt2_logits_rows(model, r0);
            fused_classifier_kernel<<<n, 1024>>>(a.logits, a.losses + r0, NULL, model->d_targets + r0, 0.0f, V, Vp);
            cudaCheckLaunch();
        }
        loss_mean_kernel<<<1, LOSS_THREADS>>>(model->d_loss, a.losses, N, (flags & GPT2_FWD_COUNT_LOSS) != 0);
        cudaCheckLaunch();
        if (flags & GPT2_FWD_BUCKETS) gpt2_build_buckets(model, N);
    }
}

// Forward of (B, T) host tokens; with targets the per-position losses (also in h_losses) and mean_loss, read back
// (the last chunk of logits stays in acts.logits); without them mean_loss = -1.
void gpt2_forward(GPT2* model, const int* inputs, const int* targets, int B, int T) {
    gpt2_forward_queue(model, inputs, targets, B, T, 0);
    model->mean_loss = -1.0f;
    if (targets == NULL) return;
    int N = B * T;
    cudaCheck(cudaMemcpy(model->h_losses, model->acts.losses, (size_t)N * sizeof(float), cudaMemcpyDeviceToHost));
    double mean;
    cudaCheck(cudaMemcpy(&mean, model->d_loss + 1, sizeof(double), cudaMemcpyDeviceToHost));
    model->mean_loss = (float)mean;
}

void gpt2_zero_grad(GPT2* model) {
    if (model->grads_memory == NULL) fatalf("gpt2_zero_grad before gpt2_allocate");
    cudaCheck(cudaMemset(model->grads_memory, 0, model->padded_parameters * sizeof(floatX)));
}

// test-only IVON_TEST_NAN_STEP: a NaN in the first gradient entry
__global__ void poison_kernel(floatX* grads) { grads[0] = f2x(__int_as_float(0x7fc00000)); }

// Backward of the last forward (which had targets), the loss scaled by loss_scale; adds into the gradients.
// reduce: the last micro-batch of a ZeRO-0 data-parallel step, each layer's gradients averaged over the ranks as
// soon as its backward is issued (gpt2_reduce_layer_grads); poison: the test-only NaN, before any wte reduction.
static void gpt2_backward_impl(GPT2* model, float loss_scale, int reduce, int poison) {
    if (model->grads_memory == NULL) fatalf("gpt2_backward before gpt2_allocate");
    if (!model->has_targets) fatalf("gpt2_backward needs a forward with targets first");
    GPT2Config c = model->config;
    int V = c.vocab_size, Vp = c.padded_vocab_size, L = c.num_layers, NH = c.num_heads, C = c.channels;
    int B = model->last_B, T = model->last_T, N = B * T;
    ParameterTensors p = model->params, g = model->grads;
    ActivationTensors a = model->acts;
    size_t slot = (size_t)model->batch_size * model->seq_len;
    int rg = model->recompute >= RECOMPUTE_GELU, rl = model->recompute >= RECOMPUTE_GELU_LN;
    float* cs = a.colsum;

    if (!model->has_buckets) gpt2_build_buckets(model, N);

    // per chunk of rows, the last first (its logits are still there; the others are recomputed): dlogits in place of
    // the logits, dlnf rows into dsmall, dwte += dlogits^T lnf
    int R = model->cls_rows;
    for (int r0 = (N - 1) / R * R; r0 >= 0; r0 -= R) {
        int n = gpt2_logits_rows(model, r0);
        fused_classifier_kernel<<<n, 1024>>>(a.logits, a.losses + r0, NULL, model->d_targets + r0, loss_scale / N,
                                             V, Vp);
        cudaCheckLaunch();
        model->logits_row0 = -1;
        matmul_backward(a.dsmall + (size_t)r0 * C, g.wte, NULL, cs, a.logits, a.lnf + (size_t)r0 * C, p.wte, n, C,
                        Vp, NULL);
    }
    cudaCheck(cudaMemset(a.dresidual, 0, (size_t)N * C * sizeof(floatX)));
    layernorm_backward(a.dresidual, g.lnfw, g.lnfb, cs, a.colsum_done, a.dsmall, a.residual3 + (L - 1) * slot * C,
                       p.lnfw, a.lnf_mean, a.lnf_rstd, N, C);
    for (int l = L - 1; l >= 0; l--) {
        const floatX* residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * slot * C;
        size_t o1 = l * slot, oc = o1 * C;
        floatX* ln1 = a.ln1 + (rl ? 0 : oc);
        floatX* ln2 = a.ln2 + (rl ? 0 : oc);
        floatX* fch_gelu = a.fch_gelu + (rg ? 0 : 4 * oc);
        const floatX* fch = a.fch + 4 * oc;
        // the fcprojw gradient needs fch_gelu: recomputed from the bf16 fch (a fused forward's came from the fp32
        // pre-activation: the two may differ by a rounding)
        if (rg) gelu_forward(fch_gelu, fch, (size_t)N * 4 * C);
        if (rl) {
            layernorm_forward(ln1, a.ln1_mean + o1, a.ln1_rstd + o1, NULL, residual, NULL, p.ln1w + l * C,
                              p.ln1b + l * C, N, C);
            layernorm_forward(ln2, a.ln2_mean + o1, a.ln2_rstd + o1, NULL, a.residual2 + oc, NULL, p.ln2w + l * C,
                              p.ln2b + l * C, N, C);
        }
        // residual3 = residual2 + fcproj: dresidual flows to both; dbig (N, 4C) = the gradient of fch,
        // (dresidual @ fcprojw) * gelu'(fch), with GELU_FUSION_BACKWARD in the epilogue of the dinp matmul
        int fuse = model->gelu_fusion >= GELU_FUSION_BACKWARD;
        matmul_backward(a.dbig, g.fcprojw + (size_t)l * C * 4 * C, g.fcprojb + l * C, cs, a.dresidual, fch_gelu,
                        p.fcprojw + (size_t)l * C * 4 * C, N, 4 * C, C, fuse ? fch : NULL);
        if (!fuse) gelu_backward(a.dbig, fch, (size_t)N * 4 * C);
        matmul_backward(a.dsmall, g.fcw + (size_t)l * 4 * C * C, g.fcb + l * 4 * C, cs, a.dbig, ln2,
                        p.fcw + (size_t)l * 4 * C * C, N, C, 4 * C, NULL);
        layernorm_backward(a.dresidual, g.ln2w + l * C, g.ln2b + l * C, cs, a.colsum_done, a.dsmall,
                           a.residual2 + oc, p.ln2w + l * C, a.ln2_mean + o1, a.ln2_rstd + o1, N, C);
        // residual2 = residual + attproj
        matmul_backward(a.dsmall, g.attprojw + (size_t)l * C * C, g.attprojb + l * C, cs, a.dresidual,
                        a.atty + oc, p.attprojw + (size_t)l * C * C, N, C, C, NULL);
        attention_backward(a.dbig, a.att_d, a.dsmall, a.qkv + 3 * oc, a.atty + oc, a.att_lse + o1 * NH, B, T, C, NH);
        matmul_backward(a.dsmall, g.qkvw + (size_t)l * 3 * C * C, g.qkvb + l * 3 * C, cs, a.dbig, ln1,
                        p.qkvw + (size_t)l * 3 * C * C, N, C, 3 * C, NULL);
        layernorm_backward(a.dresidual, g.ln1w + l * C, g.ln1b + l * C, cs, a.colsum_done, a.dsmall, residual,
                           p.ln1w + l * C, a.ln1_mean + o1, a.ln1_rstd + o1, N, C);
        if (reduce) gpt2_reduce_layer_grads(model, l);
    }
    int wpe_vec = vec128((size_t)T * C, g.wpe, a.dresidual, a.dresidual);
    encoder_backward_wpe_kernel<<<ceil_div((size_t)T * C / wpe_vec, 256), 256>>>(g.wpe, a.dresidual, B, T, C,
                                                                              wpe_vec);
    cudaCheckLaunch();
    encoder_backward_wte_kernel<<<model->num_buckets, 256>>>(g.wte, a.dresidual, model->d_bucket_tok,
                                                             model->d_bucket_off, model->d_bucket_pos, C);
    cudaCheckLaunch();
    if (poison) {
        poison_kernel<<<1, 1>>>(model->grads_memory);
        cudaCheckLaunch();
    }
    if (reduce) gpt2_reduce_embedding_grads(model);
    model->has_targets = 0;  // acts.logits holds dlogits: a second backward needs a new forward
}

void gpt2_backward(GPT2* model, float loss_scale) { gpt2_backward_impl(model, loss_scale, 0, 0); }

// sum of squares of x (n floatX on the device), deterministic two-stage reduction
static float gpt2_sumsq(GPT2* model, const floatX* x, size_t n) {
    float* partial = model->acts.partial;
    sumsq_partial_kernel<<<SUMSQ_BLOCKS, 256>>>(partial, x, n);
    cudaCheckLaunch();
    sumsq_final_kernel<<<1, 1024>>>(partial + SUMSQ_BLOCKS, partial, SUMSQ_BLOCKS);
    cudaCheckLaunch();
    float sumsq;
    cudaCheck(cudaMemcpy(&sumsq, partial + SUMSQ_BLOCKS, sizeof(float), cudaMemcpyDeviceToHost));
    return sumsq;
}

// global gradient norm (of this process's full gradient)
float gpt2_grad_norm(GPT2* model) {
    if (model->grads_memory == NULL) fatalf("gpt2_grad_norm before gpt2_allocate");
    return sqrtf(gpt2_sumsq(model, model->grads_memory, model->num_parameters));
}

// AdamW as train_gpt2.c's gpt2_adamw_apply (global clip of the accumulated gradient whose norm is `norm`, decoupled
// weight decay on the 2-D tensors), per tensor piece of this rank's shard [shard_lo, shard_hi) (all of it without
// ZeRO-1): master, m, v are indexed from shard_lo, weights and gradients by the flat index.
void gpt2_adamw_apply(GPT2* model, float norm, float lr, float beta1, float beta2, float eps, float weight_decay,
                      float grad_clip, int t) {
    if (model->opt_memory == NULL) fatalf("gpt2_adamw_apply before gpt2_allocate");
    float scale = grad_clip > 0.0f && norm > grad_clip ? grad_clip / norm : 1.0f;
    float bc1 = 1.0f - powf(beta1, (float)t);
    float bc2 = 1.0f - powf(beta2, (float)t);
    size_t lo = model->shard_lo, hi = model->shard_hi, off = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t a = off > lo ? off : lo, e = off + model->param_sizes[i] < hi ? off + model->param_sizes[i] : hi;
        off += model->param_sizes[i];
        if (a >= e) continue;
        size_t n = e - a;
        float wd = PARAM_TABLE[i].decay ? weight_decay : 0.0f;
        adamw_kernel<<<ceil_div(n, 256), 256>>>(model->master + (a - lo), model->params_memory + a,
                                                model->grads_memory + a, model->m_memory + (a - lo),
                                                model->v_memory + (a - lo), n, lr, beta1, beta2, bc1, bc2, eps, wd,
                                                scale);
        cudaCheckLaunch();
    }
}

// returns the global gradient norm before clipping
float gpt2_adamw_step(GPT2* model, float lr, float beta1, float beta2, float eps, float weight_decay, float grad_clip,
                      int t) {
    float norm = gpt2_grad_norm(model);
    gpt2_adamw_apply(model, norm, lr, beta1, beta2, eps, weight_decay, grad_clip, t);
    return norm;
}

// ----------------------------------------------------------------------------
// optimizer: AdamW, IVON and IVON-PoCo(Mo) steps through the driver of llmc/optim_step.h (the step order of
// train_gpt2.c, written once); below the CUDA operations of its OptimOps table and the state they work on.

// tensor ends and decay bits of PARAM_TABLE for the kernels' group lookup
static OptGroups gpt2_opt_groups(const GPT2* model) {
    OptGroups g;
    size_t off = 0;
    g.decay = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        off += model->param_sizes[i];
        g.end[i] = off;
        if (PARAM_TABLE[i].decay) g.decay |= 1u << i;
    }
    return g;
}

// the run's rank layout and noise group (llmc/dist.h) for the step driver; one process without it
void gpt2_set_dist_info(GPT2* model, const DistInfo* d) { model->dist_info = *d; }

__global__ void fill_kernel(float* x, float v, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = v;
}

// AdamW's gradient accumulation in fp32 (bf16 build, K >= 3 micro-batches): after backward b (1-based) of K the
// micro-batch's gradient moves into the fp32 sum (b = 1: acc = g; 1 < b <= K-2: acc += g; then g = 0), and after
// backward K-1 comes back as one rounding of the sum (g = bf16(acc + g)); the K-th backward adds into it (and
// reduces it over the ranks, per layer), as before. The step's gradient is rounded twice instead of K times.
enum { GRAD_FOLD_FIRST, GRAD_FOLD_ADD, GRAD_FOLD_FINISH };
__device__ __forceinline__ void grad_fold_elem(float* acc, floatX* g, int mode) {
    float x = x2f(*g);
    if (mode == GRAD_FOLD_FINISH) {
        *g = f2x(*acc + x);
    } else {
        *acc = mode == GRAD_FOLD_FIRST ? x : *acc + x;
        *g = f2x(0.0f);
    }
}

// one thread per 128-bit vector of g (X128 elements; acc through float4), the n % X128 tail by the first threads
__global__ void grad_fold_kernel(float* acc, floatX* g, size_t n, int mode) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x, nv = n / X128;
    if (i < nv) {
        size_t i0 = i * X128;
        x128 gv = load128(g + i0);
        float a[X128];
        for (int l = 0; l < X128; l += 4)
            *reinterpret_cast<float4*>(a + l) = *reinterpret_cast<const float4*>(acc + i0 + l);
        for (int l = 0; l < X128; l++) grad_fold_elem(&a[l], &gv.v[l], mode);
        store128(g + i0, gv);
        if (mode != GRAD_FOLD_FINISH)
            for (int l = 0; l < X128; l += 4)
                *reinterpret_cast<float4*>(acc + i0 + l) = *reinterpret_cast<float4*>(a + l);
    }
    if (i < n - nv * X128) grad_fold_elem(&acc[nv * X128 + i], &g[nv * X128 + i], mode);
}

// The fp32 accumulator of AdamW's gradients for steps of `micro_batches` micro-batches per process (bf16 build,
// 3 or more; else nothing): after gpt2_allocate, before the first such step.
void gpt2_set_grad_accum(GPT2* model, int micro_batches) {
    if (model->grads_memory == NULL) fatalf("gpt2_set_grad_accum before gpt2_allocate");
#ifndef ENABLE_FP32
    if (micro_batches < 3 || model->grad_acc != NULL) return;
    cudaCheck(cudaMalloc((void**)&model->grad_acc, model->padded_parameters * sizeof(float)));
#else
    (void)micro_batches;
#endif
}

// after AdamW backward b (1-based) of K: the fp32 accumulation above (nothing for K <= 2 or in the fp32 build)
void gpt2_grad_fold(GPT2* model, int b, int K) {
#ifndef ENABLE_FP32
    if (K < 3 || b >= K) return;
    if (model->grad_acc == NULL)
        fatalf("AdamW over %d micro-batches without its fp32 gradient sum (gpt2_set_grad_accum)", K);
    int mode = b == 1 ? GRAD_FOLD_FIRST : b < K - 1 ? GRAD_FOLD_ADD : GRAD_FOLD_FINISH;
    size_t n = model->padded_parameters;
    grad_fold_kernel<<<ceil_div(n / X128 + X128, 256), 256>>>(model->grad_acc, model->grads_memory, n, mode);
    cudaCheckLaunch();
#else
    (void)model, (void)b, (void)K;
#endif
}

// Optimizer state after gpt2_allocate (train_gpt2.c gpt2_optimizer_init). AdamW: the m, v of gpt2_allocate,
// zeroed. IVON / PoCo: one block instead of them: momentum = 0, hess = h0, the accumulators, the PoCo anchor
// (= the initial posterior until the first refresh) and the saved gradient (no clip_each), the reduction partials
// and the diagnostics sample; the fp32 build adds the mean (there the master is the working weights). mean = the
// master (loaded or initial weights). ZeRO-1: the momentum is this rank's shard (shard_size floats); the mean (its
// own buffer, all-gathered from the master shards, which are freed), h, the accumulators and the anchor are full,
// padded to P * shard_size.
void gpt2_optimizer_init(GPT2* model, const OptimizerConfig* oc) {
    if (model->grads_memory == NULL) fatalf("gpt2_optimizer_init before gpt2_allocate");
    char err[256];
    if (optimizer_config_check(oc, err, sizeof(err)) != 0) fatalf("%s", err);
    size_t np = model->num_parameters;
    model->anchor_step = -1;
    model->mega_tokens = 0;
    memset(&model->last_update, 0, sizeof(model->last_update));
    if (model->opt_kind != OPT_ADAMW) fatalf("gpt2_optimizer_init called twice");
    if (oc->kind == OPT_ADAMW) {
        cudaCheck(cudaMemset(model->opt_memory, 0, 2 * model->shard_size * sizeof(float)));
        return;
    }
    cudaCheck(cudaFree(model->opt_memory));
    model->m_memory = model->v_memory = NULL;
    size_t S = (model->padded_parameters + 63) & ~(size_t)63, SB = S * sizeof(float);
    size_t MB = ((model->shard_size + 63) & ~(size_t)63) * sizeof(float);  // the momentum (= SB without ZeRO-1)
    model->opt_stride = S;
#ifdef ENABLE_FP32
    int own_mean = 1;
#else
    int own_mean = model->zero;
#endif
    float** bufs[10] = {&model->momentum, &model->hess, &model->acc_grad, &model->acc_noise_grad,
                        &model->acc_grad_out, &model->acc_noise_grad_out, &model->anchor_mean, &model->anchor_hess,
                        &model->anchor_grad, &model->anchor_hess_est};
    int nbuf = oc->kind == OPT_IVON ? 4 : 10;
    int saved = oc->kind == OPT_POCO && !oc->poco_clip_each;
    size_t part_bytes = gpt2_align((3 * OPT_STAT_BLOCKS + 3) * sizeof(double));
    size_t saved_bytes = saved ? gpt2_align(model->padded_parameters * sizeof(floatX)) : 0;
    model->diag_n = np < ((size_t)1 << 20) ? np : ((size_t)1 << 20);
    size_t bytes = (size_t)(nbuf - 1 + own_mean) * SB + MB + part_bytes + saved_bytes +
                   2 * model->diag_n * sizeof(float);
    cudaCheck(cudaMalloc(&model->opt_memory, bytes));
    cudaCheck(cudaMemset(model->opt_memory, 0, bytes));
    char* p = (char*)model->opt_memory;
    model->mean = model->master;
    if (own_mean) model->mean = (float*)p, p += SB;
    for (int b = 0; b < nbuf; b++) *bufs[b] = (float*)p, p += b == 0 ? MB : SB;
    model->opt_part = (double*)p, p += part_bytes;
    model->grads_in = saved ? (floatX*)p : NULL, p += saved_bytes;
    model->diag_h = (float*)p;
    model->opt_kind = oc->kind;
    if (model->zero) {
        size_t s = model->shard_size;
        cudaCheck(cudaMemcpy(model->mean + (size_t)model->dist->rank * s, model->master, s * sizeof(float),
                             cudaMemcpyDeviceToDevice));
        cuda_dist_all_gather_f(model->dist, model->mean, s);
        cuda_dist_before_compute(model->dist);
        cudaCheck(cudaDeviceSynchronize());
        cudaCheck(cudaFree(model->master));
        model->master = NULL;
    } else if (own_mean) {
        cudaCheck(cudaMemcpy(model->mean, model->master, np * sizeof(float), cudaMemcpyDeviceToDevice));
    }
    fill_kernel<<<ceil_div(np, 256), 256>>>(model->hess, (float)oc->hess_init, np);
    cudaCheckLaunch();
    if (oc->kind == OPT_POCO) {
        cudaCheck(cudaMemcpy(model->anchor_mean, model->mean, np * sizeof(float), cudaMemcpyDeviceToDevice));
        cudaCheck(cudaMemcpy(model->anchor_hess, model->hess, np * sizeof(float), cudaMemcpyDeviceToDevice));
        cudaCheck(cudaMemcpy(model->anchor_hess_est, model->hess, np * sizeof(float), cudaMemcpyDeviceToDevice));
    }
    free(model->host_state);
    model->host_state = (float*)mallocCheck((oc->kind == OPT_POCO ? 6 : 2) * np * sizeof(float));
    cudaCheck(cudaDeviceSynchronize());
}

// The persistent state buffers of a checkpoint in file order (train_gpt2.c): AdamW m, v; IVON momentum, hess;
// PoCo momentum, hess, anchor_mean, anchor_hess, anchor_grad, anchor_hess_est (device pointers; ZeRO-1: see
// gpt2_state_sharded)
int gpt2_optimizer_state_buffers(GPT2* model, float* bufs[6]) {
    switch (model->opt_kind) {
        case OPT_ADAMW: bufs[0] = model->m_memory; bufs[1] = model->v_memory; return 2;
        case OPT_IVON: bufs[0] = model->momentum; bufs[1] = model->hess; return 2;
        case OPT_POCO:
            bufs[0] = model->momentum; bufs[1] = model->hess; bufs[2] = model->anchor_mean;
            bufs[3] = model->anchor_hess; bufs[4] = model->anchor_grad; bufs[5] = model->anchor_hess_est;
            return 6;
    }
    fatalf("gpt2_optimizer_state_buffers: unknown optimizer %d", model->opt_kind);
    return 0;
}

// 1 if state buffer b of gpt2_optimizer_state_buffers holds only this rank's shard (ZeRO-1: AdamW m, v and the
// IVON / PoCo momentum; h and the PoCo anchor are full and equal on every rank)
static int gpt2_state_sharded(const GPT2* model, int b) {
    return model->zero && (model->opt_kind == OPT_ADAMW || b == 0);
}

// working weights = m (IVON / PoCo); no-op for AdamW
void gpt2_optimizer_restore_mean(GPT2* model) {
    if (model->mean == NULL) return;
    size_t np = model->num_parameters;
    float_to_x_kernel<<<ceil_div(np, 256), 256>>>(model->params_memory, model->mean, np);
    cudaCheckLaunch();
}

// theta = m + sigma(h) eps over all tensors (each with its group's delta), theta the working weights
static void gpt2_ivon_sample_all(GPT2* model, const OptimizerConfig* oc, const float* m, const float* h,
                                 const IvonNoiseKey* key) {
    size_t np = model->num_parameters;
    NoiseKey k = noise_key(key->seed, key->rank, key->step, key->sample, key->stream);
    ivon_sample_kernel<<<ceil_div(ceil_div(np, 4), 256), 256>>>(
        model->params_memory, m, h, np, gpt2_opt_groups(model), (float)oc->ess, (float)ivon_group_delta(oc, 0),
        (float)ivon_group_delta(oc, 1), k, key->off);
    cudaCheckLaunch();
}

// Welford accumulation of sample k of grad * clip and of noise * grad * clip (the noise of key and h) over the
// flat indices [lo, hi) (widened to a multiple of 4 below: whole Philox blocks)
template <typename G>
static void gpt2_ivon_accumulate_range(GPT2* model, const OptimizerConfig* oc, float* acc_g, float* acc_ng,
                                       const G* grad, float clip, const float* h, const IvonNoiseKey* key, int k,
                                       size_t lo, size_t hi) {
    lo &= ~(size_t)3;
    if (hi <= lo) return;
    NoiseKey nk = noise_key(key->seed, key->rank, key->step, key->sample, key->stream);
    ivon_accumulate_kernel<G><<<ceil_div(ceil_div(hi - lo, 4), 256), 256>>>(
        acc_g, acc_ng, grad, clip, h, lo, hi, gpt2_opt_groups(model), (float)oc->ess, (float)ivon_group_delta(oc, 0),
        (float)ivon_group_delta(oc, 1), nk, key->off, k);
    cudaCheckLaunch();
}

// posterior sample s for BMA evaluation into the working weights (stream BMA, sample s, step)
void gpt2_optimizer_sample_bma(GPT2* model, const OptimizerConfig* oc, int step, int s) {
    if (model->mean == NULL) fatalf("BMA sampling needs the IVON/PoCo state");
    IvonNoiseKey key = ivon_noise_key(oc, step, s, NOISE_STREAM_BMA);
    gpt2_ivon_sample_all(model, oc, model->mean, model->hess, &key);
}

// the 3 sums of the partials in opt_part (one copy to the host)
static void gpt2_opt_read3(GPT2* model, double out[3]) {
    partial3_final_kernel<<<1, 32>>>(model->opt_part + 3 * OPT_STAT_BLOCKS, model->opt_part, OPT_STAT_BLOCKS);
    cudaCheckLaunch();
    cudaCheck(cudaMemcpy(out, model->opt_part + 3 * OPT_STAT_BLOCKS, 3 * sizeof(double), cudaMemcpyDeviceToHost));
}

// the model and the settings of the step in progress
typedef struct {
    GPT2* model;
    const OptimizerConfig* oc;
    int K;          // micro-batches of the step: AdamW's K-th backward reduces per layer (ZeRO-0 overlap)
    int backwards;  // since the last zero_grad
} Gpt2OptCtx;

static GPT2* gpt2_ops_model(void* t) { return ((Gpt2OptCtx*)t)->model; }
static const OptimizerConfig* gpt2_ops_oc(void* t) { return ((Gpt2OptCtx*)t)->oc; }

static void gpt2_op_zero_grad(void* t) {
    gpt2_zero_grad(gpt2_ops_model(t));
    ((Gpt2OptCtx*)t)->backwards = 0;
}

// queued without a host read: the loss stays on the device until loss_sum
static void gpt2_op_forward_backward(void* t, const int* inputs, const int* targets, float loss_scale,
                                     int count_loss) {
    Gpt2OptCtx* c = (Gpt2OptCtx*)t;
    GPT2* model = c->model;
    gpt2_forward_queue(model, inputs, targets, model->batch_size, model->seq_len,
                       GPT2_FWD_BUCKETS | (count_loss ? GPT2_FWD_COUNT_LOSS : 0));
    c->backwards++;
    int adamw = c->oc != NULL && c->oc->kind == OPT_ADAMW;
    int reduce = model->overlap && adamw && c->backwards == c->K;
    gpt2_backward_impl(model, loss_scale, reduce, 0);
    if (adamw) gpt2_grad_fold(model, c->backwards, c->K);
}

// the step's counted loss sum (one read per step), then 0
static double gpt2_op_loss_sum(void* t) {
    GPT2* model = gpt2_ops_model(t);
    double sum;
    cudaCheck(cudaMemcpy(&sum, model->d_loss, sizeof(double), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemsetAsync(model->d_loss, 0, sizeof(double)));
    return sum;
}

static void gpt2_op_poison_grad(void* t) {
    poison_kernel<<<1, 1>>>(gpt2_ops_model(t)->grads_memory);
    cudaCheckLaunch();
}

static float gpt2_op_grad_norm(void* t) { return gpt2_grad_norm(gpt2_ops_model(t)); }

static void gpt2_op_save_grads(void* t) {
    GPT2* model = gpt2_ops_model(t);
    cudaCheck(cudaMemcpy(model->grads_in, model->grads_memory, model->num_parameters * sizeof(floatX),
                         cudaMemcpyDeviceToDevice));
}

static float gpt2_op_diff_norm(void* t, float gamma) {
    GPT2* model = gpt2_ops_model(t);
    diff_sumsq_partial_kernel<<<OPT_STAT_BLOCKS, OPT_STAT_THREADS>>>(model->opt_part, model->grads_in,
                                                                   model->grads_memory, gamma, model->num_parameters);
    cudaCheckLaunch();
    double v[3];
    gpt2_opt_read3(model, v);
    return (float)sqrt(v[0]);
}

static void gpt2_op_sample(void* t, int at, const IvonNoiseKey* key) {
    GPT2* model = gpt2_ops_model(t);
    const float* m = at == OPT_AT_ANCHOR ? model->anchor_mean : model->mean;
    const float* h = at == OPT_AT_ANCHOR ? model->anchor_hess : model->hess;
    gpt2_ivon_sample_all(model, gpt2_ops_oc(t), m, h, key);
}

static void gpt2_op_restore_mean(void* t) { gpt2_optimizer_restore_mean(gpt2_ops_model(t)); }

static void gpt2_op_accumulate(void* t, int acc, int grads, int at, float clip, const IvonNoiseKey* key, int k) {
    GPT2* model = gpt2_ops_model(t);
    float* ag = acc == OPT_ACC_OUT ? model->acc_grad_out : model->acc_grad;
    float* an = acc == OPT_ACC_OUT ? model->acc_noise_grad_out : model->acc_noise_grad;
    const floatX* g = grads == OPT_GRADS_SAVED ? model->grads_in : model->grads_memory;
    const float* h = at == OPT_AT_ANCHOR ? model->anchor_hess : model->hess;
    gpt2_ivon_accumulate_range(model, gpt2_ops_oc(t), ag, an, g, clip, h, key, k, 0, model->num_parameters);
}

static void gpt2_op_accumulate_grad(void* t, int acc, float clip, int k) {
    GPT2* model = gpt2_ops_model(t);
    float* ag = acc == OPT_ACC_OUT ? model->acc_grad_out : model->acc_grad;
    size_t np = model->num_parameters;
    ivon_accumulate_grad_kernel<<<ceil_div(np, 256), 256>>>(ag, model->grads_memory, clip, np, k);
    cudaCheckLaunch();
}

static void gpt2_op_reduce_sum(void* t, double* v, int n) { cuda_dist_allreduce_sum_host(gpt2_ops_model(t)->dist, v, n); }

// the mean gradient over the ranks (ZeRO-0: reduced inside the last backward; ZeRO-1: reduce-scatter, the norm
// from the shards' sums of squares); returns its norm
static float gpt2_op_adamw_reduce(void* t) {
    GPT2* model = gpt2_ops_model(t);
    CudaDist* d = model->dist;
    if (!model->zero) {
        if (!model->overlap) return gpt2_grad_norm(model);
        cuda_dist_before_compute(d);
        // the same norm on every rank, unless one rank's gradient was poisoned after the per-layer reduction (the
        // driver's test-only NaN): the mean over the ranks (exact for equal values) carries that NaN to all
        double norm = gpt2_grad_norm(model);
        cuda_dist_allreduce_sum_host(d, &norm, 1);
        return (float)(norm / d->world);
    }
    cuda_dist_reduce_scatter_mean_x(d, model->grads_memory, model->shard_size);
    cuda_dist_before_compute(d);
    double sq = gpt2_sumsq(model, model->grads_memory + model->shard_lo, model->shard_hi - model->shard_lo);
    cuda_dist_allreduce_sum_host(d, &sq, 1);
    return sqrtf((float)sq);
}

// n adjacent accumulators from buf (opt_stride apart) = their mean over the ranks: one all-reduce, or under ZeRO-1
// a reduce-scatter each (only this rank's shard is reduced)
static void gpt2_reduce_accumulators(GPT2* model, float* buf, int n) {
    if (!model->zero) {
        cuda_dist_allreduce_mean_f(model->dist, buf, (size_t)n * model->opt_stride);
        return;
    }
    for (int b = 0; b < n; b++) cuda_dist_reduce_scatter_mean_f(model->dist, buf + (size_t)b * model->opt_stride,
                                                                model->shard_size);
}

// the accumulators averaged over the ranks (IN pair, PoCo also the OUT pair: adjacent). Shared noise with one
// micro-batch per rank (grad_only): the gradient means alone, then acc_ng = n acc_g again (k = 1), over this
// rank's shard (all of it without ZeRO-1).
static void gpt2_op_reduce_acc(void* t, int poco, int grad_only, const IvonNoiseKey* key_in,
                               const IvonNoiseKey* key_out) {
    GPT2* model = gpt2_ops_model(t);
    CudaDist* d = model->dist;
    if (d == NULL) return;
    if (!grad_only) {
        gpt2_reduce_accumulators(model, model->acc_grad, poco ? 4 : 2);
        cuda_dist_before_compute(d);
        return;
    }
    gpt2_reduce_accumulators(model, model->acc_grad, 1);
    if (poco) gpt2_reduce_accumulators(model, model->acc_grad_out, 1);
    cuda_dist_before_compute(d);
    const OptimizerConfig* oc = gpt2_ops_oc(t);
    size_t lo = model->shard_lo, hi = model->shard_hi;
    gpt2_ivon_accumulate_range<float>(model, oc, model->acc_grad, model->acc_noise_grad, model->acc_grad, 1.0f,
                                      model->hess, key_in, 1, lo, hi);
    if (poco)
        gpt2_ivon_accumulate_range<float>(model, oc, model->acc_grad_out, model->acc_noise_grad_out,
                                          model->acc_grad_out, 1.0f, model->anchor_hess, key_out, 1, lo, hi);
}

// the mega-batch gradient (and noise-gradient) means over the ranks
static void gpt2_op_reduce_mega(void* t, int with_noise) {
    GPT2* model = gpt2_ops_model(t);
    if (model->dist == NULL) return;
    cuda_dist_allreduce_mean_f(model->dist, model->acc_grad_out, (with_noise ? 2 : 1) * model->opt_stride);
    cuda_dist_before_compute(model->dist);
}

static void gpt2_op_adamw_update(void* t, const OptimizerConfig* oc, float norm, float lr, int step) {
    GPT2* model = gpt2_ops_model(t);
    gpt2_adamw_apply(model, norm, lr, (float)oc->adamw_beta1, (float)oc->adamw_beta2, (float)oc->adamw_eps,
                     (float)oc->weight_decay, (float)oc->grad_clip, step + 1);
    if (model->zero) {
        cuda_dist_all_gather_x(model->dist, model->params_memory, model->shard_size);
        cuda_dist_before_compute(model->dist);
    }
}

// the IVON / PoCo update of every element in one pass (m, momentum, h and the working weights = the new m), the
// group scalars formed on the host; the statistics reduced on the device and read once. ZeRO-1: the elements of
// this rank's shard (statistics of the shard, summed over the ranks by the driver), then m and h all-gathered and
// the working weights = m.
static IvonUpdateStats gpt2_op_ivon_update(void* t, const OptimizerConfig* oc, float lr, int step, int poco,
                                           float gamma) {
    GPT2* model = gpt2_ops_model(t);
    IvonScalars s0 = ivon_scalars(oc, lr, ivon_group_delta(oc, 0), step + 1);
    IvonScalars s1 = ivon_scalars(oc, lr, ivon_group_delta(oc, 1), step + 1);
    int prox_mode = !oc->poco_prox ? IVON_PROX_NONE
                    : oc->poco_prox_in_momentum ? IVON_PROX_IN_MOMENTUM : IVON_PROX_NEXT_TO_DECAY;
    OptUpdatePtrs p = {model->params_memory, model->mean, model->momentum, model->hess, model->acc_grad,
                       model->acc_noise_grad, model->acc_grad_out, model->acc_noise_grad_out, model->anchor_mean,
                       model->anchor_hess, model->anchor_grad, model->anchor_hess_est};
    size_t lo = model->shard_lo, hi = model->shard_hi;
    ivon_update_kernel<<<OPT_STAT_BLOCKS, OPT_STAT_THREADS>>>(p, lo, hi, gpt2_opt_groups(model), s0, s1, poco, gamma,
                                                             prox_mode, model->opt_part);
    cudaCheckLaunch();
    double v[3];
    gpt2_opt_read3(model, v);
    IvonUpdateStats st = {hi - lo, (size_t)v[0], v[2], (size_t)v[1]};
    if (model->zero) {
        cuda_dist_all_gather_f(model->dist, model->mean, model->shard_size);
        cuda_dist_all_gather_f(model->dist, model->hess, model->shard_size);
        cuda_dist_before_compute(model->dist);
        gpt2_optimizer_restore_mean(model);
    }
    return st;
}

// hbar = the Price Hessian of the mega-batch noise-gradient mean (or h); 1 if gbar and hbar are finite
static int gpt2_op_mega_finish(void* t, const OptimizerConfig* oc, int with_noise) {
    GPT2* model = gpt2_ops_model(t);
    size_t np = model->num_parameters;
    float* hbar = model->acc_noise_grad_out;
    if (with_noise) {
        ivon_price_kernel<<<ceil_div(np, 256), 256>>>(hbar, model->hess, np, gpt2_opt_groups(model), (float)oc->ess,
                                                      (float)ivon_group_delta(oc, 0), (float)ivon_group_delta(oc, 1));
        cudaCheckLaunch();
    } else {
        cudaCheck(cudaMemcpy(hbar, model->hess, np * sizeof(float), cudaMemcpyDeviceToDevice));
    }
    // acc_grad_out, hbar adjacent (the padding is 0)
    nonfinite_partial_kernel<<<OPT_STAT_BLOCKS, OPT_STAT_THREADS>>>(model->opt_part, model->acc_grad_out,
                                                                   2 * model->opt_stride);
    cudaCheckLaunch();
    double v[3];
    gpt2_opt_read3(model, v);
    return v[0] == 0.0;
}

static void gpt2_op_commit_anchor(void* t) {
    GPT2* model = gpt2_ops_model(t);
    size_t bytes = model->num_parameters * sizeof(float);
    cudaCheck(cudaMemcpy(model->anchor_mean, model->mean, bytes, cudaMemcpyDeviceToDevice));
    cudaCheck(cudaMemcpy(model->anchor_hess, model->hess, bytes, cudaMemcpyDeviceToDevice));
    cudaCheck(cudaMemcpy(model->anchor_grad, model->acc_grad_out, bytes, cudaMemcpyDeviceToDevice));
    cudaCheck(cudaMemcpy(model->anchor_hess_est, model->acc_noise_grad_out, bytes, cudaMemcpyDeviceToDevice));
}

// the operation table of the model for the driver
static OptimOps gpt2_optimizer_ops(GPT2* model, Gpt2OptCtx* t) {
    OptimOps ops = {
        .t = t, .dist = &model->dist_info, .micro_tokens = (long long)model->batch_size * model->seq_len,
        .anchor_step = &model->anchor_step, .mega_tokens = &model->mega_tokens, .last_update = &model->last_update,
        OPTIM_OPS_FNS(gpt2_op_),
    };
    return ops;
}

// One optimizer step (llmc/optim_step.h optim_step): AdamW, IVON or IVON-PoCo(Mo) over `micro_batches` micro-batches
// from next_batch, the same decisions as train_gpt2.c (step_guard_decide between the gradients and the update).
// Data parallel (see "data parallel" above): K micro-batches on each of the P ranks; loss, norms and the finite
// checks reduced before the guard, so every rank decides alike. A skipped step leaves the weights = m (IVON/PoCo).
void gpt2_optimizer_step(GPT2* model, const OptimizerConfig* oc, int step, float lr, int micro_batches,
                         BatchFn next_batch, void* ctx, StepGuard* guard, StepStats* out) {
    if (model->opt_kind != oc->kind) fatalf("gpt2_optimizer_step: %s state, %s settings (call gpt2_optimizer_init)",
                                            optimizer_kind_name(model->opt_kind), optimizer_kind_name(oc->kind));
    if (micro_batches < 1) fatalf("gpt2_optimizer_step: %d micro-batches", micro_batches);
    int world = model->dist != NULL ? model->dist->world : 1;
    if (model->dist_info.world != world) fatalf("gpt2_optimizer_step: %d ranks, the dist info says %d (gpt2_set_dist_info)", world, model->dist_info.world);
    Gpt2OptCtx t = {model, oc, micro_batches, 0};
    OptimOps ops = gpt2_optimizer_ops(model, &t);
    optim_step(&ops, oc, step, lr, micro_batches, next_batch, ctx, guard, out);
    cudaCheck(cudaDeviceSynchronize());
}

// llm.c model file, version 3 fp32 (AdamW: the master weights; IVON / PoCo: the mean, full on every rank), written
// atomically. Data parallel: every rank calls it (AdamW ZeRO-1 gathers the shards), rank 0 writes.
void gpt2_write_model(GPT2* model, const char* path) {
    if (model->mean != NULL) {
        if (gpt2_rank(model) != 0) return;
        cudaCheck(cudaMemcpy(model->host_params, model->mean, model->num_parameters * sizeof(float),
                             cudaMemcpyDeviceToHost));
    } else {
        if (!model->zero && gpt2_rank(model) != 0) return;
        gpt2_download_params(model);
    }
    if (gpt2_rank(model) == 0) checkpoint_write_model(path, model->config, model->host_params, model->num_parameters);
}

// state file with the buffers of gpt2_optimizer_state_buffers. Data parallel: every rank calls it (ZeRO-1 gathers
// the sharded buffers), rank 0 writes.
void gpt2_write_state(GPT2* model, const char* path, const StateHeader* sh) {
    size_t np = model->num_parameters, s = model->shard_size;
    float* dev[6];
    const float* host[6] = {NULL};
    int nbuf = gpt2_optimizer_state_buffers(model, dev);
    for (int b = 0; b < nbuf; b++) {
        float* h = model->host_state + (size_t)b * np;
        host[b] = h;
        if (gpt2_state_sharded(model, b))  // rank 0's receive scratch: the gradients (see gpt2_download_params)
            cuda_dist_gather_to_host(model->dist, dev[b], s, np, h, (float*)model->grads_memory);
        else if (gpt2_rank(model) == 0)
            cudaCheck(cudaMemcpy(h, dev[b], np * sizeof(float), cudaMemcpyDeviceToHost));
    }
    if (gpt2_rank(model) != 0) return;
    checkpoint_write_state(path, sh, host, nbuf, np);
}

// reads a state file into the device state (ZeRO-1: this rank's shard of the sharded buffers); the header into sh
void gpt2_read_state(GPT2* model, const char* path, StateHeader* sh) {
    size_t np = model->num_parameters, lo = model->shard_lo, hi = model->shard_hi;
    float* dev[6];
    float* host[6] = {NULL};
    int nbuf = gpt2_optimizer_state_buffers(model, dev);
    for (int b = 0; b < nbuf; b++) host[b] = model->host_state + (size_t)b * np;
    checkpoint_read_state(path, sh, host, nbuf, np);
    for (int b = 0; b < nbuf; b++) {
        if (!gpt2_state_sharded(model, b))
            cudaCheck(cudaMemcpy(dev[b], host[b], np * sizeof(float), cudaMemcpyHostToDevice));
        else if (hi > lo)
            cudaCheck(cudaMemcpy(dev[b], host[b] + lo, (hi - lo) * sizeof(float), cudaMemcpyHostToDevice));
    }
}

// The evaluation buffers for (B, T) forwards of gpt2_allocate; bma: also the BMA probability sums (B*T, Vp)
void gpt2_allocate_eval(GPT2* model, int bma) {
    if (model->acts_memory == NULL) fatalf("gpt2_allocate_eval before gpt2_allocate");
    size_t BT = (size_t)model->batch_size * model->seq_len, Vp = model->config.padded_vocab_size;
    size_t a = gpt2_align(BT * sizeof(float)), b = gpt2_align(BT * sizeof(int));
    cudaCheck(cudaMalloc(&model->eval_memory, a + b + (bma ? BT * Vp * sizeof(float) : 0)));
    model->d_conf = (float*)model->eval_memory;
    model->d_arg = (int*)((char*)model->eval_memory + a);
    model->prob_sum = bma ? (float*)((char*)model->eval_memory + a + b) : NULL;
    cudaCheck(cudaMallocHost((void**)&model->h_conf, BT * sizeof(float)));
    cudaCheck(cudaMallocHost((void**)&model->h_arg, BT * sizeof(int)));
}

// the diagnostics of train_gpt2.c over the same strided sample of h (copied to the host once)
void gpt2_optimizer_diagnostics(GPT2* model, const OptimizerConfig* oc, OptimizerDiagnostics* d) {
    memset(d, 0, sizeof(*d));
    if (model->hess == NULL) return;
    size_t np = model->num_parameters, cap = model->diag_n;
    size_t stride = (np + cap - 1) / cap;
    size_t k = (np + stride - 1) / stride;
    k = k < cap ? k : cap;
    ivon_diag_sample_kernel<<<ceil_div(k, 256), 256>>>(model->diag_h, model->diag_h + cap, model->hess, np, stride, k,
                                                       gpt2_opt_groups(model), (float)oc->ess,
                                                       (float)ivon_group_delta(oc, 0), (float)ivon_group_delta(oc, 1));
    cudaCheckLaunch();
    float* hs = model->host_state;  // >= 2 np floats
    cudaCheck(cudaMemcpy(hs, model->diag_h, 2 * cap * sizeof(float), cudaMemcpyDeviceToHost));
    train_diagnostics_from_sample(d, hs, hs + cap, k, &model->last_update);
}

void gpt2_free(GPT2* model) {
    free(model->host_params);
    free(model->host_state);
    free(model->h_sort);
    if ((void*)model->params_memory != (void*)model->master) cudaCheck(cudaFree(model->params_memory));
    cudaCheck(cudaFree(model->master));
    cudaCheck(cudaFree(model->grads_memory));
    cudaCheck(cudaFree(model->grad_acc));
    cudaCheck(cudaFree(model->opt_memory));
    cudaCheck(cudaFree(model->acts_memory));
    cudaCheck(cudaFree(model->d_tokens));
    cudaCheck(cudaFreeHost(model->h_tokens));
    if (model->d_loss != NULL) {
        cudaCheck(cudaFree(model->d_loss));
        for (int i = 0; i < 2; i++) cudaCheck(cudaEventDestroy(model->tokens_copied[i]));
    }
    cudaCheck(cudaFreeHost(model->h_losses));
    cudaCheck(cudaFreeHost(model->h_probs));
    if (model->eval_memory != NULL) {
        cudaCheck(cudaFree(model->eval_memory));
        cudaCheck(cudaFreeHost(model->h_conf));
        cudaCheck(cudaFreeHost(model->h_arg));
    }
    memset(model, 0, sizeof(*model));
}

#ifndef TESTING
// probabilities of row `row` of the last forward's logits into model->h_probs (Vp floats)
static const float* gpt2_row_probs(GPT2* model, int row) {
    GPT2Config c = model->config;
    int r0 = row / model->cls_rows * model->cls_rows;
    gpt2_logits_rows(model, r0);
    fused_classifier_kernel<<<1, 1024>>>(model->acts.logits + (size_t)(row - r0) * c.padded_vocab_size, NULL,
                                         model->acts.probs, NULL, 0.0f, c.vocab_size, c.padded_vocab_size);
    cudaCheckLaunch();
    cudaCheck(cudaMemcpy(model->h_probs, model->acts.probs, (size_t)c.padded_vocab_size * sizeof(float),
                         cudaMemcpyDeviceToHost));
    return model->h_probs;
}

// dense bf16 peak of the device in FLOP/s, 0 when unknown
static double gpt2_device_peak_flops(const cudaDeviceProp* prop) {
    if (strstr(prop->name, "H100") != NULL || strstr(prop->name, "H200") != NULL || strstr(prop->name, "GH200") != NULL) {
        if (prop->multiProcessorCount >= 132) return 989e12;  // SXM
        return 756e12;                                        // PCIe (114 SMs)
    }
    if (strstr(prop->name, "A100") != NULL) return 312e12;
    return 0.0;
}

// ----------------------------------------------------------------------------
// main: training loop (the flow of train_gpt2.c's main)

// bytes of each IVON / PoCo state buffer, the working weights and the gradients per parameter (startup line);
// ZeRO-1: the sharded buffers (AdamW master, m, v; IVON / PoCo momentum) at 1/P
static void gpt2_print_optimizer_memory(const GPT2* model, const OptimizerConfig* oc) {
    int X = (int)sizeof(floatX), F = (int)sizeof(float);
    double share = model->zero ? 1.0 / model->dist->world : 1.0;
    if (oc->kind == OPT_ADAMW) {
#ifdef ENABLE_FP32
        int w = 0;  // the weights are the master
#else
        int w = X;
#endif
        int acc = model->grad_acc != NULL ? F : 0;
        printf("memory: adamw %g bytes per parameter = weights %d + grads %d + master %g + m %g + v %g",
               w + X + acc + 3.0 * F * share, w, X, F * share, F * share, F * share);
        if (acc) printf(" + fp32 gradient sum %d", acc);
        printf("\n");
        return;
    }
    int saved = model->grads_in != NULL ? X : 0;
    // the mean is the master (fp32 build or ZeRO-1: its own buffer, the master being the working weights or freed)
    double total = X + X + F + F * share + 3 * F + (oc->kind == OPT_POCO ? 6 * F + saved : 0);
    printf("memory: %s %g bytes per parameter = weights %d + grads %d + mean %d + momentum %g + hess %d + "
           "acc_g %d + acc_ng %d", optimizer_kind_name(oc->kind), total, X, X, F, F * share, F, F, F);
    if (oc->kind == OPT_POCO) printf(" + acc_out 2x%d + anchor m, h, gbar, hbar 4x%d + saved grads %d", F, F, saved);
    printf("\n");
}

// Per token of the last forward (with targets): the confidence and first argmax into ECE bins (token_conf_kernel).
// bma: sample s of the BMA sum of the probabilities; the predictive's tokens are binned after the last (final).
static void gpt2_token_conf(GPT2* model, int bma, int s, int final, const int* targets, EceBins* bins) {
    GPT2Config c = model->config;
    int N = model->last_B * model->last_T, Vp = c.padded_vocab_size;
    // per chunk of rows, the last (still in acts.logits) first
    for (int r0 = (N - 1) / model->cls_rows * model->cls_rows; r0 >= 0; r0 -= model->cls_rows) {
        int n = gpt2_logits_rows(model, r0);
        token_conf_kernel<<<n, 256>>>(model->d_conf + r0, model->d_arg + r0,
                                      bma ? model->prob_sum + (size_t)r0 * Vp : NULL, model->acts.logits,
                                      c.vocab_size, Vp, s, final);
        cudaCheckLaunch();
    }
    if (bma && !final) return;
    cudaCheck(cudaMemcpy(model->h_conf, model->d_conf, (size_t)N * sizeof(float), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(model->h_arg, model->d_arg, (size_t)N * sizeof(int), cudaMemcpyDeviceToHost));
    for (int i = 0; i < N; i++) ece_add_token(bins, model->h_conf[i], model->h_arg[i] == targets[i]);
}

// ECE bins summed over the processes (15 values per collective), then the ECE
static double dp_ece_value(CudaDist* d, EceBins* e) {
    cuda_dist_allreduce_sum_host(d, e->n, ECE_BINS);
    cuda_dist_allreduce_sum_host(d, e->conf, ECE_BINS);
    cuda_dist_allreduce_sum_host(d, e->correct, ECE_BINS);
    return ece_value(e);
}

// Mean loss over `max_batches` batches of the val loader on each process (process r: batches r, r + P, ...),
// averaged over the processes; *ece: the calibration error of the predictions.
static float evaluate_mean_loss(GPT2* model, DataLoader* loader, int max_batches, double* ece) {
    dataloader_reset(loader);
    double sum = 0.0;
    EceBins bins;
    ece_reset(&bins);
    for (int i = 0; i < max_batches; i++) {
        dataloader_next_batch(loader);
        gpt2_forward(model, loader->inputs, loader->targets, (int)loader->B, (int)loader->T);
        sum += model->mean_loss;
        gpt2_token_conf(model, 0, 0, 1, loader->targets, &bins);
    }
    cuda_dist_allreduce_sum_host(model->dist, &sum, 1);
    *ece = dp_ece_value(model->dist, &bins);
    int P = model->dist != NULL ? model->dist->world : 1;
    return (float)(sum / ((double)max_batches * P));
}

// posterior-predictive (BMA) val loss with S samples theta_s = m + sigma eps (stream BMA, sample s, step), as
// train_gpt2.c: per token the running logsumexp of -loss_s in lse (max_batches, B*T) on the host, the predictive
// mean_s p_s summed on the device for *ece. The working weights are back at the mean afterwards.
static float evaluate_bma_loss(GPT2* model, const OptimizerConfig* oc, DataLoader* loader, int max_batches, int S,
                               int step, float* lse, double* ece) {
    size_t bt = loader->B * loader->T;
    EceBins bins;
    ece_reset(&bins);
    dataloader_reset(loader);
    for (int b = 0; b < max_batches; b++) {
        dataloader_next_batch(loader);
        for (int s = 0; s < S; s++) {
            gpt2_optimizer_sample_bma(model, oc, step, s);
            gpt2_forward(model, loader->inputs, loader->targets, (int)loader->B, (int)loader->T);
            train_bma_accumulate(lse + (size_t)b * bt, model->h_losses, bt, s);
            gpt2_token_conf(model, 1, s, s == S - 1, loader->targets, &bins);
        }
    }
    *ece = dp_ece_value(model->dist, &bins);
    gpt2_optimizer_restore_mean(model);
    double loss = train_bma_loss(lse, (size_t)max_batches * bt, S);
    cuda_dist_allreduce_sum_host(model->dist, &loss, 1);
    int P = model->dist != NULL ? model->dist->world : 1;
    return (float)(loss / P);
}

// the next-token probabilities after a forward over tokens[0..t) (sampler_generate)
static const float* gpt2_next_probs(void* m, const int* tokens, int t) {
    GPT2* model = (GPT2*)m;
    gpt2_forward(model, tokens, NULL, 1, t);
    return gpt2_row_probs(model, t - 1);
}

#ifdef USE_MPI
#define TRAIN_MPI_HINT "train_gpt2cu"
#else
#define TRAIN_MPI_HINT "a train_gpt2cu built with MPI (make train_gpt2cu with mpicc on PATH and without NO_MPI=1), " \
                       "or -dm tcp / -dm fs"
#endif

int main(int argc, char** argv) {
    static TrainRun run;
    static CudaDist dist;
    TrainRun* r = &run;
    GPT2Config mc;
    int source = train_run_parse(r, argc, argv, &mc);

    // processes, GPU, communicator (llmc/cuda_dist.h); one process without -dm: no NCCL call at all
    int init = dist_resolve_init_or_exit(&r->cfg, CUDA_DIST_HAS_MPI, 1, TRAIN_MPI_HINT);
    cuda_dist_init(&dist, &r->cfg, init, &argc, &argv);
    train_run_set_dist(r, dist.rank, dist.world, dist.local_rank, init);
    int lo, hi;
    if (!cuda_dist_all_equal(&dist, r->resume_step, &lo, &hi))
        fatalf("flag -y: the ranks would resume from different steps (%d .. %d; -1 = none, this rank %d): -o must be "
               "one directory on storage shared by all ranks", lo, hi, r->resume_step);
    int device = dist.device;
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, device));

    // model: from a descriptor (random init), from a model file, or from the latest checkpoint in -o
    GPT2 model;
    if (source == 0) gpt2_build_random(&model, mc, r->cfg.seed);
    else gpt2_build_from_checkpoint(&model, r->path);
    train_run_setup(r, model.config, model.num_parameters);
    train_run_print_dist(r, model.num_parameters, (int)sizeof(floatX), (int)sizeof(floatX));
    cuda_dist_print(&dist);
    const int B = r->B, T = r->T;
    OptimizerConfig* oc = &r->oc;
    GPT2Config c = model.config;

    int recompute = r->cfg.recompute;
    gpt2_set_dist(&model, &dist, r->dist.zero_stage);
    // test-only IVON_TEST_CLASSIFIER_ROWS: fewer rows per classifier chunk (several chunks at a small B*T)
    const char* cls = getenv("IVON_TEST_CLASSIFIER_ROWS");
    if (cls != NULL && cls[0] != '\0')
        gpt2_classifier_rows = (int)train_env_int("IVON_TEST_CLASSIFIER_ROWS", cls, "", NULL, 1, INT_MAX);
    gpt2_allocate(&model, B, T, recompute);
    gpt2_set_gelu_fusion(&model, r->cfg.gelu_fusion);
    gpt2_set_dist_info(&model, &r->dist);
    gpt2_optimizer_init(&model, oc);
    if (oc->kind == OPT_ADAMW) gpt2_set_grad_accum(&model, r->grad_accum);
    double peak = gpt2_device_peak_flops(&prop);
    printf("device: %s, %d SMs, %.1f GiB; precision %s; recompute %d; gelu fusion %d\n", prop.name,
           prop.multiProcessorCount, (double)prop.totalGlobalMem / (1 << 30), PRECISION_NAME, recompute,
           model.gelu_fusion);
    gpt2_print_optimizer_memory(&model, oc);
    printf("memory: activations %.1f MiB (logits %.1f MiB: %d rows per classifier chunk)\n",
           (double)model.acts_bytes / (1 << 20),
           (double)model.cls_rows * model.config.padded_vocab_size * sizeof(floatX) / (1 << 20), model.cls_rows);
    if (peak > 0.0) printf("peak: %.0f TFLOP/s bf16 dense\n", peak / 1e12);
    else printf("peak: unknown peak for %s (no MFU)\n", prop.name);
    // FLOPs per token: linear layers 6 N, causal attention 6 L C T (forward 2 L C T, backward twice that); per GPU
    double flops_per_step = (6.0 * (double)model.num_parameters + 6.0 * c.num_layers * c.channels * (double)T) *
                            (double)r->total_batch / dist.world;

    int* gen_tokens = (int*)mallocCheck((size_t)T * sizeof(int));
    float* bma_lse = NULL;  // (val_batches, B*T)
    if (r->run_val && r->bma_samples > 0) {
        bma_lse = (float*)mallocCheck((size_t)r->val_batches * B * T * sizeof(float));
        gpt2_allocate_eval(&model, 1);
    } else if (r->run_val) {
        gpt2_allocate_eval(&model, 0);
    }
    int start_step = 0;
    if (r->resume_step >= 0) {
        StateHeader sh;
        checkpoint_state_path(r->path, sizeof(r->path), r->cfg.output_log_dir, r->resume_step);
        gpt2_read_state(&model, r->path, &sh);
        train_run_restore(r, r->path, &sh, &model.anchor_step, &model.mega_tokens);
        start_step = r->resume_step;
        printf("resumed from %s at step %d\n", r->path, start_step);
    }
    TrainBatches batches = {&r->train_loader, r->cfg.overfit_single_batch, 0};

    double total_ms = 0.0;
    int timed_steps = 0;
    for (int step = start_step; step <= r->max_steps; step++) {
        if (train_run_val_due(r, step)) {
            double ece = -1.0, bma_ece = -1.0;
            float val_loss = evaluate_mean_loss(&model, &r->val_loader, r->val_batches, &ece);
            float bma_loss = 0.0f;
            if (r->bma_samples > 0)
                bma_loss = evaluate_bma_loss(&model, oc, &r->val_loader, r->val_batches, r->bma_samples, step, bma_lse,
                                             &bma_ece);
            train_report_val(&r->logger, step, val_loss, r->bma_samples, bma_loss, ece, bma_ece);
            if (oc->kind != OPT_ADAMW) {
                OptimizerDiagnostics dg;
                gpt2_optimizer_diagnostics(&model, oc, &dg);
                train_report_diagnostics(&r->logger, step, &dg);
            }
        }
        if (train_run_sample_due(r, step))
            sampler_generate(gpt2_next_probs, &model, &r->tokenizer, gen_tokens, r->gen_len, model.config.vocab_size,
                             r->cfg.seed, step);
        if (train_run_checkpoint_due(r, step, start_step)) {
            // every rank takes part (ZeRO-1 gathers the shards to rank 0); rank 0 writes
            checkpoint_model_path(r->path, sizeof(r->path), r->cfg.output_log_dir, step);
            gpt2_write_model(&model, r->path);
            StateHeader sh = train_run_state_header(r, step, model.num_parameters, model.anchor_step,
                                                    model.mega_tokens);
            checkpoint_state_path(r->path, sizeof(r->path), r->cfg.output_log_dir, step);
            gpt2_write_state(&model, r->path, &sh);
            if (dist.rank == 0) train_run_checkpoint_done(r, step);
        }
        if (step == r->max_steps) break;

        double t0 = train_time_now_s();
        float lr = lr_scheduler_get(&r->sched, step);
        StepStats st;
        gpt2_optimizer_step(&model, oc, step, lr, r->grad_accum, train_next_batch, &batches, &r->guard, &st);
        double ms = 1e3 * (train_time_now_s() - t0);
        if (step > start_step) { total_ms += ms; timed_steps++; }
        train_report_step(&r->logger, oc->kind, step, r->max_steps, &st, lr, ms, r->total_batch);
        if (peak > 0.0) printf("           mfu %.1f%%\n", 100.0 * flops_per_step / (ms / 1e3) / peak);
        train_run_account_step(r, step, &st);
    }
    if (timed_steps > 0) printf("total average iteration time: %.1f ms\n", total_ms / timed_steps);
    if (r->skipped_total > 0) printf("skipped steps: %d\n", r->skipped_total);

    free(bma_lse);
    free(gen_tokens);
    train_run_free(r);
    gpt2_free(&model);
    cuda_dist_finish(&dist);
    return 0;
}
#endif
