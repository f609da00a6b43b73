// Tests of the CPU GEMM (llmc/gemm_cpu.h) against a double-precision reference, of every layer's
// backward against central finite differences of the loss on a tiny model, and of AdamW.
// Build: gcc -O3 -march=native -fopenmp -Wall -Wextra -DTESTING -o dev/test/bin/test_gemm dev/test/test_gemm.c -lm
#ifndef TESTING
#define TESTING
#endif
#include <stdarg.h>
#include "../../train_gpt2.c"

static int tests_passed = 0, tests_failed = 0;

static void check(int ok, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(int ok, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "PASS" : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (ok) tests_passed++; else tests_failed++;
}

static uint64_t rng_state = 42;
static float rand_uniform(void) {  // in [-1, 1)
    return (float)((model_init_splitmix64(&rng_state) >> 40) / 8388608.0 - 1.0);
}
static void fill_uniform(float* x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = rand_uniform();
}

// ----------------------------------------------------------------------------
// GEMM

// Tolerance: fp32 accumulation of K products has error bounded by about K * 2^-24 * sum|a*b|;
// the blocked sums are much tighter in practice. Accept |got - ref| <= 1e-5 * (sum|terms| + |initial|) + 1e-30.
#define GEMM_RTOL 1e-5

typedef struct { double max_ratio; long checked; } GemmErr;

static void gemm_err_add(GemmErr* e, double got, double ref, double mag) {
    double r = fabs(got - ref) / (GEMM_RTOL * mag + 1e-30);
    if (!(r <= e->max_ratio)) e->max_ratio = r;  // NaN propagates as a failure
    e->checked++;
}

// Runs the four products on (M, N, K) and checks `samples` entries of each (all when samples <= 0).
// `misalign` offsets every buffer by one float.
static void test_gemm_shape(int M, int N, int K, long samples, int misalign, int with_bias) {
    int off = misalign ? 1 : 0;
    size_t nA = (size_t)M * K, nW = (size_t)N * K, nO = (size_t)M * N;
    float* inp = (float*)mallocCheck((nA + 1) * sizeof(float)) ;
    float* W = (float*)mallocCheck((nW + 1) * sizeof(float));
    float* dout = (float*)mallocCheck((nO + 1) * sizeof(float));
    float* out = (float*)mallocCheck((nO + 1) * sizeof(float));
    float* dinp = (float*)mallocCheck((nA + 1) * sizeof(float));
    float* dinp0 = (float*)mallocCheck(nA * sizeof(float));
    float* dW = (float*)mallocCheck((nW + 1) * sizeof(float));
    float* dW0 = (float*)mallocCheck(nW * sizeof(float));
    float* bias = (float*)mallocCheck((N + 1) * sizeof(float));
    float* dbias = (float*)mallocCheck((N + 1) * sizeof(float));
    float* dbias0 = (float*)mallocCheck(N * sizeof(float));
    float *I = inp + off, *Wp = W + off, *D = dout + off, *O = out + off, *DI = dinp + off, *DW = dW + off,
          *Bi = bias + off, *DB = dbias + off;
    fill_uniform(I, nA);
    fill_uniform(Wp, nW);
    fill_uniform(D, nO);
    fill_uniform(Bi, N);
    fill_uniform(DI, nA);
    fill_uniform(DW, nW);
    fill_uniform(DB, N);
    for (size_t i = 0; i < nO; i++) O[i] = NAN;  // forward must overwrite
    memcpy(dinp0, DI, nA * sizeof(float));
    memcpy(dW0, DW, nW * sizeof(float));
    memcpy(dbias0, DB, N * sizeof(float));

    gemm_matmul_forward(O, I, Wp, with_bias ? Bi : NULL, M, N, K);
    gemm_matmul_backward_input(DI, D, Wp, M, N, K);
    gemm_matmul_backward_weight(DW, D, I, M, N, K);
    gemm_bias_backward(DB, D, M, N);

    GemmErr ef = {0, 0}, ei = {0, 0}, ew = {0, 0}, eb = {0, 0};
    long total_o = (long)nO, total_i = (long)nA, total_w = (long)nW;
    long so = samples > 0 && samples < total_o ? samples : total_o;
    long si = samples > 0 && samples < total_i ? samples : total_i;
    long sw = samples > 0 && samples < total_w ? samples : total_w;
    for (long s = 0; s < so; s++) {
        size_t idx = so == total_o ? (size_t)s : (size_t)(model_init_splitmix64(&rng_state) % nO);
        size_t i = idx / N, j = idx % N;
        double ref = with_bias ? Bi[j] : 0.0, mag = fabs(ref);
        for (int p = 0; p < K; p++) {
            double t = (double)I[i * K + p] * Wp[j * K + p];
            ref += t;
            mag += fabs(t);
        }
        gemm_err_add(&ef, O[idx], ref, mag);
    }
    for (long s = 0; s < si; s++) {
        size_t idx = si == total_i ? (size_t)s : (size_t)(model_init_splitmix64(&rng_state) % nA);
        size_t i = idx / K, p = idx % K;
        double ref = dinp0[idx], mag = fabs(ref);
        for (int j = 0; j < N; j++) {
            double t = (double)D[i * N + j] * Wp[(size_t)j * K + p];
            ref += t;
            mag += fabs(t);
        }
        gemm_err_add(&ei, DI[idx], ref, mag);
    }
    for (long s = 0; s < sw; s++) {
        size_t idx = sw == total_w ? (size_t)s : (size_t)(model_init_splitmix64(&rng_state) % nW);
        size_t j = idx / K, p = idx % K;
        double ref = dW0[idx], mag = fabs(ref);
        for (int i = 0; i < M; i++) {
            double t = (double)D[(size_t)i * N + j] * I[(size_t)i * K + p];
            ref += t;
            mag += fabs(t);
        }
        gemm_err_add(&ew, DW[idx], ref, mag);
    }
    for (int j = 0; j < N; j++) {
        double ref = dbias0[j], mag = fabs(ref);
        for (int i = 0; i < M; i++) {
            ref += D[(size_t)i * N + j];
            mag += fabs(D[(size_t)i * N + j]);
        }
        gemm_err_add(&eb, DB[j], ref, mag);
    }
    const char* tag = misalign ? " misaligned" : "";
    check(ef.max_ratio <= 1.0, "gemm forward%s%s M=%d N=%d K=%d: %ld entries, max err/tol %.3g", with_bias ? "+bias" : "",
          tag, M, N, K, ef.checked, ef.max_ratio);
    check(ei.max_ratio <= 1.0, "gemm dinp%s M=%d N=%d K=%d: %ld entries, max err/tol %.3g", tag, M, N, K, ei.checked,
          ei.max_ratio);
    check(ew.max_ratio <= 1.0, "gemm dW%s M=%d N=%d K=%d: %ld entries, max err/tol %.3g", tag, M, N, K, ew.checked,
          ew.max_ratio);
    check(eb.max_ratio <= 1.0, "gemm dbias%s M=%d N=%d: max err/tol %.3g", tag, M, N, eb.max_ratio);
    free(inp); free(W); free(dout); free(out); free(dinp); free(dinp0); free(dW); free(dW0);
    free(bias); free(dbias); free(dbias0);
}

static void test_gemm_all(void) {
    static const int shapes[][3] = {
        {1, 1, 1},     {1, 5, 3},      {3, 1, 7},       {7, 3, 1},     {8, 48, 16},  {9, 49, 17},
        {13, 17, 19},  {16, 96, 256},  {17, 95, 257},   {33, 47, 513}, {64, 100, 300},
        {255, 257, 129}, {145, 3073, 40}, {256, 768, 768}, {200, 150, 1000},
    };
    int nshapes = (int)(sizeof(shapes) / sizeof(shapes[0]));
    for (int s = 0; s < nshapes; s++) {
        test_gemm_shape(shapes[s][0], shapes[s][1], shapes[s][2], 0, s % 2, s % 3 != 2);
    }
#ifdef _OPENMP
    // uneven thread counts change the row partition
    int saved = omp_get_max_threads();
    for (int th = 1; th <= 3; th += 2) {
        omp_set_num_threads(th);
        printf("-- %d thread(s)\n", th);
        test_gemm_shape(255, 257, 129, 0, 1, 1);
        test_gemm_shape(1, 3072, 768, 0, 0, 1);
    }
    omp_set_num_threads(saved);
#endif
    // the lm head: sampled entries
    test_gemm_shape(256, 50304, 768, 3000, 0, 0);
}

// ----------------------------------------------------------------------------
// model gradients by central differences

static double model_loss_sum(GPT2* m, const int* x, const int* y, int B, int T) {
    gpt2_forward(m, x, y, B, T);
    double s = 0.0;
    for (int i = 0; i < B * T; i++) s += m->acts.losses[i];
    return s / (B * T);
}

static void test_model_gradients(void) {
    GPT2Config c = {.max_seq_len = 8, .vocab_size = 60, .padded_vocab_size = 64, .num_layers = 2, .num_heads = 2,
                    .channels = 16};
    const int B = 2, T = 5;
    GPT2 m;
    gpt2_build_random(&m, c, 7);
    // larger weights and non-trivial layernorm and bias values, so every path carries gradient
    rng_state = 1234;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        float* t = m.params_memory;
        for (int j = 0; j < i; j++) t += m.param_sizes[j];
        int is_lnw = i == 2 || i == 8 || i == 14;
        for (size_t k = 0; k < m.param_sizes[i]; k++) t[k] = (is_lnw ? 1.0f : 0.0f) + 0.3f * rand_uniform();
    }
    gpt2_allocate(&m, B, T);
    int x[10], y[10];
    for (int i = 0; i < B * T; i++) {
        x[i] = (int)(model_init_splitmix64(&rng_state) % c.vocab_size);
        y[i] = (int)(model_init_splitmix64(&rng_state) % c.vocab_size);
    }
    gpt2_forward(&m, x, y, B, T);
    gpt2_zero_grad(&m);
    gpt2_backward(&m, 1.0f);
    float* analytic = (float*)mallocCheck(m.num_parameters * sizeof(float));
    memcpy(analytic, m.grads_memory, m.num_parameters * sizeof(float));

    // accumulation: two backwards with scale 0.5 equal one with scale 1
    gpt2_zero_grad(&m);
    gpt2_backward(&m, 0.5f);
    gpt2_backward(&m, 0.5f);
    double max_acc = 0.0;
    for (size_t i = 0; i < m.num_parameters; i++) {
        double dlt = fabs(m.grads_memory[i] - analytic[i]) / (fabs(analytic[i]) + 1e-6);
        if (dlt > max_acc) max_acc = dlt;
    }
    check(max_acc < 1e-4, "backward accumulates: 2 x (scale 0.5) == 1 x (scale 1), max rel diff %.2e", max_acc);

    // Central differences with h = 1e-2 on the double mean of the fp32 per-position losses.
    // fp32 rounding of the loss (~1e-7 relative of ~4) over 2h gives ~1e-5 noise, truncation error is
    // O(h^2): accept, per tensor, ||fd - analytic|| <= 1e-2 * ||analytic|| + 1e-4 over the sampled entries.
    const float h = 1e-2f;
    size_t off = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t n = m.param_sizes[i];
        float* t = m.params_memory + off;
        double num = 0.0, den = 0.0, worst = 0.0;
        int nsamp = n < 24 ? (int)n : 24;
        for (int s = 0; s < nsamp; s++) {
            size_t k = n <= 24 ? (size_t)s : (s == 0 ? 0 : s == 1 ? n - 1 : model_init_splitmix64(&rng_state) % n);
            if (i == 0 && s == 2) k = (size_t)c.vocab_size * c.channels + 3;  // a padded wte row: gradient 0
            float saved = t[k];
            t[k] = saved + h;
            double lp = model_loss_sum(&m, x, y, B, T);
            t[k] = saved - h;
            double lm = model_loss_sum(&m, x, y, B, T);
            t[k] = saved;
            double fd = (lp - lm) / (2.0 * h);
            double an = analytic[off + k];
            num += (fd - an) * (fd - an);
            den += an * an;
            if (fabs(fd - an) > worst) worst = fabs(fd - an);
        }
        double err = sqrt(num), ref = sqrt(den);
        check(err <= 1e-2 * ref + 1e-4, "grad %-8s: %d samples, ||fd - analytic|| = %.2e, ||analytic|| = %.2e, max abs %.2e",
              PARAM_TABLE[i].name, nsamp, err, ref, worst);
        off += n;
    }

    // a shorter forward (B=1, T=3) gives the same probabilities as the first rows of the full one
    gpt2_forward(&m, x, NULL, B, T);
    float* full = (float*)mallocCheck((size_t)3 * c.padded_vocab_size * sizeof(float));
    memcpy(full, m.acts.probs, (size_t)3 * c.padded_vocab_size * sizeof(float));
    check(m.mean_loss == -1.0f, "forward without targets sets mean_loss = -1");
    gpt2_forward(&m, x, NULL, 1, 3);
    double dmax = 0.0, padsum = 0.0;
    for (int k = 0; k < 3 * c.padded_vocab_size; k++) {
        double dd = fabs(full[k] - m.acts.probs[k]);
        if (dd > dmax) dmax = dd;
        if (k % c.padded_vocab_size >= c.vocab_size) padsum += fabs(m.acts.probs[k]);
    }
    check(dmax < 1e-6 && padsum == 0.0, "forward B=1 T=3 matches the prefix of B=2 T=5 (max diff %.2e), padded probs 0",
          dmax);
    free(full);
    free(analytic);
    gpt2_free(&m);
}

// ----------------------------------------------------------------------------
// AdamW

static void test_adamw(void) {
    const size_t n = 1000;
    float* p = (float*)mallocCheck(n * sizeof(float));
    float* g = (float*)mallocCheck(n * sizeof(float));
    float* mm = (float*)callocCheck(n * sizeof(float));
    float* vv = (float*)callocCheck(n * sizeof(float));
    double *pd = (double*)mallocCheck(n * sizeof(double)), *md = (double*)callocCheck(n * sizeof(double)),
           *vd = (double*)callocCheck(n * sizeof(double));
    fill_uniform(p, n);
    for (size_t i = 0; i < n; i++) pd[i] = p[i];
    double lr = 1e-3, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1, gs = 0.7;
    double worst = 0.0;
    for (int t = 1; t <= 5; t++) {
        fill_uniform(g, n);
        adamw_update(p, g, mm, vv, n, (float)lr, (float)b1, (float)b2, (float)eps, (float)wd, (float)gs, t);
        for (size_t i = 0; i < n; i++) {
            double gg = g[i] * gs;
            md[i] = b1 * md[i] + (1 - b1) * gg;
            vd[i] = b2 * vd[i] + (1 - b2) * gg * gg;
            double mh = md[i] / (1 - pow(b1, t)), vh = vd[i] / (1 - pow(b2, t));
            pd[i] -= lr * (mh / (sqrt(vh) + eps) + wd * pd[i]);
            double e = fabs(pd[i] - p[i]);
            if (e > worst) worst = e;
        }
    }
    // each step moves a parameter by about lr; allow 1e-3 of that per step in fp32
    check(worst < 5e-6, "adamw_update matches the double formula over 5 steps (max abs diff %.2e)", worst);
    free(p); free(g); free(mm); free(vv); free(pd); free(md); free(vd);
}

// ----------------------------------------------------------------------------
// elementwise helpers against libm in double

static void test_math(void) {
    double worst_exp = 0.0, worst_tanh = 0.0, worst_gelu = 0.0;
    for (int i = 0; i <= 200000; i++) {
        float x = -87.0f + 175.0f * (float)i / 200000.0f;
        double e = exp((double)x);
        double r = fabs(gpt2_expf(x) - e) / e;
        if (r > worst_exp) worst_exp = r;
        float u = -12.0f + 24.0f * (float)i / 200000.0f;
        double t = fabs(gpt2_tanhf(u) - tanh((double)u));
        if (t > worst_tanh) worst_tanh = t;
    }
    float xs[1000], ys[1000];
    for (int i = 0; i < 1000; i++) xs[i] = -8.0f + 16.0f * i / 999.0f;
    gelu_forward(ys, xs, 1000);
    for (int i = 0; i < 1000; i++) {
        double x = xs[i];
        double ref = 0.5 * x * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
        double err = fabs(ys[i] - ref) / (1.0 + fabs(x));  // 1 + tanh cancels for x < 0: absolute scale
        if (err > worst_gelu) worst_gelu = err;
    }
    // float has 2^-24 = 6e-8 relative rounding: allow a few ulps
    check(worst_exp < 4e-7, "gpt2_expf on [-87, 88]: max relative error %.2e", worst_exp);
    check(worst_tanh < 4e-7, "gpt2_tanhf on [-12, 12]: max absolute error %.2e", worst_tanh);
    check(worst_gelu < 4e-7, "gelu_forward vs the double tanh formula on [-8, 8]: max |err| / (1 + |x|) %.2e",
          worst_gelu);
}

#ifdef LLMC_ASAN
#include <fcntl.h>
#include <sanitizer/common_interface_defs.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
// Sanitizer builds: the micro-kernel runs without per-access checks (llmc/sanitize.h), so its tile check must catch
// what ASan would: a child process multiplies into a C one row short (a full 8 x 48 tile, the vector store path) and
// must abort with the kernel's report (sent to /dev/null). Runs first, before OpenMP starts threads in this process.
static void test_gemm_sanitizer_guard(void) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 2);
        __sanitizer_set_report_fd((void*)(intptr_t)fd);
        omp_set_num_threads(1);
        int M = GEMM_MR, N = GEMM_NR, K = 16;
        float* A = (float*)calloc((size_t)M * K, sizeof(float));
        float* B = (float*)calloc((size_t)K * N, sizeof(float));
        float* C = (float*)malloc((size_t)(M - 1) * N * sizeof(float));  // (M - 1, N): the last row is missing
        gemm_run(M, N, K, A, K, 1, B, N, 1, C, N, 0, NULL);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    check(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
          "sanitizer build: gemm_kernel's tile check aborts on a C buffer one row short (child %s %d)",
          WIFSIGNALED(status) ? "signal" : "exit", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}
#endif

int main(void) {
#ifdef LLMC_ASAN
    test_gemm_sanitizer_guard();
#endif
    test_math();
    test_gemm_all();
    test_model_gradients();
    test_adamw();
    printf("%d passed, %d failed\n", tests_passed, tests_failed);
    return tests_failed == 0 ? 0 : 1;
}
