// AddressSanitizer helpers for hot kernels. Under ASan / UBSan the per-access checks keep a GEMM micro-kernel's
// accumulators out of registers (the sanitizer build's GEMM ran many times slower than the rest); such a kernel is
// marked LLMC_NO_SANITIZE and checks its whole regions once per call with sanitize_check_region instead, which
// reports like ASan and aborts. In builds without ASan both are empty.
#ifndef LLMC_SANITIZE_H
#define LLMC_SANITIZE_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define LLMC_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LLMC_ASAN 1
#endif
#endif

#ifdef LLMC_ASAN
#include <sanitizer/asan_interface.h>
#define LLMC_NO_SANITIZE __attribute__((no_sanitize("address", "undefined")))
// [p, p + bytes) must be addressable; else an ASan-style report naming the kernel and region, then abort
static inline void sanitize_check_region(const char* kernel, const char* what, const void* p, size_t bytes) {
    void* bad = __asan_region_is_poisoned((void*)p, bytes);
    if (bad == NULL) return;
    fprintf(stderr, "ERROR: AddressSanitizer: %s: %s [%p, +%zu) is not addressable at %p\n", kernel, what, p, bytes,
            bad);
    __asan_describe_address(bad);
    abort();
}
#else
#define LLMC_NO_SANITIZE
static inline void sanitize_check_region(const char* kernel, const char* what, const void* p, size_t bytes) {
    (void)kernel; (void)what; (void)p; (void)bytes;
}
#endif

#endif  // LLMC_SANITIZE_H
