// GPT-2 training on the CPU in fp32: hand-written forward and backward kernels for every layer,
// OpenMP-parallel (also builds without OpenMP), packed GEMM for the linear layers, AdamW, IVON, IVON-PoCo.
// Built with -DUSE_MPI (make train_gpt2mpi): data parallel over MPI processes (llmc/dist.h).
#define _POSIX_C_SOURCE 200809L
#if defined(USE_MPI) && !defined(LLMC_FATAL_HOOK)
#define LLMC_FATAL_HOOK  // an error on one process ends all of them (MPI_Abort), not only this one
#define TRAIN_MPI_ABORT_HOOK
#endif
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "llmc/utils.h"
#include "llmc/model.h"
#include "llmc/model_init.h"
#include "llmc/gemm_cpu.h"
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
#include "llmc/mpi_dist.h"

#define LN_EPS 1e-5f
#define GELU_SCALE 0.7978845608028654f  // sqrt(2/pi)

// exp(x) for x in [-87, 88] without libm calls, so loops that use it vectorize: x = n*ln2 + r with
// |r| <= ln2/2 (ln2 split in two parts for an exact reduction), exp(r) by its degree-7 Taylor polynomial
// (truncation < 6e-9 relative), 2^n put into the exponent bits. Inputs are clamped to that range.
// Needs the default round-to-nearest mode and no -ffast-math (which would fold the rounding trick).
static inline float gpt2_expf(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    // round to nearest by adding and removing 1.5 * 2^23 (|x * log2(e)| < 2^22)
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;  // ln2 = 0.693359375 - 2.12194440e-4
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof(scale));
    return p * scale;
}

// tanh(u) = 1 - 2 / (exp(2u) + 1); absolute error ~1e-7 (all uses add it to 1 or square it)
static inline float gpt2_tanhf(float u) {
    return 1.0f - 2.0f / (gpt2_expf(2.0f * u) + 1.0f);
}

// ----------------------------------------------------------------------------
// layer kernels. Shapes use N = B*T rows. Backward kernels add (+=) into their outputs.

// out[b,t,:] = wte[inp[b,t],:] + wpe[t,:]
static void encoder_forward(float* out, const int* inp, const float* wte, const float* wpe, int B, int T, int C) {
    // out (B, T, C), inp (B, T), wte (Vp, C), wpe (maxT, C)
    OMP_PRAGMA(parallel for schedule(static))
    for (int bt = 0; bt < B * T; bt++) {
        int t = bt % T;
        float* o = out + (size_t)bt * C;
        const float* we = wte + (size_t)inp[bt] * C;
        const float* pe = wpe + (size_t)t * C;
        for (int c = 0; c < C; c++) o[c] = we[c] + pe[c];
    }
}

static void encoder_backward(float* dwte, float* dwpe, const float* dout, const int* inp, int B, int T, int C) {
    // threads split the channels, so repeated tokens never race
    int chunks = (C + 63) / 64;
    OMP_PRAGMA(parallel for schedule(static))
    for (int ch = 0; ch < chunks; ch++) {
        int c0 = ch * 64, c1 = c0 + 64 < C ? c0 + 64 : C;
        for (int bt = 0; bt < B * T; bt++) {
            int t = bt % T;
            const float* d = dout + (size_t)bt * C;
            float* we = dwte + (size_t)inp[bt] * C;
            float* pe = dwpe + (size_t)t * C;
            for (int c = c0; c < c1; c++) {
                we[c] += d[c];
                pe[c] += d[c];
            }
        }
    }
}

// out = (x - mean) * rstd * weight + bias per row; keeps mean and rstd for the backward
static void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                              const float* bias, int N, int C) {
    // out (N, C), mean (N), rstd (N), inp (N, C), weight (C), bias (C)
    OMP_PRAGMA(parallel for schedule(static))
    for (int i = 0; i < N; i++) {
        const float* x = inp + (size_t)i * C;
        float s = 0.0f;
        OMP_PRAGMA(simd reduction(+:s))
        for (int c = 0; c < C; c++) s += x[c];
        float m = s / C;
        float v = 0.0f;
        OMP_PRAGMA(simd reduction(+:v))
        for (int c = 0; c < C; c++) {
            float d = x[c] - m;
            v += d * d;
        }
        float r = 1.0f / sqrtf(v / C + LN_EPS);
        float* o = out + (size_t)i * C;
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * r * weight[c] + bias[c];
        mean[i] = m;
        rstd[i] = r;
    }
}

static void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                               const float* weight, const float* mean, const float* rstd, int N, int C) {
    // input gradient, row by row:
    //   dinp += rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),  dxhat = dout * weight
    OMP_PRAGMA(parallel for schedule(static))
    for (int i = 0; i < N; i++) {
        const float* x = inp + (size_t)i * C;
        const float* d = dout + (size_t)i * C;
        float* di = dinp + (size_t)i * C;
        float m = mean[i], r = rstd[i];
        float sum_d = 0.0f, sum_dx = 0.0f;
        OMP_PRAGMA(simd reduction(+:sum_d, sum_dx))
        for (int c = 0; c < C; c++) {
            float dxhat = d[c] * weight[c];
            sum_d += dxhat;
            sum_dx += dxhat * (x[c] - m) * r;
        }
        sum_d /= C;
        sum_dx /= C;
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - m) * r;
            di[c] += r * (d[c] * weight[c] - sum_d - xhat * sum_dx);
        }
    }
    // parameter gradients: threads split the channels
    int chunks = (C + 63) / 64;
    OMP_PRAGMA(parallel for schedule(static))
    for (int ch = 0; ch < chunks; ch++) {
        int c0 = ch * 64, c1 = c0 + 64 < C ? c0 + 64 : C;
        float dw[64], db[64];
        for (int c = 0; c < 64; c++) dw[c] = db[c] = 0.0f;
        for (int i = 0; i < N; i++) {
            const float* x = inp + (size_t)i * C;
            const float* d = dout + (size_t)i * C;
            float m = mean[i], r = rstd[i];
            for (int c = c0; c < c1; c++) {
                dw[c - c0] += d[c] * (x[c] - m) * r;
                db[c - c0] += d[c];
            }
        }
        for (int c = c0; c < c1; c++) {
            dweight[c] += dw[c - c0];
            dbias[c] += db[c - c0];
        }
    }
}

// out(N, OC) = inp(N, IC) @ weight(OC, IC)^T + bias(OC); bias may be NULL
static void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int IC,
                           int OC) {
    gemm_matmul_forward(out, inp, weight, bias, N, OC, IC);
}

// dinp(N, IC) += dout @ weight;  dweight(OC, IC) += dout^T @ inp;  dbias(OC) += column sums of dout
static void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                            const float* weight, int N, int IC, int OC) {
    gemm_matmul_backward_input(dinp, dout, weight, N, OC, IC);
    gemm_matmul_backward_weight(dweight, dout, inp, N, OC, IC);
    if (dbias != NULL) gemm_bias_backward(dbias, dout, N, OC);
}

// One query of causal attention, one head: a[t2] = softmax_t2(q . k_t2 * scale) over t2 = 0..t, o = sum a[t2] v_t2.
// k_t2 = k0 + t2 * stride, v_t2 = v0 + t2 * stride (hs floats each); a holds t + 1 weights; o (hs).
static inline void attention_query_forward(float* o, float* a, const float* q, const float* k0, const float* v0,
                                           size_t stride, int t, int hs, float scale) {
    float maxv = -INFINITY;
    for (int t2 = 0; t2 <= t; t2++) {
        const float* k = k0 + (size_t)t2 * stride;
        float s = 0.0f;
        OMP_PRAGMA(simd reduction(+:s))
        for (int i = 0; i < hs; i++) s += q[i] * k[i];
        s *= scale;
        a[t2] = s;
        if (s > maxv) maxv = s;
    }
    float sum = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) {
        float e = gpt2_expf(a[t2] - maxv);
        a[t2] = e;
        sum += e;
    }
    float inv = 1.0f / sum;
    for (int t2 = 0; t2 <= t; t2++) a[t2] *= inv;
    for (int i = 0; i < hs; i++) o[i] = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) {
        const float* v = v0 + (size_t)t2 * stride;
        float w = a[t2];
        for (int i = 0; i < hs; i++) o[i] += w * v[i];
    }
}

// Causal multi-head self-attention.
// qkv (B, T, 3C) holds q | k | v, head h at channels [h*hs, (h+1)*hs) of each; out (B, T, C);
// att (B, NH, T, T): softmax weights, row t valid for t2 <= t.
static void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    size_t C3 = (size_t)3 * C;
    OMP_PRAGMA(parallel for collapse(3) schedule(dynamic, 8))
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                const float* row = qkv + (size_t)b * T * C3 + (size_t)h * hs;  // position 0 of this sequence and head
                float* a = att + (((size_t)b * NH + h) * T + t) * T;
                attention_query_forward(out + ((size_t)b * T + t) * C + (size_t)h * hs, a, row + (size_t)t * C3,
                                        row + C, row + 2 * (size_t)C, C3, t, hs, scale);
                for (int t2 = t + 1; t2 < T; t2++) a[t2] = 0.0f;
            }
        }
    }
}

// datt (B, NH, T, T) is scratch for the gradient of the attention weights.
static void attention_backward(float* dqkv, float* datt, const float* dout, const float* qkv, const float* att, int B,
                               int T, int C, int NH) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    size_t C3 = (size_t)3 * C;
    // one (b, h) per task: dk and dv of a head collect contributions from every row t
    OMP_PRAGMA(parallel for collapse(2) schedule(dynamic, 1))
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                const float* a = att + (((size_t)b * NH + h) * T + t) * T;
                float* da = datt + (((size_t)b * NH + h) * T + t) * T;
                const float* d = dout + ((size_t)b * T + t) * C + (size_t)h * hs;
                const float* q = qkv + ((size_t)b * T + t) * C3 + (size_t)h * hs;
                float* dq = dqkv + ((size_t)b * T + t) * C3 + (size_t)h * hs;
                // out_t = sum_t2 a[t2] v_t2
                float dot = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float* v = qkv + ((size_t)b * T + t2) * C3 + 2 * (size_t)C + (size_t)h * hs;
                    float* dv = dqkv + ((size_t)b * T + t2) * C3 + 2 * (size_t)C + (size_t)h * hs;
                    float s = 0.0f;
                    float w = a[t2];
                    OMP_PRAGMA(simd reduction(+:s))
                    for (int i = 0; i < hs; i++) {
                        s += d[i] * v[i];
                        dv[i] += w * d[i];
                    }
                    da[t2] = s;
                    dot += w * s;
                }
                // softmax: dpre = a * (da - sum(a * da)); pre = scale * q . k
                for (int t2 = 0; t2 <= t; t2++) {
                    const float* k = qkv + ((size_t)b * T + t2) * C3 + C + (size_t)h * hs;
                    float* dk = dqkv + ((size_t)b * T + t2) * C3 + C + (size_t)h * hs;
                    float g = a[t2] * (da[t2] - dot) * scale;
                    for (int i = 0; i < hs; i++) {
                        dq[i] += g * k[i];
                        dk[i] += g * q[i];
                    }
                }
            }
        }
    }
}

// tanh-approximation GELU
static void gelu_forward(float* out, const float* inp, size_t n) {
    OMP_PRAGMA(parallel for schedule(static))
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = GELU_SCALE * (x + 0.044715f * x * x * x);
        out[i] = 0.5f * x * (1.0f + gpt2_tanhf(u));
    }
}

static void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) {
    OMP_PRAGMA(parallel for schedule(static))
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = GELU_SCALE * (x + 0.044715f * x * x * x);
        float th = gpt2_tanhf(u);
        float du = GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        float grad = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
        dinp[i] += grad * dout[i];
    }
}

static void residual_forward(float* out, const float* inp1, const float* inp2, size_t n) {
    OMP_PRAGMA(parallel for schedule(static))
    for (size_t i = 0; i < n; i++) out[i] = inp1[i] + inp2[i];
}

static void residual_backward(float* dinp1, float* dinp2, const float* dout, size_t n) {
    OMP_PRAGMA(parallel for schedule(static))
    for (size_t i = 0; i < n; i++) {
        dinp1[i] += dout[i];
        dinp2[i] += dout[i];
    }
}

// Softmax over the first V of Vp logits (padded columns get probability 0) and the per-position
// cross-entropy -log(probs[target]) when targets != NULL.
static void softmax_crossentropy_forward(float* probs, float* losses, const float* logits, const int* targets, int N,
                                         int V, int Vp) {
    // probs (N, Vp), losses (N), logits (N, Vp), targets (N)
    OMP_PRAGMA(parallel for schedule(static))
    for (int i = 0; i < N; i++) {
        const float* l = logits + (size_t)i * Vp;
        float* p = probs + (size_t)i * Vp;
        float maxv = -INFINITY;
        OMP_PRAGMA(simd reduction(max:maxv))
        for (int v = 0; v < V; v++) maxv = l[v] > maxv ? l[v] : maxv;
        float sum = 0.0f;
        OMP_PRAGMA(simd reduction(+:sum))
        for (int v = 0; v < V; v++) {
            p[v] = gpt2_expf(l[v] - maxv);
            sum += p[v];
        }
        float inv = 1.0f / sum;
        for (int v = 0; v < V; v++) p[v] *= inv;
        for (int v = V; v < Vp; v++) p[v] = 0.0f;
        if (targets != NULL) losses[i] = -logf(p[targets[i]]);
    }
}

// dlogits += dloss * (probs - onehot(target)) over the first V columns; padded columns untouched
static void softmax_crossentropy_backward(float* dlogits, const float* probs, const int* targets, float dloss, int N,
                                          int V, int Vp) {
    OMP_PRAGMA(parallel for schedule(static))
    for (int i = 0; i < N; i++) {
        float* dl = dlogits + (size_t)i * Vp;
        const float* p = probs + (size_t)i * Vp;
        for (int v = 0; v < V; v++) dl[v] += dloss * p[v];
        dl[targets[i]] -= dloss;
    }
}

// ----------------------------------------------------------------------------
// model

typedef struct {
    GPT2_PARAMETER_FIELDS(float)
} ParameterTensors;

#define NUM_ACTIVATION_TENSORS 22
// Per-layer tensors have L slots of the allocated (B, T) size; a forward with a smaller B or T
// uses the first B*T rows of each slot.
typedef struct {
    float* encoded;    // (B, T, C)
    float* ln1;        // (L, B, T, C)
    float* ln1_mean;   // (L, B, T)
    float* ln1_rstd;   // (L, B, T)
    float* qkv;        // (L, B, T, 3C)
    float* atty;       // (L, B, T, C)
    float* att;        // (L, B, NH, T, T); in grads_acts (B, NH, T, T) scratch
    float* attproj;    // (L, B, T, C)
    float* residual2;  // (L, B, T, C)
    float* ln2;        // (L, B, T, C)
    float* ln2_mean;   // (L, B, T)
    float* ln2_rstd;   // (L, B, T)
    float* fch;        // (L, B, T, 4C)
    float* fch_gelu;   // (L, B, T, 4C)
    float* fcproj;     // (L, B, T, C)
    float* residual3;  // (L, B, T, C)
    float* lnf;        // (B, T, C)
    float* lnf_mean;   // (B, T)
    float* lnf_rstd;   // (B, T)
    float* logits;     // (B, T, Vp)
    float* probs;      // (B, T, Vp)
    float* losses;     // (B, T)
} ActivationTensors;

typedef struct {
    GPT2Config config;
    ParameterTensors params;
    size_t param_sizes[NUM_PARAMETER_TENSORS];
    float* params_memory;
    size_t num_parameters;
    ParameterTensors grads;
    float* grads_memory;
    // optimizer state (gpt2_optimizer_init): one block opt_memory carved into the buffers of the kind,
    // each num_parameters floats unless noted
    int opt_kind;               // OptimizerKind, -1 = none yet
    float* opt_memory;
    float* m_memory;            // AdamW first moment
    float* v_memory;            // AdamW second moment
    float* mean;                // IVON/PoCo posterior mean m (params_memory holds samples during a step)
    float* momentum;            // IVON g
    float* hess;                // IVON h
    float* acc_grad;            // transient: Welford mean of the clipped gradients of a step
    float* acc_noise_grad;      // transient: Welford mean of noise * clipped gradient
    float* anchor_mean;         // PoCo m_out
    float* anchor_hess;         // PoCo h_out_state (sigma_out = 1 / sqrt(lambda (h_out + delta)))
    float* anchor_grad;         // PoCo gbar_out, mega-batch gradient
    float* anchor_hess_est;     // PoCo hbar_out, mega-batch Hessian estimate
    float* acc_grad_out;        // PoCo transient: Welford mean of the clipped g_out
    float* acc_noise_grad_out;  // PoCo transient: Welford mean of n_out * g_out
    float* grads_in;            // PoCo with -pce 0: copy of g_in
    float* diag_scratch;        // (2, diag_n) strided samples of h and sigma for the diagnostics
    size_t diag_n;
    DistInfo dist;              // data-parallel layout (dist_single() unless main sets it)
    size_t shard_lo, shard_hi;  // ZeRO-1: this rank's slice of the flat parameters ([0, np) without sharding)
    int anchor_step;            // PoCo: step before which the anchor was taken, -1 = none
    long long mega_tokens;      // PoCo: tokens of all anchor refreshes so far
    IvonUpdateStats last_update;  // statistics of the last IVON/PoCo update
    ActivationTensors acts;
    float* acts_memory;
    size_t num_activations;
    ActivationTensors grads_acts;
    float* grads_acts_memory;
    int batch_size;  // B the buffers were allocated for
    int seq_len;     // T the buffers were allocated for
    int* inputs;     // (B, T) tokens of the last forward
    int* targets;    // (B, T) targets of the last forward
    float mean_loss; // mean loss of the last forward with targets, -1.0f without
    int last_B, last_T;     // B, T of the last forward
    size_t num_grad_acts;   // floats in grads_acts_memory
} GPT2;

static void gpt2_param_pointers(ParameterTensors* p, float* ptrs[NUM_PARAMETER_TENSORS]) {
    float** f[NUM_PARAMETER_TENSORS] = {&p->wte, &p->wpe, &p->ln1w, &p->ln1b, &p->qkvw, &p->qkvb,
                                        &p->attprojw, &p->attprojb, &p->ln2w, &p->ln2b, &p->fcw, &p->fcb,
                                        &p->fcprojw, &p->fcprojb, &p->lnfw, &p->lnfb};
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) *f[i] = ptrs[i];
}

// carves `memory` into the 16 parameter tensors in table order
static void gpt2_point_params(ParameterTensors* p, float* memory, const size_t sizes[NUM_PARAMETER_TENSORS]) {
    float* ptrs[NUM_PARAMETER_TENSORS];
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        ptrs[i] = memory;
        memory += sizes[i];
    }
    gpt2_param_pointers(p, ptrs);
}

// element counts of the activation tensors; for_grads = 1 gives the gradient buffers, which have
// no statistics, probabilities or losses
static void gpt2_activation_sizes(size_t sizes[NUM_ACTIVATION_TENSORS], GPT2Config c, int B, int T, int for_grads) {
    size_t L = c.num_layers, C = c.channels, NH = c.num_heads, Vp = c.padded_vocab_size, BT = (size_t)B * T;
    size_t stat = for_grads ? 0 : 1;
    sizes[0] = BT * C;                 // encoded
    sizes[1] = L * BT * C;             // ln1
    sizes[2] = stat * L * BT;          // ln1_mean
    sizes[3] = stat * L * BT;          // ln1_rstd
    sizes[4] = L * BT * 3 * C;         // qkv
    sizes[5] = L * BT * C;             // atty
    sizes[6] = (for_grads ? 1 : L) * BT * NH * T;  // att; the gradient is one layer of scratch
    sizes[7] = L * BT * C;             // attproj
    sizes[8] = L * BT * C;             // residual2
    sizes[9] = L * BT * C;             // ln2
    sizes[10] = stat * L * BT;         // ln2_mean
    sizes[11] = stat * L * BT;         // ln2_rstd
    sizes[12] = L * BT * 4 * C;        // fch
    sizes[13] = L * BT * 4 * C;        // fch_gelu
    sizes[14] = L * BT * C;            // fcproj
    sizes[15] = L * BT * C;            // residual3
    sizes[16] = BT * C;                // lnf
    sizes[17] = stat * BT;             // lnf_mean
    sizes[18] = stat * BT;             // lnf_rstd
    sizes[19] = BT * Vp;               // logits
    sizes[20] = stat * BT * Vp;        // probs
    sizes[21] = stat * BT;             // losses
}

static void gpt2_point_acts(ActivationTensors* a, float* memory, const size_t sizes[NUM_ACTIVATION_TENSORS]) {
    float** f[NUM_ACTIVATION_TENSORS] = {&a->encoded, &a->ln1, &a->ln1_mean, &a->ln1_rstd, &a->qkv, &a->atty,
                                         &a->att, &a->attproj, &a->residual2, &a->ln2, &a->ln2_mean, &a->ln2_rstd,
                                         &a->fch, &a->fch_gelu, &a->fcproj, &a->residual3, &a->lnf, &a->lnf_mean,
                                         &a->lnf_rstd, &a->logits, &a->probs, &a->losses};
    for (int i = 0; i < NUM_ACTIVATION_TENSORS; i++) {
        *f[i] = sizes[i] > 0 ? memory : NULL;
        memory += sizes[i];
    }
}

// config checks shared by both builders; allocates the parameters and clears the rest
static void gpt2_init_common(GPT2* model, GPT2Config config, const char* what) {
    gpt2_config_check(config, what);
    memset(model, 0, sizeof(*model));
    model->config = config;
    gpt2_param_sizes(model->param_sizes, config);
    model->num_parameters = gpt2_num_parameters(config);
    model->params_memory = (float*)mallocCheck(model->num_parameters * sizeof(float));
    gpt2_point_params(&model->params, model->params_memory, model->param_sizes);
    model->mean_loss = -1.0f;
    model->opt_kind = -1;
    model->anchor_step = -1;
    model->dist = dist_single();
    model->shard_lo = 0;
    model->shard_hi = model->num_parameters;
}

void gpt2_build_from_checkpoint(GPT2* model, const char* path) {
    FILE* fp = fopenCheck(path, "rb");
    GPT2Config c;
    int version = model_read_header(fp, path, &c);
    gpt2_init_common(model, c, path);
    model_read_weights(fp, path, version, model->params_memory, model->num_parameters);
    fcloseCheck(fp, path);
}

void gpt2_build_random(GPT2* model, GPT2Config config, uint64_t seed) {
    gpt2_init_common(model, config, "random init");
    model_init_random(model->params_memory, config, seed);
}

void gpt2_allocate(GPT2* model, int B, int T) {
    if (B < 1) fatalf("batch size B=%d must be at least 1", B);
    if (T < 1 || T > model->config.max_seq_len)
        fatalf("sequence length T=%d must be in 1..%d (the model's context)", T, model->config.max_seq_len);
    if (model->acts_memory != NULL) fatalf("gpt2_allocate called twice");
    size_t sizes[NUM_ACTIVATION_TENSORS], gsizes[NUM_ACTIVATION_TENSORS];
    gpt2_activation_sizes(sizes, model->config, B, T, 0);
    gpt2_activation_sizes(gsizes, model->config, B, T, 1);
    size_t na = 0, ng = 0;
    for (int i = 0; i < NUM_ACTIVATION_TENSORS; i++) {
        na += sizes[i];
        ng += gsizes[i];
    }
    model->num_activations = na;
    model->num_grad_acts = ng;
    model->acts_memory = (float*)mallocCheck(na * sizeof(float));
    model->grads_acts_memory = (float*)callocCheck(ng * sizeof(float));
    gpt2_point_acts(&model->acts, model->acts_memory, sizes);
    gpt2_point_acts(&model->grads_acts, model->grads_acts_memory, gsizes);
    size_t np = model->num_parameters;
    model->grads_memory = (float*)callocCheck(np * sizeof(float));
    gpt2_point_params(&model->grads, model->grads_memory, model->param_sizes);
    model->inputs = (int*)mallocCheck((size_t)B * T * sizeof(int));
    model->targets = (int*)mallocCheck((size_t)B * T * sizeof(int));
    model->batch_size = B;
    model->seq_len = T;
    model->mean_loss = -1.0f;
    gemm_reserve(gemm_max_threads());  // pack buffers, so the first step allocates nothing
}

void gpt2_forward(GPT2* model, const int* inputs, const int* targets, int B, int T) {
    if (model->acts_memory == NULL) fatalf("gpt2_forward before gpt2_allocate");
    GPT2Config c = model->config;
    gpt2_forward_check(c, model->batch_size, model->seq_len, inputs, targets, B, T);
    int V = c.vocab_size, Vp = c.padded_vocab_size, L = c.num_layers, NH = c.num_heads, C = c.channels;
    int N = B * T;
    memcpy(model->inputs, inputs, (size_t)N * sizeof(int));
    if (targets != NULL) memcpy(model->targets, targets, (size_t)N * sizeof(int));
    model->last_B = B;
    model->last_T = T;

    ParameterTensors p = model->params;
    ActivationTensors a = model->acts;
    size_t slot = (size_t)model->batch_size * model->seq_len;  // rows per layer slot
    size_t att_slot = slot * NH * model->seq_len;
    encoder_forward(a.encoded, inputs, p.wte, p.wpe, B, T, C);
    for (int l = 0; l < L; l++) {
        const float* residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * slot * C;
        float* ln1 = a.ln1 + l * slot * C;
        float* ln1_mean = a.ln1_mean + l * slot;
        float* ln1_rstd = a.ln1_rstd + l * slot;
        float* qkv = a.qkv + l * slot * 3 * C;
        float* atty = a.atty + l * slot * C;
        float* att = a.att + l * att_slot;
        float* attproj = a.attproj + l * slot * C;
        float* residual2 = a.residual2 + l * slot * C;
        float* ln2 = a.ln2 + l * slot * C;
        float* ln2_mean = a.ln2_mean + l * slot;
        float* ln2_rstd = a.ln2_rstd + l * slot;
        float* fch = a.fch + l * slot * 4 * C;
        float* fch_gelu = a.fch_gelu + l * slot * 4 * C;
        float* fcproj = a.fcproj + l * slot * C;
        float* residual3 = a.residual3 + l * slot * C;
        layernorm_forward(ln1, ln1_mean, ln1_rstd, residual, p.ln1w + l * C, p.ln1b + l * C, N, C);
        matmul_forward(qkv, ln1, p.qkvw + (size_t)l * 3 * C * C, p.qkvb + l * 3 * C, N, C, 3 * C);
        attention_forward(atty, att, qkv, B, T, C, NH);
        matmul_forward(attproj, atty, p.attprojw + (size_t)l * C * C, p.attprojb + l * C, N, C, C);
        residual_forward(residual2, residual, attproj, (size_t)N * C);
        layernorm_forward(ln2, ln2_mean, ln2_rstd, residual2, p.ln2w + l * C, p.ln2b + l * C, N, C);
        matmul_forward(fch, ln2, p.fcw + (size_t)l * 4 * C * C, p.fcb + l * 4 * C, N, C, 4 * C);
        gelu_forward(fch_gelu, fch, (size_t)N * 4 * C);
        matmul_forward(fcproj, fch_gelu, p.fcprojw + (size_t)l * C * 4 * C, p.fcprojb + l * C, N, 4 * C, C);
        residual_forward(residual3, residual2, fcproj, (size_t)N * C);
    }
    layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, a.residual3 + (L - 1) * slot * C, p.lnfw, p.lnfb, N, C);
    matmul_forward(a.logits, a.lnf, p.wte, NULL, N, C, Vp);
    softmax_crossentropy_forward(a.probs, a.losses, a.logits, targets, N, V, Vp);
    if (targets != NULL) {
        double sum = 0.0;
        for (int i = 0; i < N; i++) sum += a.losses[i];
        model->mean_loss = (float)(sum / N);
    } else {
        model->mean_loss = -1.0f;
    }
}

void gpt2_zero_grad(GPT2* model) {
    if (model->grads_memory == NULL) fatalf("gpt2_zero_grad before gpt2_allocate");
    size_t n = model->num_parameters;
    float* g = model->grads_memory;
    OMP_PRAGMA(parallel for schedule(static))
    for (size_t i = 0; i < n; i++) g[i] = 0.0f;
}

void gpt2_backward(GPT2* model, float loss_scale) {
    if (model->grads_memory == NULL) fatalf("gpt2_backward before gpt2_allocate");
    if (model->mean_loss == -1.0f) fatalf("gpt2_backward needs a forward with targets first");
    GPT2Config c = model->config;
    int V = c.vocab_size, Vp = c.padded_vocab_size, L = c.num_layers, NH = c.num_heads, C = c.channels;
    int B = model->last_B, T = model->last_T, N = B * T;
    {
        float* g = model->grads_acts_memory;
        size_t n = model->num_grad_acts;
        OMP_PRAGMA(parallel for schedule(static))
        for (size_t i = 0; i < n; i++) g[i] = 0.0f;
    }
    ParameterTensors p = model->params, g = model->grads;
    ActivationTensors a = model->acts, d = model->grads_acts;
    size_t slot = (size_t)model->batch_size * model->seq_len;
    size_t att_slot = slot * NH * model->seq_len;

    softmax_crossentropy_backward(d.logits, a.probs, model->targets, loss_scale / N, N, V, Vp);
    matmul_backward(d.lnf, g.wte, NULL, d.logits, a.lnf, p.wte, N, C, Vp);
    layernorm_backward(d.residual3 + (L - 1) * slot * C, g.lnfw, g.lnfb, d.lnf, a.residual3 + (L - 1) * slot * C,
                       p.lnfw, a.lnf_mean, a.lnf_rstd, N, C);
    for (int l = L - 1; l >= 0; l--) {
        const float* residual = l == 0 ? a.encoded : a.residual3 + (l - 1) * slot * C;
        float* dresidual = l == 0 ? d.encoded : d.residual3 + (l - 1) * slot * C;
        size_t o1 = l * slot, oc = o1 * C;
        // fcproj, residual3 = residual2 + fcproj
        residual_backward(d.residual2 + oc, d.fcproj + oc, d.residual3 + oc, (size_t)N * C);
        matmul_backward(d.fch_gelu + 4 * oc, g.fcprojw + (size_t)l * C * 4 * C, g.fcprojb + l * C, d.fcproj + oc,
                        a.fch_gelu + 4 * oc, p.fcprojw + (size_t)l * C * 4 * C, N, 4 * C, C);
        gelu_backward(d.fch + 4 * oc, a.fch + 4 * oc, d.fch_gelu + 4 * oc, (size_t)N * 4 * C);
        matmul_backward(d.ln2 + oc, g.fcw + (size_t)l * 4 * C * C, g.fcb + l * 4 * C, d.fch + 4 * oc, a.ln2 + oc,
                        p.fcw + (size_t)l * 4 * C * C, N, C, 4 * C);
        layernorm_backward(d.residual2 + oc, g.ln2w + l * C, g.ln2b + l * C, d.ln2 + oc, a.residual2 + oc,
                           p.ln2w + l * C, a.ln2_mean + o1, a.ln2_rstd + o1, N, C);
        // attention block, residual2 = residual + attproj
        residual_backward(dresidual, d.attproj + oc, d.residual2 + oc, (size_t)N * C);
        matmul_backward(d.atty + oc, g.attprojw + (size_t)l * C * C, g.attprojb + l * C, d.attproj + oc,
                        a.atty + oc, p.attprojw + (size_t)l * C * C, N, C, C);
        attention_backward(d.qkv + 3 * oc, d.att, d.atty + oc, a.qkv + 3 * oc, a.att + l * att_slot, B,
                           T, C, NH);
        matmul_backward(d.ln1 + oc, g.qkvw + (size_t)l * 3 * C * C, g.qkvb + l * 3 * C, d.qkv + 3 * oc, a.ln1 + oc,
                        p.qkvw + (size_t)l * 3 * C * C, N, C, 3 * C);
        layernorm_backward(dresidual, g.ln1w + l * C, g.ln1b + l * C, d.ln1 + oc, residual, p.ln1w + l * C,
                           a.ln1_mean + o1, a.ln1_rstd + o1, N, C);
    }
    encoder_backward(g.wte, g.wpe, d.encoded, model->inputs, B, T, C);
}

float gpt2_grad_norm(GPT2* model) {
    if (model->grads_memory == NULL) fatalf("gpt2_grad_norm before gpt2_allocate");
    const float* g = model->grads_memory;
    size_t n = model->num_parameters;
    double sum = 0.0;
    OMP_PRAGMA(parallel for simd reduction(+:sum) schedule(static))
    for (size_t i = 0; i < n; i++) sum += (double)g[i] * (double)g[i];
    return (float)sqrt(sum);
}

// ----------------------------------------------------------------------------
// data parallel (llmc/dist.h; the collectives over MPI in llmc/mpi_dist.h)

// the piece [*a, *a + *n) of tensor i inside this rank's shard [shard_lo, shard_hi); 0 if empty
static int gpt2_shard_piece(const GPT2* model, int i, size_t* a, size_t* n) {
    size_t off = 0;
    for (int k = 0; k < i; k++) off += model->param_sizes[k];
    size_t lo = off > model->shard_lo ? off : model->shard_lo;
    size_t end = off + model->param_sizes[i];
    size_t hi = end < model->shard_hi ? end : model->shard_hi;
    if (lo >= hi) return 0;
    *a = lo;
    *n = hi - lo;
    return 1;
}

// the layout of a data-parallel run; ZeRO-1 gives each rank a slice of the flat parameters
void gpt2_set_dist(GPT2* model, const DistInfo* d) {
    model->dist = *d;
    if (d->zero_stage > 0) dist_shard(model->num_parameters, d->world, d->rank, &model->shard_lo, &model->shard_hi);
    else model->shard_lo = 0, model->shard_hi = model->num_parameters;
}


// AdamW update with the accumulated gradient whose global norm (before clipping) is `norm`; with ZeRO-1 only
// this rank's shard of the parameters and moments.
void gpt2_adamw_apply(GPT2* model, float norm, float lr, float beta1, float beta2, float eps, float weight_decay,
                      float grad_clip, int t) {
    if (model->grads_memory == NULL) fatalf("gpt2_adamw_apply before gpt2_allocate");
    if (model->m_memory == NULL) {
        // direct use without gpt2_optimizer_init (tests, bench): the AdamW state, once
        if (model->opt_memory != NULL) fatalf("gpt2_adamw_step: the model holds %s state", optimizer_kind_name(model->opt_kind));
        size_t np = model->num_parameters;
        model->opt_memory = (float*)callocCheck(2 * np * sizeof(float));
        model->m_memory = model->opt_memory;
        model->v_memory = model->opt_memory + np;
        model->opt_kind = OPT_ADAMW;
    }
    float scale = grad_clip > 0.0f && norm > grad_clip ? grad_clip / norm : 1.0f;
    size_t a, n;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        if (!gpt2_shard_piece(model, i, &a, &n)) continue;
        float wd = PARAM_TABLE[i].decay ? weight_decay : 0.0f;
        adamw_update(model->params_memory + a, model->grads_memory + a, model->m_memory + a, model->v_memory + a, n,
                     lr, beta1, beta2, eps, wd, scale, t);
    }
}

// Returns the global gradient norm before clipping.
float gpt2_adamw_step(GPT2* model, float lr, float beta1, float beta2, float eps, float weight_decay, float grad_clip,
                      int t) {
    float norm = gpt2_grad_norm(model);
    gpt2_adamw_apply(model, norm, lr, beta1, beta2, eps, weight_decay, grad_clip, t);
    return norm;
}

// llm.c model file, version 3 fp32, written atomically
void gpt2_write_model(GPT2* model, const char* path) {
    checkpoint_write_model(path, model->config, model->params_memory, model->num_parameters);
}

void gpt2_free(GPT2* model) {
    free(model->params_memory);
    free(model->grads_memory);
    free(model->opt_memory);
    free(model->acts_memory);
    free(model->grads_acts_memory);
    free(model->inputs);
    free(model->targets);
    memset(model, 0, sizeof(*model));
}

// ----------------------------------------------------------------------------
// optimizer driver: AdamW, IVON, IVON-PoCo(Mo) steps over micro-batches (spec §2.4, §6.3)


// Allocates the optimizer state after gpt2_allocate, all of it in one block: AdamW m, v = 0; IVON/PoCo
// mean = params, momentum = 0, hess = h0, the transient accumulators and (PoCo) the anchor buffers.
void gpt2_optimizer_init(GPT2* model, const OptimizerConfig* oc) {
    if (model->grads_memory == NULL) fatalf("gpt2_optimizer_init before gpt2_allocate");
    char err[256];
    if (optimizer_config_check(oc, err, sizeof(err)) != 0) fatalf("%s", err);
    free(model->opt_memory);
    model->opt_memory = NULL;
    model->m_memory = model->v_memory = NULL;
    model->mean = model->momentum = model->hess = model->acc_grad = model->acc_noise_grad = NULL;
    model->anchor_mean = model->anchor_hess = model->anchor_grad = model->anchor_hess_est = NULL;
    model->acc_grad_out = model->acc_noise_grad_out = model->grads_in = model->diag_scratch = NULL;
    model->anchor_step = -1;
    model->mega_tokens = 0;
    memset(&model->last_update, 0, sizeof(model->last_update));
    size_t np = model->num_parameters;
    model->opt_kind = oc->kind;
    if (oc->kind == OPT_ADAMW) {
        model->opt_memory = (float*)callocCheck(2 * np * sizeof(float));
        model->m_memory = model->opt_memory;
        model->v_memory = model->opt_memory + np;
        return;
    }
    // buffers of the kind, in this order (the accumulators adjacent: one collective reduces them all); no noise
    // buffer: the accumulate pass regenerates the noise of the sample pass from its key
    float** bufs[12] = {&model->mean, &model->momentum, &model->hess, &model->acc_grad, &model->acc_noise_grad,
                        &model->acc_grad_out, &model->acc_noise_grad_out, &model->anchor_mean, &model->anchor_hess,
                        &model->anchor_grad, &model->anchor_hess_est, &model->grads_in};
    size_t nbuf = oc->kind == OPT_IVON ? 5 : 12 - (oc->poco_clip_each ? 1 : 0);
    size_t diag_cap = (size_t)1 << 20;
    model->diag_n = np < diag_cap ? np : diag_cap;
    model->opt_memory = (float*)mallocCheck((nbuf * np + 2 * model->diag_n) * sizeof(float));
    float* p = model->opt_memory;
    for (size_t b = 0; b < nbuf; b++) {
        *bufs[b] = p;
        p += np;
    }
    model->diag_scratch = p;
    memcpy(model->mean, model->params_memory, np * sizeof(float));
    memset(model->momentum, 0, np * sizeof(float));
    float h0 = (float)oc->hess_init;
    for (size_t i = 0; i < np; i++) model->hess[i] = h0;
    memset(model->acc_grad, 0, 2 * np * sizeof(float));
    if (oc->kind == OPT_POCO) {
        // anchor = the initial posterior until the first refresh (unused before it)
        memcpy(model->anchor_mean, model->mean, np * sizeof(float));
        memcpy(model->anchor_hess, model->hess, np * sizeof(float));
        memset(model->anchor_grad, 0, np * sizeof(float));
        memcpy(model->anchor_hess_est, model->hess, np * sizeof(float));
        memset(model->acc_grad_out, 0, 2 * np * sizeof(float));
        if (model->grads_in != NULL) memset(model->grads_in, 0, np * sizeof(float));
    }
}

// The persistent state buffers saved in a checkpoint, in file order; returns their number.
//   AdamW: m, v;  IVON: momentum, hess;  PoCo: momentum, hess, anchor_mean, anchor_hess, anchor_grad, anchor_hess_est
// (the mean is the model file; the noise is a pure function of seed/step and needs no state)
int gpt2_optimizer_state_buffers(GPT2* model, float* bufs[6]) {
    switch (model->opt_kind) {
        case OPT_ADAMW: bufs[0] = model->m_memory; bufs[1] = model->v_memory; return 2;
        case OPT_IVON: bufs[0] = model->momentum; bufs[1] = model->hess; return 2;
        case OPT_POCO:
            bufs[0] = model->momentum; bufs[1] = model->hess; bufs[2] = model->anchor_mean;
            bufs[3] = model->anchor_hess; bufs[4] = model->anchor_grad; bufs[5] = model->anchor_hess_est;
            return 6;
    }
    fatalf("gpt2_optimizer_state_buffers before gpt2_optimizer_init");
    return 0;
}

// after loading a model file into params_memory: mean = params (IVON/PoCo)
void gpt2_optimizer_sync_mean(GPT2* model) {
    if (model->mean != NULL) memcpy(model->mean, model->params_memory, model->num_parameters * sizeof(float));
}

// 1 if all n floats are finite
static int gpt2_all_finite(const float* a, size_t n) {
    int bad = 0;
    OMP_PRAGMA(parallel for reduction(|:bad) schedule(static))
    for (size_t i = 0; i < n; i++) bad |= !isfinite(a[i]);
    return !bad;
}

// theta = m + sigma(h) * eps over all tensors, each with its group's delta; noise (may be NULL) = sigma(h) * eps
static void gpt2_ivon_sample_all(GPT2* model, const OptimizerConfig* oc, float* theta, float* noise, const float* m,
                                 const float* h, const IvonNoiseKey* key) {
    float essf = (float)oc->ess;
    size_t off = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t n = model->param_sizes[i];
        float wdf = (float)ivon_group_delta(oc, PARAM_TABLE[i].decay);
        ivon_sample(theta + off, noise != NULL ? noise + off : NULL, m + off, h + off, n, off, essf, wdf, key);
        off += n;
    }
}

// Welford accumulation (sample k, 1-based) of the clipped gradient and of noise * clipped gradient, the noise
// sigma(h) * eps regenerated from the key and h of the gpt2_ivon_sample_all call that made the sample
static void gpt2_ivon_accumulate_all(GPT2* model, const OptimizerConfig* oc, float* acc_g, float* acc_ng,
                                     const float* grads, float clip_scale, const float* h, const IvonNoiseKey* key,
                                     int k) {
    float essf = (float)oc->ess;
    size_t off = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t n = model->param_sizes[i];
        float wdf = (float)ivon_group_delta(oc, PARAM_TABLE[i].decay);
        ivon_accumulate(acc_g + off, acc_ng + off, grads + off, clip_scale, h + off, n, off, essf, wdf, key, k);
        off += n;
    }
}

// posterior sample s for BMA evaluation into params_memory (stream BMA, sample s, step)
void gpt2_optimizer_sample_bma(GPT2* model, const OptimizerConfig* oc, int step, int s) {
    if (model->mean == NULL) fatalf("BMA sampling needs the IVON/PoCo state");
    IvonNoiseKey key = ivon_noise_key(oc, step, s, NOISE_STREAM_BMA);
    gpt2_ivon_sample_all(model, oc, model->params_memory, NULL, model->mean, model->hess, &key);
}

// params_memory = mean (IVON/PoCo); no-op for AdamW
void gpt2_optimizer_restore_mean(GPT2* model) {
    if (model->mean != NULL) memcpy(model->params_memory, model->mean, model->num_parameters * sizeof(float));
}

// || a - gamma * b || over n floats, double accumulation
static float gpt2_diff_norm(const float* a, const float* b, float gamma, size_t n) {
    double sum = 0.0;
    OMP_PRAGMA(parallel for simd reduction(+:sum) schedule(static))
    for (size_t i = 0; i < n; i++) {
        float d = a[i] - (gamma * b[i]);
        sum += (double)d * (double)d;
    }
    return (float)sqrt(sum);
}

// Shared noise with one micro-batch per rank (dist_reduce_grad_only): the accumulated gradients acc_grad (and
// PoCo's acc_grad_out) are averaged over the ranks, then the noise*gradient means are formed from them again
// (k = 1: acc_ng = sigma eps * acc_g), over this rank's shard.
static void gpt2_reduce_grad_only(GPT2* model, const OptimizerConfig* oc, int poco, const IvonNoiseKey* key_in,
                                  const IvonNoiseKey* key_out) {
    const DistInfo* d = &model->dist;
    size_t np = model->num_parameters;
    float essf = (float)oc->ess;
    if (d->zero_stage > 0) dp_reduce_scatter_mean(d, model->acc_grad, np);
    else dp_allreduce_mean(d, model->acc_grad, np);
    if (poco) dp_allreduce_mean(d, model->acc_grad_out, np);
    size_t a, n;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        if (!gpt2_shard_piece(model, i, &a, &n)) continue;
        float wdf = (float)ivon_group_delta(oc, PARAM_TABLE[i].decay);
        ivon_accumulate(model->acc_grad + a, model->acc_noise_grad + a, model->acc_grad + a, 1.0f, model->hess + a,
                        n, a, essf, wdf, key_in, 1);
        if (poco)
            ivon_accumulate(model->acc_grad_out + a, model->acc_noise_grad_out + a, model->acc_grad_out + a, 1.0f,
                            model->anchor_hess + a, n, a, essf, wdf, key_out, 1);
    }
}

// ----------------------------------------------------------------------------
// the CPU operations of the optimizer driver (llmc/optim_step.h)

// The noise of a sample kept for its accumulation: every step writes each accumulator pair (OPT_ACC_IN, OPT_ACC_OUT)
// with k = 1 before it reads it, so at the start of a step (and after an anchor commit, for OUT) a pair holds
// nothing needed. The sample op then writes its noise n = sigma(h) eps into a free pair's noise-grad buffer and the
// accumulate op of the same key and h reads it back instead of regenerating it (bit-identical, llmc/optim.h
// ivon_accumulate_noise). Invisible to the driver: a pair is FREE, LIVE (holds accumulators, or unknown) or NOISE.
enum { GPT2_PAIR_LIVE = 0, GPT2_PAIR_FREE = 1, GPT2_PAIR_NOISE = 2 };

// An accumulate op is carried out when the next op that touches the gradients, the accumulators or the pairs runs;
// when that op is the update, the accumulation is folded into its pass (IvonLastAcc, llmc/optim.h): the last
// accumulation of a step (IVON: IN at the mean, PoCo: OUT at the anchor; one process) costs no pass of its own.
typedef struct {
    int active;
    int acc, grads, at, k;    // the accumulate op's arguments
    float clip;
    IvonNoiseKey key;
} Gpt2PendingAcc;

// the model and the settings of the step in progress, what each accumulator pair holds, the pending accumulation
typedef struct {
    GPT2* model;
    const OptimizerConfig* oc;
    int pair[2];              // GPT2_PAIR_* of OPT_ACC_IN, OPT_ACC_OUT
    IvonNoiseKey pair_key[2]; // GPT2_PAIR_NOISE: the key and the `at` (OPT_AT_*) of the noise held
    int pair_at[2];
    Gpt2PendingAcc pending;
    double loss_sum;          // the counted losses of the step so far
} Gpt2OptCtx;

static Gpt2OptCtx gpt2_opt_ctx(GPT2* model, const OptimizerConfig* oc) {
    Gpt2OptCtx t;
    memset(&t, 0, sizeof(t));
    t.model = model;
    t.oc = oc;
    t.pair[OPT_ACC_IN] = model->acc_noise_grad != NULL ? GPT2_PAIR_FREE : GPT2_PAIR_LIVE;
    t.pair[OPT_ACC_OUT] = model->acc_noise_grad_out != NULL ? GPT2_PAIR_FREE : GPT2_PAIR_LIVE;
    return t;
}

static GPT2* gpt2_ops_model(void* t) { return ((Gpt2OptCtx*)t)->model; }

static float* gpt2_pair_noise_grad(GPT2* model, int acc) {
    return acc == OPT_ACC_OUT ? model->acc_noise_grad_out : model->acc_noise_grad;
}

static int gpt2_same_key(const IvonNoiseKey* a, const IvonNoiseKey* b) {
    return a->seed == b->seed && a->rank == b->rank && a->step == b->step && a->sample == b->sample &&
           a->stream == b->stream && a->off == b->off;
}

// the pair holding the noise of (key, at), or -1
static int gpt2_pair_find_noise(const Gpt2OptCtx* c, const IvonNoiseKey* key, int at) {
    for (int p = 0; p < 2; p++)
        if (c->pair[p] == GPT2_PAIR_NOISE && c->pair_at[p] == at && gpt2_same_key(&c->pair_key[p], key)) return p;
    return -1;
}

// the pair holding the noise of an accumulation of sample k into pair acc, or -1; only sample 1 may find its own pair
static int gpt2_pair_noise_for(const Gpt2OptCtx* c, const IvonNoiseKey* key, int at, int acc, int k) {
    int p = gpt2_pair_find_noise(c, key, at);
    if (p == acc && k != 1) fatalf("accumulate: sample %d into a pair that held no accumulators", k);
    return p;
}

// h changes (update, anchor commit): the noise held is stale, its pairs free again
static void gpt2_pair_drop_noise(Gpt2OptCtx* c) {
    for (int p = 0; p < 2; p++)
        if (c->pair[p] == GPT2_PAIR_NOISE) c->pair[p] = GPT2_PAIR_FREE;
}

// Welford accumulation with the noise held by a pair (the sample op's) or else regenerated from key and h
static void gpt2_accumulate_now(Gpt2OptCtx* c, int acc, int grads, int at, float clip, const IvonNoiseKey* key,
                                int k) {
    GPT2* model = c->model;
    float* ag = acc == OPT_ACC_OUT ? model->acc_grad_out : model->acc_grad;
    float* an = gpt2_pair_noise_grad(model, acc);
    const float* g = grads == OPT_GRADS_SAVED ? model->grads_in : model->grads_memory;
    const float* h = at == OPT_AT_ANCHOR ? model->anchor_hess : model->hess;
    int p = gpt2_pair_noise_for(c, key, at, acc, k);
    if (p >= 0) {
        ivon_accumulate_noise(ag, an, g, clip, gpt2_pair_noise_grad(model, p), model->num_parameters, k);
        c->pair[p] = GPT2_PAIR_FREE;  // p == acc: LIVE below
    } else {
        gpt2_ivon_accumulate_all(model, c->oc, ag, an, g, clip, h, key, k);
    }
    c->pair[acc] = GPT2_PAIR_LIVE;
}

// the pending accumulation carried out; returns the model
static GPT2* gpt2_ops_flushed(void* t) {
    Gpt2OptCtx* c = (Gpt2OptCtx*)t;
    Gpt2PendingAcc* p = &c->pending;
    if (p->active) {
        p->active = 0;
        gpt2_accumulate_now(c, p->acc, p->grads, p->at, p->clip, &p->key, p->k);
    }
    return c->model;
}

static void gpt2_op_zero_grad(void* t) { gpt2_zero_grad(gpt2_ops_flushed(t)); }

static void gpt2_op_forward_backward(void* t, const int* inputs, const int* targets, float loss_scale,
                                     int count_loss) {
    GPT2* model = gpt2_ops_flushed(t);
    gpt2_forward(model, inputs, targets, model->batch_size, model->seq_len);
    gpt2_backward(model, loss_scale);
    if (count_loss) ((Gpt2OptCtx*)t)->loss_sum += model->mean_loss;
}

static double gpt2_op_loss_sum(void* t) {
    Gpt2OptCtx* c = (Gpt2OptCtx*)t;
    double s = c->loss_sum;
    c->loss_sum = 0.0;
    return s;
}

static void gpt2_op_poison_grad(void* t) { gpt2_ops_flushed(t)->grads_memory[0] = NAN; }

static float gpt2_op_grad_norm(void* t) { return gpt2_grad_norm(gpt2_ops_model(t)); }

static void gpt2_op_save_grads(void* t) {
    GPT2* model = gpt2_ops_flushed(t);
    memcpy(model->grads_in, model->grads_memory, model->num_parameters * sizeof(float));
}

static float gpt2_op_diff_norm(void* t, float gamma) {
    GPT2* model = gpt2_ops_flushed(t);
    return gpt2_diff_norm(model->grads_in, model->grads_memory, gamma, model->num_parameters);
}

// theta = m + sigma eps; the noise also into a free accumulator pair (IN first) for the accumulate op
static void gpt2_op_sample(void* t, int at, const IvonNoiseKey* key) {
    Gpt2OptCtx* c = (Gpt2OptCtx*)t;
    GPT2* model = gpt2_ops_flushed(t);
    const float* m = at == OPT_AT_ANCHOR ? model->anchor_mean : model->mean;
    const float* h = at == OPT_AT_ANCHOR ? model->anchor_hess : model->hess;
    int p = c->pair[OPT_ACC_IN] == GPT2_PAIR_FREE ? OPT_ACC_IN : c->pair[OPT_ACC_OUT] == GPT2_PAIR_FREE ? OPT_ACC_OUT : -1;
    gpt2_ivon_sample_all(model, c->oc, model->params_memory, p >= 0 ? gpt2_pair_noise_grad(model, p) : NULL, m, h, key);
    if (p < 0) return;
    c->pair[p] = GPT2_PAIR_NOISE;
    c->pair_key[p] = *key;
    c->pair_at[p] = at;
}

static void gpt2_op_restore_mean(void* t) { gpt2_optimizer_restore_mean(gpt2_ops_model(t)); }

static void gpt2_op_accumulate(void* t, int acc, int grads, int at, float clip, const IvonNoiseKey* key, int k) {
    Gpt2OptCtx* c = (Gpt2OptCtx*)t;
    gpt2_ops_flushed(t);
    Gpt2PendingAcc p = {1, acc, grads, at, k, clip, *key};
    c->pending = p;
}

static void gpt2_op_accumulate_grad(void* t, int acc, float clip, int k) {
    GPT2* model = gpt2_ops_flushed(t);
    ((Gpt2OptCtx*)t)->pair[acc] = GPT2_PAIR_LIVE;
    float* ag = acc == OPT_ACC_OUT ? model->acc_grad_out : model->acc_grad;
    ivon_accumulate_grad(ag, model->grads_memory, clip, model->num_parameters, k);
}

static void gpt2_op_reduce_sum(void* t, double* v, int n) { dp_allreduce_sum(&gpt2_ops_model(t)->dist, v, n); }

static float gpt2_op_adamw_reduce(void* t) {
    GPT2* model = gpt2_ops_flushed(t);
    const DistInfo* d = &model->dist;
    size_t np = model->num_parameters;
    if (!(d->zero_stage > 0 && d->world > 1)) {
        dp_allreduce_mean(d, model->grads_memory, np);
        return gpt2_grad_norm(model);
    }
    // the norm of the averaged gradient from the shards' sums of squares
    dp_reduce_scatter_mean(d, model->grads_memory, np);
    double sq = 0.0;
    const float* g = model->grads_memory;
    for (size_t i = model->shard_lo; i < model->shard_hi; i++) sq += (double)g[i] * (double)g[i];
    dp_allreduce_sum(d, &sq, 1);
    return (float)sqrt(sq);
}

// the accumulators averaged over the processes (acc_grad, acc_noise_grad[, acc_grad_out, acc_noise_grad_out] are
// adjacent: one collective)
static void gpt2_op_reduce_acc(void* t, int poco, int grad_only, const IvonNoiseKey* key_in,
                               const IvonNoiseKey* key_out) {
    GPT2* model = gpt2_ops_model(t);
    const DistInfo* d = &model->dist;
    if (d->world == 1) return;  // the pending accumulation stays, for the update
    gpt2_ops_flushed(t);
    size_t np = model->num_parameters;
    ((Gpt2OptCtx*)t)->pair[OPT_ACC_IN] = ((Gpt2OptCtx*)t)->pair[OPT_ACC_OUT] = GPT2_PAIR_LIVE;
    if (grad_only) {
        gpt2_reduce_grad_only(model, ((Gpt2OptCtx*)t)->oc, poco, key_in, key_out);
    } else if (d->zero_stage > 0 && d->world > 1) {
        dp_reduce_scatter_mean(d, model->acc_grad, np);
        dp_reduce_scatter_mean(d, model->acc_noise_grad, np);
    } else {
        dp_allreduce_mean(d, model->acc_grad, (poco ? 4 : 2) * np);
    }
}

// gbar and the noise*gradient mean are adjacent: one collective
static void gpt2_op_reduce_mega(void* t, int with_noise) {
    GPT2* model = gpt2_ops_flushed(t);
    ((Gpt2OptCtx*)t)->pair[OPT_ACC_OUT] = GPT2_PAIR_LIVE;
    size_t np = model->num_parameters;
    dp_allreduce_mean(&model->dist, model->acc_grad_out, with_noise ? 2 * np : np);
}

static void gpt2_op_adamw_update(void* t, const OptimizerConfig* oc, float norm, float lr, int step) {
    GPT2* model = gpt2_ops_model(t);
    gpt2_adamw_apply(model, norm, lr, (float)oc->adamw_beta1, (float)oc->adamw_beta2, (float)oc->adamw_eps,
                     (float)oc->weight_decay, (float)oc->grad_clip, step + 1);
    const DistInfo* d = &model->dist;
    if (d->zero_stage > 0 && d->world > 1) dp_all_gather(d, model->params_memory, model->num_parameters);
}

// The pending accumulation if the update can fold it in (IVON: IN at the mean; PoCo: OUT at the anchor; one
// process), else carried out first. *noise: the buffer holding its noise, or NULL (regenerated).
static const Gpt2PendingAcc* gpt2_pending_for_update(Gpt2OptCtx* c, int poco, const float** noise) {
    Gpt2PendingAcc* p = &c->pending;
    int fold = p->active && c->model->dist.world == 1 &&
               (poco ? p->acc == OPT_ACC_OUT && p->at == OPT_AT_ANCHOR : p->acc == OPT_ACC_IN && p->at == OPT_AT_MEAN);
    if (!fold) {
        gpt2_ops_flushed(c);
        return NULL;
    }
    p->active = 0;
    int q = gpt2_pair_noise_for(c, &p->key, p->at, p->acc, p->k);
    *noise = q >= 0 ? gpt2_pair_noise_grad(c->model, q) : NULL;
    return p;
}

// the update per tensor (piece of this rank's shard) with its group's scalars, params_memory = the new m in the
// same pass, the pending accumulation folded in; ZeRO-1: m and h gathered, then params_memory = m
static IvonUpdateStats gpt2_op_ivon_update(void* t, const OptimizerConfig* oc, float lr, int step, int poco,
                                           float gamma) {
    Gpt2OptCtx* c = (Gpt2OptCtx*)t;
    GPT2* model = c->model;
    const DistInfo* d = &model->dist;
    int zero = d->zero_stage > 0 && d->world > 1;
    const float* noise = NULL;
    const Gpt2PendingAcc* pa = gpt2_pending_for_update(c, poco, &noise);
    const float* grads = pa != NULL && pa->grads == OPT_GRADS_SAVED ? model->grads_in : model->grads_memory;
    gpt2_pair_drop_noise(c);
    IvonScalars groups[2] = {ivon_scalars(oc, lr, ivon_group_delta(oc, 0), step + 1),
                             ivon_scalars(oc, lr, ivon_group_delta(oc, 1), step + 1)};
    int prox_mode = !oc->poco_prox ? IVON_PROX_NONE
                    : oc->poco_prox_in_momentum ? IVON_PROX_IN_MOMENTUM : IVON_PROX_NEXT_TO_DECAY;
    IvonUpdateStats total = {0, 0, 0.0, 0};
    size_t off, n;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        if (!gpt2_shard_piece(model, i, &off, &n)) continue;
        const IvonScalars* s = &groups[PARAM_TABLE[i].decay ? 1 : 0];
        float* theta = zero ? NULL : model->params_memory + off;
        IvonLastAcc la = {0};
        if (pa != NULL) {
            IvonLastAcc v = {grads + off, noise != NULL ? noise + off : NULL, &pa->key, off, pa->clip, pa->k};
            la = v;
        }
        IvonUpdateStats st;
        if (poco) {
            PocoSlice ps = {model->acc_grad_out + off, model->acc_noise_grad_out + off, model->anchor_mean + off,
                            model->anchor_hess + off, model->anchor_grad + off, model->anchor_hess_est + off,
                            gamma, prox_mode};
            st = poco_update_acc_to(theta, model->mean + off, model->momentum + off, model->hess + off,
                                    model->acc_grad + off, model->acc_noise_grad + off, &ps, pa != NULL ? &la : NULL,
                                    n, s);
        } else {
            st = ivon_update_acc_to(theta, model->mean + off, model->momentum + off, model->hess + off,
                                    model->acc_grad + off, model->acc_noise_grad + off, pa != NULL ? &la : NULL, n, s);
        }
        ivon_stats_add(&total, &st);
    }
    if (zero) {
        dp_all_gather(d, model->mean, model->num_parameters);
        dp_all_gather(d, model->hess, model->num_parameters);
        gpt2_optimizer_restore_mean(model);
    }
    return total;
}

// hbar = the Price Hessian of the mega-batch noise-gradient mean (or h); 1 if gbar and hbar are finite
static int gpt2_op_mega_finish(void* t, const OptimizerConfig* oc, int with_noise) {
    GPT2* model = gpt2_ops_flushed(t);
    ((Gpt2OptCtx*)t)->pair[OPT_ACC_OUT] = GPT2_PAIR_LIVE;
    size_t np = model->num_parameters;
    float* hbar = model->acc_noise_grad_out;
    if (with_noise) {
        float essf = (float)oc->ess;
        size_t off = 0;
        for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
            size_t n = model->param_sizes[i];
            float wdf = (float)ivon_group_delta(oc, PARAM_TABLE[i].decay);
            ivon_price_hessian(hbar + off, model->hess + off, n, essf, wdf);
            off += n;
        }
    } else {
        memcpy(hbar, model->hess, np * sizeof(float));
    }
    return gpt2_all_finite(model->acc_grad_out, np) && gpt2_all_finite(hbar, np);
}

// the OUT pair is copied into the anchor and free after it (the next OUT accumulation has k = 1)
static void gpt2_op_commit_anchor(void* t) {
    Gpt2OptCtx* c = (Gpt2OptCtx*)t;
    GPT2* model = gpt2_ops_flushed(t);
    size_t bytes = model->num_parameters * sizeof(float);
    memcpy(model->anchor_mean, model->mean, bytes);
    memcpy(model->anchor_hess, model->hess, bytes);
    memcpy(model->anchor_grad, model->acc_grad_out, bytes);
    memcpy(model->anchor_hess_est, model->acc_noise_grad_out, bytes);
    gpt2_pair_drop_noise(c);
    c->pair[OPT_ACC_OUT] = GPT2_PAIR_FREE;
}

// the operation table of the model for the driver
static OptimOps gpt2_optimizer_ops(GPT2* model, Gpt2OptCtx* t) {
    OptimOps ops = {
        .t = t, .dist = &model->dist, .micro_tokens = (long long)model->batch_size * model->seq_len,
        .anchor_step = &model->anchor_step, .mega_tokens = &model->mega_tokens, .last_update = &model->last_update,
        OPTIM_OPS_FNS(gpt2_op_),
    };
    return ops;
}

// One optimizer step (llmc/optim_step.h optim_step) on the model: AdamW, IVON or IVON-PoCo(Mo).
// Data parallel: the collectives over MPI; ZeRO-1: the reduction is a reduce-scatter, each process updates its
// shard (AdamW: parameters and moments; IVON: m, momentum, h), then the parameters (AdamW) or m and h (IVON) are
// gathered. A skipped step leaves params_memory = m (IVON/PoCo).
void gpt2_optimizer_step(GPT2* model, const OptimizerConfig* oc, int step, float lr, int micro_batches,
                         BatchFn next_batch, void* ctx, StepGuard* guard, StepStats* out) {
    if (model->opt_kind != oc->kind) fatalf("gpt2_optimizer_step: %s state, %s settings (call gpt2_optimizer_init)",
                                            optimizer_kind_name(model->opt_kind), optimizer_kind_name(oc->kind));
    if (micro_batches < 1) fatalf("gpt2_optimizer_step: %d micro-batches", micro_batches);
    Gpt2OptCtx t = gpt2_opt_ctx(model, oc);  // a new one per step: the accumulator pairs start free
    OptimOps ops = gpt2_optimizer_ops(model, &t);
    optim_step(&ops, oc, step, lr, micro_batches, next_batch, ctx, guard, out);
}

#ifdef TESTING
// tests: zero grads, forward and backward (loss scale 1) at params_memory as in a step; returns the grad norm
static inline float gpt2_micro_grad(GPT2* model, const int* inputs, const int* targets) {
    Gpt2OptCtx t = gpt2_opt_ctx(model, NULL);
    OptimOps ops = gpt2_optimizer_ops(model, &t);
    return optim_micro_grad(&ops, inputs, targets, 0, 0);
}
#endif

// the full optimizer state on every process before a checkpoint is written: ZeRO-1 keeps each shard's momentum
// (and AdamW's moments) up to date only on its owner
void gpt2_optimizer_gather_state(GPT2* model) {
    const DistInfo* d = &model->dist;
    if (d->zero_stage == 0 || d->world < 2) return;
    size_t np = model->num_parameters;
    if (model->opt_kind == OPT_ADAMW) {
        if (model->m_memory == NULL) return;
        dp_all_gather(d, model->m_memory, np);
        dp_all_gather(d, model->v_memory, np);
    } else if (model->momentum != NULL) {
        dp_all_gather(d, model->momentum, np);
    }
}

// gpt2_optimizer_diagnostics: quantiles over a fixed strided sample of <= 2^20 coordinates (OptimizerDiagnostics in
// llmc/train_common.h)
void gpt2_optimizer_diagnostics(GPT2* model, const OptimizerConfig* oc, OptimizerDiagnostics* d) {
    memset(d, 0, sizeof(*d));
    if (model->hess == NULL) return;
    size_t np = model->num_parameters, cap = model->diag_n;
    size_t stride = (np + cap - 1) / cap;
    float* hs = model->diag_scratch;
    float* ss = model->diag_scratch + cap;
    float essf = (float)oc->ess;
    size_t k = 0, tensor_end = 0;
    int t = -1;
    float wdf = 0.0f;
    for (size_t idx = 0; idx < np && k < cap; idx += stride, k++) {
        while (idx >= tensor_end) {
            t++;
            tensor_end += model->param_sizes[t];
            wdf = (float)ivon_group_delta(oc, PARAM_TABLE[t].decay);
        }
        hs[k] = model->hess[idx];
        ss[k] = ivon_sigma(model->hess[idx], essf, wdf);
    }
    train_diagnostics_from_sample(d, hs, ss, k, &model->last_update);
}


// ----------------------------------------------------------------------------
// evaluation: mean-weight and BMA val loss and calibration (the trainer's val step and eval_gpt2)

// Mean loss over `max_batches` batches of the val loader on each process (process r: batches r, r + P, ...),
// averaged over the processes; *bins: the calibration bins of the predictions, summed over the processes.
float evaluate_mean_loss(GPT2* model, DataLoader* loader, int max_batches, EceBins* bins) {
    dataloader_reset(loader);
    double sum = 0.0;
    ece_reset(bins);
    int V = model->config.vocab_size, Vp = model->config.padded_vocab_size;
    size_t bt = loader->B * loader->T;
    for (int i = 0; i < max_batches; i++) {
        dataloader_next_batch(loader);
        gpt2_forward(model, loader->inputs, loader->targets, (int)loader->B, (int)loader->T);
        sum += model->mean_loss;
        ece_add_batch(bins, model->acts.probs, bt, V, (size_t)Vp, loader->targets);
    }
    dp_allreduce_sum(&model->dist, &sum, 1);
    dp_allreduce_sum(&model->dist, (double*)bins, 3 * ECE_BINS);
    return (float)(sum / ((double)max_batches * model->dist.world));
}

// The weights of BMA sample s (0-based) into model->params_memory: the sample source of evaluate_bma_loss
typedef void (*BmaSampleFn)(void* ctx, GPT2* model, int s);

// the trainer's source: theta_s = m + sigma eps, stream BMA, sample s at `step` (gpt2_optimizer_sample_bma)
typedef struct {
    const OptimizerConfig* oc;
    int step;
} TrainBmaSource;

void gpt2_train_bma_sample(void* ctx, GPT2* model, int s) {
    const TrainBmaSource* src = (const TrainBmaSource*)ctx;
    gpt2_optimizer_sample_bma(model, src->oc, src->step, s);
}

// posterior-predictive (BMA) val loss with S samples theta_s from sample(ctx, model, s):
// per token lp(t) = logsumexp_s(lp_s(t)) - log S, loss = -mean_t lp(t). lse (max_batches, B*T) holds the running
// logsumexp. *bins: calibration of the predictive mean_s p_s (summed over the processes), summed per batch in
// prob_sum (B*T, Vp). params_memory holds the last sample afterwards (the caller restores the mean).
float evaluate_bma_loss(GPT2* model, BmaSampleFn sample, void* ctx, DataLoader* loader, int max_batches, int S,
                        float* lse, float* prob_sum, EceBins* bins) {
    size_t bt = loader->B * loader->T;
    int V = model->config.vocab_size, Vp = model->config.padded_vocab_size;
    size_t nprob = bt * (size_t)Vp;
    float invS = 1.0f / (float)S;
    ece_reset(bins);
    dataloader_reset(loader);
    for (int b = 0; b < max_batches; b++) {
        dataloader_next_batch(loader);
        for (int s = 0; s < S; s++) {
            sample(ctx, model, s);
            gpt2_forward(model, loader->inputs, loader->targets, (int)loader->B, (int)loader->T);
            train_bma_accumulate(lse + (size_t)b * bt, model->acts.losses, bt, s);
            const float* p = model->acts.probs;
            if (s == 0) {
                OMP_PRAGMA(parallel for schedule(static))
                for (size_t i = 0; i < nprob; i++) prob_sum[i] = p[i];
            } else {
                OMP_PRAGMA(parallel for schedule(static))
                for (size_t i = 0; i < nprob; i++) prob_sum[i] += p[i];
            }
        }
        OMP_PRAGMA(parallel for schedule(static))
        for (size_t i = 0; i < nprob; i++) prob_sum[i] *= invS;
        ece_add_batch(bins, prob_sum, bt, V, (size_t)Vp, loader->targets);
    }
    dp_allreduce_sum(&model->dist, (double*)bins, 3 * ECE_BINS);
    double loss = train_bma_loss(lse, (size_t)max_batches * bt, S);
    dp_allreduce_sum(&model->dist, &loss, 1);
    return (float)(loss / model->dist.world);
}


#ifndef TESTING
// ----------------------------------------------------------------------------
// main: training loop


// the next-token probabilities after a forward over tokens[0..t) (sampler_generate)
static const float* gpt2_next_probs(void* m, const int* tokens, int t) {
    GPT2* model = (GPT2*)m;
    gpt2_forward(model, tokens, NULL, 1, t);
    return model->acts.probs + (size_t)(t - 1) * model->config.padded_vocab_size;
}




int main(int argc, char** argv) {
    // model: from a descriptor (random init), from a model file, or from the latest checkpoint in -o
    static TrainRun run;
    TrainRun* r = &run;
    GPT2 model;
    GPT2Config mc;
    int from_file = train_run_parse(r, argc, argv, &mc);
#ifdef USE_MPI
    int init = dist_resolve_init_or_exit(&r->cfg, 1, 0, "train_gpt2mpi");
    int rank = 0, world = 1;
    mpiCheck(MPI_Init(&argc, &argv));
    mpiCheck(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    mpiCheck(MPI_Comm_size(MPI_COMM_WORLD, &world));
    train_run_set_dist(r, rank, world, -1, world > 1 ? DIST_INIT_MPI : init);
#else
    train_run_set_dist(r, 0, 1, 0, dist_resolve_init_or_exit(&r->cfg, 0, 0, "train_gpt2mpi (make train_gpt2mpi)"));
#endif
    if (from_file == 0) gpt2_build_random(&model, mc, r->cfg.seed);
    else gpt2_build_from_checkpoint(&model, r->path);
    train_run_setup(r, model.config, model.num_parameters);
    if (r->dist.zero_stage > 0 && r->oc.kind == OPT_POCO)
        fatalf("flag -zs: ZeRO-1 sharding in train_gpt2 supports -opt adamw and ivon, not poco (train_gpt2cu has it)");
    train_run_print_dist(r, model.num_parameters, 4, 4);
    const int B = r->B, T = r->T;
    OptimizerConfig* oc = &r->oc;
#ifdef _OPENMP
    printf("threads: %d (OpenMP)\n", omp_get_max_threads());
#else
    printf("threads: 1 (built without OpenMP)\n");
#endif

    gpt2_allocate(&model, B, T);
    gpt2_set_dist(&model, &r->dist);
    gpt2_optimizer_init(&model, oc);

    int start_step = 0;
    if (r->resume_step >= 0) {
        StateHeader sh;
        float* bufs[6];
        int nbuf = gpt2_optimizer_state_buffers(&model, bufs);
        checkpoint_state_path(r->path, sizeof(r->path), r->cfg.output_log_dir, r->resume_step);
        checkpoint_read_state(r->path, &sh, bufs, nbuf, model.num_parameters);
        train_run_restore(r, r->path, &sh, &model.anchor_step, &model.mega_tokens);
        start_step = r->resume_step;
        printf("resumed from %s at step %d\n", r->path, start_step);
    }
    // the loop's buffers, after the resume: a resume error exits with nothing allocated outside the model
    // (LeakSanitizer reported gen_tokens as lost at that exit)
    int* gen_tokens = (int*)mallocCheck((size_t)T * sizeof(int));
    float* bma_lse = NULL;       // (val_batches, B*T)
    float* bma_prob_sum = NULL;  // (B*T, Vp)
    if (r->run_val && r->bma_samples > 0) {
        bma_lse = (float*)mallocCheck((size_t)r->val_batches * B * T * sizeof(float));
        bma_prob_sum = (float*)mallocCheck((size_t)B * T * model.config.padded_vocab_size * sizeof(float));
    }
    TrainBatches batches = {&r->train_loader, r->cfg.overfit_single_batch, 0};

    double total_ms = 0.0;
    int timed_steps = 0;
    for (int step = start_step; step <= r->max_steps; step++) {
        if (train_run_val_due(r, step)) {
            double bma_ece = -1.0;
            EceBins bins;
            float val_loss = evaluate_mean_loss(&model, &r->val_loader, r->val_batches, &bins);
            double ece = ece_value(&bins);
            float bma_loss = 0.0f;
            if (r->bma_samples > 0) {
                TrainBmaSource src = {oc, step};
                bma_loss = evaluate_bma_loss(&model, gpt2_train_bma_sample, &src, &r->val_loader, r->val_batches,
                                             r->bma_samples, bma_lse, bma_prob_sum, &bins);
                gpt2_optimizer_restore_mean(&model);
                bma_ece = ece_value(&bins);
            }
            train_report_val(&r->logger, step, val_loss, r->bma_samples, bma_loss, ece, bma_ece);
            if (oc->kind != OPT_ADAMW) {
                OptimizerDiagnostics d;
                gpt2_optimizer_diagnostics(&model, oc, &d);
                train_report_diagnostics(&r->logger, step, &d);
            }
        }
        if (train_run_sample_due(r, step))
            sampler_generate(gpt2_next_probs, &model, &r->tokenizer, gen_tokens, r->gen_len, model.config.vocab_size,
                             r->cfg.seed, step);
        if (train_run_checkpoint_due(r, step, start_step)) gpt2_optimizer_gather_state(&model);
        if (train_run_checkpoint_due(r, step, start_step) && r->dist.rank == 0) {
            checkpoint_model_path(r->path, sizeof(r->path), r->cfg.output_log_dir, step);
            gpt2_write_model(&model, r->path);
            StateHeader sh = train_run_state_header(r, step, model.num_parameters, model.anchor_step, model.mega_tokens);
            float* bufs[6];
            int nbuf = gpt2_optimizer_state_buffers(&model, bufs);
            checkpoint_state_path(r->path, sizeof(r->path), r->cfg.output_log_dir, step);
            checkpoint_write_state(r->path, &sh, (const float* const*)bufs, nbuf, model.num_parameters);
            train_run_checkpoint_done(r, step);
        }
        if (step == r->max_steps) break;

        double t0 = train_time_now_s();
        float lr = lr_scheduler_get(&r->sched, step);
        StepStats st;
        gpt2_optimizer_step(&model, oc, step, lr, r->grad_accum, train_next_batch, &batches, &r->guard, &st);
        double ms = 1e3 * (train_time_now_s() - t0);
        if (step > start_step) { total_ms += ms; timed_steps++; }  // first step warms caches
        train_report_step(&r->logger, oc->kind, step, r->max_steps, &st, lr, ms, r->total_batch);
        train_run_account_step(r, step, &st);
    }
    if (timed_steps > 0) printf("total average iteration time: %.1f ms\n", total_ms / timed_steps);
    if (r->skipped_total > 0) printf("skipped steps: %d\n", r->skipped_total);

    free(bma_lse);
    free(bma_prob_sum);
    free(gen_tokens);
    train_run_free(r);
    gpt2_free(&model);
#ifdef USE_MPI
    mpiCheck(MPI_Finalize());
#endif
    return 0;
}
#endif
