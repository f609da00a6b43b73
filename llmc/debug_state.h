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

#endif // LLMC_DEBUG_STATE_H
