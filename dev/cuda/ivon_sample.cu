/*
IVON sample pass: theta = m + n, n = eps / sqrt(essf (h + wdf)), eps = the counter-based normal of flat index
start + i (llmc/noise.h). theta is the floatX working copy of the weights.
CPU reference: ivon_sample (llmc/optim.h). theta (floatX) must equal the RNE rounding of the reference's fp32
theta bit for bit.
Bytes per element: m 4 + h 4 read, theta sizeof(floatX) written (10 in bf16).

nvcc: make -C dev/cuda ivon_sample;  ./ivon_sample validate;  ./ivon_sample bench [-k 2] [-b 256]
version 1: one element per thread; each thread computes the Philox block of its index (4 normals, 1 used)
version 2: one Philox block per thread: 4 elements, 128-bit loads of m and h, one 4 x floatX store
version 3: version 2 over a persistent grid (grid-stride loop over the blocks)
*/
#include "common.h"

#define NAME "ivon_sample"
#define NVERSIONS 3

// ----------------------------------------------------------------------------
// kernels

__global__ void ivon_sample_kernel1(floatX* theta, const float* m, const float* h, size_t n, size_t start, float essf,
                                    float wdf, NoiseKey key) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float e = noise_key_normal(key, start + i);
    theta[i] = f2x(ivon_sample_elem(m[i], ivon_noise_elem(e, h[i], essf, wdf)));
}

// the elements of Philox block q (flat indices 4q .. 4q+3) that lie in the slice [start, start + n)
__device__ inline void ivon_sample_quad(floatX* theta, const float* m, const float* h, size_t n, size_t start,
                                        size_t q, float essf, float wdf, NoiseKey key) {
    float e[4];
    noise_key_normal4(key, q, e);
    size_t g0 = q << 2;
    if ((start & 3) == 0 && g0 + 4 <= start + n) {  // whole and aligned: 128-bit loads
        size_t j = g0 - start;
        LabF4 mv = *(const LabF4*)(m + j), hv = *(const LabF4*)(h + j);
        LabX4 out;
        for (int l = 0; l < 4; l++) out.v[l] = f2x(ivon_sample_elem(mv.v[l], ivon_noise_elem(e[l], hv.v[l], essf, wdf)));
        *(LabX4*)(theta + j) = out;
        return;
    }
    for (int l = 0; l < 4; l++) {
        size_t g = g0 + l;
        if (g < start || g >= start + n) continue;
        size_t j = g - start;
        theta[j] = f2x(ivon_sample_elem(m[j], ivon_noise_elem(e[l], h[j], essf, wdf)));
    }
}

__global__ void ivon_sample_kernel2(floatX* theta, const float* m, const float* h, size_t n, size_t start, float essf,
                                    float wdf, NoiseKey key) {
    size_t q = (start >> 2) + (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= (start + n + 3) >> 2) return;
    ivon_sample_quad(theta, m, h, n, start, q, essf, wdf, key);
}

__global__ void ivon_sample_kernel3(floatX* theta, const float* m, const float* h, size_t n, size_t start, float essf,
                                    float wdf, NoiseKey key) {
    size_t q1 = (start + n + 3) >> 2;
    for (size_t q = (start >> 2) + (size_t)blockIdx.x * blockDim.x + threadIdx.x; q < q1; q += (size_t)gridDim.x * blockDim.x)
        ivon_sample_quad(theta, m, h, n, start, q, essf, wdf, key);
}

// ----------------------------------------------------------------------------
// launchers

static size_t quads(size_t n, size_t start) { return ((start + n + 3) >> 2) - (start >> 2); }

static void ivon_sample_launch(int version, int block, floatX* theta, const float* m, const float* h, size_t n,
                               size_t start, float essf, float wdf, NoiseKey key) {
    if (version == 1) ivon_sample_kernel1<<<ceil_div(n, block), block>>>(theta, m, h, n, start, essf, wdf, key);
    if (version == 2) ivon_sample_kernel2<<<ceil_div(quads(n, start), block), block>>>(theta, m, h, n, start, essf, wdf, key);
    if (version == 3)
        ivon_sample_kernel3<<<lab_persistent_grid(block, quads(n, start)), block>>>(theta, m, h, n, start, essf, wdf, key);
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
        run_case(&a, 4099, 5000000000ull);         // a flat index past 2^32
        run_case(&a, 3, 6);                        // inside one Philox block
    }
    return lab_finish(NAME);
}
