/*
AdamW update (the baseline of the bandwidth comparison): adamw_elem of llmc/optim_elem.h on the fp32 master weights
and moments, g = grad grad_scale from the floatX gradient, the floatX working weights written from the new master
(as train_gpt2.cu's adamw_kernel).
CPU reference: adamw_update (llmc/optim.h). Outputs master, m, v (fp32): bit-identical; params (floatX): the RNE
rounding of the reference's fp32 master, bit-identical.
Bytes per element: master, m, v 4 read + 4 written each, grad sizeof(floatX) read, params sizeof(floatX) written
(28 in bf16).

nvcc: make -C dev/cuda adamw;  ./adamw validate;  ./adamw bench [-k 2] [-b 256]
version 1: one element per thread (train_gpt2.cu's adamw_kernel)
version 2: 4 elements per thread, 128-bit loads and stores of the fp32 arrays, 4 x floatX loads and stores
version 3: version 2 over a persistent grid (grid-stride loop)
version 4: 8 elements per thread, 2 x 128-bit accesses of the fp32 arrays, 128-bit loads and stores of 8 bf16
*/
#include "common.h"

#define NAME "adamw"
#define NVERSIONS 4

typedef struct {
    float lr, beta1, beta2, bc1, bc2, eps, wd, grad_scale;
} AdamArgs;

// ----------------------------------------------------------------------------
// kernels

__global__ void adamw_kernel1(float* master, floatX* params, const floatX* grads, float* m, float* v, size_t n,
                              AdamArgs p) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    adamw_elem(&master[i], &m[i], &v[i], __fmul_rn(x2f(grads[i]), p.grad_scale), p.lr, p.beta1, p.beta2, p.bc1, p.bc2,
               p.eps, p.wd);
    params[i] = f2x(master[i]);
}

// elements W j .. W j + W-1 (those below n): vector accesses when all W are there
template <int W>
__device__ inline void adamw_group(float* master, floatX* params, const floatX* grads, float* m, float* v, size_t n,
                                   size_t j, const AdamArgs& p) {
    size_t i0 = j * W;
    if (i0 + W <= n) {
        LabF<W> wv = *(LabF<W>*)(master + i0), mv = *(LabF<W>*)(m + i0), vv = *(LabF<W>*)(v + i0);
        LabX<W> gv = *(const LabX<W>*)(grads + i0), pv;
        for (int l = 0; l < W; l++) {
            adamw_elem(&wv.v[l], &mv.v[l], &vv.v[l], __fmul_rn(x2f(gv.v[l]), p.grad_scale), p.lr, p.beta1, p.beta2,
                       p.bc1, p.bc2, p.eps, p.wd);
            pv.v[l] = f2x(wv.v[l]);
        }
        *(LabF<W>*)(master + i0) = wv;
        *(LabF<W>*)(m + i0) = mv;
        *(LabF<W>*)(v + i0) = vv;
        *(LabX<W>*)(params + i0) = pv;
        return;
    }
    for (size_t i = i0; i < n; i++) {
        adamw_elem(&master[i], &m[i], &v[i], __fmul_rn(x2f(grads[i]), p.grad_scale), p.lr, p.beta1, p.beta2, p.bc1,
                   p.bc2, p.eps, p.wd);
        params[i] = f2x(master[i]);
    }
}

// one group per thread
template <int W>
__global__ void adamw_kernel_vec(float* master, floatX* params, const floatX* grads, float* m, float* v, size_t n,
                                 AdamArgs p) {
    size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j < (n + W - 1) / W) adamw_group<W>(master, params, grads, m, v, n, j, p);
}

// persistent grid, grid-stride over the groups
template <int W>
__global__ void adamw_kernel_persistent(float* master, floatX* params, const floatX* grads, float* m, float* v, size_t n,
                                        AdamArgs p) {
    for (size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x; j < (n + W - 1) / W; j += (size_t)gridDim.x * blockDim.x)
        adamw_group<W>(master, params, grads, m, v, n, j, p);
}

static void adamw_launch(int version, int block, float* master, floatX* params, const floatX* grads, float* m, float* v,
                         size_t n, const AdamArgs& p) {
    if (version == 1) adamw_kernel1<<<ceil_div(n, block), block>>>(master, params, grads, m, v, n, p);
    if (version == 2) adamw_kernel_vec<4><<<ceil_div((n + 3) / 4, block), block>>>(master, params, grads, m, v, n, p);
    if (version == 3)
        adamw_kernel_persistent<4><<<lab_persistent_grid(block, (n + 3) / 4), block>>>(master, params, grads, m, v, n, p);
    if (version == 4) adamw_kernel_vec<8><<<ceil_div((n + 7) / 8, block), block>>>(master, params, grads, m, v, n, p);
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------

static void run_case(const LabArgs* a, size_t n, int t) {
    float* in[3];  // master, m, v
    float* want[3];
    const float lo[3] = {-0.05f, -1e-3f, 0.0f}, hi[3] = {0.05f, 1e-3f, 1e-5f};
    for (int i = 0; i < 3; i++) {
        in[i] = lab_host_f32(n);
        lab_fill(in[i], n, lo[i], hi[i], 30 + i);
        want[i] = lab_host_f32(n);
        memcpy(want[i], in[i], n * sizeof(float));
    }
    float* grad = lab_host_f32(n);
    floatX* d_grad = lab_device<floatX>(n);
    lab_fill(grad, n, -0.01f, 0.01f, 33);
    lab_round_upload(grad, d_grad, n);  // the reference sees the floatX gradient
    const float lr = 6e-4f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, wd = 0.1f, grad_scale = 0.5f;
    adamw_update(want[0], grad, want[1], want[2], n, lr, beta1, beta2, eps, wd, grad_scale, t);
    // the bias corrections as adamw_update forms them
    AdamArgs p = {lr, beta1, beta2, 1.0f - powf(beta1, (float)t), 1.0f - powf(beta2, (float)t), eps, wd, grad_scale};

    float* d[3];
    for (int i = 0; i < 3; i++) d[i] = lab_device<float>(n);
    floatX* d_params = lab_device<floatX>(n);
    char what[64];
    snprintf(what, sizeof(what), "n %zu t %d", n, t);
    lab_run(a, NAME, NVERSIONS, n, what, 6.0 * sizeof(float) + 2.0 * sizeof(floatX),
            [&] {
                for (int i = 0; i < 3; i++) lab_upload(d[i], in[i], n);
                cudaCheck(cudaMemset(d_params, 0xff, n * sizeof(floatX)));
            },
            [&](int v, int b) { adamw_launch(v, b, d[0], d_params, d_grad, d[1], d[2], n, p); },
            [&](const char* label) {
                const char* names[3] = {"master", "m", "v"};
                for (int i = 0; i < 3; i++) lab_check_f32(label, names[i], d[i], want[i], n, a->perturb);
                lab_check_x(label, "params", d_params, want[0], n, a->perturb);
            });
    for (int i = 0; i < 3; i++) {
        cudaCheck(cudaFree(d[i]));
        free(in[i]);
        free(want[i]);
    }
    cudaCheck(cudaFree(d_grad));
    cudaCheck(cudaFree(d_params));
    free(grad);
}

int main(int argc, char** argv) {
    LabArgs a = lab_parse_args(argc, argv, NAME, NVERSIONS);
    run_case(&a, a.n, 3);
    if (!a.bench) run_case(&a, 13, 1);  // tails of 1 (v2, v3) and 5 (v4) elements, t = 1
    return lab_finish(NAME);
}
