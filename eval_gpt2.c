// Posterior evaluation of a checkpoint: BMA NLL, next-token accuracy and ECE (15 bins) on the val set against a
// list of MC sample counts and posterior temperatures, plus the mean-weight row; CSV out, and the per-bin
// reliability data. The trainer's own evaluation functions do the work (evaluate_mean_loss, evaluate_bma_loss in
// train_gpt2.c); the weight samples come from llmc/posterior.h (tau = 1: the trainer's BMA samples, bit for bit).
//   ./eval_gpt2 -c DIR [-cs STEP] | -e model.bin [-st state.bin]  [-j val] [-m batches] [-b B] [-t T]
//               [-S 1,2,4,8,16] [-tau 0.5,1,2] [-o eval.csv] [-ob eval_bins.csv]
// scripts/plot_eval.py draws the PNGs from the two CSVs.
#define TESTING
#include "train_gpt2.c"
#include "llmc/posterior.h"
#include "llmc/tool_flags.h"

#define EVAL_MAX_LIST 64

typedef struct {
    const char *dir, *model, *state, *val, *samples, *taus, *out, *bins_out;
    int step, max_batches, B, T;
    double ess, prior_2d, prior_1d;
} EvalArgs;

// the sample source of evaluate_bma_loss: theta_s = m + sqrt(tau) sigma eps_s
typedef struct {
    const Posterior* post;
    double tau;
} EvalBmaSource;

static void eval_bma_sample(void* ctx, GPT2* model, int s) {
    const EvalBmaSource* src = (const EvalBmaSource*)ctx;
    posterior_sample(src->post, model->params_memory, src->tau, s);
}

// comma-separated list of flag `flag`: ints >= 1 (is_int) or finite numbers > 0; "none" = the empty list
static int eval_parse_list(const char* flag, const char* text, int is_int, double* out) {
    if (strcmp(text, "none") == 0) return 0;
    int n = 0;
    const char* p = text;
    for (;;) {
        char* end = NULL;
        errno = 0;
        double x = is_int ? (double)strtol(p, &end, 10) : strtod(p, &end);
        int ok = end != p && (*end == ',' || *end == '\0') && errno == 0 && isfinite(x) && x > 0.0 &&
                 (!is_int || x <= 1000000.0);
        if (!ok) fatalf("flag %s: '%s' is not a comma-separated list of %s", flag, text,
                        is_int ? "sample counts 1..1000000 (or none)" : "temperatures > 0");
        if (n == EVAL_MAX_LIST) fatalf("flag %s: more than %d entries in '%s'", flag, EVAL_MAX_LIST, text);
        out[n++] = x;
        if (*end == '\0') return n;
        p = end + 1;
    }
}

// one result row to the CSV and stdout, its bins to the bins CSV
static void eval_write_row(FILE* csv, FILE* bins_csv, const char* kind, int S, double tau, float nll,
                           const EceBins* bins) {
    double acc = ece_accuracy(bins), ece = ece_value(bins);
    fprintf(csv, "%s,%d,%g,%.9g,%.9g,%.9g\n", kind, S, tau, (double)nll, acc, ece);
    printf("%-4s samples %3d tau %-5g: nll %.6f accuracy %.4f ece %.4f\n", kind, S, tau, (double)nll, acc, ece);
    for (int b = 0; b < ECE_BINS; b++) {
        double n = bins->n[b];
        fprintf(bins_csv, "%s,%d,%g,%d,%.9g,%.9g,%.0f,%.9g,%.9g\n", kind, S, tau, b, (double)b / ECE_BINS,
                (double)(b + 1) / ECE_BINS, n, n > 0 ? bins->conf[b] / n : 0.0, n > 0 ? bins->correct[b] / n : 0.0);
    }
    fflush(stdout);
}

int main(int argc, char** argv) {
    EvalArgs a = {NULL, NULL, NULL, "dev/data/austen/austen_val.bin", "1,2,4,8,16", "1", "eval.csv", NULL,
                  -1, 20, 8, 128, -1.0, -1.0, -1.0};
    const ToolFlag flags[] = {
        {"-c", TOOL_STRING, &a.dir, "checkpoint dir (a trainer's -o)"},
        {"-cs", TOOL_INT, &a.step, "checkpoint step in -c (-1 = the latest with a DONE marker)"},
        {"-e", TOOL_STRING, &a.model, "model file (instead of -c)"},
        {"-st", TOOL_STRING, &a.state, "state file of the model file (IVON/PoCo: needed for -S)"},
        {"-j", TOOL_STRING, &a.val, "val data shards, a glob pattern"},
        {"-m", TOOL_INT, &a.max_batches, "val batches (-1 = the whole val set), as the trainer's -m"},
        {"-b", TOOL_INT, &a.B, "batch size B"},
        {"-t", TOOL_INT, &a.T, "sequence length T"},
        {"-S", TOOL_STRING, &a.samples, "BMA sample counts, comma-separated (none = the mean row only)"},
        {"-tau", TOOL_STRING, &a.taus, "posterior temperatures, comma-separated (1 = the learned posterior)"},
        {"-ess", TOOL_DOUBLE, &a.ess, "effective sample size (-1 = the state header's)"},
        {"-pr", TOOL_DOUBLE, &a.prior_2d, "prior precision of the 2-D tensors (-1 = the state header's)"},
        {"-pr1", TOOL_DOUBLE, &a.prior_1d, "prior precision of the 1-D tensors (-1 = the state header's)"},
        {"-o", TOOL_STRING, &a.out, "output CSV: kind,samples,tau,nll,accuracy,ece"},
        {"-ob", TOOL_STRING, &a.bins_out, "reliability CSV (unset: -o with _bins before .csv)"},
    };
    const int nflags = (int)(sizeof(flags) / sizeof(flags[0]));
    const char* synopsis = "eval_gpt2 -c DIR [-cs STEP] | -e MODEL [-st STATE]  [flags]";
    tool_flags_parse(argc, argv, synopsis, flags, nflags);
    double samples[EVAL_MAX_LIST], taus[EVAL_MAX_LIST];
    int nS = eval_parse_list("-S", a.samples, 1, samples);
    int nt = eval_parse_list("-tau", a.taus, 0, taus);
    if (nS > 0 && nt == 0) fatalf("flag -tau: -S needs at least one temperature");
    if (a.B < 1 || a.T < 1) fatalf("flag %s: must be >= 1", a.B < 1 ? "-b" : "-t");
    if (a.max_batches == 0 || a.max_batches < -1) fatalf("flag -m: %d val batches; use -1 or >= 1", a.max_batches);
    posterior_check_overrides(a.ess, a.prior_2d, a.prior_1d);
    char mbuf[4096], sbuf[4096], bbuf[4096];
    posterior_checkpoint_paths(a.dir, a.step, &a.model, &a.state, mbuf, sbuf, sizeof(mbuf));

    Posterior post;
    posterior_load(&post, a.model, a.state, a.ess, a.prior_2d, a.prior_1d);
    char err[512];
    if (nS > 0 && !posterior_has_sigma(&post, a.state, err, sizeof(err)))
        fatalf("flag -S: BMA needs sigma: %s (or -S none for the mean row only)", err);
    GPT2 model;
    gpt2_build_from_checkpoint(&model, a.model);
    if (a.T > model.config.max_seq_len) fatalf("flag -t: T = %d exceeds the model's %d", a.T, model.config.max_seq_len);
    gpt2_allocate(&model, a.B, a.T);
    DataLoader loader;
    dataloader_init(&loader, a.val, (size_t)a.B, (size_t)a.T, 0, 1, 0, 0);
    loader.vocab_size = (uint32_t)model.config.vocab_size;
    int nb = a.max_batches;
    if (nb < 0 || (size_t)nb > dataloader_num_batches(&loader)) nb = (int)dataloader_num_batches(&loader);
    if (a.bins_out == NULL) {
        size_t n = strlen(a.out);
        size_t stem = n >= 4 && strcmp(a.out + n - 4, ".csv") == 0 ? n - 4 : n;
        snprintf(bbuf, sizeof(bbuf), "%.*s_bins.csv", (int)stem, a.out);
        a.bins_out = bbuf;
    }
    FILE* csv = fopenCheck(a.out, "w");
    FILE* bins_csv = fopenCheck(a.bins_out, "w");
    fprintf(csv, "kind,samples,tau,nll,accuracy,ece\n");
    fprintf(bins_csv, "kind,samples,tau,bin,lo,hi,count,confidence,accuracy\n");
    printf("checkpoint: %s (step %d, %s)\n", a.model, post.step,
           post.optimizer >= 0 ? optimizer_kind_name(post.optimizer) : "no state");
    printf("val: %d batches of %d x %d tokens\n", nb, a.B, a.T);

    EceBins bins;
    float nll = evaluate_mean_loss(&model, &loader, nb, &bins);
    eval_write_row(csv, bins_csv, "mean", 0, 0.0, nll, &bins);
    int maxS = 0;
    for (int i = 0; i < nS; i++) maxS = (int)samples[i] > maxS ? (int)samples[i] : maxS;
    float* lse = NULL;       // (nb, B*T)
    float* prob_sum = NULL;  // (B*T, Vp)
    if (maxS > 0) {
        lse = (float*)mallocCheck((size_t)nb * a.B * a.T * sizeof(float));
        prob_sum = (float*)mallocCheck((size_t)a.B * a.T * model.config.padded_vocab_size * sizeof(float));
    }
    for (int k = 0; k < nt && nS > 0; k++) {
        EvalBmaSource src = {&post, taus[k]};
        for (int i = 0; i < nS; i++) {
            nll = evaluate_bma_loss(&model, eval_bma_sample, &src, &loader, nb, (int)samples[i], lse, prob_sum, &bins);
            eval_write_row(csv, bins_csv, "bma", (int)samples[i], taus[k], nll, &bins);
        }
    }
    fcloseCheck(csv, a.out);
    fcloseCheck(bins_csv, a.bins_out);
    printf("wrote %s and %s\n", a.out, a.bins_out);
    free(lse);
    free(prob_sum);
    dataloader_free(&loader);
    gpt2_free(&model);
    posterior_free(&post);
    return 0;
}
