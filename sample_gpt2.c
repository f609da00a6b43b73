// sample_gpt2: text generation from a model file or an IVON/PoCo checkpoint with a KV cache, per-token uncertainty
// from the posterior (Bayesian model average over S weight samples), and the document-level uncertainty of a text
// (teacher forcing, -i). doc/sample.md describes the flags, the modes and the output.
//   ./sample_gpt2 -o DIR -p "It is a truth" -g 64            generate (BMA over 4 samples when DIR holds IVON state)
//   ./sample_gpt2 -e model.bin -p "It is a truth" -bma 0      mean weights only: the entropy, no MI
//   ./sample_gpt2 -o DIR -i text.txt -t 64                    mean NLL, entropy, aleatoric, MI of a document
#ifndef TESTING
#define TESTING  // train_gpt2.c without its main
#endif
#include "train_gpt2.c"
#include <unistd.h>
#include "llmc/posterior.h"
#include "llmc/bpe.h"

// ----------------------------------------------------------------------------
// flags: one table, the parser and the usage text come from it

typedef struct {
    const char* model;        // -e
    const char* ckpt_dir;     // -o
    int ckpt_step;            // -cs  -1 = latest
    const char* prompt;       // -p
    const char* prompt_file;  // -pf
    const char* input;        // -i   teacher forcing
    int gen_tokens;           // -g
    double temperature;       // -temp  0 = greedy
    int top_k;                // -topk  0 = off
    double top_p;             // -topp  1 = off
    uint64_t seed;            // -seed
    int bma;                  // -bma  -1 = 4 with a posterior, else 0
    double tau;               // -tau
    double ess, prior_2d, prior_1d;  // -ess -pr -pr1, -1 = the state header's
    const char* jsonl;        // -jl
    const char* show;         // -show
    double shade_max;         // -smax  -1 = 0.2 nats (MI) or 8 nats (entropy)
    int B, T, max_batches;    // -b -t -m
    int shuffle;              // -shuffle
    int special;              // -special
    const char* tokenizer;    // -tk
} SampleConfig;

typedef enum { SF_INT, SF_DOUBLE, SF_U64, SF_STRING, SF_CHOICE } SampleFlagType;

typedef struct {
    const char* flag;
    SampleFlagType type;
    size_t offset;
    const char* def;  // NULL = none (strings only)
    double min, max;
    const char* choices;
    const char* help;
} SampleFlag;

#define SF(field) offsetof(SampleConfig, field)
static const SampleFlag SAMPLE_FLAGS[] = {
    {"-e", SF_STRING, SF(model), NULL, 0, 0, NULL, "model file (mean weights; no sigma)"},
    {"-o", SF_STRING, SF(ckpt_dir), NULL, 0, 0, NULL, "checkpoint dir of train_gpt2 -o (model + IVON/PoCo state)"},
    {"-cs", SF_INT, SF(ckpt_step), "-1", -1, 2147483647.0, NULL, "checkpoint step in -o (-1 = the latest)"},
    {"-p", SF_STRING, SF(prompt), NULL, 0, 0, NULL, "prompt text"},
    {"-pf", SF_STRING, SF(prompt_file), NULL, 0, 0, NULL, "prompt from a UTF-8 text file"},
    {"-i", SF_STRING, SF(input), NULL, 0, 0, NULL,
     "teacher forcing: a text file or token shard; prints its mean NLL, entropy, aleatoric and MI"},
    {"-g", SF_INT, SF(gen_tokens), "64", 1, 1048576, NULL, "tokens to generate (stops at the context)"},
    {"-temp", SF_DOUBLE, SF(temperature), "1", 0, 100, NULL, "sampling temperature (0 = greedy)"},
    {"-topk", SF_INT, SF(top_k), "0", 0, 2147483647.0, NULL, "sample from the k most likely tokens (0 = all)"},
    {"-topp", SF_DOUBLE, SF(top_p), "1", 1e-9, 1, NULL, "nucleus: the smallest set with mass >= p (1 = all)"},
    {"-seed", SF_U64, SF(seed), "1337", 0, 0, NULL, "sampling seed (a token is a function of seed and position)"},
    {"-bma", SF_INT, SF(bma), "-1", -1, 1024, NULL,
     "posterior samples S per token (0 = mean weights; -1 = 4 with IVON/PoCo state, else 0)"},
    {"-tau", SF_DOUBLE, SF(tau), "1", 0, 1e6, NULL, "posterior temperature: sigma scaled by sqrt(tau) (0 = mean)"},
    {"-ess", SF_DOUBLE, SF(ess), "-1", -1, 1e300, NULL, "effective sample size (-1 = the state header's)"},
    {"-pr", SF_DOUBLE, SF(prior_2d), "-1", -1, 1e300, NULL, "prior precision, 2-D tensors (-1 = the header's)"},
    {"-pr1", SF_DOUBLE, SF(prior_1d), "-1", -1, 1e300, NULL, "prior precision, 1-D tensors (-1 = the header's)"},
    {"-jl", SF_STRING, SF(jsonl), NULL, 0, 0, NULL, "write one JSON line per generated token (or per document)"},
    {"-show", SF_CHOICE, SF(show), "auto", 0, 0, "auto|shade|brackets|plain",
     "uncertainty inline: auto = shade on a terminal, plain when piped"},
    {"-smax", SF_DOUBLE, SF(shade_max), "-1", -1, 1e6, NULL,
     "uncertainty of the darkest shade, nats (-1 = 0.2 for MI, 8 for the entropy with mean weights)"},
    {"-b", SF_INT, SF(B), "1", 1, 65536, NULL, "teacher forcing: windows per forward"},
    {"-t", SF_INT, SF(T), "-1", -1, 1048576, NULL, "teacher forcing: window length (-1 = the model's context)"},
    {"-m", SF_INT, SF(max_batches), "-1", -1, 2147483647.0, NULL, "teacher forcing: max batches (-1 = all)"},
    {"-shuffle", SF_INT, SF(shuffle), "0", 0, 1, NULL, "teacher forcing: shuffle the document's tokens (seed)"},
    {"-special", SF_INT, SF(special), "0", 0, 1, NULL, "1 = <|endoftext|> in a text is the EOT token"},
    {"-tk", SF_STRING, SF(tokenizer), "gpt2_tokenizer.bin", 0, 0, NULL, "tokenizer file (version 3, with merges)"},
};
#define SAMPLE_NUM_FLAGS ((int)(sizeof(SAMPLE_FLAGS) / sizeof(SAMPLE_FLAGS[0])))

static int sample_set_flag(SampleConfig* cfg, const SampleFlag* f, const char* v) {
    char* base = (char*)cfg + f->offset;
    char* end = NULL;
    errno = 0;
    switch (f->type) {
        case SF_INT: {
            long long x = strtoll(v, &end, 10);
            if (v[0] == '\0' || *end != '\0' || errno == ERANGE || x < f->min || x > f->max) return -1;
            *(int*)base = (int)x;
            return 0;
        }
        case SF_DOUBLE: {
            double x = strtod(v, &end);
            if (v[0] == '\0' || *end != '\0' || errno == ERANGE || !isfinite(x) || x < f->min || x > f->max) return -1;
            *(double*)base = x;
            return 0;
        }
        case SF_U64: {
            if (v[0] < '0' || v[0] > '9') return -1;
            unsigned long long x = strtoull(v, &end, 10);
            if (*end != '\0' || errno == ERANGE) return -1;
            *(uint64_t*)base = (uint64_t)x;
            return 0;
        }
        case SF_STRING:
            if (v[0] == '\0') return -1;
            *(const char**)base = v;
            return 0;
        case SF_CHOICE:
            if (cli_choice_index(f->choices, v) < 0) return -1;
            *(const char**)base = v;
            return 0;
    }
    return -1;
}

static void sample_usage(FILE* fp) {
    static const char* kinds[] = {"<int>", "<float>", "<uint>", "<string>", "<choice>"};
    fprintf(fp, "Usage: sample_gpt2 (-e MODEL | -o DIR [-cs STEP]) [-p TEXT | -pf FILE | -i DOC] [-flag value ...]\n");
    fprintf(fp, "Flags (default in brackets):\n");
    for (int i = 0; i < SAMPLE_NUM_FLAGS; i++) {
        const SampleFlag* f = &SAMPLE_FLAGS[i];
        fprintf(fp, "  %-8s %-9s %s [%s]", f->flag, kinds[f->type], f->help, f->def ? f->def : "none");
        if (f->type == SF_CHOICE) fprintf(fp, " one of %s", f->choices);
        else if (f->type == SF_INT) fprintf(fp, " range [%.0f, %.0f]", f->min, f->max);
        else if (f->type == SF_DOUBLE) fprintf(fp, " range [%g, %g]", f->min, f->max);
        fprintf(fp, "\n");
    }
    fprintf(fp, "  --help             print this text and exit\n");
}

static void sample_parse(SampleConfig* cfg, int argc, char** argv) {
    memset(cfg, 0, sizeof(*cfg));
    for (int i = 0; i < SAMPLE_NUM_FLAGS; i++) {
        if (SAMPLE_FLAGS[i].def != NULL && sample_set_flag(cfg, &SAMPLE_FLAGS[i], SAMPLE_FLAGS[i].def) != 0)
            fatalf("flag table: bad default of %s", SAMPLE_FLAGS[i].flag);
    }
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            sample_usage(stdout);
            exit(EXIT_SUCCESS);
        }
    }
    for (int i = 1; i < argc; i += 2) {
        const SampleFlag* f = NULL;
        for (int j = 0; j < SAMPLE_NUM_FLAGS; j++)
            if (strcmp(argv[i], SAMPLE_FLAGS[j].flag) == 0) f = &SAMPLE_FLAGS[j];
        if (f == NULL) fatalf("flag %s: unknown flag (sample_gpt2 --help for the list)", argv[i]);
        if (i + 1 >= argc) fatalf("flag %s: missing value", argv[i]);
        if (sample_set_flag(cfg, f, argv[i + 1]) != 0) {
            if (f->type == SF_CHOICE) fatalf("flag %s: '%s' is not one of %s", f->flag, argv[i + 1], f->choices);
            if (f->type == SF_STRING) fatalf("flag %s: empty value", f->flag);
            fatalf("flag %s: '%s' is not a number in [%g, %g]", f->flag, argv[i + 1], f->min, f->max);
        }
    }
    if ((cfg->model == NULL) == (cfg->ckpt_dir == NULL))
        fatalf("flag -e: give a model file (-e) or a checkpoint dir (-o), one of the two");
    if (cfg->ckpt_step >= 0 && cfg->ckpt_dir == NULL) fatalf("flag -cs: a checkpoint step needs -o DIR");
    if (cfg->ess != -1.0 && !(cfg->ess > 0.0)) fatalf("flag -ess: %g must be > 0 (or -1 for the state header's)", cfg->ess);
    if (cfg->prior_2d != -1.0 && cfg->prior_2d < 0.0) fatalf("flag -pr: %g must be >= 0 (or -1)", cfg->prior_2d);
    if (cfg->prior_1d != -1.0 && cfg->prior_1d < 0.0) fatalf("flag -pr1: %g must be >= 0 (or -1)", cfg->prior_1d);
    if ((cfg->prompt != NULL) + (cfg->prompt_file != NULL) + (cfg->input != NULL) > 1)
        fatalf("flag -p: give at most one of -p, -pf and -i");
}

// ----------------------------------------------------------------------------
// the posterior's weight sets: S samples theta_s (or the mean alone with S = 0)

typedef struct {
    Posterior post;
    int S;              // samples per token, 0 = mean weights
    int nsets;          // max(S, 1)
    float* sets;        // (nsets, num_parameters)
    ParameterTensors* params;  // (nsets) tensors into sets
    char model_path[CHECKPOINT_PATH_MAX], state_path[CHECKPOINT_PATH_MAX];
} WeightSets;

// the model (and state) path from -e or -o [-cs]; returns 1 if there is a state file
static int sample_resolve_paths(const SampleConfig* cfg, WeightSets* w) {
    if (cfg->model != NULL) {
        snprintf(w->model_path, sizeof(w->model_path), "%s", cfg->model);
        return 0;
    }
    int step = cfg->ckpt_step >= 0 ? cfg->ckpt_step : checkpoint_find_latest(cfg->ckpt_dir);
    if (step < 0) fatalf("flag -o: no complete checkpoint (DONE_* file) in '%s'", cfg->ckpt_dir);
    char done[CHECKPOINT_PATH_MAX];
    checkpoint_done_path(done, sizeof(done), cfg->ckpt_dir, step);
    if (access(done, F_OK) != 0) fatalf("flag -cs: no complete checkpoint of step %d in '%s'", step, cfg->ckpt_dir);
    checkpoint_model_path(w->model_path, sizeof(w->model_path), cfg->ckpt_dir, step);
    checkpoint_state_path(w->state_path, sizeof(w->state_path), cfg->ckpt_dir, step);
    return 1;
}

static void weights_load(WeightSets* w, const SampleConfig* cfg) {
    memset(w, 0, sizeof(*w));
    int has_state = sample_resolve_paths(cfg, w);
    const char* sp = has_state ? w->state_path : NULL;
    posterior_load(&w->post, w->model_path, sp, cfg->ess, cfg->prior_2d, cfg->prior_1d);
    char err[CHECKPOINT_PATH_MAX + 256];
    int sigma = posterior_has_sigma(&w->post, sp, err, sizeof(err));
    w->S = cfg->bma == -1 ? (sigma ? 4 : 0) : cfg->bma;
    if (w->S > 0 && !sigma) fatalf("flag -bma: %d posterior samples need sigma: %s", w->S, err);
    if (cfg->tau != 1.0 && !sigma) fatalf("flag -tau: a posterior temperature needs sigma: %s", err);
    w->nsets = w->S > 0 ? w->S : 1;
    size_t np = w->post.num_parameters;
    w->sets = (float*)mallocCheck((size_t)w->nsets * np * sizeof(float));
    w->params = (ParameterTensors*)mallocCheck((size_t)w->nsets * sizeof(ParameterTensors));
    for (int s = 0; s < w->nsets; s++) {
        float* theta = w->sets + (size_t)s * np;
        if (w->S == 0) memcpy(theta, w->post.mean, np * sizeof(float));
        else posterior_sample(&w->post, theta, cfg->tau, s);
        gpt2_point_params(&w->params[s], theta, w->post.sizes);
    }
}

static void weights_free(WeightSets* w) {
    posterior_free(&w->post);
    free(w->sets);
    free(w->params);
}

// ----------------------------------------------------------------------------
// KV cache: one token's forward per step over the keys and values of the past positions

typedef struct {
    int L, maxT, C, NH, len;
    float* k;  // (L, maxT, C) keys of positions 0..len-1
    float* v;  // (L, maxT, C) values
    // activations of the one new position
    float *x, *ln, *qkv, *atty, *att, *proj, *res2, *fch, *gelu, *logits, *probs;
} KVCache;

static void kv_init(KVCache* kv, GPT2Config c) {
    memset(kv, 0, sizeof(*kv));
    kv->L = c.num_layers;
    kv->maxT = c.max_seq_len;
    kv->C = c.channels;
    kv->NH = c.num_heads;
    size_t C = c.channels, cache = (size_t)kv->L * kv->maxT * C;
    kv->k = (float*)mallocCheck(cache * sizeof(float));
    kv->v = (float*)mallocCheck(cache * sizeof(float));
    size_t n[11] = {C, C, 3 * C, C, (size_t)kv->NH * kv->maxT, C, C, 4 * C, 4 * C, (size_t)c.padded_vocab_size,
                    (size_t)c.padded_vocab_size};
    float** f[11] = {&kv->x, &kv->ln, &kv->qkv, &kv->atty, &kv->att, &kv->proj, &kv->res2, &kv->fch, &kv->gelu,
                     &kv->logits, &kv->probs};
    for (int i = 0; i < 11; i++) *f[i] = (float*)mallocCheck(n[i] * sizeof(float));
}

static void kv_free(KVCache* kv) {
    float* f[13] = {kv->k, kv->v, kv->x, kv->ln, kv->qkv, kv->atty, kv->att, kv->proj, kv->res2, kv->fch, kv->gelu,
                    kv->logits, kv->probs};
    for (int i = 0; i < 13; i++) free(f[i]);
}

// attention of the query of position t over the cached keys/values 0..t of layer l, in attention_forward's
// operation order; out (C), att (NH, maxT) scratch, q (C)
static void kv_attention_forward(float* out, float* att, const float* q, const KVCache* kv, int l, int t) {
    int C = kv->C, NH = kv->NH, hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    const float* K = kv->k + (size_t)l * kv->maxT * C;
    const float* V = kv->v + (size_t)l * kv->maxT * C;
    for (int h = 0; h < NH; h++)
        attention_query_forward(out + (size_t)h * hs, att + (size_t)h * kv->maxT, q + (size_t)h * hs,
                                K + (size_t)h * hs, V + (size_t)h * hs, (size_t)C, t, hs, scale);
}

// forward of token at position t = kv->len with the layer kernels of train_gpt2.c; appends its keys and values to
// the cache and leaves the next-token probabilities in kv->probs (Vp)
static void kv_forward(KVCache* kv, GPT2Config c, const ParameterTensors* p, int token, int t) {
    if (t != kv->len || t >= kv->maxT) fatalf("kv_forward: position %d, cache holds %d of %d", t, kv->len, kv->maxT);
    int C = c.channels, Vp = c.padded_vocab_size;
    size_t lslot = (size_t)kv->maxT * C;
    float mean, rstd, loss;
    encoder_forward(kv->x, &token, p->wte, p->wpe + (size_t)t * C, 1, 1, C);
    for (int l = 0; l < c.num_layers; l++) {
        layernorm_forward(kv->ln, &mean, &rstd, kv->x, p->ln1w + l * C, p->ln1b + l * C, 1, C);
        matmul_forward(kv->qkv, kv->ln, p->qkvw + (size_t)l * 3 * C * C, p->qkvb + l * 3 * C, 1, C, 3 * C);
        memcpy(kv->k + l * lslot + (size_t)t * C, kv->qkv + C, (size_t)C * sizeof(float));
        memcpy(kv->v + l * lslot + (size_t)t * C, kv->qkv + 2 * C, (size_t)C * sizeof(float));
        kv_attention_forward(kv->atty, kv->att, kv->qkv, kv, l, t);
        matmul_forward(kv->proj, kv->atty, p->attprojw + (size_t)l * C * C, p->attprojb + l * C, 1, C, C);
        residual_forward(kv->res2, kv->x, kv->proj, (size_t)C);
        layernorm_forward(kv->ln, &mean, &rstd, kv->res2, p->ln2w + l * C, p->ln2b + l * C, 1, C);
        matmul_forward(kv->fch, kv->ln, p->fcw + (size_t)l * 4 * C * C, p->fcb + l * 4 * C, 1, C, 4 * C);
        gelu_forward(kv->gelu, kv->fch, (size_t)4 * C);
        matmul_forward(kv->proj, kv->gelu, p->fcprojw + (size_t)l * C * 4 * C, p->fcprojb + l * C, 1, 4 * C, C);
        residual_forward(kv->x, kv->res2, kv->proj, (size_t)C);
    }
    layernorm_forward(kv->ln, &mean, &rstd, kv->x, p->lnfw, p->lnfb, 1, C);
    matmul_forward(kv->logits, kv->ln, p->wte, NULL, 1, C, Vp);
    softmax_crossentropy_forward(kv->probs, &loss, kv->logits, NULL, 1, c.vocab_size, Vp);
    kv->len = t + 1;
}

// ----------------------------------------------------------------------------
// uncertainty of the BMA predictive p = mean_s p_s: total = H(p), aleatoric = mean_s H(p_s), MI = total - aleatoric.
// Accumulated as offsets from sample 0 (p = p_0 + mean_s (p_s - p_0), likewise the entropies), so that S equal
// samples give p = p_0 and MI = 0 exactly.

typedef struct {
    size_t n;     // rows
    int V, Vp, S;
    float* p0;    // (n, Vp) sample 0
    float* dsum;  // (n, Vp) sum_s (p_s - p_0)
    double* h0;   // (n) H(p_0)
    double* dh;   // (n) sum_s (H(p_s) - H(p_0))
    long long clamped;    // tokens with MI < 0 from rounding, set to 0
    double clamped_max;   // the largest such |MI|
} UncAcc;

typedef struct {
    double total, aleatoric, mi;
} TokenUnc;

static double entropy_row(const float* p, int V) {
    double h = 0.0;
    for (int v = 0; v < V; v++) if (p[v] > 0.0f) h -= (double)p[v] * log((double)p[v]);
    return h;
}

static void unc_init(UncAcc* u, size_t n, int V, int Vp, int S) {
    memset(u, 0, sizeof(*u));
    u->n = n; u->V = V; u->Vp = Vp; u->S = S;
    u->p0 = (float*)mallocCheck(n * Vp * sizeof(float));
    u->dsum = (float*)mallocCheck(n * Vp * sizeof(float));
    u->h0 = (double*)mallocCheck(n * sizeof(double));
    u->dh = (double*)mallocCheck(n * sizeof(double));
}

static void unc_free(UncAcc* u) {
    free(u->p0); free(u->dsum); free(u->h0); free(u->dh);
}

// folds sample s (0-based) of probs (n, Vp) in
static void unc_add(UncAcc* u, const float* probs, int s) {
    size_t Vp = u->Vp;
    OMP_PRAGMA(parallel for schedule(static))
    for (size_t i = 0; i < u->n; i++) {
        const float* p = probs + i * Vp;
        float* p0 = u->p0 + i * Vp;
        float* d = u->dsum + i * Vp;
        double h = entropy_row(p, u->V);
        if (s == 0) {
            memcpy(p0, p, Vp * sizeof(float));
            memset(d, 0, Vp * sizeof(float));
            u->h0[i] = h;
            u->dh[i] = 0.0;
        } else {
            for (size_t v = 0; v < Vp; v++) d[v] += p[v] - p0[v];
            u->dh[i] += h - u->h0[i];
        }
    }
}

// the predictive of row i into pbar (Vp, may be the row's dsum) and its uncertainty, MI unclamped (unc_clamp);
// S = 0 (mean weights): the entropy, MI = 0
static TokenUnc unc_row(const UncAcc* u, size_t i, float* pbar) {
    const float* p0 = u->p0 + i * u->Vp;
    const float* d = u->dsum + i * u->Vp;
    int S = u->S > 0 ? u->S : 1;
    float invS = 1.0f / (float)S;
    for (int v = 0; v < u->Vp; v++) pbar[v] = p0[v] + d[v] * invS;
    TokenUnc r;
    r.total = entropy_row(pbar, u->V);
    r.aleatoric = u->h0[i] + u->dh[i] / S;
    r.mi = r.total - r.aleatoric;
    return r;
}

// MI >= 0 by the concavity of H: a negative value is rounding, set to 0 and counted; returns 1 if it was
static int unc_clamp(UncAcc* u, TokenUnc* r) {
    if (r->mi >= 0.0) return 0;
    u->clamped++;
    if (-r->mi > u->clamped_max) u->clamped_max = -r->mi;
    r->mi = 0.0;
    return 1;
}

// ----------------------------------------------------------------------------
// sampling over the predictive: temperature, top-k, top-p, then a Philox uniform of (seed, position)

typedef struct {
    float p;
    int i;
} ProbIdx;

static int probidx_desc(const void* a, const void* b) {
    const ProbIdx *x = (const ProbIdx*)a, *y = (const ProbIdx*)b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return (x->i > y->i) - (x->i < y->i);
}

// next token from p (V); order (V) and dist (V) scratch
static int sample_next(const float* p, int V, const SampleConfig* cfg, int t, ProbIdx* order, float* dist) {
    for (int v = 0; v < V; v++) order[v] = (ProbIdx){p[v], v};
    qsort(order, (size_t)V, sizeof(ProbIdx), probidx_desc);
    if (cfg->temperature == 0.0 || cfg->top_k == 1) return order[0].i;  // greedy: the first most likely token
    double lmax = log((double)order[0].p), sum = 0.0;
    int keep = cfg->top_k > 0 && cfg->top_k < V ? cfg->top_k : V;
    for (int j = 0; j < keep; j++) {
        double q = order[j].p > 0.0f ? exp((log((double)order[j].p) - lmax) / cfg->temperature) : 0.0;
        order[j].p = (float)q;
        sum += q;
    }
    if (cfg->top_p < 1.0) {
        double cum = 0.0;
        int j = 0;
        while (j < keep && cum < cfg->top_p * sum) cum += order[j++].p;
        keep = j > 0 ? j : 1;
        sum = cum > 0.0 ? cum : order[0].p;
    }
    for (int v = 0; v < V; v++) dist[v] = 0.0f;
    for (int j = 0; j < keep; j++) dist[order[j].i] = (float)(order[j].p / sum);
    return train_sample_token(dist, V, cfg->seed, 0, t);
}

// ----------------------------------------------------------------------------
// output: inline shading / brackets, JSON lines

// the token's text as a JSON string body: control bytes escaped, invalid UTF-8 bytes as U+FFFD
static void json_text(FILE* fp, const char* s) {
    const unsigned char* u = (const unsigned char*)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t bad = bpe_utf8_invalid_at(u + i, n - i);
        if (bad == 0) {  // invalid byte at i
            fputs("\\ufffd", fp);
            i++;
            continue;
        }
        size_t end = i + bad;  // bytes [i, end) are valid UTF-8
        for (; i < end; i++) {
            unsigned char c = u[i];
            if (c == '"' || c == '\\') fprintf(fp, "\\%c", c);
            else if (c == '\n') fputs("\\n", fp);
            else if (c < 0x20 || c == 0x7f) fprintf(fp, "\\u%04x", c);
            else fputc(c, fp);
        }
    }
}

typedef enum { SHOW_PLAIN, SHOW_SHADE, SHOW_BRACKETS } ShowMode;

// a token with its uncertainty u (MI with S > 0, else the entropy): a red background of 5 levels over [0, scale)
static void show_token(ShowMode mode, const char* piece, double u, double scale) {
    if (!tokenizer_printable(piece)) return;
    if (mode == SHOW_SHADE) {
        static const int ramp[5] = {0, 52, 88, 124, 160};
        int level = (int)(5.0 * u / scale);
        level = level < 0 ? 0 : level > 4 ? 4 : level;
        if (level > 0) printf("\033[48;5;%dm%s\033[0m", ramp[level], piece);
        else fputs(piece, stdout);
    } else if (mode == SHOW_BRACKETS) {
        printf("%s[%.3f]", piece, u);
    } else {
        fputs(piece, stdout);
    }
}

static ShowMode show_mode(const char* show) {
    if (strcmp(show, "shade") == 0) return SHOW_SHADE;
    if (strcmp(show, "brackets") == 0) return SHOW_BRACKETS;
    if (strcmp(show, "plain") == 0) return SHOW_PLAIN;
    return isatty(fileno(stdout)) ? SHOW_SHADE : SHOW_PLAIN;  // auto
}

static const char* mode_name(int S) { return S > 0 ? "bma" : "mean"; }

// ----------------------------------------------------------------------------
// tokens: a prompt or a document (text file, or a token shard by its magic)

// BPE of n bytes of text (from `what`, for the error lines) into a new array of *count ids; frees text
static int* sample_encode(const Tokenizer* tok, const char* tk_path, char* text, size_t n, int special,
                          const char* what, size_t* count) {
    BpeEncoder enc;
    bpe_init(&enc, tok, tk_path);
    uint32_t* ids = (uint32_t*)mallocCheck((n + 1) * sizeof(uint32_t));
    size_t bad = 0;
    long long k = bpe_encode(&enc, text, n, special, ids, &bad);
    free(text);
    if (k < 0) {  // freed first: the error exits
        free(ids);
        bpe_free(&enc);
    }
    if (k == -1) fatalf("%s is not valid UTF-8 at byte %zu", what, bad);
    if (k == -2) fatalf("%s contains %s at byte %zu: pass -special 1 to encode it as the EOT token", what, BPE_EOT_TEXT,
                        bad);
    bpe_free(&enc);
    int* out = (int*)mallocCheck(((size_t)k + 1) * sizeof(int));
    for (long long i = 0; i < k; i++) out[i] = (int)ids[i];
    free(ids);
    *count = (size_t)k;
    return out;
}

static char* sample_read_file(const char* path, size_t* n) {
    FILE* fp = fopenCheck(path, "rb");
    long size = fileSizeCheck(fp, path);
    char* buf = (char*)mallocCheck((size_t)size + 1);
    if (size > 0) freadCheck(buf, 1, (size_t)size, fp, path);
    fcloseCheck(fp, path);
    buf[size] = '\0';
    *n = (size_t)size;
    return buf;
}

// the tokens of -i: a shard (llmc/dataloader.h format) or UTF-8 text; ids checked against the vocab V
static int* sample_document(const SampleConfig* cfg, const Tokenizer* tok, int V, size_t* count) {
    size_t n;
    char* buf = sample_read_file(cfg->input, &n);
    int32_t magic = 0;
    if (n >= sizeof(int32_t)) memcpy(&magic, buf, sizeof(magic));
    int* ids;
    char what[CHECKPOINT_PATH_MAX + 32];
    if (magic == DATALOADER_MAGIC) {
        int32_t hdr[DATALOADER_HEADER_INTS];
        size_t k = 0;
        if (n >= DATALOADER_HEADER_BYTES) {
            memcpy(hdr, buf, sizeof(hdr));
            k = (size_t)(uint32_t)hdr[2];
        }
        if (n < DATALOADER_HEADER_BYTES || n != DATALOADER_HEADER_BYTES + k * sizeof(uint16_t)) {
            free(buf);
            fatalf("token shard '%s' has %zu bytes, its header says %zu tokens (%zu bytes)", cfg->input, n, k,
                   DATALOADER_HEADER_BYTES + k * sizeof(uint16_t));
        }
        ids = (int*)mallocCheck((k + 1) * sizeof(int));
        for (size_t i = 0; i < k; i++) {
            uint16_t t;
            memcpy(&t, buf + DATALOADER_HEADER_BYTES + i * sizeof(uint16_t), sizeof(t));
            ids[i] = t;
        }
        *count = k;
    } else {
        snprintf(what, sizeof(what), "text file '%s'", cfg->input);
        ids = sample_encode(tok, cfg->tokenizer, buf, n, cfg->special, what, count);
        buf = NULL;  // freed by sample_encode
    }
    free(buf);
    for (size_t i = 0; i < *count; i++)
        if (ids[i] < 0 || ids[i] >= V) fatalf("'%s' has token %d at %zu, outside the vocab of %d", cfg->input, ids[i], i, V);
    if (cfg->shuffle) {  // Fisher-Yates, Philox draws of the seed (dataloader_rand_below)
        for (size_t i = *count; i > 1; i--) {
            size_t j = dataloader_rand_below(cfg->seed, (uint32_t)(i - 1), 7u, 0, (uint32_t)i);
            int x = ids[i - 1];
            ids[i - 1] = ids[j];
            ids[j] = x;
        }
    }
    return ids;
}

// [EOT] + the prompt's tokens into a new array of *count ids
static int* sample_prompt(const SampleConfig* cfg, const Tokenizer* tok, size_t* count) {
    size_t n = 0, k = 0;
    char* text = NULL;
    const char* what = "flag -p: the prompt";
    char whatf[CHECKPOINT_PATH_MAX + 32];
    if (cfg->prompt != NULL) {
        n = strlen(cfg->prompt);
        text = (char*)mallocCheck(n + 1);
        memcpy(text, cfg->prompt, n + 1);
    } else if (cfg->prompt_file != NULL) {
        text = sample_read_file(cfg->prompt_file, &n);
        snprintf(whatf, sizeof(whatf), "flag -pf: prompt file '%s'", cfg->prompt_file);
        what = whatf;
    }
    int* ids = text != NULL ? sample_encode(tok, cfg->tokenizer, text, n, cfg->special, what, &k) : NULL;  // frees text
    int* out = (int*)mallocCheck((k + 1) * sizeof(int));
    out[0] = GPT2_EOT;
    for (size_t i = 0; i < k; i++) out[i + 1] = ids[i];
    free(ids);
    *count = k + 1;
    return out;
}

// ----------------------------------------------------------------------------
// generation: S KV caches (one per weight sample), one token's forward each per step

typedef struct {
    int* tokens;      // (maxT) EOT, prompt, generated
    int n;            // tokens so far
    int generated;
    double sum_total, sum_aleatoric, sum_mi;
    long long clamped;
    double clamped_max;
} Generation;

// generates after prompt[0..np) into g (tokens allocated here); prints the text to stdout, JSON lines to jl
static void sample_generate(const SampleConfig* cfg, const WeightSets* w, const Tokenizer* tok, const int* prompt,
                            int np, FILE* jl, Generation* g) {
    GPT2Config c = w->post.config;
    int V = c.vocab_size, maxT = c.max_seq_len, S = w->S;
    if (np >= maxT) fatalf("sample_generate: prompt of %d tokens, context %d", np, maxT);  // sample_check_prompt
    memset(g, 0, sizeof(*g));
    g->tokens = (int*)mallocCheck((size_t)maxT * sizeof(int));
    memcpy(g->tokens, prompt, (size_t)np * sizeof(int));
    g->n = np;
    KVCache* kv = (KVCache*)mallocCheck((size_t)w->nsets * sizeof(KVCache));
    for (int s = 0; s < w->nsets; s++) kv_init(&kv[s], c);
    UncAcc u;
    unc_init(&u, 1, V, c.padded_vocab_size, S);
    float* pbar = (float*)mallocCheck((size_t)c.padded_vocab_size * sizeof(float));
    float* dist = (float*)mallocCheck((size_t)V * sizeof(float));
    ProbIdx* order = (ProbIdx*)mallocCheck((size_t)V * sizeof(ProbIdx));
    ShowMode mode = show_mode(cfg->show);
    for (int t = 1; t < np; t++) tokenizer_print(tokenizer_decode(tok, (uint32_t)prompt[t]));
    for (int t = 0; t < np - 1; t++)  // prefill: the prompt's keys and values
        for (int s = 0; s < w->nsets; s++) kv_forward(&kv[s], c, &w->params[s], prompt[t], t);
    while (g->generated < cfg->gen_tokens && g->n < maxT) {
        int t = g->n - 1;
        for (int s = 0; s < w->nsets; s++) {
            kv_forward(&kv[s], c, &w->params[s], g->tokens[t], t);
            unc_add(&u, kv[s].probs, s);
        }
        TokenUnc r = unc_row(&u, 0, pbar);
        int clamped = unc_clamp(&u, &r);
        int next = sample_next(pbar, V, cfg, t + 1, order, dist);
        g->tokens[g->n++] = next;
        g->generated++;
        g->sum_total += r.total;
        g->sum_aleatoric += r.aleatoric;
        g->sum_mi += r.mi;
        const char* piece = tokenizer_decode(tok, (uint32_t)next);
        double smax = cfg->shade_max > 0.0 ? cfg->shade_max : S > 0 ? 0.2 : 8.0;
        show_token(mode, piece, S > 0 ? r.mi : r.total, smax);
        fflush(stdout);
        if (jl != NULL) {
            fprintf(jl, "{\"pos\": %d, \"token\": %d, \"text\": \"", t + 1, next);
            json_text(jl, piece);
            fprintf(jl, "\", \"mode\": \"%s\", \"samples\": %d, \"tau\": %.9g, \"prob\": %.9g, \"entropy\": %.9g", mode_name(S),
                    S, S > 0 ? cfg->tau : 0.0, (double)pbar[next], r.total);
            if (S > 0) fprintf(jl, ", \"aleatoric\": %.9g, \"mi\": %.9g", r.aleatoric, r.mi);
            if (clamped) fprintf(jl, ", \"mi_clamped\": true");  // a rounding-negative MI set to 0
            fprintf(jl, "}\n");
        }
    }
    printf("\n");
    fflush(stdout);
    if (g->generated < cfg->gen_tokens)
        fprintf(stderr, "note: stopped after %d tokens at the model's context of %d\n", g->generated, maxT);
    g->clamped = u.clamped;
    g->clamped_max = u.clamped_max;
    free(order);
    free(dist);
    free(pbar);
    unc_free(&u);
    for (int s = 0; s < w->nsets; s++) kv_free(&kv[s]);
    free(kv);
}

// ----------------------------------------------------------------------------
// teacher forcing: a document in batches of B windows of T tokens, the full forward per weight sample

typedef struct {
    size_t tokens;
    double nll, nll_mean, total, aleatoric, mi;  // means per token
    long long clamped;
    double clamped_max;
} DocResult;

// one batch: inputs/targets (B*T); S (or 1) forwards folded into u and lse; sums into sums[5] (nll, nll_mean,
// total, aleatoric, mi); r (B*T) scratch
static void tf_batch(GPT2* model, const WeightSets* w, const int* inputs, const int* targets, int B, int T,
                     UncAcc* u, float* lse, TokenUnc* r, double sums[5]) {
    size_t BT = (size_t)B * T;
    ParameterTensors own = model->params;
    for (int s = 0; s < w->nsets; s++) {
        model->params = w->params[s];
        gpt2_forward(model, inputs, targets, B, T);
        train_bma_accumulate(lse, model->acts.losses, BT, s);
        unc_add(u, model->acts.probs, s);
    }
    model->params = own;  // the mean (the model file)
    if (w->S > 0) gpt2_forward(model, inputs, targets, B, T);
    double logS = log((double)w->nsets);
    OMP_PRAGMA(parallel for schedule(static))
    for (size_t i = 0; i < BT; i++) r[i] = unc_row(u, i, u->dsum + i * u->Vp);
    for (size_t i = 0; i < BT; i++) {
        unc_clamp(u, &r[i]);
        sums[0] += -((double)lse[i] - logS);
        sums[1] += model->acts.losses[i];
        sums[2] += r[i].total;
        sums[3] += r[i].aleatoric;
        sums[4] += r[i].mi;
    }
}

// a prompt of np tokens (with the EOT) must leave room for one generated token
static void sample_check_prompt(const SampleConfig* cfg, int np, int maxT) {
    if (np >= maxT)
        fatalf("flag %s: the prompt is %d tokens with the leading EOT, the model's context is %d: no room to generate",
               cfg->prompt_file != NULL ? "-pf" : "-p", np, maxT);
}

// the window length T (-t) and the number of batches of B windows in a document of n tokens
static size_t tf_batches(const SampleConfig* cfg, GPT2Config c, size_t n, int* T_out) {
    int T = cfg->T == -1 ? c.max_seq_len : cfg->T;
    if (T < 1 || T > c.max_seq_len) fatalf("flag -t: window length %d must be in 1..%d (the model's context)", T, c.max_seq_len);
    size_t BT = (size_t)cfg->B * T;
    size_t nb = n > 0 ? (n - 1) / BT : 0;
    if (cfg->max_batches >= 0 && (size_t)cfg->max_batches < nb) nb = (size_t)cfg->max_batches;
    if (nb == 0)
        fatalf("flag -i: '%s' has %zu tokens, fewer than one batch of B*T+1 = %zu (lower -t or -b)", cfg->input, n,
               BT + 1);
    *T_out = T;
    return nb;
}

static DocResult sample_teacher_forcing(const SampleConfig* cfg, const WeightSets* w, GPT2* model, const int* ids,
                                        size_t n) {
    GPT2Config c = w->post.config;
    int B = cfg->B, T;
    size_t nb = tf_batches(cfg, c, n, &T);
    size_t BT = (size_t)B * T;
    gpt2_allocate(model, B, T);
    UncAcc u;
    unc_init(&u, BT, c.vocab_size, c.padded_vocab_size, w->S);
    float* lse = (float*)mallocCheck(BT * sizeof(float));
    TokenUnc* r = (TokenUnc*)mallocCheck(BT * sizeof(TokenUnc));
    double sums[5] = {0, 0, 0, 0, 0};
    for (size_t b = 0; b < nb; b++)  // batch b: tokens [b BT, (b + 1) BT], as the val loader's windows
        tf_batch(model, w, ids + b * BT, ids + b * BT + 1, B, T, &u, lse, r, sums);
    DocResult d;
    d.tokens = nb * BT;
    d.nll = sums[0] / d.tokens;
    d.nll_mean = sums[1] / d.tokens;
    d.total = sums[2] / d.tokens;
    d.aleatoric = sums[3] / d.tokens;
    d.mi = sums[4] / d.tokens;
    d.clamped = u.clamped;
    d.clamped_max = u.clamped_max;
    free(r);
    free(lse);
    unc_free(&u);
    return d;
}

static void print_doc(const SampleConfig* cfg, const WeightSets* w, const DocResult* d, FILE* jl) {
    printf("doc %s | tokens %zu | mode %s(%d) tau %g | nll %.6f | nll(mean) %.6f | entropy %.6f | aleatoric %.6f | "
           "mi %.6f\n", cfg->input, d->tokens, mode_name(w->S), w->S, w->S > 0 ? cfg->tau : 0.0, d->nll, d->nll_mean,
           d->total, d->aleatoric, d->mi);
    if (jl == NULL) return;
    fprintf(jl, "{\"doc\": \"");
    json_text(jl, cfg->input);
    fprintf(jl, "\", \"tokens\": %zu, \"shuffled\": %d, \"mode\": \"%s\", \"samples\": %d, \"tau\": %.9g, "
            "\"nll\": %.9g, \"nll_mean\": %.9g, \"entropy\": %.9g", d->tokens, cfg->shuffle, mode_name(w->S), w->S,
            w->S > 0 ? cfg->tau : 0.0, d->nll, d->nll_mean, d->total);
    if (w->S > 0) fprintf(jl, ", \"aleatoric\": %.9g, \"mi\": %.9g, \"mi_clamped\": %lld", d->aleatoric, d->mi, d->clamped);
    fprintf(jl, "}\n");
}

// ----------------------------------------------------------------------------

#ifndef SAMPLE_TESTING
int main(int argc, char** argv) {
    SampleConfig cfg;
    sample_parse(&cfg, argc, argv);
    WeightSets w;
    weights_load(&w, &cfg);
    Tokenizer tok;
    tokenizer_init(&tok, cfg.tokenizer);
    GPT2Config c = w.post.config;
    size_t n = 0, np = 0;
    int* ids = NULL;  // the document (-i) or [EOT] + the prompt
    int T;
    if (cfg.input != NULL) {
        ids = sample_document(&cfg, &tok, c.vocab_size, &n);
        tf_batches(&cfg, c, n, &T);
    } else {
        ids = sample_prompt(&cfg, &tok, &np);
        sample_check_prompt(&cfg, (int)np, c.max_seq_len);
    }
    FILE* jl = cfg.jsonl != NULL ? fopenCheck(cfg.jsonl, "w") : NULL;
    fprintf(stderr, "sample_gpt2: %s (L %d, C %d, context %d)", w.model_path, c.num_layers, c.channels, c.max_seq_len);
    if (w.post.optimizer >= 0)
        fprintf(stderr, " | state %s step %d", optimizer_kind_name(w.post.optimizer), w.post.step);
    if (w.S > 0) fprintf(stderr, " | bma(%d) tau %g ess %g prior %g / %g\n", w.S, cfg.tau, w.post.ess,
                         w.post.prior_2d, w.post.prior_1d);
    else fprintf(stderr, " | mean weights\n");
    long long clamped;
    double clamped_max;
    if (cfg.input != NULL) {
        GPT2 model;
        gpt2_build_from_checkpoint(&model, w.model_path);
        DocResult d = sample_teacher_forcing(&cfg, &w, &model, ids, n);
        print_doc(&cfg, &w, &d, jl);
        clamped = d.clamped;
        clamped_max = d.clamped_max;
        gpt2_free(&model);
    } else {
        Generation g;
        sample_generate(&cfg, &w, &tok, ids, (int)np, jl, &g);
        if (g.generated > 0) {
            fprintf(stderr, "%d tokens, mode %s: mean entropy %.4f", g.generated, mode_name(w.S), g.sum_total / g.generated);
            if (w.S > 0) fprintf(stderr, " | aleatoric %.4f | mi %.4f", g.sum_aleatoric / g.generated,
                                 g.sum_mi / g.generated);
            fprintf(stderr, "\n");
        }
        clamped = g.clamped;
        clamped_max = g.clamped_max;
        free(g.tokens);
    }
    free(ids);
    if (clamped > 0)
        fprintf(stderr, "note: MI < 0 from rounding on %lld tokens (at most %.3g) set to 0\n", clamped, clamped_max);
    if (jl != NULL) fcloseCheck(jl, cfg.jsonl);
    tokenizer_free(&tok);
    weights_free(&w);
    return 0;
}
#endif
