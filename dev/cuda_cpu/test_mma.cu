// Tests of nvcuda::wmma on the CPU backend (dev/cuda_cpu/include/mma.h): a kernel that multiplies tiles with the
// fragments against a host matmul, for every matrix_a / matrix_b layout, row- and col-major accumulator loads and
// stores, padded leading dimensions, the three shapes, __nv_bfloat16 and __half inputs, accumulation in place,
// element-wise work on fragments, several warps per block and every thread schedule; then the error cases
// (misaligned pointer, bad ldm, lanes that disagree, a diverged or missing lane).
// The backend's result must equal, bit for bit, the documented order (c + a0 b0 + a1 b1 + ..., k ascending, fp32);
// on a GPU (`nvcc -arch=sm_80 ...`) the comparison is against the double product with a tolerance.
// Prints one line per check and `N passed, N failed`; exit 1 on a failure.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>
using namespace nvcuda;

static int n_pass = 0, n_fail = 0;
static void check(const char* name, int ok, const char* detail = "") {
    printf("%s %s%s%s\n", ok ? "OK  " : "FAIL", name, detail[0] ? ": " : "", detail);
    if (ok) n_pass++;
    else n_fail++;
}

template <class L> struct layout_of { static constexpr int col = 0; };
template <> struct layout_of<wmma::col_major> { static constexpr int col = 1; };
template <class L> __host__ __device__ constexpr int is_col() { return layout_of<L>::col; }

// c (Mt, Nt) = (accumulate ? c : 0) + a (Mt, Kt) b (Kt, Nt), then times scale (element-wise on the fragment).
// a, b in the layouts LA, LB with leading dimensions lda, ldb; c row- or col-major (c_col) with ldc. The warps of
// the block take the (M, N) output tiles round-robin.
template <class T, class LA, class LB, int M, int N, int K>
__global__ void wmma_gemm_kernel(float* c, const T* a, const T* b, int Mt, int Nt, int Kt, int lda, int ldb, int ldc,
                                 int c_col, int accumulate, float scale) {
    int warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    wmma::layout_t cl = c_col ? wmma::mem_col_major : wmma::mem_row_major;
    for (int tile = warp; tile < (Mt / M) * (Nt / N); tile += nwarps) {
        int tm = tile / (Nt / N), tn = tile % (Nt / N);
        float* cp = c_col ? c + (size_t)tn * N * ldc + tm * M : c + (size_t)tm * M * ldc + tn * N;
        wmma::fragment<wmma::accumulator, M, N, K, float> acc;
        if (accumulate) wmma::load_matrix_sync(acc, cp, ldc, cl);
        else wmma::fill_fragment(acc, 0.0f);
        for (int k = 0; k < Kt; k += K) {
            wmma::fragment<wmma::matrix_a, M, N, K, T, LA> fa;
            wmma::fragment<wmma::matrix_b, M, N, K, T, LB> fb;
            wmma::load_matrix_sync(fa, is_col<LA>() ? a + (size_t)k * lda + tm * M : a + (size_t)tm * M * lda + k, lda);
            wmma::load_matrix_sync(fb, is_col<LB>() ? b + (size_t)tn * N * ldb + k : b + (size_t)k * ldb + tn * N, ldb);
            wmma::mma_sync(acc, fa, fb, acc);
        }
        for (int i = 0; i < acc.num_elements; i++) acc.x[i] *= scale;
        wmma::store_matrix_sync(cp, acc, ldc, cl);
    }
}

struct Case {
    const char* name;
    int Mt, Nt, Kt, pad, c_col, accumulate, warps;
    float scale;
};

template <class T, class LA, class LB, int M, int N, int K>
static void run_case(const Case& cs) {
    int Mt = cs.Mt, Nt = cs.Nt, Kt = cs.Kt;
    int lda = (is_col<LA>() ? Mt : Kt) + cs.pad, ldb = (is_col<LB>() ? Kt : Nt) + cs.pad;
    int ldc = (cs.c_col ? Mt : Nt) + cs.pad;
    size_t na = (size_t)lda * (is_col<LA>() ? Kt : Mt), nb = (size_t)ldb * (is_col<LB>() ? Nt : Kt);
    size_t nc = (size_t)ldc * (cs.c_col ? Nt : Mt);
    T* ha = (T*)malloc(na * sizeof(T));
    T* hb = (T*)malloc(nb * sizeof(T));
    float* hc = (float*)malloc(nc * sizeof(float));
    float* out = (float*)malloc(nc * sizeof(float));
    unsigned s = 12345u + (unsigned)Mt * 7 + (unsigned)Kt;
    auto rnd = [&s]() { s = s * 1664525u + 1013904223u; return (float)((s >> 8) % 2001) / 1000.0f - 1.0f; };
    for (size_t i = 0; i < na; i++) ha[i] = (T)rnd();
    for (size_t i = 0; i < nb; i++) hb[i] = (T)rnd();
    for (size_t i = 0; i < nc; i++) hc[i] = rnd();
    T *da, *db;
    float* dc;
    cudaMalloc(&da, na * sizeof(T));
    cudaMalloc(&db, nb * sizeof(T));
    cudaMalloc(&dc, nc * sizeof(float));
    cudaMemcpy(da, ha, na * sizeof(T), cudaMemcpyHostToDevice);
    cudaMemcpy(db, hb, nb * sizeof(T), cudaMemcpyHostToDevice);
    cudaMemcpy(dc, hc, nc * sizeof(float), cudaMemcpyHostToDevice);
    wmma_gemm_kernel<T, LA, LB, M, N, K><<<1, 32 * cs.warps>>>(dc, da, db, Mt, Nt, Kt, lda, ldb, ldc, cs.c_col,
                                                               cs.accumulate, cs.scale);
    cudaError_t e = cudaGetLastError();
#ifdef CUDA_CPU_BACKEND
    if (e != cudaSuccess) cuda_cpu::runtime().sticky = 0;  // test only: report the case and go on
#endif
    cudaMemcpy(out, dc, nc * sizeof(float), cudaMemcpyDeviceToHost);
    int bitwise = 1, close = 1, pad_kept = 1;
    double maxerr = 0.0;
    for (int r = 0; r < Mt; r++)
        for (int c = 0; c < Nt; c++) {
            size_t ci = cs.c_col ? (size_t)c * ldc + r : (size_t)r * ldc + c;
            float acc = cs.accumulate ? hc[ci] : 0.0f;
            double ref = acc;
            for (int k = 0; k < Kt; k++) {
                float x = (float)ha[is_col<LA>() ? (size_t)k * lda + r : (size_t)r * lda + k];
                float y = (float)hb[is_col<LB>() ? (size_t)c * ldb + k : (size_t)k * ldb + c];
                acc = acc + x * y;
                ref += (double)x * y;
            }
            acc *= cs.scale;
            ref *= cs.scale;
            bitwise &= memcmp(&acc, &out[ci], 4) == 0;
            double err = fabs(out[ci] - ref);
            if (err > maxerr) maxerr = err;
            close &= err <= 1e-5 * (1.0 + fabs(ref)) * Kt;
        }
    // the padding columns of c are left alone
    for (size_t i = 0; i < nc; i++) {
        int major = (int)(i / ldc), minor = (int)(i % ldc);
        if (minor >= (cs.c_col ? Mt : Nt) && major >= 0) pad_kept &= memcmp(&hc[i], &out[i], 4) == 0;
    }
    char detail[160];
    snprintf(detail, sizeof(detail), "max |err| %.2e vs double, %s", maxerr, cudaGetErrorName(e));
#ifdef CUDA_CPU_BACKEND
    check(cs.name, e == cudaSuccess && bitwise && close && pad_kept, detail);
#else
    check(cs.name, e == cudaSuccess && close && pad_kept, detail);
#endif
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
    free(ha);
    free(hb);
    free(hc);
    free(out);
}

typedef __nv_bfloat16 bf16;
typedef wmma::row_major RM;
typedef wmma::col_major CM;

static void run_all_cases() {
    run_case<bf16, RM, RM, 16, 16, 16>({"m16n16k16 bf16, a row b row, c row, one tile", 16, 16, 16, 0, 0, 0, 1, 1.0f});
    run_case<bf16, RM, CM, 16, 16, 16>({"bf16 a row b col (q k^T), 32x48x64, padded ld, c row", 32, 48, 64, 8, 0, 0, 2,
                                        1.0f});
    run_case<bf16, CM, RM, 16, 16, 16>({"bf16 a col b row (p^T v), 48x32x32, padded ld, c col", 48, 32, 32, 8, 1, 0, 4,
                                        1.0f});
    run_case<bf16, CM, CM, 16, 16, 16>({"bf16 a col b col, 32x32x48, padded ld, c row", 32, 32, 48, 16, 0, 0, 3, 1.0f});
    run_case<bf16, RM, RM, 16, 16, 16>({"accumulate in place: c loaded row-major, d = c + a b", 32, 32, 32, 8, 0, 1, 4,
                                        1.0f});
    run_case<bf16, RM, CM, 16, 16, 16>({"accumulate in place: c loaded col-major", 32, 16, 48, 8, 1, 1, 2, 1.0f});
    run_case<bf16, RM, RM, 16, 16, 16>({"element-wise scale of the accumulator's x[]", 32, 32, 16, 8, 0, 1, 2, -0.5f});
    run_case<__half, RM, CM, 16, 16, 16>({"__half inputs, a row b col", 32, 32, 32, 8, 0, 1, 2, 1.0f});
    // (a tile pointer must be 256-bit aligned: the 8-wide tiles are taken along the leading dimension's stride)
    run_case<bf16, RM, CM, 32, 8, 16>({"m32n8k16 bf16, a row b col, c row", 64, 16, 32, 8, 0, 1, 2, 1.0f});
    run_case<bf16, RM, CM, 8, 32, 16>({"m8n32k16 bf16, a row b col, c col", 16, 64, 32, 8, 1, 1, 2, 1.0f});
}

#ifdef CUDA_CPU_BACKEND
static unsigned long long run_for_checksum() {
    // the in-place accumulation case under a schedule; the checksum of its output
    int n = 32 * 40;
    bf16* hb = (bf16*)malloc(n * sizeof(bf16));
    for (int i = 0; i < n; i++) hb[i] = (bf16)((float)((i * 37 % 101) - 50) * 0.01f);
    bf16* d;
    float* c;
    cudaMalloc(&d, n * sizeof(bf16));
    cudaMalloc(&c, n * sizeof(float));
    cudaMemcpy(d, hb, n * sizeof(bf16), cudaMemcpyHostToDevice);
    cudaMemset(c, 0, n * sizeof(float));
    wmma_gemm_kernel<bf16, RM, CM, 16, 16, 16><<<1, 128>>>(c, d, d, 32, 32, 32, 40, 40, 40, 0, 1, 1.0f);
    float* h = (float*)malloc(n * sizeof(float));
    cudaMemcpy(h, c, n * sizeof(float), cudaMemcpyDeviceToHost);
    unsigned long long x = 1469598103934665603ull;
    for (size_t i = 0; i < n * sizeof(float); i++) x = (x ^ ((unsigned char*)h)[i]) * 1099511628211ull;
    cudaFree(d);
    cudaFree(c);
    free(hb);
    free(h);
    return x;
}

// misuses: each must fail its launch with the sticky error
__global__ void misaligned_kernel(float* c, const bf16* a) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
    wmma::load_matrix_sync(fa, a + 8, 16);  // 16 bytes off a 256-byte aligned allocation
    (void)c;
}
__global__ void bad_ldm_kernel(float* c, const bf16* a) {
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 1.0f);
    wmma::store_matrix_sync(c, acc, 18, wmma::mem_row_major);  // 18 floats: not a multiple of 16 bytes
    (void)a;
}
__global__ void lanes_disagree_kernel(float* c, const bf16* a) {
    wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> fb;
    wmma::load_matrix_sync(fb, a + (threadIdx.x % 2) * 256, 16);  // each lane its own tile: not allowed
    (void)c;
}
__global__ void diverged_kernel(float* c, const bf16* a) {
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.0f);
    if (threadIdx.x < 16) wmma::store_matrix_sync(c, acc, 16, wmma::mem_row_major);  // half the warp
    (void)a;
}
__global__ void split_sites_kernel(float* c, const bf16* a) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
    if (threadIdx.x % 2) wmma::load_matrix_sync(fa, a, 16);
    else wmma::load_matrix_sync(fa, a, 16);  // the same call at another site
    (void)c;
}

static void expect_kernel_error(const char* what, void (*k)(float*, const bf16*), int threads) {
    cuda_cpu::runtime().sticky = 0;
    cudaGetLastError();
    float* c;
    bf16* a;
    cudaMalloc(&c, 4096 * sizeof(float));
    cudaMalloc(&a, 4096 * sizeof(bf16));
    cudaMemset(a, 0, 4096 * sizeof(bf16));
    k<<<1, threads>>>(c, a);
    cudaError_t e = cudaGetLastError();
    char detail[128];
    snprintf(detail, sizeof(detail), "launch returned %s", cudaGetErrorName(e));
    check(what, e == cudaErrorLaunchFailure, detail);
    cuda_cpu::runtime().sticky = 0;  // test only: a real device needs a reset here
    cudaGetLastError();
    cudaFree(c);
    cudaFree(a);
}
#endif

int main(void) {
#ifdef CUDA_CPU_BACKEND
    const char* schedules[] = {"forward", "reverse", "shuffle:7"};
    unsigned long long sum0 = 0;
    int same = 1;
    for (int s = 0; s < 3; s++) {
        cuda_cpu::set_schedule(schedules[s]);
        if (s == 0) run_all_cases();
        unsigned long long x = run_for_checksum();
        if (s == 0) sum0 = x;
        else same &= x == sum0;
    }
    check("bitwise-identical results under the forward, reverse and shuffled schedules", same);
    cuda_cpu::set_schedule("forward");
    expect_kernel_error("load_matrix_sync from a pointer that is not 256-bit aligned: launch fails", misaligned_kernel,
                        32);
    expect_kernel_error("store_matrix_sync with ldm not a multiple of 16 bytes: launch fails", bad_ldm_kernel, 32);
    expect_kernel_error("lanes passing different pointers: launch fails", lanes_disagree_kernel, 32);
    expect_kernel_error("half the warp at store_matrix_sync (divergence): launch fails", diverged_kernel, 32);
    expect_kernel_error("lanes at two different load_matrix_sync call sites: launch fails", split_sites_kernel, 32);
    expect_kernel_error("a block of 16 threads (lanes missing from the warp): launch fails", diverged_kernel, 16);
#else
    run_all_cases();
#endif
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail == 0 ? 0 : 1;
}
