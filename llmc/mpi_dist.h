// MPI for the data-parallel trainers (layout: llmc/dist.h): one mpiCheck, the abort hook of train_gpt2mpi, and the
// CPU collectives over MPI_COMM_WORLD on float / double buffers (mean, sum, ZeRO-1 reduce-scatter and all-gather).
// Without USE_MPI the collectives are no-ops (one process). llmc/cuda_dist.h (NCCL) takes mpiCheck from here.
#ifndef LLMC_MPI_DIST_H
#define LLMC_MPI_DIST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#ifdef USE_MPI
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif
#include "utils.h"
#include "dist.h"

#ifdef USE_MPI
// the program that defines TRAIN_MPI_ABORT_HOOK (with LLMC_FATAL_HOOK, llmc/utils.h) gets this hook: an error on one
// process ends all of them
#ifdef TRAIN_MPI_ABORT_HOOK
void llmc_fatal_hook(void) {
    int inited = 0, finalized = 0, world = 1;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (!inited || finalized) return;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (world < 2) return;
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, EXIT_FAILURE);
}
#endif
static inline void mpi_dist_check(int err, const char* file, int line) {
    if (err == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(err, msg, &len);
    fatalf("MPI error at %s:%d: %s", file, line, msg);
}
#define mpiCheck(err) mpi_dist_check((err), __FILE__, __LINE__)
#define DP_CHUNK ((size_t)1 << 30)  // elements per MPI call (int counts)

// buf (n floats) = mean over the ranks of buf, on every rank
static inline void dp_allreduce_mean(const DistInfo* d, float* buf, size_t n) {
    if (d->world < 2) return;
    for (size_t o = 0; o < n; o += DP_CHUNK) {
        size_t c = n - o < DP_CHUNK ? n - o : DP_CHUNK;
        mpiCheck(MPI_Allreduce(MPI_IN_PLACE, buf + o, (int)c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
    }
    float inv = 1.0f / (float)d->world;
    OMP_PRAGMA(parallel for schedule(static))
    for (size_t i = 0; i < n; i++) buf[i] *= inv;
}

// v (n doubles) = sum over the ranks, on every rank
static inline void dp_allreduce_sum(const DistInfo* d, double* v, int n) {
    if (d->world < 2) return;
    mpiCheck(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
}

// MPI's int counts and displacements of the ZeRO-1 shards of n elements
#define DP_MAX_PROCS 1024
static inline void dp_shard_counts(const DistInfo* d, size_t n, int counts[DP_MAX_PROCS], int displs[DP_MAX_PROCS]) {
    if (d->world > DP_MAX_PROCS) fatalf("ZeRO-1 on the CPU supports at most %d processes", DP_MAX_PROCS);
    if (n > (size_t)INT_MAX) fatalf("ZeRO-1 on the CPU: %zu parameters exceed MPI's int counts", n);
    for (int r = 0; r < d->world; r++) {
        size_t lo, hi;
        dist_shard(n, d->world, r, &lo, &hi);
        counts[r] = (int)(hi - lo);
        displs[r] = (int)lo;
    }
}

// ZeRO-1: this rank's shard [lo, hi) of buf (n floats, shards of llmc/dist.h) = mean over the ranks; the rest of
// buf is left undefined
static inline void dp_reduce_scatter_mean(const DistInfo* d, float* buf, size_t n) {
    if (d->world < 2) return;
    int counts[DP_MAX_PROCS], displs[DP_MAX_PROCS];
    dp_shard_counts(d, n, counts, displs);
    // in place: the reduced shard lands at the start of buf, then moves to its place
    mpiCheck(MPI_Reduce_scatter(MPI_IN_PLACE, buf, counts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
    size_t lo = (size_t)displs[d->rank], hi = lo + (size_t)counts[d->rank];
    if (lo > 0 && hi > lo) memmove(buf + lo, buf, (hi - lo) * sizeof(float));
    float inv = 1.0f / (float)d->world;
    for (size_t i = lo; i < hi; i++) buf[i] *= inv;
}

// ZeRO-1: every rank's shard of buf (n floats) from its owner, on every rank
static inline void dp_all_gather(const DistInfo* d, float* buf, size_t n) {
    if (d->world < 2) return;
    int counts[DP_MAX_PROCS], displs[DP_MAX_PROCS];
    dp_shard_counts(d, n, counts, displs);
    mpiCheck(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs, MPI_FLOAT, MPI_COMM_WORLD));
}
#else
// one process: nothing to reduce or gather
static inline void dp_allreduce_mean(const DistInfo* d, float* buf, size_t n) { (void)d, (void)buf, (void)n; }
static inline void dp_allreduce_sum(const DistInfo* d, double* v, int n) { (void)d, (void)v, (void)n; }
static inline void dp_reduce_scatter_mean(const DistInfo* d, float* buf, size_t n) { (void)d, (void)buf, (void)n; }
static inline void dp_all_gather(const DistInfo* d, float* buf, size_t n) { (void)d, (void)buf, (void)n; }
#endif

#endif // LLMC_MPI_DIST_H
