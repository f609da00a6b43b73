// main.log in the output dir: one line per event, `s:<step>` then space-separated key:value pairs,
//   s:10 trl:5.1234 lr:0.0006 norm:1.2300 ms:120.5 tok/s:8500
//   s:20 tel:5.0123
// Keys: trl = train loss, tel = val loss, lr, norm = grad norm, ms = step time, tok/s = throughput.
// Only rank 0 writes; a NULL dir disables the logger and every call is a no-op.
#ifndef LLMC_LOGGER_H
#define LLMC_LOGGER_H

#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <errno.h>
#include <sys/types.h>
#include <sys/stat.h>
#include "utils.h"

#define LOGGER_PATH_MAX 4096

typedef struct {
    FILE* fp;  // NULL = disabled
    char path[LOGGER_PATH_MAX];
} Logger;

// mkdir -p: creates dir and its missing parents; 0 on success, -1 with errno set
static inline int logger_mkdir_p(const char* dir) {
    char buf[LOGGER_PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        buf[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) != 0) return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

// Opens <log_dir>/main.log (created with the dir if needed); truncates unless resume (then appends).
// Exits with one line naming the directory if it cannot be created or written.
static inline void logger_init(Logger* l, const char* log_dir, int process_rank, int resume) {
    l->fp = NULL;
    l->path[0] = '\0';
    if (log_dir == NULL || process_rank != 0) return;
    if (logger_mkdir_p(log_dir) != 0) fatalf("cannot create output dir '%s': %s", log_dir, strerror(errno));
    int k = snprintf(l->path, sizeof(l->path), "%s/main.log", log_dir);
    if (k < 0 || (size_t)k >= sizeof(l->path)) fatalf("output dir path '%s' is too long", log_dir);
    l->fp = fopen(l->path, resume ? "a" : "w");
    if (l->fp == NULL) fatalf("cannot write '%s' in output dir '%s': %s", l->path, log_dir, strerror(errno));
}

// writes "s:<step> " + formatted text + "\n" and flushes
static inline void logger_log(Logger* l, int step, const char* fmt, ...) {
    if (l == NULL || l->fp == NULL) return;
    fprintf(l->fp, "s:%d ", step);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(l->fp, fmt, ap);
    va_end(ap);
    fputc('\n', l->fp);
    if (fflush(l->fp) != 0) fatalf("write failed on '%s': %s", l->path, strerror(errno));
}

// step line: train loss, lr, grad norm, ms, tok/s, tokens per step; mega >= 0: PoCo's mega-batch tokens so far
static inline void logger_log_train(Logger* l, int step, float train_loss, float lr, float grad_norm, double ms,
                                    double tokens_per_s, long long tokens, long long mega) {
    char extra[48] = "";
    if (mega >= 0) snprintf(extra, sizeof(extra), " mega:%lld", mega);
    logger_log(l, step, "trl:%.4f lr:%.6g norm:%.4f ms:%.1f tok/s:%.0f tok:%lld%s", (double)train_loss, (double)lr,
               (double)grad_norm, ms, tokens_per_s, tokens, extra);
}

// val line: val loss at the mean weights; bma (not NAN): BMA val loss; ece >= 0: calibration error at the mean;
// bece >= 0 (with bma): of the BMA predictive
static inline void logger_log_val(Logger* l, int step, float val_loss, float bma, double ece, double bece) {
    char extra[96] = "";
    int k = 0;
    if (!isnan(bma)) k += snprintf(extra + k, sizeof(extra) - (size_t)k, " bma:%.4f", (double)bma);
    if (ece >= 0.0) k += snprintf(extra + k, sizeof(extra) - (size_t)k, " ece:%.4f", ece);
    if (!isnan(bma) && bece >= 0.0) snprintf(extra + k, sizeof(extra) - (size_t)k, " bece:%.4f", bece);
    logger_log(l, step, "tel:%.4f%s", (double)val_loss, extra);
}

static inline void logger_free(Logger* l) {
    if (l->fp) fclose(l->fp);
    l->fp = NULL;
}

#endif // LLMC_LOGGER_H
