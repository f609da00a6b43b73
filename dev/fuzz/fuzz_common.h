// Shared pieces of the libFuzzer harnesses in dev/fuzz (built by `make fuzz-smoke` with clang
// -fsanitize=fuzzer,address,undefined -DLLMC_FATAL_HOOK).
//
// - A parser's error exit (fatalf and the Check wrappers of llmc/utils.h) calls llmc_fatal_hook(), which
//   longjmps back into the harness: a clean `error:` line is a rejected input, not a failure. Crashes and
//   sanitizer reports stay failures.
// - fopen/fclose and posix_memalign/free of the llmc code are tracked (macros below, defined after the system
//   headers): after a rejection the harness closes and frees what the parser left behind (in the trainer the
//   process ends there), so that neither file descriptors nor memory pile up over millions of inputs. An
//   accepted input must leave nothing behind once its module's free function ran; otherwise the harness aborts
//   (a leak on the success path).
// - The input is handed to the parsers as a file: a memfd, opened by path through /proc/self/fd/N.
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#define _GNU_SOURCE
// every system header the llmc modules and train_gpt2.c include, before the tracking macros
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <stddef.h>
#include <stdarg.h>
#include <string.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <time.h>
#include <setjmp.h>
#include <glob.h>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/mman.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

// ---------------------------------------------------------------------------------------------
// error exits -> longjmp

static jmp_buf fuzz_jmp;
static int fuzz_armed = 0;

void llmc_fatal_hook(void) {
    if (fuzz_armed) {
        fuzz_armed = 0;
        longjmp(fuzz_jmp, 1);
    }
}

// Use in LLVMFuzzerTestOneInput (objects the body sets and the rejection branch reads must be static):
//   fuzz_armed = 1;
//   if (setjmp(fuzz_jmp) == 0) { parse, use, free; fuzz_armed = 0; fuzz_expect_released("..."); }
//   else { fuzz_release(); }
// ---------------------------------------------------------------------------------------------
// tracking of files and allocations

#define FUZZ_MAX_TRACKED 65536
static FILE* fuzz_files[FUZZ_MAX_TRACKED];
static int fuzz_nfiles = 0;
static void* fuzz_ptrs[FUZZ_MAX_TRACKED];
static int fuzz_nptrs = 0;

static inline void fuzz_track(void** list, int* n, void* p) {
    if (*n >= FUZZ_MAX_TRACKED) {
        fprintf(stderr, "fuzz: more than %d live files or allocations\n", FUZZ_MAX_TRACKED);
        abort();
    }
    list[(*n)++] = p;
}

static inline void fuzz_untrack(void** list, int* n, void* p) {
    for (int i = *n - 1; i >= 0; i--) {
        if (list[i] == p) {
            list[i] = list[--*n];
            return;
        }
    }
}

static inline FILE* fuzz_fopen(const char* path, const char* mode) {
    FILE* fp = fopen(path, mode);
    if (fp != NULL) fuzz_track((void**)fuzz_files, &fuzz_nfiles, fp);
    return fp;
}

static inline int fuzz_fclose(FILE* fp) {
    fuzz_untrack((void**)fuzz_files, &fuzz_nfiles, fp);
    return fclose(fp);
}

static inline int fuzz_posix_memalign(void** p, size_t align, size_t size) {
    int rc = posix_memalign(p, align, size);
    if (rc == 0 && *p != NULL) fuzz_track(fuzz_ptrs, &fuzz_nptrs, *p);
    return rc;
}

static inline void fuzz_free(void* p) {
    if (p == NULL) return;
    fuzz_untrack(fuzz_ptrs, &fuzz_nptrs, p);
    free(p);
}

// after a rejection: close and free what the parser left behind
static inline void fuzz_release(void) {
    while (fuzz_nfiles > 0) fclose(fuzz_files[--fuzz_nfiles]);
    while (fuzz_nptrs > 0) free(fuzz_ptrs[--fuzz_nptrs]);
}

// after an accepted input and the module's free functions: nothing may be left
static inline void fuzz_expect_released(const char* what) {
    if (fuzz_nfiles != 0 || fuzz_nptrs != 0) {
        fprintf(stderr, "fuzz: %s left %d open files and %d allocations after an accepted input\n", what,
                fuzz_nfiles, fuzz_nptrs);
        abort();
    }
}

#define fopen fuzz_fopen
#define fclose fuzz_fclose
#define posix_memalign fuzz_posix_memalign
#define free fuzz_free

// ---------------------------------------------------------------------------------------------
// the input as a file

static int fuzz_fd = -1;
static char fuzz_path[64];

// writes data to the harness's memfd; returns its path
static inline const char* fuzz_write_file(const uint8_t* data, size_t size) {
    if (fuzz_fd < 0) {
        fuzz_fd = memfd_create("fuzz_input", 0);
        if (fuzz_fd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(fuzz_path, sizeof(fuzz_path), "/proc/self/fd/%d", fuzz_fd);
    }
    if (ftruncate(fuzz_fd, 0) != 0) abort();
    size_t off = 0;
    while (off < size) {
        ssize_t k = pwrite(fuzz_fd, data + off, size - off, (off_t)off);
        if (k <= 0) abort();
        off += (size_t)k;
    }
    return fuzz_path;
}

// little-endian bytes of the input, 0 past its end
static inline uint32_t fuzz_u8(const uint8_t* data, size_t size, size_t i) { return i < size ? data[i] : 0; }
static inline uint32_t fuzz_u16(const uint8_t* data, size_t size, size_t i) {
    return fuzz_u8(data, size, i) | (fuzz_u8(data, size, i + 1) << 8);
}

#endif // FUZZ_COMMON_H
