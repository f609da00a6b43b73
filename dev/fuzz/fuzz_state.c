// libFuzzer harness: optimizer state file reader (checkpoint_read_state of llmc/checkpoint.h) and the resume
// checks after it (train_state_restore of llmc/train_common.h: step, optimizer, loader position) on an
// arbitrary file. Input: 4 setting bytes, then the state file. Settings: buffers nbuf = 1 + b0 % 6, floats
// per buffer n = 1 + (b1 | b2 << 8), optimizer kind (b3 & 3) % 3; the resume step is the file's own when b3 & 4,
// else 3. The loader is a fixed 2-shard set written at start-up (97 and 200 tokens, B=2, T=8).
#include "fuzz_common.h"
#include "../../llmc/checkpoint.h"
#include "../../llmc/cli.h"
#include "../../llmc/logger.h"
#include "../../llmc/schedule.h"
#include "../../llmc/tokenizer.h"
#include "../../llmc/optim.h"
#include "../../llmc/train_common.h"

#define SETTINGS 4

static char shard_dir[] = "/tmp/fuzz_state_XXXXXX";
static char shard_pattern[64];
static DataLoader loader;
static float* bufs[6];

static void write_shard(const char* dir, const char* name, int ntok) {
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE* fp = fopen(path, "wb");
    if (fp == NULL) abort();
    int32_t header[DATALOADER_HEADER_INTS] = {DATALOADER_MAGIC, DATALOADER_VERSION, ntok};
    fwrite(header, sizeof(int32_t), DATALOADER_HEADER_INTS, fp);
    for (int i = 0; i < ntok; i++) {
        uint16_t t = (uint16_t)(i * 7 % 50257);
        fwrite(&t, sizeof(t), 1, fp);
    }
    fclose(fp);
}

int LLVMFuzzerInitialize(int* argc, char*** argv) {
    (void)argc; (void)argv;
    if (mkdtemp(shard_dir) == NULL) abort();
    write_shard(shard_dir, "a.bin", 97);
    write_shard(shard_dir, "b.bin", 200);
    snprintf(shard_pattern, sizeof(shard_pattern), "%s/*.bin", shard_dir);
    dataloader_init(&loader, shard_pattern, 2, 8, 0, 1, 1, 1337);
    fuzz_nfiles = fuzz_nptrs = 0;  // the loader lives for the whole run
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < SETTINGS) return 0;
    int nbuf = 1 + (int)(fuzz_u8(data, size, 0) % 6);
    size_t n = 1 + fuzz_u16(data, size, 1);
    int kind = (int)((fuzz_u8(data, size, 3) & 3) % 3);
    int own_step = (fuzz_u8(data, size, 3) & 4) != 0;
    const char* path = fuzz_write_file(data + SETTINGS, size - SETTINGS);
    for (int b = 0; b < nbuf; b++) bufs[b] = (float*)malloc(n * sizeof(float));

    fuzz_armed = 1;
    if (setjmp(fuzz_jmp) == 0) {
        StateHeader sh;
        checkpoint_read_state(path, &sh, bufs, nbuf, n);
        int anchor_step;
        long long mega_tokens;
        train_state_restore(path, &sh, own_step ? sh.step : 3, kind, &loader, &anchor_step, &mega_tokens);
        dataloader_next_batch(&loader);
        if (loader.fp != NULL) fuzz_untrack((void**)fuzz_files, &fuzz_nfiles, loader.fp);  // stays open
        fuzz_armed = 0;
        fuzz_expect_released("state reader");
    } else {
        fuzz_release();
    }
    for (int b = 0; b < nbuf; b++) free(bufs[b]);
    return 0;
}
