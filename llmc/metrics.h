// Evaluation metrics of both trainers: the posterior-predictive (BMA) loss as a running log-sum-exp over samples
// (spec §8) and the expected calibration error of the next-token distribution.
#ifndef LLMC_METRICS_H
#define LLMC_METRICS_H

#include <stddef.h>
#include <string.h>
#include <math.h>
#include "utils.h"

// BMA over S samples, per token: lse = logsumexp_s(-loss_s); sample s = 0 initialises lse (n entries)
static inline void train_bma_accumulate(float* lse, const float* losses, size_t n, int s) {
    for (size_t i = 0; i < n; i++) {
        double lp = -(double)losses[i];
        if (s == 0) {
            lse[i] = (float)lp;
        } else {
            double a = lse[i], mx = a > lp ? a : lp;
            lse[i] = (float)(mx + log1p(exp(-fabs(a - lp))));
        }
    }
}

// BMA loss = -mean_t (lse(t) - log S) over n tokens
static inline float train_bma_loss(const float* lse, size_t n, int S) {
    double sum = 0.0, logS = log((double)S);
    for (size_t i = 0; i < n; i++) sum += (double)lse[i] - logS;
    return (float)(-sum / (double)n);
}

// Next-token calibration: expected calibration error over ECE_BINS equal-width bins of the confidence (the
// largest predicted probability): ECE = sum_b n_b / N |accuracy_b - mean confidence_b|; a prediction is correct
// when the target is the first index of the largest probability.
#define ECE_BINS 15
typedef struct {
    double n[ECE_BINS], conf[ECE_BINS], correct[ECE_BINS];  // per bin: tokens, sum of confidences, correct tokens
} EceBins;

static inline void ece_reset(EceBins* e) { memset(e, 0, sizeof(*e)); }

// confidence of one distribution, its bin, and whether the target is its first argmax
static inline int ece_bin_of(const float* probs, int V, int target, float* conf, int* correct) {
    int arg = 0;
    float best = probs[0];
    for (int v = 1; v < V; v++) {
        if (probs[v] > best) {
            best = probs[v];
            arg = v;
        }
    }
    int b = (int)(best * ECE_BINS);
    *conf = best;
    *correct = arg == target;
    return b < 0 ? 0 : b >= ECE_BINS ? ECE_BINS - 1 : b;
}

// one token given its confidence and whether the target is the first argmax (a device computed them)
static inline void ece_add_token(EceBins* e, float conf, int correct) {
    int b = (int)(conf * ECE_BINS);
    b = b < 0 ? 0 : b >= ECE_BINS ? ECE_BINS - 1 : b;
    e->n[b] += 1.0;
    e->conf[b] += conf;
    e->correct[b] += correct;
}

// one token's predictive distribution (V probabilities) and its target
static inline void ece_add(EceBins* e, const float* probs, int V, int target) {
    float conf;
    int correct;
    ece_bin_of(probs, V, target, &conf, &correct);
    ece_add_token(e, conf, correct);
}

// n tokens: distribution t at probs + t * stride (V entries), target targets[t]; OpenMP over the tokens
static inline void ece_add_batch(EceBins* e, const float* probs, size_t n, int V, size_t stride, const int* targets) {
    double* bn = e->n;
    double* bc = e->conf;
    double* bk = e->correct;
    OMP_PRAGMA(parallel for schedule(static) reduction(+:bn[:ECE_BINS], bc[:ECE_BINS], bk[:ECE_BINS]))
    for (size_t t = 0; t < n; t++) {
        float conf;
        int correct;
        int b = ece_bin_of(probs + t * stride, V, targets[t], &conf, &correct);
        bn[b] += 1.0;
        bc[b] += conf;
        bk[b] += correct;
    }
}

static inline double ece_value(const EceBins* e) {
    double total = 0.0, sum = 0.0;
    for (int b = 0; b < ECE_BINS; b++) total += e->n[b];
    if (total == 0.0) return 0.0;
    for (int b = 0; b < ECE_BINS; b++)
        if (e->n[b] > 0.0) sum += e->n[b] / total * fabs(e->correct[b] / e->n[b] - e->conf[b] / e->n[b]);
    return sum;
}

// fraction of the tokens whose target is the first argmax (the next-token accuracy)
static inline double ece_accuracy(const EceBins* e) {
    double total = 0.0, correct = 0.0;
    for (int b = 0; b < ECE_BINS; b++) total += e->n[b], correct += e->correct[b];
    return total > 0.0 ? correct / total : 0.0;
}

#endif // LLMC_METRICS_H
