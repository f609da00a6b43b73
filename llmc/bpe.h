// GPT-2 byte-level BPE encoder, equal to tiktoken's "gpt2" encoding token for token:
//   1. with special tokens allowed, the text splits on "<|endoftext|>" (each occurrence -> the EOT id);
//   2. each piece is pre-tokenized with GPT-2's pattern (PCRE2, UTF-8 with Unicode properties):
//        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//      where \s is the Unicode White_Space set written out (what tiktoken and Python's regex module match);
//   3. each chunk starts as its bytes (one single-byte token each) and the adjacent pair of lowest merge rank is
//      merged, leftmost first, until no pair has a merge.
// The merges come from a version 3 tokenizer file (llmc/tokenizer.h). Link with -lpcre2-8.
#ifndef LLMC_BPE_H
#define LLMC_BPE_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "utils.h"
#include "tokenizer.h"

#define BPE_WS "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define BPE_PATTERN                                                                                                  \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" BPE_WS "\\p{L}\\p{N}]+|[" BPE_WS "]+(?![^" BPE_WS "])|[" BPE_WS \
    "]+"
#define BPE_EOT_TEXT "<|endoftext|>"

typedef struct {
    const Tokenizer* tok;
    pcre2_code* re;
    pcre2_match_data* match;
    uint32_t byte_token[256];  // the single-byte token of each byte value
    // merge table, open addressing: key = left << 32 | right (+1 so 0 means empty) -> rank, merged id
    uint64_t* keys;
    uint32_t* ranks;
    uint32_t* merged;
    size_t cap;  // a power of two
    uint32_t* symbols;  // (sym_cap,) the chunk being merged, grown to the longest chunk
    size_t sym_cap;
} BpeEncoder;

static inline uint64_t bpe_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
}

// rank of the merge (left, right), UINT32_MAX if there is none; *out = the merged id
static inline uint32_t bpe_lookup(const BpeEncoder* e, uint32_t left, uint32_t right, uint32_t* out) {
    uint64_t key = (((uint64_t)left << 32) | right) + 1;
    for (size_t i = bpe_hash(key) & (e->cap - 1);; i = (i + 1) & (e->cap - 1)) {
        if (e->keys[i] == 0) return UINT32_MAX;
        if (e->keys[i] == key) {
            *out = e->merged[i];
            return e->ranks[i];
        }
    }
}

// Builds the encoder of a loaded tokenizer (tokenizer_init of `path`); exits with one line naming the file when it
// has no merges or no single-byte token for some byte.
static inline void bpe_init(BpeEncoder* e, const Tokenizer* tok, const char* path) {
    memset(e, 0, sizeof(*e));
    if (tok->merges == NULL || tok->num_merges == 0)
        fatalf("tokenizer file '%s' has no merges (version 2): encoding text needs version 3 (make data writes it)",
               path);
    e->tok = tok;
    for (int b = 0; b < 256; b++) e->byte_token[b] = UINT32_MAX;
    for (uint32_t i = 0; i < tok->vocab_size; i++) {
        if (tok->lengths[i] == 1 && i != tok->eot_token) {
            unsigned char b = (unsigned char)tok->pieces[tok->offsets[i]];
            if (e->byte_token[b] == UINT32_MAX) e->byte_token[b] = i;
        }
    }
    for (int b = 0; b < 256; b++)
        if (e->byte_token[b] == UINT32_MAX) fatalf("tokenizer file '%s' has no token for the byte 0x%02x", path, b);
    e->cap = 1;
    while (e->cap < 2 * (size_t)tok->num_merges) e->cap <<= 1;
    e->keys = (uint64_t*)callocCheck(e->cap * sizeof(uint64_t));
    e->ranks = (uint32_t*)mallocCheck(e->cap * sizeof(uint32_t));
    e->merged = (uint32_t*)mallocCheck(e->cap * sizeof(uint32_t));
    for (uint32_t r = 0; r < tok->num_merges; r++) {
        const uint32_t* m = tok->merges + 3 * (size_t)r;
        uint64_t key = (((uint64_t)m[0] << 32) | m[1]) + 1;
        size_t i = bpe_hash(key) & (e->cap - 1);
        while (e->keys[i] != 0 && e->keys[i] != key) i = (i + 1) & (e->cap - 1);
        if (e->keys[i] == key) continue;  // a repeated pair keeps its first (lowest) rank
        e->keys[i] = key;
        e->ranks[i] = r;
        e->merged[i] = m[2];
    }
    int errcode;
    PCRE2_SIZE erroff;
    e->re = pcre2_compile((PCRE2_SPTR)BPE_PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &errcode, &erroff,
                          NULL);
    if (e->re == NULL) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof(msg));
        fatalf("bpe: the pre-tokenizer pattern does not compile at offset %zu: %s", (size_t)erroff, (char*)msg);
    }
    e->match = pcre2_match_data_create_from_pattern(e->re, NULL);
    if (e->match == NULL) fatalf("bpe: out of memory for the match data");
}

// offset of the first byte that does not start a valid UTF-8 character (overlong forms, surrogates and code points
// above U+10FFFF are invalid), n if all n bytes are valid
static inline size_t bpe_utf8_invalid_at(const unsigned char* s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : 4;
        if (k == 4) return i;  // a continuation byte, or 0xf8..0xff, cannot start a character
        if (k == 0) {
            i++;
            continue;
        }
        if (i + k >= n) return i;  // truncated
        uint32_t cp = c & (0x3f >> k);
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[k] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += k + 1;
    }
    return n;
}

// BPE of one chunk of n bytes: appends its tokens to out (room for n)
static inline size_t bpe_merge_chunk(BpeEncoder* e, const unsigned char* s, size_t n, uint32_t* out) {
    if (n > e->sym_cap) {
        free(e->symbols);
        e->sym_cap = n > 256 ? n : 256;
        e->symbols = (uint32_t*)mallocCheck(e->sym_cap * sizeof(uint32_t));
    }
    uint32_t* sym = e->symbols;
    for (size_t i = 0; i < n; i++) sym[i] = e->byte_token[s[i]];
    size_t len = n;
    while (len > 1) {
        uint32_t best = UINT32_MAX, best_id = 0;
        size_t at = 0;
        for (size_t i = 0; i + 1 < len; i++) {
            uint32_t id;
            uint32_t r = bpe_lookup(e, sym[i], sym[i + 1], &id);
            if (r < best) {
                best = r;
                best_id = id;
                at = i;
            }
        }
        if (best == UINT32_MAX) break;
        sym[at] = best_id;
        memmove(sym + at + 1, sym + at + 2, (len - at - 2) * sizeof(uint32_t));
        len--;
    }
    memcpy(out, sym, len * sizeof(uint32_t));
    return len;
}

// Encodes n bytes of valid UTF-8 (bpe_utf8_invalid_at) without special tokens; appends to out, which has room for
// n tokens (every token covers at least one byte). Returns the number of tokens.
static inline size_t bpe_encode_ordinary(BpeEncoder* e, const char* text, size_t n, uint32_t* out) {
    size_t pos = 0, count = 0;
    while (pos < n) {
        int rc = pcre2_match(e->re, (PCRE2_SPTR)text, n, pos, PCRE2_NO_UTF_CHECK, e->match, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;  // not reached: every character starts a match
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof(msg));
            fatalf("bpe: pre-tokenizer match failed at byte %zu: %s", pos, (char*)msg);
        }
        PCRE2_SIZE* ov = pcre2_get_ovector_pointer(e->match);
        size_t a = (size_t)ov[0], b = (size_t)ov[1];
        count += bpe_merge_chunk(e, (const unsigned char*)text + a, b - a, out + count);
        pos = b;
    }
    return count;
}

// Encodes n bytes of UTF-8; with allow_special each "<|endoftext|>" becomes the EOT id, without it the text must not
// contain one. out has room for n tokens. Returns the token count; -1 on invalid UTF-8, -2 on a special token that
// is not allowed, with *bad_at = the byte offset.
static inline long long bpe_encode(BpeEncoder* e, const char* text, size_t n, int allow_special, uint32_t* out,
                                   size_t* bad_at) {
    size_t bad = bpe_utf8_invalid_at((const unsigned char*)text, n);
    if (bad < n) {
        *bad_at = bad;
        return -1;
    }
    size_t eot_len = strlen(BPE_EOT_TEXT), pos = 0, count = 0;
    while (1) {
        size_t end = pos;
        while (end + eot_len <= n && (text[end] != '<' || memcmp(text + end, BPE_EOT_TEXT, eot_len) != 0)) end++;
        int hit = end + eot_len <= n;
        if (!hit) end = n;
        if (hit && !allow_special) {
            *bad_at = end;
            return -2;
        }
        count += bpe_encode_ordinary(e, text + pos, end - pos, out + count);
        if (!hit) break;
        out[count++] = e->tok->eot_token;
        pos = end + eot_len;
    }
    return (long long)count;
}

static inline void bpe_free(BpeEncoder* e) {
    pcre2_match_data_free(e->match);
    pcre2_code_free(e->re);
    free(e->keys);
    free(e->ranks);
    free(e->merged);
    free(e->symbols);
    memset(e, 0, sizeof(*e));
}

#endif // LLMC_BPE_H
