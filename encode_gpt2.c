// Encodes a UTF-8 text file with GPT-2 BPE (llmc/bpe.h, equal to tiktoken's "gpt2") into a token shard in llm.c's
// format (llmc/dataloader.h), or prints the token ids.
//   ./encode_gpt2 -i text.txt -o shard.bin [-tk gpt2_tokenizer.bin] [-special 0|1] [-ids 0|1]
// -special 1 encodes each literal "<|endoftext|>" as the EOT token (0: such text is an error, as in tiktoken).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "llmc/utils.h"
#include "llmc/tokenizer.h"
#include "llmc/bpe.h"
#include "llmc/dataloader.h"
#include "llmc/checkpoint.h"

static void usage(FILE* fp) {
    fprintf(fp,
            "Usage: encode_gpt2 -i TEXT [-o SHARD] [-tk TOKENIZER] [-special 0|1] [-ids 0|1]\n"
            "  -i        UTF-8 text file to encode\n"
            "  -o        output token shard (llm.c format: int32[256] header, uint16 tokens)\n"
            "  -tk       tokenizer file with merges (version 3) [gpt2_tokenizer.bin]\n"
            "  -special  1 = each <|endoftext|> in the text is the EOT token, 0 = it is an error [0]\n"
            "  -ids      1 = print the token ids, one line, space-separated [0]\n");
}

static int parse_bit(const char* flag, const char* v) {
    if (strcmp(v, "0") == 0) return 0;
    if (strcmp(v, "1") == 0) return 1;
    fatalf("flag %s: '%s' is not 0 or 1", flag, v);
    return 0;
}

static void write_shard(const char* path, const uint32_t* ids, size_t n, uint32_t vocab) {
    if (vocab > 65536) fatalf("flag -o: a vocab of %u does not fit the shard's uint16 tokens", vocab);
    if (n > (size_t)INT32_MAX) fatalf("flag -o: %zu tokens do not fit a shard header", n);
    int32_t header[DATALOADER_HEADER_INTS] = {DATALOADER_MAGIC, DATALOADER_VERSION, (int32_t)n};
    uint16_t* toks = (uint16_t*)mallocCheck((n > 0 ? n : 1) * sizeof(uint16_t));
    for (size_t i = 0; i < n; i++) toks[i] = (uint16_t)ids[i];
    CheckpointFile f;
    checkpoint_file_open(&f, path);
    fwriteCheck(header, sizeof(int32_t), DATALOADER_HEADER_INTS, f.fp, f.path);
    if (n > 0) fwriteCheck(toks, sizeof(uint16_t), n, f.fp, f.path);
    checkpoint_file_commit(&f);
    free(toks);
}

int main(int argc, char** argv) {
    const char *in = NULL, *out = NULL, *tk = "gpt2_tokenizer.bin";
    int special = 0, print_ids = 0;
    for (int i = 1; i < argc; i += 2) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-help") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) fatalf("flag %s: missing value (--help for the flags)", argv[i]);
        const char* v = argv[i + 1];
        if (strcmp(argv[i], "-i") == 0) in = v;
        else if (strcmp(argv[i], "-o") == 0) out = v;
        else if (strcmp(argv[i], "-tk") == 0) tk = v;
        else if (strcmp(argv[i], "-special") == 0) special = parse_bit("-special", v);
        else if (strcmp(argv[i], "-ids") == 0) print_ids = parse_bit("-ids", v);
        else fatalf("flag %s: unknown flag (--help for the flags)", argv[i]);
    }
    if (in == NULL) fatalf("flag -i: the text file to encode is required (--help for the flags)");
    if (out == NULL && !print_ids) fatalf("flag -o: an output shard (or -ids 1) is required");

    FILE* fp = fopenCheck(in, "rb");
    long size = fileSizeCheck(fp, in);
    char* text = (char*)mallocCheck((size_t)size + 1);
    if (size > 0) freadCheck(text, 1, (size_t)size, fp, in);
    fcloseCheck(fp, in);

    Tokenizer tok;
    tokenizer_init(&tok, tk);
    BpeEncoder enc;
    bpe_init(&enc, &tok, tk);
    uint32_t* ids = (uint32_t*)mallocCheck(((size_t)size + 1) * sizeof(uint32_t));
    size_t bad = 0;
    long long n = bpe_encode(&enc, text, (size_t)size, special, ids, &bad);
    if (n == -1) fatalf("text file '%s' is not valid UTF-8 at byte %zu", in, bad);
    if (n == -2)
        fatalf("text file '%s' contains %s at byte %zu: pass -special 1 to encode it as the EOT token", in,
               BPE_EOT_TEXT, bad);
    if (print_ids) {
        for (long long i = 0; i < n; i++) printf(i ? " %u" : "%u", ids[i]);
        printf("\n");
    }
    if (out != NULL) {
        write_shard(out, ids, (size_t)n, tok.vocab_size);
        fprintf(stderr, "%s: %lld tokens from %ld bytes -> %s\n", in, n, size, out);
    }
    free(ids);
    free(text);
    bpe_free(&enc);
    tokenizer_free(&tok);
    return 0;
}
