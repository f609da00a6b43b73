// Tests of sample_gpt2.c's numerics: the KV-cache forward against the full forward (gpt2_forward) at every position,
// the uncertainty decomposition (MI >= 0, MI = 0 exactly for equal samples, S = 1 predictive = the sample's
// probabilities), top-k 1 = greedy and the sampler's determinism.
// Usage: test_sample [--perturb] MODEL.bin [CHECKPOINT_DIR]   (with a dir: also its IVON posterior sample 1, tau 1)
//   --perturb adds 1e-2 to one position embedding (position 5) of the KV path's weights only: the KV checks must
//   then fail (self-check of the comparison).
// Last line: "N passed, N failed"; exit status non-zero on any failure.
#define TESTING
#define SAMPLE_TESTING
#pragma GCC diagnostic ignored "-Wunused-function"  // the program's modes, tested through the CLI
#include "../../sample_gpt2.c"

static int g_pass = 0, g_fail = 0;
static int g_perturb = 0;

static void check(int ok, const char* what, const char* fmt, ...) {
    va_list ap;
    printf("%s %s: ", ok ? "OK  " : "FAIL", what);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    if (ok) g_pass++;
    else g_fail++;
}

// KV tolerance: |kv - full| <= KV_TOL_ABS + KV_TOL_REL |full| per logit; the two paths run the same kernels, only the
// GEMM's blocking differs between 1 row and T rows (fp32 sums in another order)
#define KV_TOL_ABS 1e-5f
#define KV_TOL_REL 1e-5f

// logits and probabilities of the KV path at every position t of T tokens against one full forward
static void test_kv(const char* what, GPT2* model, const ParameterTensors* p, const int* tokens, int T) {
    GPT2Config c = model->config;
    int Vp = c.padded_vocab_size, V = c.vocab_size;
    ParameterTensors own = model->params;
    model->params = *p;
    gpt2_forward(model, tokens, NULL, 1, T);
    model->params = own;
    float* copy = NULL;
    ParameterTensors pk = *p;
    if (g_perturb) {  // a copy of the weights with wpe[5, 0] += 1e-2 for the KV path
        size_t np = model->num_parameters;
        copy = (float*)mallocCheck(np * sizeof(float));
        memcpy(copy, p->wte, np * sizeof(float));  // the tensors are contiguous from wte
        gpt2_point_params(&pk, copy, model->param_sizes);
        pk.wpe[(size_t)5 * c.channels] += 1e-2f;
    }
    KVCache kv;
    kv_init(&kv, c);
    double worst = 0.0, worst_p = 0.0;  // largest |diff| / tolerance; largest |dp|
    for (int t = 0; t < T; t++) {
        kv_forward(&kv, c, &pk, tokens[t], t);
        const float* full = model->acts.logits + (size_t)t * Vp;
        const float* fp = model->acts.probs + (size_t)t * Vp;
        for (int v = 0; v < V; v++) {
            double r = fabs((double)kv.logits[v] - full[v]) / (KV_TOL_ABS + KV_TOL_REL * fabsf(full[v]));
            if (r > worst) worst = r;
            double dp = fabs((double)kv.probs[v] - fp[v]);
            if (dp > worst_p) worst_p = dp;
        }
    }
    check(worst <= 1.0, what, "%d positions, max |kv - full| / (%.0e + %.0e |full|) = %.3f, max |dp| = %.2e", T,
          (double)KV_TOL_ABS, (double)KV_TOL_REL, worst, worst_p);
    kv_free(&kv);
    free(copy);
}

// softmax rows of random logits (n, Vp) at scale `scale`
static void random_probs(float* p, int n, int V, int Vp, uint64_t seed, float scale) {
    for (int i = 0; i < n; i++) {
        float* r = p + (size_t)i * Vp;
        double sum = 0.0;
        for (int v = 0; v < V; v++) {
            r[v] = expf(scale * noise_normal(seed, 0, (uint32_t)i, 0, 0, (uint64_t)v));
            sum += r[v];
        }
        for (int v = 0; v < V; v++) r[v] = (float)(r[v] / sum);
        for (int v = V; v < Vp; v++) r[v] = 0.0f;
    }
}

static void test_uncertainty(void) {
    const int V = 1000, Vp = 1024, n = 64, S = 5;
    float* probs = (float*)mallocCheck((size_t)S * n * Vp * sizeof(float));
    float* pbar = (float*)mallocCheck((size_t)Vp * sizeof(float));
    for (int s = 0; s < S; s++) random_probs(probs + (size_t)s * n * Vp, n, V, Vp, 100 + s, 0.3f * (s + 1));
    // distinct samples: MI = total - aleatoric > 0 before any clamping
    UncAcc u;
    unc_init(&u, n, V, Vp, S);
    for (int s = 0; s < S; s++) unc_add(&u, probs + (size_t)s * n * Vp, s);
    double min_mi = 1e30;
    for (int i = 0; i < n; i++) {
        TokenUnc r = unc_row(&u, i, pbar);
        if (r.mi < min_mi) min_mi = r.mi;
    }
    check(min_mi > 0.0, "MI > 0 for distinct samples", "min MI %.4e over %d rows", min_mi, n);
    unc_free(&u);
    // S equal samples: p = p_0 bit for bit, MI = 0 exactly
    unc_init(&u, n, V, Vp, S);
    for (int s = 0; s < S; s++) unc_add(&u, probs, s);
    int exact = 1;
    for (int i = 0; i < n; i++) {
        TokenUnc r = unc_row(&u, i, pbar);
        exact &= r.mi == 0.0 && memcmp(pbar, probs + (size_t)i * Vp, (size_t)Vp * sizeof(float)) == 0;
    }
    check(exact, "MI = 0 for equal samples", "%d rows, S = %d: predictive = the sample bit for bit, MI = 0.0", n, S);
    unc_free(&u);
    // S = 1: the predictive is that sample's distribution, MI = 0, aleatoric = entropy
    unc_init(&u, n, V, Vp, 1);
    unc_add(&u, probs + (size_t)2 * n * Vp, 0);
    exact = 1;
    for (int i = 0; i < n; i++) {
        TokenUnc r = unc_row(&u, i, pbar);
        exact &= r.mi == 0.0 && r.total == r.aleatoric &&
                 memcmp(pbar, probs + ((size_t)2 * n + i) * Vp, (size_t)Vp * sizeof(float)) == 0;
    }
    check(exact, "S = 1 predictive", "predictive = the sample's probabilities bit for bit, MI = 0");
    unc_free(&u);
    free(pbar);
    free(probs);
}

static void test_sampler(void) {
    const int V = 1000, Vp = 1024;
    float* p = (float*)mallocCheck((size_t)Vp * sizeof(float));
    float* dist = (float*)mallocCheck((size_t)V * sizeof(float));
    ProbIdx* order = (ProbIdx*)mallocCheck((size_t)V * sizeof(ProbIdx));
    random_probs(p, 1, V, Vp, 7, 2.0f);
    int argmax = 0;
    for (int v = 1; v < V; v++) if (p[v] > p[argmax]) argmax = v;
    SampleConfig cfg;
    char* argv0[] = {"test", "-e", "x"};
    sample_parse(&cfg, 3, argv0);
    int same = 1, greedy = 1, in_topk = 1, differ = 0;
    for (int t = 0; t < 200; t++) {
        cfg.top_k = 0;
        cfg.top_p = 1.0;
        int a = sample_next(p, V, &cfg, t, order, dist);
        same &= a == sample_next(p, V, &cfg, t, order, dist);
        cfg.seed = 99;
        differ += a != sample_next(p, V, &cfg, t, order, dist);
        cfg.seed = 1337;
        cfg.top_k = 1;
        greedy &= sample_next(p, V, &cfg, t, order, dist) == argmax;
        cfg.top_k = 3;
        int b = sample_next(p, V, &cfg, t, order, dist);
        int rank = 0;
        for (int v = 0; v < V; v++) rank += p[v] > p[b];
        in_topk &= rank < 3;
    }
    check(same, "sampler deterministic", "200 positions, the same token for the same seed and position");
    check(differ > 0, "sampler seed", "seed 99 differs from 1337 at %d of 200 positions", differ);
    check(greedy, "top-k 1 = greedy", "token %d (the argmax) at all 200 positions", argmax);
    check(in_topk, "top-k 3", "every token among the 3 most likely");
    free(order);
    free(dist);
    free(p);
}

int main(int argc, char** argv) {
    if (argc > 1 && strcmp(argv[1], "--perturb") == 0) {
        g_perturb = 1;
        argv++;
        argc--;
    }
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: test_sample [--perturb] MODEL.bin [CHECKPOINT_DIR]\n");
        return 2;
    }
    test_uncertainty();
    test_sampler();
    GPT2 model;
    gpt2_build_from_checkpoint(&model, argv[1]);
    int T = 96;
    gpt2_allocate(&model, 1, T);
    int* tokens = (int*)mallocCheck((size_t)T * sizeof(int));
    for (int t = 0; t < T; t++) tokens[t] = (int)((t * 2654435761u) % (uint32_t)model.config.vocab_size);
    test_kv("KV cache = full forward (model file)", &model, &model.params, tokens, T);
    if (argc == 3) {
        SampleConfig cfg;
        char* args[] = {"test", "-o", argv[2], "-bma", "2"};
        sample_parse(&cfg, 5, args);
        WeightSets w;
        weights_load(&w, &cfg);
        test_kv("KV cache = full forward (posterior sample 1)", &model, &w.params[1], tokens, T);
        weights_free(&w);
    }
    free(tokens);
    gpt2_free(&model);
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail > 0;
}
