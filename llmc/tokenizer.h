// Decode-only GPT-2 tokenizer. File (llm.c format): int32[256] header [0] = 20240328, [1] = 2,
// [2] = vocab size, [3] = EOT id; then per token a uint8 length (>= 1) and that many bytes.
#ifndef LLMC_TOKENIZER_H
#define LLMC_TOKENIZER_H

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include "utils.h"

#define TOKENIZER_MAGIC 20240328
#define TOKENIZER_VERSION 2
#define TOKENIZER_HEADER_INTS 256

typedef struct {
    uint32_t vocab_size;
    uint32_t eot_token;
    char* pieces;       // all tokens, each NUL-terminated, back to back
    uint32_t* offsets;  // (vocab_size,) start of token i in pieces
} Tokenizer;

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
    if (header[1] != TOKENIZER_VERSION)
        fatalf("tokenizer file '%s' has unsupported version %d (want %d)", path, header[1], TOKENIZER_VERSION);
    if (header[2] <= 0 || header[2] > (1 << 24))
        fatalf("tokenizer file '%s' has an impossible vocab size %d", path, header[2]);
    if (header[3] < 0 || header[3] >= header[2])
        fatalf("tokenizer file '%s' has EOT id %d outside the vocab of %d", path, header[3], header[2]);
    t->vocab_size = (uint32_t)header[2];
    t->eot_token = (uint32_t)header[3];

    // the body holds V length bytes and the token bytes: V*(1+len) bytes = the size of the NUL-terminated pieces
    size_t body = (size_t)fsize - TOKENIZER_HEADER_INTS * sizeof(int32_t);
    unsigned char* raw = (unsigned char*)mallocCheck(body);
    if (body > 0) freadCheck(raw, 1, body, fp, path);
    fclose(fp);
    t->pieces = (char*)mallocCheck(body + 1);
    t->offsets = (uint32_t*)mallocCheck((size_t)t->vocab_size * sizeof(uint32_t));

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
        memcpy(t->pieces + pos, raw + pos + 1, len);
        t->pieces[pos + len] = '\0';
        pos += 1 + len;
    }
    if (pos != body)
        TOKENIZER_BODY_FAIL("tokenizer file '%s' has %zu bytes after the last of its %u tokens", path, body - pos,
                            t->vocab_size);
    free(raw);
#undef TOKENIZER_BODY_FAIL
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

static inline void tokenizer_free(Tokenizer* t) {
    free(t->pieces);
    free(t->offsets);
    memset(t, 0, sizeof(*t));
}

#endif // LLMC_TOKENIZER_H
