// Token shard loader (llm.c shard format): int32[256] header (magic 20240520, version 1, [2] = token
// count), then uint16 tokens.
//
// A batch is one contiguous window of B*T+1 tokens at p = w*B*T: inputs = tokens[p, p+B*T),
// targets = tokens[p+1, p+B*T]. A shard of n tokens has W = floor((n-1)/(B*T)) windows.
// Multi-process: in window order k = 0, 1, ..., position k goes to rank k % P; every rank takes
// floor(W/P) windows per shard so that all ranks run the same number of batches (the last W % P
// positions of a shard are skipped).
// Train (shuffle = 1): each epoch permutes the shard order and, inside each shard, the window order
// with Fisher-Yates driven by Philox keyed by the seed; the permutations are pure functions of
// (seed, epoch, shard), so the loader position is just (epoch, shard position, window position).
// Val (shuffle = 0): shards in sorted glob order, windows in file order.
#ifndef LLMC_DATALOADER_H
#define LLMC_DATALOADER_H

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <glob.h>
#include <sys/types.h>
#include <sys/stat.h>
#include "utils.h"
#include "philox.h"

#define DATALOADER_MAGIC 20240520
#define DATALOADER_VERSION 1
#define DATALOADER_HEADER_INTS 256
#define DATALOADER_HEADER_BYTES (DATALOADER_HEADER_INTS * sizeof(int32_t))
#define DATALOADER_RNG_TAG 0x4C4F4144u  // "LOAD": Philox counter word that separates loader draws

typedef struct {
    uint64_t epoch;   // completed passes over the data
    uint64_t shard;   // position in this epoch's shard order
    uint64_t window;  // position in this rank's window list of that shard
} DataLoaderState;

typedef struct {
    // settings
    size_t B, T;
    int process_rank, num_processes;
    int shuffle;
    uint64_t seed;
    uint32_t vocab_size;         // tokens must be < vocab_size (0 = unchecked); set by the caller after init
    // shards (sorted glob order)
    glob_t glob_result;
    size_t num_shards;
    uint64_t* shard_tokens;      // (num_shards,) tokens per shard
    uint32_t* shard_windows;     // (num_shards,) windows of this rank per shard: floor(W/P)
    uint64_t num_tokens;         // total over shards
    size_t num_batches;          // batches per epoch for this rank
    // position of the next batch
    uint64_t epoch;
    size_t shard_pos;            // index into shard_order
    size_t window_pos;           // this rank's k-th window of the current shard
    // permutations of the current epoch / shard
    uint32_t* shard_order;       // (num_shards,) shard file index at each position
    uint32_t* window_order;      // (max W,) window index at each position; identity when not shuffled
    uint64_t order_epoch;        // epoch that shard_order holds
    size_t window_order_shard;   // shard file index window_order holds (SIZE_MAX = none)
    uint64_t window_order_epoch;
    // open shard
    FILE* fp;
    size_t fp_shard;             // shard file index open in fp (SIZE_MAX = none)
    // batch buffers, allocated once
    uint16_t* buffer;            // (B*T+1,)
    int* inputs;                 // (B, T)
    int* targets;                // (B, T)
} DataLoader;

// uniform integer in [0, n) from Philox block (seed; i, stream, epoch, tag)
static inline uint32_t dataloader_rand_below(uint64_t seed, uint32_t i, uint32_t stream, uint64_t epoch, uint32_t n) {
    uint32_t ctr[4] = {i, stream, (uint32_t)epoch, DATALOADER_RNG_TAG ^ (uint32_t)(epoch >> 32)};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t r[4];
    philox4x32_10(ctr, key, r);
    uint64_t x = ((uint64_t)r[0] << 32) | r[1];
    return (uint32_t)(x % n);
}

// Fisher-Yates: order[0..n) = a permutation of 0..n-1, a pure function of (seed, stream, epoch).
// For i = n-1 down to 1: j = rand_below(i+1) from counter (i, stream, epoch), swap order[i], order[j].
// stream 0 = shard order, stream s+1 = windows of shard file s.
static inline void dataloader_permute(uint32_t* order, uint32_t n, uint64_t seed, uint32_t stream, uint64_t epoch) {
    for (uint32_t i = 0; i < n; i++) order[i] = i;
    for (uint32_t i = n; i-- > 1;) {
        uint32_t j = dataloader_rand_below(seed, i, stream, epoch, i + 1);
        uint32_t tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
}

// windows of a shard over all ranks
static inline uint64_t dataloader_shard_all_windows(const DataLoader* l, size_t s) {
    return (l->shard_tokens[s] - 1) / (l->B * l->T);
}

// brings shard_order up to date for the current epoch
static inline void dataloader_update_shard_order(DataLoader* l) {
    if (l->order_epoch == l->epoch) return;
    if (l->shuffle) dataloader_permute(l->shard_order, (uint32_t)l->num_shards, l->seed, 0, l->epoch);
    l->order_epoch = l->epoch;
}

// brings window_order up to date for the shard at the current position
static inline void dataloader_update_window_order(DataLoader* l) {
    size_t s = l->shard_order[l->shard_pos];
    if (l->window_order_shard == s && l->window_order_epoch == l->epoch) return;
    uint32_t W = (uint32_t)dataloader_shard_all_windows(l, s);
    if (l->shuffle) {
        dataloader_permute(l->window_order, W, l->seed, (uint32_t)s + 1, l->epoch);
    } else {
        for (uint32_t i = 0; i < W; i++) l->window_order[i] = i;
    }
    l->window_order_shard = s;
    l->window_order_epoch = l->epoch;
}

// moves the position forward to the next (epoch, shard, window) that holds a batch for this rank
static inline void dataloader_normalize(DataLoader* l) {
    while (1) {
        if (l->shard_pos >= l->num_shards) {
            l->shard_pos = 0;
            l->window_pos = 0;
            l->epoch++;
        }
        dataloader_update_shard_order(l);
        if (l->window_pos < l->shard_windows[l->shard_order[l->shard_pos]]) return;
        l->shard_pos++;
        l->window_pos = 0;
    }
}

static inline void dataloader_init(DataLoader* l, const char* pattern, size_t B, size_t T, int process_rank,
                                   int num_processes, int shuffle, uint64_t seed) {
    memset(l, 0, sizeof(*l));
    if (B == 0 || T == 0) fatalf("dataloader: B and T must be positive (B=%zu T=%zu)", B, T);
    if (num_processes < 1 || process_rank < 0 || process_rank >= num_processes)
        fatalf("dataloader: bad process rank %d of %d", process_rank, num_processes);
    l->B = B;
    l->T = T;
    l->process_rank = process_rank;
    l->num_processes = num_processes;
    l->shuffle = shuffle ? 1 : 0;
    l->seed = seed;
    l->fp = NULL;
    l->fp_shard = SIZE_MAX;
    l->window_order_shard = SIZE_MAX;

    int grc = glob(pattern, 0, NULL, &l->glob_result);  // sorted by default
    if (grc == GLOB_NOMATCH || (grc == 0 && l->glob_result.gl_pathc == 0))
        fatalf("no data files match '%s'", pattern);
    if (grc != 0) fatalf("glob failed on data pattern '%s' (code %d)", pattern, grc);
    l->num_shards = l->glob_result.gl_pathc;
    if (l->num_shards > UINT32_MAX - 1) fatalf("too many data files match '%s'", pattern);

    l->shard_tokens = (uint64_t*)mallocCheck(l->num_shards * sizeof(uint64_t));
    l->shard_windows = (uint32_t*)mallocCheck(l->num_shards * sizeof(uint32_t));
    l->shard_order = (uint32_t*)mallocCheck(l->num_shards * sizeof(uint32_t));
    size_t BT = B * T;
    uint64_t max_windows = 0;
    for (size_t s = 0; s < l->num_shards; s++) {
        const char* path = l->glob_result.gl_pathv[s];
        FILE* fp = fopen(path, "rb");
        if (fp == NULL) fatalf("cannot open data file '%s': %s", path, strerror(errno));
        struct stat st;
        if (fstat(fileno(fp), &st) != 0) fatalf("cannot stat data file '%s': %s", path, strerror(errno));
        uint64_t fsize = (uint64_t)st.st_size;
        int32_t header[DATALOADER_HEADER_INTS];
        if (fsize < DATALOADER_HEADER_BYTES)
            fatalf("data file '%s' is truncated: %llu bytes, the header alone needs %zu", path,
                   (unsigned long long)fsize, (size_t)DATALOADER_HEADER_BYTES);
        freadCheck(header, sizeof(int32_t), DATALOADER_HEADER_INTS, fp, path);
        fclose(fp);
        if (header[0] != DATALOADER_MAGIC)
            fatalf("data file '%s' has bad magic %d (want %d): not a token shard", path, header[0], DATALOADER_MAGIC);
        if (header[1] != DATALOADER_VERSION)
            fatalf("data file '%s' has unsupported version %d (want %d)", path, header[1], DATALOADER_VERSION);
        if (header[2] < 0) fatalf("data file '%s' has a negative token count %d", path, header[2]);
        uint64_t ntok = (uint64_t)(uint32_t)header[2];
        uint64_t want = DATALOADER_HEADER_BYTES + ntok * sizeof(uint16_t);
        if (fsize < want)
            fatalf("data file '%s' is truncated: header says %llu tokens (%llu bytes), file has %llu bytes", path,
                   (unsigned long long)ntok, (unsigned long long)want, (unsigned long long)fsize);
        if (fsize != want)
            fatalf("data file '%s': size disagrees with header: %llu tokens need %llu bytes, file has %llu", path,
                   (unsigned long long)ntok, (unsigned long long)want, (unsigned long long)fsize);
        if (ntok < BT + 1)
            fatalf("data file '%s' has %llu tokens, fewer than B*T+1 = %zu*%zu+1 = %zu (flags -b, -t)", path,
                   (unsigned long long)ntok, B, T, BT + 1);
        l->shard_tokens[s] = ntok;
        uint64_t W = (ntok - 1) / BT;
        if (W > max_windows) max_windows = W;
        l->shard_windows[s] = (uint32_t)(W / (uint64_t)num_processes);
        l->num_tokens += ntok;
        l->num_batches += l->shard_windows[s];
    }
    if (l->num_batches == 0)
        fatalf("data '%s' has too few tokens for %d processes at B*T = %zu (flags -b, -t): no batch for rank %d", pattern,
               num_processes, BT, process_rank);
    l->window_order = (uint32_t*)mallocCheck((size_t)max_windows * sizeof(uint32_t));
    l->buffer = (uint16_t*)mallocCheck((BT + 1) * sizeof(uint16_t));
    l->inputs = (int*)mallocCheck(BT * sizeof(int));
    l->targets = (int*)mallocCheck(BT * sizeof(int));
    for (size_t s = 0; s < l->num_shards; s++) l->shard_order[s] = (uint32_t)s;
    l->order_epoch = UINT64_MAX;  // computed by the first normalize
    l->epoch = 0;
    l->shard_pos = 0;
    l->window_pos = 0;
    dataloader_normalize(l);
}

// batches per epoch for this rank
static inline size_t dataloader_num_batches(const DataLoader* l) { return l->num_batches; }

// back to the first batch of epoch 0
static inline void dataloader_reset(DataLoader* l) {
    l->epoch = 0;
    l->shard_pos = 0;
    l->window_pos = 0;
    dataloader_normalize(l);
}

// position of the next batch
static inline DataLoaderState dataloader_get_state(const DataLoader* l) {
    DataLoaderState st;
    st.epoch = l->epoch;
    st.shard = l->shard_pos;
    st.window = l->window_pos;
    return st;
}

// restores a position from dataloader_get_state; exits with one line if it does not fit this data
static inline void dataloader_set_state(DataLoader* l, DataLoaderState st) {
    if (st.shard >= l->num_shards)
        fatalf("dataloader state: shard position %llu out of range (%zu shards)", (unsigned long long)st.shard,
               l->num_shards);
    l->epoch = st.epoch;
    l->shard_pos = (size_t)st.shard;
    l->window_pos = 0;
    dataloader_update_shard_order(l);
    size_t s = l->shard_order[l->shard_pos];
    uint64_t nw = l->shard_windows[s];
    if (st.window >= nw && !(st.window == 0 && nw == 0))
        fatalf("dataloader state: window position %llu out of range (%llu windows in shard '%s')",
               (unsigned long long)st.window, (unsigned long long)nw, l->glob_result.gl_pathv[s]);
    l->window_pos = (size_t)st.window;
    dataloader_normalize(l);
}

// reads the next batch into l->inputs / l->targets (B, T) and advances the position
static inline void dataloader_next_batch(DataLoader* l) {
    dataloader_normalize(l);
    dataloader_update_window_order(l);
    size_t s = l->shard_order[l->shard_pos];
    const char* path = l->glob_result.gl_pathv[s];
    size_t BT = l->B * l->T;
    uint64_t k = (uint64_t)l->window_pos * (uint64_t)l->num_processes + (uint64_t)l->process_rank;
    uint64_t w = l->window_order[k];
    if (l->fp_shard != s) {
        if (l->fp) fclose(l->fp);
        l->fp = fopenCheck(path, "rb");
        l->fp_shard = s;
    }
    off_t offset = (off_t)(DATALOADER_HEADER_BYTES + w * (uint64_t)BT * sizeof(uint16_t));
    if (fseeko(l->fp, offset, SEEK_SET) != 0) fatalf("seek failed on data file '%s': %s", path, strerror(errno));
    freadCheck(l->buffer, sizeof(uint16_t), BT + 1, l->fp, path);
    if (l->vocab_size > 0) {
        for (size_t i = 0; i <= BT; i++) {
            if (l->buffer[i] >= l->vocab_size)
                fatalf("data file '%s' has token %u at position %llu, outside the vocab of %u", path, l->buffer[i],
                       (unsigned long long)(w * BT + i), l->vocab_size);
        }
    }
    for (size_t i = 0; i < BT; i++) {
        l->inputs[i] = (int)l->buffer[i];
        l->targets[i] = (int)l->buffer[i + 1];
    }
    l->window_pos++;
    dataloader_normalize(l);
}

static inline void dataloader_free(DataLoader* l) {
    if (l->fp) fclose(l->fp);
    free(l->shard_tokens);
    free(l->shard_windows);
    free(l->shard_order);
    free(l->window_order);
    free(l->buffer);
    free(l->inputs);
    free(l->targets);
    globfree(&l->glob_result);
    memset(l, 0, sizeof(*l));
}

#endif // LLMC_DATALOADER_H
