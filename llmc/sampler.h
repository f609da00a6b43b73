// Token sampling for the generated text of both trainers: a pure function of the distribution, the seed, the
// step and the position (Philox, llmc/philox.h), and the generation loop around a target's forward.
#ifndef LLMC_SAMPLER_H
#define LLMC_SAMPLER_H

#include <stdint.h>
#include <stdio.h>
#include "philox.h"
#include "model.h"
#include "tokenizer.h"

// Next token of a sample from probs (V entries, summing to 1): the uniform comes from Philox keyed by
// (seed, step) with counter = position t, so a sample depends only on the weights, the seed and the step.
static inline int train_sample_token(const float* probs, int V, uint64_t seed, int step, int t) {
    uint32_t ctr[4] = {(uint32_t)t, 0u, 0x5a4d504cu /* "SMPL" */, 0u};
    uint32_t key[2] = {(uint32_t)seed ^ (uint32_t)step, (uint32_t)(seed >> 32)};
    uint32_t bits[4];
    philox4x32_10(ctr, key, bits);
    float coin = philox_uniform(bits[0]);
    float cdf = 0.0f;
    for (int i = 0; i < V; i++) {
        cdf += probs[i];
        if (coin < cdf) return i;
    }
    return V - 1;
}

// next-token probabilities (V entries) after a forward over tokens[0..t) on the target's model
typedef const float* (*SamplerProbsFn)(void* model, const int* tokens, int t);

// Generates gen_len - 1 tokens after an EOT into tokens (gen_len entries) with temperature 1 and prints them
// between "---" lines as they come.
static inline void sampler_generate(SamplerProbsFn next_probs, void* model, const Tokenizer* tok, int* tokens,
                                    int gen_len, int V, uint64_t seed, int step) {
    tokens[0] = GPT2_EOT;
    printf("generating:\n---\n");
    for (int t = 1; t < gen_len; t++) {
        int next = train_sample_token(next_probs(model, tokens, t), V, seed, step, t);
        tokens[t] = next;
        tokenizer_print(tokenizer_decode(tok, (uint32_t)next));
        fflush(stdout);
    }
    printf("\n---\n");
}

#endif // LLMC_SAMPLER_H
