// The run shared by train_gpt2.c (CPU) and train_gpt2.cu (CUDA): flags, data, steps, optimizer settings (the -1
// defaults resolved), schedule, logger and tokenizer, resolved once (TrainRun); the micro-batch source of an
// optimizer step; checkpoint state headers. Output lines: llmc/report.h; metrics: llmc/metrics.h; token
// sampling: llmc/sampler.h; the step driver: llmc/optim_step.h.
#ifndef LLMC_TRAIN_COMMON_H
#define LLMC_TRAIN_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include "utils.h"
#include "cli.h"
#include "dist.h"
#include "optim.h"
#include "optim_step.h"
#include "metrics.h"
#include "sampler.h"
#include "checkpoint.h"
#include "dataloader.h"
#include "logger.h"
#include "report.h"
#include "outlier.h"
#include "schedule.h"
#include "tokenizer.h"

// BatchFn, StepStats: llmc/optim_step.h

static inline double train_time_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// the train loader as the optimizer's BatchFn; overfit mode loads one batch and repeats it
typedef struct {
    DataLoader* loader;
    int overfit;
    int loaded;
} TrainBatches;

static inline void train_next_batch(void* ctx, const int** inputs, const int** targets) {
    TrainBatches* tb = (TrainBatches*)ctx;
    if (!tb->overfit || !tb->loaded) dataloader_next_batch(tb->loader);
    tb->loaded = 1;
    *inputs = tb->loader->inputs;
    *targets = tb->loader->targets;
}

// The optimizer settings of the flags (cfg->opt) with the -1 defaults resolved: lr (adamw 6e-4, ivon/poco 300),
// ess (= train_tokens), bma (4 for ivon/poco, 0 for adamw), poco start (max_steps / 2); then checked.
// Returns 0, or -1 with "flag -x: ..." in err.
static inline int optimizer_config_from_train(OptimizerConfig* oc, const TrainConfig* cfg, long long train_tokens,
                                              int max_steps, float* lr, int* bma_samples, char* err, size_t errlen) {
    *oc = cfg->opt;
    int kind = oc->kind;
    if (cfg->learning_rate == -1.0f) {
        *lr = kind == OPT_ADAMW ? 6e-4f : 300.0f;
    } else if (cfg->learning_rate < 0.0f) {
        snprintf(err, errlen, "flag -l: learning rate %g must be >= 0 (or -1 for the optimizer's default)",
                 (double)cfg->learning_rate);
        return -1;
    } else {
        *lr = cfg->learning_rate;
    }
    oc->seed = cfg->seed;
    oc->rank = 0;
    oc->max_steps = max_steps;
    if (oc->ess == -1.0) oc->ess = (double)train_tokens;
    else if (!(oc->ess > 0.0)) {
        snprintf(err, errlen, "flag -ess: effective sample size %g must be > 0 (or -1 for the train token count)",
                 oc->ess);
        return -1;
    }
    if (oc->poco_start == -1) oc->poco_start = max_steps / 2;
    if (cfg->bma_samples == -1) {
        *bma_samples = kind == OPT_ADAMW ? 0 : 4;
    } else if (kind == OPT_ADAMW && cfg->bma_samples > 0) {
        snprintf(err, errlen, "flag -bma: BMA needs a posterior: use -opt ivon or poco (or -bma 0)");
        return -1;
    } else {
        *bma_samples = cfg->bma_samples;
    }
    return optimizer_config_check(oc, err, errlen);
}

// state header of a checkpoint at `step` (after `step` optimizer steps)
static inline StateHeader train_state_header(int step, int kind, size_t num_parameters, const DataLoader* train,
                                             uint64_t seed, int anchor_step, long long mega_tokens) {
    StateHeader sh;
    memset(&sh, 0, sizeof(sh));
    DataLoaderState ds = dataloader_get_state(train);
    sh.step = step;
    sh.optimizer = kind;
    sh.num_parameters = num_parameters;
    sh.loader_epoch = ds.epoch;
    sh.loader_shard = ds.shard;
    sh.loader_window = ds.window;
    sh.seed = seed;
    sh.extra[0] = anchor_step;
    checkpoint_split64(&sh.extra[1], (uint64_t)mega_tokens);
    return sh;
}

// checks a state header read for a resume at `step` with optimizer `kind`, restores the loader position and
// returns the PoCo anchor step and mega-batch token count
static inline void train_state_restore(const char* path, const StateHeader* sh, int step, int kind, DataLoader* train,
                                       int* anchor_step, long long* mega_tokens) {
    if (sh->step != step) fatalf("state file '%s' holds step %d, expected %d", path, sh->step, step);
    if (sh->optimizer != kind)
        fatalf("state file '%s' holds %s state but -opt is %s", path, optimizer_kind_name(sh->optimizer),
               optimizer_kind_name(kind));
    *anchor_step = sh->extra[0];
    *mega_tokens = (long long)checkpoint_join64(&sh->extra[1]);
    if (sh->loader_shard >= train->num_shards)
        fatalf("state file '%s' holds loader shard position %llu but the train data (-i) has %zu shards", path,
               (unsigned long long)sh->loader_shard, train->num_shards);
    DataLoaderState ds = {sh->loader_epoch, sh->loader_shard, sh->loader_window};
    dataloader_set_state(train, ds);
}

// k-th smallest of a[0..n) in place (quickselect, median-of-three pivot; no allocation); NaN-free input
static inline float train_select_kth(float* a, size_t n, size_t k) {
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        float x = a[lo], y = a[mid], z = a[hi];
        float pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        size_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                if (j == 0) break;
                j--;
            }
        }
        if (k <= j && j != (size_t)-1) hi = j;
        else if (k >= i) lo = i;
        else break;
    }
    return a[k];
}

// The diagnostics from k > 0 sampled h and sigma values (reordered in place) and the last update's statistics
static inline void train_diagnostics_from_sample(OptimizerDiagnostics* d, float* hs, float* ss, size_t k,
                                                 const IvonUpdateStats* u) {
    const double q[3] = {0.01, 0.5, 0.99};
    for (int i = 0; i < 3; i++) {
        size_t at = (size_t)(q[i] * (double)(k - 1) + 0.5);
        d->h_q[i] = train_select_kth(hs, k, at);
        d->sigma_q[i] = train_select_kth(ss, k, at);
    }
    d->clipped_frac = u->n ? (double)u->clipped / (double)u->n : 0.0;
    d->mean_abs_dm = u->n ? u->sum_abs_dm / (double)u->n : 0.0;
}

// ----------------------------------------------------------------------------------------------
// The run: flags, data, steps, optimizer settings, schedule, logger and tokenizer, resolved once and used by
// both trainers' main loops.
typedef struct {
    TrainConfig cfg;
    int B, T;
    int resume_step;         // -1 = fresh run
    int grad_accum;          // micro-batches per step
    long long total_batch;   // tokens per step
    int max_steps;
    int run_val, val_batches;  // val_batches: per process (all processes: val_batches * P)
    DistInfo dist;             // data-parallel layout (train_run_set_dist); one process by default
    int run_sample, gen_len;  // EOT + generated tokens, within T
    OptimizerConfig oc;
    float peak_lr;
    int bma_samples;
    DataLoader train_loader, val_loader;
    Tokenizer tokenizer;
    LRScheduler sched;
    Logger logger;
    StepGuard guard;          // skip decision of every step (non-finite, -sl, -sg)
    int skipped_total;        // steps skipped so far (kept across resumes)
    int skipped_in_a_row;     // consecutive skipped steps up to the last one
    int save_sleep_ms;        // test-only IVON_TEST_SAVE_SLEEP_MS: pause before a checkpoint's DONE marker
    char path[CHECKPOINT_PATH_MAX];  // scratch for checkpoint paths
} TrainRun;

// Test-only environment variables, read once at startup (documented in doc/guarantees.md):
//   IVON_TEST_NAN_STEP=S[:N]     a NaN is written into the gradient of steps S .. S+N-1 as printed (1-based; N = 1
//                                by default)
//   IVON_TEST_SAVE_SLEEP_MS=MS   sleep MS ms between writing a checkpoint's state file and its DONE marker
// A malformed value ends the run with an error line naming the variable.
static inline long long train_env_int(const char* name, const char* text, const char* end_chars, const char** rest,
                                      long long lo, long long hi) {
    char* end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (end == text || (*end != '\0' && strchr(end_chars, *end) == NULL) || errno == ERANGE || v < lo || v > hi)
        fatalf("environment variable %s: '%s' is not an integer in [%lld, %lld] of the form it expects", name, text, lo,
               hi);
    if (rest) *rest = end;
    return v;
}

static inline void train_run_read_test_env(TrainRun* r) {
    const char* nan = getenv("IVON_TEST_NAN_STEP");
    if (nan != NULL && nan[0] != '\0') {
        const char* rest = NULL;
        r->guard.nan_step = (int)train_env_int("IVON_TEST_NAN_STEP", nan, ":", &rest, 1, INT_MAX) - 1;
        r->guard.nan_count = 1;
        if (*rest == ':') r->guard.nan_count = (int)train_env_int("IVON_TEST_NAN_STEP", rest + 1, "", NULL, 1, INT_MAX);
        printf("test: IVON_TEST_NAN_STEP: NaN gradients at steps %d..%d\n", r->guard.nan_step + 1,
               r->guard.nan_step + r->guard.nan_count);
    }
    const char* slp = getenv("IVON_TEST_SAVE_SLEEP_MS");
    if (slp != NULL && slp[0] != '\0')
        r->save_sleep_ms = (int)train_env_int("IVON_TEST_SAVE_SLEEP_MS", slp, "", NULL, 0, 3600000);
}

// -o: created and probed for writing at startup, so that a bad directory stops the run before any training
static inline void train_check_output_dir(const char* dir) {
    if (logger_mkdir_p(dir) != 0) fatalf("flag -o: cannot create output dir '%s': %s", dir, strerror(errno));
    char probe[CHECKPOINT_PATH_MAX + 64];
    int k = snprintf(probe, sizeof(probe), "%s/.write_test_%d", dir, (int)getpid());
    if (k < 0 || (size_t)k >= sizeof(probe)) fatalf("flag -o: output dir path '%s' is too long", dir);
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) fatalf("flag -o: cannot write in output dir '%s': %s", dir, strerror(errno));
    close(fd);
    unlink(probe);
}

// Parses the flags and finds the checkpoint to resume from. Returns where the model comes from: 2 = the model
// file of the resume step (in r->path), 1 = a model file (-e, in r->path), 0 = random init of the descriptor (*mc).
static inline int train_run_parse(TrainRun* r, int argc, char** argv, GPT2Config* mc) {
    memset(r, 0, sizeof(*r));
    cli_defaults(&r->cfg);
    cli_parse_or_exit(&r->cfg, argc, argv);
    r->B = r->cfg.B;
    r->T = r->cfg.T;
    r->resume_step = -1;
    r->dist = dist_single();
    if (r->cfg.resume && r->cfg.output_log_dir == NULL) fatalf("flag -y: resuming needs an output directory (-o)");
    if (r->cfg.checkpoint_every > 0 && r->cfg.output_log_dir == NULL)
        fatalf("flag -n: checkpoints need an output directory (-o)");
    if (r->cfg.output_log_dir != NULL) train_check_output_dir(r->cfg.output_log_dir);
    step_guard_init(&r->guard, r->cfg.skip_loss_z, r->cfg.skip_norm_z, OUTLIER_WINDOW);
    train_run_read_test_env(r);
    if (r->cfg.resume) r->resume_step = checkpoint_find_latest(r->cfg.output_log_dir);
    if (r->resume_step >= 0) {
        checkpoint_model_path(r->path, sizeof(r->path), r->cfg.output_log_dir, r->resume_step);
        return 2;
    }
    if (gpt2_config_from_descriptor(r->cfg.model, mc) == 0) return 0;
    if (access(r->cfg.model, R_OK) != 0)
        fatalf("flag -e: cannot open model file '%s' (nor is it a descriptor d1..d64): %s", r->cfg.model,
               strerror(errno));
    snprintf(r->path, sizeof(r->path), "%s", r->cfg.model);
    return 1;
}

// Data-parallel layout once the processes know each other (before train_run_setup). Processes other than rank 0
// print nothing on stdout (errors still go to stderr).
static inline void train_run_set_dist(TrainRun* r, int rank, int world, int local_rank, int init) {
    r->dist.rank = rank;
    r->dist.world = world;
    r->dist.local_rank = local_rank;
    r->dist.init = init;
    dist_set_modes(&r->dist, &r->cfg);
    if (rank != 0 && freopen("/dev/null", "w", stdout) == NULL) fatalf("rank %d: cannot silence stdout", rank);
}

// startup lines of the data-parallel layout and the communication per step (grad_bytes: element size of the
// reduced AdamW gradient; param_bytes: of the gathered parameters under ZeRO-1)
static inline void train_run_print_dist(const TrainRun* r, size_t num_parameters, int grad_bytes, int param_bytes) {
    const DistInfo* d = &r->dist;
    int kind = r->oc.kind;
    printf("data parallel: %d process%s (%s), noise %s (G = %d), ZeRO-%d\n", d->world, d->world > 1 ? "es" : "",
           dist_init_name(d->init), d->noise_mode == DIST_NOISE_SHARED ? "shared" : "per rank", d->noise_group,
           d->zero_stage);
    if (d->world < 2) return;
    for (int phase = 0; phase < (kind == OPT_POCO ? 2 : 1); phase++) {
        DistCost c = dist_cost(d, kind, phase, r->grad_accum, grad_bytes, param_bytes);
        printf("communication per step%s: %s = %.2f B per parameter per rank (%.1f MB)\n",
               kind == OPT_POCO ? (phase ? " (PoCo inner step)" : " (before -pst)") : "", c.text, c.bytes_per_param,
               c.bytes_per_param * (double)num_parameters / 1e6);
        if (kind == OPT_POCO && phase)
            printf("communication per anchor refresh: all-reduce 2 fp32 vectors = %.2f B per parameter per rank\n",
                   c.refresh_bytes_per_param);
    }
}

// With the model's config known: checks T, resolves the batch, opens the loaders, resolves the steps and the
// optimizer settings, opens the tokenizer, schedule and logger, prints the startup table and summary lines.
static inline void train_run_setup(TrainRun* r, GPT2Config c, size_t num_parameters) {
    TrainConfig* cfg = &r->cfg;
    const int B = r->B, T = r->T;
    if (T > c.max_seq_len) fatalf("flag -t: sequence length %d exceeds the model's context %d", T, c.max_seq_len);
    char err[512];
    const DistInfo* d = &r->dist;
    if (cli_resolve_total_batch_dp(cfg, d->world, &r->grad_accum, &r->total_batch, err, sizeof(err)) != 0)
        fatalf("%s", err);
    dataloader_init(&r->train_loader, cfg->train_data_pattern, B, T, d->rank, d->world, 1, cfg->seed);
    r->run_val = cfg->val_loss_every > 0;
    if (r->run_val) dataloader_init(&r->val_loader, cfg->val_data_pattern, B, T, d->rank, d->world, 0, cfg->seed);
    r->max_steps = cfg->max_steps;
    if (r->max_steps < 0) {
        r->max_steps = (int)(dataloader_num_batches(&r->train_loader) / r->grad_accum);
        if (r->max_steps < 1)
            fatalf("flag -d: one step needs %d batches but the train data has %zu", r->grad_accum,
                   (size_t)dataloader_num_batches(&r->train_loader));
    }
    if (r->run_val) {
        r->val_batches = cfg->val_max_steps;
        if (r->val_batches == 0) fatalf("flag -m: 0 val batches; use -1 (the whole val set), >= 1, or -v 0");
        // per process: batch k of the val set goes to rank k % P
        if (r->val_batches > 0) r->val_batches = r->val_batches / d->world > 0 ? r->val_batches / d->world : 1;
        if (r->val_batches < 0 || (size_t)r->val_batches > dataloader_num_batches(&r->val_loader))
            r->val_batches = (int)dataloader_num_batches(&r->val_loader);
    }
    if (optimizer_config_from_train(&r->oc, cfg, (long long)r->train_loader.num_tokens, r->max_steps, &r->peak_lr,
                                    &r->bma_samples, err, sizeof(err)) != 0)
        fatalf("%s", err);
    if (r->oc.kind == OPT_POCO && poco_mega_batches(&r->oc, r->grad_accum * d->world) % d->world != 0)
        fatalf("flag -pmb: %d anchor-refresh micro-batches do not split evenly over %d processes",
               poco_mega_batches(&r->oc, r->grad_accum * d->world), d->world);
    r->run_sample = cfg->sample_every > 0 && d->rank == 0;
    r->gen_len = cfg->gen_tokens + 1 < T ? cfg->gen_tokens + 1 : T;
    if (r->run_sample) {
        tokenizer_init(&r->tokenizer, cfg->tokenizer_path);
        if (r->tokenizer.vocab_size < (uint32_t)c.vocab_size)
            fatalf("tokenizer file '%s' (flag -tk) has %u tokens but the model's vocab has %d", cfg->tokenizer_path,
                   r->tokenizer.vocab_size, c.vocab_size);
    }
    r->train_loader.vocab_size = (uint32_t)c.vocab_size;
    if (r->run_val) r->val_loader.vocab_size = (uint32_t)c.vocab_size;
    lr_scheduler_init(&r->sched, cfg->lr_schedule, r->peak_lr, cfg->warmup_iterations, r->max_steps,
                      cfg->final_lr_frac);
    logger_init(&r->logger, cfg->output_log_dir, d->rank, r->resume_step >= 0);

    cli_print_table_rows(stdout, cfg);
    train_print_optimizer_rows(&r->oc, r->peak_lr, r->bma_samples, r->grad_accum, d);
    cli_table_line(stdout);
    printf("model: L=%d NH=%d C=%d maxT=%d V=%d Vp=%d, %zu parameters\n", c.num_layers, c.num_heads, c.channels,
           c.max_seq_len, c.vocab_size, c.padded_vocab_size, num_parameters);
    printf("batch: B=%d T=%d, grad accumulation %d x %d processes -> %lld tokens per step; %d steps\n", B, T,
           r->grad_accum, d->world, r->total_batch, r->max_steps);
    printf("train data: %zu tokens, %zu batches per epoch\n", (size_t)r->train_loader.num_tokens,
           (size_t)dataloader_num_batches(&r->train_loader));
    if (r->run_val)
        printf("val data: %zu tokens, %d batches per evaluation (%d per process)\n", (size_t)r->val_loader.num_tokens,
               r->val_batches * d->world, r->val_batches);
}

// what happens at `step` (before optimizer step `step`; step == max_steps is the final evaluation)
static inline int train_run_val_due(const TrainRun* r, int step) {
    return r->run_val && (step % r->cfg.val_loss_every == 0 || step == r->max_steps);
}
static inline int train_run_sample_due(const TrainRun* r, int step) {
    return r->run_sample && step > 0 && (step % r->cfg.sample_every == 0 || step == r->max_steps);
}
static inline int train_run_checkpoint_due(const TrainRun* r, int step, int start_step) {
    return r->cfg.output_log_dir != NULL && r->cfg.checkpoint_every > 0 && step > start_step &&
           (step % r->cfg.checkpoint_every == 0 || step == r->max_steps);
}

// state header of the checkpoint at `step`: train_state_header plus the skip counters and B, T, -d (checked on resume)
static inline StateHeader train_run_state_header(const TrainRun* r, int step, size_t num_parameters, int anchor_step,
                                                 long long mega_tokens) {
    StateHeader sh = train_state_header(step, r->oc.kind, num_parameters, &r->train_loader, r->cfg.seed, anchor_step,
                                        mega_tokens);
    sh.extra[3] = r->skipped_total;
    sh.extra[4] = r->skipped_in_a_row;
    sh.extra[5] = r->B;
    sh.extra[6] = r->T;
    sh.extra[7] = r->grad_accum;
    sh.extra[8] = r->dist.world;
    sh.extra[9] = r->dist.noise_group;
    if (r->oc.kind != OPT_ADAMW) {  // what sigma = 1/sqrt(ess (h + delta)) needs besides h (llmc/posterior.h)
        checkpoint_split_double(&sh.extra[CHECKPOINT_SLOT_ESS], r->oc.ess);
        checkpoint_split_double(&sh.extra[CHECKPOINT_SLOT_PRIOR_2D], r->oc.prior_2d);
        checkpoint_split_double(&sh.extra[CHECKPOINT_SLOT_PRIOR_1D], r->oc.prior_1d);
    }
    return sh;
}

// checks a state header read for the resume (step, optimizer, seed, B, T, -d) and restores the loader position and
// the skip counters; returns the PoCo anchor step and mega-batch token count
static inline void train_run_restore(TrainRun* r, const char* path, const StateHeader* sh, int* anchor_step,
                                     long long* mega_tokens) {
    if (sh->seed != r->cfg.seed)
        fatalf("state file '%s' was written with -seed %llu, this run has -seed %llu (flag -seed)", path,
               (unsigned long long)sh->seed, (unsigned long long)r->cfg.seed);
    if ((sh->extra[8] != 0 && sh->extra[8] != r->dist.world) || (sh->extra[9] != 0 && sh->extra[9] != r->dist.noise_group))
        fatalf("state file '%s' was written by %d processes with noise group %d, this run has %d and %d (mpirun -np, "
               "flags -dp, -dn, -dg): the data order and the noise depend on them", path, sh->extra[8], sh->extra[9],
               r->dist.world, r->dist.noise_group);
    // 0 = a state file written before these slots existed
    if ((sh->extra[5] != 0 && sh->extra[5] != r->B) || (sh->extra[6] != 0 && sh->extra[6] != r->T) ||
        (sh->extra[7] != 0 && sh->extra[7] != r->grad_accum))
        fatalf("state file '%s' was written with B=%d T=%d and %d micro-batches per step, this run has B=%d T=%d and "
               "%d (flags -b, -t, -d)", path, sh->extra[5], sh->extra[6], sh->extra[7], r->B, r->T, r->grad_accum);
    train_state_restore(path, sh, r->resume_step, r->oc.kind, &r->train_loader, anchor_step, mega_tokens);
    r->skipped_total = sh->extra[3];
    r->skipped_in_a_row = sh->extra[4];
}

// After a checkpoint's model and state files are written: (test-only pause), the DONE marker, then the rolling
// deletion of older checkpoints (-nk, -nm).
static inline void train_run_checkpoint_done(TrainRun* r, int step) {
    const char* dir = r->cfg.output_log_dir;
    if (r->save_sleep_ms > 0) {
        struct timespec ts = {r->save_sleep_ms / 1000, (long)(r->save_sleep_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    checkpoint_write_done(dir, step);
    int removed = checkpoint_prune(dir, step, r->cfg.checkpoint_keep, r->cfg.checkpoint_major);
    if (removed > 0) printf("checkpoint: step %d written to %s (%d older deleted)\n", step, dir, removed);
    else printf("checkpoint: step %d written to %s\n", step, dir);
}

// After each optimizer step: counts a skipped step, prints and logs it (`s:<step> skip:<reason> ...`), and ends the
// run with an error after -sx skipped steps in a row.
static inline void train_run_account_step(TrainRun* r, int step, const StepStats* st) {
    if (st->verdict == STEP_APPLIED) {
        r->skipped_in_a_row = 0;
        return;
    }
    r->skipped_total++;
    r->skipped_in_a_row++;
    const char* why = step_verdict_name(st->verdict);
    printf("step %4d/%d | skipped (%s): loss %g, norm %g, z loss %.2f, z norm %.2f | %d in a row, %d in all\n",
           step + 1, r->max_steps, why, (double)st->loss, (double)st->grad_norm, st->z_loss, st->z_norm,
           r->skipped_in_a_row, r->skipped_total);
    logger_log(&r->logger, step + 1, "skip:%s loss:%g norm:%g zl:%.3f zn:%.3f row:%d total:%d", why, (double)st->loss,
               (double)st->grad_norm, st->z_loss, st->z_norm, r->skipped_in_a_row, r->skipped_total);
    if (r->cfg.skip_max > 0 && r->skipped_in_a_row >= r->cfg.skip_max)
        fatalf("%d consecutive optimizer steps skipped (last: step %d, %s); stopping (flag -sx)", r->skipped_in_a_row,
               step + 1, why);
}

static inline void train_run_free(TrainRun* r) {
    if (r->run_sample) tokenizer_free(&r->tokenizer);
    logger_free(&r->logger);
    if (r->run_val) dataloader_free(&r->val_loader);
    dataloader_free(&r->train_loader);
}

#endif // LLMC_TRAIN_COMMON_H
