// Tests of the CPU backend's execution model (dev/cuda_cpu/include): block and warp collectives against host
// references under the forward, reverse and shuffled thread schedules (bitwise equal results), the checks a GPU
// does not give (a missing barrier changes the result between schedules; divergent barriers, early exits before a
// barrier, bad shuffle masks and deadlocks are reported with the kernel's name), launch-configuration errors,
// NaN-filled allocations, pointer-argument checks, atomics and dynamic shared memory.
// Ordinary CUDA: `nvcc -o test_exec dev/cuda_cpu/test_exec.cu` builds it for a GPU too (the backend-only checks are
// skipped there). Prints one line per check and `N passed, N failed`; exit 1 on a failure.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cuda_runtime.h>
#include <cuda_bf16.h>

static int n_pass = 0, n_fail = 0;
static void check(const char* name, int ok, const char* detail = "") {
    printf("%s %s%s%s\n", ok ? "OK  " : "FAIL", name, detail[0] ? ": " : "", detail);
    if (ok) n_pass++;
    else n_fail++;
}

// ---------------------------------------------------------------------------------------------
// kernels

__device__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// out[block] = sum of in over the block's slice, tree reduction in shared memory (with barriers)
__global__ void block_sum_kernel(float* out, const float* in, int n) {
    __shared__ float s[256];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    s[threadIdx.x] = i < n ? in[i] : 0.0f;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if ((int)threadIdx.x < k) s[threadIdx.x] += s[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = s[0];
}

// the same without the barriers inside the loop: a race that the schedules expose
__global__ void block_sum_racy_kernel(float* out, const float* in, int n) {
    __shared__ float s[256];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    s[threadIdx.x] = i < n ? in[i] : 0.0f;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if ((int)threadIdx.x < k) s[threadIdx.x] += s[threadIdx.x + k];
    }
    __syncthreads();
    if (threadIdx.x == 0) out[blockIdx.x] = s[0];
}

// every shuffle flavour, votes and reductions; out (blocks*blockDim, 8)
__global__ void warp_ops_kernel(int* out, const int* in) {
    int i = blockIdx.x * blockDim.x + threadIdx.x, lane = threadIdx.x % 32;
    int v = in[i];
    int* o = out + (size_t)i * 8;
    o[0] = __shfl_sync(0xffffffffu, v, (lane * 7) % 32);
    o[1] = __shfl_up_sync(0xffffffffu, v, 3);
    o[2] = __shfl_down_sync(0xffffffffu, v, 5, 16);
    o[3] = __shfl_xor_sync(0xffffffffu, v, 9);
    o[4] = __ballot_sync(0xffffffffu, v % 3 == 0);
    o[5] = __all_sync(0xffffffffu, v >= 0) + 2 * __any_sync(0xffffffffu, v % 5 == 0);
    o[6] = __reduce_add_sync(0xffffffffu, v);
    o[7] = __reduce_max_sync(0xffffffffu, v);
}

// half-warp masks: the lower 16 lanes and the upper 16 lanes shuffle separately
__global__ void half_warp_kernel(float* out, const float* in) {
    int i = threadIdx.x, lane = i % 32;
    unsigned mask = lane < 16 ? 0x0000ffffu : 0xffff0000u;
    float v = in[i];
    for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(mask, v, o);
    __syncwarp(mask);
    out[i] = v;
}

__global__ void atomic_kernel(int* counter, float* fsum, const float* in, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    atomicAdd(counter, 1);
    atomicAdd(fsum, in[i]);
}

__global__ void dyn_smem_kernel(float* out, const float* in) {
    extern __shared__ float buf[];
    buf[threadIdx.x] = in[threadIdx.x] * 2.0f;
    __syncthreads();
    out[threadIdx.x] = buf[blockDim.x - 1 - threadIdx.x];
}

__global__ void count_kernel(int* out) {
    int c = __syncthreads_count(threadIdx.x % 3 == 0);
    if (threadIdx.x == 0) out[blockIdx.x] = c;
}

// 3-D blocks and grids: every thread writes its linear index
__global__ void index_kernel(int* out) {
    int bx = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    int tx = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    int nt = blockDim.x * blockDim.y * blockDim.z;
    out[bx * nt + tx] = bx * nt + tx;
}

__global__ void copy_kernel(float* out, const float* in, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = in[i];
}

__global__ void bf16_kernel(__nv_bfloat16* out, const float* in, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __float2bfloat16(in[i]);
}

// misuse, each reported by the backend
__global__ void divergent_barrier_kernel(float* out) {
    if (threadIdx.x < 16) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1.0f;
}

__global__ void exit_before_barrier_kernel(float* out) {
    if (threadIdx.x >= 32) return;
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}

// lane 0 waits at __syncwarp for lanes that wait at __syncthreads for lane 0
__global__ void deadlock_kernel(float* out) {
    if (threadIdx.x == 0) __syncwarp();
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}

__global__ void bad_mask_kernel(float* out) {
    float v = __shfl_xor_sync(0x0000ffffu, 1.0f, 16);  // reads lanes outside the mask
    out[threadIdx.x] = v;
}

__global__ void read_unwritten_kernel(float* out, const float* in) { out[threadIdx.x] = in[threadIdx.x]; }

// writes its shared array, so that the next block on the same OS thread would see old values without the fill
__global__ void shared_fill_kernel(float* out, int write) {
    __shared__ float s[64];
    if (write) s[threadIdx.x] = 1.0f;
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = s[threadIdx.x];
}

// ---------------------------------------------------------------------------------------------
// host side

static unsigned long long checksum(const void* p, size_t n) {
    const unsigned char* b = (const unsigned char*)p;
    unsigned long long h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

#ifdef CUDA_CPU_BACKEND
static const char* const schedules[] = {"forward", "reverse", "shuffle:7", "shuffle:12345"};
static const int n_schedules = 4;
static void use_schedule(int s) { cuda_cpu::set_schedule(schedules[s]); }
#else
static const char* const schedules[] = {"gpu"};
static const int n_schedules = 1;
static void use_schedule(int) {}
#endif

// the kernels that must not depend on the schedule; returns a checksum of all their outputs
static unsigned long long run_correct_kernels(int s, int report) {
    use_schedule(s);
    const int n = 1000, nb = 4;  // 4 blocks of 256, the last partly past n
    float h_in[1024];
    for (int i = 0; i < 1024; i++) h_in[i] = (float)((i * 37) % 101) / 7.0f - 5.0f;
    float *d_in, *d_out;
    cudaMalloc(&d_in, 1024 * sizeof(float));
    cudaMalloc(&d_out, 1024 * sizeof(float));
    cudaMemcpy(d_in, h_in, 1024 * sizeof(float), cudaMemcpyHostToDevice);
    unsigned long long h = 0;
    char detail[256];

    block_sum_kernel<<<nb, 256>>>(d_out, d_in, n);
    float sums[4];
    cudaMemcpy(sums, d_out, sizeof(sums), cudaMemcpyDeviceToHost);
    int ok = cudaGetLastError() == cudaSuccess;
    for (int b = 0; b < nb; b++) {
        double ref = 0.0;
        for (int i = b * 256; i < (b + 1) * 256 && i < n; i++) ref += h_in[i];
        ok = ok && fabs(sums[b] - ref) < 1e-3;
    }
    snprintf(detail, sizeof(detail), "schedule %s", schedules[s]);
    if (report) check("block_sum (shared memory tree with barriers) = host sum", ok, detail);
    h ^= checksum(sums, sizeof(sums));

    int h_iv[512], h_ov[512 * 8];
    for (int i = 0; i < 512; i++) h_iv[i] = (i * 7919) % 1013;
    int *d_iv, *d_ov;
    cudaMalloc(&d_iv, sizeof(h_iv));
    cudaMalloc(&d_ov, sizeof(h_ov));
    cudaMemcpy(d_iv, h_iv, sizeof(h_iv), cudaMemcpyHostToDevice);
    warp_ops_kernel<<<2, 256>>>(d_ov, d_iv);
    cudaMemcpy(h_ov, d_ov, sizeof(h_ov), cudaMemcpyDeviceToHost);
    ok = cudaGetLastError() == cudaSuccess;
    for (int i = 0; i < 512 && ok; i++) {
        int lane = i % 32, w0 = i - lane;
        const int* o = h_ov + i * 8;
        unsigned ballot = 0;
        int all = 1, any = 0, sum = 0, mx = h_iv[w0];
        for (int l = 0; l < 32; l++) {
            int v = h_iv[w0 + l];
            ballot |= (unsigned)(v % 3 == 0) << l;
            all = all && v >= 0;
            any = any || v % 5 == 0;
            sum += v;
            mx = v > mx ? v : mx;
        }
        int up = lane >= 3 ? h_iv[i - 3] : h_iv[i];
        int down = lane % 16 + 5 < 16 ? h_iv[i + 5] : h_iv[i];
        ok = o[0] == h_iv[w0 + (lane * 7) % 32] && o[1] == up && o[2] == down && o[3] == h_iv[w0 + (lane ^ 9)] &&
             (unsigned)o[4] == ballot && o[5] == all + 2 * any && o[6] == sum && o[7] == mx;
        if (!ok) snprintf(detail, sizeof(detail), "thread %d: %d %d %d %d %u %d %d %d", i, o[0], o[1], o[2], o[3],
                          (unsigned)o[4], o[5], o[6], o[7]);
    }
    if (ok) snprintf(detail, sizeof(detail), "schedule %s", schedules[s]);
    if (report) check("warp shuffles (idx, up, down width 16, xor), votes, reductions = host", ok, detail);
    h ^= checksum(h_ov, sizeof(h_ov));

    half_warp_kernel<<<1, 64>>>(d_out, d_in);
    float hw[64];
    cudaMemcpy(hw, d_out, sizeof(hw), cudaMemcpyDeviceToHost);
    ok = cudaGetLastError() == cudaSuccess;
    for (int i = 0; i < 64 && ok; i++) {
        float ref = 0.0f;
        int g = i / 16 * 16;
        // the same xor butterfly on the host, per 16-lane group
        float v[16];
        for (int l = 0; l < 16; l++) v[l] = h_in[g + l];
        for (int o = 8; o > 0; o >>= 1) {
            float nv[16];
            for (int l = 0; l < 16; l++) nv[l] = v[l] + v[l ^ o];
            memcpy(v, nv, sizeof(v));
        }
        ref = v[i - g];
        ok = hw[i] == ref;
    }
    if (report) check("half-warp masks: shuffles within 16 lanes, bitwise = host butterfly", ok, schedules[s]);
    h ^= checksum(hw, sizeof(hw));

    dyn_smem_kernel<<<1, 128, 128 * sizeof(float)>>>(d_out, d_in);
    float dyn[128];
    cudaMemcpy(dyn, d_out, sizeof(dyn), cudaMemcpyDeviceToHost);
    ok = cudaGetLastError() == cudaSuccess;
    for (int i = 0; i < 128; i++) ok = ok && dyn[i] == h_in[127 - i] * 2.0f;
    if (report) check("dynamic shared memory (extern __shared__)", ok, schedules[s]);
    h ^= checksum(dyn, sizeof(dyn));

    int* d_cnt;
    cudaMalloc(&d_cnt, 2 * sizeof(int));
    count_kernel<<<2, 100>>>(d_cnt);
    int cnt[2];
    cudaMemcpy(cnt, d_cnt, sizeof(cnt), cudaMemcpyDeviceToHost);
    if (report) check("__syncthreads_count with a partial last warp", cnt[0] == 34 && cnt[1] == 34, schedules[s]);
    h ^= checksum(cnt, sizeof(cnt));

    int* d_idx;
    int nidx = 2 * 3 * 2 * (4 * 3 * 2);
    cudaMalloc(&d_idx, nidx * sizeof(int));
    index_kernel<<<dim3(2, 3, 2), dim3(4, 3, 2)>>>(d_idx);
    int* idx = (int*)malloc(nidx * sizeof(int));
    cudaMemcpy(idx, d_idx, nidx * sizeof(int), cudaMemcpyDeviceToHost);
    ok = 1;
    for (int i = 0; i < nidx; i++) ok = ok && idx[i] == i;
    if (report) check("3-D grid and block indices", ok, schedules[s]);
    h ^= checksum(idx, nidx * sizeof(int));
    free(idx);

    cudaFree(d_idx);
    cudaFree(d_cnt);
    cudaFree(d_iv);
    cudaFree(d_ov);
    cudaFree(d_in);
    cudaFree(d_out);
    return h;
}

static unsigned long long run_racy_kernel(int s) {
    use_schedule(s);
    float h_in[256];
    for (int i = 0; i < 256; i++) h_in[i] = (float)(i % 17) + 0.25f * (float)(i % 5);
    float *d_in, *d_out;
    cudaMalloc(&d_in, sizeof(h_in));
    cudaMalloc(&d_out, sizeof(float));
    cudaMemcpy(d_in, h_in, sizeof(h_in), cudaMemcpyHostToDevice);
    block_sum_racy_kernel<<<1, 256>>>(d_out, d_in, 256);
    float r;
    cudaMemcpy(&r, d_out, sizeof(r), cudaMemcpyDeviceToHost);
    cudaFree(d_in);
    cudaFree(d_out);
    return checksum(&r, sizeof(r));
}

#ifdef CUDA_CPU_BACKEND
// a kernel that misuses a collective must fail its launch with the sticky error, and name itself
static void expect_kernel_error(const char* what, void (*launch)(float*)) {
    cuda_cpu::runtime().sticky = 0;
    cudaGetLastError();
    float* d;
    cudaMalloc(&d, 1024 * sizeof(float));
    cudaMemset(d, 0, 1024 * sizeof(float));
    launch(d);
    cudaError_t e = cudaGetLastError();
    char detail[128];
    snprintf(detail, sizeof(detail), "launch returned %s", cudaGetErrorName(e));
    check(what, e == cudaErrorLaunchFailure, detail);
    cuda_cpu::runtime().sticky = 0;  // test only: a real device needs a reset here
    cudaGetLastError();
    cudaFree(d);
}
static void launch_divergent(float* d) { divergent_barrier_kernel<<<1, 64>>>(d); }
static void launch_exit_early(float* d) { exit_before_barrier_kernel<<<1, 64>>>(d); }
static void launch_deadlock(float* d) { deadlock_kernel<<<1, 64>>>(d); }
static void launch_bad_mask(float* d) { bad_mask_kernel<<<1, 32>>>(d); }
#endif

int main(void) {
    // results independent of the schedule
    unsigned long long ref = 0;
    int same = 1;
    for (int s = 0; s < n_schedules; s++) {
        unsigned long long h = run_correct_kernels(s, 1);
        if (s == 0) ref = h;
        else same = same && h == ref;
    }
    check("correct kernels: bitwise-identical outputs under every schedule", same);

#ifdef CUDA_CPU_BACKEND
    // a missing barrier shows as a schedule-dependent result
    unsigned long long r0 = run_racy_kernel(0), r1 = run_racy_kernel(1);
    check("missing barrier: forward and reverse schedules give different results", r0 != r1);
    use_schedule(0);

    printf("(the next four lines from cuda_cpu are expected)\n");
    fflush(stdout);
    expect_kernel_error("divergent __syncthreads reported", launch_divergent);
    expect_kernel_error("__syncthreads after threads exited reported", launch_exit_early);
    expect_kernel_error("deadlock reported instead of a hang", launch_deadlock);
    expect_kernel_error("shuffle reading a lane outside its mask reported", launch_bad_mask);
#else
    (void)run_racy_kernel;
#endif

    // launch configuration errors, as the runtime reports them
#ifdef CUDA_CPU_BACKEND
    printf("(the next three lines from cuda_cpu are expected)\n");
    fflush(stdout);
#endif
    float *d_a, *d_b;
    cudaMalloc(&d_a, 4096 * sizeof(float));
    cudaMalloc(&d_b, 4096 * sizeof(float));
    copy_kernel<<<1, 2048>>>(d_a, d_b, 16);
    check("2048 threads per block: cudaErrorInvalidConfiguration", cudaGetLastError() == cudaErrorInvalidConfiguration);
    check("the error is cleared by cudaGetLastError", cudaGetLastError() == cudaSuccess);
    copy_kernel<<<dim3(1, 70000), 32>>>(d_a, d_b, 16);
    check("grid.y 70000: cudaErrorInvalidConfiguration", cudaGetLastError() == cudaErrorInvalidConfiguration);
    dyn_smem_kernel<<<1, 32, 64 * 1024>>>(d_a, d_b);
    check("64 KiB dynamic shared memory without the attribute: cudaErrorInvalidValue",
          cudaGetLastError() == cudaErrorInvalidValue);
    cudaFuncSetAttribute(dyn_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024);
    dyn_smem_kernel<<<1, 32, 64 * 1024>>>(d_a, d_b);
    check("64 KiB dynamic shared memory after cudaFuncSetAttribute", cudaGetLastError() == cudaSuccess);

#ifdef CUDA_CPU_BACKEND
    // unwritten device memory reads as NaN
    float *d_fresh, out[4];
    cudaMalloc(&d_fresh, 4 * sizeof(float));
    read_unwritten_kernel<<<1, 4>>>(d_a, d_fresh);
    cudaMemcpy(out, d_a, sizeof(out), cudaMemcpyDeviceToHost);
    check("cudaMalloc memory reads as NaN until written", isnan(out[0]) && isnan(out[3]));
    shared_fill_kernel<<<1, 64>>>(d_a, 1);
    shared_fill_kernel<<<2, 64>>>(d_a, 0);
    float sh[128];
    cudaMemcpy(sh, d_a, sizeof(sh), cudaMemcpyDeviceToHost);
    check("static __shared__ memory reads as NaN in every block until written", isnan(sh[0]) && isnan(sh[127]));
    cudaFree(d_fresh);

    // a host pointer passed to a kernel is refused (sticky error)
    float host_buf[16];
    printf("(the next line from cuda_cpu is expected)\n");
    fflush(stdout);
    copy_kernel<<<1, 16>>>(d_a, host_buf, 16);
    cudaError_t e = cudaGetLastError();
    check("host pointer as kernel argument: cudaErrorIllegalAddress", e == cudaErrorIllegalAddress);
    check("the illegal-address error is sticky", cudaDeviceSynchronize() == cudaErrorIllegalAddress);
    cuda_cpu::runtime().sticky = 0;
    cudaGetLastError();

    // copies outside an allocation are refused
    printf("(the next line from cuda_cpu is expected)\n");
    fflush(stdout);
    check("cudaMemcpy past the end of an allocation: cudaErrorInvalidValue",
          cudaMemcpy(d_a + 4000, host_buf, 200 * sizeof(float), cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
    cudaGetLastError();
#endif

    // atomics across blocks running in parallel
    int* d_count;
    float* d_fsum;
    cudaMalloc(&d_count, sizeof(int));
    cudaMalloc(&d_fsum, sizeof(float));
    cudaMemset(d_count, 0, sizeof(int));
    cudaMemset(d_fsum, 0, sizeof(float));
    float ones[4096];
    for (int i = 0; i < 4096; i++) ones[i] = 1.0f;
    cudaMemcpy(d_b, ones, sizeof(ones), cudaMemcpyHostToDevice);
    atomic_kernel<<<16, 256>>>(d_count, d_fsum, d_b, 4000);
    int count;
    float fsum;
    cudaMemcpy(&count, d_count, sizeof(int), cudaMemcpyDeviceToHost);
    cudaMemcpy(&fsum, d_fsum, sizeof(float), cudaMemcpyDeviceToHost);
    check("atomicAdd int and float over 16 blocks", count == 4000 && fsum == 4000.0f);

    // bf16 conversion: round to nearest even
    float vals[4] = {1.0f, 1.00390625f, 1.01171875f, -3.0e38f};  // 1, 1 + 2^-8 (tie -> 1), 1 + 3*2^-8 (tie -> up)
    __nv_bfloat16* d_h;
    cudaMalloc(&d_h, 4 * sizeof(__nv_bfloat16));
    cudaMemcpy(d_b, vals, sizeof(vals), cudaMemcpyHostToDevice);
    bf16_kernel<<<1, 4>>>(d_h, d_b, 4);
    __nv_bfloat16 hb[4];
    cudaMemcpy(hb, d_h, sizeof(hb), cudaMemcpyDeviceToHost);
    check("float -> bf16 rounds to nearest even", __bfloat162float(hb[0]) == 1.0f &&
          __bfloat162float(hb[1]) == 1.0f && __bfloat162float(hb[2]) == 1.015625f &&
          __bfloat162float(hb[3]) == __bfloat162float(__float2bfloat16(-3.0e38f)));

    cudaFree(d_h);
    cudaFree(d_count);
    cudaFree(d_fsum);
    cudaFree(d_a);
    cudaFree(d_b);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail == 0 ? 0 : 1;
}
