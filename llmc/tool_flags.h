// Flags of the small tools (eval_gpt2, export_gpt2): one table per tool, `-flag value` pairs parsed from it and the
// usage text generated from it. Bad input: one `error:` line naming the flag, exit 1 (fatalf).
#ifndef LLMC_TOOL_FLAGS_H
#define LLMC_TOOL_FLAGS_H

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "utils.h"

typedef enum { TOOL_STRING, TOOL_INT, TOOL_DOUBLE } ToolFlagType;

typedef struct {
    const char* flag;  // "-c"
    ToolFlagType type;
    void* dst;         // const char** / int* / double*, holding the default before tool_flags_parse
    const char* help;  // one line; the default is appended from *dst
} ToolFlag;

// "%d" / "%g" / the string of *dst, "none" for NULL
static inline void tool_flag_value(const ToolFlag* f, char* buf, size_t n) {
    if (f->type == TOOL_INT) snprintf(buf, n, "%d", *(int*)f->dst);
    else if (f->type == TOOL_DOUBLE) snprintf(buf, n, "%g", *(double*)f->dst);
    else snprintf(buf, n, "%s", *(const char**)f->dst ? *(const char**)f->dst : "none");
}

static inline void tool_flags_usage(FILE* fp, const char* synopsis, const ToolFlag* flags, int n) {
    fprintf(fp, "Usage: %s\n", synopsis);
    for (int i = 0; i < n; i++) {
        char v[256];
        tool_flag_value(&flags[i], v, sizeof(v));
        fprintf(fp, "  %-6s %s [%s]\n", flags[i].flag, flags[i].help, v);
    }
}

// sets the flags of argv[1..argc) in their dst; --help / -h prints the usage and exits 0
static inline void tool_flags_parse(int argc, char** argv, const char* synopsis, const ToolFlag* flags, int n) {
    for (int i = 1; i < argc; i += 2) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            tool_flags_usage(stdout, synopsis, flags, n);
            exit(0);
        }
        const ToolFlag* f = NULL;
        for (int k = 0; k < n; k++)
            if (strcmp(argv[i], flags[k].flag) == 0) f = &flags[k];
        if (f == NULL) fatalf("flag %s: unknown flag (--help for the flags)", argv[i]);
        if (i + 1 >= argc) fatalf("flag %s: missing value (--help for the flags)", argv[i]);
        const char* v = argv[i + 1];
        char* end = NULL;
        errno = 0;
        if (f->type == TOOL_STRING) {
            *(const char**)f->dst = v;
        } else if (f->type == TOOL_INT) {
            long x = strtol(v, &end, 10);
            if (*v == '\0' || *end != '\0' || errno != 0 || x < INT_MIN || x > INT_MAX)
                fatalf("flag %s: '%s' is not an integer", f->flag, v);
            *(int*)f->dst = (int)x;
        } else {
            double x = strtod(v, &end);
            if (*v == '\0' || *end != '\0' || errno != 0 || !isfinite(x))
                fatalf("flag %s: '%s' is not a finite number", f->flag, v);
            *(double*)f->dst = x;
        }
    }
}

#endif // LLMC_TOOL_FLAGS_H
