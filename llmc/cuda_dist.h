// Data parallel for train_gpt2.cu over NCCL (CUDA only): how the processes find each other, which GPU each one
// drives, the NCCL communicator and its stream, the collectives the trainer uses, and how an error on one process
// ends the others. The target-independent layout (ranks, micro-batches, shards, cost) is llmc/dist.h.
//
// Communicator creation (-dm, resolved by dist_resolve_init in llmc/dist.h):
//   mpi  (or auto under mpirun with > 1 process; builds with USE_MPI): MPI_Init, rank 0 makes the ncclUniqueId,
//        MPI_Bcast sends it to the others.
//   tcp  (-dp P -dr R -ds host:port): rank 0 listens on port (all IPv4 interfaces, SO_REUSEADDR) and sends the
//        128-byte ncclUniqueId to each of the P-1 ranks that connect; the others connect to host:port, retrying
//        until IVON_DIST_TIMEOUT seconds (default 600) have passed.
//   fs   (-dp P -dr R -df DIR): rank 0 writes DIR/ncclUniqueId.bin atomically (temporary name + rename), the others
//        poll for it up to the same timeout; rank 0 deletes it once the communicator exists (all ranks have read
//        it). DIR must be fresh per job (e.g. contain $SLURM_JOB_ID): a file left by an earlier job that crashed
//        before that point would be read by the other ranks; rank 0 refuses to start when the file exists.
//   auto with one process: no communicator and no NCCL call at all.
// A communicator of one rank (-dm fs -dp 1 -dr 0 -df DIR, or mpirun -np 1 ... -dm mpi) runs every collective.
//
// GPU: -dl N: device = rank % N; -dl -1: the launcher's local rank (Open MPI / PMI variables, under MPI else the
// rank within MPI_COMM_TYPE_SHARED; SLURM_LOCALID for tcp/fs), device 0 when only one GPU is visible (a launcher
// that binds one GPU per task), else rank % visible GPUs.
//
// A watchdog thread (more than one rank) polls ncclCommGetAsyncError every second: an asynchronous NCCL error (a
// peer that went away over the network, a failed connection) prints one error line and ends the process with exit
// status 1, instead of leaving it blocked in a collective that will never complete.
// Errors: fatalf and the Check wrappers call llmc_fatal_hook (LLMC_FATAL_HOOK, llmc/utils.h); train_gpt2.cu's hook
// calls cuda_dist_fatal_abort: MPI_Abort under MPI, ncclCommAbort for tcp/fs (then exit 1). A tcp/fs peer blocked
// inside a collective over NVLink or shared memory may not notice a dead rank: launch with a launcher that ends
// the job when one task fails (srun --kill-on-bad-exit=1; scripts/multi_node/run_gpt2_124M_tcp.sh does it per node).
#ifndef LLMC_CUDA_DIST_H
#define LLMC_CUDA_DIST_H

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>
#include <fcntl.h>
#include <poll.h>
#include <netdb.h>
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <cuda_runtime.h>
#include <nccl.h>
#include "utils.h"
#include "cli.h"
#include "dist.h"
#include "mpi_dist.h"
#include "logger.h"
#include "cuda_common.h"

// NCCL element type of floatX
#ifdef ENABLE_FP32
#define NCCL_FLOATX ncclFloat
#else
#define NCCL_FLOATX ncclBfloat16
#endif

static inline void nccl_check(ncclResult_t r, const char* file, int line) {
    if (r == ncclSuccess) return;
    const char* detail = ncclGetLastError(NULL);
    fprintf(stderr, "error: NCCL at %s:%d: %s%s%s\n", file, line, ncclGetErrorString(r),
            detail != NULL && detail[0] != '\0' ? ": " : "", detail != NULL ? detail : "");
    LLMC_FATAL_EXIT();
}
#define ncclCheck(r) nccl_check((r), __FILE__, __LINE__)

#ifdef USE_MPI
#define CUDA_DIST_HAS_MPI 1  // mpiCheck: llmc/mpi_dist.h
#else
#define CUDA_DIST_HAS_MPI 0
#endif

typedef struct {
    int rank, world;       // this process, number of processes P
    int local_rank;        // rank on this node from the launcher, -1 = unknown
    int device;            // CUDA device of this process
    int init;              // DistInit (llmc/dist.h); DIST_INIT_AUTO = one process without a communicator
    int mpi_inited;        // MPI_Init was called (MPI_Finalize at the end)
    ncclComm_t comm;       // NULL: no communicator, every collective is skipped
    cudaStream_t stream;   // NCCL stream; non-blocking, so it overlaps with the legacy default (compute) stream
    cudaEvent_t ev_compute, ev_comm;  // compute -> NCCL and NCCL -> compute ordering
    double* d_scalars;     // (CUDA_DIST_MAX_SCALARS) device scratch for all-reduces of host values
    pthread_t watchdog;    // polls ncclCommGetAsyncError (> 1 rank)
    int watchdog_running;
    int watchdog_stop;     // set (atomically) to end the watchdog
} CudaDist;

#define CUDA_DIST_MAX_SCALARS 16
#define CUDA_DIST_ID_MAGIC 0x494e5649u  // "IVNI": rendezvous hello / id file
#define CUDA_DIST_ID_FILE "ncclUniqueId.bin"

// the communicator the fatal hook aborts (set by cuda_dist_init)
static CudaDist* cuda_dist_active = NULL;

// ---------------------------------------------------------------------------------------------
// rendezvous helpers

static inline double cuda_dist_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline void cuda_dist_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

// IVON_DIST_TIMEOUT: seconds the tcp/fs rendezvous waits for the other ranks (default 600)
static inline int cuda_dist_timeout_s(void) {
    const char* s = getenv("IVON_DIST_TIMEOUT");
    if (s == NULL || s[0] == '\0') return 600;
    char* end = NULL;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || v < 1 || v > 86400)
        fatalf("environment variable IVON_DIST_TIMEOUT: '%s' is not a number of seconds in [1, 86400]", s);
    return (int)v;
}

// "host:port" -> host, port (the last ':' separates them; port 1..65535)
static inline void cuda_dist_parse_server(const char* spec, char* host, size_t hostlen, char* port, size_t portlen) {
    const char* colon = strrchr(spec, ':');
    if (colon == NULL || colon == spec || (size_t)(colon - spec) >= hostlen)
        fatalf("flag -ds: '%s' is not host:port", spec);
    char* end = NULL;
    long p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || p < 1 || p > 65535)
        fatalf("flag -ds: '%s' has no port in 1..65535 after the ':'", spec);
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = '\0';
    snprintf(port, portlen, "%ld", p);
}

// full send / receive on a blocking socket; 0 on success, -1 on error or end of stream
static inline int cuda_dist_send_all(int fd, const void* buf, size_t n) {
    const char* p = (const char*)buf;
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static inline int cuda_dist_recv_all(int fd, void* buf, size_t n) {
    char* p = (char*)buf;
    while (n > 0) {
        ssize_t k = recv(fd, p, n, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static inline void cuda_dist_set_timeout(int fd, double seconds) {
    if (seconds < 0.001) seconds = 0.001;
    struct timeval tv;
    tv.tv_sec = (time_t)seconds;
    tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

// hello of a connecting rank: magic, world, rank (network byte order)
typedef struct {
    uint32_t magic, world, rank;
} CudaDistHello;

// tcp, rank 0: listens on the port of -ds and sends the id to each of the world - 1 other ranks
static inline void cuda_dist_tcp_serve(const char* spec, int world, const ncclUniqueId* id, int timeout_s) {
    char host[256], port[16];
    cuda_dist_parse_server(spec, host, sizeof(host), port, sizeof(port));
    if (world < 2) return;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int gai = getaddrinfo(NULL, port, &hints, &res);
    if (gai != 0) fatalf("flag -ds: cannot listen on port %s: %s", port, gai_strerror(gai));
    int lfd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (lfd < 0) fatalf("flag -ds: socket for port %s: %s", port, strerror(errno));
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, res->ai_addr, res->ai_addrlen) != 0)
        fatalf("flag -ds: rank 0 cannot listen on port %s (%s): %s", port, spec, strerror(errno));
    freeaddrinfo(res);
    if (listen(lfd, world) != 0) fatalf("flag -ds: listen on port %s: %s", port, strerror(errno));
    char* seen = (char*)calloc((size_t)world, 1);
    if (seen == NULL) fatalf("out of memory (rendezvous of %d ranks)", world);
    int served = 0;
    double deadline = cuda_dist_now_s() + timeout_s;
    while (served < world - 1) {
        double left = deadline - cuda_dist_now_s();
        if (left <= 0.0)
            fatalf("flag -ds: only %d of the %d other ranks connected to rank 0 at %s within %d s "
                   "(IVON_DIST_TIMEOUT); are they started with -dm tcp -ds %s?", served, world - 1, spec, timeout_s,
                   spec);
        struct pollfd pfd = {lfd, POLLIN, 0};
        int pr = poll(&pfd, 1, left > 1.0 ? 1000 : (int)(left * 1000) + 1);
        if (pr <= 0) continue;
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) continue;
        cuda_dist_set_timeout(fd, 10.0);
        CudaDistHello h;
        if (cuda_dist_recv_all(fd, &h, sizeof(h)) != 0 || ntohl(h.magic) != CUDA_DIST_ID_MAGIC) {
            fprintf(stderr, "warning: rendezvous on %s: ignored a connection that is not a train_gpt2cu rank\n", spec);
            close(fd);
            continue;
        }
        int w = (int)ntohl(h.world), r = (int)ntohl(h.rank);
        if (w != world)
            fatalf("flag -dp: rank %d connected to %s with -dp %d, rank 0 has -dp %d", r, spec, w, world);
        if (r < 1 || r >= world || seen[r])
            fatalf("flag -dr: rank %d connected to %s %s (-dp %d)", r, spec, r >= 1 && r < world ? "twice" : "out of range",
                   world);
        if (cuda_dist_send_all(fd, id, sizeof(*id)) != 0) {
            fprintf(stderr, "warning: rendezvous on %s: rank %d went away before it got the id; waiting for it again\n",
                    spec, r);
            close(fd);
            continue;
        }
        seen[r] = 1;
        served++;
        close(fd);
    }
    free(seen);
    close(lfd);
}

// tcp, rank > 0: connects to -ds (retrying until the timeout) and receives the id
static inline void cuda_dist_tcp_fetch(const char* spec, int world, int rank, ncclUniqueId* id, int timeout_s) {
    char host[256], port[16];
    cuda_dist_parse_server(spec, host, sizeof(host), port, sizeof(port));
    double deadline = cuda_dist_now_s() + timeout_s;
    char last[512] = "no attempt";
    for (;;) {
        double left = deadline - cuda_dist_now_s();
        if (left <= 0.0)
            fatalf("flag -ds: rank %d got no NCCL id from rank 0 at %s within %d s (IVON_DIST_TIMEOUT; last: %s); is "
                   "rank 0 running with the same -ds, and is host:port its address reachable from here?", rank, spec,
                   timeout_s, last);
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        int gai = getaddrinfo(host, port, &hints, &res);
        if (gai != 0) {
            snprintf(last, sizeof(last), "resolving '%s': %s", host, gai_strerror(gai));
            cuda_dist_sleep_ms(1000);
            continue;
        }
        int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
        int ok = fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0;
        if (!ok) snprintf(last, sizeof(last), "connect: %s", strerror(errno));
        freeaddrinfo(res);
        if (ok) {
            cuda_dist_set_timeout(fd, left);
            CudaDistHello h = {htonl(CUDA_DIST_ID_MAGIC), htonl((uint32_t)world), htonl((uint32_t)rank)};
            if (cuda_dist_send_all(fd, &h, sizeof(h)) == 0 && cuda_dist_recv_all(fd, id, sizeof(*id)) == 0) {
                close(fd);
                return;
            }
            snprintf(last, sizeof(last), "connected, but rank 0 sent no id");
        }
        if (fd >= 0) close(fd);
        cuda_dist_sleep_ms(1000);
    }
}

// id file: magic, world, the 128-byte id
typedef struct {
    uint32_t magic, world;
    ncclUniqueId id;
} CudaDistIdFile;

static inline void cuda_dist_id_path(char* path, size_t n, const char* dir, const char* suffix) {
    int k = snprintf(path, n, "%s/%s%s", dir, CUDA_DIST_ID_FILE, suffix);
    if (k < 0 || (size_t)k >= n) fatalf("flag -df: directory path '%s' is too long", dir);
}

// fs, rank 0: writes DIR/ncclUniqueId.bin atomically; refuses a file left by an earlier job
static inline void cuda_dist_fs_write(const char* dir, int world, const ncclUniqueId* id) {
    char path[LOGGER_PATH_MAX + 64], tmp[LOGGER_PATH_MAX + 96];
    if (logger_mkdir_p(dir) != 0) fatalf("flag -df: cannot create directory '%s': %s", dir, strerror(errno));
    cuda_dist_id_path(path, sizeof(path), dir, "");
    if (access(path, F_OK) == 0)
        fatalf("flag -df: '%s' already exists (left by an earlier job?): use a fresh directory per job, e.g. one "
               "named after $SLURM_JOB_ID, or delete the file", path);
    char suffix[48];
    snprintf(suffix, sizeof(suffix), ".tmp.%d", (int)getpid());
    cuda_dist_id_path(tmp, sizeof(tmp), dir, suffix);
    CudaDistIdFile f;
    memset(&f, 0, sizeof(f));
    f.magic = CUDA_DIST_ID_MAGIC;
    f.world = (uint32_t)world;
    f.id = *id;
    FILE* fp = fopen(tmp, "wb");
    if (fp == NULL) fatalf("flag -df: cannot write '%s': %s", tmp, strerror(errno));
    if (fwrite(&f, sizeof(f), 1, fp) != 1 || fflush(fp) != 0 || fsync(fileno(fp)) != 0)
        fatalf("flag -df: write failed on '%s': %s", tmp, strerror(errno));
    if (fclose(fp) != 0) fatalf("flag -df: close failed on '%s': %s", tmp, strerror(errno));
    if (rename(tmp, path) != 0) fatalf("flag -df: cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
}

// fs, rank > 0: polls for DIR/ncclUniqueId.bin until the timeout
static inline void cuda_dist_fs_read(const char* dir, int world, int rank, ncclUniqueId* id, int timeout_s) {
    char path[LOGGER_PATH_MAX + 64];
    cuda_dist_id_path(path, sizeof(path), dir, "");
    double deadline = cuda_dist_now_s() + timeout_s;
    for (;;) {
        FILE* fp = fopen(path, "rb");
        if (fp != NULL) {
            CudaDistIdFile f;
            size_t got = fread(&f, sizeof(f), 1, fp);
            fclose(fp);
            if (got == 1) {
                if (f.magic != CUDA_DIST_ID_MAGIC) fatalf("flag -df: '%s' is not an NCCL id file of train_gpt2cu", path);
                if ((int)f.world != world)
                    fatalf("flag -dp: '%s' was written by a rank 0 with -dp %u, this rank (%d) has -dp %d (a stale file "
                           "of an earlier job? -df must be fresh per job)", path, f.world, rank, world);
                *id = f.id;
                return;
            }
        }
        if (cuda_dist_now_s() > deadline)
            fatalf("flag -df: rank %d found no NCCL id file '%s' within %d s (IVON_DIST_TIMEOUT); is rank 0 running "
                   "with the same -df, on a file system shared by all ranks?", rank, path, timeout_s);
        cuda_dist_sleep_ms(200);
    }
}

// ---------------------------------------------------------------------------------------------
// setup

static inline void* cuda_dist_watchdog_main(void* arg) {
    CudaDist* d = (CudaDist*)arg;
    for (;;) {
        cuda_dist_sleep_ms(1000);
        if (__atomic_load_n(&d->watchdog_stop, __ATOMIC_ACQUIRE)) break;
        ncclResult_t err = ncclSuccess;
        if (ncclCommGetAsyncError(d->comm, &err) != ncclSuccess || err == ncclSuccess || err == ncclInProgress) continue;
        const char* detail = ncclGetLastError(d->comm);
        fprintf(stderr, "error: NCCL on rank %d: asynchronous error: %s%s%s (a peer failed or the network broke)\n",
                d->rank, ncclGetErrorString(err), detail != NULL && detail[0] != '\0' ? ": " : "",
                detail != NULL ? detail : "");
        fflush(stderr);
        // keep the step lines a redirected stdout still buffers; never wait for the main thread's lock
        if (ftrylockfile(stdout) == 0) {
            fflush(stdout);
            funlockfile(stdout);
        }
        _exit(EXIT_FAILURE);
    }
    return NULL;
}

static inline void cuda_dist_watchdog_stop(CudaDist* d) {
    if (!d->watchdog_running) return;
    __atomic_store_n(&d->watchdog_stop, 1, __ATOMIC_RELEASE);
    pthread_join(d->watchdog, NULL);
    d->watchdog_running = 0;
}

// the CUDA device of this process (see the header comment); gpus_per_node = -dl
static inline int cuda_dist_pick_device(const CudaDist* d, int gpus_per_node) {
    if (gpus_per_node == 0) fatalf("flag -dl: 0 GPUs per node; use N >= 1 (GPU = rank %% N) or -1 (local rank)");
    int count = 0;
    cudaCheck(cudaGetDeviceCount(&count));
    if (count < 1) fatalf("rank %d: no CUDA device visible", d->rank);
    if (gpus_per_node > 0) {
        int dev = d->rank % gpus_per_node;
        if (dev >= count)
            fatalf("flag -dl: rank %d would use GPU %d (rank %% %d), but this process sees %d GPU(s)", d->rank, dev,
                   gpus_per_node, count);
        return dev;
    }
    if (d->local_rank >= 0) {
        if (count == 1) return 0;  // the launcher binds one GPU per process
        if (d->local_rank >= count)
            fatalf("rank %d has local rank %d but this node shows %d GPUs: one process per GPU (or set -dl)", d->rank,
                   d->local_rank, count);
        return d->local_rank;
    }
    return d->rank % count;
}

// Sets up this process: rank, world, GPU (cudaSetDevice) and, unless init is DIST_INIT_AUTO (one process), the
// NCCL communicator. init comes from dist_resolve_init_or_exit(cfg, CUDA_DIST_HAS_MPI, 1, ...).
static inline void cuda_dist_init(CudaDist* d, const TrainConfig* cfg, int init, int* argc, char*** argv) {
    memset(d, 0, sizeof(*d));
    d->rank = 0;
    d->world = 1;
    d->local_rank = 0;
    d->init = init;
    (void)argc, (void)argv;
    if (init == DIST_INIT_MPI) {
#ifdef USE_MPI
        mpiCheck(MPI_Init(argc, argv));
        d->mpi_inited = 1;
        mpiCheck(MPI_Comm_rank(MPI_COMM_WORLD, &d->rank));
        mpiCheck(MPI_Comm_size(MPI_COMM_WORLD, &d->world));
        int lw, lr, ll;
        dist_launcher_env(&lw, &lr, &ll);
        if (ll < 0) {
            MPI_Comm node;
            mpiCheck(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &node));
            mpiCheck(MPI_Comm_rank(node, &ll));
            mpiCheck(MPI_Comm_free(&node));
        }
        d->local_rank = ll;
#else
        fatalf("flag -dm: mpi, but this build has no MPI");
#endif
    } else if (init == DIST_INIT_TCP || init == DIST_INIT_FS) {
        d->world = cfg->dp_processes;
        d->rank = cfg->dp_rank;
        d->local_rank = dist_env_int("SLURM_LOCALID");
    }
    d->device = cuda_dist_pick_device(d, cfg->dp_gpus_per_node);
    cudaCheck(cudaSetDevice(d->device));
    if (init == DIST_INIT_AUTO) return;

    ncclUniqueId id;
    memset(&id, 0, sizeof(id));
    if (d->rank == 0) ncclCheck(ncclGetUniqueId(&id));
    int timeout_s = init == DIST_INIT_MPI ? 0 : cuda_dist_timeout_s();
    if (init == DIST_INIT_MPI) {
#ifdef USE_MPI
        mpiCheck(MPI_Bcast(&id, (int)sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD));
#endif
    } else if (init == DIST_INIT_TCP) {
        if (d->rank == 0) cuda_dist_tcp_serve(cfg->dp_server, d->world, &id, timeout_s);
        else cuda_dist_tcp_fetch(cfg->dp_server, d->world, d->rank, &id, timeout_s);
    } else {
        if (d->rank == 0) cuda_dist_fs_write(cfg->dp_fs_dir, d->world, &id);
        else cuda_dist_fs_read(cfg->dp_fs_dir, d->world, d->rank, &id, timeout_s);
    }
    cuda_dist_active = d;
    ncclCheck(ncclCommInitRank(&d->comm, d->world, id, d->rank));
    if (init == DIST_INIT_FS && d->rank == 0) {
        // every rank has joined the communicator, so every rank has read the file
        char path[LOGGER_PATH_MAX + 64];
        cuda_dist_id_path(path, sizeof(path), cfg->dp_fs_dir, "");
        if (unlink(path) != 0) fprintf(stderr, "warning: cannot delete '%s': %s\n", path, strerror(errno));
    }
    cudaCheck(cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking));
    cudaCheck(cudaEventCreateWithFlags(&d->ev_compute, cudaEventDisableTiming));
    cudaCheck(cudaEventCreateWithFlags(&d->ev_comm, cudaEventDisableTiming));
    cudaCheck(cudaMalloc((void**)&d->d_scalars, CUDA_DIST_MAX_SCALARS * sizeof(double)));
    if (d->world > 1) {
        if (pthread_create(&d->watchdog, NULL, cuda_dist_watchdog_main, d) != 0)
            fatalf("rank %d: cannot start the NCCL watchdog thread", d->rank);
        d->watchdog_running = 1;
    }
}

// one line on the communicator (rank 0's stdout)
static inline void cuda_dist_print(const CudaDist* d) {
    if (d->comm == NULL) return;
    int v = 0;
    ncclCheck(ncclGetVersion(&v));
    printf("nccl: version %d.%d.%d, %d rank%s (%s), rank 0 on GPU %d\n", v / 10000, (v / 100) % 100, v % 100, d->world,
           d->world > 1 ? "s" : "", dist_init_name(d->init), d->device);
}

// Ends the communicator (and MPI) after a normal run.
static inline void cuda_dist_finish(CudaDist* d) {
    if (d->comm != NULL) {
        cudaCheck(cudaStreamSynchronize(d->stream));
        cuda_dist_watchdog_stop(d);
        cuda_dist_active = NULL;
        ncclCheck(ncclCommDestroy(d->comm));
        d->comm = NULL;
        cudaCheck(cudaFree(d->d_scalars));
        cudaCheck(cudaEventDestroy(d->ev_compute));
        cudaCheck(cudaEventDestroy(d->ev_comm));
        cudaCheck(cudaStreamDestroy(d->stream));
    }
#ifdef USE_MPI
    if (d->mpi_inited) mpiCheck(MPI_Finalize());
#endif
    d->mpi_inited = 0;
}

// The fatal hook's work: ends every rank. MPI: MPI_Abort (> 1 process). tcp/fs: ncclCommAbort, so that this rank's
// pending collectives end; the caller then exits 1, which the peers see as a lost connection or their launcher
// as a failed task.
static inline void cuda_dist_fatal_abort(void) {
    static int busy = 0;
    if (busy) return;
    busy = 1;
    fflush(stdout);
    fflush(stderr);
#ifdef USE_MPI
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized) {
        int world = 1;
        MPI_Comm_size(MPI_COMM_WORLD, &world);
        if (world > 1) MPI_Abort(MPI_COMM_WORLD, EXIT_FAILURE);
    }
#endif
    CudaDist* d = cuda_dist_active;
    if (d != NULL && d->comm != NULL && d->world > 1) {
        cuda_dist_watchdog_stop(d);
        cuda_dist_active = NULL;
        ncclCommAbort(d->comm);
        d->comm = NULL;
    }
}

// ---------------------------------------------------------------------------------------------
// ordering between the compute stream (the legacy default stream, where every kernel of train_gpt2.cu runs) and the
// NCCL stream

// the NCCL stream waits for the compute work issued so far
static inline void cuda_dist_after_compute(CudaDist* d) {
    cudaCheck(cudaEventRecord(d->ev_compute, 0));
    cudaCheck(cudaStreamWaitEvent(d->stream, d->ev_compute, 0));
}

// the compute stream waits for the collectives issued so far
static inline void cuda_dist_before_compute(CudaDist* d) {
    cudaCheck(cudaEventRecord(d->ev_comm, d->stream));
    cudaCheck(cudaStreamWaitEvent(0, d->ev_comm, 0));
}

// ---------------------------------------------------------------------------------------------
// collectives (no-ops without a communicator)

// n floatX buffers (ptrs[i], counts[i] elements) = their mean over the ranks, in place, one NCCL group, on the NCCL
// stream after the compute work issued so far (the caller orders the compute stream after it)
static inline void cuda_dist_allreduce_mean_x(CudaDist* d, floatX* const* ptrs, const size_t* counts, int n) {
    if (d == NULL || d->comm == NULL) return;
    cuda_dist_after_compute(d);
    ncclCheck(ncclGroupStart());
    for (int i = 0; i < n; i++)
        if (counts[i] > 0) ncclCheck(ncclAllReduce(ptrs[i], ptrs[i], counts[i], NCCL_FLOATX, ncclAvg, d->comm, d->stream));
    ncclCheck(ncclGroupEnd());
}

// buf (n fp32) = its mean over the ranks, in place, on the NCCL stream after the compute work issued so far (the
// caller orders the compute stream after it)
static inline void cuda_dist_allreduce_mean_f(CudaDist* d, float* buf, size_t n) {
    if (d == NULL || d->comm == NULL) return;
    cuda_dist_after_compute(d);
    ncclCheck(ncclAllReduce(buf, buf, n, ncclFloat, ncclAvg, d->comm, d->stream));
}

// ZeRO-1: buf holds world * shard floatX; rank r's block [r * shard, (r + 1) * shard) = the mean over the ranks of
// that block (in place); the other blocks keep this rank's values
static inline void cuda_dist_reduce_scatter_mean_x(CudaDist* d, floatX* buf, size_t shard) {
    if (d == NULL || d->comm == NULL) return;
    cuda_dist_after_compute(d);
    ncclCheck(ncclReduceScatter(buf, buf + (size_t)d->rank * shard, shard, NCCL_FLOATX, ncclAvg, d->comm, d->stream));
}

// ZeRO-1: every block [r * shard, (r + 1) * shard) of buf from rank r (in place)
static inline void cuda_dist_all_gather_x(CudaDist* d, floatX* buf, size_t shard) {
    if (d == NULL || d->comm == NULL) return;
    cuda_dist_after_compute(d);
    ncclCheck(ncclAllGather(buf + (size_t)d->rank * shard, buf, shard, NCCL_FLOATX, d->comm, d->stream));
}

// ZeRO-1 (IVON / PoCo): the fp32 cuda_dist_reduce_scatter_mean_x, buf of world * shard floats
static inline void cuda_dist_reduce_scatter_mean_f(CudaDist* d, float* buf, size_t shard) {
    if (d == NULL || d->comm == NULL) return;
    cuda_dist_after_compute(d);
    ncclCheck(ncclReduceScatter(buf, buf + (size_t)d->rank * shard, shard, ncclFloat, ncclAvg, d->comm, d->stream));
}

// ZeRO-1 (IVON / PoCo): the fp32 cuda_dist_all_gather_x, buf of world * shard floats
static inline void cuda_dist_all_gather_f(CudaDist* d, float* buf, size_t shard) {
    if (d == NULL || d->comm == NULL) return;
    cuda_dist_after_compute(d);
    ncclCheck(ncclAllGather(buf + (size_t)d->rank * shard, buf, shard, ncclFloat, d->comm, d->stream));
}

// v (n host doubles) = op (ncclSum, ncclMax, ...) over the ranks, on every rank (synchronous)
static inline void cuda_dist_allreduce_host(CudaDist* d, double* v, int n, ncclRedOp_t op) {
    if (d == NULL || d->comm == NULL) return;
    if (n < 1 || n > CUDA_DIST_MAX_SCALARS) fatalf("cuda_dist_allreduce_host: %d values", n);
    cudaCheck(cudaMemcpyAsync(d->d_scalars, v, (size_t)n * sizeof(double), cudaMemcpyHostToDevice, d->stream));
    ncclCheck(ncclAllReduce(d->d_scalars, d->d_scalars, (size_t)n, ncclDouble, op, d->comm, d->stream));
    cudaCheck(cudaMemcpyAsync(v, d->d_scalars, (size_t)n * sizeof(double), cudaMemcpyDeviceToHost, d->stream));
    cudaCheck(cudaStreamSynchronize(d->stream));
}

static inline void cuda_dist_allreduce_sum_host(CudaDist* d, double* v, int n) {
    cuda_dist_allreduce_host(d, v, n, ncclSum);
}

// the same integer on every rank? (e.g. the resume step); returns 1, or 0 with the smallest and largest in lo, hi
static inline int cuda_dist_all_equal(CudaDist* d, int x, int* lo, int* hi) {
    double v[2] = {(double)x, -(double)x};
    cuda_dist_allreduce_host(d, v, 2, ncclMax);
    *hi = (int)v[0];
    *lo = (int)-v[1];
    return *lo == *hi;
}

// ZeRO-1 checkpoints: the fp32 shards (shard floats on each rank, of which rank r's first count(r) belong to
// [0, n)) into host[0, n) on rank 0, by point-to-point sends in rank order. tmp: device scratch of shard floats on
// rank 0 (unused elsewhere). Collective: every rank calls it.
static inline void cuda_dist_gather_to_host(CudaDist* d, const float* shard_buf, size_t shard, size_t n, float* host,
                                            float* tmp) {
    cuda_dist_after_compute(d);
    cudaCheck(cudaStreamSynchronize(d->stream));
    if (d->rank == 0) {
        for (int r = 0; r < d->world; r++) {
            size_t lo, hi;
            dist_shard(n, d->world, r, &lo, &hi);
            const float* src = shard_buf;
            if (r > 0) {
                ncclCheck(ncclRecv(tmp, shard, ncclFloat, r, d->comm, d->stream));
                cudaCheck(cudaStreamSynchronize(d->stream));
                src = tmp;
            }
            if (hi > lo) cudaCheck(cudaMemcpy(host + lo, src, (hi - lo) * sizeof(float), cudaMemcpyDeviceToHost));
        }
    } else {
        ncclCheck(ncclSend(shard_buf, shard, ncclFloat, 0, d->comm, d->stream));
        cudaCheck(cudaStreamSynchronize(d->stream));
    }
}

#endif // LLMC_CUDA_DIST_H
