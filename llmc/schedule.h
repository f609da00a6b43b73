// Learning rate schedules. step is 0-based; N = train_num_batches (total steps), Wu = warmup steps,
// lr = peak learning rate, lr_min = lr * final_learning_rate_frac.
//   all types, step < Wu:  lr * (step + 1) / Wu                         (linear warmup)
//   constant:              lr
//   cosine:                r = (step - Wu) / (N - Wu), clamped to [0, 1]
//                          lr_min + 0.5 * (1 + cos(pi * r)) * (lr - lr_min)
//   linear:                r as for cosine;  lr - r * (lr - lr_min)
//   wsd (warmup-stable-decay): D = max(1, round(0.2 * N)) decay steps, S = N - D
//                          step < S: lr;  else r = (step - S) / D clamped to [0, 1],
//                          lr_min + (1 - sqrt(r)) * (lr - lr_min)
// When N <= Wu (no steps after warmup), cosine and linear stay at lr after warmup.
// Arithmetic in double, result rounded once to float.
#ifndef LLMC_SCHEDULE_H
#define LLMC_SCHEDULE_H

#include <math.h>
#include <string.h>
#include "utils.h"

typedef enum { LR_COSINE = 0, LR_LINEAR = 1, LR_CONSTANT = 2, LR_WSD = 3 } LRScheduleType;

#define LR_SCHEDULE_NAMES "cosine|linear|constant|wsd"

typedef struct {
    LRScheduleType type;
    float learning_rate;
    int warmup_iterations;
    int train_num_batches;
    float final_learning_rate_frac;
} LRScheduler;

// type from its name; -1 if unknown
static inline int lr_schedule_type_from_name(const char* name) {
    if (name == NULL) return -1;
    if (strcmp(name, "cosine") == 0) return LR_COSINE;
    if (strcmp(name, "linear") == 0) return LR_LINEAR;
    if (strcmp(name, "constant") == 0) return LR_CONSTANT;
    if (strcmp(name, "wsd") == 0) return LR_WSD;
    return -1;
}

// exits with one line naming -k on an unknown type
static inline void lr_scheduler_init(LRScheduler* s, const char* type, float learning_rate, int warmup_iterations,
                                     int train_num_batches, float final_learning_rate_frac) {
    int t = lr_schedule_type_from_name(type);
    if (t < 0) fatalf("flag -k: unknown lr schedule '%s' (want one of %s)", type ? type : "(null)", LR_SCHEDULE_NAMES);
    s->type = (LRScheduleType)t;
    s->learning_rate = learning_rate;
    s->warmup_iterations = warmup_iterations < 0 ? 0 : warmup_iterations;
    s->train_num_batches = train_num_batches;
    s->final_learning_rate_frac = final_learning_rate_frac;
}

static inline float lr_scheduler_get(const LRScheduler* s, int step) {
    double lr = s->learning_rate;
    double lr_min = lr * (double)s->final_learning_rate_frac;
    int wu = s->warmup_iterations, n = s->train_num_batches;
    if (step < wu) return (float)(lr * (double)(step + 1) / (double)wu);
    if (s->type == LR_CONSTANT) return (float)lr;
    if (s->type == LR_WSD) {
        int d = (int)floor(0.2 * (double)n + 0.5);
        if (d < 1) d = 1;
        int start = n - d;
        if (step < start) return (float)lr;
        double r = (double)(step - start) / (double)d;
        if (r > 1.0) r = 1.0;
        return (float)(lr_min + (1.0 - sqrt(r)) * (lr - lr_min));
    }
    if (n <= wu) return (float)lr;
    double r = (double)(step - wu) / (double)(n - wu);
    if (r < 0.0) r = 0.0;
    if (r > 1.0) r = 1.0;
    if (s->type == LR_LINEAR) return (float)(lr - r * (lr - lr_min));
    // cosine
    const double pi = 3.14159265358979323846;
    return (float)(lr_min + 0.5 * (1.0 + cos(pi * r)) * (lr - lr_min));
}

#endif // LLMC_SCHEDULE_H
