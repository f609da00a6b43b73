// Exports a checkpoint in the Hugging Face GPT-2 layout: model.safetensors (the mean weights) and config.json
// (GPT2LMHeadModel), and with -sigma 1 sigma.safetensors (the IVON/PoCo posterior's sigma, llmc/posterior.h) with
// the same names and layout. The llm.c model file stays the native format; this is a one-way export.
//   ./export_gpt2 -c DIR [-cs STEP] | -e model.bin [-st state.bin]  -od OUT_DIR [-sigma 0|1]
// Layout: transformer.wte.weight (V, C) with the vocab unpadded (lm_head is tied to it, HF omits it),
// transformer.wpe.weight (maxT, C), transformer.h.{i}.{ln_1,attn.c_attn,attn.c_proj,ln_2,mlp.c_fc,mlp.c_proj}.*,
// transformer.ln_f.*; the matmul weights in HF's Conv1D layout (in, out), the transpose of llm.c's (out, in).
// safetensors: u64 little-endian header length, the JSON header (dtype F32, shape, data_offsets), raw fp32 data.
// C rather than Python so that sigma is the same fp32 arithmetic as the trainer's (posterior_sigma); the
// independent check is dev/test/check_export.py.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "llmc/utils.h"
#include "llmc/model.h"
#include "llmc/posterior.h"
#include "llmc/tool_flags.h"

// one HF tensor per model tensor (and layer): llm.c table index, per layer, transposed, llm.c columns in units of C
typedef struct {
    const char* name;
    int param, per_layer, transpose, cols_c;  // cols_c = 0: a 1-D tensor
} ExportTensor;

static const ExportTensor EXPORT_TABLE[NUM_PARAMETER_TENSORS] = {
    {"wte.weight", 0, 0, 0, 1},          {"wpe.weight", 1, 0, 0, 1},
    {"ln_1.weight", 2, 1, 0, 0},         {"ln_1.bias", 3, 1, 0, 0},
    {"attn.c_attn.weight", 4, 1, 1, 1},  {"attn.c_attn.bias", 5, 1, 0, 0},
    {"attn.c_proj.weight", 6, 1, 1, 1},  {"attn.c_proj.bias", 7, 1, 0, 0},
    {"ln_2.weight", 8, 1, 0, 0},         {"ln_2.bias", 9, 1, 0, 0},
    {"mlp.c_fc.weight", 10, 1, 1, 1},    {"mlp.c_fc.bias", 11, 1, 0, 0},
    {"mlp.c_proj.weight", 12, 1, 1, 4},  {"mlp.c_proj.bias", 13, 1, 0, 0},
    {"ln_f.weight", 14, 0, 0, 0},        {"ln_f.bias", 15, 0, 0, 0},
};

// one tensor of the file: name, source (rows, cols) in llm.c layout, transposed on write
typedef struct {
    char name[96];
    const float* src;
    size_t rows, cols;  // cols = 0: 1-D of `rows` entries
    int transpose;
} ExportItem;

// the 2 + 12 L + 2 tensors in HF order over weights laid out as the model file; returns their number
static int export_items(ExportItem* items, GPT2Config c, const size_t sizes[NUM_PARAMETER_TENSORS], const float* w) {
    size_t off[NUM_PARAMETER_TENSORS], o = 0;
    for (int t = 0; t < NUM_PARAMETER_TENSORS; t++) off[t] = o, o += sizes[t];
    int n = 0;
    for (int l = -1; l <= c.num_layers; l++) {  // -1: wte, wpe; 0..L-1: the blocks; L: ln_f
        for (int k = 0; k < NUM_PARAMETER_TENSORS; k++) {
            const ExportTensor* e = &EXPORT_TABLE[k];
            int want = e->per_layer ? (l >= 0 && l < c.num_layers) : (e->param < 2 ? l == -1 : l == c.num_layers);
            if (!want) continue;
            ExportItem* it = &items[n++];
            size_t each = e->per_layer ? sizes[e->param] / (size_t)c.num_layers : sizes[e->param];
            it->src = w + off[e->param] + (e->per_layer ? (size_t)l * each : 0);
            it->cols = (size_t)e->cols_c * (size_t)c.channels;
            it->rows = it->cols ? each / it->cols : each;
            if (e->param == 0) it->rows = (size_t)c.vocab_size;  // wte unpadded
            it->transpose = e->transpose;
            if (e->per_layer) snprintf(it->name, sizeof(it->name), "transformer.h.%d.%s", l, e->name);
            else snprintf(it->name, sizeof(it->name), "transformer.%s", e->name);
        }
    }
    return n;
}

// writes the tensors of weights w (model-file layout) as a safetensors file
static void export_safetensors(const char* path, GPT2Config c, const size_t sizes[NUM_PARAMETER_TENSORS],
                               const float* w) {
    ExportItem* items = (ExportItem*)mallocCheck((size_t)(4 + 12 * c.num_layers) * sizeof(ExportItem));
    int n = export_items(items, c, sizes, w);
    size_t cap = 256 + (size_t)n * 192, len = 0, data = 0, maxn = 0;
    char* hdr = (char*)mallocCheck(cap);
    len += (size_t)snprintf(hdr + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        const ExportItem* it = &items[i];
        size_t count = it->cols ? it->rows * it->cols : it->rows;
        if (it->cols == 0)
            len += (size_t)snprintf(hdr + len, cap - len, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%zu]", it->name,
                                    it->rows);
        else
            len += (size_t)snprintf(hdr + len, cap - len, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%zu,%zu]", it->name,
                                    it->transpose ? it->cols : it->rows, it->transpose ? it->rows : it->cols);
        len += (size_t)snprintf(hdr + len, cap - len, ",\"data_offsets\":[%zu,%zu]}", data * 4, (data + count) * 4);
        data += count;
        maxn = count > maxn ? count : maxn;
    }
    len += (size_t)snprintf(hdr + len, cap - len, "}");
    while (len % 8 != 0) hdr[len++] = ' ';  // the data starts 8-byte aligned
    uint64_t hlen = (uint64_t)len;
    float* tmp = (float*)mallocCheck(maxn * sizeof(float));  // (cols, rows) transposed copy
    CheckpointFile f;
    checkpoint_file_open(&f, path);
    fwriteCheck(&hlen, sizeof(hlen), 1, f.fp, f.tmp);
    fwriteCheck(hdr, 1, len, f.fp, f.tmp);
    for (int i = 0; i < n; i++) {
        const ExportItem* it = &items[i];
        size_t count = it->cols ? it->rows * it->cols : it->rows;
        const float* out = it->src;
        if (it->transpose) {
            for (size_t r = 0; r < it->rows; r++)
                for (size_t k = 0; k < it->cols; k++) tmp[k * it->rows + r] = it->src[r * it->cols + k];
            out = tmp;
        }
        fwriteCheck(out, sizeof(float), count, f.fp, f.tmp);
    }
    checkpoint_file_commit(&f);
    printf("wrote %s: %d tensors, %zu floats\n", path, n, data);
    free(tmp);
    free(hdr);
    free(items);
}

static void export_config_json(const char* path, GPT2Config c) {
    CheckpointFile f;
    checkpoint_file_open(&f, path);
    fprintf(f.fp,
            "{\n  \"architectures\": [\"GPT2LMHeadModel\"],\n  \"model_type\": \"gpt2\",\n"
            "  \"n_layer\": %d,\n  \"n_head\": %d,\n  \"n_embd\": %d,\n  \"n_positions\": %d,\n  \"n_ctx\": %d,\n"
            "  \"vocab_size\": %d,\n  \"activation_function\": \"gelu_new\",\n  \"layer_norm_epsilon\": 1e-05,\n"
            "  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n  \"tie_word_embeddings\": true,\n"
            "  \"resid_pdrop\": 0.0,\n  \"embd_pdrop\": 0.0,\n  \"attn_pdrop\": 0.0,\n  \"torch_dtype\": \"float32\"\n}\n",
            c.num_layers, c.num_heads, c.channels, c.max_seq_len, c.max_seq_len, c.vocab_size, GPT2_EOT, GPT2_EOT);
    checkpoint_file_commit(&f);
    printf("wrote %s\n", path);
}

int main(int argc, char** argv) {
    const char *dir = NULL, *model = NULL, *state = NULL, *od = NULL;
    int step = -1, sigma = 0;
    double ess = -1.0, prior_2d = -1.0, prior_1d = -1.0;
    const ToolFlag flags[] = {
        {"-c", TOOL_STRING, &dir, "checkpoint dir (a trainer's -o)"},
        {"-cs", TOOL_INT, &step, "checkpoint step in -c (-1 = the latest with a DONE marker)"},
        {"-e", TOOL_STRING, &model, "model file (instead of -c)"},
        {"-st", TOOL_STRING, &state, "state file of the model file (IVON/PoCo: needed for -sigma 1)"},
        {"-od", TOOL_STRING, &od, "output dir: model.safetensors, config.json (and sigma.safetensors)"},
        {"-sigma", TOOL_INT, &sigma, "1 = also sigma.safetensors (needs IVON/PoCo state)"},
        {"-ess", TOOL_DOUBLE, &ess, "effective sample size (-1 = the state header's)"},
        {"-pr", TOOL_DOUBLE, &prior_2d, "prior precision of the 2-D tensors (-1 = the state header's)"},
        {"-pr1", TOOL_DOUBLE, &prior_1d, "prior precision of the 1-D tensors (-1 = the state header's)"},
    };
    const char* synopsis = "export_gpt2 -c DIR [-cs STEP] | -e MODEL [-st STATE]  -od OUT_DIR [flags]";
    tool_flags_parse(argc, argv, synopsis, flags, (int)(sizeof(flags) / sizeof(flags[0])));
    if (sigma != 0 && sigma != 1) fatalf("flag -sigma: '%d' is not 0 or 1", sigma);
    if (od == NULL) fatalf("flag -od: an output dir is required");
    posterior_check_overrides(ess, prior_2d, prior_1d);
    char mbuf[CHECKPOINT_PATH_MAX], sbuf[CHECKPOINT_PATH_MAX], path[CHECKPOINT_PATH_MAX];
    posterior_checkpoint_paths(dir, step, &model, &state, mbuf, sbuf, sizeof(mbuf));
    if (!sigma) state = NULL;  // the mean alone needs no state file
    Posterior post;
    posterior_load(&post, model, state, ess, prior_2d, prior_1d);
    char err[512];
    if (sigma && !posterior_has_sigma(&post, state, err, sizeof(err))) fatalf("flag -sigma: %s", err);
    if (mkdir(od, 0755) != 0 && errno != EEXIST) fatalf("flag -od: cannot create output dir '%s': %s", od,
                                                         strerror(errno));
    snprintf(path, sizeof(path), "%s/model.safetensors", od);
    export_safetensors(path, post.config, post.sizes, post.mean);
    snprintf(path, sizeof(path), "%s/config.json", od);
    export_config_json(path, post.config);
    if (sigma) {
        float* s = (float*)mallocCheck(post.num_parameters * sizeof(float));
        posterior_sigma(&post, s);
        snprintf(path, sizeof(path), "%s/sigma.safetensors", od);
        export_safetensors(path, post.config, post.sizes, s);
        free(s);
    }
    posterior_free(&post);
    return 0;
}
