// CPU backend: the CUDA runtime API that the project's CUDA sources call, with the documented semantics on one
// "device" that is this machine's memory and cores. Build: dev/cuda_cpu/cu2cpp.py rewrites the launches, then g++
// -std=c++17 -fopenmp with dev/cuda_cpu/include first on the include path (Makefile target `cuda-cpu`).
//   Memory: cudaMalloc returns host memory (256-byte aligned) filled with 0xff bytes (NaN as fp32 and bf16, -1 as
//   int), so reading memory no kernel or copy wrote shows; copies and memsets check that the device side lies in
//   one allocation (cudaErrorInvalidValue otherwise), and kernel pointer arguments must point into device or pinned
//   memory (cudaErrorIllegalAddress otherwise).
//   Streams and events: work runs synchronously in issue order, so every stream is trivially in order; events
//   record the host time.
//   Errors: a failed launch or an invalid call sets the per-thread last error (cudaGetLastError reads and clears
//   it); a kernel that failed (cuda_cpu_exec.h) or an illegal pointer argument makes the error sticky, as a device
//   fault does: every later call returns it.
#ifndef CUDA_CPU_RUNTIME_H
#define CUDA_CPU_RUNTIME_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <math.h>
#include <map>
#include <mutex>
#include "cuda_cpu_defs.h"
#include "library_types.h"
#include "cuda_fp16.h"
#include "cuda_bf16.h"
#include "cuda_cpu_exec.h"
#include "cuda_cpu_math.h"

#define CUDART_VERSION 13000
#define CUDA_CPU_BACKEND 1

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidSymbol = 13,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorInvalidDeviceFunction = 98,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotReady = 600,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorLaunchFailure = 719,
    cudaErrorNotSupported = 801,
    cudaErrorUnknown = 999
} cudaError_t;

typedef enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
} cudaMemcpyKind;

typedef enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
    cudaFuncAttributePreferredSharedMemoryCarveout = 9
} cudaFuncAttribute;

typedef enum cudaDeviceAttr {
    cudaDevAttrMaxThreadsPerBlock = 1,
    cudaDevAttrMaxSharedMemoryPerBlock = 8,
    cudaDevAttrWarpSize = 10,
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrMemoryClockRate = 36,
    cudaDevAttrGlobalMemoryBusWidth = 37,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97
} cudaDeviceAttr;

struct CUstream_st { unsigned flags; };
struct CUevent_st { unsigned flags; double t; int recorded; };
typedef CUstream_st* cudaStream_t;
typedef CUevent_st* cudaEvent_t;
#define cudaStreamLegacy ((cudaStream_t)0x1)
#define cudaStreamPerThread ((cudaStream_t)0x2)
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventBlockingSync 0x01
#define cudaEventDisableTiming 0x02
#define cudaHostAllocDefault 0x00
#define cudaMemAttachGlobal 0x01

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    int regsPerBlock;
    int warpSize;
    size_t memPitch;
    int maxThreadsPerBlock;
    int maxThreadsDim[3];
    int maxGridSize[3];
    int clockRate;
    size_t totalConstMem;
    int major, minor;
    size_t textureAlignment;
    int multiProcessorCount;
    int kernelExecTimeoutEnabled;
    int integrated;
    int canMapHostMemory;
    int concurrentKernels;
    int ECCEnabled;
    int pciBusID, pciDeviceID, pciDomainID;
    int asyncEngineCount;
    int unifiedAddressing;
    int memoryClockRate;
    int memoryBusWidth;
    int l2CacheSize;
    int maxThreadsPerMultiProcessor;
    size_t sharedMemPerMultiprocessor;
    int regsPerMultiprocessor;
    int managedMemory;
    size_t sharedMemPerBlockOptin;
    int maxBlocksPerMultiProcessor;
};

namespace cuda_cpu {

#define CUDA_CPU_STATIC_SMEM_LIMIT 49152u   // default dynamic shared memory per block (48 KiB)
#define CUDA_CPU_SMEM_OPTIN 232448u         // what cudaFuncSetAttribute may raise it to (227 KiB, sm_90)

struct Allocation { size_t bytes; int pinned; };

struct Runtime {
    std::mutex mu;
    std::map<uintptr_t, Allocation> allocs;     // start address -> allocation
    std::map<const void*, size_t> smem_limits;  // kernel -> raised dynamic shared memory limit
    int sticky = 0;                             // cudaError_t of a device fault, 0 = none
};
inline Runtime& runtime() {
    static Runtime r;
    return r;
}
inline thread_local int last_error = 0;

inline cudaError_t set_error(cudaError_t e) {
    if (e != cudaSuccess) last_error = e;
    return e;
}
inline cudaError_t sticky_or(cudaError_t e) {
    int s = runtime().sticky;
    return s != 0 ? (cudaError_t)s : e;
}
#define CUDA_CPU_ENTRY()                                                                                  \
    do {                                                                                                  \
        if (::cuda_cpu::runtime().sticky) return ::cuda_cpu::set_error((cudaError_t)::cuda_cpu::runtime().sticky); \
    } while (0)

// the allocation holding [p, p + bytes); kind: 0 device or pinned, 1 device only
inline int find_alloc(const void* p, size_t bytes, int device_only) {
    Runtime& r = runtime();
    std::lock_guard<std::mutex> lock(r.mu);
    uintptr_t a = (uintptr_t)p;
    auto it = r.allocs.upper_bound(a);
    if (it == r.allocs.begin()) return 0;
    --it;
    if (a < it->first || a + bytes > it->first + it->second.bytes) return 0;
    if (device_only && it->second.pinned) return 0;
    return 1;
}

inline double now_s() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

inline void on_launch(int code, const char* message) {
    if (code == 0) return;
    if (message != nullptr) fprintf(stderr, "%s\n", message);
    if (code == cudaErrorLaunchFailure || code == cudaErrorIllegalAddress) runtime().sticky = code;
    last_error = code;
}
inline int is_device_pointer(const void* p) { return find_alloc(p, 0, 0); }
inline size_t smem_limit(const void* kernel) {
    Runtime& r = runtime();
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = r.smem_limits.find(kernel);
    return it != r.smem_limits.end() ? it->second : CUDA_CPU_STATIC_SMEM_LIMIT;
}
struct Hooks {
    Hooks() {
        launch_result_hook = on_launch;
        device_pointer_hook = is_device_pointer;
        dynamic_smem_limit_hook = smem_limit;
    }
};
inline Hooks hooks_installed;

inline cudaError_t alloc(void** p, size_t bytes, int pinned) {
    CUDA_CPU_ENTRY();
    if (p == nullptr) return set_error(cudaErrorInvalidValue);
    size_t rounded = (bytes + 255) & ~(size_t)255;
    if (rounded == 0) rounded = 256;
    void* m = aligned_alloc(256, rounded);
    if (m == nullptr) {
        *p = nullptr;
        return set_error(cudaErrorMemoryAllocation);
    }
    memset(m, 0xff, rounded);
    Runtime& r = runtime();
    std::lock_guard<std::mutex> lock(r.mu);
    r.allocs[(uintptr_t)m] = Allocation{bytes, pinned};
    *p = m;
    return cudaSuccess;
}

inline cudaError_t release(void* p, int pinned) {
    if (p == nullptr) return cudaSuccess;
    Runtime& r = runtime();
    {
        std::lock_guard<std::mutex> lock(r.mu);
        auto it = r.allocs.find((uintptr_t)p);
        if (it == r.allocs.end() || it->second.pinned != pinned) return set_error(cudaErrorInvalidValue);
        r.allocs.erase(it);
    }
    free(p);
    return cudaSuccess;
}

inline cudaError_t copy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
    CUDA_CPU_ENTRY();
    if (n == 0) return cudaSuccess;
    if (dst == nullptr || src == nullptr) return set_error(cudaErrorInvalidValue);
    int dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    int src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if ((int)kind < 0 || (int)kind > 4) return set_error(cudaErrorInvalidMemcpyDirection);
    if ((dst_dev && !find_alloc(dst, n, 0)) || (src_dev && !find_alloc(src, n, 0))) {
        fprintf(stderr, "cuda_cpu: cudaMemcpy of %zu bytes: the %s side is not inside one device allocation\n", n,
                dst_dev && !find_alloc(dst, n, 0) ? "destination" : "source");
        return set_error(cudaErrorInvalidValue);
    }
    memmove(dst, src, n);
    return cudaSuccess;
}

}  // namespace cuda_cpu

// ---------------------------------------------------------------------------------------------
// errors

inline const char* cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidSymbol: return "cudaErrorInvalidSymbol";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidDeviceFunction: return "cudaErrorInvalidDeviceFunction";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    default: return "cudaErrorUnknown";
    }
}

inline const char* cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidSymbol: return "invalid device symbol";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorNotSupported: return "operation not supported";
    default: return "unknown error";
    }
}

inline cudaError_t cudaGetLastError(void) {
    cudaError_t e = (cudaError_t)cuda_cpu::last_error;
    if (cuda_cpu::runtime().sticky == 0) cuda_cpu::last_error = 0;
    return e;
}
inline cudaError_t cudaPeekAtLastError(void) { return (cudaError_t)cuda_cpu::last_error; }

// ---------------------------------------------------------------------------------------------
// device

inline cudaError_t cudaGetDeviceCount(int* n) {
    if (n == nullptr) return cuda_cpu::set_error(cudaErrorInvalidValue);
    *n = 1;
    return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cuda_cpu::set_error(cudaErrorInvalidDevice); }
inline cudaError_t cudaGetDevice(int* d) {
    if (d == nullptr) return cuda_cpu::set_error(cudaErrorInvalidValue);
    *d = 0;
    return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize(void) { return cuda_cpu::set_error(cuda_cpu::sticky_or(cudaSuccess)); }
inline cudaError_t cudaDeviceReset(void) { return cudaSuccess; }
inline cudaError_t cudaSetDeviceFlags(unsigned) { return cudaSuccess; }

inline int cuda_cpu_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// the properties of the CPU "device": its name says what it is; the limits are sm_90's, which the kernels target
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
    if (p == nullptr) return cuda_cpu::set_error(cudaErrorInvalidValue);
    if (d != 0) return cuda_cpu::set_error(cudaErrorInvalidDevice);
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "CPU backend (dev/cuda_cpu, %d OpenMP threads)", cuda_cpu_threads());
    p->totalGlobalMem = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    p->sharedMemPerBlock = CUDA_CPU_STATIC_SMEM_LIMIT;
    p->sharedMemPerBlockOptin = CUDA_CPU_SMEM_OPTIN;
    p->sharedMemPerMultiprocessor = 233472;
    p->regsPerBlock = 65536;
    p->regsPerMultiprocessor = 65536;
    p->warpSize = 32;
    p->memPitch = (size_t)1 << 31;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = 1024, p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 2147483647, p->maxGridSize[1] = 65535, p->maxGridSize[2] = 65535;
    p->totalConstMem = 65536;
    p->major = 9, p->minor = 0;
    p->textureAlignment = 512;
    p->multiProcessorCount = cuda_cpu_threads();
    p->canMapHostMemory = 1;
    p->concurrentKernels = 0;
    p->unifiedAddressing = 1;
    p->managedMemory = 1;
    p->l2CacheSize = 0;
    p->maxThreadsPerMultiProcessor = 2048;
    p->maxBlocksPerMultiProcessor = 32;
    p->integrated = 1;
    return cudaSuccess;
}

inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr attr, int d) {
    cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, d);
    if (e != cudaSuccess) return e;
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *v = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = (int)p.sharedMemPerBlock; break;
    case cudaDevAttrWarpSize: *v = 32; break;
    case cudaDevAttrMultiProcessorCount: *v = p.multiProcessorCount; break;
    case cudaDevAttrMemoryClockRate: *v = p.memoryClockRate; break;          // 0: no DRAM figure for the host
    case cudaDevAttrGlobalMemoryBusWidth: *v = p.memoryBusWidth; break;
    case cudaDevAttrComputeCapabilityMajor: *v = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *v = p.minor; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = (int)p.sharedMemPerBlockOptin; break;
    default:
        fprintf(stderr, "cuda_cpu: cudaDeviceGetAttribute: attribute %d is not implemented by the CPU backend\n", (int)attr);
        return cuda_cpu::set_error(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

inline cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total) {
    *total = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    *free_bytes = (size_t)sysconf(_SC_AVPHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    return cudaSuccess;
}

template <class... P> inline cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attr, int value) {
    if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || (unsigned)value > CUDA_CPU_SMEM_OPTIN)
        return cuda_cpu::set_error(cudaErrorInvalidValue);
    cuda_cpu::Runtime& r = cuda_cpu::runtime();
    std::lock_guard<std::mutex> lock(r.mu);
    r.smem_limits[(const void*)kernel] = (size_t)value;
    return cudaSuccess;
}

// ---------------------------------------------------------------------------------------------
// memory

template <class T> inline cudaError_t cudaMalloc(T** p, size_t bytes) { return cuda_cpu::alloc((void**)p, bytes, 0); }
template <class T> inline cudaError_t cudaMallocManaged(T** p, size_t bytes, unsigned = cudaMemAttachGlobal) {
    return cuda_cpu::alloc((void**)p, bytes, 0);
}
template <class T> inline cudaError_t cudaMallocHost(T** p, size_t bytes) { return cuda_cpu::alloc((void**)p, bytes, 1); }
template <class T> inline cudaError_t cudaHostAlloc(T** p, size_t bytes, unsigned) {
    return cuda_cpu::alloc((void**)p, bytes, 1);
}
inline cudaError_t cudaFree(void* p) { return cuda_cpu::release(p, 0); }
inline cudaError_t cudaFreeHost(void* p) { return cuda_cpu::release(p, 1); }

inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
    return cuda_cpu::copy(dst, src, n, kind);
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t = 0) {
    return cuda_cpu::copy(dst, src, n, kind);
}
inline cudaError_t cudaMemset(void* dst, int value, size_t n) {
    CUDA_CPU_ENTRY();
    if (n == 0) return cudaSuccess;
    if (!cuda_cpu::find_alloc(dst, n, 0)) {
        fprintf(stderr, "cuda_cpu: cudaMemset of %zu bytes at %p: not inside one device allocation\n", n, dst);
        return cuda_cpu::set_error(cudaErrorInvalidValue);
    }
    memset(dst, value, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* dst, int value, size_t n, cudaStream_t = 0) { return cudaMemset(dst, value, n); }
template <class T>
inline cudaError_t cudaMemcpyToSymbol(T& symbol, const void* src, size_t n, size_t offset = 0,
                                      cudaMemcpyKind = cudaMemcpyHostToDevice) {
    CUDA_CPU_ENTRY();
    if (offset + n > sizeof(T)) return cuda_cpu::set_error(cudaErrorInvalidValue);
    memcpy((char*)&symbol + offset, src, n);
    return cudaSuccess;
}

// ---------------------------------------------------------------------------------------------
// streams and events (work is synchronous, so ordering holds by construction)

inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
    CUDA_CPU_ENTRY();
    if (s == nullptr) return cuda_cpu::set_error(cudaErrorInvalidValue);
    *s = new CUstream_st{flags};
    return cudaSuccess;
}
inline cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }
inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
    if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread)
        return cuda_cpu::set_error(cudaErrorInvalidResourceHandle);
    delete s;
    return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cuda_cpu::set_error(cuda_cpu::sticky_or(cudaSuccess)); }
inline cudaError_t cudaStreamQuery(cudaStream_t) { return cuda_cpu::sticky_or(cudaSuccess); }
inline cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t e, unsigned = 0) {
    CUDA_CPU_ENTRY();
    return e == nullptr ? cuda_cpu::set_error(cudaErrorInvalidResourceHandle) : cudaSuccess;
}

inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags) {
    CUDA_CPU_ENTRY();
    if (e == nullptr) return cuda_cpu::set_error(cudaErrorInvalidValue);
    *e = new CUevent_st{flags, 0.0, 0};
    return cudaSuccess;
}
inline cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, cudaEventDefault); }
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
    if (e == nullptr) return cuda_cpu::set_error(cudaErrorInvalidResourceHandle);
    delete e;
    return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t = 0) {
    CUDA_CPU_ENTRY();
    if (e == nullptr) return cuda_cpu::set_error(cudaErrorInvalidResourceHandle);
    e->t = cuda_cpu::now_s();
    e->recorded = 1;
    return cudaSuccess;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    if (e == nullptr) return cuda_cpu::set_error(cudaErrorInvalidResourceHandle);
    return cuda_cpu::set_error(cuda_cpu::sticky_or(cudaSuccess));
}
inline cudaError_t cudaEventQuery(cudaEvent_t e) {
    if (e == nullptr) return cuda_cpu::set_error(cudaErrorInvalidResourceHandle);
    return cuda_cpu::sticky_or(cudaSuccess);
}
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
    if (ms == nullptr || a == nullptr || b == nullptr) return cuda_cpu::set_error(cudaErrorInvalidResourceHandle);
    if ((a->flags | b->flags) & cudaEventDisableTiming) return cuda_cpu::set_error(cudaErrorInvalidResourceHandle);
    if (!a->recorded || !b->recorded) return cuda_cpu::set_error(cudaErrorInvalidResourceHandle);
    *ms = (float)(1e3 * (b->t - a->t));
    return cudaSuccess;
}

#endif  // CUDA_CPU_RUNTIME_H
