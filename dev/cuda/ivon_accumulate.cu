/*
IVON accumulate pass of Monte-Carlo sample k (1-based): x = grad clip_scale, y = n x with the noise n of the
sample pass regenerated from the same key and h; Welford means acc_g (of x) and acc_ng (of y).
CPU reference: ivon_accumulate (llmc/optim.h). Outputs acc_g, acc_ng (fp32): bit-identical. grad is floatX.
Bytes per element (k > 1): grad sizeof(floatX) + h 4 read, acc_g and acc_ng 4 read + 4 written each (22 in bf16).

nvcc: make -C dev/cuda ivon_accumulate;  ./ivon_accumulate validate;  ./ivon_accumulate bench [-k 2] [-b 256]
version 1: one element per thread; each thread computes the Philox block of its index (4 normals, 1 used)
version 2: one Philox block per thread: 4 elements, 128-bit loads/stores of h, acc_g, acc_ng, one 4 x floatX load
version 3: version 2 over a persistent grid (grid-stride loop)
version 4: two Philox blocks per thread: 8 elements, 2 x 128-bit accesses of the fp32 arrays, one 128-bit load of
           8 bf16 gradients
*/
#include "common.h"

#define NAME "ivon_accumulate"
#define NVERSIONS 4

// the pass's inputs other than the arrays
typedef struct {
    float clip_scale, essf, wdf;
    int k;
    NoiseKey key;
} AccArgs;

// ----------------------------------------------------------------------------
// kernels

__global__ void ivon_accumulate_kernel1(float* acc_g, float* acc_ng, const floatX* grad, const float* h, size_t n,
                                        size_t start, AccArgs p) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float nz = ivon_noise_elem(noise_key_normal(p.key, start + i), h[i], p.essf, p.wdf);
    ivon_accumulate_elem(&acc_g[i], &acc_ng[i], x2f(grad[i]), p.clip_scale, nz, p.k, (float)p.k);
}

// the elements of group q (flat indices W q .. W q + W-1, W/4 Philox blocks) that lie in the slice [start, start + n)
template <int W>
__device__ inline void ivon_accumulate_group(float* acc_g, float* acc_ng, const floatX* grad, const float* h, size_t n,
                                             size_t start, size_t q, const AccArgs& p) {
    float e[W];
    for (int b = 0; b < W / 4; b++) noise_key_normal4(p.key, q * (W / 4) + b, e + 4 * b);
    float kf = (float)p.k;
    size_t g0 = q * W;
    if (start % W == 0 && g0 + W <= start + n) {  // whole and aligned: vector loads and stores
        size_t j = g0 - start;
        LabF<W> hv = *(const LabF<W>*)(h + j), ag = *(const LabF<W>*)(acc_g + j), an = *(const LabF<W>*)(acc_ng + j);
        LabX<W> gv = *(const LabX<W>*)(grad + j);
        for (int l = 0; l < W; l++) {
            float nz = ivon_noise_elem(e[l], hv.v[l], p.essf, p.wdf);
            ivon_accumulate_elem(&ag.v[l], &an.v[l], x2f(gv.v[l]), p.clip_scale, nz, p.k, kf);
        }
        *(LabF<W>*)(acc_g + j) = ag;
        *(LabF<W>*)(acc_ng + j) = an;
        return;
    }
    for (int l = 0; l < W; l++) {
        size_t g = g0 + l;
        if (g < start || g >= start + n) continue;
        size_t j = g - start;
        float nz = ivon_noise_elem(e[l], h[j], p.essf, p.wdf);
        ivon_accumulate_elem(&acc_g[j], &acc_ng[j], x2f(grad[j]), p.clip_scale, nz, p.k, kf);
    }
}

// one group per thread
template <int W>
__global__ void ivon_accumulate_kernel_vec(float* acc_g, float* acc_ng, const floatX* grad, const float* h, size_t n,
                                           size_t start, AccArgs p) {
    size_t q = lab_group_lo<W>(start) + (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= lab_group_hi<W>(n, start)) return;
    ivon_accumulate_group<W>(acc_g, acc_ng, grad, h, n, start, q, p);
}

// persistent grid, grid-stride over the groups
template <int W>
__global__ void ivon_accumulate_kernel_persistent(float* acc_g, float* acc_ng, const floatX* grad, const float* h,
                                                  size_t n, size_t start, AccArgs p) {
    size_t q1 = lab_group_hi<W>(n, start);
    for (size_t q = lab_group_lo<W>(start) + (size_t)blockIdx.x * blockDim.x + threadIdx.x; q < q1;
         q += (size_t)gridDim.x * blockDim.x)
        ivon_accumulate_group<W>(acc_g, acc_ng, grad, h, n, start, q, p);
}

// ----------------------------------------------------------------------------
// launcher

static void ivon_accumulate_launch(int version, int block, float* acc_g, float* acc_ng, const floatX* grad,
                                   const float* h, size_t n, size_t start, const AccArgs& p) {
    if (version == 1) ivon_accumulate_kernel1<<<ceil_div(n, block), block>>>(acc_g, acc_ng, grad, h, n, start, p);
    if (version == 2)
        ivon_accumulate_kernel_vec<4><<<ceil_div(lab_groups<4>(n, start), block), block>>>(acc_g, acc_ng, grad, h, n, start, p);
    if (version == 3)
        ivon_accumulate_kernel_persistent<4><<<lab_persistent_grid(block, lab_groups<4>(n, start)), block>>>(
            acc_g, acc_ng, grad, h, n, start, p);
    if (version == 4)
        ivon_accumulate_kernel_vec<8><<<ceil_div(lab_groups<8>(n, start), block), block>>>(acc_g, acc_ng, grad, h, n, start, p);
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------

// one slice [start, start + n) and sample k: the reference, then the versions (lab_run)
static void run_case(const LabArgs* a, size_t n, size_t start, int k) {
    float *grad = lab_host_f32(n), *h = lab_host_f32(n), *ag0 = lab_host_f32(n), *an0 = lab_host_f32(n);
    float *want_g = lab_host_f32(n), *want_ng = lab_host_f32(n);
    floatX* d_grad = lab_device<floatX>(n);
    lab_fill(grad, n, -0.01f, 0.01f, 3);
    lab_round_upload(grad, d_grad, n);  // the reference sees the floatX gradient
    lab_fill(h, n, 1e-4f, 1e-2f, 2);
    lab_fill(ag0, n, -0.01f, 0.01f, 4);
    lab_fill(an0, n, -1e-5f, 1e-5f, 5);
    AccArgs p = {0.75f, 1e5f, 1e-6f, k, noise_key(1337, 0, 7, (uint32_t)k - 1, NOISE_STREAM_SAMPLE)};
    IvonNoiseKey rk = {1337, 0, 7, (uint32_t)k - 1, NOISE_STREAM_SAMPLE, 0};
    memcpy(want_g, ag0, n * sizeof(float));
    memcpy(want_ng, an0, n * sizeof(float));
    ivon_accumulate(want_g, want_ng, grad, p.clip_scale, h, n, start, p.essf, p.wdf, &rk, k);

    float *d_h = lab_device<float>(n), *d_ag = lab_device<float>(n), *d_an = lab_device<float>(n);
    lab_upload(d_h, h, n);
    char what[64];
    snprintf(what, sizeof(what), "n %zu start %zu k %d", n, start, k);
    lab_run(a, NAME, NVERSIONS, n, what, sizeof(floatX) + 5.0 * sizeof(float),
            [&] {
                lab_upload(d_ag, ag0, n);
                lab_upload(d_an, an0, n);
            },
            [&](int v, int b) { ivon_accumulate_launch(v, b, d_ag, d_an, d_grad, d_h, n, start, p); },
            [&](const char* label) {
                lab_check_f32(label, "acc_g", d_ag, want_g, n, a->perturb);
                lab_check_f32(label, "acc_ng", d_an, want_ng, n, a->perturb);
            });
    cudaCheck(cudaFree(d_grad));
    cudaCheck(cudaFree(d_h));
    cudaCheck(cudaFree(d_ag));
    cudaCheck(cudaFree(d_an));
    free(grad);
    free(h);
    free(ag0);
    free(an0);
    free(want_g);
    free(want_ng);
}

int main(int argc, char** argv) {
    LabArgs a = lab_parse_args(argc, argv, NAME, NVERSIONS);
    if (a.bench) {
        run_case(&a, a.n, 0, 2);
    } else {
        run_case(&a, a.n, 0, 1);                   // first sample: acc = x
        run_case(&a, a.n, 0, 3);
        run_case(&a, a.n, 4003, 2);                // unaligned start: partial blocks at both ends
        run_case(&a, 4099, 5000000004ull, 2);      // past 2^32; 4 mod 8: v4 takes the scalar path
    }
    return lab_finish(NAME);
}
