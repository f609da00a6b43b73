/*
IVON update pass (the Newton step of §2.9 with x = acc_g, f = (acc_ng (h + wdf)) essf) and the new weights
theta = m in the same pass, with the step's statistics (coordinates clipped, sum |dm|) as per-block partial sums.
CPU reference: ivon_update_to (llmc/optim.h). Outputs m, g, h (fp32): bit-identical; theta (floatX): the RNE
rounding of the reference's fp32 theta, bit-identical; clipped: exact; sum |dm| (double, summed in another
order): relative 1e-6.
Bytes per element: m, g, h 4 read + 4 written each, acc_g, acc_ng 4 read, theta sizeof(floatX) written (34 in bf16).

nvcc: make -C dev/cuda ivon_update;  ./ivon_update validate;  ./ivon_update bench [-k 2] [-b 256]
version 1: one element per thread
version 2: 4 elements per thread, 128-bit loads and stores of the fp32 arrays, one 4 x floatX store
version 3: version 2 over a persistent grid (grid-stride loop)
version 4: 8 elements per thread, 2 x 128-bit accesses of the fp32 arrays, one 128-bit store of 8 bf16
*/
#include "common.h"

#define NAME "ivon_update"
#define NVERSIONS 4

// ----------------------------------------------------------------------------
// kernels

__global__ void ivon_update_kernel1(floatX* theta, float* m, float* g, float* h, const float* acc_g,
                                    const float* acc_ng, size_t n, IvonScalars s, unsigned* part_c, double* part_s) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    unsigned clipped = 0;
    double sum_dm = 0.0;
    if (i < n) {
        float f = ivon_price_elem(acc_ng[i], h[i], s.essf, s.wdf);
        int c, bad;
        sum_dm = ivon_newton_elem(&m[i], &g[i], &h[i], acc_g[i], f, 0.0f, IVON_PROX_NONE, s, &c, &bad);
        clipped = c;
        theta[i] = f2x(m[i]);
    }
    lab_block_stats(clipped, sum_dm, part_c, part_s);
}

// elements W j .. W j + W-1 (those below n): vector accesses when all W are there
template <int W>
__device__ inline void ivon_update_group(floatX* theta, float* m, float* g, float* h, const float* acc_g,
                                         const float* acc_ng, size_t n, size_t j, const IvonScalars& s,
                                         unsigned* clipped, double* sum_dm) {
    size_t i0 = j * W;
    if (i0 + W <= n) {
        LabF<W> mv = *(LabF<W>*)(m + i0), gv = *(LabF<W>*)(g + i0), hv = *(LabF<W>*)(h + i0);
        LabF<W> xv = *(const LabF<W>*)(acc_g + i0), nv = *(const LabF<W>*)(acc_ng + i0);
        LabX<W> tv;
        for (int l = 0; l < W; l++) {
            float f = ivon_price_elem(nv.v[l], hv.v[l], s.essf, s.wdf);
            int c, bad;
            *sum_dm += ivon_newton_elem(&mv.v[l], &gv.v[l], &hv.v[l], xv.v[l], f, 0.0f, IVON_PROX_NONE, s, &c, &bad);
            *clipped += c;
            tv.v[l] = f2x(mv.v[l]);
        }
        *(LabF<W>*)(m + i0) = mv;
        *(LabF<W>*)(g + i0) = gv;
        *(LabF<W>*)(h + i0) = hv;
        *(LabX<W>*)(theta + i0) = tv;
        return;
    }
    for (size_t i = i0; i < n; i++) {
        float f = ivon_price_elem(acc_ng[i], h[i], s.essf, s.wdf);
        int c, bad;
        *sum_dm += ivon_newton_elem(&m[i], &g[i], &h[i], acc_g[i], f, 0.0f, IVON_PROX_NONE, s, &c, &bad);
        *clipped += c;
        theta[i] = f2x(m[i]);
    }
}

// one group per thread
template <int W>
__global__ void ivon_update_kernel_vec(floatX* theta, float* m, float* g, float* h, const float* acc_g,
                                       const float* acc_ng, size_t n, IvonScalars s, unsigned* part_c, double* part_s) {
    size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    unsigned clipped = 0;
    double sum_dm = 0.0;
    if (j < (n + W - 1) / W) ivon_update_group<W>(theta, m, g, h, acc_g, acc_ng, n, j, s, &clipped, &sum_dm);
    lab_block_stats(clipped, sum_dm, part_c, part_s);
}

// persistent grid, grid-stride over the groups
template <int W>
__global__ void ivon_update_kernel_persistent(floatX* theta, float* m, float* g, float* h, const float* acc_g,
                                              const float* acc_ng, size_t n, IvonScalars s, unsigned* part_c,
                                              double* part_s) {
    unsigned clipped = 0;
    double sum_dm = 0.0;
    for (size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x; j < (n + W - 1) / W; j += (size_t)gridDim.x * blockDim.x)
        ivon_update_group<W>(theta, m, g, h, acc_g, acc_ng, n, j, s, &clipped, &sum_dm);
    lab_block_stats(clipped, sum_dm, part_c, part_s);
}

// ----------------------------------------------------------------------------
// launcher: returns the number of blocks (= of partial statistics)

static int ivon_update_launch(int version, int block, floatX* theta, float* m, float* g, float* h, const float* acc_g,
                              const float* acc_ng, size_t n, const IvonScalars& s, unsigned* part_c, double* part_s) {
    int grid = version == 1 ? ceil_div(n, block)
             : version == 2 ? ceil_div((n + 3) / 4, block)
             : version == 3 ? lab_persistent_grid(block, (n + 3) / 4) : ceil_div((n + 7) / 8, block);
    if (version == 1) ivon_update_kernel1<<<grid, block>>>(theta, m, g, h, acc_g, acc_ng, n, s, part_c, part_s);
    if (version == 2) ivon_update_kernel_vec<4><<<grid, block>>>(theta, m, g, h, acc_g, acc_ng, n, s, part_c, part_s);
    if (version == 3)
        ivon_update_kernel_persistent<4><<<grid, block>>>(theta, m, g, h, acc_g, acc_ng, n, s, part_c, part_s);
    if (version == 4) ivon_update_kernel_vec<8><<<grid, block>>>(theta, m, g, h, acc_g, acc_ng, n, s, part_c, part_s);
    cudaCheckLaunch();
    return grid;
}

// ----------------------------------------------------------------------------

static void run_case(const LabArgs* a, size_t n, int t) {
    // host inputs: m, g, h, acc_g, acc_ng (n each); the reference updates copies of m, g, h
    float* in[5];
    float* want[3];
    const float lo[5] = {-0.05f, -1e-6f, 1e-4f, -2e-7f, 0.0f}, hi[5] = {0.05f, 1e-6f, 1e-2f, 2e-7f, 2e-5f};
    for (int i = 0; i < 5; i++) {
        in[i] = lab_host_f32(n);
        lab_fill(in[i], n, lo[i], hi[i], 10 + i);
    }
    for (int i = 0; i < 3; i++) {
        want[i] = lab_host_f32(n);
        memcpy(want[i], in[i], n * sizeof(float));
    }
    float* want_theta = lab_host_f32(n);
    OptimizerConfig oc;
    optimizer_config_defaults(&oc, OPT_IVON);
    oc.ess = 1e5;
    IvonScalars s = ivon_scalars(&oc, 3e-3, oc.prior_2d, t);
    IvonUpdateStats st = ivon_update_to(want_theta, want[0], want[1], want[2], in[3], in[4], n, &s);

    float* d[5];
    for (int i = 0; i < 5; i++) d[i] = lab_device<float>(n);
    floatX* d_theta = lab_device<floatX>(n);
    size_t max_grid = (n + 31) / 32;
    unsigned* part_c = lab_device<unsigned>(max_grid);
    double* part_s = lab_device<double>(max_grid);
    int grid = 0;
    char what[64];
    snprintf(what, sizeof(what), "n %zu t %d", n, t);
    lab_run(a, NAME, NVERSIONS, n, what, 8.0 * sizeof(float) + sizeof(floatX),
            [&] {
                for (int i = 0; i < 5; i++) lab_upload(d[i], in[i], n);
                cudaCheck(cudaMemset(d_theta, 0xff, n * sizeof(floatX)));
            },
            [&](int v, int b) { grid = ivon_update_launch(v, b, d_theta, d[0], d[1], d[2], d[3], d[4], n, s, part_c, part_s); },
            [&](const char* label) {
                const char* names[3] = {"m", "g", "h"};
                for (int i = 0; i < 3; i++) lab_check_f32(label, names[i], d[i], want[i], n, a->perturb);
                lab_check_x(label, "theta", d_theta, want_theta, n, a->perturb);
                size_t clipped;
                double sum_dm;
                lab_sum_stats(part_c, part_s, grid, &clipped, &sum_dm);
                lab_check_scalar(label, "clipped", (double)clipped, (double)st.clipped, 0.0, a->perturb);
                lab_check_scalar(label, "sum|dm|", sum_dm, st.sum_abs_dm, 1e-6, a->perturb);
            });
    for (int i = 0; i < 5; i++) {
        cudaCheck(cudaFree(d[i]));
        free(in[i]);
    }
    for (int i = 0; i < 3; i++) free(want[i]);
    cudaCheck(cudaFree(d_theta));
    cudaCheck(cudaFree(part_c));
    cudaCheck(cudaFree(part_s));
    free(want_theta);
}

int main(int argc, char** argv) {
    LabArgs a = lab_parse_args(argc, argv, NAME, NVERSIONS);
    run_case(&a, a.n, 3);
    if (!a.bench) run_case(&a, 13, 1);  // tails of 1 (v2, v3) and 5 (v4) elements, debias at t = 1
    return lab_finish(NAME);
}
