/*
IVON-PoCo update pass (§6.3): the variance-reduced estimates x, f and the proximal term p of poco_vr_elem, then
the Newton step of IVON, the new weights theta = m and the statistics, in one pass.
CPU reference: poco_update_to (llmc/optim.h), for each prox placement (none, next to the decay, in the momentum).
Outputs m, g, h (fp32): bit-identical; theta (floatX): the RNE rounding of the reference's fp32 theta,
bit-identical; clipped: exact; sum |dm| (double, summed in another order): relative 1e-6.
Bytes per element: m, g, h 4 read + 4 written each; acc_g, acc_ng and the 6 outer arrays (acc_g_out, acc_ng_out,
m_out, h_out, gbar_out, hbar_out) 4 read each; theta sizeof(floatX) written (58 in bf16).

nvcc: make -C dev/cuda poco_update;  ./poco_update validate;  ./poco_update bench [-k 2] [-b 256]
version 1: one element per thread
version 2: 4 elements per thread, 128-bit loads and stores of the fp32 arrays, one 4 x floatX store
version 3: version 2 over a persistent grid (grid-stride loop)
version 4: 8 elements per thread, 2 x 128-bit accesses of the fp32 arrays, one 128-bit store of 8 bf16
*/
#include "common.h"

#define NAME "poco_update"
#define NVERSIONS 4

// ----------------------------------------------------------------------------
// kernels (ps: PocoSlice of llmc/optim.h with device pointers, by value)

__device__ inline float poco_elem(float* m, float* g, float* h, float acc_g, float acc_ng, float ag_out, float an_out,
                                  float m_out, float h_out, float gbar, float hbar, const PocoSlice& ps,
                                  const IvonScalars& s, unsigned* clipped) {
    float x, f, p;
    poco_vr_elem(acc_g, acc_ng, *h, ag_out, an_out, h_out, gbar, hbar, *m, m_out, ps.gamma, s.essf, s.wdf, &x, &f, &p);
    int c, bad;
    float adm = ivon_newton_elem(m, g, h, x, f, p, ps.prox_mode, s, &c, &bad);
    *clipped += c;
    return adm;
}

__global__ void poco_update_kernel1(floatX* theta, float* m, float* g, float* h, const float* acc_g, const float* acc_ng,
                                    PocoSlice ps, size_t n, IvonScalars s, unsigned* part_c, double* part_s) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    unsigned clipped = 0;
    double sum_dm = 0.0;
    if (i < n) {
        sum_dm = poco_elem(&m[i], &g[i], &h[i], acc_g[i], acc_ng[i], ps.acc_g_out[i], ps.acc_ng_out[i], ps.m_out[i],
                           ps.h_out[i], ps.gbar_out[i], ps.hbar_out[i], ps, s, &clipped);
        theta[i] = f2x(m[i]);
    }
    lab_block_stats(clipped, sum_dm, part_c, part_s);
}

// elements W j .. W j + W-1 (those below n): vector accesses when all W are there
template <int W>
__device__ inline void poco_update_group(floatX* theta, float* m, float* g, float* h, const float* acc_g,
                                         const float* acc_ng, const PocoSlice& ps, size_t n, size_t j,
                                         const IvonScalars& s, unsigned* clipped, double* sum_dm) {
    size_t i0 = j * W;
    if (i0 + W <= n) {
        LabF<W> mv = *(LabF<W>*)(m + i0), gv = *(LabF<W>*)(g + i0), hv = *(LabF<W>*)(h + i0);
        LabF<W> xv = *(const LabF<W>*)(acc_g + i0), nv = *(const LabF<W>*)(acc_ng + i0);
        LabF<W> xo = *(const LabF<W>*)(ps.acc_g_out + i0), no = *(const LabF<W>*)(ps.acc_ng_out + i0);
        LabF<W> mo = *(const LabF<W>*)(ps.m_out + i0), ho = *(const LabF<W>*)(ps.h_out + i0);
        LabF<W> gb = *(const LabF<W>*)(ps.gbar_out + i0), hb = *(const LabF<W>*)(ps.hbar_out + i0);
        LabX<W> tv;
        for (int l = 0; l < W; l++) {
            *sum_dm += poco_elem(&mv.v[l], &gv.v[l], &hv.v[l], xv.v[l], nv.v[l], xo.v[l], no.v[l], mo.v[l], ho.v[l],
                                 gb.v[l], hb.v[l], ps, s, clipped);
            tv.v[l] = f2x(mv.v[l]);
        }
        *(LabF<W>*)(m + i0) = mv;
        *(LabF<W>*)(g + i0) = gv;
        *(LabF<W>*)(h + i0) = hv;
        *(LabX<W>*)(theta + i0) = tv;
        return;
    }
    for (size_t i = i0; i < n; i++) {
        *sum_dm += poco_elem(&m[i], &g[i], &h[i], acc_g[i], acc_ng[i], ps.acc_g_out[i], ps.acc_ng_out[i], ps.m_out[i],
                             ps.h_out[i], ps.gbar_out[i], ps.hbar_out[i], ps, s, clipped);
        theta[i] = f2x(m[i]);
    }
}

// one group per thread
template <int W>
__global__ void poco_update_kernel_vec(floatX* theta, float* m, float* g, float* h, const float* acc_g,
                                       const float* acc_ng, PocoSlice ps, size_t n, IvonScalars s, unsigned* part_c,
                                       double* part_s) {
    size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    unsigned clipped = 0;
    double sum_dm = 0.0;
    if (j < (n + W - 1) / W) poco_update_group<W>(theta, m, g, h, acc_g, acc_ng, ps, n, j, s, &clipped, &sum_dm);
    lab_block_stats(clipped, sum_dm, part_c, part_s);
}

// persistent grid, grid-stride over the groups
template <int W>
__global__ void poco_update_kernel_persistent(floatX* theta, float* m, float* g, float* h, const float* acc_g,
                                              const float* acc_ng, PocoSlice ps, size_t n, IvonScalars s,
                                              unsigned* part_c, double* part_s) {
    unsigned clipped = 0;
    double sum_dm = 0.0;
    for (size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x; j < (n + W - 1) / W; j += (size_t)gridDim.x * blockDim.x)
        poco_update_group<W>(theta, m, g, h, acc_g, acc_ng, ps, n, j, s, &clipped, &sum_dm);
    lab_block_stats(clipped, sum_dm, part_c, part_s);
}

// ----------------------------------------------------------------------------
// launcher: returns the number of blocks (= of partial statistics)

static int poco_update_launch(int version, int block, floatX* theta, float* m, float* g, float* h, const float* acc_g,
                              const float* acc_ng, const PocoSlice& ps, size_t n, const IvonScalars& s,
                              unsigned* part_c, double* part_s) {
    int grid = version == 1 ? ceil_div(n, block)
             : version == 2 ? ceil_div((n + 3) / 4, block)
             : version == 3 ? lab_persistent_grid(block, (n + 3) / 4) : ceil_div((n + 7) / 8, block);
    if (version == 1) poco_update_kernel1<<<grid, block>>>(theta, m, g, h, acc_g, acc_ng, ps, n, s, part_c, part_s);
    if (version == 2) poco_update_kernel_vec<4><<<grid, block>>>(theta, m, g, h, acc_g, acc_ng, ps, n, s, part_c, part_s);
    if (version == 3)
        poco_update_kernel_persistent<4><<<grid, block>>>(theta, m, g, h, acc_g, acc_ng, ps, n, s, part_c, part_s);
    if (version == 4) poco_update_kernel_vec<8><<<grid, block>>>(theta, m, g, h, acc_g, acc_ng, ps, n, s, part_c, part_s);
    cudaCheckLaunch();
    return grid;
}

// ----------------------------------------------------------------------------

#define NIN 11  // m, g, h, acc_g, acc_ng, acc_g_out, acc_ng_out, m_out, h_out, gbar_out, hbar_out

static PocoSlice slice_of(float* const* x, float gamma, int prox_mode) {
    PocoSlice ps = {x[5], x[6], x[7], x[8], x[9], x[10], gamma, prox_mode};
    return ps;
}

static void run_case(const LabArgs* a, size_t n, int t, int prox_mode) {
    float* in[NIN];
    float* want[3];
    const float lo[NIN] = {-0.05f, -1e-6f, 1e-4f, -2e-7f, 0.0f, -2e-7f, 0.0f, -0.05f, 1e-4f, -2e-7f, 1e-4f};
    const float hi[NIN] = {0.05f, 1e-6f, 1e-2f, 2e-7f, 2e-5f, 2e-7f, 2e-5f, 0.05f, 1e-2f, 2e-7f, 1e-2f};
    for (int i = 0; i < NIN; i++) {
        in[i] = lab_host_f32(n);
        lab_fill(in[i], n, lo[i], hi[i], 20 + i);
    }
    for (int i = 0; i < 3; i++) {
        want[i] = lab_host_f32(n);
        memcpy(want[i], in[i], n * sizeof(float));
    }
    float* want_theta = lab_host_f32(n);
    OptimizerConfig oc;
    optimizer_config_defaults(&oc, OPT_POCO);
    oc.ess = 1e5;
    IvonScalars s = ivon_scalars(&oc, 3e-3, oc.prior_2d, t);
    PocoSlice hps = slice_of(in, 0.5f, prox_mode);
    IvonUpdateStats st = poco_update_to(want_theta, want[0], want[1], want[2], in[3], in[4], &hps, n, &s);

    float* d[NIN];
    for (int i = 0; i < NIN; i++) d[i] = lab_device<float>(n);
    PocoSlice ps = slice_of(d, 0.5f, prox_mode);
    floatX* d_theta = lab_device<floatX>(n);
    size_t max_grid = (n + 31) / 32;
    unsigned* part_c = lab_device<unsigned>(max_grid);
    double* part_s = lab_device<double>(max_grid);
    int grid = 0;
    char what[64];
    snprintf(what, sizeof(what), "n %zu t %d prox %d", n, t, prox_mode);
    lab_run(a, NAME, NVERSIONS, n, what, 14.0 * sizeof(float) + sizeof(floatX),
            [&] {
                for (int i = 0; i < NIN; i++) lab_upload(d[i], in[i], n);
                cudaCheck(cudaMemset(d_theta, 0xff, n * sizeof(floatX)));
            },
            [&](int v, int b) {
                grid = poco_update_launch(v, b, d_theta, d[0], d[1], d[2], d[3], d[4], ps, n, s, part_c, part_s);
            },
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
    for (int i = 0; i < NIN; i++) {
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
    if (a.bench) {
        run_case(&a, a.n, 3, IVON_PROX_NEXT_TO_DECAY);
    } else {
        run_case(&a, a.n, 3, IVON_PROX_NONE);
        run_case(&a, a.n, 3, IVON_PROX_NEXT_TO_DECAY);
        run_case(&a, a.n, 3, IVON_PROX_IN_MOMENTUM);
        run_case(&a, 13, 1, IVON_PROX_NEXT_TO_DECAY);  // tails of 1 (v2, v3) and 5 (v4) elements, debias at t = 1
    }
    return lab_finish(NAME);
}
