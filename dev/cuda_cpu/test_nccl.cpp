// Tests of the CPU backend's NCCL (dev/cuda_cpu/include/nccl.h): the collectives and calls of llmc/cuda_dist.h and
// the rest of the API on communicators of 1, 2 and 3 ranks (forked processes; also two threads of one process),
// each result compared with a rank-order reference of its own and, where all ranks get the same result, for
// identical bits on every rank; then the failures: a rank that exits or is killed, ncclCommAbort, a peer that
// destroyed its communicator, mismatched send/recv sizes, a rendezvous that times out, and nothing left in /dev/shm.
// Prints one line per check and `N passed, M failed`; exit status 1 when a check failed.
// Build: make cuda-cpu-test-nccl (g++ -std=c++17 -I dev/cuda_cpu/include ... -pthread).
#include <nccl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sched.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>
#include "test_util.h"

// ---------------------------------------------------------------------------------------------
// results of the ranks of one run, in memory shared with the forked ranks

constexpr int kMaxChecks = 256, kMaxRanks = 3;

struct Results {
    int lock;   // spinlock of the table
    int count;  // checks reported
    char name[kMaxChecks][128];
    int reported[kMaxChecks][kMaxRanks];
    int ok[kMaxChecks][kMaxRanks];
    int same[kMaxChecks];  // every reporting rank must have the same hash
    uint64_t hash[kMaxChecks][kMaxRanks];
    char detail[kMaxChecks][kMaxRanks][160];
};

static Results* g_res;
static thread_local int g_rank, g_next;
static int g_passed, g_failed;


static double now_s() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t fnv(const void* p, size_t n) {
    const unsigned char* b = (const unsigned char*)p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

// a rank's result of a check (the ranks report the same names; g_next only numbers the checks for their data)
static void report(const std::string& name, bool ok, const std::string& detail = "", bool same = false,
                   uint64_t hash = 0) {
    g_next++;
    while (__atomic_exchange_n(&g_res->lock, 1, __ATOMIC_ACQUIRE)) sched_yield();
    int i = 0;
    while (i < g_res->count && strncmp(g_res->name[i], name.c_str(), sizeof(g_res->name[i]) - 1) != 0) i++;
    if (i == g_res->count) {
        if (i == kMaxChecks) {
            fprintf(stderr, "test_nccl: more than %d checks in one run\n", kMaxChecks);
            _exit(3);
        }
        snprintf(g_res->name[i], sizeof(g_res->name[i]), "%s", name.c_str());
        g_res->count++;
    }
    g_res->reported[i][g_rank] = 1;
    g_res->ok[i][g_rank] = ok;
    g_res->hash[i][g_rank] = hash;
    snprintf(g_res->detail[i][g_rank], sizeof(g_res->detail[i][g_rank]), "%s", detail.c_str());
    if (same) g_res->same[i] = 1;
    __atomic_store_n(&g_res->lock, 0, __ATOMIC_RELEASE);
}

static void print_check(bool ok, const std::string& line) {
    printf("%s %s\n", ok ? "ok  " : "FAIL", line.c_str());
    fflush(stdout);
    (ok ? g_passed : g_failed)++;
}

static std::string result_str(ncclResult_t r) { return fmt("%d (%s)", (int)r, ncclGetErrorString(r)); }

// ---------------------------------------------------------------------------------------------
// data: rank r's element i of check `salt`, and the rank-order reference of the reductions

static uint64_t mix(int rank, uint64_t salt, size_t i) {
    uint64_t z = ((uint64_t)rank << 56) ^ (salt << 36) ^ (uint64_t)i;
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// x rounded to `bits` significant bits, to nearest even (an independent form of the 16-bit roundings)
static float round_bits(float x, int bits) {
    if (x == 0.0f || !isfinite(x)) return x;
    int e;
    float m = frexpf(x, &e);
    return ldexpf(nearbyintf(ldexpf(m, bits)), e - bits);
}

template <class T> struct IntT {
    typedef T S;
    static S make(uint64_t h) { return (S)h; }
    static S op(S a, S b, ncclRedOp_t op, bool last, int n) {
        typedef typename std::make_unsigned<T>::type U;
        S s = (S)(U)((U)a + (U)b);
        switch (op) {
        case ncclSum: return s;
        case ncclProd: return (S)(U)((U)a * (U)b);
        case ncclMax: return a > b ? a : b;
        case ncclMin: return a < b ? a : b;
        default: return last ? (S)(s / (S)n) : s;
        }
    }
};

template <class F> static F float_op(F a, F b, ncclRedOp_t op, bool last, int n) {
    switch (op) {
    case ncclSum: return a + b;
    case ncclProd: return a * b;
    case ncclMax: return a > b ? a : b;
    case ncclMin: return a < b ? a : b;
    default: return last ? (a + b) / (F)n : a + b;
    }
}

template <class F> struct FloatT {
    typedef F S;
    static S make(uint64_t h) { return (F)((double)(h >> 11) * 0x1p-53 * 4.0 - 2.0); }
    static S op(S a, S b, ncclRedOp_t op, bool last, int n) { return float_op<F>(a, b, op, last, n); }
};

// 16-bit floats: inputs of magnitude [0.25, 2), so that no sum, product or mean is subnormal in half
static float make16(uint64_t h) {
    float m = 0.25f + 1.75f * (float)((double)(h >> 40) * 0x1p-24);
    return (h & 1) ? -m : m;
}

struct Bf16T {
    typedef uint16_t S;
    static S store(float x) {
        float r = round_bits(x, 8);
        uint32_t u;
        memcpy(&u, &r, 4);
        return (S)(u >> 16);
    }
    static float load(S b) {
        uint32_t u = (uint32_t)b << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    static S make(uint64_t h) { return store(make16(h)); }
    static S op(S a, S b, ncclRedOp_t op, bool last, int n) {
        return store(float_op<float>(load(a), load(b), op, last, n));
    }
};

struct HalfT {
    typedef uint16_t S;
    static S store(float x) {  // normal values and zero only
        float r = round_bits(x, 11);
        S sign = signbit(r) ? 0x8000 : 0;
        if (r == 0.0f) return sign;
        int e;
        float m = frexpf(fabsf(r), &e);
        return (S)(sign | (S)((e - 1 + 15) << 10) | (S)(m * 2048.0f - 1024.0f));
    }
    static float load(S h) {
        int e = (h >> 10) & 31, m = h & 1023;
        float v = (e == 0 && m == 0) ? 0.0f : ldexpf((float)(1024 + m), e - 25);
        return (h & 0x8000) ? -v : v;
    }
    static S make(uint64_t h) { return store(make16(h)); }
    static S op(S a, S b, ncclRedOp_t op, bool last, int n) {
        return store(float_op<float>(load(a), load(b), op, last, n));
    }
};

struct Fp8T {  // data movement only
    typedef uint8_t S;
    static S make(uint64_t h) { return (S)h; }
    static S op(S a, S, ncclRedOp_t, bool, int) { return a; }
};

#define DISPATCH(t, F, ...)                                              \
    switch (t) {                                                         \
    case ncclInt8: F<IntT<int8_t>>(__VA_ARGS__); break;                  \
    case ncclUint8: F<IntT<uint8_t>>(__VA_ARGS__); break;                \
    case ncclInt32: F<IntT<int32_t>>(__VA_ARGS__); break;                \
    case ncclUint32: F<IntT<uint32_t>>(__VA_ARGS__); break;              \
    case ncclInt64: F<IntT<int64_t>>(__VA_ARGS__); break;                \
    case ncclUint64: F<IntT<uint64_t>>(__VA_ARGS__); break;              \
    case ncclFloat16: F<HalfT>(__VA_ARGS__); break;                      \
    case ncclFloat32: F<FloatT<float>>(__VA_ARGS__); break;              \
    case ncclFloat64: F<FloatT<double>>(__VA_ARGS__); break;             \
    case ncclBfloat16: F<Bf16T>(__VA_ARGS__); break;                     \
    default: F<Fp8T>(__VA_ARGS__); break;                                \
    }

template <class Tr> static void fill_t(void* p, size_t n, int rank, uint64_t salt, size_t base) {
    typename Tr::S* s = (typename Tr::S*)p;
    for (size_t i = 0; i < n; i++) s[i] = Tr::make(mix(rank, salt, base + i));
}

template <class Tr>
static void ref_t(void* p, size_t n, int world, uint64_t salt, size_t base, ncclRedOp_t op) {
    typename Tr::S* s = (typename Tr::S*)p;
    for (size_t i = 0; i < n; i++) {
        typename Tr::S acc = Tr::make(mix(0, salt, base + i));
        for (int r = 1; r < world; r++) acc = Tr::op(acc, Tr::make(mix(r, salt, base + i)), op, r == world - 1, world);
        s[i] = acc;
    }
}

static size_t esize(ncclDataType_t t) {
    switch (t) {
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    default: return 1;
    }
}

// rank's elements [base, base + n) of check salt
static void fill(ncclDataType_t t, void* p, size_t n, int rank, uint64_t salt, size_t base = 0) {
    DISPATCH(t, fill_t, p, n, rank, salt, base)
}

// the reduction over world ranks of elements [base, base + n)
static void ref(ncclDataType_t t, void* p, size_t n, int world, uint64_t salt, size_t base, ncclRedOp_t op) {
    DISPATCH(t, ref_t, p, n, world, salt, base, op)
}

typedef std::vector<unsigned char> Bytes;

// "" when equal, else where the first difference is
static std::string diff(const void* got, const void* want, size_t n, size_t es) {
    const unsigned char *g = (const unsigned char*)got, *w = (const unsigned char*)want;
    for (size_t i = 0; i < n; i++) {
        if (g[i] == w[i]) continue;
        size_t e = i / es;
        uint64_t gv = 0, wv = 0;
        memcpy(&gv, g + e * es, es);
        memcpy(&wv, w + e * es, es);
        return fmt("element %zu is 0x%llx, expected 0x%llx", e, (unsigned long long)gv, (unsigned long long)wv);
    }
    return "";
}

static const char* type_name(ncclDataType_t t) {
    static const char* names[] = {"int8", "uint8", "int32", "uint32", "int64", "uint64", "half", "float", "double",
                                  "bf16", "fp8e4m3", "fp8e5m2"};
    return (int)t >= 0 && (int)t < 12 ? names[t] : "?";
}

static const char* op_name(ncclRedOp_t op) {
    static const char* names[] = {"sum", "prod", "max", "min", "avg"};
    return (int)op >= 0 && (int)op < 5 ? names[op] : "?";
}

static const char* place(bool in_place) { return in_place ? "in place" : "out of place"; }

// ---------------------------------------------------------------------------------------------
// the collectives, each against its reference

static int g_world;

static void check_allreduce(ncclComm_t comm, ncclDataType_t t, ncclRedOp_t op, size_t count, bool in_place) {
    uint64_t salt = (uint64_t)g_next;
    size_t es = esize(t), bytes = count * es;
    Bytes send(bytes), recv(bytes, 0xab), want(bytes), orig;
    fill(t, send.data(), count, g_rank, salt);
    orig = send;
    void* out = in_place ? send.data() : recv.data();
    ncclResult_t r = ncclAllReduce(send.data(), out, count, t, op, comm, 0);
    ref(t, want.data(), count, g_world, salt, 0, op);
    std::string d = r != ncclSuccess ? "returned " + result_str(r) : diff(out, want.data(), bytes, es);
    if (d.empty() && !in_place && send != orig) d = "sendbuff changed";
    report(fmt("world=%d allreduce %s %s %s, %zu elements", g_world, type_name(t), op_name(op), place(in_place), count),
           d.empty(), d, true, fnv(out, bytes));
}

static void check_reduce_scatter(ncclComm_t comm, ncclDataType_t t, ncclRedOp_t op, size_t recvcount, bool in_place) {
    uint64_t salt = (uint64_t)g_next;
    size_t es = esize(t), bytes = recvcount * es;
    Bytes send(bytes * g_world), recv(bytes, 0xab), want(bytes);
    fill(t, send.data(), recvcount * g_world, g_rank, salt);
    unsigned char* out = in_place ? send.data() + (size_t)g_rank * bytes : recv.data();
    ncclResult_t r = ncclReduceScatter(send.data(), out, recvcount, t, op, comm, 0);
    ref(t, want.data(), recvcount, g_world, salt, (size_t)g_rank * recvcount, op);
    std::string d = r != ncclSuccess ? "returned " + result_str(r) : diff(out, want.data(), bytes, es);
    report(fmt("world=%d reduce-scatter %s %s %s, %zu elements per rank", g_world, type_name(t), op_name(op),
               place(in_place), recvcount), d.empty(), d);
}

static void check_all_gather(ncclComm_t comm, ncclDataType_t t, size_t count, bool in_place) {
    uint64_t salt = (uint64_t)g_next;
    size_t es = esize(t), bytes = count * es;
    Bytes send(bytes), recv(bytes * g_world, 0xab), want(bytes * g_world);
    fill(t, send.data(), count, g_rank, salt);
    const void* in = send.data();
    if (in_place) {
        memcpy(recv.data() + (size_t)g_rank * bytes, send.data(), bytes);
        in = recv.data() + (size_t)g_rank * bytes;
    }
    for (int q = 0; q < g_world; q++) fill(t, want.data() + (size_t)q * bytes, count, q, salt);
    ncclResult_t r = ncclAllGather(in, recv.data(), count, t, comm, 0);
    std::string d = r != ncclSuccess ? "returned " + result_str(r) : diff(recv.data(), want.data(), recv.size(), es);
    report(fmt("world=%d all-gather %s %s, %zu elements per rank", g_world, type_name(t), place(in_place), count),
           d.empty(), d, true, fnv(recv.data(), recv.size()));
}

static void check_broadcast(ncclComm_t comm, ncclDataType_t t, size_t count, int root, bool in_place) {
    uint64_t salt = (uint64_t)g_next;
    size_t es = esize(t), bytes = count * es;
    Bytes send(bytes), recv(bytes, 0xab), want(bytes);
    fill(t, want.data(), count, root, salt);
    if (g_rank == root) send = want;
    if (in_place && g_rank == root) recv = want;
    const void* in = g_rank != root ? nullptr : in_place ? (const void*)recv.data() : (const void*)send.data();
    ncclResult_t r = ncclBroadcast(in, recv.data(), count, t, root, comm, 0);
    std::string d = r != ncclSuccess ? "returned " + result_str(r) : diff(recv.data(), want.data(), bytes, es);
    report(fmt("world=%d broadcast %s %s from root %d, %zu elements", g_world, type_name(t), place(in_place), root,
               count), d.empty(), d, true, fnv(recv.data(), bytes));
}

static void check_reduce(ncclComm_t comm, ncclDataType_t t, ncclRedOp_t op, size_t count, int root, bool in_place) {
    uint64_t salt = (uint64_t)g_next;
    size_t es = esize(t), bytes = count * es;
    Bytes send(bytes), recv(bytes, 0xab), want(bytes);
    fill(t, send.data(), count, g_rank, salt);
    Bytes orig = send;
    void* out = in_place ? send.data() : g_rank == root ? recv.data() : nullptr;
    ncclResult_t r = ncclReduce(send.data(), out, count, t, op, root, comm, 0);
    std::string d;
    if (r != ncclSuccess) d = "returned " + result_str(r);
    else if (g_rank == root) {
        ref(t, want.data(), count, g_world, salt, 0, op);
        d = diff(out, want.data(), bytes, es);
    } else if (send != orig) {
        d = "a non-root rank's buffer changed";
    }
    report(fmt("world=%d reduce %s %s %s to root %d, %zu elements", g_world, type_name(t), op_name(op), place(in_place),
               root, count), d.empty(), d);
}

// the segments' names of the runs' ids (checked at the end)
static std::vector<std::string> g_segments;

static std::string segment_path(const ncclUniqueId& id) {
    nccl_cpu::IdData data;
    memcpy(&data, id.internal, sizeof(data));
    char name[64];
    nccl_cpu::shm_name(data, name, sizeof(name));
    return std::string("/dev/shm") + name;
}

// ---------------------------------------------------------------------------------------------
// the suite every world size runs (NCCL_CPU_BUFFSIZE=64 KiB: buffers of a few hundred KB take several steps)

static ncclComm_t init_or_report(const ncclUniqueId& id, int rank, int world) {
    ncclComm_t comm = nullptr;
    ncclResult_t r = ncclCommInitRank(&comm, world, id, rank);
    report(fmt("world=%d ncclCommInitRank", world), r == ncclSuccess, r == ncclSuccess ? "" :
           "returned " + result_str(r) + ": " + ncclGetLastError(nullptr));
    if (r != ncclSuccess) _exit(2);
    return comm;
}

static std::string p2p_expect(const std::vector<float>& got, int from, int to, uint64_t salt) {
    std::vector<float> want(got.size());
    fill(ncclFloat, want.data(), want.size(), from * 8 + to, salt);
    return diff(got.data(), want.data(), got.size() * 4, 4);
}

static void suite(const ncclUniqueId& id, int rank, int world) {
    ncclComm_t comm = init_or_report(id, rank, world);
    int n = -1, me = -1, v = 0;
    ncclCommCount(comm, &n);
    ncclCommUserRank(comm, &me);
    ncclGetVersion(&v);
    report(fmt("world=%d ncclCommCount, ncclCommUserRank, ncclGetVersion", world), n == world && me == rank && v > 0,
           fmt("count %d rank %d version %d", n, me, v));
    if (world > 1) {
        std::string path = segment_path(id);
        report(fmt("world=%d the segment's name is removed once all ranks joined", world),
               access(path.c_str(), F_OK) != 0, path);
    }

    // every type and operator
    for (int t = ncclInt8; t <= ncclBfloat16; t++)
        for (int op = ncclSum; op <= ncclAvg; op++)
            check_allreduce(comm, (ncclDataType_t)t, (ncclRedOp_t)op, 70001, false);
    // what llmc/cuda_dist.h does, and the other variants
    check_allreduce(comm, ncclFloat, ncclSum, 70001, true);
    check_allreduce(comm, ncclBfloat16, ncclAvg, 100003, true);
    check_allreduce(comm, ncclDouble, ncclSum, 2, true);
    check_allreduce(comm, ncclDouble, ncclMax, 2, true);
    check_allreduce(comm, ncclDouble, ncclAvg, 5, true);
    check_allreduce(comm, ncclFloat, ncclMax, 3, true);
    check_allreduce(comm, ncclBfloat16, ncclSum, 1, false);
    for (int ip = 0; ip < 2; ip++) {
        check_reduce_scatter(comm, ncclBfloat16, ncclAvg, 40000, ip);
        check_reduce_scatter(comm, ncclFloat, ncclSum, 30011, ip);
        check_reduce_scatter(comm, ncclDouble, ncclMax, 7, ip);
        check_reduce_scatter(comm, ncclInt32, ncclMin, 12345, ip);
        check_all_gather(comm, ncclBfloat16, 40000, ip);
        check_all_gather(comm, ncclFloat, 30011, ip);
        check_all_gather(comm, ncclDouble, 3, ip);
        check_all_gather(comm, ncclFloat8e4m3, 100, ip);
        check_broadcast(comm, ncclFloat, 50000, world - 1, ip);
        check_broadcast(comm, ncclInt8, 70000, 0, ip);
        check_reduce(comm, ncclFloat, ncclSum, 50000, 1 % world, ip);
        check_reduce(comm, ncclBfloat16, ncclAvg, 40000, 0, ip);
    }

    // cuda_dist_all_equal: max over (x, -x) gives the largest and the smallest x
    {
        double vals[2] = {(double)(10 + rank), -(double)(10 + rank)};
        ncclResult_t r = ncclAllReduce(vals, vals, 2, ncclDouble, ncclMax, comm, 0);
        report(fmt("world=%d allreduce double max of (x, -x): the largest and smallest x", world),
               r == ncclSuccess && vals[0] == 10 + world - 1 && -vals[1] == 10, fmt("%g %g", vals[0], -vals[1]), true,
               fnv(vals, sizeof(vals)));
    }

    // cuda_dist_allreduce_mean_x: several in-place bf16 averages in one group
    {
        uint64_t salt = (uint64_t)g_next;
        size_t counts[3] = {1000, 70001, 5};
        std::vector<Bytes> bufs(3);
        ncclResult_t r = ncclGroupStart();
        for (int i = 0; i < 3; i++) {
            bufs[i].resize(counts[i] * 2);
            fill(ncclBfloat16, bufs[i].data(), counts[i], rank, salt * 4 + i);
            if (r == ncclSuccess)
                r = ncclAllReduce(bufs[i].data(), bufs[i].data(), counts[i], ncclBfloat16, ncclAvg, comm, 0);
        }
        ncclResult_t e = ncclGroupEnd();
        std::string d = r != ncclSuccess || e != ncclSuccess ? "returned " + result_str(r != ncclSuccess ? r : e) : "";
        uint64_t h = 0;
        for (int i = 0; i < 3 && d.empty(); i++) {
            Bytes want(counts[i] * 2);
            ref(ncclBfloat16, want.data(), counts[i], world, salt * 4 + i, 0, ncclAvg);
            d = diff(bufs[i].data(), want.data(), want.size(), 2);
            h ^= fnv(bufs[i].data(), bufs[i].size());
        }
        report(fmt("world=%d grouped in-place bf16 avg of 3 buffers", world), d.empty(), d, true, h);
    }

    // cuda_dist_gather_to_host: rank 0 receives from each rank in turn, outside groups (several mailbox chunks)
    {
        uint64_t salt = (uint64_t)g_next;
        const size_t shard = 80000;
        std::vector<float> buf(shard);
        std::string d;
        if (rank == 0) {
            for (int q = 1; q < world && d.empty(); q++) {
                ncclResult_t r = ncclRecv(buf.data(), shard, ncclFloat, q, comm, 0);
                d = r != ncclSuccess ? "returned " + result_str(r) : p2p_expect(buf, q, 0, salt);
            }
        } else {
            fill(ncclFloat, buf.data(), shard, rank * 8, salt);
            ncclResult_t r = ncclSend(buf.data(), shard, ncclFloat, 0, comm, 0);
            if (r != ncclSuccess) d = "returned " + result_str(r);
        }
        report(fmt("world=%d send/recv outside groups: rank 0 receives from each rank in turn", world), d.empty(), d);
    }

    // a ring exchange in one group (each rank would wait for its successor's receive one at a time)
    {
        uint64_t salt = (uint64_t)g_next;
        const size_t count = 100000;
        int next = (rank + 1) % world, prev = (rank + world - 1) % world;
        std::vector<float> out(count), in(count);
        fill(ncclFloat, out.data(), count, rank * 8 + next, salt);
        ncclGroupStart();
        ncclResult_t r1 = ncclSend(out.data(), count, ncclFloat, next, comm, 0);
        ncclResult_t r2 = ncclRecv(in.data(), count, ncclFloat, prev, comm, 0);
        ncclResult_t r3 = ncclGroupEnd();
        ncclResult_t r = r1 != ncclSuccess ? r1 : r2 != ncclSuccess ? r2 : r3;
        std::string d = r != ncclSuccess ? "returned " + result_str(r) : p2p_expect(in, prev, rank, salt);
        report(fmt("world=%d grouped ring send/recv, %zu floats", world, count), d.empty(), d);
    }

    // every pair, both directions, itself included, sizes differing per pair, in one group
    {
        uint64_t salt = (uint64_t)g_next;
        std::vector<std::vector<float>> out(world), in(world);
        ncclResult_t r = ncclGroupStart();
        for (int q = 0; q < world; q++) {
            out[q].resize(20000 + 7 * rank + 3 * q);
            in[q].resize(20000 + 7 * q + 3 * rank);
            fill(ncclFloat, out[q].data(), out[q].size(), rank * 8 + q, salt);
            if (r == ncclSuccess) r = ncclSend(out[q].data(), out[q].size(), ncclFloat, q, comm, 0);
            if (r == ncclSuccess) r = ncclRecv(in[q].data(), in[q].size(), ncclFloat, q, comm, 0);
        }
        ncclResult_t e = ncclGroupEnd();
        std::string d = r != ncclSuccess || e != ncclSuccess ? "returned " + result_str(r != ncclSuccess ? r : e) : "";
        for (int q = 0; q < world && d.empty(); q++) d = p2p_expect(in[q], q, rank, salt);
        report(fmt("world=%d grouped send/recv with every rank, both directions", world), d.empty(), d);
    }

    // a collective and a ring exchange in one group
    {
        uint64_t salt = (uint64_t)g_next;
        const size_t count = 30000;
        int next = (rank + 1) % world, prev = (rank + world - 1) % world;
        Bytes buf(count * 4), want(count * 4);
        fill(ncclFloat, buf.data(), count, rank, salt * 2);
        std::vector<float> out(count), in(count);
        fill(ncclFloat, out.data(), count, rank * 8 + next, salt);
        ncclGroupStart();
        ncclResult_t r1 = ncclSend(out.data(), count, ncclFloat, next, comm, 0);
        ncclResult_t r2 = ncclAllReduce(buf.data(), buf.data(), count, ncclFloat, ncclSum, comm, 0);
        ncclResult_t r3 = ncclRecv(in.data(), count, ncclFloat, prev, comm, 0);
        ncclResult_t r4 = ncclGroupEnd();
        ncclResult_t r = r1 != ncclSuccess ? r1 : r2 != ncclSuccess ? r2 : r3 != ncclSuccess ? r3 : r4;
        ref(ncclFloat, want.data(), count, world, salt * 2, 0, ncclSum);
        std::string d = r != ncclSuccess ? "returned " + result_str(r) : diff(buf.data(), want.data(), want.size(), 4);
        if (d.empty()) d = p2p_expect(in, prev, rank, salt);
        report(fmt("world=%d group of an allreduce and a ring send/recv", world), d.empty(), d);
    }

    // calls the API refuses (checked before anything is sent, so no rank waits for another)
    {
        float a[8] = {0}, b[16] = {0};
        struct Case {
            const char* what;
            ncclResult_t want, got;
        };
        std::vector<Case> cases;
        const ncclResult_t inval = ncclInvalidArgument;
        cases.push_back({"datatype 12", inval, ncclAllReduce(a, b, 1, (ncclDataType_t)12, ncclSum, comm, 0)});
        cases.push_back({"operator 5", inval, ncclAllReduce(a, b, 1, ncclFloat, (ncclRedOp_t)5, comm, 0)});
        cases.push_back({"fp8 reduction", inval, ncclAllReduce(a, b, 1, ncclFloat8e5m2, ncclSum, comm, 0)});
        cases.push_back({"NULL comm", inval, ncclAllReduce(a, b, 1, ncclFloat, ncclSum, nullptr, 0)});
        cases.push_back({"NULL recvbuff", inval, ncclAllReduce(a, nullptr, 1, ncclFloat, ncclSum, comm, 0)});
        cases.push_back({"overlapping buffers", inval, ncclAllReduce(b, b + 1, 4, ncclFloat, ncclSum, comm, 0)});
        cases.push_back({"all-gather overlap", inval, ncclAllGather(b + 1, b, 2, ncclFloat, comm, 0)});
        cases.push_back({"root out of range", ncclInvalidArgument, ncclBroadcast(a, a, 1, ncclFloat, world, comm, 0)});
        cases.push_back({"peer out of range", ncclInvalidArgument, ncclSend(a, 1, ncclFloat, -1, comm, 0)});
        cases.push_back({"send to self outside a group", ncclInvalidUsage, ncclSend(a, 1, ncclFloat, rank, comm, 0)});
        cases.push_back({"ncclGroupEnd without ncclGroupStart", ncclInvalidUsage, ncclGroupEnd()});
        ncclComm_t c2 = nullptr;
        ncclGroupStart();
        ncclResult_t in_group = ncclCommInitRank(&c2, world, id, rank);
        cases.push_back({"ncclCommInitRank in a group", ncclInvalidUsage, in_group});
        cases.push_back({"...and its ncclGroupEnd", ncclInvalidUsage, ncclGroupEnd()});
        ncclUniqueId zero;
        memset(&zero, 0, sizeof(zero));
        cases.push_back({"a zero ncclUniqueId", ncclInvalidArgument, ncclCommInitRank(&c2, world, zero, rank)});
        // a group with a refused call fails as a whole on every rank, and leaves the communicator usable
        ncclGroupStart();
        ncclResult_t g1 = ncclAllReduce(a, b, 8, ncclFloat, ncclSum, comm, 0);
        ncclResult_t g2 = ncclAllReduce(a, b, 8, (ncclDataType_t)99, ncclSum, comm, 0);
        cases.push_back({"a valid call in a group", ncclSuccess, g1});
        cases.push_back({"a refused call in a group", ncclInvalidArgument, g2});
        cases.push_back({"...and its ncclGroupEnd", ncclInvalidArgument, ncclGroupEnd()});
        cases.push_back({"count 0", ncclSuccess, ncclAllReduce(nullptr, nullptr, 0, ncclFloat, ncclSum, comm, 0)});
        std::string d;
        for (const Case& c : cases)
            if (c.got != c.want && d.empty())
                d = fmt("%s: returned %s, expected %s", c.what, result_str(c.got).c_str(), result_str(c.want).c_str());
        const char* last = ncclGetLastError(nullptr);
        if (d.empty() && strstr(last, "datatype 99") == nullptr) d = fmt("ncclGetLastError says '%s'", last);
        report(fmt("world=%d refused calls return the documented error and a message", world), d.empty(), d);
        check_allreduce(comm, ncclFloat, ncclSum, 1000, true);  // still usable
    }
    ncclResult_t async = ncclInternalError;
    ncclResult_t r = ncclCommGetAsyncError(comm, &async);
    report(fmt("world=%d ncclCommGetAsyncError: no error", world), r == ncclSuccess && async == ncclSuccess,
           result_str(async));
    r = ncclCommDestroy(comm);
    report(fmt("world=%d ncclCommDestroy", world), r == ncclSuccess, result_str(r));
}

// the default buffer (2 MiB per rank): large buffers in the layout of the trainer's ZeRO-1 step
static void suite_large(const ncclUniqueId& id, int rank, int world) {
    ncclComm_t comm = init_or_report(id, rank, world);
    double t0 = now_s();
    check_allreduce(comm, ncclFloat, ncclSum, 3000017, true);
    check_reduce_scatter(comm, ncclBfloat16, ncclAvg, 1500007, true);
    check_all_gather(comm, ncclBfloat16, 1500007, true);
    check_allreduce(comm, ncclBfloat16, ncclAvg, 3000017, true);
    if (rank == 0) printf("     (world=%d: the 4 large collectives took %.2f s)\n", world, now_s() - t0);
    ncclCommDestroy(comm);
}

// ---------------------------------------------------------------------------------------------
// failures

// a collective that must fail soon: its result, the time it took, and the message
static void expect_failure(ncclComm_t comm, const std::string& what, const char* must_say) {
    float x[4] = {1, 2, 3, 4};
    double t0 = now_s();
    ncclResult_t r = ncclAllReduce(x, x, 4, ncclFloat, ncclSum, comm, 0);
    double dt = now_s() - t0;
    std::string msg = ncclGetLastError(nullptr);
    std::string d = fmt("returned %s after %.2f s: %s", result_str(r).c_str(), dt, msg.c_str());
    bool ok = r == ncclRemoteError && dt < 3.0 && msg.find(must_say) != std::string::npos;
    report(fmt("world=%d %s: the next allreduce fails within 3 s", g_world, what.c_str()), ok, ok ? "" : d);
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(comm, &async);
    r = ncclAllReduce(x, x, 4, ncclFloat, ncclSum, comm, 0);
    report(fmt("world=%d %s: ncclCommGetAsyncError reports it, later calls fail at once", g_world, what.c_str()),
           async == ncclRemoteError && r == ncclRemoteError, result_str(async) + " " + result_str(r));
    usleep(500000);  // the other waiting ranks see the same cause before this one leaves
    ncclCommDestroy(comm);
}

static void ok_allreduce(ncclComm_t comm) {
    float x[4] = {1, 2, 3, 4};
    ncclResult_t r = ncclAllReduce(x, x, 4, ncclFloat, ncclSum, comm, 0);
    report(fmt("world=%d an allreduce before the failure", g_world), r == ncclSuccess, result_str(r));
}

// the last rank exits (status 1) while the others wait in an allreduce
static void fail_exit(const ncclUniqueId& id, int rank, int world) {
    ncclComm_t comm = init_or_report(id, rank, world);
    ok_allreduce(comm);
    if (rank == world - 1) {
        usleep(200000);
        exit(1);
    }
    expect_failure(comm, "a rank exits", "exited");
}

// the last rank is killed (SIGKILL)
static void fail_kill(const ncclUniqueId& id, int rank, int world) {
    ncclComm_t comm = init_or_report(id, rank, world);
    ok_allreduce(comm);
    if (rank == world - 1) {
        usleep(200000);
        raise(SIGKILL);
    }
    expect_failure(comm, "a rank is killed", "exited");
}

// the last rank calls ncclCommAbort and stays alive; rank 0 waits in an allreduce, the others poll
// ncclCommGetAsyncError as the trainer's watchdog does
static void fail_abort(const ncclUniqueId& id, int rank, int world) {
    ncclComm_t comm = init_or_report(id, rank, world);
    ok_allreduce(comm);
    if (rank == world - 1) {
        usleep(200000);
        ncclResult_t r = ncclCommAbort(comm);
        report(fmt("world=%d ncclCommAbort", world), r == ncclSuccess, result_str(r));
        usleep(3000000);
        return;
    }
    if (rank == 0) {
        expect_failure(comm, "a rank aborts", "ncclCommAbort");
        return;
    }
    double t0 = now_s();
    ncclResult_t async = ncclSuccess;
    while (async == ncclSuccess && now_s() - t0 < 5.0) {
        usleep(20000);
        ncclCommGetAsyncError(comm, &async);
    }
    std::string msg = ncclGetLastError(comm);
    report(fmt("world=%d a rank aborts: a rank outside any call sees it in ncclCommGetAsyncError", world),
           async == ncclRemoteError && msg.find("ncclCommAbort") != std::string::npos, result_str(async) + " " + msg);
    ncclCommDestroy(comm);
}

// a rank that destroyed its communicator: fine while no one needs it (it sent to rank 0 before leaving), an error
// for a collective that needs it
static void fail_destroyed(const ncclUniqueId& id, int rank, int world) {
    ncclComm_t comm = init_or_report(id, rank, world);
    float x[1000];
    for (int i = 0; i < 1000; i++) x[i] = (float)(rank * 1000 + i);
    std::string d;
    if (rank == 0) {
        for (int q = 1; q < world && d.empty(); q++) {
            if (q == 1) usleep(300000);  // the last rank has sent and left by now
            ncclResult_t r = ncclRecv(x, 1000, ncclFloat, q, comm, 0);
            if (r != ncclSuccess) d = "returned " + result_str(r) + ": " + ncclGetLastError(nullptr);
            for (int i = 0; i < 1000 && d.empty(); i++)
                if (x[i] != (float)(q * 1000 + i)) d = fmt("element %d from rank %d is %g", i, q, x[i]);
        }
    } else {
        ncclResult_t r = ncclSend(x, 1000, ncclFloat, 0, comm, 0);
        if (r != ncclSuccess) d = "returned " + result_str(r);
    }
    report(fmt("world=%d a peer that sent and destroyed its communicator is not an error", world), d.empty(), d);
    if (rank == world - 1) {
        ncclCommDestroy(comm);
        return;
    }
    expect_failure(comm, "a peer destroyed its communicator", "destroyed");
}

// rank 1 sends more than rank 0 receives: rank 0 refuses the message, rank 1's next call fails
static void fail_size_mismatch(const ncclUniqueId& id, int rank, int world) {
    ncclComm_t comm = init_or_report(id, rank, world);
    float x[200] = {0};
    ncclResult_t r = rank == 0 ? ncclRecv(x, 100, ncclFloat, 1, comm, 0) : ncclSend(x, 200, ncclFloat, 0, comm, 0);
    if (rank == 0) {
        report(fmt("world=%d mismatched send/recv sizes: the receiver refuses", world), r == ncclInvalidUsage,
               result_str(r) + " " + ncclGetLastError(nullptr));
        ncclCommAbort(comm);
    } else {
        report(fmt("world=%d mismatched send/recv sizes: the sender's send", world), r == ncclSuccess, result_str(r));
        expect_failure(comm, "mismatched send/recv sizes", "sends 800 bytes");
    }
}

// only rank 0 calls ncclCommInitRank (NCCL_CPU_TIMEOUT=1)
static void fail_timeout(const ncclUniqueId& id, int rank, int world) {
    if (rank != 0) return;
    ncclComm_t comm = nullptr;
    double t0 = now_s();
    ncclResult_t r = ncclCommInitRank(&comm, world, id, rank);
    double dt = now_s() - t0;
    std::string msg = ncclGetLastError(nullptr);
    report(fmt("world=%d ncclCommInitRank without the other ranks times out (NCCL_CPU_TIMEOUT=1)", world),
           r == ncclRemoteError && comm == nullptr && dt > 0.9 && dt < 3.0 &&
               msg.find("NCCL_CPU_TIMEOUT") != std::string::npos,
           fmt("returned %s after %.2f s: %s", result_str(r).c_str(), dt, msg.c_str()));
}

// two ranks as threads of this process; then one thread drives both communicators in one group
static void threads(const ncclUniqueId& id, int, int) {
    ncclComm_t comms[2] = {nullptr, nullptr};
    ncclResult_t rs[2] = {ncclInternalError, ncclInternalError};
    float x[2][1000];
    std::vector<std::thread> ts;
    for (int r = 0; r < 2; r++)
        ts.emplace_back([&, r] {
            rs[r] = ncclCommInitRank(&comms[r], 2, id, r);
            for (int i = 0; i < 1000; i++) x[r][i] = (float)(r + i);
            if (rs[r] == ncclSuccess) rs[r] = ncclAllReduce(x[r], x[r], 1000, ncclFloat, ncclSum, comms[r], 0);
        });
    for (std::thread& t : ts) t.join();
    std::string d = rs[0] != ncclSuccess || rs[1] != ncclSuccess
                        ? "returned " + result_str(rs[0]) + " and " + result_str(rs[1]) : "";
    for (int i = 0; i < 1000 && d.empty(); i++)
        if (x[0][i] != (float)(1 + 2 * i) || x[1][i] != x[0][i]) d = fmt("element %d", i);
    report("threads=2 ncclCommInitRank and an allreduce on two threads", d.empty(), d);
    ncclGroupStart();
    for (int r = 0; r < 2; r++) ncclAllReduce(x[r], x[r], 1000, ncclFloat, ncclMax, comms[r], 0);
    ncclResult_t r = ncclGroupEnd();
    d = r != ncclSuccess ? "returned " + result_str(r) : "";
    for (int i = 0; i < 1000 && d.empty(); i++)
        if (x[0][i] != (float)(1 + 2 * i) || x[1][i] != x[0][i]) d = fmt("element %d", i);
    report("threads=2 one thread drives both ranks in one group", d.empty(), d);
    ncclCommDestroy(comms[0]);
    ncclCommDestroy(comms[1]);
}

// ---------------------------------------------------------------------------------------------
// the runs

typedef void (*RankFn)(const ncclUniqueId& id, int rank, int world);

// fn on `world` forked ranks (procs = 1 runs it once, for a rank-in-threads test); status[r]: expected exit status,
// or -signal
static void run(const char* what, int world, RankFn fn, const std::vector<int>& status = {}, int procs = -1) {
    if (procs < 0) procs = world;
    memset(g_res, 0, sizeof(*g_res));
    ncclUniqueId id;
    if (ncclGetUniqueId(&id) != ncclSuccess) {
        print_check(false, fmt("ncclGetUniqueId: %s", ncclGetLastError(nullptr)));
        return;
    }
    g_segments.push_back(segment_path(id));
    fflush(stdout);
    std::vector<pid_t> pids;
    for (int r = 0; r < procs; r++) {
        pid_t pid = fork();
        if (pid == 0) {
            g_rank = r;
            g_world = world;
            g_next = 0;
            alarm(60);  // a hang ends with SIGALRM
            fn(id, r, world);
            fflush(stdout);
            _exit(0);
        }
        pids.push_back(pid);
    }
    std::string bad;
    for (int r = 0; r < procs; r++) {
        int st = 0;
        waitpid(pids[r], &st, 0);
        int got = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
        int want = r < (int)status.size() ? status[r] : 0;
        if (got != want) bad += fmt(" rank %d ended with %s %d (expected %d);", r, got < 0 ? "signal" : "status",
                                    got < 0 ? -got : got, want);
    }
    for (int i = 0; i < g_res->count; i++) {
        std::string d;
        bool any = false, ok = true;
        for (int r = 0; r < kMaxRanks; r++) {
            if (!g_res->reported[i][r]) continue;
            any = true;
            if (!g_res->ok[i][r]) {
                ok = false;
                if (d.empty()) d = fmt(" (rank %d: %s)", r, g_res->detail[i][r]);
            }
            if (g_res->same[i] && g_res->reported[i][0] && g_res->hash[i][r] != g_res->hash[i][0] && ok) {
                ok = false;
                d = fmt(" (rank %d's result differs from rank 0's)", r);
            }
        }
        print_check(any && ok, std::string(g_res->name[i]) + d);
    }
    print_check(bad.empty(), fmt("%s: every rank ended as expected%s", what, bad.c_str()));
}

int main() {
    double t0 = now_s();
    setvbuf(stdout, nullptr, _IOLBF, 0);
    g_res = (Results*)mmap(nullptr, sizeof(Results), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_res == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    unsetenv("NCCL_CPU_TIMEOUT");
    setenv("NCCL_CPU_BUFFSIZE", "65536", 1);
    for (int world = 1; world <= 3; world++) run(fmt("world=%d suite", world).c_str(), world, suite);
    unsetenv("NCCL_CPU_BUFFSIZE");
    run("world=2 large buffers", 2, suite_large);
    run("world=3 large buffers", 3, suite_large);
    run("world=2 a rank exits", 2, fail_exit, {0, 1});
    run("world=3 a rank exits", 3, fail_exit, {0, 0, 1});
    run("world=2 a rank is killed", 2, fail_kill, {0, -SIGKILL});
    run("world=2 a rank aborts", 2, fail_abort);
    run("world=3 a rank aborts", 3, fail_abort);
    run("world=3 a peer destroyed its communicator", 3, fail_destroyed);
    run("world=2 mismatched send/recv sizes", 2, fail_size_mismatch);
    run("threads=2", 2, threads, {}, 1);
    setenv("NCCL_CPU_TIMEOUT", "1", 1);
    run("world=2 rendezvous timeout", 2, fail_timeout);
    unsetenv("NCCL_CPU_TIMEOUT");
    std::string left;
    for (const std::string& path : g_segments)
        if (access(path.c_str(), F_OK) == 0) left += " " + path;
    print_check(left.empty(), fmt("no segment of these runs is left in /dev/shm%s", left.c_str()));
    printf("%d passed, %d failed (%.1f s)\n", g_passed, g_failed, now_s() - t0);
    return g_failed == 0 ? 0 : 1;
}
