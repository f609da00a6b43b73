// The output lines of a run, on stdout and in main.log (llmc/logger.h): the resolved optimizer rows of the
// startup table, the step line, the val and calibration lines, and the IVON/PoCo diagnostics line.
#ifndef LLMC_REPORT_H
#define LLMC_REPORT_H

#include <stdio.h>
#include <math.h>
#include "cli.h"
#include "dist.h"
#include "logger.h"
#include "metrics.h"
#include "optim_config.h"
#include "optim_step.h"

// rows of the resolved optimizer settings under the flag table
// grad_accum: micro-batches per step of each process; d: the data-parallel layout
static inline void train_print_optimizer_rows(const OptimizerConfig* oc, float lr, int bma, int grad_accum,
                                              const DistInfo* d) {
    char v[128];
    snprintf(v, sizeof(v), "%s", optimizer_kind_name(oc->kind));
    cli_table_row(stdout, "resolved optimizer", v);
    snprintf(v, sizeof(v), "%g", (double)lr);
    cli_table_row(stdout, "resolved peak lr", v);
    if (oc->kind == OPT_ADAMW) {
        snprintf(v, sizeof(v), "betas (%g, %g), eps %g, wd %g", oc->adamw_beta1, oc->adamw_beta2, oc->adamw_eps,
                 oc->weight_decay);
        cli_table_row(stdout, "adamw", v);
        snprintf(v, sizeof(v), "%g (global, after accumulation)", oc->grad_clip);
        cli_table_row(stdout, "grad clip", v);
        return;
    }
    snprintf(v, sizeof(v), "%.6g", oc->ess);
    cli_table_row(stdout, "resolved ess (lambda)", v);
    snprintf(v, sizeof(v), "%.6g (2-D), %.6g (1-D)", oc->rescale_lr ? (double)lr * (oc->hess_init + oc->prior_2d) : lr,
             oc->rescale_lr ? (double)lr * (oc->hess_init + oc->prior_1d) : lr);
    cli_table_row(stdout, "effective peak lr", v);
    snprintf(v, sizeof(v), "%.4g (2-D), %.4g (1-D)", 1.0 / sqrt(oc->ess * (oc->hess_init + oc->prior_2d)),
             1.0 / sqrt(oc->ess * (oc->hess_init + oc->prior_1d)));
    cli_table_row(stdout, "initial sigma", v);
    int pmo0 = oc->kind == OPT_POCO && !oc->poco_momentum;
    snprintf(v, sizeof(v), "%g, debias %d", pmo0 ? 0.0 : oc->beta1, pmo0 ? 0 : oc->debias);
    cli_table_row(stdout, "effective beta1", v);
    int global_k = grad_accum * d->world;
    snprintf(v, sizeof(v), "%d MC samples per step (%d micro-batches)", (global_k + d->noise_group - 1) / d->noise_group,
             global_k);
    cli_table_row(stdout, "ivon samples", v);
    snprintf(v, sizeof(v), "%d", bma);
    cli_table_row(stdout, "resolved bma samples", v);
    if (oc->kind == OPT_POCO) {
        snprintf(v, sizeof(v), "%d", oc->poco_start);
        cli_table_row(stdout, "resolved poco start", v);
        int kmega = poco_mega_batches(oc, global_k);
        snprintf(v, sizeof(v), "%d", kmega);
        cli_table_row(stdout, "resolved poco mega batches", v);
    }
}

// val line: mean-weight val loss, and the BMA val loss when bma_samples > 0; then the calibration line when the
// trainer computes it (ece >= 0; bma_ece >= 0 with BMA)
static inline void train_report_val(Logger* logger, int step, float val_loss, int bma_samples, float bma_loss,
                                    double ece, double bma_ece) {
    if (bma_samples > 0) printf("step %d: val loss %.6f (mean) | bma(%d) %.6f\n", step, val_loss, bma_samples, bma_loss);
    else printf("step %d: val loss %.6f\n", step, val_loss);
    logger_log_val(logger, step, val_loss, bma_samples > 0 ? bma_loss : NAN, ece, bma_ece);
    if (ece >= 0.0) {
        if (bma_samples > 0 && bma_ece >= 0.0)
            printf("step %d: calibration ECE(%d bins) %.4f (mean) | bma(%d) %.4f\n", step, ECE_BINS, ece, bma_samples,
                   bma_ece);
        else
            printf("step %d: calibration ECE(%d bins) %.4f\n", step, ECE_BINS, ece);
    }
}

// Diagnostics of the IVON/PoCo state: quantiles (1%, 50%, 99%) of h and sigma, the fraction of clipped
// coordinates and the mean |dm| of the last update.
typedef struct {
    float h_q[3], sigma_q[3];
    double clipped_frac, mean_abs_dm;
} OptimizerDiagnostics;

static inline void train_report_diagnostics(Logger* logger, int step, const OptimizerDiagnostics* d) {
    printf("step %d: diag h q01/q50/q99 %.3e %.3e %.3e | sigma %.3e %.3e %.3e | clipped %.4f | mean|dm| %.3e\n", step,
           (double)d->h_q[0], (double)d->h_q[1], (double)d->h_q[2], (double)d->sigma_q[0], (double)d->sigma_q[1],
           (double)d->sigma_q[2], d->clipped_frac, d->mean_abs_dm);
    logger_log(logger, step, "h01:%.4e h50:%.4e h99:%.4e sig01:%.4e sig50:%.4e sig99:%.4e clip:%.5f dm:%.4e",
               (double)d->h_q[0], (double)d->h_q[1], (double)d->h_q[2], (double)d->sigma_q[0], (double)d->sigma_q[1],
               (double)d->sigma_q[2], d->clipped_frac, d->mean_abs_dm);
}

// step line (1-based step shown) with ms and tok/s; PoCo adds the mega-batch tokens
static inline void train_report_step(Logger* logger, int kind, int step, int max_steps, const StepStats* st, float lr,
                                     double ms, long long tokens_per_step) {
    double tok_s = (double)tokens_per_step / (ms / 1e3);
    if (kind == OPT_POCO) {
        printf("step %4d/%d | loss %.6f | norm %.4f | lr %.2e | %.1f ms | %.0f tok/s | mega %lld tok%s\n", step + 1,
               max_steps, st->loss, st->grad_norm, lr, ms, tok_s, st->mega_tokens,
               st->anchor_refreshed ? " (anchor refreshed)" : "");
    } else {
        printf("step %4d/%d | loss %.6f | norm %.4f | lr %.2e | %.1f ms | %.0f tok/s\n", step + 1, max_steps, st->loss,
               st->grad_norm, lr, ms, tok_s);
    }
    logger_log_train(logger, step + 1, st->loss, lr, st->grad_norm, ms, tok_s, tokens_per_step,
                     kind == OPT_POCO ? st->mega_tokens : -1);
}

#endif // LLMC_REPORT_H
