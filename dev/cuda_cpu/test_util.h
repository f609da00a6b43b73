// Shared by the CPU backend's C++ tests (test_cublas.cpp, test_nccl.cpp): printf-style formatting to a string.
#ifndef CUDA_CPU_TEST_UTIL_H
#define CUDA_CPU_TEST_UTIL_H

#include <stdarg.h>
#include <stdio.h>
#include <string>

static std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
static std::string fmt(const char* f, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof(buf), f, ap);
    va_end(ap);
    return buf;
}

#endif
