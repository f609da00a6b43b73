// Data-parallel training, the target-independent part: process layout from the flags and the launcher, the
// assignment of micro-batches and IVON noise to ranks, ZeRO-1 shards, and the communication cost per step.
// The collectives themselves are target code: MPI in train_gpt2.c (USE_MPI), NCCL in train_gpt2.cu (USE_NCCL).
//
// Micro-batch assignment: in optimizer step t, rank r's local micro-batch j (0 <= j < K_local) is the global
// micro-batch g = j * P + r: the train loader gives window k to rank k % P (llmc/dataloader.h), so a P-rank run
// with K_local micro-batches reads the same tokens per step as a 1-rank run with K = P * K_local micro-batches.
// IVON noise of global micro-batch g is sample g / G of the step (llmc/noise.h counter word 2; the rank word is
// 0). G = 1 (-dn rank): every micro-batch of every rank draws its own eps, as in the paper's multi-GPU runs.
// G = P (-dn shared): all ranks draw the same eps at the same micro-step. -dg G sets G directly, so that one
// process can reproduce a shared-noise run of G processes.
#ifndef LLMC_DIST_H
#define LLMC_DIST_H

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include "utils.h"
#include "cli.h"

typedef enum { DIST_INIT_AUTO = 0, DIST_INIT_MPI = 1, DIST_INIT_TCP = 2, DIST_INIT_FS = 3 } DistInit;
typedef enum { DIST_NOISE_RANK = 0, DIST_NOISE_SHARED = 1 } DistNoise;

typedef struct {
    int rank, world;    // this process, number of processes P
    int local_rank;     // rank on this node (GPU index), -1 = unknown
    int init;           // DistInit actually used (AUTO resolves to MPI or to a single process)
    int noise_mode;     // DistNoise
    int noise_group;    // G: consecutive global micro-batches that share one eps
    int zero_stage;     // 0 = replicated optimizer state, 1 = state and update sharded over ranks
} DistInfo;

// one process, no communication (tests, benchmarks, single-process runs)
static inline DistInfo dist_single(void) {
    DistInfo d = {0, 1, 0, DIST_INIT_AUTO, DIST_NOISE_RANK, 1, 0};
    return d;
}

static inline const char* dist_init_name(int init) {
    return init == DIST_INIT_MPI ? "mpi" : init == DIST_INIT_TCP ? "tcp" : init == DIST_INIT_FS ? "fs" : "none";
}

// integer environment variable, -1 if unset; a set but malformed value is an error naming the variable
static inline int dist_env_int(const char* name) {
    const char* s = getenv(name);
    if (s == NULL || s[0] == '\0') return -1;
    char* end = NULL;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || v < 0 || v > 1000000) fatalf("environment variable %s: '%s' is not a rank or size", name, s);
    return (int)v;
}

// process count, rank and local rank set by an MPI launcher (Open MPI, MPICH/PMI), or -1
static inline void dist_launcher_env(int* world, int* rank, int* local_rank) {
    *world = dist_env_int("OMPI_COMM_WORLD_SIZE");
    *rank = dist_env_int("OMPI_COMM_WORLD_RANK");
    *local_rank = dist_env_int("OMPI_COMM_WORLD_LOCAL_RANK");
    if (*world < 0) {
        *world = dist_env_int("PMI_SIZE");
        *rank = dist_env_int("PMI_RANK");
        *local_rank = dist_env_int("MPI_LOCALRANKID");
    }
}

// Resolves the init method from -dm and the launcher before any communicator exists: returns DIST_INIT_MPI,
// DIST_INIT_TCP, DIST_INIT_FS, or DIST_INIT_AUTO for a single process. has_mpi / has_net: what the build offers
// (MPI linked; TCP and FS rendezvous, NCCL builds only). `prog_hint` names the build to use instead.
static inline int dist_resolve_init(const TrainConfig* cfg, int has_mpi, int has_net, const char* prog_hint) {
    int world, rank, local;
    dist_launcher_env(&world, &rank, &local);
    int want = cli_choice_index("auto|mpi|tcp|fs", cfg->dp_init);
    if (want == DIST_INIT_AUTO) {
        if (world > 1 && !has_mpi)
            fatalf("started by an MPI launcher with %d processes, but this build has no MPI (flag -dm): use %s",
                   world, prog_hint);
        return world > 1 ? DIST_INIT_MPI : DIST_INIT_AUTO;
    }
    if (want == DIST_INIT_MPI && !has_mpi) fatalf("flag -dm: mpi, but this build has no MPI: use %s", prog_hint);
    if ((want == DIST_INIT_TCP || want == DIST_INIT_FS) && !has_net)
        fatalf("flag -dm: %s rendezvous needs the NCCL trainer (train_gpt2cu built with NCCL)", cfg->dp_init);
    return want;
}

static inline int dist_check_flags(const TrainConfig* cfg, int init, char* err, size_t errlen);

// dist_resolve_init, then the flag checks; exits with one error line on a conflict
static inline int dist_resolve_init_or_exit(const TrainConfig* cfg, int has_mpi, int has_net, const char* prog_hint) {
    int init = dist_resolve_init(cfg, has_mpi, has_net, prog_hint);
    char err[256];
    if (dist_check_flags(cfg, init, err, sizeof(err)) != 0) fatalf("%s", err);
    return init;
}

// Checks the data-parallel flags against each other; world = P once known. Returns 0, or -1 with a message.
static inline int dist_check_flags(const TrainConfig* cfg, int init, char* err, size_t errlen) {
    if (cfg->dp_server != NULL && init != DIST_INIT_TCP) {
        snprintf(err, errlen, "flag -ds: a server address is only used with -dm tcp");
        return -1;
    }
    if (cfg->dp_fs_dir != NULL && init != DIST_INIT_FS) {
        snprintf(err, errlen, "flag -df: a rendezvous directory is only used with -dm fs");
        return -1;
    }
    if ((init == DIST_INIT_TCP || init == DIST_INIT_FS) && (cfg->dp_processes < 1 || cfg->dp_rank < 0)) {
        snprintf(err, errlen, "flag -dm: %s needs -dp (processes) and -dr (this rank)", cfg->dp_init);
        return -1;
    }
    if (init != DIST_INIT_TCP && init != DIST_INIT_FS && (cfg->dp_rank >= 0 || cfg->dp_processes > 1)) {
        snprintf(err, errlen, "flag -dr: -dp and -dr are only used with -dm tcp or -dm fs (mpirun sets them)");
        return -1;
    }
    if (init == DIST_INIT_TCP && cfg->dp_server == NULL) {
        snprintf(err, errlen, "flag -ds: -dm tcp needs the server address host:port of rank 0");
        return -1;
    }
    if (init == DIST_INIT_FS && cfg->dp_fs_dir == NULL) {
        snprintf(err, errlen, "flag -df: -dm fs needs a directory on a file system shared by all ranks");
        return -1;
    }
    if ((init == DIST_INIT_TCP || init == DIST_INIT_FS) && cfg->dp_rank >= cfg->dp_processes) {
        snprintf(err, errlen, "flag -dr: rank %d is not below the process count -dp %d", cfg->dp_rank,
                 cfg->dp_processes);
        return -1;
    }
    if (cfg->dp_noise_group == 0) {
        snprintf(err, errlen, "flag -dg: 0 is not a group size (use >= 1, or -1 for the -dn default)");
        return -1;
    }
    return 0;
}

// Fills noise mode, G and the ZeRO stage once rank and world are known.
static inline void dist_set_modes(DistInfo* d, const TrainConfig* cfg) {
    d->noise_mode = strcmp(cfg->dp_noise, "shared") == 0 ? DIST_NOISE_SHARED : DIST_NOISE_RANK;
    d->noise_group = cfg->dp_noise_group > 0 ? cfg->dp_noise_group : d->noise_mode == DIST_NOISE_SHARED ? d->world : 1;
    d->zero_stage = cfg->zero_stage;
}

// noise sample index of this rank's local micro-batch j (0-based) of a step: (j * P + r) / G
static inline int dist_noise_sample(const DistInfo* d, int j) {
    long long g = (long long)j * d->world + d->rank;
    return (int)(g / d->noise_group);
}

// 1 when the ranks' eps are equal at every micro-step and each rank runs one micro-batch per step: then the
// accumulated noise*gradient is eps*sigma times the accumulated gradient, and only the gradient is reduced.
static inline int dist_reduce_grad_only(const DistInfo* d, int k_local) {
    return d->world > 1 && d->noise_group == d->world && k_local == 1;
}

// ZeRO-1 shard of rank r: [lo, hi) of n elements, equal blocks of ceil(n / P) (the last may be short or empty)
static inline size_t dist_shard_size(size_t n, int world) { return (n + (size_t)world - 1) / (size_t)world; }
static inline void dist_shard(size_t n, int world, int rank, size_t* lo, size_t* hi) {
    size_t s = dist_shard_size(n, world);
    size_t a = s * (size_t)rank, b = a + s;
    *lo = a < n ? a : n;
    *hi = b < n ? b : n;
}

// Communication of one optimizer step, in d-sized vectors per collective, and the bytes each rank sends per
// parameter with ring algorithms: all-reduce 2 (P-1)/P, reduce-scatter and all-gather (P-1)/P of the vector bytes.
typedef struct {
    double allreduce, reduce_scatter, all_gather;  // vectors
    int grad_bytes, acc_bytes, param_bytes;        // element sizes of the reduced gradients, IVON accumulators, gathered parameters
    double bytes_per_param;                        // per rank per step
    double refresh_bytes_per_param;                // PoCo anchor refresh (every -pp steps), per rank
    char text[256];
} DistCost;

// kind: 0 AdamW, 1 IVON, 2 PoCo (OptimizerKind); poco_active: the PoCo inner step (4 accumulators) rather than
// the plain-IVON phase before -pst
static inline DistCost dist_cost(const DistInfo* d, int kind, int poco_active, int k_local, int grad_bytes,
                                 int param_bytes) {
    DistCost c;
    memset(&c, 0, sizeof(c));
    c.grad_bytes = grad_bytes;
    c.acc_bytes = 4;
    c.param_bytes = param_bytes;
    double P = d->world, ring = P > 1 ? (P - 1) / P : 0.0;
    int grad_only = dist_reduce_grad_only(d, k_local);
    if (kind == 0) {
        if (d->zero_stage) {
            c.reduce_scatter = 1;
            c.all_gather = 1;
            c.bytes_per_param = ring * (grad_bytes + param_bytes);
            snprintf(c.text, sizeof(c.text), "reduce-scatter 1 gradient (%d B) + all-gather 1 parameter vector (%d B)",
                     grad_bytes, param_bytes);
        } else {
            c.allreduce = 1;
            c.bytes_per_param = 2 * ring * grad_bytes;
            snprintf(c.text, sizeof(c.text), "all-reduce 1 gradient (%d B)", grad_bytes);
        }
        return c;
    }
    double vecs = (kind == 2 && poco_active ? 4 : 2) / (grad_only ? 2 : 1);
    if (d->zero_stage) {
        c.reduce_scatter = vecs;
        c.all_gather = 2;  // m and h: every rank samples theta = m + sigma(h) eps over all parameters
        c.bytes_per_param = ring * (vecs * 4 + 2 * 4);
        snprintf(c.text, sizeof(c.text), "reduce-scatter %g fp32 %s + all-gather m, h (fp32)", vecs,
                 grad_only ? "gradient(s)" : "accumulators");
    } else {
        c.allreduce = vecs;
        c.bytes_per_param = 2 * ring * vecs * 4;
        snprintf(c.text, sizeof(c.text), "all-reduce %g fp32 %s (packed, one collective)", vecs,
                 grad_only ? "gradient(s)" : "accumulators");
    }
    if (kind == 2) c.refresh_bytes_per_param = 2 * ring * 2 * 4;
    return c;
}

#endif // LLMC_DIST_H
