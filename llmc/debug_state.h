// Reader of the PyTorch debug state (train_gpt2.py docstring) for test_gpt2.c and test_gpt2.cu:
// int32[256] header (magic 20240327, version 1, B, T, N, V, Vp, #params, AdamW settings as float bits),
// then inputs, targets, logits, loss, grads, N step losses and grad norms. Every mismatch with the model is an error.
#ifndef LLMC_DEBUG_STATE_H
#define LLMC_DEBUG_STATE_H

#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include "utils.h"
#include "model.h"
#include "optim.h"

#define DEBUG_MAGIC 20240327
#define DEBUG_VERSION 1

typedef struct {
    int B, T, N;
    size_t num_params;
    float lr, beta1, beta2, eps, weight_decay, grad_clip;
    int* tokens;     // one allocation: inputs, targets
    float* ref;      // one allocation: logits .. norms
    int* inputs;     // (B, T)
    int* targets;    // (B, T)
    float* logits;   // (B, T, V)
    float* loss;     // (1)
    float* grads;    // (num_params)
    float* losses;   // (N)
    float* norms;    // (N)
} DebugState;

static inline float debug_state_bits_to_float(int32_t x) {
    float f;
    memcpy(&f, &x, sizeof(f));
    return f;
}

static inline void debug_state_read(DebugState* d, const char* state_path, const char* model_path, GPT2Config cfg,
                                    size_t model_params) {
    int V = cfg.vocab_size, Vp = cfg.padded_vocab_size;
    FILE* fp = fopenCheck(state_path, "rb");
    long fsize = fileSizeCheck(fp, state_path);
    int32_t header[256];
    if (fsize < (long)sizeof(header)) fatalf("debug state '%s' is truncated: %ld bytes, header needs 1024", state_path, fsize);
    freadCheck(header, sizeof(int32_t), 256, fp, state_path);
    if (header[0] != DEBUG_MAGIC) fatalf("debug state '%s' has bad magic %d (want %d)", state_path, header[0], DEBUG_MAGIC);
    if (header[1] != DEBUG_VERSION)
        fatalf("debug state '%s' has unsupported version %d (want %d)", state_path, header[1], DEBUG_VERSION);
    int B = header[2], T = header[3], N = header[4];
    size_t np = (size_t)(uint32_t)header[7] | ((size_t)(uint32_t)header[8] << 32);
    if (B < 1 || T < 1 || T > cfg.max_seq_len || N < 0 || N > 100000)
        fatalf("debug state '%s' has impossible B=%d T=%d N=%d (model maxT %d)", state_path, B, T, N, cfg.max_seq_len);
    if (header[5] != V || header[6] != Vp)
        fatalf("debug state '%s' has V=%d Vp=%d but model '%s' has V=%d Vp=%d", state_path, header[5], header[6],
               model_path, V, Vp);
    if (np != model_params)
        fatalf("debug state '%s' has %zu parameters but model '%s' has %zu", state_path, np, model_path, model_params);
    d->lr = debug_state_bits_to_float(header[10]);
    d->beta1 = debug_state_bits_to_float(header[11]);
    d->beta2 = debug_state_bits_to_float(header[12]);
    d->eps = debug_state_bits_to_float(header[13]);
    d->weight_decay = debug_state_bits_to_float(header[14]);
    d->grad_clip = debug_state_bits_to_float(header[15]);
    if (!(d->lr > 0.0f) || !(d->beta1 >= 0.0f && d->beta1 < 1.0f) || !(d->beta2 >= 0.0f && d->beta2 < 1.0f) ||
        !(d->eps > 0.0f) || !(d->weight_decay >= 0.0f) || !(d->grad_clip >= 0.0f))
        fatalf("debug state '%s' has impossible AdamW settings lr=%g beta1=%g beta2=%g eps=%g wd=%g clip=%g", state_path,
               d->lr, d->beta1, d->beta2, d->eps, d->weight_decay, d->grad_clip);
    size_t BT = (size_t)B * T;
    size_t n_floats = BT * V + 1 + np + 2 * (size_t)N;
    size_t want = sizeof(header) + 2 * BT * sizeof(int32_t) + n_floats * sizeof(float);
    if ((size_t)fsize != want)
        fatalf("debug state '%s' has %ld bytes but its header (B=%d T=%d N=%d V=%d params=%zu) implies %zu", state_path,
               fsize, B, T, N, V, np, want);
    d->B = B;
    d->T = T;
    d->N = N;
    d->num_params = np;
    d->tokens = (int*)mallocCheck(2 * BT * sizeof(int));
    d->ref = (float*)mallocCheck(n_floats * sizeof(float));
    d->inputs = d->tokens;
    d->targets = d->tokens + BT;
    d->logits = d->ref;
    d->loss = d->logits + BT * V;
    d->grads = d->loss + 1;
    d->losses = d->grads + np;
    d->norms = d->losses + N;
    freadCheck(d->tokens, sizeof(int), 2 * BT, fp, state_path);
    freadCheck(d->ref, sizeof(float), n_floats, fp, state_path);
    fcloseCheck(fp, state_path);
    for (size_t i = 0; i < 2 * BT; i++)
        if (d->tokens[i] < 0 || d->tokens[i] >= V)
            fatalf("debug state '%s' has token %d at position %zu outside [0, %d)", state_path, d->tokens[i], i, V);
}

static inline void debug_state_free(DebugState* d) {
    free(d->tokens);
    free(d->ref);
    memset(d, 0, sizeof(*d));
}

// ----------------------------------------------------------------------------------------------
// comparison records of the test programs: OK/FAIL lines, counted for the closing `N passed, N failed`

static int test_n_pass = 0, test_n_fail = 0;

// one comparison of n floats: passes when max|c - ref| <= atol + rtol * max|ref|; non-finite c always fails
static inline void test_check(const char* name, const float* c, const float* ref, size_t n, double atol, double rtol) {
    double max_diff = 0.0, max_ref = 0.0;
    int bad_value = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(c[i])) bad_value = 1;
        double d = fabs((double)c[i] - (double)ref[i]);
        if (d > max_diff || isnan(d)) max_diff = d;
        if (fabs((double)ref[i]) > max_ref) max_ref = fabs((double)ref[i]);
    }
    double tol = atol + rtol * max_ref;
    double rel = max_ref > 0.0 ? max_diff / max_ref : max_diff;
    int ok = !bad_value && max_diff <= tol;
    printf("%-4s %-16s max abs diff %.3e  max rel diff %.3e (to max|ref| %.3e)  tol %.3e%s\n", ok ? "OK" : "FAIL",
           name, max_diff, rel, max_ref, tol, bad_value ? "  non-finite values" : "");
    if (ok) test_n_pass++; else test_n_fail++;
}

static inline void test_check_true(const char* name, int ok, const char* detail) {
    printf("%-4s %s%s%s\n", ok ? "OK" : "FAIL", name, detail[0] ? ": " : "", detail);
    if (ok) test_n_pass++; else test_n_fail++;
}

// ----------------------------------------------------------------------------------------------
// IVON / PoCo reference state (train_gpt2.py --opt ivon|poco; format in test_gpt2.c's header comment) for the --opt
// tests of test_gpt2.c and test_gpt2.cu: the settings, the stored micro-batches and the reference losses and state

#define OPT_STATE_MAGIC 20241124
#define OPT_STATE_VERSION 1
#define OPT_STATE_MAX_STEPS 64

typedef struct {
    OptimizerConfig oc;
    int B, T, N, K, nb;
    float lrs[OPT_STATE_MAX_STEPS];  // lr of step s
    size_t row_len;                  // B*T+1
    size_t np;                       // parameters
    int* tokens;                     // (nb, row_len)
    float* ref;                      // one allocation: losses (N), mean, momentum, hess (num_parameters each)
    float *losses, *mean, *momentum, *hess;
} OptRefState;

// Reads and checks the state file against the model (V, num_parameters); every mismatch is an error naming the file
static inline void opt_ref_state_read(OptRefState* r, const char* state_path, const char* model_path, GPT2Config cfg,
                                      size_t num_parameters) {
    memset(r, 0, sizeof(*r));
    FILE* fp = fopenCheck(state_path, "rb");
    long fsize = fileSizeCheck(fp, state_path);
    int32_t header[256];
    if (fsize < (long)sizeof(header)) fatalf("optimizer state '%s' is truncated: %ld bytes, header needs 1024", state_path, fsize);
    freadCheck(header, sizeof(int32_t), 256, fp, state_path);
    if (header[0] != OPT_STATE_MAGIC)
        fatalf("optimizer state '%s' has bad magic %d (want %d; AdamW debug states are read without --opt)", state_path,
               header[0], OPT_STATE_MAGIC);
    if (header[1] != OPT_STATE_VERSION)
        fatalf("optimizer state '%s' has unsupported version %d (want %d)", state_path, header[1], OPT_STATE_VERSION);
    int B = header[2], T = header[3], N = header[4], K = header[5], kind = header[6], nb = header[9];
    size_t num_params = (size_t)(uint32_t)header[7] | ((size_t)(uint32_t)header[8] << 32);
    if (B < 1 || T < 1 || T > cfg.max_seq_len || N < 1 || N > OPT_STATE_MAX_STEPS || K < 1 || nb < 1 || nb > 1 << 20)
        fatalf("optimizer state '%s' has impossible B=%d T=%d N=%d K=%d nb=%d (model maxT %d)", state_path, B, T, N,
               K, nb, cfg.max_seq_len);
    if (kind != OPT_IVON && kind != OPT_POCO)
        fatalf("optimizer state '%s' has optimizer id %d (want %d ivon or %d poco)", state_path, kind, OPT_IVON, OPT_POCO);
    if (num_params != num_parameters)
        fatalf("optimizer state '%s' has %zu parameters but model '%s' has %zu", state_path, num_params, model_path,
               num_parameters);
    int flags = header[16];
    if (header[12] < 0 || (flags & ~0xff) != 0 || header[17] < 0 || header[17] > 1)
        fatalf("optimizer state '%s' has impossible rank %d, flags 0x%x or gamma schedule %d", state_path, header[12],
               flags, header[17]);
    OptimizerConfig* oc = &r->oc;
    optimizer_config_defaults(oc, kind);
    oc->ess = debug_state_bits_to_float(header[32]);
    oc->hess_init = debug_state_bits_to_float(header[33]);
    oc->beta1 = debug_state_bits_to_float(header[34]);
    oc->beta2 = debug_state_bits_to_float(header[35]);
    oc->clip_radius = debug_state_bits_to_float(header[36]);
    oc->prior_2d = debug_state_bits_to_float(header[37]);
    oc->prior_1d = debug_state_bits_to_float(header[38]);
    oc->grad_clip = debug_state_bits_to_float(header[39]);
    oc->poco_gamma = debug_state_bits_to_float(header[40]);
    oc->debias = (flags >> 0) & 1;
    oc->rescale_lr = (flags >> 1) & 1;
    oc->poco_shared_noise = (flags >> 2) & 1;
    oc->poco_prox = (flags >> 3) & 1;
    oc->poco_prox_in_momentum = (flags >> 4) & 1;
    oc->poco_momentum = (flags >> 5) & 1;
    oc->poco_clip_each = (flags >> 6) & 1;
    oc->poco_mega_noise = (flags >> 7) & 1;
    oc->poco_gamma_schedule = header[17];
    oc->poco_start = header[13];
    oc->poco_period = header[14];
    oc->poco_mega_batches = header[15];
    oc->max_steps = N;
    oc->seed = (uint64_t)(uint32_t)header[10] | ((uint64_t)(uint32_t)header[11] << 32);
    oc->rank = (uint32_t)header[12];
    char err[256];
    if (optimizer_config_check(oc, err, sizeof(err)) != 0)
        fatalf("optimizer state '%s' has impossible settings: %s", state_path, err);
    for (int s = 0; s < N; s++) {
        r->lrs[s] = debug_state_bits_to_float(header[41 + s]);
        if (!(r->lrs[s] >= 0.0f) || !isfinite(r->lrs[s]))
            fatalf("optimizer state '%s' has lr %g at step %d", state_path, r->lrs[s], s);
    }
    r->B = B, r->T = T, r->N = N, r->K = K, r->nb = nb;
    r->row_len = (size_t)B * T + 1;
    r->np = num_params;
    size_t n_tokens = (size_t)nb * r->row_len;
    size_t n_floats = (size_t)N + 3 * num_params;
    size_t want = sizeof(header) + n_tokens * sizeof(int32_t) + n_floats * sizeof(float);
    if ((size_t)fsize != want)
        fatalf("optimizer state '%s' has %ld bytes but its header (B=%d T=%d N=%d nb=%d params=%zu) implies %zu",
               state_path, fsize, B, T, N, nb, num_params, want);
    r->tokens = (int*)mallocCheck(n_tokens * sizeof(int));
    r->ref = (float*)mallocCheck(n_floats * sizeof(float));
    r->losses = r->ref;
    r->mean = r->ref + N;
    r->momentum = r->mean + num_params;
    r->hess = r->momentum + num_params;
    freadCheck(r->tokens, sizeof(int), n_tokens, fp, state_path);
    freadCheck(r->ref, sizeof(float), n_floats, fp, state_path);
    fcloseCheck(fp, state_path);
    for (size_t i = 0; i < n_tokens; i++)
        if (r->tokens[i] < 0 || r->tokens[i] >= cfg.vocab_size)
            fatalf("optimizer state '%s' has token %d at position %zu outside [0, %d)", state_path, r->tokens[i], i,
                   cfg.vocab_size);
}

static inline void opt_ref_state_print(const OptRefState* r, const char* prog, const char* model_path, size_t np) {
    const OptimizerConfig* oc = &r->oc;
    printf("%s --opt: model %s (%zu params), %s, B=%d T=%d, %d steps x %d micro-batches, %d stored; ess %g "
           "h0 %g b1 %g b2 %g r %g prior %g/%g clip %g seed %llu rank %u\n", prog, model_path, np,
           optimizer_kind_name(oc->kind), r->B, r->T, r->N, r->K, r->nb, oc->ess, oc->hess_init, oc->beta1, oc->beta2,
           oc->clip_radius, oc->prior_2d, oc->prior_1d, oc->grad_clip, (unsigned long long)oc->seed, oc->rank);
    if (oc->kind == OPT_POCO)
        printf("poco: gamma %g (%s), start %d, period %d, mega %d, shared noise %d, prox %d, prox in momentum %d, "
               "momentum %d, clip each %d, mega noise %d\n", oc->poco_gamma, oc->poco_gamma_schedule ? "linear" : "constant",
               oc->poco_start, oc->poco_period, oc->poco_mega_batches, oc->poco_shared_noise, oc->poco_prox,
               oc->poco_prox_in_momentum, oc->poco_momentum, oc->poco_clip_each, oc->poco_mega_noise);
}

static inline void opt_ref_state_free(OptRefState* r) {
    free(r->tokens);
    free(r->ref);
    memset(r, 0, sizeof(*r));
}

// the stored micro-batches, served in order through the BatchFn interface (llmc/optim_step.h)
typedef struct {
    const OptRefState* r;
    int next;
    const char* path;
} StoredBatches;

static inline void stored_batches_next(void* ctx, const int** inputs, const int** targets) {
    StoredBatches* sb = (StoredBatches*)ctx;
    if (sb->next >= sb->r->nb)
        fatalf("the optimizer asked for micro-batch %d but '%s' stores %d", sb->next + 1, sb->path, sb->r->nb);
    const int* row = sb->r->tokens + (size_t)sb->next * sb->r->row_len;
    *inputs = row;       // (B, T)
    *targets = row + 1;  // (B, T)
    sb->next++;
}

// records and prints one element-wise comparison of n floats: element i passes when
// |c - ref| <= atol + atol_max * max|ref| + rtol * |ref|; reports the worst ratio of difference to allowance
static inline void test_check_elems(const char* name, const float* c, const float* ref, size_t n, double atol,
                                    double atol_max, double rtol) {
    double max_ref = 0.0, max_diff = 0.0, worst = 0.0;
    int bad_value = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)ref[i]) > max_ref) max_ref = fabs((double)ref[i]);
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(c[i])) bad_value = 1;
        double d = fabs((double)c[i] - (double)ref[i]);
        double allow = atol + atol_max * max_ref + rtol * fabs((double)ref[i]);
        double ratio = allow > 0.0 ? d / allow : (d > 0.0 ? INFINITY : 0.0);
        if (d > max_diff || isnan(d)) max_diff = d;
        if (ratio > worst || isnan(ratio)) worst = ratio;
    }
    int ok = !bad_value && worst <= 1.0;
    printf("%-4s %-20s max abs diff %.3e  max|ref| %.3e  rel to max %.3e  worst diff/tol %.3f%s\n", ok ? "OK" : "FAIL",
           name, max_diff, max_ref, max_ref > 0.0 ? max_diff / max_ref : max_diff, worst,
           bad_value ? "  non-finite values" : "");
    if (ok) test_n_pass++; else test_n_fail++;
}

// tolerances of the --opt state comparison (the measurements behind them: test_gpt2.c, test_gpt2.cu)
typedef struct {
    double mean_outlier_atol, mean_outlier_frac;  // coordinates of the mean beyond atol: at most frac of all
    double atol[3], atol_max[3], rtol[3];         // mean, momentum, hess per element (test_check_elems)
} OptRefTol;

// the final mean, momentum and hess (host, np each) against the reference, per tensor, and the outlier count
static inline void opt_ref_compare(const OptRefState* r, const float* mean, const float* momentum, const float* hess,
                                   const size_t param_sizes[NUM_PARAMETER_TENSORS], size_t np, const OptRefTol* tol) {
    size_t outliers = 0;
    for (size_t i = 0; i < np; i++)
        if (!(fabs((double)mean[i] - (double)r->mean[i]) <= tol->mean_outlier_atol)) outliers++;
    size_t allowed = (size_t)(tol->mean_outlier_frac * (double)np);
    char detail[96], name[64];
    snprintf(detail, sizeof(detail), "%zu of %zu (allowed %zu)", outliers, np, allowed);
    snprintf(name, sizeof(name), "mean coordinates off by > %g", tol->mean_outlier_atol);
    test_check_true(name, outliers <= allowed, detail);
    const float* bufs[3] = {mean, momentum, hess};
    const float* refs[3] = {r->mean, r->momentum, r->hess};
    const char* names[3] = {"mean", "momentum", "hess"};
    for (int b = 0; b < 3; b++) {
        size_t off = 0;
        for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
            snprintf(name, sizeof(name), "%s %s", names[b], PARAM_TABLE[i].name);
            test_check_elems(name, bufs[b] + off, refs[b] + off, param_sizes[i], tol->atol[b], tol->atol_max[b],
                             tol->rtol[b]);
            off += param_sizes[i];
        }
    }
}

#endif // LLMC_DEBUG_STATE_H
