// libFuzzer harness: the flag parser (llmc/cli.h) and the flag checks that need no files: the input is argv
// (arguments separated by NUL bytes, at most 64). An accepted command line goes through the total batch
// (-d), the model descriptor (-e), the optimizer settings (llmc/train_common.h), the lr schedule (-k) at a
// few steps, and the startup table.
#include "fuzz_common.h"
#include "../../llmc/model.h"
#include "../../llmc/cli.h"
#include "../../llmc/checkpoint.h"
#include "../../llmc/logger.h"
#include "../../llmc/schedule.h"
#include "../../llmc/tokenizer.h"
#include "../../llmc/optim.h"
#include "../../llmc/train_common.h"

#define MAX_ARGS 64

static FILE* devnull;

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (devnull == NULL) devnull = fdopen(open("/dev/null", O_WRONLY), "w");
    // copy (NUL-terminated) and split at NUL bytes
    char* text = (char*)malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    char* argv[MAX_ARGS + 1];
    int argc = 0;
    argv[argc++] = (char*)"train_gpt2";
    for (size_t i = 0; i < size && argc < MAX_ARGS; i += strlen(text + i) + 1) argv[argc++] = text + i;
    argv[argc] = NULL;

    fuzz_armed = 1;
    if (setjmp(fuzz_jmp) == 0) {
        TrainConfig cfg;
        cli_defaults(&cfg);
        char err[512];
        int rc = cli_parse(&cfg, argc, argv, err, sizeof(err));
        if (rc < 0 && strncmp(err, "flag ", 5) != 0) abort();  // every parse error names its flag
        if (rc == 1) cli_usage(devnull, argv[0]);
        if (rc == 0) {
            int accum;
            long long total;
            GPT2Config mc;
            gpt2_config_from_descriptor(cfg.model, &mc);
            if (cli_resolve_total_batch(&cfg, &accum, &total, err, sizeof(err)) == 0) {
                int max_steps = cfg.max_steps < 0 ? 100 : cfg.max_steps;
                OptimizerConfig oc;
                float lr;
                int bma;
                if (optimizer_config_from_train(&oc, &cfg, 1000000, max_steps, &lr, &bma, err, sizeof(err)) == 0) {
                    LRScheduler sched;
                    lr_scheduler_init(&sched, cfg.lr_schedule, lr, cfg.warmup_iterations, max_steps,
                                      cfg.final_lr_frac);
                    int steps[4] = {0, cfg.warmup_iterations, max_steps / 2, max_steps - 1};
                    for (int i = 0; i < 4; i++) {
                        float l = lr_scheduler_get(&sched, steps[i] < 0 ? 0 : steps[i]);
                        if (!isfinite(l)) abort();
                    }
                    cli_print_table_rows(devnull, &cfg);
                    DistInfo d = dist_single();
                    char derr[256];
                    if (dist_check_flags(&cfg, cli_choice_index("auto|mpi|tcp|fs", cfg.dp_init), derr,
                                         sizeof(derr)) != 0 && strncmp(derr, "flag ", 5) != 0)
                        abort();  // every data-parallel flag error names its flag
                    dist_set_modes(&d, &cfg);
                    train_print_optimizer_rows(&oc, lr, bma, accum, &d);
                }
            }
        }
        fuzz_armed = 0;
        fuzz_expect_released("cli");
    } else {
        fuzz_release();
    }
    free(text);
    return 0;
}
