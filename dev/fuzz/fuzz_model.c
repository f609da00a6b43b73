// libFuzzer harness: model file reader as the trainer uses it (gpt2_build_from_checkpoint in train_gpt2.c:
// model_read_header, gpt2_init_common, model_read_weights of llmc/model.h) on an arbitrary file. An accepted
// file's weights are summed (every one read) and freed with gpt2_free.
#include "fuzz_common.h"
#define TESTING
#include "../../train_gpt2.c"

static GPT2 model;

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const char* path = fuzz_write_file(data, size);
    fuzz_armed = 1;
    if (setjmp(fuzz_jmp) == 0) {
        gpt2_build_from_checkpoint(&model, path);
        if (model.num_parameters != gpt2_num_parameters(model.config)) abort();
        volatile double sum = 0.0;
        for (size_t i = 0; i < model.num_parameters; i++) sum += model.params_memory[i];
        (void)sum;
        gpt2_free(&model);
        fuzz_armed = 0;
        fuzz_expect_released("model reader");
    } else {
        memset(&model, 0, sizeof(model));
        fuzz_release();
    }
    return 0;
}
