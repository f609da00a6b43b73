// Step guard: decides, between the gradient computation and the update of an optimizer step, whether the update is
// applied or skipped. Shared by train_gpt2.c and train_gpt2.cu (host code, target-independent).
//   - non-finite loss or gradient norm (NaN/Inf): always skipped;
//   - loss spike (-sl Z) / grad-norm spike (-sg Z): skipped when the z-score of the value against a running window of
//     the last OUTLIER_WINDOW finite values exceeds Z (0 = off), as llm.c's -sl / -sg. The z-score is defined only
//     once the window is full; until then no spike is detected. Every finite value enters its window, also that of a
//     skipped step, so that a lasting level shift is absorbed instead of skipping forever.
// Test-only: steps [nan_step, nan_step + nan_count) get a NaN written into their gradient before the norm
// (IVON_TEST_NAN_STEP, read once by train_run_parse in llmc/train_common.h).
#ifndef LLMC_OUTLIER_H
#define LLMC_OUTLIER_H

#include <math.h>
#include <string.h>

#define OUTLIER_WINDOW 128

typedef struct {
    double values[OUTLIER_WINDOW];  // ring buffer
    int window;                     // capacity in use, 2..OUTLIER_WINDOW
    int count;                      // values held, <= window
    int next;                       // ring position of the next value
} OutlierDetector;

static inline void outlier_init(OutlierDetector* d, int window) {
    memset(d, 0, sizeof(*d));
    d->window = window < 2 ? 2 : window > OUTLIER_WINDOW ? OUTLIER_WINDOW : window;
}

// z-score (x - mean) / std of x against the held values (population std); NAN until the window is full, 0 when the
// window has no spread
static inline double outlier_zscore(const OutlierDetector* d, double x) {
    if (d->count < d->window) return NAN;
    double sum = 0.0;
    for (int i = 0; i < d->count; i++) sum += d->values[i];
    double mean = sum / d->count;
    double ss = 0.0;
    for (int i = 0; i < d->count; i++) ss += (d->values[i] - mean) * (d->values[i] - mean);
    double sd = sqrt(ss / d->count);
    if (!(sd > 0.0)) return 0.0;
    return (x - mean) / sd;
}

// adds a value (the oldest drops out once the window is full); non-finite values are ignored
static inline void outlier_push(OutlierDetector* d, double x) {
    if (!isfinite(x)) return;
    d->values[d->next] = x;
    d->next = (d->next + 1) % d->window;
    if (d->count < d->window) d->count++;
}

typedef enum {
    STEP_APPLIED = 0,
    STEP_SKIP_NONFINITE = 1,   // loss or grad norm NaN/Inf
    STEP_SKIP_LOSS_SPIKE = 2,  // loss z-score > -sl
    STEP_SKIP_NORM_SPIKE = 3,  // grad norm z-score > -sg
} StepVerdict;

static inline const char* step_verdict_name(int v) {
    switch (v) {
        case STEP_APPLIED: return "applied";
        case STEP_SKIP_NONFINITE: return "non-finite";
        case STEP_SKIP_LOSS_SPIKE: return "loss-spike";
        case STEP_SKIP_NORM_SPIKE: return "norm-spike";
    }
    return "?";
}

typedef struct {
    double loss_z_max;  // -sl; 0 = off
    double norm_z_max;  // -sg; 0 = off
    OutlierDetector loss, norm;
    int nan_step, nan_count;  // test-only NaN injection; nan_count 0 = none
} StepGuard;

static inline void step_guard_init(StepGuard* g, double loss_z_max, double norm_z_max, int window) {
    memset(g, 0, sizeof(*g));
    g->loss_z_max = loss_z_max;
    g->norm_z_max = norm_z_max;
    outlier_init(&g->loss, window);
    outlier_init(&g->norm, window);
}

// 1 if the test-only injection puts a NaN into the gradient of `step` (g may be NULL)
static inline int step_guard_inject_nan(const StepGuard* g, int step) {
    return g != NULL && g->nan_count > 0 && step >= g->nan_step && step - g->nan_step < g->nan_count;
}

// Verdict for a step with mean loss `loss` and gradient norm `norm` (StepVerdict); the z-scores go to *z_loss and
// *z_norm (NAN when undefined). g == NULL: only the finite check.
static inline int step_guard_decide(StepGuard* g, float loss, float norm, double* z_loss, double* z_norm) {
    *z_loss = NAN;
    *z_norm = NAN;
    if (!isfinite(loss) || !isfinite(norm)) return STEP_SKIP_NONFINITE;
    if (g == NULL) return STEP_APPLIED;
    *z_loss = outlier_zscore(&g->loss, (double)loss);
    *z_norm = outlier_zscore(&g->norm, (double)norm);
    outlier_push(&g->loss, (double)loss);
    outlier_push(&g->norm, (double)norm);
    if (g->loss_z_max > 0.0 && *z_loss > g->loss_z_max) return STEP_SKIP_LOSS_SPIKE;
    if (g->norm_z_max > 0.0 && *z_norm > g->norm_z_max) return STEP_SKIP_NORM_SPIKE;
    return STEP_APPLIED;
}

#endif // LLMC_OUTLIER_H
