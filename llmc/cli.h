// Command line: THE one flag table. The parser, the usage text, the boxed startup table and the optimizer
// defaults are all generated from CLI_FLAGS. Adding a flag = one TrainConfig (or OptimizerConfig) field + one
// table row; an optimizer setting's cross-field check is in optimizer_config_check (llmc/optim_config.h).
// Flags come as `-flag value` pairs (same meanings as llm.c's train_gpt2cu); `--help` / `-help` print usage.
#ifndef LLMC_CLI_H
#define LLMC_CLI_H

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <stddef.h>
#include <stdarg.h>
#include <limits.h>
#include <math.h>
#include <errno.h>
#include "utils.h"
#include "optim_config.h"

typedef struct {
    const char* train_data_pattern; // -i
    const char* val_data_pattern;   // -j
    const char* model;              // -e  .bin file or descriptor dN
    const char* output_log_dir;     // -o  NULL = no logs, no checkpoints
    int checkpoint_every;           // -n
    int checkpoint_keep;            // -nk  0 = keep all
    int checkpoint_major;           // -nm  0 = no major checkpoints
    int resume;                     // -y
    int B;                          // -b
    int T;                          // -t
    int total_batch_size;           // -d  -1 = B*T
    int max_steps;                  // -x  -1 = one epoch
    const char* lr_schedule;        // -k
    float learning_rate;            // -l
    int warmup_iterations;          // -u
    float final_lr_frac;            // -q
    int val_loss_every;             // -v
    int val_max_steps;              // -m  -1 = the whole val set
    int sample_every;               // -s
    int gen_tokens;                 // -g
    int overfit_single_batch;       // -a
    int recompute;                  // -rc  CUDA trainer: 0 none, 1 GELU, 2 GELU + layernorm
    int gelu_fusion;                // -ge  CUDA trainer: 0 none, 1 forward, 2 forward + backward
    uint64_t seed;                  // -seed
    const char* tokenizer_path;     // -tk
    float skip_loss_z;              // -sl  0 = off
    float skip_norm_z;              // -sg  0 = off
    int skip_max;                   // -sx  0 = never stop
    // every optimizer setting (-opt, -c, -gc, -ab1 .. -pmn); -1 = resolved by optimizer_config_from_train:
    // ess (-ess: tokens in the train shards), poco_start (-pst: 50% of the max steps)
    OptimizerConfig opt;
    int bma_samples;                // -bma  -1 = 4 for ivon/poco, 0 for adamw
    // data parallel (llmc/dist.h)
    const char* dp_noise;           // -dn rank|shared
    int dp_noise_group;             // -dg  -1 = 1 (rank) or P (shared)
    int zero_stage;                 // -zs
    const char* dp_init;            // -dm auto|mpi|tcp|fs
    int dp_processes;               // -dp  tcp/fs only
    int dp_rank;                    // -dr  tcp/fs only
    int dp_gpus_per_node;           // -dl  -1 = launcher's local rank, else rank % visible GPUs
    const char* dp_server;          // -ds  host:port (tcp)
    const char* dp_fs_dir;          // -df  shared directory (fs)
} TrainConfig;

typedef enum {
    CLI_INT,    // int, checked against [min, max]
    CLI_FLOAT,  // float, finite, checked against [min, max]
    CLI_DOUBLE, // double, finite, checked against [min, max] (hyper-parameters used in double, e.g. 0.99999)
    CLI_U64,    // uint64_t, decimal, no range check (full uint64 range)
    CLI_STRING, // const char*, non-empty; points into argv or at the default literal
    CLI_CHOICE, // const char*, one of the '|'-separated `choices`; points at argv or the default
    CLI_ENUM,   // int, the index of the value in the '|'-separated `choices`
} CliType;

typedef struct {
    const char* flag;     // "-b"
    const char* name;     // short name for the startup table
    CliType type;
    size_t offset;        // offsetof(TrainConfig, field)
    const char* def;      // default as a string; NULL = none (strings only)
    double min, max;      // inclusive range for CLI_INT / CLI_FLOAT
    const char* choices;  // CLI_CHOICE, CLI_ENUM: "a|b|c"
    const char* help;
} CliFlag;

#define CLI_NO_RANGE 0.0, 0.0
#define CLI_INT_MAX_D 2147483647.0

static const CliFlag CLI_FLAGS[] = {
    {"-i", "train data pattern", CLI_STRING, offsetof(TrainConfig, train_data_pattern),
     "dev/data/austen/austen_train.bin", CLI_NO_RANGE, NULL, "train data shards, a glob pattern"},
    {"-j", "val data pattern", CLI_STRING, offsetof(TrainConfig, val_data_pattern),
     "dev/data/austen/austen_val.bin", CLI_NO_RANGE, NULL, "val data shards, a glob pattern"},
    {"-e", "model", CLI_STRING, offsetof(TrainConfig, model), "d4", CLI_NO_RANGE, NULL,
     "model: a .bin model file to start from, or a descriptor dN (random init, e.g. d12)"},
    {"-o", "output dir", CLI_STRING, offsetof(TrainConfig, output_log_dir), NULL, CLI_NO_RANGE, NULL,
     "output dir for main.log and checkpoints (none = no log, no checkpoints)"},
    {"-n", "checkpoint every", CLI_INT, offsetof(TrainConfig, checkpoint_every), "0", 0, CLI_INT_MAX_D, NULL,
     "write a checkpoint to -o every N steps and after the last step (0 = never)"},
    {"-nk", "checkpoints kept", CLI_INT, offsetof(TrainConfig, checkpoint_keep), "0", 0, CLI_INT_MAX_D, NULL,
     "keep the last N checkpoints, delete older minor ones once a new one is complete (0 = keep all)"},
    {"-nm", "major checkpoint every", CLI_INT, offsetof(TrainConfig, checkpoint_major), "0", 0, CLI_INT_MAX_D, NULL,
     "checkpoints at multiples of M steps are major: never deleted by -nk (0 = none)"},
    {"-y", "resume", CLI_INT, offsetof(TrainConfig, resume), "0", 0, 1, NULL,
     "resume from the latest checkpoint in -o (0/1)"},
    {"-b", "micro batch size B", CLI_INT, offsetof(TrainConfig, B), "8", 1, 65536, NULL,
     "micro batch size B (sequences per forward/backward)"},
    {"-t", "sequence length T", CLI_INT, offsetof(TrainConfig, T), "128", 1, 1048576, NULL,
     "sequence length T (at most the model's max context)"},
    {"-d", "total batch size", CLI_INT, offsetof(TrainConfig, total_batch_size), "-1", -1, CLI_INT_MAX_D, NULL,
     "total batch size in tokens, a multiple of B*T (gradient accumulation); -1 = B*T"},
    {"-x", "max steps", CLI_INT, offsetof(TrainConfig, max_steps), "-1", -1, CLI_INT_MAX_D, NULL,
     "number of optimizer steps; -1 = one epoch of the train data"},
    {"-k", "lr schedule", CLI_CHOICE, offsetof(TrainConfig, lr_schedule), "cosine", CLI_NO_RANGE,
     "cosine|linear|constant|wsd", "learning rate schedule after warmup"},
    {"-l", "learning rate", CLI_FLOAT, offsetof(TrainConfig, learning_rate), "-1", -1, 1e9, NULL,
     "peak learning rate; -1 = per optimizer: adamw 6e-4, ivon/poco 300 (un-rescaled, see -rescale)"},
    {"-u", "warmup steps", CLI_INT, offsetof(TrainConfig, warmup_iterations), "0", 0, CLI_INT_MAX_D, NULL,
     "linear learning rate warmup steps"},
    {"-q", "final lr fraction", CLI_FLOAT, offsetof(TrainConfig, final_lr_frac), "0.1", 0, 1, NULL,
     "final learning rate as a fraction of -l"},
    {"-c", "weight decay", CLI_DOUBLE, offsetof(TrainConfig, opt.weight_decay), "0.1", 0, 10, NULL,
     "weight decay (AdamW, 2-D weights only)"},
    {"-ab1", "adamw beta1", CLI_DOUBLE, offsetof(TrainConfig, opt.adamw_beta1), "0.9", 0, 1, NULL,
     "AdamW beta1 (< 1)"},
    {"-ab2", "adamw beta2", CLI_DOUBLE, offsetof(TrainConfig, opt.adamw_beta2), "0.95", 0, 1, NULL,
     "AdamW beta2 (< 1)"},
    {"-ae", "adamw eps", CLI_DOUBLE, offsetof(TrainConfig, opt.adamw_eps), "1e-8", 0, 1, NULL,
     "AdamW epsilon"},
    {"-v", "val loss every", CLI_INT, offsetof(TrainConfig, val_loss_every), "20", 0, CLI_INT_MAX_D, NULL,
     "val loss every N steps (0 = off)"},
    {"-m", "val max batches", CLI_INT, offsetof(TrainConfig, val_max_steps), "20", -1, CLI_INT_MAX_D, NULL,
     "max val batches per val loss (-1 = the whole val set)"},
    {"-s", "sample every", CLI_INT, offsetof(TrainConfig, sample_every), "50", 0, CLI_INT_MAX_D, NULL,
     "generate a text sample every N steps (0 = off)"},
    {"-g", "gen tokens", CLI_INT, offsetof(TrainConfig, gen_tokens), "64", 1, 1048576, NULL,
     "tokens to generate per sample"},
    {"-a", "overfit single batch", CLI_INT, offsetof(TrainConfig, overfit_single_batch), "0", 0, 1, NULL,
     "overfit a single batch (0/1), for debugging"},
    {"-rc", "recompute", CLI_INT, offsetof(TrainConfig, recompute), "1", 0, 2, NULL,
     "train_gpt2cu: recompute in the backward, 0 none, 1 GELU, 2 GELU + layernorm (the CPU trainer keeps all)"},
    {"-ge", "gelu fusion", CLI_INT, offsetof(TrainConfig, gelu_fusion), "2", 0, 2, NULL,
     "train_gpt2cu: GELU in the cuBLASLt matmul epilogues, 0 none (own kernels), 1 forward, 2 forward + backward "
     "(the CPU trainer: not used)"},
    {"-opt", "optimizer", CLI_ENUM, offsetof(TrainConfig, opt.kind), "adamw", CLI_NO_RANGE, "adamw|ivon|poco",
     "optimizer"},
    {"-seed", "seed", CLI_U64, offsetof(TrainConfig, seed), "1337", CLI_NO_RANGE, NULL,
     "random seed for init, data shuffle and sampling"},
    {"-tk", "tokenizer", CLI_STRING, offsetof(TrainConfig, tokenizer_path), "gpt2_tokenizer.bin", CLI_NO_RANGE,
     NULL, "tokenizer file for decoding samples"},
    {"-gc", "grad clip", CLI_DOUBLE, offsetof(TrainConfig, opt.grad_clip), "1.0", 0, 1e30, NULL,
     "gradient clip norm (adamw: global, after accumulation; ivon/poco: each micro-batch); 0 = off"},
    {"-sl", "skip loss z-score", CLI_FLOAT, offsetof(TrainConfig, skip_loss_z), "0", 0, 1e9, NULL,
     "skip the update when the loss z-score over the last 128 steps exceeds this (0 = off)"},
    {"-sg", "skip grad norm z-score", CLI_FLOAT, offsetof(TrainConfig, skip_norm_z), "0", 0, 1e9, NULL,
     "skip the update when the grad norm z-score over the last 128 steps exceeds this (0 = off)"},
    {"-sx", "max skipped in a row", CLI_INT, offsetof(TrainConfig, skip_max), "16", 0, CLI_INT_MAX_D, NULL,
     "stop with an error after N consecutive skipped steps (non-finite or spike; 0 = never)"},
    {"-ess", "ivon ess", CLI_DOUBLE, offsetof(TrainConfig, opt.ess), "-1", -1, 1e30, NULL,
     "IVON effective sample size lambda; -1 = number of tokens in the train shards"},
    {"-h0", "ivon hess init", CLI_DOUBLE, offsetof(TrainConfig, opt.hess_init), "1e-3", 0, 1e30, NULL,
     "IVON initial Hessian h0 (> 0)"},
    {"-b1", "ivon beta1", CLI_DOUBLE, offsetof(TrainConfig, opt.beta1), "0.9", 0, 1, NULL,
     "IVON momentum beta1 (< 1)"},
    {"-b2", "ivon beta2", CLI_DOUBLE, offsetof(TrainConfig, opt.beta2), "0.99999", 0, 1, NULL,
     "IVON Hessian EMA beta2"},
    {"-r", "ivon clip radius", CLI_DOUBLE, offsetof(TrainConfig, opt.clip_radius), "1e-3", 0, 1e30, NULL,
     "IVON element-wise clip radius of the Newton step; 0 = no clipping"},
    {"-pr", "ivon prior 2-D", CLI_DOUBLE, offsetof(TrainConfig, opt.prior_2d), "1e-6", 0, 1e30, NULL,
     "IVON prior precision delta of the 2-D weight tensors"},
    {"-pr1", "ivon prior 1-D", CLI_DOUBLE, offsetof(TrainConfig, opt.prior_1d), "0", 0, 1e30, NULL,
     "IVON prior precision delta of the 1-D tensors (biases, layernorm)"},
    {"-debias", "ivon debias", CLI_INT, offsetof(TrainConfig, opt.debias), "1", 0, 1, NULL,
     "IVON momentum debiasing (0/1)"},
    {"-rescale", "ivon rescale lr", CLI_INT, offsetof(TrainConfig, opt.rescale_lr), "1", 0, 1, NULL,
     "IVON lr rescaling by (h0 + delta) (0/1)"},
    {"-bma", "bma samples", CLI_INT, offsetof(TrainConfig, bma_samples), "-1", -1, 1000000, NULL,
     "posterior-predictive (BMA) val loss with S samples; -1 = 4 for ivon/poco, 0 for adamw"},
    {"-pg", "poco gamma", CLI_DOUBLE, offsetof(TrainConfig, opt.poco_gamma), "0.5", 0, 1, NULL,
     "PoCo correction strength gamma"},
    {"-pgs", "poco gamma schedule", CLI_ENUM, offsetof(TrainConfig, opt.poco_gamma_schedule), "constant",
     CLI_NO_RANGE, "constant|linear", "PoCo gamma schedule (linear: gamma -> 0 at the last step, from -pst)"},
    {"-pst", "poco start step", CLI_INT, offsetof(TrainConfig, opt.poco_start), "-1", -1, CLI_INT_MAX_D, NULL,
     "PoCo first corrected step (earlier: plain IVON); -1 = 50% of the max steps"},
    {"-pp", "poco period", CLI_INT, offsetof(TrainConfig, opt.poco_period), "32", 1, CLI_INT_MAX_D, NULL,
     "PoCo steps between anchor refreshes T_out"},
    {"-pmb", "poco mega batches", CLI_INT, offsetof(TrainConfig, opt.poco_mega_batches), "-1", -1, CLI_INT_MAX_D,
     NULL, "PoCo micro-batches per anchor refresh; -1 = period x micro-batches per step"},
    {"-psn", "poco shared noise", CLI_INT, offsetof(TrainConfig, opt.poco_shared_noise), "1", 0, 1, NULL,
     "PoCo: theta_out uses the noise of theta_in (0/1)"},
    {"-ppx", "poco prox", CLI_INT, offsetof(TrainConfig, opt.poco_prox), "1", 0, 1, NULL,
     "PoCo proximal term gamma (hbar_out - hhat_out)(m - m_out) (0/1)"},
    {"-ppm", "poco prox momentum", CLI_INT, offsetof(TrainConfig, opt.poco_prox_in_momentum), "0", 0, 1, NULL,
     "PoCo: proximal term inside the momentum (1) or next to delta*m (0)"},
    {"-pmo", "poco momentum", CLI_INT, offsetof(TrainConfig, opt.poco_momentum), "1", 0, 1, NULL,
     "PoCo momentum: 1 = IVON-PoCoMo (-b1, -debias), 0 = IVON-PoCo (beta1 0, no debias)"},
    {"-pce", "poco clip each", CLI_INT, offsetof(TrainConfig, opt.poco_clip_each), "1", 0, 1, NULL,
     "PoCo: clip g_in and g_out each (1) or both by the norm of g_in - gamma*g_out (0)"},
    {"-pmn", "poco mega noise", CLI_INT, offsetof(TrainConfig, opt.poco_mega_noise), "1", 0, 1, NULL,
     "PoCo mega-batch at sampled m_out + sigma_out*eps (1) or at m_out, hbar_out = h_out (0)"},
    {"-dn", "dp noise", CLI_CHOICE, offsetof(TrainConfig, dp_noise), "rank", CLI_NO_RANGE, "rank|shared",
     "data parallel IVON noise: rank = own eps per micro-batch and rank (accumulators reduced), shared = same eps "
     "on all ranks at a micro-step (1 micro-batch per rank: only the gradient reduced)"},
    {"-dg", "dp noise group", CLI_INT, offsetof(TrainConfig, dp_noise_group), "-1", -1, 1000000, NULL,
     "consecutive global micro-batches sharing one eps; -1 = 1 with -dn rank, processes with -dn shared "
     "(set it to reproduce a shared-noise run of N processes in fewer)"},
    {"-zs", "zero stage", CLI_INT, offsetof(TrainConfig, zero_stage), "0", 0, 1, NULL,
     "optimizer state sharding: 0 = replicated, 1 = ZeRO-1 (adamw, ivon; poco in train_gpt2cu only)"},
    {"-dm", "dp init method", CLI_CHOICE, offsetof(TrainConfig, dp_init), "auto", CLI_NO_RANGE, "auto|mpi|tcp|fs",
     "how processes find each other: auto = mpi under mpirun else one process; tcp (-ds), fs (-df): train_gpt2cu "
     "with -dp, -dr, e.g. under Slurm without MPI"},
    {"-dp", "dp processes", CLI_INT, offsetof(TrainConfig, dp_processes), "-1", -1, 1000000, NULL,
     "number of processes for -dm tcp|fs (mpirun sets it)"},
    {"-dr", "dp rank", CLI_INT, offsetof(TrainConfig, dp_rank), "-1", -1, 1000000, NULL,
     "rank of this process for -dm tcp|fs, 0 .. -dp - 1 (mpirun sets it)"},
    {"-dl", "gpus per node", CLI_INT, offsetof(TrainConfig, dp_gpus_per_node), "-1", -1, 1024, NULL,
     "train_gpt2cu: GPU = rank % N; -1 = the launcher's local rank, else rank % visible GPUs"},
    {"-ds", "dp server", CLI_STRING, offsetof(TrainConfig, dp_server), NULL, CLI_NO_RANGE, NULL,
     "-dm tcp: host:port where rank 0 listens for the other ranks"},
    {"-df", "dp fs dir", CLI_STRING, offsetof(TrainConfig, dp_fs_dir), NULL, CLI_NO_RANGE, NULL,
     "-dm fs: directory on a file system shared by all ranks (rank 0 writes the NCCL id there)"},
};
#define CLI_NUM_FLAGS ((int)(sizeof(CLI_FLAGS) / sizeof(CLI_FLAGS[0])))

static inline const CliFlag* cli_find_flag(const char* flag) {
    for (int i = 0; i < CLI_NUM_FLAGS; i++) {
        if (strcmp(CLI_FLAGS[i].flag, flag) == 0) return &CLI_FLAGS[i];
    }
    return NULL;
}

// index of `value` in a '|'-separated list, -1 if absent
static inline int cli_choice_index(const char* choices, const char* value) {
    size_t n = strlen(value);
    int idx = 0;
    const char* p = choices;
    while (1) {
        const char* bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, value, n) == 0) return idx;
        if (!bar) return -1;
        p = bar + 1;
        idx++;
    }
}

// the idx-th name of a '|'-separated list into buf ("?" if absent)
static inline void cli_choice_name(const char* choices, int idx, char* buf, size_t n) {
    const char* p = choices;
    for (int i = 0; i < idx && p != NULL; i++) {
        p = strchr(p, '|');
        if (p != NULL) p++;
    }
    if (p == NULL || idx < 0) {
        snprintf(buf, n, "?");
        return;
    }
    const char* bar = strchr(p, '|');
    int len = bar ? (int)(bar - p) : (int)strlen(p);
    snprintf(buf, n, "%.*s", len, p);
}

// formats "flag <flag>: <message>" into err
static inline void cli_errorf(char* err, size_t errlen, const CliFlag* f, const char* fmt, ...) {
    if (err == NULL || errlen == 0) return;
    int k = snprintf(err, errlen, "flag %s: ", f->flag);
    if (k < 0 || (size_t)k >= errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
    va_end(ap);
}

// sets the field of one flag from a string; 0 on success, -1 with a message in err
static inline int cli_set(TrainConfig* cfg, const CliFlag* f, const char* value, char* err, size_t errlen) {
    char* base = (char*)cfg + f->offset;
    char* end = NULL;
    switch (f->type) {
        case CLI_INT: {
            errno = 0;
            long long v = strtoll(value, &end, 10);
            if (value[0] == '\0' || *end != '\0') {
                cli_errorf(err, errlen, f, "'%s' is not an integer", value);
                return -1;
            }
            if (errno == ERANGE || (double)v < f->min || (double)v > f->max) {
                cli_errorf(err, errlen, f, "%s is out of range [%.0f, %.0f]", value, f->min, f->max);
                return -1;
            }
            *(int*)base = (int)v;
            return 0;
        }
        case CLI_FLOAT: {
            errno = 0;
            float v = strtof(value, &end);
            if (value[0] == '\0' || *end != '\0') {
                cli_errorf(err, errlen, f, "'%s' is not a number", value);
                return -1;
            }
            if (errno == ERANGE || !isfinite(v) || (double)v < f->min || (double)v > f->max) {
                cli_errorf(err, errlen, f, "%s is out of range [%g, %g]", value, f->min, f->max);
                return -1;
            }
            *(float*)base = v;
            return 0;
        }
        case CLI_DOUBLE: {
            errno = 0;
            double v = strtod(value, &end);
            if (value[0] == '\0' || *end != '\0') {
                cli_errorf(err, errlen, f, "'%s' is not a number", value);
                return -1;
            }
            if (errno == ERANGE || !isfinite(v) || v < f->min || v > f->max) {
                cli_errorf(err, errlen, f, "%s is out of range [%g, %g]", value, f->min, f->max);
                return -1;
            }
            *(double*)base = v;
            return 0;
        }
        case CLI_U64: {
            errno = 0;
            const char* p = value;
            while (*p == ' ' || *p == '\t') p++;
            if (*p < '0' || *p > '9') {  // strtoull would accept and negate a leading '-'
                cli_errorf(err, errlen, f, "'%s' is not a non-negative integer", value);
                return -1;
            }
            unsigned long long v = strtoull(value, &end, 10);
            if (*end != '\0') {
                cli_errorf(err, errlen, f, "'%s' is not a non-negative integer", value);
                return -1;
            }
            if (errno == ERANGE) {
                cli_errorf(err, errlen, f, "%s is out of range [0, 18446744073709551615]", value);
                return -1;
            }
            *(uint64_t*)base = (uint64_t)v;
            return 0;
        }
        case CLI_STRING:
            if (value[0] == '\0') {
                cli_errorf(err, errlen, f, "empty value");
                return -1;
            }
            *(const char**)base = value;
            return 0;
        case CLI_CHOICE:
            if (cli_choice_index(f->choices, value) < 0) {
                cli_errorf(err, errlen, f, "'%s' is not one of %s", value, f->choices);
                return -1;
            }
            *(const char**)base = value;
            return 0;
        case CLI_ENUM: {
            int idx = cli_choice_index(f->choices, value);
            if (idx < 0) {
                cli_errorf(err, errlen, f, "'%s' is not one of %s", value, f->choices);
                return -1;
            }
            *(int*)base = idx;
            return 0;
        }
    }
    cli_errorf(err, errlen, f, "internal error: bad flag type");
    return -1;
}

// every field to its table default
static inline void cli_defaults(TrainConfig* cfg) {
    memset(cfg, 0, sizeof(*cfg));
    char err[256];
    for (int i = 0; i < CLI_NUM_FLAGS; i++) {
        const CliFlag* f = &CLI_FLAGS[i];
        if (f->def == NULL) {
            if (f->type != CLI_STRING) fatalf("flag table: %s has no default", f->flag);
            *(const char**)((char*)cfg + f->offset) = NULL;
            continue;
        }
        if (cli_set(cfg, f, f->def, err, sizeof(err)) != 0) fatalf("flag table: bad default: %s", err);
    }
}

// the optimizer settings of the table's defaults, for optimizer `kind` (OptimizerKind); ess, poco_start stay -1
static inline void optimizer_config_defaults(OptimizerConfig* oc, int kind) {
    TrainConfig cfg;
    cli_defaults(&cfg);
    *oc = cfg.opt;
    oc->kind = kind;
    oc->seed = cfg.seed;
}

static inline int cli_is_help(const char* arg) {
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-help") == 0;
}

// Parses `-flag value` pairs of argv[1..argc-1] into cfg (which should hold the defaults).
// Returns 0 on success, 1 if help was asked for, -1 on error with one line "flag -x: ..." in err.
static inline int cli_parse(TrainConfig* cfg, int argc, char** argv, char* err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) return 1;
    }
    for (int i = 1; i < argc; i += 2) {
        const char* arg = argv[i];
        const CliFlag* f = cli_find_flag(arg);
        if (f == NULL) {
            if (err && errlen) {
                if (arg[0] != '-') snprintf(err, errlen, "flag %s: expected a flag starting with '-'", arg);
                else snprintf(err, errlen, "flag %s: unknown flag", arg);
            }
            return -1;
        }
        if (i + 1 >= argc) {
            cli_errorf(err, errlen, f, "missing value");
            return -1;
        }
        if (cli_set(cfg, f, argv[i + 1], err, errlen) != 0) return -1;
    }
    return 0;
}

// usage text listing every flag of the table with its default and range or choices
static inline void cli_usage(FILE* fp, const char* prog) {
    fprintf(fp, "Usage: %s [-flag value ...]\n", prog);
    fprintf(fp, "Flags (default in brackets):\n");
    for (int i = 0; i < CLI_NUM_FLAGS; i++) {
        const CliFlag* f = &CLI_FLAGS[i];
        const char* kind = "";
        switch (f->type) {
            case CLI_INT: kind = "<int>"; break;
            case CLI_FLOAT: kind = "<float>"; break;
            case CLI_DOUBLE: kind = "<float>"; break;
            case CLI_U64: kind = "<uint>"; break;
            case CLI_STRING: kind = "<string>"; break;
            case CLI_CHOICE:
            case CLI_ENUM: kind = "<choice>"; break;
        }
        fprintf(fp, "  %-7s %-9s %s [%s]", f->flag, kind, f->help, f->def ? f->def : "none");
        if (f->type == CLI_INT) fprintf(fp, " range [%.0f, %.0f]", f->min, f->max);
        if (f->type == CLI_FLOAT || f->type == CLI_DOUBLE) fprintf(fp, " range [%g, %g]", f->min, f->max);
        if (f->type == CLI_CHOICE || f->type == CLI_ENUM) fprintf(fp, " one of %s", f->choices);
        fprintf(fp, "\n");
    }
    fprintf(fp, "  --help            print this text and exit\n");
}

// Parses or exits: on error prints "error: flag -x: ..." and a hint, exits 1; on --help prints usage, exits 0.
static inline void cli_parse_or_exit(TrainConfig* cfg, int argc, char** argv) {
    char err[512];
    int rc = cli_parse(cfg, argc, argv, err, sizeof(err));
    if (rc == 1) {
        cli_usage(stdout, argc > 0 ? argv[0] : "train");
        exit(EXIT_SUCCESS);
    }
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", err);
        fprintf(stderr, "run %s --help for the list of flags\n", argc > 0 ? argv[0] : "train");
        exit(EXIT_FAILURE);
    }
}

// current value of a flag's field as text
static inline void cli_format_value(const TrainConfig* cfg, const CliFlag* f, char* buf, size_t n) {
    const char* base = (const char*)cfg + f->offset;
    switch (f->type) {
        case CLI_INT: snprintf(buf, n, "%d", *(const int*)base); return;
        case CLI_FLOAT: snprintf(buf, n, "%g", (double)*(const float*)base); return;
        case CLI_DOUBLE: snprintf(buf, n, "%.10g", *(const double*)base); return;
        case CLI_U64: snprintf(buf, n, "%llu", (unsigned long long)*(const uint64_t*)base); return;
        case CLI_STRING:
        case CLI_CHOICE: {
            const char* s = *(const char* const*)base;
            snprintf(buf, n, "%s", s ? s : "none");
            return;
        }
        case CLI_ENUM: cli_choice_name(f->choices, *(const int*)base, buf, n); return;
    }
    snprintf(buf, n, "?");
}

// Boxed table: fixed column widths so that callers can append their own rows with the same helpers.
#define CLI_TABLE_KEY_W 30
#define CLI_TABLE_VAL_W 50

static inline void cli_table_line(FILE* fp) {
    fputc('+', fp);
    for (int i = 0; i < CLI_TABLE_KEY_W + 2; i++) fputc('-', fp);
    fputc('+', fp);
    for (int i = 0; i < CLI_TABLE_VAL_W + 2; i++) fputc('-', fp);
    fputs("+\n", fp);
}

static inline void cli_table_row(FILE* fp, const char* key, const char* value) {
    fprintf(fp, "| %-*s | %-*s |\n", CLI_TABLE_KEY_W, key, CLI_TABLE_VAL_W, value);
}

// header + one row per flag with its current value (no closing line: callers may add rows,
// then call cli_table_line)
static inline void cli_print_table_rows(FILE* fp, const TrainConfig* cfg) {
    cli_table_line(fp);
    cli_table_row(fp, "Parameter", "Value");
    cli_table_line(fp);
    char key[64], val[4096];
    for (int i = 0; i < CLI_NUM_FLAGS; i++) {
        const CliFlag* f = &CLI_FLAGS[i];
        snprintf(key, sizeof(key), "%-7s %s", f->flag, f->name);
        cli_format_value(cfg, f, val, sizeof(val));
        cli_table_row(fp, key, val);
    }
}

static inline void cli_print_table(FILE* fp, const TrainConfig* cfg) {
    cli_print_table_rows(fp, cfg);
    cli_table_line(fp);
}

// Cross-flag helper: total batch size (-d, -1 = B*T) must be a positive multiple of B*T.
// Sets *grad_accum_steps and *total_tokens; returns 0, or -1 with "flag -d: ..." in err.
// With P data-parallel processes (-1 = B*T*P) the total must be a multiple of B*T*P; *grad_accum_steps is then the
// number of micro-batches of each process.
static inline int cli_resolve_total_batch_dp(const TrainConfig* cfg, int world, int* grad_accum_steps,
                                             long long* total_tokens, char* err, size_t errlen) {
    long long bt = (long long)cfg->B * (long long)cfg->T;
    const CliFlag* f = cli_find_flag("-d");
    if (bt > INT_MAX) {
        cli_errorf(err, errlen, f, "B*T = %d*%d = %lld is too large", cfg->B, cfg->T, bt);
        return -1;
    }
    long long btp = bt * (world > 1 ? world : 1);
    long long total = cfg->total_batch_size == -1 ? btp : (long long)cfg->total_batch_size;
    if (total <= 0 || total % btp != 0) {
        if (world > 1)
            cli_errorf(err, errlen, f, "%d is not a positive multiple of B*T*processes = %d*%d*%d = %lld",
                       cfg->total_batch_size, cfg->B, cfg->T, world, btp);
        else
            cli_errorf(err, errlen, f, "%d is not a positive multiple of B*T = %d*%d = %lld", cfg->total_batch_size,
                       cfg->B, cfg->T, bt);
        return -1;
    }
    *grad_accum_steps = (int)(total / btp);
    *total_tokens = total;
    return 0;
}

static inline int cli_resolve_total_batch(const TrainConfig* cfg, int* grad_accum_steps, long long* total_tokens,
                                          char* err, size_t errlen) {
    return cli_resolve_total_batch_dp(cfg, 1, grad_accum_steps, total_tokens, err, errlen);
}

#endif // LLMC_CLI_H
