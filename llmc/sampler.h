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
// The CDF is summed in double and the uniform scaled by the double total: a float CDF over 50257 entries carries
// an error (~sqrt(V) ulps) as large as one token's probability, so two implementations whose probabilities agree
// to 1e-7 would pick different tokens; in double only a token within ~1e-10 of the uniform can flip.
static inline int train_sample_token(const float* probs, int V, uint64_t seed, int step, int t) {
    uint32_t ctr[4] = {(uint32_t)t, 0u, 0x5a4d504cu /* "SMPL" */, 0u};
    uint32_t key[2] = {(uint32_t)seed ^ (uint32_t)step, (uint32_t)(seed >> 32)};
    uint32_t bits[4];
    philox4x32_10(ctr, key, bits);
    float coin = philox_uniform(bits[0]);
    double total = 0.0;
    for (int i = 0; i < V; i++) total += probs[i];
    double target = (double)coin * total, cdf = 0.0;
    for (int i = 0; i < V; i++) {
        cdf += probs[i];
        if (target < cdf) return i;
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
