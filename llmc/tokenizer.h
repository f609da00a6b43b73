// GPT-2 tokenizer file (llm.c format): int32[256] header [0] = 20240328, [1] = version 2 or 3,
// [2] = vocab size, [3] = EOT id, [4] = number of merges (version 3); then per token a uint8 length (>= 1) and that
// many bytes; version 3 then holds the BPE merges in rank order as int32 triples (left, right, merged id), with
// bytes(merged) = bytes(left) bytes(right). Decoding needs version 2; encoding (llmc/bpe.h) needs the merges.
#ifndef LLMC_TOKENIZER_H
#define LLMC_TOKENIZER_H

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include "utils.h"

#define TOKENIZER_MAGIC 20240328
#define TOKENIZER_VERSION 3     // written by dev/data/prepro_austen.py
#define TOKENIZER_VERSION_MIN 2 // version 2: no merges, decoding only
#define TOKENIZER_HEADER_INTS 256

typedef struct {
    uint32_t vocab_size;
    uint32_t eot_token;
    char* pieces;       // all tokens, each NUL-terminated, back to back
    uint32_t* offsets;  // (vocab_size,) start of token i in pieces
    uint8_t* lengths;   // (vocab_size,) bytes of token i
    uint32_t num_merges;
    uint32_t* merges;   // (num_merges, 3) left, right, merged id in rank order; NULL for a version 2 file
} Tokenizer;

static inline void tokenizer_free(Tokenizer* t) {
    free(t->pieces);
    free(t->offsets);
    free(t->lengths);
    free(t->merges);
    memset(t, 0, sizeof(*t));
}

// Checks the merge triples of a version 3 file: ids in the vocab, merged = left + right bytes.
static inline void tokenizer_check_merges(const Tokenizer* t, const char* path) {
    for (uint32_t k = 0; k < t->num_merges; k++) {
        const uint32_t* m = t->merges + 3 * (size_t)k;
        if (m[0] >= t->vocab_size || m[1] >= t->vocab_size || m[2] >= t->vocab_size)
            fatalf("tokenizer file '%s': merge %u (%u, %u -> %u) has an id outside the vocab of %u", path, k, m[0], m[1],
                   m[2], t->vocab_size);
        size_t la = t->lengths[m[0]], lb = t->lengths[m[1]];
        const char *pa = t->pieces + t->offsets[m[0]], *pb = t->pieces + t->offsets[m[1]];
        const char* pc = t->pieces + t->offsets[m[2]];
        if (t->lengths[m[2]] != la + lb || memcmp(pc, pa, la) != 0 || memcmp(pc + la, pb, lb) != 0)
            fatalf("tokenizer file '%s': merge %u says %u + %u -> %u, but the token bytes do not concatenate", path,
                   k, m[0], m[1], m[2]);
    }
}

// Reads and validates a tokenizer file; exits with one line naming the file on any problem.
static inline void tokenizer_init(Tokenizer* t, const char* path) {
    memset(t, 0, sizeof(*t));
    FILE* fp = fopen(path, "rb");
    if (fp == NULL) fatalf("cannot open tokenizer file '%s': %s", path, strerror(errno));
    long fsize = fileSizeCheck(fp, path);
    if (fsize < (long)(TOKENIZER_HEADER_INTS * sizeof(int32_t)))
        fatalf("tokenizer file '%s' is truncated: %ld bytes, the header alone needs %zu", path, fsize,
               TOKENIZER_HEADER_INTS * sizeof(int32_t));
    int32_t header[TOKENIZER_HEADER_INTS];
    freadCheck(header, sizeof(int32_t), TOKENIZER_HEADER_INTS, fp, path);
    if (header[0] != TOKENIZER_MAGIC)
        fatalf("tokenizer file '%s' has bad magic %d (want %d)", path, header[0], TOKENIZER_MAGIC);
    if (header[1] < TOKENIZER_VERSION_MIN || header[1] > TOKENIZER_VERSION)
        fatalf("tokenizer file '%s' has unsupported version %d (want %d or %d)", path, header[1],
               TOKENIZER_VERSION_MIN, TOKENIZER_VERSION);
    if (header[2] <= 0 || header[2] > (1 << 24))
        fatalf("tokenizer file '%s' has an impossible vocab size %d", path, header[2]);
    if (header[3] < 0 || header[3] >= header[2])
        fatalf("tokenizer file '%s' has EOT id %d outside the vocab of %d", path, header[3], header[2]);
    int32_t nmerge = header[1] >= 3 ? header[4] : 0;
    if (nmerge < 0 || nmerge > (1 << 24))
        fatalf("tokenizer file '%s' has an impossible merge count %d", path, nmerge);
    t->vocab_size = (uint32_t)header[2];
    t->eot_token = (uint32_t)header[3];

    // the body holds V length bytes and the token bytes: V*(1+len) bytes = the size of the NUL-terminated pieces;
    // the merges follow
    size_t merge_bytes = (size_t)nmerge * 3 * sizeof(int32_t);
    size_t after_header = (size_t)fsize - TOKENIZER_HEADER_INTS * sizeof(int32_t);
    if (after_header < merge_bytes)
        fatalf("tokenizer file '%s' is truncated: %d merges need %zu bytes, %zu follow the header", path, nmerge,
               merge_bytes, after_header);
    size_t body = after_header - merge_bytes;
    unsigned char* raw = (unsigned char*)mallocCheck(body);
    if (body > 0) freadCheck(raw, 1, body, fp, path);
    if (nmerge > 0) {
        t->num_merges = (uint32_t)nmerge;
        t->merges = (uint32_t*)mallocCheck(merge_bytes);
        freadCheck(t->merges, sizeof(uint32_t), (size_t)nmerge * 3, fp, path);
    }
    fclose(fp);
    t->pieces = (char*)mallocCheck(body + 1);
    t->offsets = (uint32_t*)mallocCheck((size_t)t->vocab_size * sizeof(uint32_t));
    t->lengths = (uint8_t*)mallocCheck((size_t)t->vocab_size);

// a bad body: the read buffer is freed before the error exit (no leak under LeakSanitizer)
#define TOKENIZER_BODY_FAIL(...) \
    do {                         \
        free(raw);               \
        fatalf(__VA_ARGS__);     \
    } while (0)
    size_t pos = 0;
    for (uint32_t i = 0; i < t->vocab_size; i++) {
        if (pos >= body)
            TOKENIZER_BODY_FAIL("tokenizer file '%s' is truncated: ends at token %u of %u", path, i, t->vocab_size);
        size_t len = raw[pos];
        if (len == 0) TOKENIZER_BODY_FAIL("tokenizer file '%s' has a zero-length token %u", path, i);
        if (pos + 1 + len > body)
            TOKENIZER_BODY_FAIL("tokenizer file '%s' is truncated: token %u needs %zu bytes past the end", path, i,
                                pos + 1 + len - body);
        t->offsets[i] = (uint32_t)pos;
        t->lengths[i] = (uint8_t)len;
        memcpy(t->pieces + pos, raw + pos + 1, len);
        t->pieces[pos + len] = '\0';
        pos += 1 + len;
    }
    if (pos != body) {
        if (nmerge > 0)
            TOKENIZER_BODY_FAIL("tokenizer file '%s': its %u tokens end %zu bytes before the %d merges", path,
                                t->vocab_size, body - pos, nmerge);
        TOKENIZER_BODY_FAIL("tokenizer file '%s' has %zu bytes after the last of its %u tokens", path, body - pos,
                            t->vocab_size);
    }
    free(raw);
#undef TOKENIZER_BODY_FAIL
    tokenizer_check_merges(t, path);
}

// the bytes of token `id`, NUL-terminated; an out-of-range id prints one error line and gives ""
static inline const char* tokenizer_decode(const Tokenizer* t, uint32_t id) {
    if (t->pieces == NULL) {
        fprintf(stderr, "error: tokenizer_decode: tokenizer not loaded\n");
        return "";
    }
    if (id >= t->vocab_size) {
        fprintf(stderr, "error: token id %u is out of range (vocab size %u)\n", id, t->vocab_size);
        return "";
    }
    return t->pieces + t->offsets[id];
}

// 1 if a piece is safe to print: anything but a lone ASCII control byte that is not whitespace.
// Single bytes >= 0x80 are UTF-8 fragments that combine with neighbouring tokens, so they print.
static inline int tokenizer_printable(const char* piece) {
    if (piece == NULL || piece[0] == '\0') return 0;
    if (piece[1] != '\0') return 1;
    unsigned char c = (unsigned char)piece[0];
    if (c == '\n' || c == '\t' || c == '\r' || c == ' ' || c == '\v' || c == '\f') return 1;
    return c >= 0x20 && c != 0x7f;
}

static inline void tokenizer_fprint(FILE* fp, const char* piece) {
    if (tokenizer_printable(piece)) fputs(piece, fp);
}

static inline void tokenizer_print(const char* piece) { tokenizer_fprint(stdout, piece); }



#endif // LLMC_TOKENIZER_H
