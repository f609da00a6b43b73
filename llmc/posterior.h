// The IVON / IVON-PoCo posterior of a checkpoint, for the tools that use it (sampling, evaluation, export):
// q(theta) = N(m, diag(sigma^2)), m = the model file, sigma = 1 / sqrt(ess * (h + delta)) with h from the state file
// (buffer 1 of IVON and PoCo state files), ess and the prior precisions delta (-pr on the 2-D tensors, -pr1 on the
// 1-D ones) from the state header (written since the state files record them) or given by the caller.
// Weight samples theta = m + sqrt(tau) sigma eps with eps from llmc/noise.h (stream BMA), tau the posterior
// temperature (1 = the learned posterior, 0 = the mean).
#ifndef LLMC_POSTERIOR_H
#define LLMC_POSTERIOR_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "utils.h"
#include "model.h"
#include "checkpoint.h"
#include "optim.h"

typedef struct {
    GPT2Config config;
    size_t num_parameters;
    size_t sizes[NUM_PARAMETER_TENSORS];
    float* mean;   // (num_parameters,) the model file's weights, PARAM_TABLE order
    float* hess;   // (num_parameters,) h; NULL without a state file or for AdamW state
    int optimizer; // OptimizerKind of the state file, -1 without one
    int step;      // optimizer steps of the checkpoint (state file), 0 without one
    uint64_t seed;
    double ess, prior_2d, prior_1d;  // 0 where unknown
} Posterior;

// Loads the model file and, with state_path != NULL, the state file of the same checkpoint. ess / prior_2d /
// prior_1d >= 0 override the values the state header records (pass -1 to take them from the file).
static inline void posterior_load(Posterior* p, const char* model_path, const char* state_path, double ess,
                                  double prior_2d, double prior_1d) {
    memset(p, 0, sizeof(*p));
    p->optimizer = -1;
    FILE* fp = fopenCheck(model_path, "rb");
    int version = model_read_header(fp, model_path, &p->config);
    gpt2_config_check(p->config, model_path);
    gpt2_param_sizes(p->sizes, p->config);
    p->num_parameters = gpt2_num_parameters(p->config);
    p->mean = (float*)mallocCheck(p->num_parameters * sizeof(float));
    model_read_weights(fp, model_path, version, p->mean, p->num_parameters);
    fcloseCheck(fp, model_path);
    if (state_path != NULL) {
        StateHeader sh;
        checkpoint_peek_state(state_path, &sh);
        p->optimizer = sh.optimizer;
        p->step = sh.step;
        p->seed = sh.seed;
        if (sh.optimizer == OPT_IVON || sh.optimizer == OPT_POCO) {
            p->hess = (float*)mallocCheck(p->num_parameters * sizeof(float));
            float* bufs[6] = {NULL, p->hess, NULL, NULL, NULL, NULL};
            int nbuf = sh.optimizer == OPT_IVON ? 2 : 6;
            checkpoint_read_state(state_path, &sh, bufs, nbuf, p->num_parameters);
            p->ess = checkpoint_join_double(&sh.extra[CHECKPOINT_SLOT_ESS]);
            p->prior_2d = checkpoint_join_double(&sh.extra[CHECKPOINT_SLOT_PRIOR_2D]);
            p->prior_1d = checkpoint_join_double(&sh.extra[CHECKPOINT_SLOT_PRIOR_1D]);
        }
    }
    if (ess >= 0.0) p->ess = ess;
    if (prior_2d >= 0.0) p->prior_2d = prior_2d;
    if (prior_1d >= 0.0) p->prior_1d = prior_1d;
}

// 1 if sigma is defined: IVON/PoCo state with a known ess; else 0 with the reason in err (naming the files)
static inline int posterior_has_sigma(const Posterior* p, const char* state_path, char* err, size_t errlen) {
    if (state_path == NULL) {
        snprintf(err, errlen, "no state file: sigma needs the IVON/PoCo state of the checkpoint");
        return 0;
    }
    if (p->hess == NULL) {
        snprintf(err, errlen, "state file '%s' holds %s state: sigma needs IVON or PoCo state", state_path,
                 optimizer_kind_name(p->optimizer));
        return 0;
    }
    if (!(p->ess > 0.0) || !isfinite(p->ess)) {
        snprintf(err, errlen, "state file '%s' records no ess (written before the state files held it): pass -ess",
                 state_path);
        return 0;
    }
    return 1;
}

// sigma = 1 / sqrt(ess (h + delta)) per weight, delta of each tensor's group; in fp32 as the IVON sample pass
static inline void posterior_sigma(const Posterior* p, float* sigma) {
    float essf = (float)p->ess;
    size_t off = 0;
    for (int t = 0; t < NUM_PARAMETER_TENSORS; t++) {
        float wdf = (float)(PARAM_TABLE[t].decay ? p->prior_2d : p->prior_1d);
        for (size_t i = off; i < off + p->sizes[t]; i++) sigma[i] = 1.0f / sqrtf(essf * (p->hess[i] + wdf));
        off += p->sizes[t];
    }
}

// theta = m + sqrt(tau) sigma eps: weight sample `sample` of the BMA stream at the checkpoint's step (tau = 1 is the
// trainer's own BMA sample, bit for bit: the IVON sample pass of llmc/optim.h; tau = 0 gives theta = m)
static inline void posterior_sample(const Posterior* p, float* theta, double tau, int sample) {
    OptimizerConfig oc;
    memset(&oc, 0, sizeof(oc));
    oc.kind = p->optimizer;
    oc.seed = p->seed;
    if (tau <= 0.0) {
        memcpy(theta, p->mean, p->num_parameters * sizeof(float));
        return;
    }
    IvonNoiseKey key = ivon_noise_key(&oc, p->step, sample, NOISE_STREAM_BMA);
    float essf = (float)(p->ess / tau);  // sqrt(tau) sigma = 1 / sqrt((ess / tau) (h + delta))
    size_t off = 0;
    for (int t = 0; t < NUM_PARAMETER_TENSORS; t++) {
        float wdf = (float)(PARAM_TABLE[t].decay ? p->prior_2d : p->prior_1d);
        ivon_sample(theta + off, NULL, p->mean + off, p->hess + off, p->sizes[t], off, essf, wdf, &key);
        off += p->sizes[t];
    }
}

// The files of the checkpoint the tools' flags name: -c dir (step `step`, -1 = the latest with a DONE marker) or
// -e model file with -st state file (may be NULL). *model / *state come back pointing at mbuf / sbuf (n bytes) or
// at the given names.
static inline void posterior_checkpoint_paths(const char* dir, int step, const char** model, const char** state,
                                              char* mbuf, char* sbuf, size_t n) {
    if (dir != NULL && (*model != NULL || *state != NULL))
        fatalf("flag -c: give a checkpoint dir (-c) or model and state files (-e, -st), not both");
    if (dir == NULL) {
        if (*model == NULL) fatalf("flag -c: a checkpoint dir (-c) or a model file (-e) is required");
        if (step >= 0) fatalf("flag -cs: a checkpoint step needs a checkpoint dir (-c)");
        return;
    }
    if (step < 0) step = checkpoint_find_latest(dir);
    if (step < 0) fatalf("flag -c: no finished checkpoint (DONE_ marker) in '%s'", dir);
    checkpoint_model_path(mbuf, n, dir, step);
    checkpoint_state_path(sbuf, n, dir, step);
    *model = mbuf;
    *state = sbuf;
}

// the tools' overrides -ess / -pr / -pr1: -1 (the state header's) or a valid value
static inline void posterior_check_overrides(double ess, double prior_2d, double prior_1d) {
    if (ess != -1.0 && !(ess > 0.0)) fatalf("flag -ess: %g is not -1 or > 0", ess);
    if (prior_2d != -1.0 && !(prior_2d >= 0.0)) fatalf("flag -pr: %g is not -1 or >= 0", prior_2d);
    if (prior_1d != -1.0 && !(prior_1d >= 0.0)) fatalf("flag -pr1: %g is not -1 or >= 0", prior_1d);
}

static inline void posterior_free(Posterior* p) {
    free(p->mean);
    free(p->hess);
    memset(p, 0, sizeof(*p));
}

#endif // LLMC_POSTERIOR_H
