// Unit tests of the shared llmc/ modules: cli, dataloader, tokenizer, schedule, logger, philox, checkpoint
// (incl. rolling deletion), outlier (step guard).
// Error paths that exit run in a forked child; the test checks its exit code and its stderr line.
// Build: gcc -O2 -Wall -Wextra -o dev/test/bin/test_llmc dev/test/test_llmc.c -lm
// Last line: "N passed, N failed"; exit status non-zero on any failure.
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include "../../llmc/utils.h"
#include "../../llmc/cli.h"
#include "../../llmc/dataloader.h"
#include "../../llmc/tokenizer.h"
#include "../../llmc/schedule.h"
#include "../../llmc/logger.h"
#include "../../llmc/philox.h"
#include "../../llmc/checkpoint.h"
#include "../../llmc/outlier.h"
#include "../../llmc/dist.h"

static int g_pass = 0, g_fail = 0;
static char g_tmp[256];  // temp dir of this run

#define CHECK(cond, ...) do { if (cond) { g_pass++; } else { g_fail++; printf("FAIL [%s:%d] ", __FILE__, __LINE__); \
                              printf(__VA_ARGS__); printf("\n"); } } while (0)

static void tmp_path(char* buf, size_t n, const char* name) { snprintf(buf, n, "%s/%s", g_tmp, name); }

// ------------------------------------------------------------------------------------------------
// forked child runs: exit code + captured stderr

typedef void (*child_fn)(void* arg);

static int run_child(child_fn fn, void* arg, char* msg, size_t msglen) {
    int fds[2];
    if (pipe(fds) != 0) { perror("pipe"); exit(2); }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); exit(2); }
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 1);
        fn(arg);
        fflush(stdout);
        fflush(stderr);
        _exit(0);
    }
    close(fds[1]);
    size_t got = 0;
    ssize_t k;
    while ((k = read(fds[0], msg + got, msglen - 1 - got)) > 0) {
        got += (size_t)k;
        if (got >= msglen - 1) break;
    }
    msg[got] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

// expects exit code 1 and a message containing every needle (NULL-terminated list)
static void expect_exit1(const char* what, child_fn fn, void* arg, const char* needle1, const char* needle2) {
    char msg[4096];
    int rc = run_child(fn, arg, msg, sizeof(msg));
    int ok = rc == 1 && strstr(msg, "error: ") != NULL && (needle1 == NULL || strstr(msg, needle1) != NULL) &&
             (needle2 == NULL || strstr(msg, needle2) != NULL);
    CHECK(ok, "%s: want exit 1 with '%s' '%s', got exit %d, stderr: %s", what, needle1 ? needle1 : "",
          needle2 ? needle2 : "", rc, msg);
}

// ------------------------------------------------------------------------------------------------
// philox

static void test_philox(void) {
    const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
         0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
         0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    for (int t = 0; t < 3; t++) {
        uint32_t out[4];
        philox4x32_10(&kat[t][0], &kat[t][4], out);
        CHECK(memcmp(out, &kat[t][6], sizeof(out)) == 0, "philox KAT %d: got %08x %08x %08x %08x", t, out[0],
              out[1], out[2], out[3]);
    }
    // in place
    uint32_t x[4] = {0, 0, 0, 0}, k[2] = {0, 0};
    philox4x32_10(x, k, x);
    CHECK(x[0] == 0x6627e8d5u && x[3] == 0x9b00dbd8u, "philox in place");

    float umin = philox_uniform(0), umax = philox_uniform(0xffffffffu);
    CHECK(umin > 0.0f && umax < 1.0f, "uniform in (0,1): min %g max %g", (double)umin, (double)umax);
    CHECK(umin == ldexpf(1.0f, -24) && umax == 1.0f - ldexpf(1.0f, -24), "uniform extremes exact");
    float z0, z1;
    philox_box_muller(umin, 0.25f, &z0, &z1);
    CHECK(isfinite(z0) && isfinite(z1), "box-muller finite at the smallest uniform");

    // moments of 1e6 normals (4 per block, counter = block index)
    const int nblk = 250000;
    double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
    for (int i = 0; i < nblk; i++) {
        float z[4];
        philox_normal4(1337u, 0u, (uint32_t)i, 7u, 0u, 0u, z);
        for (int j = 0; j < 4; j++) {
            double v = z[j];
            s1 += v; s2 += v * v; s3 += v * v * v; s4 += v * v * v * v;
        }
    }
    double n = 4.0 * nblk, mean = s1 / n, var = s2 / n - mean * mean;
    CHECK(fabs(mean) < 0.005, "normal mean %g", mean);
    CHECK(fabs(var - 1.0) < 0.01, "normal var %g", var);
    CHECK(fabs(s3 / n) < 0.02, "normal third moment %g", s3 / n);
    CHECK(fabs(s4 / n - 3.0) < 0.05, "normal fourth moment %g", s4 / n);
    // uniform moments
    double u1 = 0, u2 = 0;
    for (int i = 0; i < nblk; i++) {
        float u[4];
        philox_uniform4(42u, 1u, (uint32_t)i, 0u, 0u, 0u, u);
        for (int j = 0; j < 4; j++) { u1 += u[j]; u2 += (double)u[j] * u[j]; }
    }
    CHECK(fabs(u1 / n - 0.5) < 0.002 && fabs(u2 / n - 1.0 / 3.0) < 0.002, "uniform moments %g %g", u1 / n, u2 / n);
    // different keys give different streams
    float a[4], b[4];
    philox_normal4(1u, 0u, 0u, 0u, 0u, 0u, a);
    philox_normal4(2u, 0u, 0u, 0u, 0u, 0u, b);
    CHECK(memcmp(a, b, sizeof(a)) != 0, "keys differ -> normals differ");
}

// ------------------------------------------------------------------------------------------------
// cli

static int cli_run(TrainConfig* c, const char* const* args, int n, char* err, size_t errlen) {
    char* argv[64];
    argv[0] = (char*)"train";
    for (int i = 0; i < n; i++) argv[i + 1] = (char*)args[i];
    cli_defaults(c);
    return cli_parse(c, n + 1, argv, err, errlen);
}

typedef struct { const char* args[4]; int n; const char* flag; const char* msg; } CliErrCase;

static void child_cli_exit(void* arg) {
    const char* const* args = (const char* const*)arg;
    char* argv[8];
    int n = 0;
    argv[n++] = (char*)"train";
    while (args[n - 1]) { argv[n] = (char*)args[n - 1]; n++; }
    TrainConfig c;
    cli_defaults(&c);
    cli_parse_or_exit(&c, n, argv);
}

static void test_cli(void) {
    TrainConfig c;
    char err[512];
    // defaults
    CHECK(cli_run(&c, NULL, 0, err, sizeof(err)) == 0, "empty args parse");
    CHECK(strcmp(c.train_data_pattern, "dev/data/austen/austen_train.bin") == 0, "default -i");
    CHECK(strcmp(c.val_data_pattern, "dev/data/austen/austen_val.bin") == 0, "default -j");
    CHECK(strcmp(c.model, "d4") == 0 && c.output_log_dir == NULL, "default -e -o");
    CHECK(c.checkpoint_every == 0 && c.resume == 0 && c.B == 8 && c.T == 128 && c.total_batch_size == -1 &&
          c.max_steps == -1, "default -n -y -b -t -d -x");
    CHECK(strcmp(c.lr_schedule, "cosine") == 0 && c.learning_rate == -1.0f && c.warmup_iterations == 0 &&
          c.final_lr_frac == 0.1f && c.opt.weight_decay == 0.1, "default -k -l -u -q -c");
    CHECK(c.val_loss_every == 20 && c.val_max_steps == 20 && c.sample_every == 50 && c.gen_tokens == 64 &&
          c.overfit_single_batch == 0, "default -v -m -s -g -a");
    CHECK(c.opt.kind == OPT_ADAMW && c.seed == 1337 && strcmp(c.tokenizer_path, "gpt2_tokenizer.bin") == 0,
          "default -opt -seed -tk");
    CHECK(c.opt.grad_clip == 1.0 && c.opt.ess == -1.0 && c.opt.hess_init == 1e-3 && c.opt.beta1 == 0.9 && c.opt.beta2 == 0.99999 &&
          c.opt.clip_radius == 1e-3 && c.opt.prior_2d == 1e-6 && c.opt.prior_1d == 0.0 && c.opt.debias == 1 && c.opt.rescale_lr == 1 &&
          c.bma_samples == -1, "default -gc -ess -h0 -b1 -b2 -r -pr -pr1 -debias -rescale -bma (doubles exact)");
    CHECK(c.opt.poco_gamma == 0.5 && c.opt.poco_gamma_schedule == POCO_GAMMA_CONSTANT && c.opt.poco_start == -1 &&
          c.opt.poco_period == 32 && c.opt.poco_mega_batches == -1 && c.opt.poco_shared_noise == 1 && c.opt.poco_prox == 1 &&
          c.opt.poco_prox_in_momentum == 0 && c.opt.poco_momentum == 1 && c.opt.poco_clip_each == 1 && c.opt.poco_mega_noise == 1,
          "default PoCo flags -pg -pgs -pst -pp -pmb -psn -ppx -ppm -pmo -pce -pmn");
    CHECK(c.opt.adamw_beta1 == 0.9 && c.opt.adamw_beta2 == 0.95 && c.opt.adamw_eps == 1e-8, "default -ab1 -ab2 -ae");
    {
        // the optimizer defaults are the table's
        OptimizerConfig oc;
        optimizer_config_defaults(&oc, OPT_IVON);
        OptimizerConfig want = c.opt;
        want.kind = OPT_IVON;
        want.seed = c.seed;
        CHECK(memcmp(&oc, &want, sizeof(oc)) == 0, "optimizer_config_defaults = the flag table's defaults");
    }

    // table sanity: unique flags starting with '-', help text present
    int table_ok = 1;
    for (int i = 0; i < CLI_NUM_FLAGS; i++) {
        if (CLI_FLAGS[i].flag[0] != '-' || CLI_FLAGS[i].help == NULL || CLI_FLAGS[i].name == NULL) table_ok = 0;
        for (int j = 0; j < i; j++)
            if (strcmp(CLI_FLAGS[i].flag, CLI_FLAGS[j].flag) == 0) table_ok = 0;
    }
    CHECK(table_ok, "flag table: unique flags with names and help");

    // good values
    const char* good[] = {"-i", "a*.bin", "-o", "out", "-b", "4", "-t", "64", "-l", "1e-3", "-k", "wsd", "-x", "-1",
                          "-d", "1024", "-seed", "18446744073709551615", "-q", "0", "-y", "1", "-opt", "adamw",
                          "-b", "5", "-c", "0.05", "-opt", "poco", "-b2", "0.999", "-ess", "1e10", "-pgs", "linear"};
    int ng = (int)(sizeof(good) / sizeof(good[0]));
    CHECK(cli_run(&c, good, ng, err, sizeof(err)) == 0, "good args parse: %s", err);
    CHECK(strcmp(c.train_data_pattern, "a*.bin") == 0 && strcmp(c.output_log_dir, "out") == 0, "good -i -o");
    CHECK(c.B == 5 && c.T == 64 && c.learning_rate == 1e-3f && c.max_steps == -1 && c.total_batch_size == 1024,
          "good -b (last wins) -t -l -x -d");
    CHECK(strcmp(c.lr_schedule, "wsd") == 0 && c.seed == UINT64_MAX && c.final_lr_frac == 0.0f && c.resume == 1 &&
          c.opt.weight_decay == 0.05, "good -k -seed -q -y -c");
    CHECK(c.opt.kind == OPT_POCO && c.opt.beta2 == 0.999 && c.opt.ess == 1e10 &&
          c.opt.poco_gamma_schedule == POCO_GAMMA_LINEAR, "good -opt poco -b2 -ess -pgs");

    // help
    const char* h1[] = {"-b", "4", "--help"};
    const char* h2[] = {"-help"};
    CHECK(cli_run(&c, h1, 3, err, sizeof(err)) == 1, "--help returns 1");
    CHECK(cli_run(&c, h2, 1, err, sizeof(err)) == 1, "-help returns 1");

    // every error class: -1 and a message naming the flag (and the value where there is one)
    const CliErrCase cases[] = {
        {{"-zz", "3"}, 2, "flag -zz:", "unknown"},
        {{"-b"}, 1, "flag -b:", "missing value"},
        {{"-t", "64", "-l"}, 3, "flag -l:", "missing value"},
        {{"-b", "four"}, 2, "flag -b:", "four"},
        {{"-b", "4x"}, 2, "flag -b:", "4x"},
        {{"-b", ""}, 2, "flag -b:", "not an integer"},
        {{"-b", "4.5"}, 2, "flag -b:", "4.5"},
        {{"-l", "abc"}, 2, "flag -l:", "abc"},
        {{"-l", "1e-3x"}, 2, "flag -l:", "1e-3x"},
        {{"-t", "0"}, 2, "flag -t:", "out of range"},
        {{"-y", "2"}, 2, "flag -y:", "out of range"},
        {{"-x", "-2"}, 2, "flag -x:", "out of range"},
        {{"-q", "1.5"}, 2, "flag -q:", "out of range"},
        {{"-l", "-2"}, 2, "flag -l:", "out of range"},
        {{"-b2", "1.5"}, 2, "flag -b2:", "out of range"},
        {{"-h0", "abc"}, 2, "flag -h0:", "abc"},
        {{"-ess", "1e999"}, 2, "flag -ess:", "out of range"},
        {{"-pgs", "cubic"}, 2, "flag -pgs:", "cubic"},
        {{"-debias", "2"}, 2, "flag -debias:", "out of range"},
        {{"-l", "nan"}, 2, "flag -l:", "out of range"},
        {{"-l", "inf"}, 2, "flag -l:", "out of range"},
        {{"-l", "1e99"}, 2, "flag -l:", "out of range"},
        {{"-b", "99999999999999999999"}, 2, "flag -b:", "out of range"},
        {{"-seed", "-1"}, 2, "flag -seed:", "-1"},
        {{"-seed", "99999999999999999999"}, 2, "flag -seed:", "out of range"},
        {{"-k", "sometimes"}, 2, "flag -k:", "sometimes"},
        {{"-opt", "sgd"}, 2, "flag -opt:", "sgd"},
        {{"-i", ""}, 2, "flag -i:", "empty"},
        {{"foo", "1"}, 2, "flag foo:", "'-'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = cli_run(&c, cases[i].args, cases[i].n, err, sizeof(err));
        CHECK(rc == -1 && strncmp(err, cases[i].flag, strlen(cases[i].flag)) == 0 && strstr(err, cases[i].msg),
              "cli error case %zu (%s %s): rc %d err '%s'", i, cases[i].args[0], cases[i].args[1] ? cases[i].args[1] : "",
              rc, err);
    }

    // usage lists every row; the table shows every flag with its value
    FILE* fp = tmpfile();
    cli_usage(fp, "train_gpt2");
    long sz = ftell(fp);
    char* text = (char*)calloc((size_t)sz + 1, 1);
    rewind(fp);
    CHECK(fread(text, 1, (size_t)sz, fp) == (size_t)sz, "read usage");
    fclose(fp);
    int listed = 1;
    char pat[64];
    for (int i = 0; i < CLI_NUM_FLAGS; i++) {
        snprintf(pat, sizeof(pat), "\n  %s ", CLI_FLAGS[i].flag);
        if (!strstr(text, pat) || !strstr(text, CLI_FLAGS[i].help)) { listed = 0; printf("usage lacks %s\n", pat); }
    }
    CHECK(listed && strstr(text, "Usage: train_gpt2") && strstr(text, "cosine|linear|constant|wsd"),
          "usage lists every flag");
    free(text);

    cli_run(&c, good, ng, err, sizeof(err));
    fp = tmpfile();
    cli_print_table(fp, &c);
    sz = ftell(fp);
    text = (char*)calloc((size_t)sz + 1, 1);
    rewind(fp);
    CHECK(fread(text, 1, (size_t)sz, fp) == (size_t)sz, "read table");
    fclose(fp);
    int rows = 0, lines = 0, width_ok = 1;
    size_t first_len = strcspn(text, "\n");
    for (char* p = text; *p; ) {
        size_t len = strcspn(p, "\n");
        if (len != first_len) width_ok = 0;
        if (p[0] == '|') rows++;
        lines++;
        p += len + (p[len] == '\n');
    }
    CHECK(rows == CLI_NUM_FLAGS + 1 && lines == CLI_NUM_FLAGS + 4 && width_ok, "table: %d rows %d lines width %d", rows,
          lines, width_ok);
    CHECK(strstr(text, "| -b      micro batch size B") && strstr(text, "| 5 ") && strstr(text, "18446744073709551615") &&
          strstr(text, "| wsd ") && text[0] == '+', "table values");
    free(text);

    // total batch helper
    int accum = 0;
    long long total = 0;
    const char* d1[] = {"-b", "4", "-t", "64"};
    cli_run(&c, d1, 4, err, sizeof(err));
    CHECK(cli_resolve_total_batch(&c, &accum, &total, err, sizeof(err)) == 0 && accum == 1 && total == 256,
          "-d -1 -> B*T");
    c.total_batch_size = 1024;
    CHECK(cli_resolve_total_batch(&c, &accum, &total, err, sizeof(err)) == 0 && accum == 4 && total == 1024,
          "-d 1024 -> 4 micro steps");
    c.total_batch_size = 1000;
    CHECK(cli_resolve_total_batch(&c, &accum, &total, err, sizeof(err)) == -1 && strncmp(err, "flag -d:", 8) == 0 &&
          strstr(err, "1000"), "-d 1000 rejected: %s", err);
    c.total_batch_size = 0;
    CHECK(cli_resolve_total_batch(&c, &accum, &total, err, sizeof(err)) == -1, "-d 0 rejected");
    CHECK(cli_choice_index("cosine|linear|constant|wsd", "constant") == 2 &&
          cli_choice_index("cosine|linear|constant|wsd", "const") == -1 && cli_choice_index("adamw", "adamw") == 0,
          "cli_choice_index");

    // the exiting wrapper: error -> exit 1 with the flag and a --help hint; --help -> exit 0 with usage
    static const char* e1[] = {"-zz", "3", NULL};
    expect_exit1("cli_parse_or_exit unknown flag", child_cli_exit, (void*)e1, "error: flag -zz:", "--help");
    static const char* e2[] = {"-t", "0", NULL};
    expect_exit1("cli_parse_or_exit out of range", child_cli_exit, (void*)e2, "flag -t:", "--help");
    static const char* e3[] = {"--help", NULL};
    char msg[4096];
    CHECK(run_child(child_cli_exit, (void*)e3, msg, sizeof(msg)) == 0 && msg[0] == '\0', "--help exits 0, no stderr");
}

// ------------------------------------------------------------------------------------------------
// dataloader

// token i of shard k = k*4096 + i (i < 4096), so a token names its shard and position
static uint16_t tok_of(int shard, size_t i) { return (uint16_t)(shard * 4096 + (int)i); }

static void write_shard_raw(const char* path, int magic, int version, int header_ntok, size_t ntok, int shard) {
    FILE* fp = fopenCheck(path, "wb");
    int32_t header[256] = {0};
    header[0] = magic;
    header[1] = version;
    header[2] = header_ntok;
    fwriteCheck(header, sizeof(int32_t), 256, fp, path);
    for (size_t i = 0; i < ntok; i++) {
        uint16_t t = tok_of(shard, i);
        fwriteCheck(&t, sizeof(uint16_t), 1, fp, path);
    }
    fcloseCheck(fp, path);
}

static void write_shard(const char* path, size_t ntok, int shard) {
    write_shard_raw(path, DATALOADER_MAGIC, DATALOADER_VERSION, (int)ntok, ntok, shard);
}

// identifies the batch in the loader: shard*1000 + window; -1 if the contents are not a valid window
static int batch_id(const DataLoader* l) {
    size_t BT = l->B * l->T;
    int shard = l->inputs[0] / 4096;
    int p = l->inputs[0] % 4096;
    if ((size_t)p % BT != 0) return -1;
    for (size_t i = 0; i < BT; i++) {
        if (l->inputs[i] != tok_of(shard, (size_t)p + i) || l->targets[i] != tok_of(shard, (size_t)p + i + 1)) return -1;
    }
    return shard * 1000 + (int)((size_t)p / BT);
}

#define DL_B 2
#define DL_T 4
// shard sizes (tokens): windows = floor((n-1)/8) = 5, 3, 7, 1
static const size_t dl_ntok[4] = {41, 27, 60, 9};
static const int dl_windows[4] = {5, 3, 7, 1};
#define DL_TOTAL_WINDOWS 16

static void dl_pattern(char* buf, size_t n) { snprintf(buf, n, "%s/dl/shard_*.bin", g_tmp); }

typedef struct { const char* pattern; size_t B, T; int rank, nproc; } DlArgs;
static void child_dl_init(void* arg) {
    DlArgs* a = (DlArgs*)arg;
    DataLoader l;
    dataloader_init(&l, a->pattern, a->B, a->T, a->rank, a->nproc, 1, 1);
    dataloader_next_batch(&l);
    dataloader_free(&l);
}
typedef struct { const char* pattern; DataLoaderState st; } DlStateArgs;
static void child_dl_state(void* arg) {
    DlStateArgs* a = (DlStateArgs*)arg;
    DataLoader l;
    dataloader_init(&l, a->pattern, DL_B, DL_T, 0, 1, 1, 1);
    dataloader_set_state(&l, a->st);
    dataloader_free(&l);
}

// Writes a sparse shard of 2^31-1 tokens (4 GiB) with marks in its last window, reads that window.
// B*T = 77*4681 = 360437 divides ntok-1 = 2147483646, so the last window ends on the last token.
// Exit 0 if the batch is right, 3 if not.
static void child_big_shard(void* arg) {
    const char* big = (const char*)arg;
    const int32_t ntok = 2147483647;
    const size_t B = 77, T = 4681, BT = B * T;
    int fd = open(big, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    int32_t header[256] = {0};
    header[0] = DATALOADER_MAGIC;
    header[1] = DATALOADER_VERSION;
    header[2] = ntok;
    uint64_t W = ((uint64_t)ntok - 1) / BT;
    uint64_t last_p = (W - 1) * BT;
    uint16_t marks[3] = {111, 222, 333};  // at p, p+1, p+BT
    off_t base = (off_t)sizeof(header);
    int ok = fd >= 0 && write(fd, header, sizeof(header)) == (ssize_t)sizeof(header) &&
             ftruncate(fd, base + (off_t)ntok * 2) == 0 &&
             pwrite(fd, &marks[0], 2, base + (off_t)last_p * 2) == 2 &&
             pwrite(fd, &marks[1], 2, base + (off_t)(last_p + 1) * 2) == 2 &&
             pwrite(fd, &marks[2], 2, base + (off_t)(last_p + BT) * 2) == 2;
    if (fd >= 0) close(fd);
    if (!ok || last_p + BT != (uint64_t)ntok - 1 || base + (off_t)(last_p + BT) * 2 < ((off_t)1 << 32)) {
        fprintf(stderr, "could not write the sparse shard as planned\n");
        exit(3);
    }
    DataLoader l;
    dataloader_init(&l, big, B, T, 0, 1, 0, 0);
    DataLoaderState st = {0, 0, W - 1};
    dataloader_set_state(&l, st);
    dataloader_next_batch(&l);
    ok = l.inputs[0] == 111 && l.inputs[1] == 222 && l.inputs[2] == 0 && l.targets[0] == 222 &&
         l.targets[BT - 1] == 333 && l.num_tokens == (uint64_t)ntok && dataloader_num_batches(&l) == W;
    if (!ok) fprintf(stderr, "wrong batch: inputs %d %d targets %d .. %d\n", l.inputs[0], l.inputs[1], l.targets[0],
                     l.targets[BT - 1]);
    dataloader_free(&l);
    exit(ok ? 0 : 3);
}

static void test_dataloader(void) {
    char dir[512], path[600], pattern[512];
    snprintf(dir, sizeof(dir), "%s/dl", g_tmp);
    mkdir(dir, 0755);
    for (int s = 0; s < 4; s++) {
        snprintf(path, sizeof(path), "%s/shard_%d.bin", dir, s);
        write_shard(path, dl_ntok[s], s);
    }
    dl_pattern(pattern, sizeof(pattern));

    // sequential val: shard order sorted, windows in file order, then wraps to the start
    DataLoader l;
    dataloader_init(&l, pattern, DL_B, DL_T, 0, 1, 0, 1);
    CHECK(l.num_tokens == 41 + 27 + 60 + 9, "num_tokens %llu", (unsigned long long)l.num_tokens);
    CHECK(dataloader_num_batches(&l) == DL_TOTAL_WINDOWS, "num_batches %zu", dataloader_num_batches(&l));
    int seq_ok = 1, valid = 1;
    for (int rep = 0; rep < 2; rep++)
        for (int s = 0; s < 4; s++)
            for (int w = 0; w < dl_windows[s]; w++) {
                dataloader_next_batch(&l);
                int id = batch_id(&l);
                if (id < 0) valid = 0;
                if (id != s * 1000 + w) seq_ok = 0;
            }
    CHECK(valid, "val batches hold inputs = tokens[p, p+BT), targets shifted by one");
    CHECK(seq_ok, "val is sequential over two epochs");
    CHECK(l.inputs[0] == tok_of(3, 0) && l.targets[DL_B * DL_T - 1] == tok_of(3, 8), "last window of shard 3");
    dataloader_reset(&l);
    dataloader_next_batch(&l);
    CHECK(batch_id(&l) == 0, "reset goes back to the first batch");
    dataloader_free(&l);

    // train: one epoch visits each window exactly once, shard by shard; determinism; other epoch / seed differ
    int seqs[3][2 * DL_TOTAL_WINDOWS];
    uint64_t seeds[3] = {1, 1, 2};
    for (int r = 0; r < 3; r++) {
        dataloader_init(&l, pattern, DL_B, DL_T, 0, 1, 1, seeds[r]);
        for (int i = 0; i < 2 * DL_TOTAL_WINDOWS; i++) {
            dataloader_next_batch(&l);
            seqs[r][i] = batch_id(&l);
        }
        CHECK(l.epoch == 2, "after two epochs of batches, epoch = %llu", (unsigned long long)l.epoch);
        dataloader_free(&l);
    }
    for (int e = 0; e < 2; e++) {
        int seen[4][8] = {{0}};
        int ok = 1, contiguous = 1, prev_shard = -1, shards_started = 0;
        for (int i = 0; i < DL_TOTAL_WINDOWS; i++) {
            int id = seqs[0][e * DL_TOTAL_WINDOWS + i];
            if (id < 0) { ok = 0; continue; }
            int s = id / 1000, w = id % 1000;
            if (w >= dl_windows[s]) { ok = 0; continue; }
            seen[s][w]++;
            if (s != prev_shard) { shards_started++; prev_shard = s; }
        }
        for (int s = 0; s < 4; s++)
            for (int w = 0; w < dl_windows[s]; w++)
                if (seen[s][w] != 1) ok = 0;
        if (shards_started != 4) contiguous = 0;
        CHECK(ok, "train epoch %d visits every window exactly once", e);
        CHECK(contiguous, "train epoch %d reads each shard's windows together", e);
    }
    CHECK(memcmp(seqs[0], seqs[1], sizeof(seqs[0])) == 0, "same seed -> same order");
    CHECK(memcmp(seqs[0], seqs[2], sizeof(seqs[0])) != 0, "other seed -> other order");
    CHECK(memcmp(seqs[0], seqs[0] + DL_TOTAL_WINDOWS, DL_TOTAL_WINDOWS * sizeof(int)) != 0,
          "epoch 1 order differs from epoch 0");
    int is_seq = 1;
    for (int i = 0, s = 0, w = 0; i < DL_TOTAL_WINDOWS; i++) {
        if (seqs[0][i] != s * 1000 + w) is_seq = 0;
        if (++w == dl_windows[s]) { s++; w = 0; }
    }
    CHECK(!is_seq, "train order is shuffled");

    // state save/restore continues identically, also across the epoch boundary
    int restore_ok = 1;
    for (int cut = 0; cut <= 2 * DL_TOTAL_WINDOWS - 4; cut += 3) {
        DataLoader a, b;
        dataloader_init(&a, pattern, DL_B, DL_T, 0, 1, 1, 1);
        for (int i = 0; i < cut; i++) dataloader_next_batch(&a);
        DataLoaderState st = dataloader_get_state(&a);
        dataloader_init(&b, pattern, DL_B, DL_T, 0, 1, 1, 1);
        dataloader_next_batch(&b);  // b elsewhere before the restore
        dataloader_set_state(&b, st);
        for (int i = cut; i < 2 * DL_TOTAL_WINDOWS; i++) {
            dataloader_next_batch(&b);
            if (batch_id(&b) != seqs[0][i]) restore_ok = 0;
        }
        dataloader_free(&a);
        dataloader_free(&b);
    }
    CHECK(restore_ok, "set_state(get_state) continues identically");

    // multi-rank: disjoint windows, equal batch counts (floor(W/P) per shard), both modes
    for (int shuffle = 0; shuffle < 2; shuffle++) {
        const int P = 3;
        int owner[4][8];
        memset(owner, -1, sizeof(owner));
        int disjoint = 1, counts_ok = 1, valid_ids = 1, rr_ok = 1;
        size_t want = 0;
        for (int s = 0; s < 4; s++) want += (size_t)(dl_windows[s] / P);
        for (int r = 0; r < P; r++) {
            dataloader_init(&l, pattern, DL_B, DL_T, r, P, shuffle, 5);
            if (dataloader_num_batches(&l) != want) counts_ok = 0;
            for (size_t i = 0; i < want; i++) {
                dataloader_next_batch(&l);
                int id = batch_id(&l);
                if (id < 0) { valid_ids = 0; continue; }
                int s = id / 1000, w = id % 1000;
                if (owner[s][w] != -1) disjoint = 0;
                owner[s][w] = r;
                if (!shuffle && w % P != r) rr_ok = 0;
            }
            CHECK(l.epoch == 1 && l.shard_pos == 0 && l.window_pos == 0, "rank %d wraps after num_batches", r);
            dataloader_free(&l);
        }
        CHECK(counts_ok && valid_ids && disjoint, "multi-rank (shuffle=%d): equal counts, disjoint windows", shuffle);
        CHECK(rr_ok, "multi-rank sequential: window w on rank w %% P (shuffle=%d)", shuffle);
    }

    // a 4 GiB shard (sparse file, the largest an int32 token count allows): 64-bit offsets; the last
    // window ends on the file's last token, past byte 2^32. Runs in a child so a failed seek cannot end the suite.
    {
        char big[512], msg[4096];
        snprintf(big, sizeof(big), "%s/big.bin", g_tmp);
        int rc = run_child(child_big_shard, big, msg, sizeof(msg));
        CHECK(rc == 0, "last window of a 4 GiB shard: child exit %d: %s", rc, msg);
        unlink(big);
    }

    // errors: exit 1 with one line naming the pattern / file
    char p_none[512], p_magic[512], p_ver[512], p_trunc[512], p_long[512], p_few[512];
    snprintf(p_none, sizeof(p_none), "%s/nothing_here_*.bin", g_tmp);
    snprintf(p_magic, sizeof(p_magic), "%s/bad_magic.bin", g_tmp);
    snprintf(p_ver, sizeof(p_ver), "%s/bad_version.bin", g_tmp);
    snprintf(p_trunc, sizeof(p_trunc), "%s/truncated.bin", g_tmp);
    snprintf(p_long, sizeof(p_long), "%s/too_long.bin", g_tmp);
    snprintf(p_few, sizeof(p_few), "%s/too_few.bin", g_tmp);
    write_shard_raw(p_magic, 12345, 1, 100, 100, 0);
    write_shard_raw(p_ver, DATALOADER_MAGIC, 7, 100, 100, 0);
    write_shard_raw(p_trunc, DATALOADER_MAGIC, 1, 100, 99, 0);
    write_shard_raw(p_long, DATALOADER_MAGIC, 1, 100, 101, 0);
    write_shard_raw(p_few, DATALOADER_MAGIC, 1, 8, 8, 0);
    char p_tiny[512];
    snprintf(p_tiny, sizeof(p_tiny), "%s/tiny.bin", g_tmp);
    FILE* fp = fopenCheck(p_tiny, "wb");
    fputs("garbage", fp);
    fclose(fp);
    DlArgs a_none = {p_none, DL_B, DL_T, 0, 1}, a_magic = {p_magic, DL_B, DL_T, 0, 1},
           a_ver = {p_ver, DL_B, DL_T, 0, 1}, a_trunc = {p_trunc, DL_B, DL_T, 0, 1},
           a_long = {p_long, DL_B, DL_T, 0, 1}, a_few = {p_few, DL_B, DL_T, 0, 1}, a_tiny = {p_tiny, DL_B, DL_T, 0, 1},
           a_ranks = {p_few, 1, 1, 0, 9}, a_rank_bad = {pattern, DL_B, DL_T, 3, 3};
    expect_exit1("no match", child_dl_init, &a_none, p_none, "no data files match");
    expect_exit1("bad magic", child_dl_init, &a_magic, p_magic, "magic");
    expect_exit1("bad version", child_dl_init, &a_ver, p_ver, "version");
    expect_exit1("truncated shard", child_dl_init, &a_trunc, p_trunc, "truncated");
    expect_exit1("shard longer than header", child_dl_init, &a_long, p_long, "size disagrees with header");
    expect_exit1("tiny shard", child_dl_init, &a_tiny, p_tiny, "truncated");
    expect_exit1("too few tokens", child_dl_init, &a_few, p_few, "B*T+1 = 2*4+1");
    expect_exit1("too few windows for the ranks", child_dl_init, &a_ranks, p_few, "9 processes");
    expect_exit1("bad rank", child_dl_init, &a_rank_bad, "rank 3 of 3", NULL);
    DlStateArgs s_bad_shard = {pattern, {0, 4, 0}}, s_bad_window = {pattern, {0, 0, 99}};
    expect_exit1("state shard out of range", child_dl_state, &s_bad_shard, "shard position 4", NULL);
    expect_exit1("state window out of range", child_dl_state, &s_bad_window, "window position 99", NULL);
}

// ------------------------------------------------------------------------------------------------
// tokenizer

static void write_tokenizer(const char* path, int magic, int version, int V, int eot, const char* const* toks,
                            int ntoks, int zero_at, int cut_bytes) {
    // build in memory, then write minus cut_bytes
    unsigned char buf[4096];
    size_t n = 0;
    int32_t header[256] = {0};
    header[0] = magic;
    header[1] = version;
    header[2] = V;
    header[3] = eot;
    memcpy(buf, header, sizeof(header));
    n = sizeof(header);
    for (int i = 0; i < ntoks; i++) {
        size_t len = i == zero_at ? 0 : strlen(toks[i]);
        buf[n++] = (unsigned char)len;
        memcpy(buf + n, toks[i], len);
        n += len;
    }
    FILE* fp = fopenCheck(path, "wb");
    fwriteCheck(buf, 1, n - (size_t)cut_bytes, fp, path);
    fcloseCheck(fp, path);
}

static void child_tok_init(void* arg) {
    Tokenizer t;
    tokenizer_init(&t, (const char*)arg);
    tokenizer_free(&t);
}

static void child_tok_decode_oob(void* arg) {
    Tokenizer t;
    tokenizer_init(&t, (const char*)arg);
    const char* s = tokenizer_decode(&t, 99);
    tokenizer_free(&t);
    exit(s != NULL && s[0] == '\0' ? 1 : 3);  // 1: returned "" after an error line
}

static void test_tokenizer(void) {
    const char* toks[] = {"a", "hello", " world", "\n", "\x01", "\xc3", "<|endoftext|>"};
    const int V = 7;
    char good[512], p[6][512];
    tmp_path(good, sizeof(good), "tok.bin");
    write_tokenizer(good, TOKENIZER_MAGIC, 2, V, 6, toks, V, -1, 0);
    Tokenizer t;
    tokenizer_init(&t, good);
    CHECK(t.vocab_size == 7 && t.eot_token == 6, "tokenizer header");
    int ok = 1;
    for (int i = 0; i < V; i++)
        if (strcmp(tokenizer_decode(&t, (uint32_t)i), toks[i]) != 0) ok = 0;
    CHECK(ok, "decode every token");
    CHECK(tokenizer_printable("hello") && tokenizer_printable("\n") && tokenizer_printable(" ") &&
          !tokenizer_printable("\x01") && !tokenizer_printable("\x7f") && tokenizer_printable("\xc3") &&
          !tokenizer_printable(""), "tokenizer_printable");
    FILE* fp = tmpfile();
    tokenizer_fprint(fp, tokenizer_decode(&t, 1));
    tokenizer_fprint(fp, tokenizer_decode(&t, 4));
    tokenizer_fprint(fp, tokenizer_decode(&t, 2));
    char out[64] = {0};
    rewind(fp);
    CHECK(fread(out, 1, sizeof(out) - 1, fp) == 11 && strcmp(out, "hello world") == 0, "print skips control bytes");
    fclose(fp);
    tokenizer_free(&t);
    char msg[4096];
    int rc = run_child(child_tok_decode_oob, good, msg, sizeof(msg));
    CHECK(rc == 1 && strstr(msg, "error: token id 99") != NULL, "out-of-range id: error line, empty string (rc %d)", rc);

    const char* names[6] = {"tok_magic.bin", "tok_version.bin", "tok_trunc.bin", "tok_zero.bin", "tok_extra.bin",
                            "tok_eot.bin"};
    for (int i = 0; i < 6; i++) tmp_path(p[i], sizeof(p[i]), names[i]);
    write_tokenizer(p[0], 1234, 2, V, 6, toks, V, -1, 0);
    write_tokenizer(p[1], TOKENIZER_MAGIC, 1, V, 6, toks, V, -1, 0);
    write_tokenizer(p[2], TOKENIZER_MAGIC, 2, V, 6, toks, V, -1, 3);
    write_tokenizer(p[3], TOKENIZER_MAGIC, 2, V, 6, toks, V, 2, 0);
    write_tokenizer(p[4], TOKENIZER_MAGIC, 2, V - 1, 5, toks, V, -1, 0);
    write_tokenizer(p[5], TOKENIZER_MAGIC, 2, V, 7, toks, V, -1, 0);
    char missing[512];
    tmp_path(missing, sizeof(missing), "no_such_tokenizer.bin");
    expect_exit1("tokenizer missing", child_tok_init, missing, missing, NULL);
    expect_exit1("tokenizer bad magic", child_tok_init, p[0], p[0], "magic");
    expect_exit1("tokenizer bad version", child_tok_init, p[1], p[1], "version");
    expect_exit1("tokenizer truncated", child_tok_init, p[2], p[2], "truncated");
    expect_exit1("tokenizer zero-length token", child_tok_init, p[3], p[3], "zero-length");
    expect_exit1("tokenizer trailing bytes", child_tok_init, p[4], p[4], "after the last");
    expect_exit1("tokenizer EOT outside vocab", child_tok_init, p[5], p[5], "EOT");
}

// ------------------------------------------------------------------------------------------------
// schedules

static void child_sched_bad(void* arg) {
    LRScheduler s;
    lr_scheduler_init(&s, (const char*)arg, 1.0f, 0, 10, 0.1f);
}

static int near(float a, double b) { return fabs((double)a - b) <= 1e-6 * (fabs(b) + 1e-3); }

static void test_schedule(void) {
    LRScheduler s;
    // lr 1, warmup 10, N 110, final 0.1
    lr_scheduler_init(&s, "cosine", 1.0f, 10, 110, 0.1f);
    CHECK(near(lr_scheduler_get(&s, 0), 0.1) && near(lr_scheduler_get(&s, 4), 0.5) && near(lr_scheduler_get(&s, 9), 1.0),
          "warmup (cosine)");
    CHECK(near(lr_scheduler_get(&s, 10), 1.0) && near(lr_scheduler_get(&s, 60), 0.55) &&
          near(lr_scheduler_get(&s, 35), 0.1 + 0.45 * (1 + cos(M_PI * 0.25))) && near(lr_scheduler_get(&s, 110), 0.1) &&
          near(lr_scheduler_get(&s, 500), 0.1), "cosine values: %g %g %g", (double)lr_scheduler_get(&s, 10),
          (double)lr_scheduler_get(&s, 60), (double)lr_scheduler_get(&s, 110));
    lr_scheduler_init(&s, "linear", 1.0f, 10, 110, 0.1f);
    CHECK(near(lr_scheduler_get(&s, 0), 0.1) && near(lr_scheduler_get(&s, 10), 1.0) &&
          near(lr_scheduler_get(&s, 35), 0.775) && near(lr_scheduler_get(&s, 60), 0.55) &&
          near(lr_scheduler_get(&s, 110), 0.1), "linear values");
    lr_scheduler_init(&s, "constant", 1.0f, 10, 110, 0.1f);
    CHECK(near(lr_scheduler_get(&s, 4), 0.5) && near(lr_scheduler_get(&s, 10), 1.0) &&
          near(lr_scheduler_get(&s, 109), 1.0), "constant values");
    lr_scheduler_init(&s, "wsd", 1.0f, 10, 100, 0.1f);  // D = 20, decay from step 80
    CHECK(near(lr_scheduler_get(&s, 4), 0.5) && near(lr_scheduler_get(&s, 50), 1.0) &&
          near(lr_scheduler_get(&s, 80), 1.0) && near(lr_scheduler_get(&s, 85), 0.55) &&
          near(lr_scheduler_get(&s, 95), 0.1 + 0.9 * (1 - sqrt(0.75))) && near(lr_scheduler_get(&s, 100), 0.1),
          "wsd values: %g %g", (double)lr_scheduler_get(&s, 85), (double)lr_scheduler_get(&s, 100));
    lr_scheduler_init(&s, "cosine", 6e-4f, 0, 1, 0.0f);
    CHECK(near(lr_scheduler_get(&s, 0), 6e-4), "cosine N=1 step 0 = lr");
    lr_scheduler_init(&s, "cosine", 1.0f, 5, 5, 0.0f);
    CHECK(near(lr_scheduler_get(&s, 5), 1.0), "cosine N <= warmup stays at lr");
    int mono = 1;
    lr_scheduler_init(&s, "cosine", 1.0f, 3, 50, 0.0f);
    for (int i = 4; i < 50; i++)
        if (lr_scheduler_get(&s, i) > lr_scheduler_get(&s, i - 1)) mono = 0;
    CHECK(mono, "cosine decreases after warmup");
    expect_exit1("unknown schedule", child_sched_bad, (void*)"sometimes", "-k", "sometimes");
}

// ------------------------------------------------------------------------------------------------
// logger

static int read_file_text(const char* path, char* buf, size_t n) {
    FILE* fp = fopen(path, "rb");
    if (!fp) return -1;
    size_t k = fread(buf, 1, n - 1, fp);
    buf[k] = '\0';
    fclose(fp);
    return (int)k;
}

static void child_logger(void* arg) {
    Logger lg;
    logger_init(&lg, (const char*)arg, 0, 0);
}

static void test_logger(void) {
    char dir[512], path[600], text[1024];
    snprintf(dir, sizeof(dir), "%s/logs/a/b", g_tmp);
    Logger lg;
    logger_init(&lg, dir, 0, 0);
    logger_log_train(&lg, 10, 5.12341f, 6e-4f, 1.23f, 120.54f, 8500.2f, 1024, -1);
    logger_log_train(&lg, 11, 5.0f, 6e-4f, 1.0f, 100.0f, 10240.0f, 1024, 4096);
    logger_log_val(&lg, 20, 5.01234f, NAN, -1.0, -1.0);
    logger_log_val(&lg, 20, 5.0f, 4.9f, 0.03, 0.02);
    logger_log(&lg, 21, "x:%d", 7);
    logger_free(&lg);
    snprintf(path, sizeof(path), "%s/main.log", dir);
    read_file_text(path, text, sizeof(text));
    const char* want = "s:10 trl:5.1234 lr:0.0006 norm:1.2300 ms:120.5 tok/s:8500 tok:1024\n"
                       "s:11 trl:5.0000 lr:0.0006 norm:1.0000 ms:100.0 tok/s:10240 tok:1024 mega:4096\n"
                       "s:20 tel:5.0123\ns:20 tel:5.0000 bma:4.9000 ece:0.0300 bece:0.0200\ns:21 x:7\n";
    CHECK(strcmp(text, want) == 0, "main.log content:\n%s", text);
    logger_init(&lg, dir, 0, 1);
    logger_log_val(&lg, 30, 4.5f, NAN, -1.0, -1.0);
    logger_free(&lg);
    read_file_text(path, text, sizeof(text));
    CHECK(strstr(text, "s:10 trl") == text && strstr(text, "\ns:30 tel:4.5000\n"), "resume appends");
    logger_init(&lg, dir, 0, 0);
    logger_log_val(&lg, 1, 9.0f, NAN, -1.0, -1.0);
    logger_free(&lg);
    read_file_text(path, text, sizeof(text));
    CHECK(strcmp(text, "s:1 tel:9.0000\n") == 0, "no resume truncates");
    logger_init(&lg, NULL, 0, 0);
    logger_log_val(&lg, 1, 1.0f, NAN, -1.0, -1.0);
    logger_free(&lg);
    CHECK(lg.fp == NULL, "NULL dir disables the logger");
    char dir2[512];
    snprintf(dir2, sizeof(dir2), "%s/logs_rank1", g_tmp);
    logger_init(&lg, dir2, 1, 0);
    logger_log_val(&lg, 1, 1.0f, NAN, -1.0, -1.0);
    struct stat st;
    CHECK(lg.fp == NULL && stat(dir2, &st) != 0, "rank 1 writes nothing");
    // a directory under a regular file cannot be created
    char bad[600];
    snprintf(bad, sizeof(bad), "%s/main.log/sub", dir);
    expect_exit1("uncreatable log dir", child_logger, bad, bad, "cannot create output dir");
}

// ------------------------------------------------------------------------------------------------
// checkpoint

typedef struct { const char* path; int nbuf; size_t n; } StateArgs;
static void child_read_state(void* arg) {
    StateArgs* a = (StateArgs*)arg;
    float* bufs[2] = {(float*)calloc(a->n + 1, 4), (float*)calloc(a->n + 1, 4)};
    StateHeader h;
    checkpoint_read_state(a->path, &h, bufs, a->nbuf, a->n);
}

static void test_checkpoint(void) {
    char dir[512], path[600], p2[700];
    snprintf(dir, sizeof(dir), "%s/ckpt", g_tmp);
    mkdir(dir, 0755);
    CHECK(checkpoint_find_latest(dir) == -1, "find_latest on an empty dir");
    CHECK(checkpoint_find_latest("/nonexistent/dir/xyz") == -1, "find_latest on a missing dir");

    const size_t n = 1000;
    float* m = (float*)mallocCheck(n * 4);
    float* v = (float*)mallocCheck(n * 4);
    for (size_t i = 0; i < n; i++) { m[i] = (float)i * 0.5f - 3.0f; v[i] = 1.0f / (float)(i + 1); }
    StateHeader h;
    memset(&h, 0, sizeof(h));
    h.step = 42;
    h.optimizer = 1;
    h.loader_epoch = 0x100000003ull;
    h.loader_shard = 7;
    h.loader_window = 0xFFFFFFFFFull;
    h.seed = 0xDEADBEEFCAFEF00Dull;
    float lam = 0.125f;
    memcpy(&h.extra[0], &lam, 4);
    h.extra[CHECKPOINT_EXTRA_SLOTS - 1] = -5;
    checkpoint_state_path(path, sizeof(path), dir, 42);
    CHECK(strstr(path, "/state_00000042.bin") != NULL, "state path %s", path);
    const float* wb[2] = {m, v};
    checkpoint_write_state(path, &h, wb, 2, n);
    snprintf(p2, sizeof(p2), "%s.tmp", path);
    struct stat st;
    CHECK(stat(p2, &st) != 0 && stat(path, &st) == 0 && (size_t)st.st_size == 1024 + 2 * n * 4,
          "state written atomically (no .tmp left), size right");
    float* m2 = (float*)mallocCheck(n * 4);
    float* v2 = (float*)mallocCheck(n * 4);
    float* rb[2] = {m2, v2};
    StateHeader h2;
    memset(&h2, 0xAB, sizeof(h2));
    checkpoint_read_state(path, &h2, rb, 2, n);
    float lam2;
    memcpy(&lam2, &h2.extra[0], 4);
    CHECK(h2.step == 42 && h2.optimizer == 1 && h2.num_parameters == n && h2.num_buffers == 2 &&
          h2.loader_epoch == h.loader_epoch && h2.loader_shard == 7 && h2.loader_window == h.loader_window &&
          h2.seed == h.seed && lam2 == 0.125f && h2.extra[CHECKPOINT_EXTRA_SLOTS - 1] == -5 && h2.extra[1] == 0,
          "state header round trip");
    CHECK(memcmp(m, m2, n * 4) == 0 && memcmp(v, v2, n * 4) == 0, "state buffers round trip");
    // raw header layout
    int32_t raw[256];
    FILE* fp = fopenCheck(path, "rb");
    freadCheck(raw, 4, 256, fp, path);
    fclose(fp);
    CHECK(raw[0] == 20241123 && raw[1] == 1 && raw[2] == 42 && raw[3] == 1 && raw[4] == 1000 && raw[5] == 0 &&
          raw[6] == 2 && raw[7] == 3 && raw[8] == 1 && raw[9] == 7 && raw[10] == 0 && raw[11] == -1 &&
          raw[12] == 0xF && (uint32_t)raw[13] == 0xCAFEF00Du && (uint32_t)raw[14] == 0xDEADBEEFu && raw[15] == 0 &&
          raw[63] == 0 && raw[65] == 0 && raw[64 + CHECKPOINT_EXTRA_SLOTS - 1] == -5 && raw[255] == 0,
          "state header layout");

    // corrupt copies
    char trunc[600], magic[600];
    snprintf(trunc, sizeof(trunc), "%s/state_trunc.bin", dir);
    snprintf(magic, sizeof(magic), "%s/state_magic.bin", dir);
    checkpoint_write_state(trunc, &h, wb, 2, n);
    CHECK(truncate(trunc, (off_t)(1024 + 2 * n * 4 - 4)) == 0, "truncate");
    checkpoint_write_state(magic, &h, wb, 2, n);
    fp = fopenCheck(magic, "r+b");
    int32_t bad = 7;
    fwriteCheck(&bad, 4, 1, fp, magic);
    fclose(fp);
    StateArgs a_trunc = {trunc, 2, n}, a_magic = {magic, 2, n}, a_n = {path, 2, n + 1}, a_nbuf = {path, 1, n};
    char missing[600];
    snprintf(missing, sizeof(missing), "%s/state_missing.bin", dir);
    StateArgs a_missing = {missing, 2, n};
    expect_exit1("state truncated", child_read_state, &a_trunc, trunc, "truncated");
    expect_exit1("state bad magic", child_read_state, &a_magic, magic, "magic");
    expect_exit1("state size mismatch", child_read_state, &a_n, path, "1000 parameters");
    expect_exit1("state buffer count mismatch", child_read_state, &a_nbuf, path, "2 buffers");
    expect_exit1("state missing", child_read_state, &a_missing, missing, NULL);

    // model file via the atomic writer, read back with model.h
    GPT2Config c;
    if (gpt2_config_from_descriptor("d2", &c) != 0) { CHECK(0, "descriptor d2"); return; }
    c.max_seq_len = 64;
    size_t np = gpt2_num_parameters(c);
    float* params = (float*)mallocCheck(np * 4);
    for (size_t i = 0; i < np; i++) params[i] = (float)(i % 977) * 1e-3f;
    checkpoint_model_path(path, sizeof(path), dir, 42);
    checkpoint_write_model(path, c, params, np);
    fp = fopenCheck(path, "rb");
    GPT2Config c2;
    int ver = model_read_header(fp, path, &c2);
    float* params2 = (float*)mallocCheck(np * 4);
    model_read_weights(fp, path, ver, params2, np);
    fclose(fp);
    CHECK(ver == 3 && c2.num_layers == c.num_layers && c2.channels == c.channels && c2.max_seq_len == 64 &&
          memcmp(params, params2, np * 4) == 0, "model checkpoint round trip");
    free(params);
    free(params2);

    // DONE markers
    checkpoint_write_done(dir, 3);
    checkpoint_write_done(dir, 12);
    checkpoint_write_done(dir, 7);
    fp = fopenCheck(strcat(strcpy(p2, dir), "/DONE_abcdefgh"), "w");
    fclose(fp);
    fp = fopenCheck(strcat(strcpy(p2, dir), "/DONE_000000099"), "w");  // 9 digits: not a marker
    fclose(fp);
    fp = fopenCheck(strcat(strcpy(p2, dir), "/DONE_00000050.tmp"), "w");  // interrupted marker write
    fclose(fp);
    CHECK(checkpoint_find_latest(dir) == 12, "find_latest = 12, got %d", checkpoint_find_latest(dir));
    checkpoint_done_path(p2, sizeof(p2), dir, 12);
    CHECK(stat(p2, &st) == 0 && st.st_size == 0 && strstr(p2, "/DONE_00000012"), "DONE marker file");
    free(m); free(v); free(m2); free(v2);
}

// rolling checkpoints: checkpoint_prune keeps the newest keep (incl. the current one), majors, later steps
static int ckpt_exists(const char* dir, const char* prefix, int step, const char* suffix) {
    char p[CHECKPOINT_PATH_MAX];
    checkpoint_path(p, sizeof(p), dir, prefix, step, suffix);
    struct stat st;
    return stat(p, &st) == 0;
}

static void ckpt_fake(const char* dir, int step, int done) {
    char p[CHECKPOINT_PATH_MAX];
    checkpoint_model_path(p, sizeof(p), dir, step);
    fclose(fopenCheck(p, "w"));
    checkpoint_state_path(p, sizeof(p), dir, step);
    fclose(fopenCheck(p, "w"));
    if (done) checkpoint_write_done(dir, step);
}

static void test_checkpoint_prune(void) {
    char dir[300], p[CHECKPOINT_PATH_MAX];
    tmp_path(dir, sizeof(dir), "prune");
    CHECK(logger_mkdir_p(dir) == 0, "mkdir %s", dir);
    for (int s = 2; s <= 20; s += 2) ckpt_fake(dir, s, 1);
    ckpt_fake(dir, 22, 0);                            // incomplete, after the current one: left alone
    ckpt_fake(dir, 5, 0);                             // incomplete, before: deleted
    checkpoint_state_path(p, sizeof(p), dir, 7);      // an orphan temporary: deleted
    fclose(fopenCheck(strcat(p, ".tmp"), "w"));
    ckpt_fake(dir, 30, 1);                            // another run's later checkpoint: left alone
    CHECK(checkpoint_prune(dir, 20, 0, 0) == 0 && ckpt_exists(dir, "DONE_", 2, ""), "keep 0 deletes nothing");
    int removed = checkpoint_prune(dir, 20, 3, 8);    // keep 20, 18, 16; majors 8, 16
    CHECK(removed == 6, "prune removed %d, want 6 (2 4 6 10 12 14)", removed);
    int want_kept[] = {8, 16, 18, 20, 30};
    for (int i = 0; i < 5; i++)
        CHECK(ckpt_exists(dir, "DONE_", want_kept[i], "") && ckpt_exists(dir, "model_", want_kept[i], ".bin") &&
              ckpt_exists(dir, "state_", want_kept[i], ".bin"), "checkpoint %d kept", want_kept[i]);
    int want_gone[] = {2, 4, 6, 10, 12, 14};
    for (int i = 0; i < 6; i++)
        CHECK(!ckpt_exists(dir, "DONE_", want_gone[i], "") && !ckpt_exists(dir, "model_", want_gone[i], ".bin") &&
              !ckpt_exists(dir, "state_", want_gone[i], ".bin"), "checkpoint %d deleted", want_gone[i]);
    CHECK(!ckpt_exists(dir, "model_", 5, ".bin") && !ckpt_exists(dir, "state_", 7, ".bin.tmp"),
          "incomplete checkpoints before the current one deleted");
    CHECK(ckpt_exists(dir, "model_", 22, ".bin"), "incomplete checkpoint after the current one kept");
    CHECK(checkpoint_find_latest(dir) == 30, "find_latest after prune");
    removed = checkpoint_prune(dir, 20, 1, 0);        // keep only the current one (no majors)
    CHECK(removed == 3 && ckpt_exists(dir, "DONE_", 20, "") && !ckpt_exists(dir, "DONE_", 18, "") &&
          !ckpt_exists(dir, "DONE_", 8, ""), "keep 1 without majors: removed %d", removed);
}

// outlier detector and step guard (llmc/outlier.h)
static void test_outlier(void) {
    OutlierDetector d;
    outlier_init(&d, 4);
    CHECK(isnan(outlier_zscore(&d, 1.0)), "z undefined on an empty window");
    outlier_push(&d, 1.0);
    outlier_push(&d, 2.0);
    outlier_push(&d, 3.0);
    CHECK(isnan(outlier_zscore(&d, 1.0)), "z undefined until the window is full");
    outlier_push(&d, NAN);
    outlier_push(&d, INFINITY);
    CHECK(d.count == 3, "non-finite values are not pushed (count %d)", d.count);
    outlier_push(&d, 4.0);  // window 1 2 3 4: mean 2.5, population sd sqrt(1.25)
    double z = outlier_zscore(&d, 5.0);
    CHECK(fabs(z - 2.5 / sqrt(1.25)) < 1e-12, "z of 5 over {1,2,3,4} = %g", z);
    outlier_push(&d, 5.0);  // drops 1: window 2 3 4 5
    z = outlier_zscore(&d, 3.5);
    CHECK(fabs(z) < 1e-12 && d.count == 4, "ring drops the oldest: z of 3.5 over {2,3,4,5} = %g", z);
    OutlierDetector flat;
    outlier_init(&flat, 3);
    for (int i = 0; i < 3; i++) outlier_push(&flat, 7.0);
    CHECK(outlier_zscore(&flat, 100.0) == 0.0, "no spread: z = 0");
    outlier_init(&d, 100000);
    CHECK(d.window == OUTLIER_WINDOW, "window capped at %d", OUTLIER_WINDOW);

    // guard: non-finite always skipped, also without a guard
    double zl, zn;
    CHECK(step_guard_decide(NULL, 1.0f, 1.0f, &zl, &zn) == STEP_APPLIED, "NULL guard applies finite steps");
    CHECK(step_guard_decide(NULL, NAN, 1.0f, &zl, &zn) == STEP_SKIP_NONFINITE, "NULL guard skips NaN loss");
    CHECK(step_guard_decide(NULL, 1.0f, INFINITY, &zl, &zn) == STEP_SKIP_NONFINITE, "NULL guard skips Inf norm");
    StepGuard g;
    step_guard_init(&g, 3.0, 0.0, 8);  // -sl 3, -sg off
    int applied = 0;
    for (int i = 0; i < 8; i++) applied += step_guard_decide(&g, 5.0f + 0.1f * (float)(i % 2), 1.0f + (float)i, &zl, &zn) == STEP_APPLIED;
    CHECK(applied == 8 && isnan(zl), "window filling: all applied, z undefined");
    CHECK(step_guard_decide(&g, 5.1f, 100.0f, &zl, &zn) == STEP_APPLIED && zn > 3.0,
          "norm spike (z %g) applied with -sg off", zn);
    CHECK(step_guard_decide(&g, 9.0f, 1.0f, &zl, &zn) == STEP_SKIP_LOSS_SPIKE && zl > 3.0, "loss spike skipped, z %g", zl);
    CHECK(step_guard_decide(&g, 5.0f, 1.0f, &zl, &zn) == STEP_APPLIED && zl < 3.0, "normal loss applied, z %g", zl);
    CHECK(step_guard_decide(&g, NAN, 1.0f, &zl, &zn) == STEP_SKIP_NONFINITE && isnan(zl), "NaN loss skipped");
    StepGuard h;
    step_guard_init(&h, 0.0, 2.0, 4);  // -sg 2
    for (int i = 0; i < 4; i++) step_guard_decide(&h, 1.0f, 1.0f + 0.5f * (float)(i % 2), &zl, &zn);
    CHECK(step_guard_decide(&h, 1.0f, 2.0f, &zl, &zn) == STEP_SKIP_NORM_SPIKE, "norm spike skipped with -sg 2, z %g", zn);
    CHECK(step_guard_decide(&h, 1000.0f, 1.25f, &zl, &zn) == STEP_APPLIED, "loss spike applied with -sl off");
    // a lasting level shift is absorbed: the skipped values enter the window
    StepGuard k;
    step_guard_init(&k, 3.0, 0.0, 8);
    for (int i = 0; i < 8; i++) step_guard_decide(&k, 1.0f + 0.01f * (float)(i % 2), 1.0f, &zl, &zn);
    int skipped = 0;
    for (int i = 0; i < 20; i++) skipped += step_guard_decide(&k, 2.0f, 1.0f, &zl, &zn) != STEP_APPLIED;
    CHECK(skipped > 0 && skipped < 8, "level shift: %d of 20 skipped, then absorbed", skipped);
    // test-only NaN injection window
    g.nan_step = 4;
    g.nan_count = 2;
    CHECK(!step_guard_inject_nan(&g, 3) && step_guard_inject_nan(&g, 4) && step_guard_inject_nan(&g, 5) &&
          !step_guard_inject_nan(&g, 6) && !step_guard_inject_nan(NULL, 4), "NaN injection at steps 4, 5 only");
}

// ------------------------------------------------------------------------------------------------

// data-parallel layout: batch split, noise assignment, shards, communication cost
static void test_dist(void) {
    TrainConfig c;
    cli_defaults(&c);
    char err[256];
    int accum = 0;
    long long total = 0;
    c.B = 2, c.T = 32, c.total_batch_size = 256;
    CHECK(cli_resolve_total_batch_dp(&c, 2, &accum, &total, err, sizeof(err)) == 0 && accum == 2 && total == 256,
          "-d 256 over 2 processes: 2 micro-batches each");
    c.total_batch_size = 192;
    CHECK(cli_resolve_total_batch_dp(&c, 2, &accum, &total, err, sizeof(err)) == -1 && strstr(err, "B*T*processes"),
          "-d 192 over 2 processes rejected: %s", err);
    c.total_batch_size = -1;
    CHECK(cli_resolve_total_batch_dp(&c, 4, &accum, &total, err, sizeof(err)) == 0 && accum == 1 && total == 256,
          "-d -1 over 4 processes = B*T*P");
    // noise: rank mode gives every (rank, j) its own sample g = j P + r; shared mode j; -dg G: g / G
    DistInfo d = dist_single();
    d.world = 4;
    int distinct = 1, same = 1;
    for (int r = 0; r < 4; r++) {
        d.rank = r;
        d.noise_group = 1;
        for (int j = 0; j < 3; j++) distinct = distinct && dist_noise_sample(&d, j) == j * 4 + r;
        d.noise_group = 4;
        for (int j = 0; j < 3; j++) same = same && dist_noise_sample(&d, j) == j;
    }
    CHECK(distinct && same, "dist_noise_sample: per rank j*P + r, shared j");
    DistInfo one = dist_single();
    one.noise_group = 2;
    CHECK(dist_noise_sample(&one, 0) == 0 && dist_noise_sample(&one, 1) == 0 && dist_noise_sample(&one, 2) == 1 &&
          dist_noise_sample(&one, 3) == 1, "one process with -dg 2 reproduces the shared assignment of 2");
    CHECK(dist_reduce_grad_only(&d, 1) && !dist_reduce_grad_only(&d, 2), "gradient-only reduction needs K_local 1");
    d.noise_group = 1;
    CHECK(!dist_reduce_grad_only(&d, 1), "no gradient-only reduction with per-rank noise");
    // shards cover [0, n) exactly once
    size_t n = 1003, covered = 0, prev_hi = 0;
    int contiguous = 1;
    for (int r = 0; r < 4; r++) {
        size_t lo, hi;
        dist_shard(n, 4, r, &lo, &hi);
        contiguous = contiguous && lo == prev_hi && hi >= lo;
        covered += hi - lo;
        prev_hi = hi;
    }
    CHECK(contiguous && covered == n && prev_hi == n, "dist_shard covers the parameters once");
    size_t lo, hi;
    dist_shard(2, 4, 3, &lo, &hi);
    CHECK(lo == hi, "dist_shard: empty last shard when n < P");
    // bytes per parameter per rank: ring all-reduce 2 (P-1)/P x bytes
    d.world = 2, d.zero_stage = 0, d.noise_group = 1;
    DistCost a = dist_cost(&d, 0, 0, 2, 2, 2), iv = dist_cost(&d, 1, 0, 2, 2, 2), pc = dist_cost(&d, 2, 1, 2, 2, 2);
    CHECK(fabs(a.bytes_per_param - 2.0) < 1e-12 && fabs(iv.bytes_per_param - 8.0) < 1e-12 &&
          fabs(pc.bytes_per_param - 16.0) < 1e-12, "dist_cost ZeRO-0: adamw bf16 2, ivon 8, poco 16 B (P = 2): %g %g %g",
          a.bytes_per_param, iv.bytes_per_param, pc.bytes_per_param);
    d.noise_group = 2;
    DistCost ivs = dist_cost(&d, 1, 0, 1, 2, 2);
    CHECK(fabs(ivs.bytes_per_param - 4.0) < 1e-12 && ivs.allreduce == 1, "dist_cost shared noise K 1: one fp32 vector");
    d.noise_group = 1, d.zero_stage = 1;
    DistCost az = dist_cost(&d, 0, 0, 2, 2, 2), ivz = dist_cost(&d, 1, 0, 2, 2, 2);
    CHECK(fabs(az.bytes_per_param - 2.0) < 1e-12 && fabs(ivz.bytes_per_param - 8.0) < 1e-12,
          "dist_cost ZeRO-1: adamw RS+AG 2 B, ivon RS 2 + AG 2 fp32 = 8 B (P = 2): %g %g", az.bytes_per_param,
          ivz.bytes_per_param);
    // flag conflicts name their flag
    cli_defaults(&c);
    c.dp_server = "h:1";
    CHECK(dist_check_flags(&c, DIST_INIT_AUTO, err, sizeof(err)) == -1 && strncmp(err, "flag -ds", 8) == 0, "-ds alone: %s", err);
    cli_defaults(&c);
    CHECK(dist_check_flags(&c, DIST_INIT_TCP, err, sizeof(err)) == -1 && strncmp(err, "flag -dm", 8) == 0, "tcp without -dp/-dr: %s", err);
    c.dp_processes = 2, c.dp_rank = 2, c.dp_server = "h:1";
    CHECK(dist_check_flags(&c, DIST_INIT_TCP, err, sizeof(err)) == -1 && strncmp(err, "flag -dr", 8) == 0, "rank >= -dp: %s", err);
    c.dp_rank = 1;
    CHECK(dist_check_flags(&c, DIST_INIT_TCP, err, sizeof(err)) == 0, "tcp with -dp 2 -dr 1 -ds");
}

int main(void) {
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/test_llmc_XXXXXX");
    if (mkdtemp(g_tmp) == NULL) { perror("mkdtemp"); return 2; }
    printf("temp dir %s\n", g_tmp);
    int before;
#define SUITE(fn) do { before = g_fail; fn(); printf("%-16s %s\n", #fn, g_fail == before ? "ok" : "FAILED"); } while (0)
    SUITE(test_philox);
    SUITE(test_cli);
    SUITE(test_dataloader);
    SUITE(test_tokenizer);
    SUITE(test_schedule);
    SUITE(test_logger);
    SUITE(test_checkpoint);
    SUITE(test_checkpoint_prune);
    SUITE(test_outlier);
    SUITE(test_dist);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", g_tmp);
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail == 0 ? 0 : 1;
}
