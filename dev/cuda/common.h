// Shared pieces of the kernel lab (dev/cuda/*.cu, llm.c's dev/cuda layout): arguments, deterministic inputs,
// validation against the CPU passes of llmc/optim.h, timing with cudaEvents, GB/s and % of peak bandwidth.
// Every lab program is `NAME [validate|bench] [-k version] [-b block] [-n elems] [-r reps] [-p]`; it closes with
// `NAME: N passed, N failed` and exits 1 on a failure. The programs build with nvcc (dev/cuda/Makefile) and on the
// CPU backend (make cuda-lab-cpu, build/cuda_cpu/dev/cuda/).
#ifndef DEV_CUDA_COMMON_H
#define DEV_CUDA_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include "llmc/cuda_common.h"  // cudaCheck, floatX (bf16; fp32 with -DENABLE_FP32), ceil_div
#include "llmc/optim.h"        // the CPU reference passes
#include "llmc/cli.h"          // optimizer_config_defaults: the flag table's optimizer settings

// ----------------------------------------------------------------------------
// arguments

typedef struct {
    int bench;         // 0: validate, 1: bench
    int version;       // 0 = every version
    int block;         // 0 = every block size of LAB_BLOCKS
    size_t n;          // elements
    int reps;          // timed launches per (version, block)
    int perturb;       // -p: flip one bit of every reference (self-check: every comparison must then fail)
} LabArgs;

static const int LAB_BLOCKS[] = {64, 128, 256, 512, 1024};
#define LAB_NBLOCKS 5
#define LAB_VALIDATE_N 10007    // not a multiple of 4 or of a block: tails are exercised
#define LAB_BENCH_N 124475904   // GPT-2 124M (d12, Vp 50304)

static inline void lab_usage(const char* name) {
    fprintf(stderr, "usage: %s [validate|bench] [-k version] [-b block] [-n elems] [-r reps] [-p]\n", name);
}

static inline long long lab_parse_int(const char* name, const char* flag, const char* s, long long lo, long long hi) {
    char* end = NULL;
    long long v = strtoll(s, &end, 10);
    if (s[0] == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "error: %s: flag %s: '%s' is not an integer in [%lld, %lld]\n", name, flag, s, lo, hi);
        exit(1);
    }
    return v;
}

static inline LabArgs lab_parse_args(int argc, char** argv, const char* name, int nversions) {
    LabArgs a = {0, 0, 0, 0, 20, 0};
    for (int i = 1; i < argc; i++) {
        const char* s = argv[i];
        if (strcmp(s, "validate") == 0) a.bench = 0;
        else if (strcmp(s, "bench") == 0) a.bench = 1;
        else if (strcmp(s, "-p") == 0) a.perturb = 1;
        else if (s[0] == '-' && strchr("kbnr", s[1]) != NULL && s[2] == '\0') {
            if (i + 1 >= argc) {
                fprintf(stderr, "error: %s: flag %s needs a value\n", name, s);
                exit(1);
            }
            const char* v = argv[++i];
            if (s[1] == 'k') a.version = (int)lab_parse_int(name, s, v, 0, nversions);
            if (s[1] == 'b') a.block = (int)lab_parse_int(name, s, v, 32, 1024);
            if (s[1] == 'n') a.n = (size_t)lab_parse_int(name, s, v, 1, 1LL << 34);
            if (s[1] == 'r') a.reps = (int)lab_parse_int(name, s, v, 1, 100000);
        } else {
            fprintf(stderr, "error: %s: unknown argument '%s'\n", name, s);
            lab_usage(name);
            exit(1);
        }
    }
    if (a.block % 32 != 0) {
        fprintf(stderr, "error: %s: flag -b: block %d is not a multiple of 32\n", name, a.block);
        exit(1);
    }
    if (a.n == 0) a.n = a.bench ? LAB_BENCH_N : LAB_VALIDATE_N;
    return a;
}

// ----------------------------------------------------------------------------
// memory and inputs

static inline float* lab_host_f32(size_t n) { return (float*)mallocCheck(n * sizeof(float)); }

template <class T> static inline T* lab_device(size_t n) {
    T* p = NULL;
    cudaCheck(cudaMalloc(&p, n * sizeof(T)));
    return p;
}

// x[i] uniform in [lo, hi), a fixed sequence per seed (splitmix64 of seed and i: OpenMP-parallel)
static inline void lab_fill(float* x, size_t n, float lo, float hi, uint64_t seed) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    OMP_PRAGMA(parallel for schedule(static))
    for (size_t i = 0; i < n; i++) {
        uint64_t z = s + (i + 1) * 0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        x[i] = lo + (hi - lo) * (float)((double)(z >> 40) / (double)(1ull << 24));
    }
}

static inline floatX lab_to_x(float f) {
#ifdef ENABLE_FP32
    return f;
#else
    return __float2bfloat16_rn(f);
#endif
}

static inline float lab_from_x(floatX x) {
#ifdef ENABLE_FP32
    return x;
#else
    return __bfloat162float(x);
#endif
}

// x rounded to floatX in place (host), and its floatX copy uploaded to dx (n)
static inline void lab_round_upload(float* x, floatX* dx, size_t n) {
    floatX* t = (floatX*)mallocCheck(n * sizeof(floatX));
    for (size_t i = 0; i < n; i++) {
        t[i] = lab_to_x(x[i]);
        x[i] = lab_from_x(t[i]);
    }
    cudaCheck(cudaMemcpy(dx, t, n * sizeof(floatX), cudaMemcpyHostToDevice));
    free(t);
}

static inline void lab_upload(float* d, const float* h, size_t n) {
    cudaCheck(cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice));
}

// ----------------------------------------------------------------------------
// validation: fp32 outputs bit for bit; floatX outputs bit for bit against the RNE rounding of the CPU's fp32
// value (the fp32 value is bit-identical, so its rounding is too: tolerance 0 ulp)

static int lab_passed = 0, lab_failed = 0;

static inline uint32_t lab_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline void lab_result(const char* what, const char* out, size_t bad, size_t n, size_t first, double got,
                              double want) {
    if (bad == 0) {
        lab_passed++;
        printf("OK   %s: %s bit-identical (%zu elements)\n", what, out, n);
    } else {
        lab_failed++;
        printf("FAIL %s: %s: %zu of %zu differ, first at %zu: got %.9g want %.9g\n", what, out, bad, n, first, got, want);
    }
}

// device fp32 array d against host want (n); perturb: compare with want[n / 2]'s lowest bit flipped
static inline void lab_check_f32(const char* what, const char* out, const float* d, const float* want, size_t n,
                                 int perturb) {
    float* got = lab_host_f32(n);
    cudaCheck(cudaMemcpy(got, d, n * sizeof(float), cudaMemcpyDeviceToHost));
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t w = lab_bits(want[i]) ^ (perturb && i == n / 2 ? 1u : 0u);
        if (lab_bits(got[i]) != w) first = bad++ == 0 ? i : first;
    }
    lab_result(what, out, bad, n, first, bad ? got[first] : 0.0, bad ? want[first] : 0.0);
    free(got);
}

// device floatX array d against floatX(want) (n)
static inline void lab_check_x(const char* what, const char* out, const floatX* d, const float* want, size_t n,
                               int perturb) {
    floatX* got = (floatX*)mallocCheck(n * sizeof(floatX));
    cudaCheck(cudaMemcpy(got, d, n * sizeof(floatX), cudaMemcpyDeviceToHost));
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++) {
        floatX w = lab_to_x(want[i]);
        if (perturb && i == n / 2) w = lab_to_x(lab_from_x(w) * 1.5f + 1.0f);
        if (memcmp(&got[i], &w, sizeof(floatX)) != 0) first = bad++ == 0 ? i : first;
    }
    lab_result(what, out, bad, n, first, bad ? lab_from_x(got[first]) : 0.0, bad ? want[first] : 0.0);
    free(got);
}

// a scalar statistic: exact (tol 0) or within a relative tolerance
static inline void lab_check_scalar(const char* what, const char* out, double got, double want, double rel_tol,
                                    int perturb) {
    if (perturb) want = want * 2.0 + 1.0;
    int ok = rel_tol == 0.0 ? got == want : fabs(got - want) <= rel_tol * fabs(want);
    if (ok) {
        lab_passed++;
        printf("OK   %s: %s %.17g (reference %.17g)\n", what, out, got, want);
    } else {
        lab_failed++;
        printf("FAIL %s: %s %.17g, reference %.17g (relative tolerance %g)\n", what, out, got, want, rel_tol);
    }
}

static inline int lab_finish(const char* name) {
    printf("%s: %d passed, %d failed\n", name, lab_passed, lab_failed);
    return lab_failed == 0 ? 0 : 1;
}

// ----------------------------------------------------------------------------
// timing and bandwidth

// mean ms of one call of fn over reps calls (one warm-up call first)
template <class F> static inline float lab_time_ms(int reps, F fn) {
    cudaEvent_t t0 = NULL, t1 = NULL;
    cudaCheck(cudaEventCreate(&t0));
    cudaCheck(cudaEventCreate(&t1));
    fn();
    cudaCheck(cudaEventRecord(t0));
    for (int i = 0; i < reps; i++) fn();
    cudaCheck(cudaEventRecord(t1));
    cudaCheck(cudaEventSynchronize(t1));
    cudaCheck(cudaGetLastError());
    float ms = 0.0f;
    cudaCheck(cudaEventElapsedTime(&ms, t0, t1));
    cudaCheck(cudaEventDestroy(t0));
    cudaCheck(cudaEventDestroy(t1));
    return ms / reps;
}

// Peak DRAM bandwidth in GB/s (0 = unknown) and where it came from. A table for the H100/H200 parts (the HBM
// clock the driver reports does not give their data-sheet figure); else 2 x memory clock x bus width from
// cudaDeviceGetAttribute (CUDA 13 removed memoryClockRate from cudaDeviceProp).
static inline double lab_peak_gbs(const char** source) {
    cudaDeviceProp p;
    cudaCheck(cudaGetDeviceProperties(&p, 0));
    *source = "data sheet";
    if (strstr(p.name, "H200") != NULL) return 4800.0;                              // HBM3e, SXM and NVL
    if (strstr(p.name, "H100") != NULL && strstr(p.name, "NVL") != NULL) return 3900.0;
    if (strstr(p.name, "H100") != NULL) return p.multiProcessorCount >= 132 ? 3350.0 : 2000.0;  // SXM : PCIe
    int clock_khz = 0, bus_bits = 0;
    if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, 0) != cudaSuccess ||
        cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, 0) != cudaSuccess) {
        cudaGetLastError();
        clock_khz = 0;
    }
    *source = "2 x memory clock x bus width";
    if (clock_khz <= 0 || bus_bits <= 0) *source = "unknown";
    return 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
}

static inline void lab_bench_header(const char* name, size_t n) {
    cudaDeviceProp p;
    cudaCheck(cudaGetDeviceProperties(&p, 0));
    const char* src;
    double peak = lab_peak_gbs(&src);
    printf("%s bench: %s, %d SMs, n %zu, floatX %s; peak ", name, p.name, p.multiProcessorCount, n,
           sizeof(floatX) == 2 ? "bf16" : "fp32");
    if (peak > 0.0) printf("%.0f GB/s (%s)\n", peak, src);
    else printf("unknown (no %% of peak)\n");
    printf("%-14s %7s %6s %10s %9s %8s %9s\n", "kernel", "version", "block", "time_ms", "GB/s", "%peak", "B/elem");
}

static inline void lab_bench_line(const char* name, int version, int block, float ms, double bytes_per_elem, size_t n) {
    const char* src;
    double peak = lab_peak_gbs(&src);
    double gbs = bytes_per_elem * (double)n / (ms / 1e3) / 1e9;
    char pct[32];
    if (peak > 0.0) snprintf(pct, sizeof(pct), "%.1f", 100.0 * gbs / peak);
    else snprintf(pct, sizeof(pct), "n/a");
    printf("%-14s %7d %6d %10.4f %9.1f %8s %9.0f\n", name, version, block, ms, gbs, pct, bytes_per_elem);
}

// ----------------------------------------------------------------------------
// device helpers

// packs of W elements (W = 4 or 8): W fp32 = W/4 128-bit accesses; W floatX = one access of 8 W bytes in bf16
// (W = 8: 128 bits), at most 128 bits each
template <int W> struct alignas(16) LabF { float v[W]; };
template <int W> struct alignas(W * sizeof(floatX) < 16 ? W * sizeof(floatX) : 16) LabX { floatX v[W]; };

// the groups of W flat indices (W q .. W q + W-1) that meet the slice [start, start + n): [lo, hi)
template <int W> __host__ __device__ inline size_t lab_group_lo(size_t start) { return start / W; }
template <int W> __host__ __device__ inline size_t lab_group_hi(size_t n, size_t start) { return (start + n + W - 1) / W; }
template <int W> inline size_t lab_groups(size_t n, size_t start) { return lab_group_hi<W>(n, start) - lab_group_lo<W>(start); }

// the block sizes of a run: -b, or every size of LAB_BLOCKS; returns the count
static inline int lab_blocks(const LabArgs* a, int out[LAB_NBLOCKS]) {
    if (a->block != 0) {
        out[0] = a->block;
        return 1;
    }
    for (int i = 0; i < LAB_NBLOCKS; i++) out[i] = LAB_BLOCKS[i];
    return LAB_NBLOCKS;
}

static inline int lab_version_on(const LabArgs* a, int v) { return a->version == 0 || a->version == v; }

// persistent grid (version 3): enough blocks of `block` threads to fill every SM once
static inline int lab_persistent_grid(int block, size_t work) {
    int sms = 0;
    cudaCheck(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    int per_sm = 2048 / block > 0 ? 2048 / block : 1;
    size_t g = (size_t)sms * per_sm;
    size_t need = (work + block - 1) / block;
    return (int)(g < need ? g : need);
}

// one block's statistics of an update: clipped coordinates and sum |dm| into part_c[blockIdx.x],
// part_s[blockIdx.x] (fixed order, so the host's sum of the parts is reproducible). blockDim.x a multiple of 32.
__device__ inline void lab_block_stats(unsigned clipped, double sum_dm, unsigned* part_c, double* part_s) {
    __shared__ unsigned sc[32];
    __shared__ double ss[32];
    for (int o = 16; o > 0; o >>= 1) {
        clipped += __shfl_xor_sync(0xffffffffu, clipped, o);
        sum_dm += __shfl_xor_sync(0xffffffffu, sum_dm, o);
    }
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) {
        sc[warp] = clipped;
        ss[warp] = sum_dm;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned c = 0;
        double s = 0.0;
        for (int w = 0; w < (int)blockDim.x / 32; w++) {
            c += sc[w];
            s += ss[w];
        }
        part_c[blockIdx.x] = c;
        part_s[blockIdx.x] = s;
    }
}

// host sums of the block statistics (nblocks)
static inline void lab_sum_stats(const unsigned* d_c, const double* d_s, int nblocks, size_t* clipped, double* sum_dm) {
    unsigned* c = (unsigned*)mallocCheck(nblocks * sizeof(unsigned));
    double* s = (double*)mallocCheck(nblocks * sizeof(double));
    cudaCheck(cudaMemcpy(c, d_c, nblocks * sizeof(unsigned), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(s, d_s, nblocks * sizeof(double), cudaMemcpyDeviceToHost));
    *clipped = 0;
    *sum_dm = 0.0;
    for (int b = 0; b < nblocks; b++) {
        *clipped += c[b];
        *sum_dm += s[b];
    }
    free(c);
    free(s);
}

// ----------------------------------------------------------------------------
// the driver of one case (n elements, described by `what`): validate: for every selected version and block size,
// reset() the device inputs, launch(version, block), check(label) the outputs against the reference; bench: one
// such validation per version (block 256), then the timings of every version and block size.
template <class Reset, class Launch, class Check>
static inline void lab_run(const LabArgs* a, const char* name, int nversions, size_t n, const char* what,
                           double bytes_per_elem, Reset reset, Launch launch, Check check) {
    int blocks[LAB_NBLOCKS], nb = lab_blocks(a, blocks);
    char label[192];
    for (int v = 1; v <= nversions; v++) {
        if (!lab_version_on(a, v)) continue;
        for (int bi = 0; bi < (a->bench ? 1 : nb); bi++) {
            int b = a->bench && a->block == 0 ? 256 : blocks[bi];
            reset();
            launch(v, b);
            cudaCheck(cudaDeviceSynchronize());
            snprintf(label, sizeof(label), "%s v%d block %d %s", name, v, b, what);
            check(label);
        }
    }
    if (!a->bench) return;
    lab_bench_header(name, n);
    for (int v = 1; v <= nversions; v++) {
        if (!lab_version_on(a, v)) continue;
        for (int bi = 0; bi < nb; bi++) {
            reset();
            float ms = lab_time_ms(a->reps, [&] { launch(v, blocks[bi]); });
            lab_bench_line(name, v, blocks[bi], ms, bytes_per_elem, n);
        }
    }
}

#endif // DEV_CUDA_COMMON_H
