// GPT-2 configuration, size descriptors, the one parameter table, and the model file (llm.c format).
#ifndef LLMC_MODEL_H
#define LLMC_MODEL_H

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include "utils.h"

#define MODEL_MAGIC 20240326
#define MODEL_VERSION_FP32 3   // fp32 weights, padded vocab
#define MODEL_VERSION_BF16 5   // bf16 weights, padded vocab (written by llm.c's CUDA trainer)
#define GPT2_VOCAB 50257
#define GPT2_PADDED_VOCAB 50304
#define GPT2_EOT 50256

typedef struct {
    int max_seq_len;       // maxT, e.g. 1024
    int vocab_size;        // V, 50257
    int padded_vocab_size; // Vp, V rounded up to a multiple of 128 (50304)
    int num_layers;        // L
    int num_heads;         // NH
    int channels;          // C
} GPT2Config;

#define NUM_PARAMETER_TENSORS 16

// The 16 parameter tensors in PARAM_TABLE order, as pointers of element type T (float on the CPU, floatX on
// the GPU): `typedef struct { GPT2_PARAMETER_FIELDS(float) } ParameterTensors;`
#define GPT2_PARAMETER_FIELDS(T) \
    T* wte;       /* (Vp, C) */ \
    T* wpe;       /* (maxT, C) */ \
    T* ln1w;      /* (L, C) */ \
    T* ln1b;      /* (L, C) */ \
    T* qkvw;      /* (L, 3C, C) */ \
    T* qkvb;      /* (L, 3C) */ \
    T* attprojw;  /* (L, C, C) */ \
    T* attprojb;  /* (L, C) */ \
    T* ln2w;      /* (L, C) */ \
    T* ln2b;      /* (L, C) */ \
    T* fcw;       /* (L, 4C, C) */ \
    T* fcb;       /* (L, 4C) */ \
    T* fcprojw;   /* (L, C, 4C) */ \
    T* fcprojb;   /* (L, C) */ \
    T* lnfw;      /* (C) */ \
    T* lnfb;      /* (C) */

// The parameter table: order = model file order. Shapes in terms of (Vp, maxT, L, C).
// `decay` marks the 2-D weight matrices that get decoupled weight decay (AdamW) and the
// 2-D prior-precision group (IVON); the 1-D tensors (biases, layernorm) do not.
typedef struct {
    const char* name;
    const char* shape;  // shape comment, for humans and startup tables
    int decay;          // 1: 2-D weight matrix group, 0: 1-D group
} ParamInfo;

static const ParamInfo PARAM_TABLE[NUM_PARAMETER_TENSORS] = {
    {"wte",      "(Vp, C)",       1},
    {"wpe",      "(maxT, C)",     1},
    {"ln1w",     "(L, C)",        0},
    {"ln1b",     "(L, C)",        0},
    {"qkvw",     "(L, 3*C, C)",   1},
    {"qkvb",     "(L, 3*C)",      0},
    {"attprojw", "(L, C, C)",     1},
    {"attprojb", "(L, C)",        0},
    {"ln2w",     "(L, C)",        0},
    {"ln2b",     "(L, C)",        0},
    {"fcw",      "(L, 4*C, C)",   1},
    {"fcb",      "(L, 4*C)",      0},
    {"fcprojw",  "(L, C, 4*C)",   1},
    {"fcprojb",  "(L, C)",        0},
    {"lnfw",     "(C)",           0},
    {"lnfb",     "(C)",           0},
};

// element counts of the 16 tensors, in table order
static inline void gpt2_param_sizes(size_t sizes[NUM_PARAMETER_TENSORS], GPT2Config c) {
    size_t Vp = c.padded_vocab_size, maxT = c.max_seq_len, L = c.num_layers, C = c.channels;
    sizes[0] = Vp * C;          // wte
    sizes[1] = maxT * C;        // wpe
    sizes[2] = L * C;           // ln1w
    sizes[3] = L * C;           // ln1b
    sizes[4] = L * 3 * C * C;   // qkvw
    sizes[5] = L * 3 * C;       // qkvb
    sizes[6] = L * C * C;       // attprojw
    sizes[7] = L * C;           // attprojb
    sizes[8] = L * C;           // ln2w
    sizes[9] = L * C;           // ln2b
    sizes[10] = L * 4 * C * C;  // fcw
    sizes[11] = L * 4 * C;      // fcb
    sizes[12] = L * C * 4 * C;  // fcprojw
    sizes[13] = L * C;          // fcprojb
    sizes[14] = C;              // lnfw
    sizes[15] = C;              // lnfb
}

static inline size_t gpt2_num_parameters(GPT2Config c) {
    size_t sizes[NUM_PARAMETER_TENSORS], n = 0;
    gpt2_param_sizes(sizes, c);
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) n += sizes[i];
    return n;
}

// Ends the run with one line naming `what` (a file, "random init") when the config is not a usable GPT-2.
static inline void gpt2_config_check(GPT2Config c, const char* what) {
    if (c.max_seq_len <= 0 || c.vocab_size <= 0 || c.padded_vocab_size < c.vocab_size || c.num_layers <= 0 ||
        c.num_heads <= 0 || c.channels <= 0 || c.channels % c.num_heads != 0)
        fatalf("%s: invalid model config maxT=%d V=%d Vp=%d L=%d NH=%d C=%d", what, c.max_seq_len, c.vocab_size,
               c.padded_vocab_size, c.num_layers, c.num_heads, c.channels);
}

// The arguments of a forward: (B, T) within the allocated (alloc_B, alloc_T), every token id in [0, V).
static inline void gpt2_forward_check(GPT2Config c, int alloc_B, int alloc_T, const int* inputs, const int* targets,
                                      int B, int T) {
    if (B < 1 || T < 1 || T > alloc_T || (size_t)B * T > (size_t)alloc_B * alloc_T)
        fatalf("forward with B=%d T=%d exceeds the allocated B=%d T=%d", B, T, alloc_B, alloc_T);
    int V = c.vocab_size;
    for (int i = 0; i < B * T; i++) {
        if (inputs[i] < 0 || inputs[i] >= V) fatalf("input token id %d at position %d is outside [0, %d)", inputs[i], i, V);
        if (targets != NULL && (targets[i] < 0 || targets[i] >= V))
            fatalf("target token id %d at position %d is outside [0, %d)", targets[i], i, V);
    }
}

// Descriptor "dN": depth N. Sizes of llm.c: d6/d12/d24/d36/d48 -> 384/768/1024/1280/1600 channels.
// Any other depth N in 1..64 gets 64*N channels (d4 = the CPU quickstart model, d2 = the test model).
// Heads = channels / 64. maxT = 1024, V = 50257, Vp = 50304.
// Returns 0 on success, -1 if the string is not a descriptor.
static inline int gpt2_config_from_descriptor(const char* desc, GPT2Config* c) {
    if (desc == NULL || desc[0] != 'd' || desc[1] == '\0') return -1;
    char* end = NULL;
    long depth = strtol(desc + 1, &end, 10);
    if (*end != '\0' || depth < 1 || depth > 64) return -1;
    int channels;
    switch (depth) {
        case 6: channels = 384; break;
        case 12: channels = 768; break;
        case 24: channels = 1024; break;
        case 36: channels = 1280; break;
        case 48: channels = 1600; break;
        default: channels = 64 * (int)depth; break;
    }
    c->max_seq_len = 1024;
    c->vocab_size = GPT2_VOCAB;
    c->padded_vocab_size = GPT2_PADDED_VOCAB;
    c->num_layers = (int)depth;
    c->num_heads = channels / 64;
    c->channels = channels;
    return 0;
}

// Reads and validates a model file header. Exits with one line naming the file on any problem.
// Returns the version (3 = fp32, 5 = bf16); the caller reads the weights that follow.
static inline int model_read_header(FILE* fp, const char* path, GPT2Config* c) {
    int header[256];
    long fsize = fileSizeCheck(fp, path);
    if (fsize < (long)sizeof(header)) fatalf("model file '%s' is truncated: %ld bytes, header needs 1024", path, fsize);
    freadCheck(header, sizeof(int), 256, fp, path);
    if (header[0] != MODEL_MAGIC) fatalf("model file '%s' has bad magic %d (want %d)", path, header[0], MODEL_MAGIC);
    if (header[1] != MODEL_VERSION_FP32 && header[1] != MODEL_VERSION_BF16)
        fatalf("model file '%s' has unsupported version %d (want %d fp32 or %d bf16)", path, header[1],
               MODEL_VERSION_FP32, MODEL_VERSION_BF16);
    c->max_seq_len = header[2];
    c->vocab_size = header[3];
    c->num_layers = header[4];
    c->num_heads = header[5];
    c->channels = header[6];
    c->padded_vocab_size = header[7];
    if (c->max_seq_len <= 0 || c->max_seq_len > 1 << 20 || c->vocab_size <= 0 || c->num_layers <= 0 ||
        c->num_layers > 1024 || c->num_heads <= 0 || c->channels <= 0 || c->channels > 1 << 16 ||
        c->channels % c->num_heads != 0 || c->padded_vocab_size < c->vocab_size || c->vocab_size > 1 << 24)
        fatalf("model file '%s' has an impossible config: maxT=%d V=%d Vp=%d L=%d NH=%d C=%d", path,
               c->max_seq_len, c->vocab_size, c->padded_vocab_size, c->num_layers, c->num_heads, c->channels);
    size_t elem = header[1] == MODEL_VERSION_FP32 ? 4 : 2;
    size_t want = sizeof(header) + gpt2_num_parameters(*c) * elem;
    if ((size_t)fsize != want)
        fatalf("model file '%s' has %ld bytes but its header implies %zu", path, fsize, want);
    return header[1];
}

static inline void model_write_header(FILE* fp, const char* path, GPT2Config c, int version) {
    int header[256] = {0};
    header[0] = MODEL_MAGIC;
    header[1] = version;
    header[2] = c.max_seq_len;
    header[3] = c.vocab_size;
    header[4] = c.num_layers;
    header[5] = c.num_heads;
    header[6] = c.channels;
    header[7] = c.padded_vocab_size;
    fwriteCheck(header, sizeof(int), 256, fp, path);
}

// bf16 -> fp32 (bf16 is the top half of an fp32)
static inline float bf16_to_float(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// Reads the weights of an open model file (after model_read_header) into fp32 `params`.
static inline void model_read_weights(FILE* fp, const char* path, int version, float* params, size_t n) {
    if (version == MODEL_VERSION_FP32) {
        freadCheck(params, sizeof(float), n, fp, path);
    } else {
        // bf16: convert in chunks through a small stack buffer
        uint16_t buf[4096];
        for (size_t i = 0; i < n; i += 4096) {
            size_t k = n - i < 4096 ? n - i : 4096;
            freadCheck(buf, sizeof(uint16_t), k, fp, path);
            for (size_t j = 0; j < k; j++) params[i + j] = bf16_to_float(buf[j]);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(params[i])) fatalf("model file '%s' has a non-finite weight at index %zu", path, i);
    }
}

#endif // LLMC_MODEL_H
