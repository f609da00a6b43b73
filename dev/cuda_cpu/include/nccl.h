// CPU backend: the NCCL API that llmc/cuda_dist.h calls, implemented from the semantics the NCCL documentation
// gives, for the ranks of one communicator as processes (or threads) of one Linux machine. The ranks meet in a
// POSIX shared-memory segment; every operation runs to completion inside the call (cudaStream_t is ignored: the CPU
// runtime runs all work synchronously in issue order), except between ncclGroupStart and ncclGroupEnd, where the
// calls are queued and run together at the outermost ncclGroupEnd.
//
//   Rendezvous: ncclGetUniqueId puts a magic and 16 random bytes (/dev/urandom) in the id; they name the segment
//   /dev/shm/ncclcpu-<32 hex>. The first rank of ncclCommInitRank to arrive creates it (O_CREAT|O_EXCL) and
//   reserves its memory (posix_fallocate, so a too small /dev/shm fails here and not later with SIGBUS); every
//   rank locks its own byte of the segment file (an open-file-description lock, released by the kernel however
//   the process ends) and registers; the last rank to join removes the name, so nothing stays in /dev/shm. Ranks
//   wait up to NCCL_CPU_TIMEOUT seconds (default 600) for all to join. A communicator of one rank has no segment.
//   Collectives: the data moves through two buffers per rank of NCCL_CPU_BUFFSIZE bytes each (default 2 MiB, at
//   least 4096; used alternately, so that consecutive steps need no extra barrier), in as many steps as needed.
//   All-reduce and reduce: every rank copies its chunk in, barrier, rank r reduces the r-th part of the chunk over
//   all ranks, barrier, every rank (reduce: the root) copies the result out. Reduce-scatter: every rank copies in
//   its piece for each rank, barrier, each rank reduces its own piece. All-gather and broadcast: copy in, barrier,
//   copy out. Barriers are a generation counter in the segment; a waiting rank spins briefly, then sleeps on a
//   futex (its "doorbell", rung by whoever changes what it waits for).
//   Send/recv: one mailbox per ordered pair of ranks (NCCL_CPU_BUFFSIZE / (nranks - 1) bytes, at least 64 KiB;
//   the segment is about 3 * nranks * NCCL_CPU_BUFFSIZE bytes);
//   messages between a pair are matched in issue order and must have the same size on both sides. A send returns
//   once its last chunk is in the mailbox. Within a group every queued operation progresses together, so pairs
//   that would deadlock one at a time (a ring exchange, both directions at once) complete; send/recv to this rank
//   itself must be in the same group.
//   Numerics: every element is reduced in rank order, x0 op x1 op ... op x(n-1), by one rank for all, so every
//   rank gets identical bits. float and double compute in their own type; half and bfloat16 convert to float,
//   compute, and round back (to nearest even) after every step, as a ring rounds at every hop; integers wrap.
//   ncclAvg: the sum divided by nranks, in the type (integers: the wrapped sum, truncated toward zero); for half
//   and bfloat16 the last addition and the division are done in float and rounded once. ncclMax/ncclMin return
//   one of the inputs, a NaN only when all inputs are NaN (as fmaxf). A communicator of one rank copies.
//   Failures: a waiting rank checks, at least every ~150 ms, the segment's abort flag (set by ncclCommAbort or by
//   a rank that found the peers' calls inconsistent) and whether every peer still holds its lock; an aborted
//   communicator, a peer process that ended without ncclCommDestroy, or a peer this operation needs that destroyed
//   its communicator makes the call return ncclRemoteError with the reason in ncclGetLastError, and the
//   communicator keeps that error (ncclCommGetAsyncError reports it; it also checks the peers on every call).
//   There is no timeout on collectives: a peer that computes for an hour is waited for.
//   Refused, with ncclInvalidArgument or ncclInvalidUsage and a message: reductions on the fp8 types, reduction
//   operators other than the five built-in ones, buffers that overlap without being the documented in-place
//   layout, ncclCommInitRank inside a group, a send/recv to self outside a group, more than 1024 ranks.
//   A rank that forks after ncclCommInitRank shares its lock with the child: its own end is only seen once the
//   child has ended too.
#ifndef CUDA_CPU_NCCL_H
#define CUDA_CPU_NCCL_H

#ifndef __cplusplus
#error "the CPU backend's nccl.h is C++17 (g++ -std=c++17)"
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <mutex>
#include <new>
#include <type_traits>
#include <vector>
#include <cuda_runtime.h>

#define NCCL_MAJOR 2
#define NCCL_MINOR 28
#define NCCL_PATCH 0
#define NCCL_SUFFIX "cpu"
#define NCCL_VERSION(X, Y, Z) (((X) <= 2 && (Y) <= 8) ? (X) * 1000 + (Y) * 100 + (Z) : (X) * 10000 + (Y) * 100 + (Z))
#define NCCL_VERSION_CODE NCCL_VERSION(NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH)
#define NCCL_CPU_BACKEND 1

typedef struct ncclComm* ncclComm_t;

#define NCCL_UNIQUE_ID_BYTES 128
typedef struct {
    char internal[NCCL_UNIQUE_ID_BYTES];
} ncclUniqueId;

typedef enum {
    ncclSuccess = 0,
    ncclUnhandledCudaError = 1,
    ncclSystemError = 2,
    ncclInternalError = 3,
    ncclInvalidArgument = 4,
    ncclInvalidUsage = 5,
    ncclRemoteError = 6,
    ncclInProgress = 7,
    ncclNumResults = 8
} ncclResult_t;

typedef enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4, ncclNumOps = 5 } ncclRedOp_t;

typedef enum {
    ncclInt8 = 0, ncclChar = 0,
    ncclUint8 = 1,
    ncclInt32 = 2, ncclInt = 2,
    ncclUint32 = 3,
    ncclInt64 = 4,
    ncclUint64 = 5,
    ncclFloat16 = 6, ncclHalf = 6,
    ncclFloat32 = 7, ncclFloat = 7,
    ncclFloat64 = 8, ncclDouble = 8,
    ncclBfloat16 = 9,
    ncclFloat8e4m3 = 10,
    ncclFloat8e5m2 = 11,
    ncclNumTypes = 12
} ncclDataType_t;

namespace nccl_cpu {

constexpr uint64_t kIdMagic = 0x31555043434e4e49ull;   // id made by this backend
constexpr uint64_t kShmMagic = 0x314d485343434e49ull;  // segment set up by its creator
constexpr uint64_t kCommMagic = 0x314d4d4f43434e49ull; // live ncclComm
constexpr int kMaxRanks = 1024;
constexpr size_t kDefaultBuff = (size_t)2 << 20;
constexpr size_t kMinMailbox = (size_t)64 << 10;

// the first bytes of an ncclUniqueId (the rest is zero)
struct IdData {
    uint64_t magic;
    unsigned char name[16];
};

// segment header; the words that ranks wait on are accessed with __atomic builtins
struct ShmHeader {
    uint64_t magic;  // kShmMagic once the creator has set up the segment
    uint32_t nranks, pad;
    uint64_t coll_bytes;  // each of a rank's two collective buffers
    uint64_t p2p_bytes;   // mailbox, per ordered pair
    uint64_t total_bytes;
    alignas(64) uint32_t joined;  // ranks that registered
    uint32_t ready;               // 1 once all ranks joined (and the name is removed)
    alignas(64) uint32_t abort_state;  // 0, 1 = reason being written, 2 = aborted
    char abort_reason[256];
    alignas(64) uint32_t bar_count;  // ranks arrived at the current barrier
    alignas(64) uint32_t bar_gen;    // barriers completed
};

struct ShmRank {
    alignas(64) uint32_t state;  // 0 absent, 1 joined, 2 destroyed its communicator
    int32_t pid;
    alignas(64) uint32_t doorbell;  // incremented (and futex-woken) when something this rank waits for changes
};

// one chunk of a message in flight from one rank to another: full while post != ack
struct ShmMail {
    alignas(64) uint32_t post, ack;
    uint64_t offset, bytes, total;  // the chunk's place in the message, its size, the message's size
};

enum { kAbsent, kJoined, kDestroyed };

inline size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

inline double now_s() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

template <class T> inline T load(const T* p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
template <class T> inline void store(T* p, T v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }

inline void futex_wait(uint32_t* addr, uint32_t expected, long timeout_ns) {
    struct timespec ts = {timeout_ns / 1000000000L, timeout_ns % 1000000000L};
    syscall(SYS_futex, addr, FUTEX_WAIT, expected, &ts, NULL, 0);
}

inline void futex_wake_all(uint32_t* addr) { syscall(SYS_futex, addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0); }

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

// the calling thread's last error message (ncclGetLastError)
inline char* last_error() {
    thread_local char buf[512];
    return buf;
}

// sets the thread's last error to the message and returns r
inline ncclResult_t fail(ncclResult_t r, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
inline ncclResult_t fail(ncclResult_t r, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error(), 512, fmt, ap);
    va_end(ap);
    return r;
}

}  // namespace nccl_cpu

struct ncclComm {
    uint64_t magic = nccl_cpu::kCommMagic;
    int rank = 0, nranks = 1;
    int fd = -1;  // the segment; kept open, it holds this rank's lock
    char* base = nullptr;
    size_t size = 0;
    nccl_cpu::ShmHeader* hdr = nullptr;
    nccl_cpu::ShmRank* ranks = nullptr;
    nccl_cpu::ShmMail* mail = nullptr;  // [sender * nranks + receiver]
    char* coll = nullptr;               // [rank][2] collective buffers of coll_bytes
    char* p2p = nullptr;                // [sender][receiver != sender] mailboxes of p2p_bytes
    size_t coll_bytes = 0, p2p_bytes = 0;
    uint64_t phase = 0;  // collective steps so far; its parity selects the buffer
    std::vector<const void*> srcs;  // scratch: one pointer per rank
    std::vector<char> needed;       // scratch: peers that pending operations wait for
    std::mutex err_mu;
    int async_err = 0;  // ncclResult_t the communicator failed with (atomic), 0 = none
    char err_msg[512] = "";
};

namespace nccl_cpu {

// fails the communicator with r unless it failed already; returns its (first) error, message in last_error()
inline ncclResult_t comm_fail(ncclComm* c, ncclResult_t r, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
inline ncclResult_t comm_fail(ncclComm* c, ncclResult_t r, const char* fmt, ...) {
    std::lock_guard<std::mutex> lock(c->err_mu);
    if (load(&c->async_err) == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err_msg, sizeof(c->err_msg), fmt, ap);
        va_end(ap);
        store(&c->async_err, (int)r);
    }
    snprintf(last_error(), 512, "%s", c->err_msg);
    return (ncclResult_t)load(&c->async_err);
}

// ncclSuccess, or the error the communicator already has
inline ncclResult_t comm_error(ncclComm* c) {
    int e = load(&c->async_err);
    if (e == 0) return ncclSuccess;
    snprintf(last_error(), 512, "%s", c->err_msg);
    return (ncclResult_t)e;
}

inline ncclResult_t check_comm(ncclComm* c, const char* fn) {
    if (c == nullptr) return fail(ncclInvalidArgument, "%s: comm is NULL", fn);
    if (c->magic != kCommMagic) return fail(ncclInvalidArgument, "%s: comm is not a live communicator", fn);
    return comm_error(c);
}

inline size_t type_size(ncclDataType_t t) {
    switch (t) {
    case ncclInt8: case ncclUint8: case ncclFloat8e4m3: case ncclFloat8e5m2: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    default: return 0;
    }
}

inline ncclResult_t check_type(ncclDataType_t t, bool reduction, const char* fn) {
    if (type_size(t) == 0) return fail(ncclInvalidArgument, "%s: datatype %d is not an NCCL data type", fn, (int)t);
    if (reduction && (t == ncclFloat8e4m3 || t == ncclFloat8e5m2))
        return fail(ncclInvalidArgument, "%s: reductions on fp8 data (datatype %d) are not implemented by the CPU "
                    "backend", fn, (int)t);
    return ncclSuccess;
}

inline ncclResult_t check_op(ncclRedOp_t op, const char* fn) {
    if ((int)op < 0 || (int)op >= (int)ncclNumOps)
        return fail(ncclInvalidArgument, "%s: reduction operator %d is not one of ncclSum, ncclProd, ncclMax, ncclMin, "
                    "ncclAvg (custom operators are not implemented by the CPU backend)", fn, (int)op);
    return ncclSuccess;
}

// *bytes = count * es * factor, refusing an overflow
inline ncclResult_t check_bytes(size_t count, size_t es, size_t factor, size_t* bytes, const char* fn) {
    if (count > SIZE_MAX / es / factor) return fail(ncclInvalidArgument, "%s: count %zu is too large", fn, count);
    *bytes = count * es * factor;
    return ncclSuccess;
}

inline ncclResult_t check_buf(const void* p, size_t bytes, const char* name, const char* fn) {
    if (p == nullptr && bytes > 0) return fail(ncclInvalidArgument, "%s: %s is NULL", fn, name);
    return ncclSuccess;
}

// the buffers are the documented in-place layout (in_place) or disjoint
inline ncclResult_t check_overlap(const void* send, size_t send_bytes, const void* recv, size_t recv_bytes,
                                  bool in_place, const char* fn) {
    uintptr_t s = (uintptr_t)send, r = (uintptr_t)recv;
    if (in_place || s + send_bytes <= r || r + recv_bytes <= s) return ncclSuccess;
    return fail(ncclInvalidArgument, "%s: sendbuff and recvbuff overlap, but not in the in-place layout", fn);
}

// half and bfloat16 on their raw bits: the conversions of cuda_bf16.h / cuda_fp16.h (round to nearest even)
inline float bf16_to_float(uint16_t b) { return cuda_cpu_bf_bits2f(b); }
inline uint16_t float_to_bf16(float f) { return cuda_cpu_f2bf_bits(f); }
inline float half_to_float(uint16_t h) { return cuda_cpu_h_bits2f(h); }
inline uint16_t float_to_half(float f) { return cuda_cpu_f2h_bits(f); }

// dst[i] = src[0][i] op src[1][i] op ... in rank order, f(acc, x, last) one step; dst may be one of the sources
template <class T, class F>
inline void reduce_loop(void* dst, const void* const* src, int nsrc, size_t n, F f) {
    constexpr size_t kBlock = 512;
    T acc[kBlock];
    for (size_t i0 = 0; i0 < n; i0 += kBlock) {
        size_t m = n - i0 < kBlock ? n - i0 : kBlock;
        memcpy(acc, (const T*)src[0] + i0, m * sizeof(T));
        for (int k = 1; k < nsrc; k++) {
            const T* s = (const T*)src[k] + i0;
            bool last = k == nsrc - 1;
            for (size_t i = 0; i < m; i++) acc[i] = f(acc[i], s[i], last);
        }
        memcpy((T*)dst + i0, acc, m * sizeof(T));
    }
}

template <class T>
inline void reduce_int(void* dst, const void* const* src, int nsrc, size_t n, ncclRedOp_t op) {
    typedef typename std::make_unsigned<T>::type U;
    const T nr = (T)nsrc;
    switch (op) {
    case ncclSum: reduce_loop<T>(dst, src, nsrc, n, [](T a, T b, bool) { return (T)(U)((U)a + (U)b); }); break;
    case ncclProd: reduce_loop<T>(dst, src, nsrc, n, [](T a, T b, bool) { return (T)(U)((U)a * (U)b); }); break;
    case ncclMax: reduce_loop<T>(dst, src, nsrc, n, [](T a, T b, bool) { return a < b ? b : a; }); break;
    case ncclMin: reduce_loop<T>(dst, src, nsrc, n, [](T a, T b, bool) { return b < a ? b : a; }); break;
    default:  // ncclAvg
        reduce_loop<T>(dst, src, nsrc, n, [nr](T a, T b, bool last) {
            T s = (T)(U)((U)a + (U)b);
            return last ? (T)(s / nr) : s;
        });
    }
}

// max / min that ignore a NaN operand, as fmaxf / fminf
template <class T> inline bool nan_(T x) { return x != x; }
template <class T> inline bool takes_b_max(T a, T b) { return nan_(a) || (!nan_(b) && a < b); }
template <class T> inline bool takes_b_min(T a, T b) { return nan_(a) || (!nan_(b) && b < a); }

template <class T>
inline void reduce_float(void* dst, const void* const* src, int nsrc, size_t n, ncclRedOp_t op) {
    const T nr = (T)nsrc;
    switch (op) {
    case ncclSum: reduce_loop<T>(dst, src, nsrc, n, [](T a, T b, bool) { return a + b; }); break;
    case ncclProd: reduce_loop<T>(dst, src, nsrc, n, [](T a, T b, bool) { return a * b; }); break;
    case ncclMax: reduce_loop<T>(dst, src, nsrc, n, [](T a, T b, bool) { return takes_b_max(a, b) ? b : a; }); break;
    case ncclMin: reduce_loop<T>(dst, src, nsrc, n, [](T a, T b, bool) { return takes_b_min(a, b) ? b : a; }); break;
    default: reduce_loop<T>(dst, src, nsrc, n, [nr](T a, T b, bool last) { return last ? (a + b) / nr : a + b; });
    }
}

template <float (*ToF)(uint16_t), uint16_t (*FromF)(float)>
inline void reduce_16(void* dst, const void* const* src, int nsrc, size_t n, ncclRedOp_t op) {
    const float nr = (float)nsrc;
    typedef uint16_t B;
    switch (op) {
    case ncclSum: reduce_loop<B>(dst, src, nsrc, n, [](B a, B b, bool) { return FromF(ToF(a) + ToF(b)); }); break;
    case ncclProd: reduce_loop<B>(dst, src, nsrc, n, [](B a, B b, bool) { return FromF(ToF(a) * ToF(b)); }); break;
    case ncclMax:
        reduce_loop<B>(dst, src, nsrc, n, [](B a, B b, bool) { return takes_b_max(ToF(a), ToF(b)) ? b : a; });
        break;
    case ncclMin:
        reduce_loop<B>(dst, src, nsrc, n, [](B a, B b, bool) { return takes_b_min(ToF(a), ToF(b)) ? b : a; });
        break;
    default:
        reduce_loop<B>(dst, src, nsrc, n, [nr](B a, B b, bool last) {
            float s = ToF(a) + ToF(b);
            return FromF(last ? s / nr : s);
        });
    }
}

// the reduction over nsrc = nranks sources (type and op are checked)
inline void reduce(void* dst, const void* const* src, int nsrc, size_t n, ncclDataType_t t, ncclRedOp_t op) {
    if (n == 0) return;
    switch (t) {
    case ncclInt8: reduce_int<int8_t>(dst, src, nsrc, n, op); break;
    case ncclUint8: reduce_int<uint8_t>(dst, src, nsrc, n, op); break;
    case ncclInt32: reduce_int<int32_t>(dst, src, nsrc, n, op); break;
    case ncclUint32: reduce_int<uint32_t>(dst, src, nsrc, n, op); break;
    case ncclInt64: reduce_int<int64_t>(dst, src, nsrc, n, op); break;
    case ncclUint64: reduce_int<uint64_t>(dst, src, nsrc, n, op); break;
    case ncclFloat16: reduce_16<half_to_float, float_to_half>(dst, src, nsrc, n, op); break;
    case ncclFloat32: reduce_float<float>(dst, src, nsrc, n, op); break;
    case ncclFloat64: reduce_float<double>(dst, src, nsrc, n, op); break;
    case ncclBfloat16: reduce_16<bf16_to_float, float_to_bf16>(dst, src, nsrc, n, op); break;
    default: break;
    }
}

// ---------------------------------------------------------------------------------------------
// the segment: peers, barrier, mailboxes

inline void ring(ncclComm* c, int q) {
    uint32_t* bell = &c->ranks[q].doorbell;
    __atomic_add_fetch(bell, 1u, __ATOMIC_SEQ_CST);
    futex_wake_all(bell);
}

inline void ring_others(ncclComm* c) {
    for (int q = 0; q < c->nranks; q++)
        if (q != c->rank) ring(c, q);
}

// 1 while some open file description of the segment holds rank q's lock byte
inline bool lock_held(ncclComm* c, int q) {
#ifdef F_OFD_GETLK
    struct flock fl;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = q;
    fl.l_len = 1;
    if (fcntl(c->fd, F_OFD_GETLK, &fl) != 0) return true;  // unknown: assume alive
    return fl.l_type != F_UNLCK;
#else
    int pid = load(&c->ranks[q].pid);
    return pid <= 0 || kill(pid, 0) == 0 || errno != ESRCH;
#endif
}

enum { kPeerAbsent, kPeerAlive, kPeerGone, kPeerDestroyed };

// a rank locks its byte before it registers and sets kDestroyed before it unlocks, so reading the lock, the state
// and (for a rank that registers meanwhile) the lock again never takes a live rank for a gone one
inline int peer_state(ncclComm* c, int q) {
    uint32_t s = load(&c->ranks[q].state);
    if (s == kDestroyed) return kPeerDestroyed;
    if (lock_held(c, q)) return s == kJoined ? kPeerAlive : kPeerAbsent;
    s = load(&c->ranks[q].state);
    if (s == kDestroyed) return kPeerDestroyed;
    if (s == kAbsent) return kPeerAbsent;
    return lock_held(c, q) ? kPeerAlive : kPeerGone;
}

// marks the communicator aborted for every rank (the first reason stays)
inline void set_abort(ncclComm* c, const char* reason) {
    uint32_t expected = 0;
    if (__atomic_compare_exchange_n(&c->hdr->abort_state, &expected, 1u, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        snprintf(c->hdr->abort_reason, sizeof(c->hdr->abort_reason), "%s", reason);
        store(&c->hdr->abort_state, 2u);
    }
    ring_others(c);
}

// why waiting for the peers cannot end: ncclSuccess, or an error with its reason in msg. needed: the peers that
// pending operations wait for (NULL: none, then only an abort or a gone process counts)
inline ncclResult_t peer_problem(ncclComm* c, const char* needed, char* msg, size_t len) {
    uint32_t a = load(&c->hdr->abort_state);
    for (int i = 0; a == 1 && i < 100000; i++) {  // the reason is being written
        sched_yield();
        a = load(&c->hdr->abort_state);
    }
    if (a != 0) {
        snprintf(msg, len, "%s", a == 2 ? c->hdr->abort_reason : "the communicator was aborted");
        return ncclRemoteError;
    }
    // a gone process first: it is the cause when a peer then destroyed its communicator
    for (int q = 0; q < c->nranks; q++) {
        if (q == c->rank || peer_state(c, q) != kPeerGone) continue;
        snprintf(msg, len, "peer rank %d (pid %d) exited without ncclCommDestroy", q, load(&c->ranks[q].pid));
        return ncclRemoteError;
    }
    for (int q = 0; needed != nullptr && q < c->nranks; q++) {
        if (q == c->rank || !needed[q] || peer_state(c, q) != kPeerDestroyed) continue;
        snprintf(msg, len, "peer rank %d (pid %d) destroyed its communicator while rank %d waits for it", q,
                 load(&c->ranks[q].pid), c->rank);
        return ncclRemoteError;
    }
    return ncclSuccess;
}

// arrive at the barrier; returns the generation that completes it
inline uint32_t barrier_arrive(ncclComm* c) {
    ShmHeader* h = c->hdr;
    uint32_t gen = load(&h->bar_gen);
    if (__atomic_fetch_add(&h->bar_count, 1u, __ATOMIC_SEQ_CST) == (uint32_t)c->nranks - 1) {
        store(&h->bar_count, 0u);
        store(&h->bar_gen, gen + 1);
        ring_others(c);
    }
    return gen + 1;
}

inline bool barrier_passed(ncclComm* c, uint32_t target) { return (int32_t)(load(&c->hdr->bar_gen) - target) >= 0; }

inline char* coll_buf(ncclComm* c, int q) {
    return c->coll + ((size_t)q * 2 + (size_t)(c->phase & 1)) * c->coll_bytes;
}

inline ShmMail* mailbox(ncclComm* c, int from, int to) { return &c->mail[(size_t)from * c->nranks + to]; }

inline char* mailbox_data(ncclComm* c, int from, int to) {
    size_t slot = (size_t)from * (c->nranks - 1) + (size_t)(to < from ? to : to - 1);
    return c->p2p + slot * c->p2p_bytes;
}

// ---------------------------------------------------------------------------------------------
// operations: a state machine each, so that the operations of a group progress together

enum OpKind { kAllReduce, kReduce, kBroadcast, kAllGather, kReduceScatter, kSend, kRecv };

struct Op {
    OpKind kind;
    ncclComm* comm;
    const char* send;
    char* recv;
    size_t count;  // elements: all-reduce, reduce, broadcast, send/recv; per rank: all-gather, reduce-scatter
    ncclDataType_t type;
    ncclRedOp_t op;
    int peer;  // root, or the peer of a send/recv
    size_t es = 0;
    size_t done = 0;  // elements (per rank for all-gather / reduce-scatter) finished
    size_t step = 0;  // elements in the current step
    int stage = 0;
    uint32_t target = 0;
    bool finished = false;
};

inline bool is_p2p(const Op& o) { return o.kind == kSend || o.kind == kRecv; }

// the whole operation on a communicator of one rank
inline void run_local(Op& o) {
    size_t bytes = o.count * o.es;
    if (bytes > 0 && o.recv != o.send && o.kind != kSend && o.kind != kRecv) memcpy(o.recv, o.send, bytes);
    o.finished = true;
}

// part [lo, hi) of k elements that rank r reduces
inline void part(size_t k, int r, int n, size_t* lo, size_t* hi) {
    *lo = k * (size_t)r / (size_t)n;
    *hi = k * (size_t)(r + 1) / (size_t)n;
}

// advances a collective as far as it can without waiting; returns whether it did anything
inline bool step_collective(Op& o) {
    ncclComm* c = o.comm;
    const int n = c->nranks, me = c->rank;
    const size_t es = o.es;
    bool progress = false;
    for (;;) {
        if (o.stage == 0) {
            if (o.done == o.count) {
                o.finished = true;
                return true;
            }
            size_t cap = (o.kind == kReduceScatter ? c->coll_bytes / (size_t)n : c->coll_bytes) / es;
            o.step = o.count - o.done < cap ? o.count - o.done : cap;
            char* mine = coll_buf(c, me);
            if (o.kind == kReduceScatter) {
                for (int q = 0; q < n; q++)
                    memcpy(mine + (size_t)q * cap * es, o.send + ((size_t)q * o.count + o.done) * es, o.step * es);
            } else if (o.kind != kBroadcast || me == o.peer) {
                memcpy(mine, o.send + o.done * es, o.step * es);
            }
            o.target = barrier_arrive(c);
            o.stage = 1;
            progress = true;
        }
        if (!barrier_passed(c, o.target)) return progress;
        if (o.stage == 1 && (o.kind == kAllReduce || o.kind == kReduce)) {
            size_t lo, hi;
            part(o.step, me, n, &lo, &hi);
            for (int q = 0; q < n; q++) c->srcs[q] = coll_buf(c, q) + lo * es;
            reduce(coll_buf(c, me) + lo * es, c->srcs.data(), n, hi - lo, o.type, o.op);
            o.target = barrier_arrive(c);
            o.stage = 2;
            progress = true;
            if (!barrier_passed(c, o.target)) return progress;
        }
        // copy out
        if (o.kind == kAllReduce || (o.kind == kReduce && me == o.peer)) {
            for (int q = 0; q < n; q++) {
                size_t lo, hi;
                part(o.step, q, n, &lo, &hi);
                memcpy(o.recv + (o.done + lo) * es, coll_buf(c, q) + lo * es, (hi - lo) * es);
            }
        } else if (o.kind == kBroadcast) {
            const char* from = me == o.peer ? o.send + o.done * es : coll_buf(c, o.peer);
            if (o.recv + o.done * es != from) memcpy(o.recv + o.done * es, from, o.step * es);
        } else if (o.kind == kAllGather) {
            for (int q = 0; q < n; q++) {
                char* to = o.recv + ((size_t)q * o.count + o.done) * es;
                if (q != me || to != o.send + o.done * es) memcpy(to, coll_buf(c, q), o.step * es);
            }
        } else if (o.kind == kReduceScatter) {
            size_t cap = c->coll_bytes / (size_t)n / es;
            for (int q = 0; q < n; q++) c->srcs[q] = coll_buf(c, q) + (size_t)me * cap * es;
            reduce(o.recv + o.done * es, c->srcs.data(), n, o.step, o.type, o.op);
        }
        o.done += o.step;
        c->phase++;
        o.stage = 0;
        progress = true;
    }
}

// advances a send or recv to another rank; returns whether it did anything, ok = false on a mismatched message
inline bool step_p2p(Op& o, bool* ok) {
    ncclComm* c = o.comm;
    const size_t total = o.count * o.es;
    bool progress = false;
    while (o.done < total) {
        if (o.kind == kSend) {
            ShmMail* m = mailbox(c, c->rank, o.peer);
            uint32_t post = load(&m->post);
            if (post != load(&m->ack)) return progress;  // the previous chunk is not taken yet
            size_t k = total - o.done < c->p2p_bytes ? total - o.done : c->p2p_bytes;
            memcpy(mailbox_data(c, c->rank, o.peer), o.send + o.done, k);
            m->offset = o.done;
            m->bytes = k;
            m->total = total;
            store(&m->post, post + 1);
            ring(c, o.peer);
            o.done += k;
        } else {
            ShmMail* m = mailbox(c, o.peer, c->rank);
            uint32_t post = load(&m->post);
            if (post == load(&m->ack)) return progress;
            size_t k = total - o.done < c->p2p_bytes ? total - o.done : c->p2p_bytes;
            if (m->total != total || m->offset != o.done || m->bytes != k) {
                char why[256];
                snprintf(why, sizeof(why), "rank %d receives %zu bytes from rank %d, which sends %llu bytes (the "
                         "sizes of matching ncclSend and ncclRecv differ)", c->rank, total, o.peer,
                         (unsigned long long)m->total);
                set_abort(c, why);
                *ok = false;
                return progress;
            }
            memcpy(o.recv + o.done, mailbox_data(c, o.peer, c->rank), k);
            store(&m->ack, post);
            ring(c, o.peer);
            o.done += k;
        }
        progress = true;
    }
    o.finished = true;
    return true;
}

// runs the operations to completion (those of one communicator keep their order: collectives among themselves,
// and sends and receives per peer; everything else progresses together)
inline ncclResult_t execute(std::vector<Op>& ops) {
    std::vector<ncclComm*> comms;
    for (Op& o : ops) {
        bool seen = false;
        for (ncclComm* c : comms) seen = seen || c == o.comm;
        if (!seen) comms.push_back(o.comm);
    }
    for (ncclComm* c : comms) {
        ncclResult_t r = comm_error(c);
        if (r != ncclSuccess) return r;
        size_t self_send = 0, self_recv = 0;
        for (Op& o : ops) {
            if (o.comm != c || !is_p2p(o) || o.peer != c->rank) continue;
            (o.kind == kSend ? self_send : self_recv) += 1;
        }
        if (self_send != self_recv)
            return fail(ncclInvalidUsage, "rank %d: %zu send(s) to itself but %zu receive(s) from itself; they must "
                        "match within one group (ncclGroupStart / ncclGroupEnd)", c->rank, self_send, self_recv);
    }
    // which (communicator, kind, peer) already has an unfinished operation earlier in the list
    struct Key {
        ncclComm* comm;
        int what;  // -1 collective, 2 * peer send, 2 * peer + 1 recv
    };
    std::vector<Key> busy;
    auto claim = [&busy](ncclComm* c, int what) {
        for (const Key& k : busy)
            if (k.comm == c && k.what == what) return false;
        busy.push_back({c, what});
        return true;
    };
    bool failed = false;
    ncclComm* failed_comm = nullptr;
    // one pass over the operations: progress, and whether any is unfinished
    auto pass = [&](bool* pending) {
        bool progress = false;
        *pending = false;
        busy.clear();
        for (Op& o : ops) {
            if (o.finished) continue;
            ncclComm* c = o.comm;
            int what = !is_p2p(o) ? -1 : 2 * o.peer + (o.kind == kRecv);
            if (!claim(c, what)) {
                *pending = true;
                continue;
            }
            if (c->nranks == 1 && !is_p2p(o)) {
                run_local(o);
                progress = true;
            } else if (is_p2p(o) && o.peer == c->rank) {
                if (o.kind == kSend) {  // matches the first unfinished receive from itself
                    for (Op& r : ops) {
                        if (r.finished || r.comm != c || r.kind != kRecv || r.peer != c->rank) continue;
                        if (r.count * r.es != o.count * o.es) {
                            failed = true;
                            failed_comm = c;
                            fail(ncclInvalidUsage, "rank %d sends %zu bytes to itself but receives %zu", c->rank,
                                 o.count * o.es, r.count * r.es);
                            return false;
                        }
                        if (r.recv != o.send) memcpy(r.recv, o.send, o.count * o.es);
                        r.finished = o.finished = true;
                        progress = true;
                        break;
                    }
                }
            } else if (is_p2p(o)) {
                bool ok = true;
                progress = step_p2p(o, &ok) || progress;
                if (!ok) {
                    failed = true;
                    failed_comm = c;
                    comm_fail(c, ncclInvalidUsage, "%s", c->hdr->abort_reason);
                    return false;
                }
            } else {
                progress = step_collective(o) || progress;
            }
            if (!o.finished) *pending = true;
        }
        return progress;
    };
    // a mismatched send/recv failed the communicator; a mismatched send/recv to self only the call
    auto failure = [](ncclComm* c) {
        ncclResult_t r = comm_error(c);
        return r != ncclSuccess ? r : ncclInvalidUsage;
    };
    ncclComm* sleeper = nullptr;  // the doorbell to sleep on
    for (ncclComm* c : comms)
        if (c->nranks > 1 && sleeper == nullptr) sleeper = c;
    const long sleep_ns = comms.size() == 1 ? 100000000L : 1000000L;
    double last_check = now_s();
    int idle = 0;
    for (;;) {
        uint32_t bell = sleeper != nullptr ? load(&sleeper->ranks[sleeper->rank].doorbell) : 0;
        bool pending = false;
        bool progress = pass(&pending);
        if (failed) return failure(failed_comm);
        if (!pending) return ncclSuccess;
        if (progress) {
            idle = 0;
            continue;
        }
        if (++idle < 100) {
            cpu_relax();
            continue;
        }
        if (idle < 200) {
            sched_yield();
            continue;
        }
        double now = now_s();
        if (now - last_check >= 0.05) {
            last_check = now;
            for (ncclComm* c : comms) {
                if (c->nranks == 1) continue;
                c->needed.assign((size_t)c->nranks, 0);
                for (Op& o : ops) {
                    if (o.finished || o.comm != c) continue;
                    if (is_p2p(o)) c->needed[o.peer] = 1;
                    else c->needed.assign((size_t)c->nranks, 1);
                }
                char why[512];
                ncclResult_t r = peer_problem(c, c->needed.data(), why, sizeof(why));
                if (r == ncclSuccess) continue;
                // what the peer did before it went may still complete the operations
                progress = pass(&pending);
                if (failed) return failure(failed_comm);
                if (!pending) return ncclSuccess;
                if (!progress) return comm_fail(c, r, "%s", why);
            }
        }
        if (sleeper != nullptr) futex_wait(&sleeper->ranks[sleeper->rank].doorbell, bell, sleep_ns);
        else sched_yield();
    }
}

// ---------------------------------------------------------------------------------------------
// groups

struct GroupState {
    int depth = 0;
    ncclResult_t error = ncclSuccess;  // first error of a call inside the group
    char msg[512] = "";
    std::vector<Op> ops;
};

inline GroupState& group() {
    thread_local GroupState g;
    return g;
}

// an error of a call inside a group also fails the group's ncclGroupEnd
inline ncclResult_t note(ncclResult_t r) {
    GroupState& g = group();
    if (r != ncclSuccess && g.depth > 0 && g.error == ncclSuccess) {
        g.error = r;
        snprintf(g.msg, sizeof(g.msg), "%s", last_error());
    }
    return r;
}

inline ncclResult_t submit(const Op& o) {
    if (o.count == 0) return ncclSuccess;
    GroupState& g = group();
    if (g.depth > 0) {
        g.ops.push_back(o);
        return ncclSuccess;
    }
    std::vector<Op> one(1, o);
    return execute(one);
}

inline Op make_op(OpKind kind, ncclComm* c, const void* send, void* recv, size_t count, ncclDataType_t t,
                  ncclRedOp_t op, int peer) {
    Op o;
    o.kind = kind;
    o.comm = c;
    o.send = (const char*)send;
    o.recv = (char*)recv;
    o.count = count;
    o.type = t;
    o.op = op;
    o.peer = peer;
    o.es = type_size(t);
    return o;
}

// ---------------------------------------------------------------------------------------------
// communicator setup

// an environment variable that is an integer in [lo, hi], or def when unset
inline ncclResult_t env_long(const char* name, long def, long lo, long hi, long* out) {
    const char* s = getenv(name);
    *out = def;
    if (s == nullptr || s[0] == '\0') return ncclSuccess;
    char* end = nullptr;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return fail(ncclInvalidArgument, "environment variable %s: '%s' is not an integer in [%ld, %ld]", name, s, lo,
                    hi);
    *out = v;
    return ncclSuccess;
}

inline void shm_name(const IdData& id, char* name, size_t len) {
    int k = snprintf(name, len, "/ncclcpu-");
    for (int i = 0; i < 16 && (size_t)k + 2 < len; i++) k += snprintf(name + k, len - (size_t)k, "%02x", id.name[i]);
}

// offsets of the parts of a segment for n ranks; returns its size
inline size_t layout(int n, size_t coll_bytes, size_t p2p_bytes, size_t* off_ranks, size_t* off_mail,
                     size_t* off_coll, size_t* off_p2p) {
    *off_ranks = round_up(sizeof(ShmHeader), 64);
    *off_mail = *off_ranks + (size_t)n * sizeof(ShmRank);
    *off_coll = round_up(*off_mail + (size_t)n * (size_t)n * sizeof(ShmMail), 4096);
    *off_p2p = *off_coll + (size_t)n * 2 * coll_bytes;
    return round_up(*off_p2p + (size_t)n * (size_t)(n - 1) * p2p_bytes, 4096);
}

inline void unmap(ncclComm* c) {
    if (c->base != nullptr) munmap(c->base, c->size);
    if (c->fd >= 0) close(c->fd);
    c->base = nullptr;
    c->fd = -1;
}

// waits until the segment's creator has set it up; maps it
inline ncclResult_t map_existing(ncclComm* c, double deadline, int timeout_s) {
    for (;;) {
        struct stat st;
        if (fstat(c->fd, &st) != 0)
            return fail(ncclSystemError, "fstat of the shared-memory segment: %s", strerror(errno));
        if ((size_t)st.st_size >= sizeof(ShmHeader)) {
            void* p = mmap(nullptr, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
            if (p == MAP_FAILED) return fail(ncclSystemError, "mmap of the shared-memory segment: %s", strerror(errno));
            ShmHeader* h = (ShmHeader*)p;
            if (load(&h->magic) == kShmMagic && h->total_bytes == (uint64_t)st.st_size) {
                c->base = (char*)p;
                c->size = (size_t)st.st_size;
                return ncclSuccess;
            }
            munmap(p, (size_t)st.st_size);
        }
        if (now_s() > deadline)
            return fail(ncclRemoteError, "rank %d: the rank that created the shared-memory segment did not set it up "
                        "within %d s (NCCL_CPU_TIMEOUT)", c->rank, timeout_s);
        usleep(1000);
    }
}

// creates or opens the segment of the id, registers this rank and waits for all ranks
inline ncclResult_t join(ncclComm* c, const IdData& id) {
    const int n = c->nranks;
    long timeout_s = 0, buff = 0;
    ncclResult_t r = env_long("NCCL_CPU_TIMEOUT", 600, 1, 86400, &timeout_s);
    if (r != ncclSuccess) return r;
    r = env_long("NCCL_CPU_BUFFSIZE", (long)kDefaultBuff, 4096, 1L << 30, &buff);
    if (r != ncclSuccess) return r;
    size_t coll_bytes = (size_t)buff / 64 * 64;
    if (coll_bytes / (size_t)n < 64)
        return fail(ncclInvalidArgument, "NCCL_CPU_BUFFSIZE %ld is too small for %d ranks (at least %d)", buff, n,
                    64 * n);
    size_t p2p_bytes = round_up(coll_bytes / (size_t)(n - 1), 4096);
    if (p2p_bytes < kMinMailbox) p2p_bytes = kMinMailbox;
    size_t off_ranks, off_mail, off_coll, off_p2p;
    size_t total = layout(n, coll_bytes, p2p_bytes, &off_ranks, &off_mail, &off_coll, &off_p2p);
    char name[64];
    shm_name(id, name, sizeof(name));
    const double deadline = now_s() + (double)timeout_s;

    // create the segment (the first rank), or open the one another rank created
    bool created = false;
    for (;;) {
        c->fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (c->fd >= 0) {
            created = true;
            break;
        }
        if (errno != EEXIST) return fail(ncclSystemError, "shm_open of /dev/shm%s: %s", name, strerror(errno));
        c->fd = shm_open(name, O_RDWR, 0600);
        if (c->fd >= 0) break;
        if (errno != ENOENT) return fail(ncclSystemError, "shm_open of /dev/shm%s: %s", name, strerror(errno));
        // removed in between: try to create it again
    }
    if (created) {
        int e = ftruncate(c->fd, (off_t)total) != 0 ? errno : posix_fallocate(c->fd, 0, (off_t)total);
        if (e != 0) {
            shm_unlink(name);
            unmap(c);
            return fail(ncclSystemError, "cannot reserve %.1f MiB of shared memory in /dev/shm for %d ranks: %s (is "
                        "/dev/shm too small? a container needs a larger --shm-size; NCCL_CPU_BUFFSIZE sets the "
                        "buffer size)", (double)total / 1048576.0, n, strerror(e));
        }
        void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
        if (p == MAP_FAILED) {
            e = errno;
            shm_unlink(name);
            unmap(c);
            return fail(ncclSystemError, "mmap of %zu bytes of shared memory: %s", total, strerror(e));
        }
        c->base = (char*)p;
        c->size = total;
        ShmHeader* h = (ShmHeader*)p;
        h->nranks = (uint32_t)n;
        h->coll_bytes = coll_bytes;
        h->p2p_bytes = p2p_bytes;
        h->total_bytes = total;
        store(&h->magic, kShmMagic);
    } else {
        r = map_existing(c, deadline, (int)timeout_s);
        if (r != ncclSuccess) {
            unmap(c);
            return r;
        }
    }
    ShmHeader* h = (ShmHeader*)c->base;
    auto bail = [&](ncclResult_t res) {
        shm_unlink(name);
        unmap(c);
        return res;
    };
    if ((int)h->nranks != n)
        return bail(fail(ncclInvalidArgument, "rank %d: ncclCommInitRank with nranks %d, but another rank of this "
                         "ncclUniqueId used nranks %u", c->rank, n, h->nranks));
    c->hdr = h;
    c->coll_bytes = (size_t)h->coll_bytes;
    c->p2p_bytes = (size_t)h->p2p_bytes;
    layout(n, c->coll_bytes, c->p2p_bytes, &off_ranks, &off_mail, &off_coll, &off_p2p);
    c->ranks = (ShmRank*)(c->base + off_ranks);
    c->mail = (ShmMail*)(c->base + off_mail);
    c->coll = c->base + off_coll;
    c->p2p = c->base + off_p2p;

    // register: lock this rank's byte, then mark it joined
#ifdef F_OFD_SETLK
    struct flock fl;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = c->rank;
    fl.l_len = 1;
    if (fcntl(c->fd, F_OFD_SETLK, &fl) != 0) {
        if (errno == EAGAIN || errno == EACCES)
            return bail(fail(ncclInvalidUsage, "rank %d joined this communicator twice (two processes with the same "
                             "rank?)", c->rank));
        return bail(fail(ncclSystemError, "lock on the shared-memory segment: %s", strerror(errno)));
    }
#endif
    ShmRank* me = &c->ranks[c->rank];
    uint32_t expected = kAbsent;
    store(&me->pid, (int32_t)getpid());
    if (!__atomic_compare_exchange_n(&me->state, &expected, (uint32_t)kJoined, false, __ATOMIC_SEQ_CST,
                                     __ATOMIC_SEQ_CST))
        return bail(fail(ncclInvalidUsage, "rank %d joined this communicator twice (two processes with the same rank?)",
                         c->rank));
    if (__atomic_add_fetch(&h->joined, 1u, __ATOMIC_SEQ_CST) == (uint32_t)n) {
        shm_unlink(name);  // all ranks have it mapped
        store(&h->ready, 1u);
        ring_others(c);
    }
    double last_check = 0.0;
    while (load(&h->ready) == 0) {
        uint32_t bell = load(&me->doorbell);
        if (load(&h->ready) != 0) break;
        double now = now_s();
        if (now - last_check >= 0.05) {
            last_check = now;
            char why[512];
            r = peer_problem(c, nullptr, why, sizeof(why));
            if (r != ncclSuccess) return bail(fail(r, "ncclCommInitRank: %s", why));
        }
        if (now > deadline)
            return bail(fail(ncclRemoteError, "ncclCommInitRank: rank %d waited %ld s (NCCL_CPU_TIMEOUT) for the "
                             "other ranks, %u of %d joined", c->rank, timeout_s, load(&h->joined), n));
        futex_wait(&me->doorbell, bell, 50000000L);
    }
    c->srcs.assign((size_t)n, nullptr);
    return ncclSuccess;
}

// the communicator's own part of destroy and abort
inline ncclResult_t release(ncclComm* c, bool abort, const char* fn) {
    if (c == nullptr) return ncclSuccess;
    if (c->magic != kCommMagic) return fail(ncclInvalidArgument, "%s: comm is not a live communicator", fn);
    GroupState& g = group();
    for (const Op& o : g.ops)
        if (o.comm == c)
            return fail(ncclInvalidUsage, "%s: the communicator has operations queued in an open group", fn);
    if (c->nranks > 1 && c->base != nullptr) {
        if (abort) {
            char why[128];
            snprintf(why, sizeof(why), "rank %d called ncclCommAbort", c->rank);
            set_abort(c, why);
        } else {
            store(&c->ranks[c->rank].state, (uint32_t)kDestroyed);
            ring_others(c);
        }
    }
    unmap(c);
    c->magic = 0;
    delete c;
    return ncclSuccess;
}

}  // namespace nccl_cpu

// ---------------------------------------------------------------------------------------------
// the API

inline const char* ncclGetErrorString(ncclResult_t result) {
    switch (result) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
    }
}

// the communicator's error when it has one, else the calling thread's last error
inline const char* ncclGetLastError(ncclComm_t comm) {
    if (comm != nullptr && comm->magic == nccl_cpu::kCommMagic && nccl_cpu::load(&comm->async_err) != 0)
        return comm->err_msg;
    return nccl_cpu::last_error();
}

inline ncclResult_t ncclGetVersion(int* version) {
    if (version == nullptr) return nccl_cpu::fail(ncclInvalidArgument, "ncclGetVersion: version is NULL");
    *version = NCCL_VERSION_CODE;
    return ncclSuccess;
}

inline ncclResult_t ncclGetUniqueId(ncclUniqueId* uniqueId) {
    using namespace nccl_cpu;
    if (uniqueId == nullptr) return fail(ncclInvalidArgument, "ncclGetUniqueId: uniqueId is NULL");
    IdData id;
    id.magic = kIdMagic;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(ncclSystemError, "ncclGetUniqueId: cannot open /dev/urandom: %s", strerror(errno));
    ssize_t got = read(fd, id.name, sizeof(id.name));
    int e = errno;
    close(fd);
    if (got != (ssize_t)sizeof(id.name))
        return fail(ncclSystemError, "ncclGetUniqueId: cannot read /dev/urandom: %s",
                    got < 0 ? strerror(e) : "short read");
    memset(uniqueId, 0, sizeof(*uniqueId));
    memcpy(uniqueId->internal, &id, sizeof(id));
    return ncclSuccess;
}

inline ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank) {
    using namespace nccl_cpu;
    if (comm == nullptr) return fail(ncclInvalidArgument, "ncclCommInitRank: comm is NULL");
    *comm = nullptr;
    if (group().depth > 0)
        return note(fail(ncclInvalidUsage, "ncclCommInitRank inside ncclGroupStart / ncclGroupEnd is not supported by "
                         "the CPU backend"));
    if (nranks < 1 || nranks > kMaxRanks)
        return fail(ncclInvalidArgument, "ncclCommInitRank: nranks %d is not in [1, %d]", nranks, kMaxRanks);
    if (rank < 0 || rank >= nranks)
        return fail(ncclInvalidArgument, "ncclCommInitRank: rank %d is not in [0, %d)", rank, nranks);
    IdData id;
    memcpy(&id, commId.internal, sizeof(id));
    if (id.magic != kIdMagic)
        return fail(ncclInvalidArgument, "ncclCommInitRank: the ncclUniqueId was not made by ncclGetUniqueId (of this "
                    "CPU backend)");
    ncclComm* c = new (std::nothrow) ncclComm;
    if (c == nullptr) return fail(ncclSystemError, "ncclCommInitRank: out of memory");
    c->rank = rank;
    c->nranks = nranks;
    if (nranks > 1) {
        ncclResult_t r = join(c, id);
        if (r != ncclSuccess) {
            delete c;
            return r;
        }
    }
    *comm = c;
    return ncclSuccess;
}

inline ncclResult_t ncclCommDestroy(ncclComm_t comm) { return nccl_cpu::release(comm, false, "ncclCommDestroy"); }

// also ends the peers' waiting: their calls return ncclRemoteError
inline ncclResult_t ncclCommAbort(ncclComm_t comm) { return nccl_cpu::release(comm, true, "ncclCommAbort"); }

// every operation has completed when its call returns
inline ncclResult_t ncclCommFinalize(ncclComm_t comm) { return nccl_cpu::check_comm(comm, "ncclCommFinalize"); }

inline ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* asyncError) {
    using namespace nccl_cpu;
    if (comm == nullptr || comm->magic != kCommMagic)
        return fail(ncclInvalidArgument, "ncclCommGetAsyncError: comm is not a live communicator");
    if (asyncError == nullptr) return fail(ncclInvalidArgument, "ncclCommGetAsyncError: asyncError is NULL");
    *asyncError = (ncclResult_t)load(&comm->async_err);
    if (*asyncError == ncclSuccess && comm->nranks > 1) {
        char why[512];
        ncclResult_t r = peer_problem(comm, nullptr, why, sizeof(why));
        if (r != ncclSuccess) *asyncError = comm_fail(comm, r, "%s", why);
    }
    return ncclSuccess;
}

inline ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) {
    using namespace nccl_cpu;
    if (comm == nullptr || comm->magic != kCommMagic)
        return fail(ncclInvalidArgument, "ncclCommCount: comm is not a live communicator");
    if (count == nullptr) return fail(ncclInvalidArgument, "ncclCommCount: count is NULL");
    *count = comm->nranks;
    return ncclSuccess;
}

inline ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank) {
    using namespace nccl_cpu;
    if (comm == nullptr || comm->magic != kCommMagic)
        return fail(ncclInvalidArgument, "ncclCommUserRank: comm is not a live communicator");
    if (rank == nullptr) return fail(ncclInvalidArgument, "ncclCommUserRank: rank is NULL");
    *rank = comm->rank;
    return ncclSuccess;
}

inline ncclResult_t ncclGroupStart() {
    nccl_cpu::group().depth++;
    return ncclSuccess;
}

inline ncclResult_t ncclGroupEnd() {
    using namespace nccl_cpu;
    GroupState& g = group();
    if (g.depth == 0) return fail(ncclInvalidUsage, "ncclGroupEnd without ncclGroupStart");
    if (--g.depth > 0) return ncclSuccess;
    std::vector<Op> ops;
    ops.swap(g.ops);
    if (g.error != ncclSuccess) {
        ncclResult_t r = g.error;
        g.error = ncclSuccess;
        return fail(r, "%s", g.msg);
    }
    return execute(ops);
}

inline ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
                                  ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
    using namespace nccl_cpu;
    (void)stream;
    const char* fn = "ncclAllReduce";
    size_t bytes = 0;
    ncclResult_t r = check_comm(comm, fn);
    if (r == ncclSuccess) r = check_type(datatype, true, fn);
    if (r == ncclSuccess) r = check_op(op, fn);
    if (r == ncclSuccess) r = check_bytes(count, type_size(datatype), 1, &bytes, fn);
    if (r == ncclSuccess) r = check_buf(sendbuff, bytes, "sendbuff", fn);
    if (r == ncclSuccess) r = check_buf(recvbuff, bytes, "recvbuff", fn);
    if (r == ncclSuccess) r = check_overlap(sendbuff, bytes, recvbuff, bytes, sendbuff == recvbuff, fn);
    if (r != ncclSuccess) return note(r);
    return note(submit(make_op(kAllReduce, comm, sendbuff, recvbuff, count, datatype, op, 0)));
}

// recvbuff is used on the root only
inline ncclResult_t ncclReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
                               ncclRedOp_t op, int root, ncclComm_t comm, cudaStream_t stream) {
    using namespace nccl_cpu;
    (void)stream;
    const char* fn = "ncclReduce";
    size_t bytes = 0;
    ncclResult_t r = check_comm(comm, fn);
    if (r == ncclSuccess) r = check_type(datatype, true, fn);
    if (r == ncclSuccess) r = check_op(op, fn);
    if (r == ncclSuccess && (root < 0 || root >= comm->nranks))
        r = fail(ncclInvalidArgument, "%s: root %d is not in [0, %d)", fn, root, comm->nranks);
    if (r == ncclSuccess) r = check_bytes(count, type_size(datatype), 1, &bytes, fn);
    if (r == ncclSuccess) r = check_buf(sendbuff, bytes, "sendbuff", fn);
    if (r == ncclSuccess && comm->rank == root) r = check_buf(recvbuff, bytes, "recvbuff", fn);
    if (r == ncclSuccess && comm->rank == root)
        r = check_overlap(sendbuff, bytes, recvbuff, bytes, sendbuff == recvbuff, fn);
    if (r != ncclSuccess) return note(r);
    return note(submit(make_op(kReduce, comm, sendbuff, recvbuff, count, datatype, op, root)));
}

// sendbuff is used on the root only
inline ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype, int root,
                                  ncclComm_t comm, cudaStream_t stream) {
    using namespace nccl_cpu;
    (void)stream;
    const char* fn = "ncclBroadcast";
    size_t bytes = 0;
    ncclResult_t r = check_comm(comm, fn);
    if (r == ncclSuccess) r = check_type(datatype, false, fn);
    if (r == ncclSuccess && (root < 0 || root >= comm->nranks))
        r = fail(ncclInvalidArgument, "%s: root %d is not in [0, %d)", fn, root, comm->nranks);
    if (r == ncclSuccess) r = check_bytes(count, type_size(datatype), 1, &bytes, fn);
    if (r == ncclSuccess) r = check_buf(recvbuff, bytes, "recvbuff", fn);
    if (r == ncclSuccess && comm->rank == root) r = check_buf(sendbuff, bytes, "sendbuff", fn);
    if (r == ncclSuccess && comm->rank == root)
        r = check_overlap(sendbuff, bytes, recvbuff, bytes, sendbuff == recvbuff, fn);
    if (r != ncclSuccess) return note(r);
    return note(submit(make_op(kBroadcast, comm, sendbuff, recvbuff, count, datatype, ncclSum, root)));
}

// the in-place broadcast of older NCCL
inline ncclResult_t ncclBcast(void* buff, size_t count, ncclDataType_t datatype, int root, ncclComm_t comm,
                              cudaStream_t stream) {
    return ncclBroadcast(buff, buff, count, datatype, root, comm, stream);
}

// in place when recvbuff = sendbuff + rank * recvcount
inline ncclResult_t ncclReduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount, ncclDataType_t datatype,
                                      ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
    using namespace nccl_cpu;
    (void)stream;
    const char* fn = "ncclReduceScatter";
    size_t bytes = 0, send_bytes = 0;
    ncclResult_t r = check_comm(comm, fn);
    if (r == ncclSuccess) r = check_type(datatype, true, fn);
    if (r == ncclSuccess) r = check_op(op, fn);
    if (r == ncclSuccess) r = check_bytes(recvcount, type_size(datatype), 1, &bytes, fn);
    if (r == ncclSuccess) r = check_bytes(recvcount, type_size(datatype), (size_t)comm->nranks, &send_bytes, fn);
    if (r == ncclSuccess) r = check_buf(sendbuff, send_bytes, "sendbuff", fn);
    if (r == ncclSuccess) r = check_buf(recvbuff, bytes, "recvbuff", fn);
    if (r == ncclSuccess)
        r = check_overlap(sendbuff, send_bytes, recvbuff, bytes,
                          (uintptr_t)recvbuff == (uintptr_t)sendbuff + (size_t)comm->rank * bytes, fn);
    if (r != ncclSuccess) return note(r);
    return note(submit(make_op(kReduceScatter, comm, sendbuff, recvbuff, recvcount, datatype, op, 0)));
}

// in place when sendbuff = recvbuff + rank * sendcount
inline ncclResult_t ncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount, ncclDataType_t datatype,
                                  ncclComm_t comm, cudaStream_t stream) {
    using namespace nccl_cpu;
    (void)stream;
    const char* fn = "ncclAllGather";
    size_t bytes = 0, recv_bytes = 0;
    ncclResult_t r = check_comm(comm, fn);
    if (r == ncclSuccess) r = check_type(datatype, false, fn);
    if (r == ncclSuccess) r = check_bytes(sendcount, type_size(datatype), 1, &bytes, fn);
    if (r == ncclSuccess) r = check_bytes(sendcount, type_size(datatype), (size_t)comm->nranks, &recv_bytes, fn);
    if (r == ncclSuccess) r = check_buf(sendbuff, bytes, "sendbuff", fn);
    if (r == ncclSuccess) r = check_buf(recvbuff, recv_bytes, "recvbuff", fn);
    if (r == ncclSuccess)
        r = check_overlap(sendbuff, bytes, recvbuff, recv_bytes,
                          (uintptr_t)sendbuff == (uintptr_t)recvbuff + (size_t)comm->rank * bytes, fn);
    if (r != ncclSuccess) return note(r);
    return note(submit(make_op(kAllGather, comm, sendbuff, recvbuff, sendcount, datatype, ncclSum, 0)));
}

namespace nccl_cpu {
// a send (recvbuff NULL) or a receive (sendbuff NULL) of count elements with peer
inline ncclResult_t point_to_point(const char* fn, OpKind kind, const void* sendbuff, void* recvbuff, size_t count,
                                   ncclDataType_t datatype, int peer, ncclComm_t comm) {
    size_t bytes = 0;
    ncclResult_t r = check_comm(comm, fn);
    if (r == ncclSuccess) r = check_type(datatype, false, fn);
    if (r == ncclSuccess && (peer < 0 || peer >= comm->nranks))
        r = fail(ncclInvalidArgument, "%s: peer %d is not in [0, %d)", fn, peer, comm->nranks);
    if (r == ncclSuccess) r = check_bytes(count, type_size(datatype), 1, &bytes, fn);
    if (r == ncclSuccess)
        r = kind == kSend ? check_buf(sendbuff, bytes, "sendbuff", fn) : check_buf(recvbuff, bytes, "recvbuff", fn);
    if (r != ncclSuccess) return note(r);
    return note(submit(make_op(kind, comm, sendbuff, recvbuff, count, datatype, ncclSum, peer)));
}
}  // namespace nccl_cpu

inline ncclResult_t ncclSend(const void* sendbuff, size_t count, ncclDataType_t datatype, int peer, ncclComm_t comm,
                             cudaStream_t) {
    return nccl_cpu::point_to_point("ncclSend", nccl_cpu::kSend, sendbuff, nullptr, count, datatype, peer, comm);
}

inline ncclResult_t ncclRecv(void* recvbuff, size_t count, ncclDataType_t datatype, int peer, ncclComm_t comm,
                             cudaStream_t) {
    return nccl_cpu::point_to_point("ncclRecv", nccl_cpu::kRecv, nullptr, recvbuff, count, datatype, peer, comm);
}

#endif  // CUDA_CPU_NCCL_H
