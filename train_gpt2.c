// GPT-2 training on the CPU in fp32: hand-written forward and backward kernels for every layer,
// OpenMP-parallel (also builds without OpenMP), packed GEMM for the linear layers, AdamW.
#define _POSIX_C_SOURCE 200809L
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
#include "llmc/gemm_cpu.h"
#include "llmc/optim.h"
#include "llmc/checkpoint.h"
#include "llmc/cli.h"
#include "llmc/dataloader.h"
#include "llmc/logger.h"
#include "llmc/philox.h"
#include "llmc/schedule.h"
#include "llmc/tokenizer.h"

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
                const float* q = qkv + ((size_t)b * T + t) * C3 + (size_t)h * hs;
                float* a = att + (((size_t)b * NH + h) * T + t) * T;
                float maxv = -INFINITY;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float* k = qkv + ((size_t)b * T + t2) * C3 + C + (size_t)h * hs;
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
                for (int t2 = t + 1; t2 < T; t2++) a[t2] = 0.0f;
                float* o = out + ((size_t)b * T + t) * C + (size_t)h * hs;
                for (int i = 0; i < hs; i++) o[i] = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float* v = qkv + ((size_t)b * T + t2) * C3 + 2 * (size_t)C + (size_t)h * hs;
                    float w = a[t2];
                    for (int i = 0; i < hs; i++) o[i] += w * v[i];
                }
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
    float* wte;       // (Vp, C)
    float* wpe;       // (maxT, C)
    float* ln1w;      // (L, C)
    float* ln1b;      // (L, C)
    float* qkvw;      // (L, 3C, C)
    float* qkvb;      // (L, 3C)
    float* attprojw;  // (L, C, C)
    float* attprojb;  // (L, C)
    float* ln2w;      // (L, C)
    float* ln2b;      // (L, C)
    float* fcw;       // (L, 4C, C)
    float* fcb;       // (L, 4C)
    float* fcprojw;   // (L, C, 4C)
    float* fcprojb;   // (L, C)
    float* lnfw;      // (C)
    float* lnfb;      // (C)
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
    float* m_memory;  // AdamW first moment (num_parameters)
    float* v_memory;  // AdamW second moment (num_parameters)
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
    GPT2Config c = config;
    if (c.max_seq_len <= 0 || c.vocab_size <= 0 || c.padded_vocab_size < c.vocab_size || c.num_layers <= 0 ||
        c.num_heads <= 0 || c.channels <= 0 || c.channels % c.num_heads != 0)
        fatalf("%s: invalid model config maxT=%d V=%d Vp=%d L=%d NH=%d C=%d", what, c.max_seq_len, c.vocab_size,
               c.padded_vocab_size, c.num_layers, c.num_heads, c.channels);
    memset(model, 0, sizeof(*model));
    model->config = config;
    gpt2_param_sizes(model->param_sizes, config);
    model->num_parameters = gpt2_num_parameters(config);
    model->params_memory = (float*)mallocCheck(model->num_parameters * sizeof(float));
    gpt2_point_params(&model->params, model->params_memory, model->param_sizes);
    model->mean_loss = -1.0f;
}

void gpt2_build_from_checkpoint(GPT2* model, const char* path) {
    FILE* fp = fopenCheck(path, "rb");
    GPT2Config c;
    int version = model_read_header(fp, path, &c);
    gpt2_init_common(model, c, path);
    model_read_weights(fp, path, version, model->params_memory, model->num_parameters);
    fcloseCheck(fp, path);
}

// splitmix64: seeded 64-bit generator for the random initialization
static inline uint64_t gpt2_splitmix64(uint64_t* state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// fills x[0..n) with N(0, std^2) by Box-Muller on 24-bit uniforms in (0, 1)
static void gpt2_fill_normal(float* x, size_t n, float std, uint64_t* state) {
    for (size_t i = 0; i < n; i += 2) {
        uint64_t r = gpt2_splitmix64(state);
        double u1 = ((double)(r >> 40) + 0.5) / 16777216.0;
        double u2 = ((double)((r >> 16) & 0xFFFFFF) + 0.5) / 16777216.0;
        double rad = sqrt(-2.0 * log(u1));
        x[i] = (float)(std * rad * cos(6.283185307179586 * u2));
        if (i + 1 < n) x[i + 1] = (float)(std * rad * sin(6.283185307179586 * u2));
    }
}

void gpt2_build_random(GPT2* model, GPT2Config config, uint64_t seed) {
    gpt2_init_common(model, config, "random init");
    GPT2Config c = config;
    uint64_t state = seed;
    float std = 0.02f;
    float proj_std = std / sqrtf(2.0f * c.num_layers);
    ParameterTensors* p = &model->params;
    size_t C = c.channels, V = c.vocab_size, Vp = c.padded_vocab_size;
    gpt2_fill_normal(p->wte, V * C, std, &state);
    memset(p->wte + V * C, 0, (Vp - V) * C * sizeof(float));  // padded rows stay zero
    gpt2_fill_normal(p->wpe, model->param_sizes[1], std, &state);
    gpt2_fill_normal(p->qkvw, model->param_sizes[4], std, &state);
    gpt2_fill_normal(p->attprojw, model->param_sizes[6], proj_std, &state);
    gpt2_fill_normal(p->fcw, model->param_sizes[10], std, &state);
    gpt2_fill_normal(p->fcprojw, model->param_sizes[12], proj_std, &state);
    float* ones[3] = {p->ln1w, p->ln2w, p->lnfw};
    size_t ones_n[3] = {model->param_sizes[2], model->param_sizes[8], model->param_sizes[14]};
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < ones_n[k]; i++) ones[k][i] = 1.0f;
    float* zeros[6] = {p->ln1b, p->qkvb, p->attprojb, p->ln2b, p->fcb, p->fcprojb};
    size_t zeros_n[6] = {model->param_sizes[3], model->param_sizes[5], model->param_sizes[7],
                         model->param_sizes[9], model->param_sizes[11], model->param_sizes[13]};
    for (int k = 0; k < 6; k++) memset(zeros[k], 0, zeros_n[k] * sizeof(float));
    memset(p->lnfb, 0, model->param_sizes[15] * sizeof(float));
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
    model->m_memory = (float*)callocCheck(np * sizeof(float));
    model->v_memory = (float*)callocCheck(np * sizeof(float));
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
    if (B < 1 || T < 1 || T > model->seq_len || (size_t)B * T > (size_t)model->batch_size * model->seq_len)
        fatalf("forward with B=%d T=%d exceeds the allocated B=%d T=%d", B, T, model->batch_size, model->seq_len);
    GPT2Config c = model->config;
    int V = c.vocab_size, Vp = c.padded_vocab_size, L = c.num_layers, NH = c.num_heads, C = c.channels;
    int N = B * T;
    for (int i = 0; i < N; i++) {
        if (inputs[i] < 0 || inputs[i] >= V) fatalf("input token id %d at position %d is outside [0, %d)", inputs[i], i, V);
        if (targets != NULL && (targets[i] < 0 || targets[i] >= V))
            fatalf("target token id %d at position %d is outside [0, %d)", targets[i], i, V);
    }
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

// Returns the global gradient norm before clipping.
float gpt2_adamw_step(GPT2* model, float lr, float beta1, float beta2, float eps, float weight_decay, float grad_clip,
                      int t) {
    if (model->m_memory == NULL) fatalf("gpt2_adamw_step before gpt2_allocate");
    float norm = gpt2_grad_norm(model);
    float scale = grad_clip > 0.0f && norm > grad_clip ? grad_clip / norm : 1.0f;
    size_t off = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t n = model->param_sizes[i];
        float wd = PARAM_TABLE[i].decay ? weight_decay : 0.0f;
        adamw_update(model->params_memory + off, model->grads_memory + off, model->m_memory + off,
                     model->v_memory + off, n, lr, beta1, beta2, eps, wd, scale, t);
        off += n;
    }
    return norm;
}

// llm.c model file, version 3 fp32, written atomically
void gpt2_write_model(GPT2* model, const char* path) {
    checkpoint_write_model(path, model->config, model->params_memory, model->num_parameters);
}

void gpt2_free(GPT2* model) {
    free(model->params_memory);
    free(model->grads_memory);
    free(model->m_memory);
    free(model->v_memory);
    free(model->acts_memory);
    free(model->grads_acts_memory);
    free(model->inputs);
    free(model->targets);
    memset(model, 0, sizeof(*model));
}

#ifndef TESTING
// ----------------------------------------------------------------------------
// main: training loop

static double time_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Mean loss over up to `max_batches` sequential batches of the val loader.
static float evaluate_mean_loss(GPT2* model, DataLoader* loader, int max_batches) {
    dataloader_reset(loader);
    double sum = 0.0;
    for (int i = 0; i < max_batches; i++) {
        dataloader_next_batch(loader);
        gpt2_forward(model, loader->inputs, loader->targets, (int)loader->B, (int)loader->T);
        sum += model->mean_loss;
    }
    return (float)(sum / max_batches);
}

// Samples `gen_len` tokens after an EOT with temperature 1; the uniforms come from Philox keyed by
// (seed, step), counter = position, so a sample depends only on the weights, the seed and the step.
static void sample_and_print(GPT2* model, Tokenizer* tok, int* gen_tokens, int gen_len, uint64_t seed, int step) {
    int V = model->config.vocab_size, Vp = model->config.padded_vocab_size;
    gen_tokens[0] = GPT2_EOT;
    printf("generating:\n---\n");
    for (int t = 1; t < gen_len; t++) {
        gpt2_forward(model, gen_tokens, NULL, 1, t);
        const float* probs = model->acts.probs + (size_t)(t - 1) * Vp;
        uint32_t ctr[4] = {(uint32_t)t, 0u, 0x5a4d504cu /* "SMPL" */, 0u};
        uint32_t key[2] = {(uint32_t)seed ^ (uint32_t)step, (uint32_t)(seed >> 32)};
        uint32_t bits[4];
        philox4x32_10(ctr, key, bits);
        float coin = philox_uniform(bits[0]);
        float cdf = 0.0f;
        int next = V - 1;
        for (int i = 0; i < V; i++) {
            cdf += probs[i];
            if (coin < cdf) { next = i; break; }
        }
        gen_tokens[t] = next;
        tokenizer_print(tokenizer_decode(tok, (uint32_t)next));
        fflush(stdout);
    }
    printf("\n---\n");
}

int main(int argc, char** argv) {
    TrainConfig cfg;
    cli_defaults(&cfg);
    cli_parse_or_exit(&cfg, argc, argv);
    const int B = cfg.B, T = cfg.T;

    // model: from a descriptor (random init), from a model file, or from the latest checkpoint in -o
    GPT2 model;
    GPT2Config mc;
    int resume_step = -1;
    if (cfg.resume && cfg.output_log_dir != NULL) resume_step = checkpoint_find_latest(cfg.output_log_dir);
    if (cfg.resume && cfg.output_log_dir == NULL) fatalf("flag -y: resuming needs an output directory (-o)");
    char path[4096];
    if (resume_step >= 0) {
        checkpoint_model_path(path, sizeof(path), cfg.output_log_dir, resume_step);
        gpt2_build_from_checkpoint(&model, path);
    } else if (gpt2_config_from_descriptor(cfg.model, &mc) == 0) {
        gpt2_build_random(&model, mc, cfg.seed);
    } else {
        gpt2_build_from_checkpoint(&model, cfg.model);
    }
    if (T > model.config.max_seq_len)
        fatalf("flag -t: sequence length %d exceeds the model's context %d", T, model.config.max_seq_len);

    // batch and gradient accumulation
    int grad_accum;
    long long total_batch;
    char err[512];
    if (cli_resolve_total_batch(&cfg, &grad_accum, &total_batch, err, sizeof(err)) != 0) fatalf("%s", err);

    DataLoader train_loader, val_loader;
    dataloader_init(&train_loader, cfg.train_data_pattern, B, T, 0, 1, 1, cfg.seed);
    int run_val = cfg.val_loss_every > 0;
    if (run_val) dataloader_init(&val_loader, cfg.val_data_pattern, B, T, 0, 1, 0, cfg.seed);
    int max_steps = cfg.max_steps;
    if (max_steps < 0) {
        max_steps = (int)(dataloader_num_batches(&train_loader) / grad_accum);
        if (max_steps < 1) fatalf("flag -d: one step needs %d batches but the train data has %zu", grad_accum,
                                  (size_t)dataloader_num_batches(&train_loader));
    }
    int val_batches = 0;
    if (run_val) {
        val_batches = cfg.val_max_steps;
        if (val_batches < 0 || (size_t)val_batches > dataloader_num_batches(&val_loader))
            val_batches = (int)dataloader_num_batches(&val_loader);
    }

    Tokenizer tokenizer;
    int run_sample = cfg.sample_every > 0;
    int gen_len = cfg.gen_tokens + 1 < T ? cfg.gen_tokens + 1 : T;  // EOT + generated tokens, within T
    if (run_sample) tokenizer_init(&tokenizer, cfg.tokenizer_path);

    LRScheduler sched;
    lr_scheduler_init(&sched, cfg.lr_schedule, cfg.learning_rate, cfg.warmup_iterations, max_steps, cfg.final_lr_frac);
    Logger logger;
    logger_init(&logger, cfg.output_log_dir, 0, resume_step >= 0);

    cli_print_table(stdout, &cfg);
    GPT2Config c = model.config;
    printf("model: L=%d NH=%d C=%d maxT=%d V=%d Vp=%d, %zu parameters\n", c.num_layers, c.num_heads, c.channels,
           c.max_seq_len, c.vocab_size, c.padded_vocab_size, model.num_parameters);
    printf("batch: B=%d T=%d, grad accumulation %d -> %lld tokens per step; %d steps\n", B, T, grad_accum,
           total_batch, max_steps);
    printf("train data: %zu tokens, %zu batches per epoch\n", (size_t)train_loader.num_tokens,
           (size_t)dataloader_num_batches(&train_loader));
    if (run_val) printf("val data: %zu tokens, %d batches per evaluation\n", (size_t)val_loader.num_tokens, val_batches);
#ifdef _OPENMP
    printf("threads: %d (OpenMP)\n", omp_get_max_threads());
#else
    printf("threads: 1 (built without OpenMP)\n");
#endif

    gpt2_allocate(&model, B, T);
    int* gen_tokens = (int*)mallocCheck((size_t)T * sizeof(int));

    int start_step = 0;
    if (resume_step >= 0) {
        StateHeader sh;
        float* bufs[2] = {model.m_memory, model.v_memory};
        checkpoint_state_path(path, sizeof(path), cfg.output_log_dir, resume_step);
        checkpoint_read_state(path, &sh, bufs, 2, model.num_parameters);
        if (sh.step != resume_step) fatalf("state file '%s' holds step %d, expected %d", path, sh.step, resume_step);
        DataLoaderState ds = {sh.loader_epoch, sh.loader_shard, sh.loader_window};
        dataloader_set_state(&train_loader, ds);
        start_step = resume_step;
        printf("resumed from %s at step %d\n", path, start_step);
    }

    double total_ms = 0.0;
    int timed_steps = 0;
    for (int step = start_step; step <= max_steps; step++) {
        int last_step = step == max_steps;

        if (run_val && (step % cfg.val_loss_every == 0 || last_step)) {
            float val_loss = evaluate_mean_loss(&model, &val_loader, val_batches);
            printf("step %d: val loss %.6f\n", step, val_loss);
            logger_log_val(&logger, step, val_loss);
        }
        if (run_sample && step > 0 && (step % cfg.sample_every == 0 || last_step)) {
            sample_and_print(&model, &tokenizer, gen_tokens, gen_len, cfg.seed, step);
        }
        if (cfg.output_log_dir != NULL && cfg.checkpoint_every > 0 && step > start_step &&
            (step % cfg.checkpoint_every == 0 || last_step)) {
            checkpoint_model_path(path, sizeof(path), cfg.output_log_dir, step);
            gpt2_write_model(&model, path);
            StateHeader sh;
            memset(&sh, 0, sizeof(sh));
            DataLoaderState ds = dataloader_get_state(&train_loader);
            sh.step = step;
            sh.optimizer = 0;
            sh.num_parameters = model.num_parameters;
            sh.loader_epoch = ds.epoch; sh.loader_shard = ds.shard; sh.loader_window = ds.window;
            sh.seed = cfg.seed;
            const float* bufs[2] = {model.m_memory, model.v_memory};
            checkpoint_state_path(path, sizeof(path), cfg.output_log_dir, step);
            checkpoint_write_state(path, &sh, bufs, 2, model.num_parameters);
            checkpoint_write_done(cfg.output_log_dir, step);
            printf("checkpoint: step %d written to %s\n", step, cfg.output_log_dir);
        }
        if (last_step) break;

        double t0 = time_now_s();
        gpt2_zero_grad(&model);
        double loss_sum = 0.0;
        for (int micro = 0; micro < grad_accum; micro++) {
            if (!cfg.overfit_single_batch || (step == start_step && micro == 0)) dataloader_next_batch(&train_loader);
            gpt2_forward(&model, train_loader.inputs, train_loader.targets, B, T);
            gpt2_backward(&model, 1.0f / grad_accum);
            loss_sum += model.mean_loss;
        }
        float loss = (float)(loss_sum / grad_accum);
        float lr = lr_scheduler_get(&sched, step);
        float norm = gpt2_adamw_step(&model, lr, 0.9f, 0.95f, 1e-8f, cfg.weight_decay, 1.0f, step + 1);
        double ms = 1e3 * (time_now_s() - t0);
        if (step > start_step) { total_ms += ms; timed_steps++; }  // first step warms caches
        double tok_s = (double)total_batch / (ms / 1e3);
        printf("step %4d/%d | loss %.6f | norm %.4f | lr %.2e | %.1f ms | %.0f tok/s\n", step + 1, max_steps, loss,
               norm, lr, ms, tok_s);
        logger_log_train(&logger, step + 1, loss, lr, norm, ms, tok_s);
    }
    if (timed_steps > 0) printf("total average iteration time: %.1f ms\n", total_ms / timed_steps);

    free(gen_tokens);
    if (run_sample) tokenizer_free(&tokenizer);
    logger_free(&logger);
    if (run_val) dataloader_free(&val_loader);
    dataloader_free(&train_loader);
    gpt2_free(&model);
    return 0;
}
#endif
