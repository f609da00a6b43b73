// libFuzzer harness: tokenizer file reader (llmc/tokenizer.h) on an arbitrary file. An accepted file is
// decoded token by token (each piece NUL-terminated within its 255 bytes), plus one id past the vocab.
#include "fuzz_common.h"
#include "../../llmc/tokenizer.h"

static Tokenizer tok;
static FILE* devnull;

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (devnull == NULL) devnull = fdopen(open("/dev/null", O_WRONLY), "w");
    const char* path = fuzz_write_file(data, size);
    fuzz_armed = 1;
    if (setjmp(fuzz_jmp) == 0) {
        tokenizer_init(&tok, path);
        if (tok.eot_token >= tok.vocab_size) abort();
        for (uint32_t i = 0; i < tok.vocab_size; i++) {
            const char* piece = tokenizer_decode(&tok, i);
            if (strlen(piece) > 255) abort();  // a piece may hold NUL bytes (GPT-2 has the byte 0x00)
            tokenizer_fprint(devnull, piece);
        }
        const char* past = tokenizer_decode(&tok, tok.vocab_size);
        if (past[0] != '\0') abort();
        tokenizer_free(&tok);
        fuzz_armed = 0;
        fuzz_expect_released("tokenizer");
    } else {
        memset(&tok, 0, sizeof(tok));
        fuzz_release();
    }
    return 0;
}
