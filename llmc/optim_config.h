// Optimizer settings: AdamW, IVON and IVON-PoCo(Mo) (spec: OPTIMIZERS.md §2.3, §6.4), their checks and the PoCo
// schedules. The defaults, ranges and flags of every field are rows of the flag table (llmc/cli.h, TrainConfig.opt);
// optimizer_config_defaults there fills one from the table.
#ifndef LLMC_OPTIM_CONFIG_H
#define LLMC_OPTIM_CONFIG_H

#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

typedef enum { OPT_ADAMW = 0, OPT_IVON = 1, OPT_POCO = 2 } OptimizerKind;  // also the checkpoint optimizer id
typedef enum { POCO_GAMMA_CONSTANT = 0, POCO_GAMMA_LINEAR = 1 } PocoGammaSchedule;

typedef struct {
    int kind;               // OptimizerKind
    // AdamW
    double adamw_beta1, adamw_beta2, adamw_eps;
    double weight_decay;    // decoupled, 2-D tensors only
    // all: gradient clip norm (AdamW: global after accumulation; IVON/PoCo: each micro-batch); 0 = off
    double grad_clip;
    // IVON (§2.3)
    double ess;             // lambda, effective sample size (> 0; the flag's -1 = tokens in the train shards)
    double hess_init;       // h0 (> 0)
    double beta1, beta2;
    double clip_radius;     // r; 0 = no clipping (+inf)
    double prior_2d;        // delta of the 2-D tensors (PARAM_TABLE[i].decay == 1)
    double prior_1d;        // delta of the 1-D tensors
    int debias, rescale_lr;
    int noise_off;          // tests: eps = 0 everywhere (sampling at the mean)
    // PoCo (§6.4)
    double poco_gamma;      // gamma0 in [0, 1]
    int poco_gamma_schedule;   // PocoGammaSchedule
    int poco_start;         // first corrected step (0-based), earlier steps plain IVON (the flag's -1 = max_steps / 2)
    int poco_period;        // T_out: steps between anchor refreshes (>= 1)
    int poco_mega_batches;  // micro-batches per anchor refresh; <= 0 = poco_period * micro-batches per step
    int poco_shared_noise;  // theta_out uses the eps of theta_in (1) or its own stream (0)
    int poco_prox;          // proximal term P on (1) / off (0)
    int poco_prox_in_momentum;  // P enters the momentum EMA (1) or sits next to delta*m (0)
    int poco_momentum;      // 1: IVON-PoCoMo (beta1, debias as set); 0: IVON-PoCo (beta1 = 0, no debias)
    int poco_clip_each;     // clip g_in and g_out separately (1) or scale both by the clip of g_in - gamma*g_out (0)
    int poco_mega_noise;    // mega-batch at m_out + sigma_out*eps (1) or at m_out with hbar_out := h_out (0)
    int max_steps;          // total steps (the linear gamma schedule ends at step max_steps - 1)
    uint64_t seed;          // noise seed
    uint32_t rank;          // process rank (noise counter)
} OptimizerConfig;

static inline const char* optimizer_kind_name(int kind) {
    return kind == OPT_ADAMW ? "adamw" : kind == OPT_IVON ? "ivon" : kind == OPT_POCO ? "poco" : "?";
}

// Checks an OptimizerConfig; 0 if usable, else -1 with "flag -x: ..." in err (the trainer flag of the field).
static inline int optimizer_config_check(const OptimizerConfig* oc, char* err, size_t errlen) {
#define OPT_BAD(...) do { snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)
    if (oc->kind != OPT_ADAMW && oc->kind != OPT_IVON && oc->kind != OPT_POCO) OPT_BAD("flag -opt: unknown optimizer %d", oc->kind);
    if (!(oc->grad_clip >= 0.0) || !isfinite(oc->grad_clip)) OPT_BAD("flag -gc: grad clip %g must be >= 0", oc->grad_clip);
    if (oc->kind == OPT_ADAMW) {
        if (!(oc->adamw_beta1 >= 0.0 && oc->adamw_beta1 < 1.0)) OPT_BAD("flag -ab1: beta1 %g must be in [0, 1)", oc->adamw_beta1);
        if (!(oc->adamw_beta2 >= 0.0 && oc->adamw_beta2 < 1.0)) OPT_BAD("flag -ab2: beta2 %g must be in [0, 1)", oc->adamw_beta2);
        if (!(oc->adamw_eps >= 0.0) || !isfinite(oc->adamw_eps)) OPT_BAD("flag -ae: eps %g must be >= 0", oc->adamw_eps);
        return 0;
    }
    if (!(oc->ess > 0.0) || !isfinite(oc->ess)) OPT_BAD("flag -ess: effective sample size %g must be > 0", oc->ess);
    if (!(oc->hess_init > 0.0) || !isfinite(oc->hess_init)) OPT_BAD("flag -h0: hess init %g must be > 0", oc->hess_init);
    if (!(oc->beta1 >= 0.0 && oc->beta1 < 1.0)) OPT_BAD("flag -b1: beta1 %g must be in [0, 1)", oc->beta1);
    if (!(oc->beta2 >= 0.0 && oc->beta2 <= 1.0)) OPT_BAD("flag -b2: beta2 %g must be in [0, 1]", oc->beta2);
    if (!(oc->clip_radius >= 0.0) || !isfinite(oc->clip_radius)) OPT_BAD("flag -r: clip radius %g must be >= 0", oc->clip_radius);
    if (!(oc->prior_2d >= 0.0) || !isfinite(oc->prior_2d)) OPT_BAD("flag -pr: prior precision %g must be >= 0", oc->prior_2d);
    if (!(oc->prior_1d >= 0.0) || !isfinite(oc->prior_1d)) OPT_BAD("flag -pr1: prior precision %g must be >= 0", oc->prior_1d);
    if (!(oc->debias == 0 || oc->debias == 1)) OPT_BAD("flag -debias: %d must be 0 or 1", oc->debias);
    if (!(oc->rescale_lr == 0 || oc->rescale_lr == 1)) OPT_BAD("flag -rescale: %d must be 0 or 1", oc->rescale_lr);
    if (oc->kind == OPT_IVON) return 0;
    if (!(oc->poco_gamma >= 0.0 && oc->poco_gamma <= 1.0)) OPT_BAD("flag -pg: gamma %g must be in [0, 1]", oc->poco_gamma);
    if (oc->poco_gamma_schedule != POCO_GAMMA_CONSTANT && oc->poco_gamma_schedule != POCO_GAMMA_LINEAR)
        OPT_BAD("flag -pgs: unknown gamma schedule %d", oc->poco_gamma_schedule);
    if (oc->poco_start < 0) OPT_BAD("flag -pst: start step %d must be >= 0 once resolved", oc->poco_start);
    if (oc->poco_period < 1) OPT_BAD("flag -pp: period %d must be >= 1", oc->poco_period);
    if (oc->poco_mega_batches == 0 || oc->poco_mega_batches < -1) OPT_BAD("flag -pmb: %d must be >= 1 or -1", oc->poco_mega_batches);
    return 0;
#undef OPT_BAD
}

// gamma of step t (0-based): 0 before poco_start; constant gamma0; or linear from gamma0 at poco_start to 0 at
// step max_steps - 1 (gamma0 when max_steps - 1 <= poco_start). Double, rounded once.
static inline float poco_gamma_at(const OptimizerConfig* oc, int t) {
    if (oc->kind != OPT_POCO || t < oc->poco_start) return 0.0f;
    if (oc->poco_gamma_schedule == POCO_GAMMA_CONSTANT) return (float)oc->poco_gamma;
    int last = oc->max_steps - 1;
    if (last <= oc->poco_start) return (float)oc->poco_gamma;
    double r = (double)(last - t) / (double)(last - oc->poco_start);
    if (r < 0.0) r = 0.0;
    return (float)(oc->poco_gamma * r);
}

// 1 if an anchor refresh happens before step t
static inline int poco_refresh_at(const OptimizerConfig* oc, int t) {
    return oc->kind == OPT_POCO && t >= oc->poco_start && (t - oc->poco_start) % oc->poco_period == 0;
}

// micro-batches of an anchor refresh over all processes: -pmb, or period x global micro-batches per step
static inline int poco_mega_batches(const OptimizerConfig* oc, int global_micro_batches) {
    return oc->poco_mega_batches > 0 ? oc->poco_mega_batches : oc->poco_period * global_micro_batches;
}

#endif // LLMC_OPTIM_CONFIG_H
