// libFuzzer harness: token shard reader (llmc/dataloader.h) on an arbitrary file.
// Input: 8 setting bytes, then the shard file. Settings: B = 1 + b0 % 4, T = 1 + b1 % 16, P = 1 + b2 % 3
// processes, rank = b3 % P, shuffle = b4 & 1, then a resume position (epoch b5 % 3, shard b6 % 2,
// window b7) that dataloader_set_state must accept or reject with an error line. An accepted shard is read
// for up to 2 epochs of batches (at most 64); targets must be the inputs shifted by one; the position
// must survive get_state / reset / set_state.
#include "fuzz_common.h"
#include "../../llmc/dataloader.h"

#define SETTINGS 8

static DataLoader loader;

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < SETTINGS) return 0;
    size_t B = 1 + fuzz_u8(data, size, 0) % 4, T = 1 + fuzz_u8(data, size, 1) % 16;
    int P = 1 + (int)(fuzz_u8(data, size, 2) % 3);
    int rank = (int)(fuzz_u8(data, size, 3) % (uint32_t)P);
    int shuffle = (int)(fuzz_u8(data, size, 4) & 1);
    DataLoaderState resume = {fuzz_u8(data, size, 5) % 3, fuzz_u8(data, size, 6) % 2, fuzz_u8(data, size, 7)};
    const char* path = fuzz_write_file(data + SETTINGS, size - SETTINGS);

    fuzz_armed = 1;
    if (setjmp(fuzz_jmp) == 0) {
        dataloader_init(&loader, path, B, T, rank, P, shuffle, 1337);
        size_t n = dataloader_num_batches(&loader);
        for (size_t i = 0; i < 2 * n && i < 64; i++) {
            dataloader_next_batch(&loader);
            for (size_t j = 0; j < B * T; j++) {
                if (j + 1 < B * T && loader.inputs[j + 1] != loader.targets[j]) abort();
            }
        }
        DataLoaderState st = dataloader_get_state(&loader);
        dataloader_reset(&loader);
        dataloader_set_state(&loader, st);
        dataloader_set_state(&loader, resume);  // may reject: a state file's position that does not fit
        dataloader_next_batch(&loader);
        dataloader_free(&loader);
        fuzz_armed = 0;
        fuzz_expect_released("dataloader");
    } else {
        if (loader.glob_result.gl_pathv != NULL) globfree(&loader.glob_result);
        memset(&loader, 0, sizeof(loader));
        fuzz_release();
    }
    return 0;
}
