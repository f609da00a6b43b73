// Random initialisation of the GPT-2 weights on the host (fp32, model-file layout), seeded.
// Used by both trainers (gpt2_build_random) and matched by train_gpt2.py: N(0, 0.02) for wte (rows < V;
// padded rows 0), wpe, qkvw, fcw; N(0, 0.02 / sqrt(2L)) for attprojw and fcprojw; layernorm weights 1; biases 0.
#ifndef LLMC_MODEL_INIT_H
#define LLMC_MODEL_INIT_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include "model.h"

// splitmix64: seeded 64-bit generator for the random initialization
static inline uint64_t model_init_splitmix64(uint64_t* state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// fills x[0..n) with N(0, std^2) by Box-Muller on 24-bit uniforms in (0, 1)
static inline void model_init_fill_normal(float* x, size_t n, float std, uint64_t* state) {
    for (size_t i = 0; i < n; i += 2) {
        uint64_t r = model_init_splitmix64(state);
        double u1 = ((double)(r >> 40) + 0.5) / 16777216.0;
        double u2 = ((double)((r >> 16) & 0xFFFFFF) + 0.5) / 16777216.0;
        double rad = sqrt(-2.0 * log(u1));
        x[i] = (float)(std * rad * cos(6.283185307179586 * u2));
        if (i + 1 < n) x[i + 1] = (float)(std * rad * sin(6.283185307179586 * u2));
    }
}

// params: all gpt2_num_parameters(c) floats, the 16 tensors in PARAM_TABLE order
static inline void model_init_random(float* params, GPT2Config c, uint64_t seed) {
    size_t sizes[NUM_PARAMETER_TENSORS];
    float* t[NUM_PARAMETER_TENSORS];
    gpt2_param_sizes(sizes, c);
    float* p = params;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        t[i] = p;
        p += sizes[i];
    }
    uint64_t state = seed;
    float std = 0.02f;
    float proj_std = std / sqrtf(2.0f * c.num_layers);
    size_t C = c.channels, V = c.vocab_size, Vp = c.padded_vocab_size;
    model_init_fill_normal(t[0], V * C, std, &state);
    memset(t[0] + V * C, 0, (Vp - V) * C * sizeof(float));  // padded rows stay zero
    model_init_fill_normal(t[1], sizes[1], std, &state);     // wpe
    model_init_fill_normal(t[4], sizes[4], std, &state);     // qkvw
    model_init_fill_normal(t[6], sizes[6], proj_std, &state);   // attprojw
    model_init_fill_normal(t[10], sizes[10], std, &state);   // fcw
    model_init_fill_normal(t[12], sizes[12], proj_std, &state); // fcprojw
    const int ones[3] = {2, 8, 14};            // ln1w, ln2w, lnfw
    const int zeros[7] = {3, 5, 7, 9, 11, 13, 15};  // ln1b, qkvb, attprojb, ln2b, fcb, fcprojb, lnfb
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < sizes[ones[k]]; i++) t[ones[k]][i] = 1.0f;
    for (int k = 0; k < 7; k++) memset(t[zeros[k]], 0, sizes[zeros[k]] * sizeof(float));
}

#endif // LLMC_MODEL_INIT_H
