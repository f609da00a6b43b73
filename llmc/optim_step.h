// One optimizer step for every target: the order of an AdamW, IVON or IVON-PoCo(Mo) step (spec §2.4, §6.3),
// the PoCo anchor-refresh schedule, the per-micro-batch clip, the step guard and the statistics, written once.
// A target (train_gpt2.c now, train_gpt2.cu next) provides a table of operations on its buffers (OptimOps):
// gradients of a micro-batch, sampling, accumulation, collectives and the update passes.
#ifndef LLMC_OPTIM_STEP_H
#define LLMC_OPTIM_STEP_H

#include <math.h>
#include <string.h>
#include "utils.h"
#include "dist.h"
#include "optim.h"
#include "outlier.h"

// next (B, T) micro-batch: inputs and targets stay valid until the next call
typedef void (*BatchFn)(void* ctx, const int** inputs, const int** targets);

// what one optimizer step did (for the log)
typedef struct {
    float loss;             // mean loss of the step's K micro-batches (IVON/PoCo: at the samples theta_in)
    float grad_norm;        // AdamW: global norm after accumulation; IVON/PoCo: mean of the micro-batch norms
    int micro_batches;      // K
    long long tokens;       // K * B * T
    long long mega_tokens;  // PoCo: tokens of all anchor refreshes so far
    int anchor_refreshed;   // PoCo: 1 if an anchor refresh ran before this step
    int verdict;            // StepVerdict (llmc/outlier.h): STEP_APPLIED, or why the update was skipped
    double z_loss, z_norm;  // z-scores of loss and grad norm against their windows (NAN when undefined)
} StepStats;

// where a sample is drawn: theta = m + sigma(h) eps (mean) or m_out + sigma(h_out) eps (anchor)
enum { OPT_AT_MEAN = 0, OPT_AT_ANCHOR = 1 };
// accumulator pairs: IN = (acc_g, acc_ng); OUT = (acc_g_out, acc_ng_out), also the mega-batch (gbar, noise-grad)
enum { OPT_ACC_IN = 0, OPT_ACC_OUT = 1 };
// gradient sources: the last backward's, or the copy made by save_grads
enum { OPT_GRADS = 0, OPT_GRADS_SAVED = 1 };

// The operations of one target on its model t. Flat parameter indices, groups by the parameter table.
typedef struct {
    void* t;
    const DistInfo* dist;
    long long micro_tokens;          // B * T of one micro-batch on one process
    int* anchor_step;                // PoCo: step before which the anchor was taken, -1 = none
    long long* mega_tokens;          // PoCo: tokens of all anchor refreshes so far
    IvonUpdateStats* last_update;    // statistics of the last IVON/PoCo update
    // gradients
    void (*zero_grad)(void* t);
    // grads +=; count_loss: the micro-batch's mean loss into the step's sum (a GPU keeps it on the device)
    void (*forward_backward)(void* t, const int* inputs, const int* targets, float loss_scale, int count_loss);
    double (*loss_sum)(void* t);     // the sum of the counted losses since the last call, then 0: once per step
    void (*poison_grad)(void* t);    // test-only: a NaN in the gradients
    float (*grad_norm)(void* t);
    void (*save_grads)(void* t);     // saved = grads
    float (*diff_norm)(void* t, float gamma);  // || saved - gamma grads ||
    // weights for the forward
    void (*sample)(void* t, int at, const IvonNoiseKey* key);
    void (*restore_mean)(void* t);   // weights = m
    // accumulators (Welford, sample k 1-based); the noise regenerated from key and the h of `at`
    void (*accumulate)(void* t, int acc, int grads, int at, float clip, const IvonNoiseKey* key, int k);
    void (*accumulate_grad)(void* t, int acc, float clip, int k);  // the gradient alone
    // collectives (no-ops with one process)
    void (*reduce_sum)(void* t, double* v, int n);
    float (*adamw_reduce)(void* t);  // mean gradient over the processes (ZeRO-1: own shard); returns its norm
    void (*reduce_acc)(void* t, int poco, int grad_only, const IvonNoiseKey* key_in, const IvonNoiseKey* key_out);
    void (*reduce_mega)(void* t, int with_noise);  // mean of the OUT pair (with_noise 0: its gradient only)
    // updates (ZeRO-1: own shard, then gathered)
    void (*adamw_update)(void* t, const OptimizerConfig* oc, float norm, float lr, int step);
    // the IVON/PoCo update; leaves the weights = the new m
    IvonUpdateStats (*ivon_update)(void* t, const OptimizerConfig* oc, float lr, int step, int poco, float gamma);
    // PoCo anchor: hbar from the OUT noise-grad mean (with_noise) or = h; 1 if gbar and hbar are finite
    int (*mega_finish)(void* t, const OptimizerConfig* oc, int with_noise);
    void (*commit_anchor)(void* t);  // m_out = m, h_out = h, gbar_out, hbar_out = the OUT pair
} OptimOps;

// The function fields of an OptimOps initializer for a target whose operations are named <prefix><field>
// (e.g. OPTIM_OPS_FNS(gpt2_op_) for gpt2_op_zero_grad, gpt2_op_forward_backward, ...).
#define OPTIM_OPS_FNS(p)                                                                                              \
    .zero_grad = p##zero_grad, .forward_backward = p##forward_backward, .loss_sum = p##loss_sum,                     \
    .poison_grad = p##poison_grad,                                                                                  \
    .grad_norm = p##grad_norm, .save_grads = p##save_grads, .diff_norm = p##diff_norm, .sample = p##sample,         \
    .restore_mean = p##restore_mean, .accumulate = p##accumulate, .accumulate_grad = p##accumulate_grad,            \
    .reduce_sum = p##reduce_sum, .adamw_reduce = p##adamw_reduce, .reduce_acc = p##reduce_acc,                      \
    .reduce_mega = p##reduce_mega, .adamw_update = p##adamw_update, .ivon_update = p##ivon_update,                  \
    .mega_finish = p##mega_finish, .commit_anchor = p##commit_anchor

// c = min(1, gc / (norm + 1e-6)) in fp32 (torch clip_grad_norm_); gc <= 0: 1
static inline float optim_clip_scale(double grad_clip, float norm) {
    if (!(grad_clip > 0.0)) return 1.0f;
    float c = (float)grad_clip / (norm + 1e-6f);
    return c < 1.0f ? c : 1.0f;
}

// zero grads, forward and backward (loss scale 1) at the current weights; returns the grad norm; count_loss: the
// loss into the step's sum
static inline float optim_micro_grad(const OptimOps* o, const int* inputs, const int* targets, int poison,
                                     int count_loss) {
    o->zero_grad(o->t);
    o->forward_backward(o->t, inputs, targets, 1.0f, count_loss);
    if (poison) o->poison_grad(o->t);
    return o->grad_norm(o->t);
}

// AdamW: gradients accumulated with loss scale 1/K, averaged over the processes, global clip, update.
static inline void optim_step_adamw(const OptimOps* o, const OptimizerConfig* oc, int step, float lr, int K,
                                    BatchFn next_batch, void* ctx, StepGuard* guard, int poison, StepStats* out) {
    o->zero_grad(o->t);
    for (int j = 0; j < K; j++) {
        const int *inputs, *targets;
        next_batch(ctx, &inputs, &targets);
        o->forward_backward(o->t, inputs, targets, 1.0f / K, 1);
    }
    double loss = o->loss_sum(o->t);
    if (poison) o->poison_grad(o->t);
    o->reduce_sum(o->t, &loss, 1);
    out->loss = (float)(loss / (K * o->dist->world));
    out->grad_norm = o->adamw_reduce(o->t);
    out->verdict = step_guard_decide(guard, out->loss, out->grad_norm, &out->z_loss, &out->z_norm);
    if (out->verdict != STEP_APPLIED) return;
    o->adamw_update(o->t, oc, out->grad_norm, lr, step);
}

// Anchor refresh before `step` (§6.3): the mega-batch estimates gbar_out, hbar_out from kmega micro-batches (over
// all processes) at m + sigma eps_k (stream ANCHOR) or at m, in the OUT accumulators. They become the anchor (with
// m_out = m, h_out = h) only if every norm and estimate is finite; else the previous anchor stays and 0 is
// returned. poison (test-only): a NaN in the first mega-batch gradient.
static inline int optim_poco_refresh(const OptimOps* o, const OptimizerConfig* oc, int step, int kmega,
                                     BatchFn next_batch, void* ctx, int poison) {
    const DistInfo* d = o->dist;
    double nonfinite = 0.0;
    int klocal = kmega / d->world;
    for (int k = 0; k < klocal; k++) {
        const int *inputs, *targets;
        next_batch(ctx, &inputs, &targets);
        IvonNoiseKey key = ivon_noise_key(oc, step, dist_noise_sample(d, k), NOISE_STREAM_ANCHOR);
        if (oc->poco_mega_noise) o->sample(o->t, OPT_AT_MEAN, &key);
        else o->restore_mean(o->t);
        float norm = optim_micro_grad(o, inputs, targets, poison && k == 0, 0);
        if (!isfinite(norm)) nonfinite += 1.0;
        float c = optim_clip_scale(oc->grad_clip, norm);
        if (oc->poco_mega_noise) o->accumulate(o->t, OPT_ACC_OUT, OPT_GRADS, OPT_AT_MEAN, c, &key, k + 1);
        else o->accumulate_grad(o->t, OPT_ACC_OUT, c, k + 1);
        *o->mega_tokens += o->micro_tokens * d->world;
    }
    o->reduce_mega(o->t, oc->poco_mega_noise);
    o->reduce_sum(o->t, &nonfinite, 1);
    int finite = o->mega_finish(o->t, oc, oc->poco_mega_noise);
    if (nonfinite > 0.0 || !finite) return 0;
    o->commit_anchor(o->t);
    *o->anchor_step = step;
    return 1;
}

// The micro-batches of an IVON/PoCo step: per micro-batch j a fresh sample theta_in = m + sigma eps (stream
// SAMPLE), forward/backward, clip, Welford accumulation; PoCo also the same tokens at theta_out = m_out +
// sigma_out eps'. sums: loss, norm at theta_in, count of non-finite norms at theta_out.
static inline void optim_ivon_micro_batches(const OptimOps* o, const OptimizerConfig* oc, int step, int K, int poco,
                                            float gamma, BatchFn next_batch, void* ctx, int poison, double sums[3],
                                            IvonNoiseKey* key_in, IvonNoiseKey* key_out) {
    const DistInfo* d = o->dist;
    for (int j = 0; j < K; j++) {
        const int *inputs, *targets;
        next_batch(ctx, &inputs, &targets);
        int sample = dist_noise_sample(d, j);
        *key_in = ivon_noise_key(oc, step, sample, NOISE_STREAM_SAMPLE);
        o->sample(o->t, OPT_AT_MEAN, key_in);
        float norm_in = optim_micro_grad(o, inputs, targets, poison && j == 0, 1);
        sums[1] += norm_in;
        if (!poco || oc->poco_clip_each) {
            float c = optim_clip_scale(oc->grad_clip, norm_in);
            o->accumulate(o->t, OPT_ACC_IN, OPT_GRADS, OPT_AT_MEAN, c, key_in, j + 1);
        } else {
            o->save_grads(o->t);
        }
        if (!poco) continue;
        *key_out = oc->poco_shared_noise ? *key_in : ivon_noise_key(oc, step, sample, NOISE_STREAM_OUTER);
        o->sample(o->t, OPT_AT_ANCHOR, key_out);
        float norm_out = optim_micro_grad(o, inputs, targets, 0, 0);
        if (!isfinite(norm_out)) sums[2] += 1.0;
        float c_out;
        if (oc->poco_clip_each) {
            c_out = optim_clip_scale(oc->grad_clip, norm_out);
        } else {
            c_out = optim_clip_scale(oc->grad_clip, o->diff_norm(o->t, gamma));
            o->accumulate(o->t, OPT_ACC_IN, OPT_GRADS_SAVED, OPT_AT_MEAN, c_out, key_in, j + 1);
        }
        o->accumulate(o->t, OPT_ACC_OUT, OPT_GRADS, OPT_AT_ANCHOR, c_out, key_out, j + 1);
    }
    sums[0] += o->loss_sum(o->t);
}

// IVON / PoCo: before poco_start plain IVON; from then on an anchor refresh every period steps (first), the
// micro-batches, the guard, the reduction of the accumulators and the update with t = step + 1 (weights = m after).
static inline void optim_step_ivon(const OptimOps* o, const OptimizerConfig* oc, int step, float lr, int K,
                                   BatchFn next_batch, void* ctx, StepGuard* guard, int poison, StepStats* out) {
    const DistInfo* d = o->dist;
    int poco = oc->kind == OPT_POCO && step >= oc->poco_start;
    float gamma = poco_gamma_at(oc, step);
    int anchor_ok = 1;
    // a refresh that failed (non-finite) before any anchor existed is retried at the next step
    if (poco_refresh_at(oc, step) || (poco && *o->anchor_step < 0)) {
        anchor_ok = optim_poco_refresh(o, oc, step, poco_mega_batches(oc, K * d->world), next_batch, ctx, poison);
        out->anchor_refreshed = anchor_ok;
    }
    if (!anchor_ok) {
        // treated as a skipped step: the previous anchor and the state stay, the micro-batches are not drawn
        o->restore_mean(o->t);
        out->loss = NAN;
        out->grad_norm = NAN;
        out->mega_tokens = *o->mega_tokens;
        out->z_loss = out->z_norm = NAN;
        out->verdict = STEP_SKIP_NONFINITE;
        return;
    }
    double sums[3] = {0.0, 0.0, 0.0};
    IvonNoiseKey key_in, key_out;
    memset(&key_in, 0, sizeof(key_in));
    memset(&key_out, 0, sizeof(key_out));
    optim_ivon_micro_batches(o, oc, step, K, poco, gamma, next_batch, ctx, poison, sums, &key_in, &key_out);
    o->reduce_sum(o->t, sums, 3);
    out->loss = (float)(sums[0] / (K * d->world));
    out->grad_norm = (float)(sums[1] / (K * d->world));
    out->mega_tokens = *o->mega_tokens;
    out->verdict = step_guard_decide(guard, out->loss, sums[2] == 0.0 ? out->grad_norm : NAN, &out->z_loss,
                                     &out->z_norm);
    if (out->verdict != STEP_APPLIED) {
        o->restore_mean(o->t);
        return;
    }
    o->reduce_acc(o->t, poco, dist_reduce_grad_only(d, K), &key_in, &key_out);
    IvonUpdateStats total = o->ivon_update(o->t, oc, lr, step, poco, gamma);
    if (d->zero_stage > 0 && d->world > 1) {
        double st[4] = {(double)total.n, (double)total.clipped, total.sum_abs_dm, (double)total.violations};
        o->reduce_sum(o->t, st, 4);
        total.n = (size_t)st[0];
        total.clipped = (size_t)st[1];
        total.sum_abs_dm = st[2];
        total.violations = (size_t)st[3];
    }
    *o->last_update = total;
#ifdef IVON_CHECKS
    if (total.violations > 0)
        fatalf("IVON_CHECKS: %zu invariant violations in the update of step %d (h + delta > 0, (h' + delta) >= "
               "0.5 (h + delta), finite sigma, |dm| <= lr_eff r)", total.violations, step);
#endif
}

// One optimizer step (0-based `step`, scheduled lr) over K micro-batches from next_batch on each process (the step
// covers K x P micro-batches, local micro-batch j being global j * P + rank). Loss, norm and the finite checks are
// reduced over the processes first, so every process takes the same decisions. step_guard_decide (guard may be
// NULL: finite check only) decides whether the update is applied; a skipped step leaves the weights and the
// optimizer state as they were and sets out->verdict. test-only NaN injection: step_guard_inject_nan.
static inline void optim_step(const OptimOps* o, const OptimizerConfig* oc, int step, float lr, int K,
                              BatchFn next_batch, void* ctx, StepGuard* guard, StepStats* out) {
    if (K < 1) fatalf("optimizer step: %d micro-batches", K);
    memset(out, 0, sizeof(*out));
    out->micro_batches = K * o->dist->world;
    out->tokens = o->micro_tokens * K * o->dist->world;
    int poison = step_guard_inject_nan(guard, step);
    if (oc->kind == OPT_ADAMW) optim_step_adamw(o, oc, step, lr, K, next_batch, ctx, guard, poison, out);
    else optim_step_ivon(o, oc, step, lr, K, next_batch, ctx, guard, poison, out);
}

#endif // LLMC_OPTIM_STEP_H
