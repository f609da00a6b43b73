// Checked wrappers for file and memory calls. Each failure prints one line naming
// the file (or the size) and the source location, then exits non-zero.
#ifndef LLMC_UTILS_H
#define LLMC_UTILS_H

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>

// OpenMP pragma that disappears (without a warning) when built without OpenMP
#ifndef OMP_PRAGMA
#ifdef _OPENMP
#define OMP_PRAGMA_STR(x) _Pragma(#x)
#define OMP_PRAGMA(x) OMP_PRAGMA_STR(omp x)
#else
#define OMP_PRAGMA(x)
#endif
#endif

// How an error ends the program: exit 1. Built with -DLLMC_FATAL_HOOK (fuzz harnesses), the program's own
// llmc_fatal_hook() runs first (it may longjmp back to treat the error as a rejected input); exit 1 if it returns.
#ifdef LLMC_FATAL_HOOK
void llmc_fatal_hook(void);
#define LLMC_FATAL_EXIT() do { llmc_fatal_hook(); exit(EXIT_FAILURE); } while (0)
#else
#define LLMC_FATAL_EXIT() exit(EXIT_FAILURE)
#endif

// prints "error: <message>" and exits 1; the one way a user-facing error ends the program
#define fatalf(...) do { fprintf(stderr, "error: "); fprintf(stderr, __VA_ARGS__); \
                         fprintf(stderr, "\n"); LLMC_FATAL_EXIT(); } while (0)

static inline FILE* fopen_check(const char* path, const char* mode, const char* file, int line) {
    FILE* fp = fopen(path, mode);
    if (fp == NULL) {
        fprintf(stderr, "error: cannot open '%s' (mode %s): %s [%s:%d]\n", path, mode, strerror(errno), file, line);
        LLMC_FATAL_EXIT();
    }
    return fp;
}
#define fopenCheck(path, mode) fopen_check(path, mode, __FILE__, __LINE__)

// fread that fails on a short read; `what` names the file in the message
static inline void fread_check(void* ptr, size_t size, size_t nmemb, FILE* stream, const char* what,
                               const char* file, int line) {
    size_t got = fread(ptr, size, nmemb, stream);
    if (got != nmemb) {
        if (feof(stream)) {
            fprintf(stderr, "error: '%s' is truncated: wanted %zu items of %zu bytes, got %zu [%s:%d]\n",
                    what, nmemb, size, got, file, line);
        } else {
            fprintf(stderr, "error: read failed on '%s': %s [%s:%d]\n", what, strerror(errno), file, line);
        }
        LLMC_FATAL_EXIT();
    }
}
#define freadCheck(ptr, size, nmemb, stream, what) fread_check(ptr, size, nmemb, stream, what, __FILE__, __LINE__)

static inline void fwrite_check(const void* ptr, size_t size, size_t nmemb, FILE* stream, const char* what,
                                const char* file, int line) {
    size_t put = fwrite(ptr, size, nmemb, stream);
    if (put != nmemb) {
        fprintf(stderr, "error: write failed on '%s': %s [%s:%d]\n", what, strerror(errno), file, line);
        LLMC_FATAL_EXIT();
    }
}
#define fwriteCheck(ptr, size, nmemb, stream, what) fwrite_check(ptr, size, nmemb, stream, what, __FILE__, __LINE__)

static inline void fclose_check(FILE* fp, const char* what, const char* file, int line) {
    if (fclose(fp) != 0) {
        fprintf(stderr, "error: close failed on '%s': %s [%s:%d]\n", what, strerror(errno), file, line);
        LLMC_FATAL_EXIT();
    }
}
#define fcloseCheck(fp, what) fclose_check(fp, what, __FILE__, __LINE__)

static inline void fseek_check(FILE* fp, long off, int whence, const char* what, const char* file, int line) {
    if (fseek(fp, off, whence) != 0) {
        fprintf(stderr, "error: seek failed on '%s': %s [%s:%d]\n", what, strerror(errno), file, line);
        LLMC_FATAL_EXIT();
    }
}
#define fseekCheck(fp, off, whence, what) fseek_check(fp, off, whence, what, __FILE__, __LINE__)

// size of an open file in bytes
static inline long file_size_check(FILE* fp, const char* what, const char* file, int line) {
    long cur = ftell(fp);
    fseek_check(fp, 0, SEEK_END, what, file, line);
    long size = ftell(fp);
    fseek_check(fp, cur, SEEK_SET, what, file, line);
    if (size < 0) {
        fprintf(stderr, "error: cannot size '%s' [%s:%d]\n", what, file, line);
        LLMC_FATAL_EXIT();
    }
    return size;
}
#define fileSizeCheck(fp, what) file_size_check(fp, what, __FILE__, __LINE__)

// 64-byte aligned allocation (AVX-512 lines); free with free()
static inline void* malloc_check(size_t size, const char* file, int line) {
    void* ptr = NULL;
    size_t rounded = (size + 63) & ~(size_t)63;
    if (rounded == 0) rounded = 64;
    if (posix_memalign(&ptr, 64, rounded) != 0 || ptr == NULL) {
        fprintf(stderr, "error: out of memory allocating %zu bytes [%s:%d]\n", size, file, line);
        LLMC_FATAL_EXIT();
    }
    return ptr;
}
#define mallocCheck(size) malloc_check(size, __FILE__, __LINE__)

static inline void* calloc_check(size_t size, const char* file, int line) {
    void* ptr = malloc_check(size, file, line);
    memset(ptr, 0, size);
    return ptr;
}
#define callocCheck(size) calloc_check(size, __FILE__, __LINE__)

#endif // LLMC_UTILS_H
