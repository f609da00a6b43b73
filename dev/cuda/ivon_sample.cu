/*
IVON sample pass: theta = m + n, n = eps / sqrt(essf (h + wdf)), eps = the counter-based normal of flat index
start + i (llmc/noise.h). theta is the floatX working copy of the weights.
CPU reference: ivon_sample (llmc/optim.h). theta (floatX) must equal the RNE rounding of the reference's fp32
theta bit for bit.
Bytes per element: m 4 + h 4 read, theta sizeof(floatX) written (10 in bf16).

nvcc: make -C dev/cuda ivon_sample;  ./ivon_sample validate;  ./ivon_sample bench [-k 2] [-b 256]
version 1: one element per thread; each thread computes the Philox block of its index (4 normals, 1 used)
version 2: one Philox block per thread: 4 elements, 128-bit loads of m and h, one 4 x floatX store (64 bits in bf16)
version 3: version 2 over a persistent grid (grid-stride loop)
version 4: two Philox blocks per thread: 8 elements, 2 x 128-bit loads of m and h, one 128-bit store of 8 bf16
*/
#include "common.h"

#define NAME "ivon_sample"
#define NVERSIONS 4

// ----------------------------------------------------------------------------
// kernels

__global__ void ivon_sample_kernel1(floatX* theta, const float* m, const float* h, size_t n, size_t start, float essf,
                                    float wdf, NoiseKey key) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float e = noise_key_normal(key, start + i);
    theta[i] = f2x(ivon_sample_elem(m[i], ivon_noise_elem(e, h[i], essf, wdf)));
}

// the elements of group q (flat indices W q .. W q + W-1, W/4 Philox blocks) that lie in the slice [start, start + n)
template <int W>
__device__ inline void ivon_sample_group(floatX* theta, const float* m, const float* h, size_t n, size_t start,
                                         size_t q, float essf, float wdf, NoiseKey key) {
    float e[W];
    for (int b = 0; b < W / 4; b++) noise_key_normal4(key, q * (W / 4) + b, e + 4 * b);
    size_t g0 = q * W;
    if (start % W == 0 && g0 + W <= start + n) {  // whole and aligned: vector loads and stores
        size_t j = g0 - start;
        LabF<W> mv = *(const LabF<W>*)(m + j), hv = *(const LabF<W>*)(h + j);
        LabX<W> out;
        for (int l = 0; l < W; l++) out.v[l] = f2x(ivon_sample_elem(mv.v[l], ivon_noise_elem(e[l], hv.v[l], essf, wdf)));
        *(LabX<W>*)(theta + j) = out;
        return;
    }
    for (int l = 0; l < W; l++) {
        size_t g = g0 + l;
        if (g < start || g >= start + n) continue;
        size_t j = g - start;
        theta[j] = f2x(ivon_sample_elem(m[j], ivon_noise_elem(e[l], h[j], essf, wdf)));
    }
}

// one group per thread
template <int W>
__global__ void ivon_sample_kernel_vec(floatX* theta, const float* m, const float* h, size_t n, size_t start, float essf,
                                       float wdf, NoiseKey key) {
    size_t q = lab_group_lo<W>(start) + (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= lab_group_hi<W>(n, start)) return;
    ivon_sample_group<W>(theta, m, h, n, start, q, essf, wdf, key);
}

// persistent grid, grid-stride over the groups
template <int W>
__global__ void ivon_sample_kernel_persistent(floatX* theta, const float* m, const float* h, size_t n, size_t start,
                                              float essf, float wdf, NoiseKey key) {
    size_t q1 = lab_group_hi<W>(n, start);
    for (size_t q = lab_group_lo<W>(start) + (size_t)blockIdx.x * blockDim.x + threadIdx.x; q < q1;
         q += (size_t)gridDim.x * blockDim.x)
        ivon_sample_group<W>(theta, m, h, n, start, q, essf, wdf, key);
}

// ----------------------------------------------------------------------------
// launcher

static void ivon_sample_launch(int version, int block, floatX* theta, const float* m, const float* h, size_t n,
                               size_t start, float essf, float wdf, NoiseKey key) {
    if (version == 1) ivon_sample_kernel1<<<ceil_div(n, block), block>>>(theta, m, h, n, start, essf, wdf, key);
    if (version == 2)
        ivon_sample_kernel_vec<4><<<ceil_div(lab_groups<4>(n, start), block), block>>>(theta, m, h, n, start, essf, wdf, key);
    if (version == 3)
        ivon_sample_kernel_persistent<4><<<lab_persistent_grid(block, lab_groups<4>(n, start)), block>>>(theta, m, h, n, start,
                                                                                                  essf, wdf, key);
    if (version == 4)
        ivon_sample_kernel_vec<8><<<ceil_div(lab_groups<8>(n, start), block), block>>>(theta, m, h, n, start, essf, wdf, key);
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------

// one slice [start, start + n): the reference, then the versions (lab_run)
static void run_case(const LabArgs* a, size_t n, size_t start) {
    float *m = lab_host_f32(n), *h = lab_host_f32(n), *want = lab_host_f32(n);
    lab_fill(m, n, -0.05f, 0.05f, 1);
    lab_fill(h, n, 1e-4f, 1e-2f, 2);
    const float essf = 1e5f, wdf = 1e-6f;
    IvonNoiseKey rk = {1337, 0, 7, 2, NOISE_STREAM_SAMPLE, 0};
    NoiseKey key = noise_key(rk.seed, rk.rank, rk.step, rk.sample, rk.stream);
    ivon_sample(want, NULL, m, h, n, start, essf, wdf, &rk);

    float *d_m = lab_device<float>(n), *d_h = lab_device<float>(n);
    floatX* d_theta = lab_device<floatX>(n);
    lab_upload(d_m, m, n);
    lab_upload(d_h, h, n);
    char what[64];
    snprintf(what, sizeof(what), "n %zu start %zu", n, start);
    lab_run(a, NAME, NVERSIONS, n, what, 2.0 * sizeof(float) + sizeof(floatX),
            [&] { cudaCheck(cudaMemset(d_theta, 0xff, n * sizeof(floatX))); },
            [&](int v, int b) { ivon_sample_launch(v, b, d_theta, d_m, d_h, n, start, essf, wdf, key); },
            [&](const char* label) { lab_check_x(label, "theta", d_theta, want, n, a->perturb); });
    cudaCheck(cudaFree(d_m));
    cudaCheck(cudaFree(d_h));
    cudaCheck(cudaFree(d_theta));
    free(m);
    free(h);
    free(want);
}

int main(int argc, char** argv) {
    LabArgs a = lab_parse_args(argc, argv, NAME, NVERSIONS);
    if (a.bench) {
        run_case(&a, a.n, 0);
    } else {
        run_case(&a, a.n, 0);
        run_case(&a, a.n, 4003);                   // unaligned start: partial blocks at both ends
        run_case(&a, 4099, 5000000004ull);         // past 2^32; 4 mod 8: v4 takes the scalar path
        run_case(&a, 3, 6);                        // inside one Philox block
    }
    return lab_finish(NAME);
}
