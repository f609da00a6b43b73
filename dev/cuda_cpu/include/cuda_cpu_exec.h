// CPU backend: kernel execution. A launch runs its grid's blocks in parallel on the OpenMP threads; inside a
// block every CUDA thread is a cooperative fiber (Boost.Context fcontext) that runs until it reaches a barrier, a
// warp collective or its end, and a per-block scheduler resumes the fibers in the order CUDA_CPU_SCHEDULE picks:
//   forward (default): thread 0, 1, 2, ...   reverse: the last thread first (and the blocks in reverse order)
//   shuffle[:seed]: a new random order in every scheduling round (and the blocks in reverse order)
// A correct kernel gives the same bits under every schedule; a missing barrier or an order-dependent race does not.
// Checked as the CUDA programming guide defines the operations, where a GPU would hang or silently misbehave:
//   __syncthreads must be reached by every thread of the block, at the same call site (a thread that exited, or
//   threads waiting at another barrier or warp collective, are reported with the kernel's name instead of a hang);
//   a warp collective (__shfl*_sync, votes, __syncwarp, __reduce*_sync) must be reached by every lane of its mask,
//   with the same mask and operation, and a lane may only read lanes of the mask.
// A violation prints one line `cuda_cpu: kernel NAME block (x,y,z) thread (x,y,z): ...`, stops the launch and makes
// the launch fail with a sticky error, as a faulting kernel does on a GPU.
#ifndef CUDA_CPU_EXEC_H
#define CUDA_CPU_EXEC_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <atomic>
#include <tuple>
#include <type_traits>
#include <utility>
#include <boost/context/detail/fcontext.hpp>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "cuda_cpu_defs.h"

#if defined(__SANITIZE_ADDRESS__)
#define CUDA_CPU_ASAN 1
extern "C" {
void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, size_t size);
void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old, size_t* size_old);
void __asan_unpoison_memory_region(void const volatile* addr, size_t size);
}
#else
#define CUDA_CPU_ASAN 0
#endif

namespace cuda_cpu {

namespace ctx = boost::context::detail;

enum { THREAD_READY, THREAD_WAITING, THREAD_DONE };
enum WarpOpKind { WARP_SYNC, WARP_SHFL, WARP_SHFL_UP, WARP_SHFL_DOWN, WARP_SHFL_XOR, WARP_ALL, WARP_ANY, WARP_BALLOT,
                  WARP_REDUCE_ADD, WARP_REDUCE_MIN, WARP_REDUCE_MAX, WARP_REDUCE_AND, WARP_REDUCE_OR,
                  WARP_REDUCE_XOR, WARP_WMMA_LOAD, WARP_WMMA_STORE, WARP_WMMA_MMA, WARP_OP_COUNT };
static const char* const warp_op_names[WARP_OP_COUNT] = {
    "__syncwarp", "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync", "__all_sync",
    "__any_sync", "__ballot_sync", "__reduce_add_sync", "__reduce_min_sync", "__reduce_max_sync",
    "__reduce_and_sync", "__reduce_or_sync", "__reduce_xor_sync", "wmma::load_matrix_sync",
    "wmma::store_matrix_sync", "wmma::mma_sync"};
enum { SCHEDULE_FORWARD, SCHEDULE_REVERSE, SCHEDULE_SHUFFLE };

struct Thread {
    uint3 idx;
    int lin;               // linear index in the block
    int state;
    ctx::fcontext_t ctx;   // saved context while suspended
    char* stack;           // lowest address of the usable stack
    void* asan_fake;
    uint64_t val;          // this lane's value in a pending warp collective
    int param;             // its source lane, delta or lane mask
    uint64_t result;       // the value a warp collective returned to this lane
    int bar_value;         // __syncthreads_count/and/or contribution
};

struct Block;
struct WarpOp;
// a collective whose lanes' values are pointers to per-lane arguments, resolved once for the warp (mma.h)
typedef void (*WarpResolveFn)(Block* b, const WarpOp* op, int w);

// one pending warp collective; a warp may have several at once with disjoint masks
struct WarpOp {
    int kind;
    unsigned mask, arrived;  // arrived == 0: the slot is free
    const char* file;
    int line;
    int width;
    WarpResolveFn resolve;   // nullptr: the built-in shuffles, votes and reductions
};

// per OS thread: the fibers' stacks and the block being run
struct Executor {
    Block* block = nullptr;
    ctx::fcontext_t sched_ctx = nullptr;
    const void* sched_bottom = nullptr;
    size_t sched_size = 0;
    void* sched_fake = nullptr;
    char* stacks = nullptr;   // (max_threads, stack_bytes) with a guard page below each stack
    int nstacks = 0;
    int abandoned = 0;        // a failed block left fibers mid-call (ASan: their frames stay poisoned)
};

struct Block {
    const char* kernel;
    uint3 bid;
    dim3 bdim, gdim;
    int nthreads, live, nwarps;
    unsigned exited[32];   // per warp: the lanes that have returned
    Thread* threads;
    WarpOp (*warps)[32];   // (warps, 32) pending collectives per warp
    int bar_count;         // threads waiting at the pending __syncthreads
    const char* bar_file;
    int bar_line;
    int bar_accum;         // __syncthreads_count sum / and / or
    int bar_kind;
    unsigned char* dyn_smem;
    void (*body)(void*);
    void* body_arg;
    int failed;
    char message[512];
    uint64_t rng;          // shuffle schedule
};

inline thread_local Executor tl_exec;
inline thread_local uint64_t block_serial = 0;  // blocks started on this OS thread
inline thread_local Thread* cur_thread = nullptr;
inline thread_local Block* cur_block = nullptr;

inline size_t stack_bytes() {
    static size_t bytes = [] {
        const char* s = getenv("CUDA_CPU_STACK_KB");
        size_t kb = s != nullptr ? (size_t)atol(s) : (CUDA_CPU_ASAN ? 1024 : 256);
        if (kb < 16) kb = 16;
        return kb << 10;
    }();
    return bytes;
}

inline int schedule_current = -1;
inline uint64_t schedule_seed = 0;

// parses a schedule name (forward, reverse, shuffle[:seed]); 0 on success
inline int set_schedule(const char* e) {
    if (e == nullptr || e[0] == '\0' || strcmp(e, "forward") == 0) schedule_current = SCHEDULE_FORWARD;
    else if (strcmp(e, "reverse") == 0) schedule_current = SCHEDULE_REVERSE;
    else if (strncmp(e, "shuffle", 7) == 0 && (e[7] == '\0' || e[7] == ':')) {
        schedule_current = SCHEDULE_SHUFFLE;
        schedule_seed = e[7] == ':' ? strtoull(e + 8, nullptr, 10) : 1;
    } else {
        return 1;
    }
    return 0;
}

inline int schedule_mode(uint64_t* seed) {
    if (schedule_current < 0) {
        const char* e = getenv("CUDA_CPU_SCHEDULE");
        if (set_schedule(e) != 0) {
            fprintf(stderr, "cuda_cpu: CUDA_CPU_SCHEDULE='%s' must be forward, reverse or shuffle[:seed]\n", e);
            exit(1);
        }
    }
    *seed = schedule_seed;
    return schedule_current;
}

// stop the block with a message naming the kernel, the block and the thread
[[gnu::format(printf, 2, 3)]] inline void block_fail(Block* b, const char* fmt, ...) {
    if (b->failed) return;
    b->failed = 1;
    int n = snprintf(b->message, sizeof(b->message), "cuda_cpu: kernel %s block (%u,%u,%u)", b->kernel, b->bid.x,
                     b->bid.y, b->bid.z);
    if (cur_thread != nullptr && n > 0 && (size_t)n < sizeof(b->message))
        n += snprintf(b->message + n, sizeof(b->message) - n, " thread (%u,%u,%u)", cur_thread->idx.x,
                      cur_thread->idx.y, cur_thread->idx.z);
    if (n > 0 && (size_t)n < sizeof(b->message)) {
        n += snprintf(b->message + n, sizeof(b->message) - n, ": ");
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->message + n, sizeof(b->message) - n, fmt, ap);
        va_end(ap);
    }
}

// ---------------------------------------------------------------------------------------------
// fiber switches (ASan is told about each one)

// fiber -> scheduler; returns when the scheduler resumes this fiber
inline void fiber_yield() {
    Executor* e = &tl_exec;
    Thread* t = cur_thread;
#if CUDA_CPU_ASAN
    __sanitizer_start_switch_fiber(&t->asan_fake, e->sched_bottom, e->sched_size);
#endif
    ctx::transfer_t tr = ctx::jump_fcontext(e->sched_ctx, nullptr);
#if CUDA_CPU_ASAN
    __sanitizer_finish_switch_fiber(t->asan_fake, &e->sched_bottom, &e->sched_size);
#endif
    e->sched_ctx = tr.fctx;
    cur_thread = t;
}

inline void fiber_entry(ctx::transfer_t tr) {
    Executor* e = &tl_exec;
    e->sched_ctx = tr.fctx;
#if CUDA_CPU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &e->sched_bottom, &e->sched_size);
#endif
    Block* b = e->block;
    b->body(b->body_arg);
    Thread* t = cur_thread;
    t->state = THREAD_DONE;
    b->exited[t->lin / 32] |= 1u << (t->lin % 32);
    b->live--;
    if (!b->failed && b->bar_count > 0)
        block_fail(b, "exited while %d thread(s) wait at __syncthreads (%s:%d)", b->bar_count, b->bar_file,
                   b->bar_line);
    int w = t->lin / 32;
    for (int k = 0; k < 32 && !b->failed; k++) {
        WarpOp* op = &b->warps[w][k];
        if (op->arrived != 0 && (op->mask & (1u << (t->lin % 32))))
            block_fail(b, "exited while lanes of its warp wait for it at %s (%s:%d)", warp_op_names[op->kind], op->file,
                       op->line);
    }
#if CUDA_CPU_ASAN
    __sanitizer_start_switch_fiber(nullptr, e->sched_bottom, e->sched_size);
#endif
    ctx::jump_fcontext(e->sched_ctx, nullptr);
    __builtin_unreachable();
}

inline void resume([[maybe_unused]] Executor* e, Thread* t) {
    cur_thread = t;
#if CUDA_CPU_ASAN
    __sanitizer_start_switch_fiber(&e->sched_fake, t->stack, stack_bytes());
#endif
    ctx::transfer_t tr = ctx::jump_fcontext(t->ctx, nullptr);
#if CUDA_CPU_ASAN
    __sanitizer_finish_switch_fiber(e->sched_fake, nullptr, nullptr);
#endif
    t->ctx = tr.fctx;
    cur_thread = nullptr;
}

inline void reserve_stacks(Executor* e, int n) {
    if (n <= e->nstacks) return;
    size_t page = 4096, per = stack_bytes() + page;
    if (e->stacks != nullptr) munmap(e->stacks, (size_t)e->nstacks * per);
    void* p = mmap(nullptr, (size_t)n * per, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        fprintf(stderr, "cuda_cpu: cannot map %d fiber stacks of %zu KiB\n", n, stack_bytes() >> 10);
        exit(1);
    }
    e->stacks = (char*)p;
    e->nstacks = n;
#if CUDA_CPU_ASAN
    __asan_unpoison_memory_region(p, (size_t)n * per);  // the address range may have held poisoned frames before
#endif
    for (int i = 0; i < n; i++) mprotect(e->stacks + (size_t)i * per, page, PROT_NONE);  // overflow faults
}

inline uint64_t rng_next(uint64_t* s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// runs one block to completion (or to its first error); b is filled in except threads
inline void run_block(Block* b, Thread* threads, int* order, WarpOp (*warps)[32]) {
    Executor* e = &tl_exec;
    reserve_stacks(e, b->nthreads);
    block_serial++;
#if CUDA_CPU_ASAN
    if (e->abandoned) __asan_unpoison_memory_region(e->stacks, (size_t)e->nstacks * (stack_bytes() + 4096));
#endif
    e->block = b;
    cur_block = b;
    size_t per = stack_bytes() + 4096;
    b->threads = threads;
    b->warps = warps;
    b->live = b->nthreads;
    b->nwarps = (b->nthreads + 31) / 32;
    b->bar_count = 0;
    for (int w = 0; w < b->nwarps; w++) {
        b->exited[w] = 0;
        for (int k = 0; k < 32; k++) b->warps[w][k].arrived = 0;
    }
    int n = 0;
    for (unsigned z = 0; z < b->bdim.z; z++)
        for (unsigned y = 0; y < b->bdim.y; y++)
            for (unsigned x = 0; x < b->bdim.x; x++, n++) {
                Thread* t = &threads[n];
                t->idx = uint3{x, y, z};
                t->lin = n;
                t->state = THREAD_READY;
                t->stack = e->stacks + (size_t)n * per + 4096;
                t->asan_fake = nullptr;
                t->ctx = ctx::make_fcontext(t->stack + stack_bytes(), stack_bytes(), fiber_entry);
            }
    uint64_t seed;
    int mode = schedule_mode(&seed);
    for (int i = 0; i < n; i++) order[i] = mode == SCHEDULE_REVERSE ? n - 1 - i : i;
    while (b->live > 0 && !b->failed) {
        if (mode == SCHEDULE_SHUFFLE)
            for (int i = n - 1; i > 0; i--) {
                int j = (int)(rng_next(&b->rng) % (uint64_t)(i + 1));
                int tmp = order[i];
                order[i] = order[j];
                order[j] = tmp;
            }
        int progress = 0;
        for (int i = 0; i < n && !b->failed; i++) {
            Thread* t = &threads[order[i]];
            if (t->state != THREAD_READY) continue;
            progress = 1;
            resume(e, t);
        }
        if (!progress && !b->failed) {
            // nothing can run: describe what the waiting threads wait for
            int at_bar = b->bar_count, at_warp = 0, done = b->nthreads - b->live;
            const char* wf = "";
            int wl = 0, wk = 0;
            for (int w = 0; w < b->nwarps; w++)
                for (int k = 0; k < 32; k++)
                    if (b->warps[w][k].arrived != 0) {
                        at_warp += __builtin_popcount(b->warps[w][k].arrived);
                        wf = b->warps[w][k].file, wl = b->warps[w][k].line, wk = b->warps[w][k].kind;
                    }
            block_fail(b, "deadlock: %d thread(s) wait at __syncthreads (%s:%d), %d lane(s) at a warp collective "
                       "(%s %s:%d), %d thread(s) exited", at_bar, at_bar ? b->bar_file : "-", at_bar ? b->bar_line : 0,
                       at_warp, at_warp ? warp_op_names[wk] : "-", wf, wl, done);
        }
    }
    e->abandoned = b->failed;
    cur_block = nullptr;
    e->block = nullptr;
}

// ---------------------------------------------------------------------------------------------
// barriers and warp collectives (called from kernel code, on a fiber)

// kind: 0 plain, 1 count, 2 and, 3 or; returns the combined value
inline int block_barrier(const char* file, int line, int kind, int value) {
    Block* b = cur_block;
    Thread* t = cur_thread;
    if (b->failed) fiber_yield();  // a failed block is not resumed
    if (b->live != b->nthreads) {
        block_fail(b, "__syncthreads (%s:%d) after %d thread(s) of the block exited", file, line,
                   b->nthreads - b->live);
        fiber_yield();
    }
    if (b->bar_count == 0) {
        b->bar_file = file;
        b->bar_line = line;
        b->bar_kind = kind;
        b->bar_accum = kind == 2 ? 1 : 0;
    } else if (b->bar_line != line || b->bar_kind != kind ||
               (b->bar_file != file && strcmp(b->bar_file, file) != 0)) {
        block_fail(b, "reached __syncthreads at %s:%d while %d thread(s) wait at the one at %s:%d", file, line,
                   b->bar_count, b->bar_file, b->bar_line);
        fiber_yield();
    }
    if (kind == 1) b->bar_accum += value != 0;
    else if (kind == 2) b->bar_accum &= value != 0;
    else if (kind == 3) b->bar_accum |= value != 0;
    b->bar_count++;
    t->state = THREAD_WAITING;
    if (b->bar_count == b->nthreads) {
        // released in the schedule's order: this thread yields too
        int r = b->bar_accum;
        for (int i = 0; i < b->nthreads; i++) {
            Thread* o = &b->threads[i];
            o->state = THREAD_READY;
            o->bar_value = r;
        }
        b->bar_count = 0;
    }
    fiber_yield();
    return t->bar_value;
}

inline unsigned lanes_of_warp(const Block* b, int w) {
    int n = b->nthreads - w * 32;
    return n >= 32 ? 0xffffffffu : ((1u << n) - 1u);
}

// resolves a complete warp collective into every lane's result
inline void warp_resolve(Block* b, WarpOp* op, int w) {
    unsigned m = op->mask;
    if (op->resolve != nullptr) {
        op->resolve(b, op, w);
        return;
    }
    for (int lane = 0; lane < 32; lane++) {
        if (!(m & (1u << lane))) continue;
        Thread* t = &b->threads[w * 32 + lane];
        int width = op->width, base = lane / width * width, src = lane;
        switch (op->kind) {
        case WARP_SYNC: t->result = 0; continue;
        case WARP_SHFL: src = base + (b->threads[w * 32 + lane].param % width + width) % width; break;
        case WARP_SHFL_UP: src = lane % width >= b->threads[w * 32 + lane].param ? lane - b->threads[w * 32 + lane].param : lane; break;
        case WARP_SHFL_DOWN: src = lane % width + b->threads[w * 32 + lane].param < width ? lane + b->threads[w * 32 + lane].param : lane; break;
        case WARP_SHFL_XOR: src = lane ^ b->threads[w * 32 + lane].param; if (src >= base + width) src = lane; break;
        default: src = -1;
        }
        if (src >= 0) {
            if (src < 0 || src > 31 || !(m & (1u << src))) {
                cur_thread = t;
                block_fail(b, "%s (%s:%d) reads lane %d, which is not in the mask 0x%08x", warp_op_names[op->kind],
                           op->file, op->line, src, m);
                return;
            }
            t->result = b->threads[w * 32 + src].val;
            continue;
        }
        uint64_t acc = 0;
        int first = 1;
        for (int l = 0; l < 32; l++) {
            if (!(m & (1u << l))) continue;
            uint64_t v = b->threads[w * 32 + l].val;
            int is_signed = b->threads[w * 32 + l].param;
            switch (op->kind) {
            case WARP_ALL: acc = first ? (v != 0) : (acc && v != 0); break;
            case WARP_ANY: acc = first ? (v != 0) : (acc || v != 0); break;
            case WARP_BALLOT: acc |= (uint64_t)(v != 0) << l; break;
            case WARP_REDUCE_ADD: acc = (uint32_t)(acc + v); break;
            case WARP_REDUCE_MIN:
                if (is_signed) acc = first || (int32_t)v < (int32_t)acc ? v : acc;
                else acc = first || (uint32_t)v < (uint32_t)acc ? v : acc;
                break;
            case WARP_REDUCE_MAX:
                if (is_signed) acc = first || (int32_t)v > (int32_t)acc ? v : acc;
                else acc = first || (uint32_t)v > (uint32_t)acc ? v : acc;
                break;
            case WARP_REDUCE_AND: acc = first ? v : (acc & v); break;
            case WARP_REDUCE_OR: acc |= v; break;
            case WARP_REDUCE_XOR: acc ^= v; break;
            }
            first = 0;
        }
        t->result = acc;
    }
}

// every lane of `mask` arrives with its value and parameter; returns this lane's result bits
inline uint64_t warp_collective(int kind, unsigned mask, uint64_t val, int param, int width, const char* file,
                                int line, WarpResolveFn resolve = nullptr) {
    Block* b = cur_block;
    Thread* t = cur_thread;
    if (b->failed) fiber_yield();
    int w = t->lin / 32, lane = t->lin % 32;
    unsigned exist = lanes_of_warp(b, w);
    if (!(mask & (1u << lane))) {
        block_fail(b, "%s (%s:%d) with mask 0x%08x, which leaves out the calling lane %d", warp_op_names[kind], file,
                   line, mask, lane);
        fiber_yield();
    }
    if (mask & ~exist) {
        block_fail(b, "%s (%s:%d) with mask 0x%08x names lanes the block does not have (lanes 0x%08x)",
                   warp_op_names[kind], file, line, mask, exist);
        fiber_yield();
    }
    if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
        block_fail(b, "%s (%s:%d) width %d is not a power of two in 1..32", warp_op_names[kind], file, line, width);
        fiber_yield();
    }
    if (mask & b->exited[w]) {
        block_fail(b, "%s (%s:%d): lane %d of the mask 0x%08x has exited", warp_op_names[kind], file, line,
                   __builtin_ctz(mask & b->exited[w]), mask);
        fiber_yield();
    }
    // the pending collective whose mask holds this lane, else a free slot
    WarpOp* op = nullptr;
    for (int k = 0; k < 32; k++) {
        WarpOp* o = &b->warps[w][k];
        if (o->arrived != 0 && (o->mask & (1u << lane))) {
            op = o;
            break;
        }
    }
    if (op == nullptr) {
        for (int k = 0; k < 32; k++) {
            WarpOp* o = &b->warps[w][k];
            if (o->arrived != 0 && (o->mask & mask)) {
                block_fail(b, "%s (%s:%d, mask 0x%08x) overlaps lanes 0x%08x waiting at %s (%s:%d, mask 0x%08x)",
                           warp_op_names[kind], file, line, mask, o->arrived, warp_op_names[o->kind], o->file, o->line,
                           o->mask);
                fiber_yield();
            }
        }
        for (int k = 0; k < 32 && op == nullptr; k++)
            if (b->warps[w][k].arrived == 0) op = &b->warps[w][k];
        op->kind = kind;
        op->mask = mask;
        op->file = file;
        op->line = line;
        op->width = width;
        op->resolve = resolve;
    } else if (op->kind != kind || op->mask != mask || op->line != line ||
               (op->file != file && strcmp(op->file, file) != 0)) {
        block_fail(b, "%s (%s:%d, mask 0x%08x) while lanes 0x%08x of the warp wait at %s (%s:%d, mask 0x%08x)",
                   warp_op_names[kind], file, line, mask, op->arrived, warp_op_names[op->kind], op->file, op->line,
                   op->mask);
        fiber_yield();
    }
    t->val = val;
    t->param = param;
    op->arrived |= 1u << lane;
    t->state = THREAD_WAITING;
    if (op->arrived == op->mask) {
        // resolved; the lanes go on in the schedule's order, this one included
        warp_resolve(b, op, w);
        cur_thread = t;
        op->arrived = 0;
        for (int l = 0; l < 32; l++)
            if (mask & (1u << l)) b->threads[w * 32 + l].state = THREAD_READY;
    }
    fiber_yield();
    return t->result;
}

template <class T> inline uint64_t to_bits(T v) {
    static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8, "warp shuffle of a type over 8 bytes");
    uint64_t u = 0;
    memcpy(&u, &v, sizeof(T));
    return u;
}
template <class T> inline T from_bits(uint64_t u) {
    T v;
    memcpy(&v, &u, sizeof(T));
    return v;
}

// ---------------------------------------------------------------------------------------------
// launches

// set by the runtime (cuda_runtime.h) from a launch's outcome
inline void (*launch_result_hook)(int code, const char* message) = nullptr;
// pointer arguments must point into device (or pinned host) allocations; set by the runtime
inline int (*device_pointer_hook)(const void* p) = nullptr;
inline size_t (*dynamic_smem_limit_hook)(const void* kernel) = nullptr;

inline void* dynamic_smem() { return cur_block->dyn_smem; }

// static shared memory starts as 0xff bytes (NaN) in every block: the first thread of the block to pass the
// declaration fills it (cu2cpp.py puts CUDA_CPU_SHARED_POISON after each __shared__ declaration)
inline void poison_shared(void* p, size_t n, uint64_t* serial) {
    if (*serial == block_serial) return;
    memset(p, 0xff, n);
    *serial = block_serial;
}

template <class F> inline void block_body(void* arg) { (*(F*)arg)(); }

// a block's dynamic shared memory, 256-byte aligned (wmma tiles need 256-bit alignment)
inline unsigned char* smem_alloc(size_t smem) {
    return smem > 0 ? (unsigned char*)aligned_alloc(256, (smem + 255) & ~(size_t)255) : nullptr;
}

// validates the configuration and runs the grid; returns a cudaError_t value
template <class F> inline int run_grid(const char* name, const void* kernel, dim3 g, dim3 bd, size_t smem, F& body) {
    unsigned long long nthreads = (unsigned long long)bd.x * bd.y * bd.z;
    if (g.x == 0 || g.y == 0 || g.z == 0 || bd.x == 0 || bd.y == 0 || bd.z == 0 || nthreads > 1024 || bd.x > 1024 ||
        bd.y > 1024 || bd.z > 64 || g.x > 2147483647u || g.y > 65535 || g.z > 65535) {
        char msg[256];
        snprintf(msg, sizeof(msg), "cuda_cpu: kernel %s: launch configuration grid (%u,%u,%u) block (%u,%u,%u) "
                 "is invalid (at most 1024 threads, block (1024,1024,64), grid (2^31-1,65535,65535))", name, g.x, g.y,
                 g.z, bd.x, bd.y, bd.z);
        return launch_result_hook(9, msg), 9;  // cudaErrorInvalidConfiguration
    }
    size_t limit = dynamic_smem_limit_hook(kernel);
    if (smem > limit) {
        char msg[256];
        snprintf(msg, sizeof(msg), "cuda_cpu: kernel %s: %zu bytes of dynamic shared memory exceed the limit of %zu "
                 "(cudaFuncSetAttribute raises it)", name, smem, limit);
        return launch_result_hook(1, msg), 1;  // cudaErrorInvalidValue
    }
    long long nblocks = (long long)g.x * g.y * g.z;
    uint64_t seed;
    int mode = schedule_mode(&seed);
    std::atomic<int> failed{0};
    char message[512] = "";
    auto run_one = [&](long long i, Thread* threads, int* order, WarpOp (*warps)[32], unsigned char* smem_buf) {
        if (failed.load(std::memory_order_relaxed)) return;
        long long bi = mode == SCHEDULE_FORWARD ? i : nblocks - 1 - i;
        Block b;
        b.kernel = name;
        b.bid = uint3{(unsigned)(bi % g.x), (unsigned)((bi / g.x) % g.y), (unsigned)(bi / ((long long)g.x * g.y))};
        b.bdim = bd;
        b.gdim = g;
        b.nthreads = (int)nthreads;
        b.failed = 0;
        b.dyn_smem = smem_buf;
        if (smem > 0) memset(smem_buf, 0xff, smem);  // NaN in fp32/bf16: reading unwritten shared memory shows
        b.body = block_body<F>;
        b.body_arg = &body;
        b.rng = seed * 0x9E3779B97F4A7C15ull + (uint64_t)bi;
        run_block(&b, threads, order, warps);
        if (b.failed && failed.exchange(1) == 0) memcpy(message, b.message, sizeof(message));
    };
    int nth = 1;
#ifdef _OPENMP
    nth = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (nblocks < nth) nth = (int)nblocks;
#endif
    if (nth <= 1) {
        Thread* threads = new Thread[nthreads];
        int* order = new int[nthreads];
        WarpOp (*warps)[32] = new WarpOp[(nthreads + 31) / 32][32];
        unsigned char* smem_buf = smem_alloc(smem);
        for (long long i = 0; i < nblocks; i++) run_one(i, threads, order, warps, smem_buf);
        delete[] warps;
        delete[] threads;
        delete[] order;
        free(smem_buf);
    } else {
#ifdef _OPENMP
#pragma omp parallel num_threads(nth)
        {
            Thread* threads = new Thread[nthreads];
            int* order = new int[nthreads];
            WarpOp (*warps)[32] = new WarpOp[(nthreads + 31) / 32][32];
            unsigned char* smem_buf = smem_alloc(smem);
#pragma omp for schedule(dynamic, 1)
            for (long long i = 0; i < nblocks; i++) run_one(i, threads, order, warps, smem_buf);
            delete[] warps;
            delete[] threads;
            delete[] order;
            free(smem_buf);
        }
#endif
    }
    if (failed.load()) return launch_result_hook(719, message), 719;  // cudaErrorLaunchFailure (sticky)
    return launch_result_hook(0, nullptr), 0;
}

template <class T> inline int check_pointer_arg(const char* name, int i, const T& v, char* msg, size_t len) {
    if constexpr (std::is_pointer<T>::value) {
        if (v != nullptr && !device_pointer_hook((const void*)v)) {
            snprintf(msg, len, "cuda_cpu: kernel %s: argument %d (%p) is not device memory (cudaMalloc) nor pinned "
                     "host memory (cudaMallocHost)", name, i, (const void*)v);
            return 1;
        }
    }
    return 0;
}

template <class... P> struct Launch {
    void (*kernel)(P...);
    const char* name;
    dim3 grid, block;
    size_t smem;
    void operator()(P... a) const {
        std::tuple<std::decay_t<P>...> args(a...);
        char msg[256];
        int bad = 0, i = 0;
        std::apply([&](const auto&... v) { ((bad = bad || check_pointer_arg(name, i++, v, msg, sizeof(msg))), ...); },
                   args);
        if (bad) {
            launch_result_hook(700, msg);  // cudaErrorIllegalAddress (sticky)
            return;
        }
        void (*k)(P...) = kernel;
        auto body = [&args, k]() { std::apply(k, args); };
        run_grid(name, (const void*)kernel, grid, block, smem, body);
    }
};

// kernel<<<grid, block, smem, stream>>>(args) is rewritten to launch(kernel, "kernel", grid, block, smem, stream)(args)
template <class... P, class S = void*>
inline Launch<P...> launch(void (*kernel)(P...), const char* name, dim3 grid, dim3 block, size_t smem = 0,
                           S stream = nullptr) {
    (void)stream;  // streams run in issue order on the host
    return Launch<P...>{kernel, name, grid, block, smem};
}

}  // namespace cuda_cpu

// ---------------------------------------------------------------------------------------------
// built-in variables and device functions

#define CUDA_CPU_SHARED_POISON(x)                              \
    static thread_local uint64_t x##_cuda_cpu_serial = 0;       \
    ::cuda_cpu::poison_shared(&(x), sizeof(x), &x##_cuda_cpu_serial)

#define threadIdx (::cuda_cpu::cur_thread->idx)
#define blockIdx (::cuda_cpu::cur_block->bid)
#define blockDim (::cuda_cpu::cur_block->bdim)
#define gridDim (::cuda_cpu::cur_block->gdim)
constexpr int warpSize = 32;

#define __syncthreads() ((void)::cuda_cpu::block_barrier(__FILE__, __LINE__, 0, 0))
#define __syncthreads_count(p) ::cuda_cpu::block_barrier(__FILE__, __LINE__, 1, (p))
#define __syncthreads_and(p) ::cuda_cpu::block_barrier(__FILE__, __LINE__, 2, (p))
#define __syncthreads_or(p) ::cuda_cpu::block_barrier(__FILE__, __LINE__, 3, (p))
#define __syncwarp(...) ((void)::cuda_cpu::warp_sync_at(__FILE__, __LINE__ __VA_OPT__(,) __VA_ARGS__))
#define __shfl_sync(m, v, ...) ::cuda_cpu::shfl_at(::cuda_cpu::WARP_SHFL, __FILE__, __LINE__, (m), (v), __VA_ARGS__)
#define __shfl_up_sync(m, v, ...) ::cuda_cpu::shfl_at(::cuda_cpu::WARP_SHFL_UP, __FILE__, __LINE__, (m), (v), __VA_ARGS__)
#define __shfl_down_sync(m, v, ...) ::cuda_cpu::shfl_at(::cuda_cpu::WARP_SHFL_DOWN, __FILE__, __LINE__, (m), (v), __VA_ARGS__)
#define __shfl_xor_sync(m, v, ...) ::cuda_cpu::shfl_at(::cuda_cpu::WARP_SHFL_XOR, __FILE__, __LINE__, (m), (v), __VA_ARGS__)
#define __all_sync(m, p) ((int)::cuda_cpu::warp_collective(::cuda_cpu::WARP_ALL, (m), (p) != 0, 0, 32, __FILE__, __LINE__))
#define __any_sync(m, p) ((int)::cuda_cpu::warp_collective(::cuda_cpu::WARP_ANY, (m), (p) != 0, 0, 32, __FILE__, __LINE__))
#define __ballot_sync(m, p) ((unsigned)::cuda_cpu::warp_collective(::cuda_cpu::WARP_BALLOT, (m), (p) != 0, 0, 32, __FILE__, __LINE__))
#define __reduce_add_sync(m, v) ::cuda_cpu::reduce_at(::cuda_cpu::WARP_REDUCE_ADD, __FILE__, __LINE__, (m), (v))
#define __reduce_min_sync(m, v) ::cuda_cpu::reduce_at(::cuda_cpu::WARP_REDUCE_MIN, __FILE__, __LINE__, (m), (v))
#define __reduce_max_sync(m, v) ::cuda_cpu::reduce_at(::cuda_cpu::WARP_REDUCE_MAX, __FILE__, __LINE__, (m), (v))
#define __reduce_and_sync(m, v) ::cuda_cpu::reduce_at(::cuda_cpu::WARP_REDUCE_AND, __FILE__, __LINE__, (m), (v))
#define __reduce_or_sync(m, v) ::cuda_cpu::reduce_at(::cuda_cpu::WARP_REDUCE_OR, __FILE__, __LINE__, (m), (v))
#define __reduce_xor_sync(m, v) ::cuda_cpu::reduce_at(::cuda_cpu::WARP_REDUCE_XOR, __FILE__, __LINE__, (m), (v))

namespace cuda_cpu {
inline int warp_sync_at(const char* file, int line, unsigned mask = 0xffffffffu) {
    return (int)warp_collective(WARP_SYNC, mask, 0, 0, 32, file, line);
}
template <class T> inline T shfl_at(int kind, const char* file, int line, unsigned mask, T v, int param, int width = 32) {
    return from_bits<T>(warp_collective(kind, mask, to_bits(v), param, width, file, line));
}
template <class T> inline T reduce_at(int kind, const char* file, int line, unsigned mask, T v) {
    static_assert(std::is_integral<T>::value && sizeof(T) == 4, "__reduce_*_sync takes int or unsigned");
    return (T)(uint32_t)warp_collective(kind, mask, (uint32_t)v, std::is_signed<T>::value, 32, file, line);
}
}  // namespace cuda_cpu

// the lanes of the calling warp that have not exited (the CPU backend does not track divergence)
inline unsigned __activemask() {
    const cuda_cpu::Block* b = cuda_cpu::cur_block;
    int w = cuda_cpu::cur_thread->lin / 32;
    unsigned m = 0;
    for (int l = 0; l < 32 && w * 32 + l < b->nthreads; l++)
        if (b->threads[w * 32 + l].state != cuda_cpu::THREAD_DONE) m |= 1u << l;
    return m;
}

#endif  // CUDA_CPU_EXEC_H
