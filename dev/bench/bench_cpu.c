// CPU benchmark: measured fp32 FMA peak, GEMM throughput on the model's shapes, and full
// training steps (zero_grad, forward, backward, adamw_step) of a randomly initialized model.
// Build: gcc -O3 -march=native -fopenmp -Wall -Wextra -o build/bench_cpu dev/bench/bench_cpu.c -lm
// Run:   OMP_NUM_THREADS=2 ./build/bench_cpu                 (d12 B=4 T=64 and d4 B=8 T=128)
//        OMP_NUM_THREADS=2 ./build/bench_cpu d12 4 64 [steps] (one configuration)
//        OMP_NUM_THREADS=2 ./build/bench_cpu passes          (the optimizer element passes at 124M parameters)
//        OMP_NUM_THREADS=2 ./build/bench_cpu optim           (the optimizer step tables alone)
//
// FLOPs of a step (stated formula; multiply-add = 2 FLOPs, backward = 2 x forward):
//   per token forward = 2 * (12 * L * C^2 + C * Vp)      linear layers incl. the lm head (not wpe)
//                     + 2 * L * C * (T + 1)              causal attention: q.k and att @ v, average
//                                                        over positions of (t + 1) keys
//   step = 3 * B * T * (per token forward)
#ifndef TESTING
#define TESTING
#endif
#include "../../train_gpt2.c"

#define LLMC_REFERENCE_S_PER_STEP 5.8  // llm.c train_gpt2.c, d12 B=4 T=64, this machine

static double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Peak fp32 FMA throughput of all threads: independent FMA chains in registers.
static double bench_peak_gflops(void) {
    const long iters = 20000000;
    double best = 0.0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = bench_now();
        float sink = 0.0f;
        int threads = 1;
        OMP_PRAGMA(parallel reduction(+:sink))
        {
#ifdef _OPENMP
            OMP_PRAGMA(single)
            threads = omp_get_num_threads();
#endif
#ifdef __AVX512F__
            __m512 acc[12];
            __m512 mul = _mm512_set1_ps(0.999999f), add = _mm512_set1_ps(1e-7f);
            for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_ps((float)i);
            for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
                for (int i = 0; i < 12; i++) acc[i] = _mm512_fmadd_ps(acc[i], mul, add);
            }
            for (int i = 1; i < 12; i++) acc[0] = _mm512_add_ps(acc[0], acc[i]);
            sink += _mm512_reduce_add_ps(acc[0]);
#else
            float acc[12][8];
            for (int i = 0; i < 12; i++)
                for (int j = 0; j < 8; j++) acc[i][j] = (float)(i + j);
            for (long it = 0; it < iters; it++)
                for (int i = 0; i < 12; i++)
                    for (int j = 0; j < 8; j++) acc[i][j] = acc[i][j] * 0.999999f + 1e-7f;
            for (int i = 0; i < 12; i++)
                for (int j = 0; j < 8; j++) sink += acc[i][j];
#endif
        }
        double dt = bench_now() - t0;
#ifdef __AVX512F__
        double flops = 2.0 * 16 * 12 * (double)iters * threads;
#else
        double flops = 2.0 * 8 * 12 * (double)iters * threads;
#endif
        if (sink == 12345.678f) printf(" ");  // keeps the loop alive
        double g = flops / dt / 1e9;
        if (g > best) best = g;
    }
    return best;
}

static void bench_fill(float* x, size_t n, uint64_t* st) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((model_init_splitmix64(st) >> 40) / 16777216.0 - 0.5);
}

// GFLOP/s of the three products of a linear layer out(M, N) = inp(M, K) @ W(N, K)^T
static void bench_gemm_shape(const char* name, int M, int N, int K, double peak) {
    uint64_t st = 99;
    float* inp = (float*)mallocCheck((size_t)M * K * sizeof(float));
    float* W = (float*)mallocCheck((size_t)N * K * sizeof(float));
    float* out = (float*)mallocCheck((size_t)M * N * sizeof(float));
    float* dinp = (float*)callocCheck((size_t)M * K * sizeof(float));
    float* dW = (float*)callocCheck((size_t)N * K * sizeof(float));
    bench_fill(inp, (size_t)M * K, &st);
    bench_fill(W, (size_t)N * K, &st);
    bench_fill(out, (size_t)M * N, &st);
    double flops = 2.0 * M * N * K;
    int reps = flops > 5e9 ? 3 : flops > 5e8 ? 10 : 40;
    double g[3];
    for (int which = 0; which < 3; which++) {
        for (int r = 0; r <= reps; r++) {
            if (r == 1) g[which] = bench_now();
            if (which == 0) gemm_matmul_forward(out, inp, W, NULL, M, N, K);
            if (which == 1) gemm_matmul_backward_input(dinp, out, W, M, N, K);
            if (which == 2) gemm_matmul_backward_weight(dW, out, inp, M, N, K);
        }
        g[which] = flops * reps / (bench_now() - g[which]) / 1e9;
    }
    printf("| %-14s | %5d %5d %5d | %8.1f %8.1f %8.1f | %4.0f%% %4.0f%% %4.0f%% |\n", name, M, N, K, g[0], g[1], g[2],
           100 * g[0] / peak, 100 * g[1] / peak, 100 * g[2] / peak);
    free(inp); free(W); free(out); free(dinp); free(dW);
}

static void bench_gemm_table(int M, int C, int Vp, double peak) {
    printf("GEMM, out(M,N) = inp(M,K) @ W(N,K)^T; GFLOP/s and %% of peak for fwd, dinp, dW\n");
    printf("| %-14s | %5s %5s %5s | %8s %8s %8s | %5s %5s %5s |\n", "shape", "M", "N", "K", "fwd", "dinp", "dW", "fwd",
           "dinp", "dW");
    bench_gemm_shape("qkv", M, 3 * C, C, peak);
    bench_gemm_shape("attproj", M, C, C, peak);
    bench_gemm_shape("fc", M, 4 * C, C, peak);
    bench_gemm_shape("fcproj", M, C, 4 * C, peak);
    bench_gemm_shape("lm head", M, Vp, C, peak);
}

static void bench_model(const char* desc, int B, int T, int steps, double peak) {
    GPT2Config c;
    if (gpt2_config_from_descriptor(desc, &c) != 0) fatalf("bench: '%s' is not a model descriptor (d4, d12, ...)", desc);
    if (B < 1 || T < 1 || T > c.max_seq_len) fatalf("bench: B=%d T=%d out of range", B, T);
    GPT2 model;
    gpt2_build_random(&model, c, 1337);
    gpt2_allocate(&model, B, T);
    int* x = (int*)mallocCheck((size_t)B * (T + 1) * sizeof(int));
    uint64_t st = 5;
    for (int i = 0; i < B * (T + 1); i++) x[i] = (int)(model_init_splitmix64(&st) % (uint64_t)c.vocab_size);
    const int* inputs = x;
    const int* targets = x + 1;  // next-token targets
    double L = c.num_layers, C = c.channels, Vp = c.padded_vocab_size;
    double per_token = 2.0 * (12.0 * L * C * C + C * Vp) + 2.0 * L * C * (T + 1);
    double step_flops = 3.0 * B * T * per_token;
    double t_fwd = 0, t_bwd = 0, t_opt = 0, t_total = 0;
    float loss = 0.0f;
    for (int s = 0; s <= steps; s++) {
        double t0 = bench_now();
        gpt2_zero_grad(&model);
        gpt2_forward(&model, inputs, targets, B, T);
        double t1 = bench_now();
        gpt2_backward(&model, 1.0f);
        double t2 = bench_now();
        gpt2_adamw_step(&model, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, s + 1);
        double t3 = bench_now();
        loss = model.mean_loss;
        if (s == 0) continue;  // warm-up step
        t_fwd += t1 - t0;
        t_bwd += t2 - t1;
        t_opt += t3 - t2;
        t_total += t3 - t0;
    }
    double ms = 1e3 * t_total / steps;
    double gflops = step_flops / (t_total / steps) / 1e9;
    printf("%s B=%d T=%d: %zu parameters, %d timed steps, last loss %.4f\n", desc, B, T, model.num_parameters, steps,
           loss);
    printf("  %.1f ms/step (zero_grad+forward %.1f, backward %.1f, adamw %.1f), %.0f tok/s\n", ms,
           1e3 * t_fwd / steps, 1e3 * t_bwd / steps, 1e3 * t_opt / steps, B * T / (t_total / steps));
    printf("  %.1f GFLOP/step, %.1f GFLOP/s = %.0f%% of the measured peak %.1f GFLOP/s\n", step_flops / 1e9, gflops,
           100 * gflops / peak, peak);
    if (strcmp(desc, "d12") == 0 && B == 4 && T == 64)
        printf("  vs llm.c reference %.1f s/step: %.2fx faster\n", LLMC_REFERENCE_S_PER_STEP,
               LLMC_REFERENCE_S_PER_STEP * 1e3 / ms);
    free(x);
    gpt2_free(&model);
}

// the fixed random batch as the optimizer's BatchFn
typedef struct {
    const int* inputs;
    const int* targets;
} BenchBatch;

static void bench_next_batch(void* ctx, const int** inputs, const int** targets) {
    const BenchBatch* b = (const BenchBatch*)ctx;
    *inputs = b->inputs;
    *targets = b->targets;
}

static int bench_cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}

// Whole optimizer steps (gpt2_optimizer_step, K micro-batches) for AdamW, IVON and IVON-PoCo(Mo) with the
// default settings: ms/step (median), the overhead over AdamW and the optimizer state in bytes per parameter. The
// three models live side by side and take their steps in turn (round r: one step of each), so that a change in the
// machine's speed during the run falls on all three alike. PoCo is timed on inner steps (corrected from step 0, no
// refresh inside the timed steps); its refresh cost per step is measured on one refresh of 4 K micro-batches and
// scaled to the default (period 32, 32 K micro-batches: the cost is linear in the micro-batches).
static void bench_optimizers(const char* desc, int B, int T, int K, int steps) {
    GPT2Config c;
    if (gpt2_config_from_descriptor(desc, &c) != 0) fatalf("bench: '%s' is not a model descriptor", desc);
    int* x = (int*)mallocCheck((size_t)B * (T + 1) * sizeof(int));
    uint64_t st = 7;
    for (int i = 0; i < B * (T + 1); i++) x[i] = (int)(model_init_splitmix64(&st) % (uint64_t)c.vocab_size);
    BenchBatch batch = {x, x + 1};
    const int period = 32, probe = 4;
    printf("optimizer steps, %s B=%d T=%d, %d micro-batches per step, median of %d steps each, the optimizers in "
           "turn:\n", desc, B, T, K, steps);
    GPT2 model[3];
    OptimizerConfig oc[3];
    double* t = (double*)mallocCheck(3 * (size_t)steps * sizeof(double));
    const float lrs[3] = {6e-4f, 300.0f, 300.0f};
    StepStats ss;
    for (int k = OPT_ADAMW; k <= OPT_POCO; k++) {
        gpt2_build_random(&model[k], c, 1337);
        gpt2_allocate(&model[k], B, T);
        optimizer_config_defaults(&oc[k], k);
        oc[k].ess = 1e6;
        oc[k].max_steps = steps + 2;
        oc[k].poco_start = 0;
        oc[k].poco_period = 1000000;  // PoCo: one refresh, before step 0 (warm-up), of K micro-batches
        oc[k].poco_mega_batches = K;
        gpt2_optimizer_init(&model[k], &oc[k]);
        gpt2_optimizer_step(&model[k], &oc[k], 0, lrs[k], K, bench_next_batch, &batch, NULL, &ss);  // warm-up
    }
    for (int s = 0; s < steps; s++)
        for (int k = OPT_ADAMW; k <= OPT_POCO; k++) {
            double t0 = bench_now();
            gpt2_optimizer_step(&model[k], &oc[k], s + 1, lrs[k], K, bench_next_batch, &batch, NULL, &ss);
            t[k * steps + s] = 1e3 * (bench_now() - t0);
        }
    double ms[3];
    for (int k = 0; k < 3; k++) {
        qsort(t + k * steps, (size_t)steps, sizeof(double), bench_cmp_double);
        ms[k] = t[k * steps + steps / 2];
    }
    // one refresh of probe * K micro-batches before an inner step, minus the inner step
    oc[OPT_POCO].poco_mega_batches = probe * K;
    oc[OPT_POCO].poco_period = 1;
    double t0 = bench_now();
    gpt2_optimizer_step(&model[OPT_POCO], &oc[OPT_POCO], steps + 1, lrs[OPT_POCO], K, bench_next_batch, &batch, NULL,
                        &ss);
    double refresh_ms = (1e3 * (bench_now() - t0) - ms[OPT_POCO]) * (double)period / probe;
    size_t np = model[0].num_parameters;
    for (int k = 0; k < 3; k++) gpt2_free(&model[k]);
    const char* names[3] = {"adamw", "ivon", "poco"};
    const int nbuf[3] = {2, 5, 11};  // persistent state + transients, without the model's params and grads
    printf("| optimizer | ms/step | vs adamw | optimizer bytes/param (state + transients) |\n|---|---|---|---|\n");
    for (int k = 0; k < 3; k++)
        printf("| %-9s | %8.1f | %+6.1f%% | %4d |\n", names[k], ms[k], 100.0 * (ms[k] / ms[0] - 1.0), 4 * nbuf[k]);
    double poco_avg = ms[2] + refresh_ms / period;
    printf("| poco avg  | %8.1f | %+6.1f%% | (inner step + one refresh of %d micro-batches every %d steps: %.0f ms, "
           "from one of %d) |\n", poco_avg, 100.0 * (poco_avg / ms[0] - 1.0), period * K, period, refresh_ms,
           probe * K);
    printf("  ratios: ivon / adamw %.2fx, poco inner / ivon %.2fx (targets <= 1.15x at d12 4x64 K=1, <= 1.05x at "
           "d4 8x128, <= 2.1x)\n", ms[1] / ms[0], ms[2] / ms[1]);
    printf("  %zu parameters\n", np);
    free(t);
    free(x);
}

// The optimizer element passes alone on n parameters (one tensor, the 2-D group), ms per pass: IVON sample and
// accumulate (each generates the noise), the IVON update, and AdamW's update for comparison.
static void bench_passes(size_t n) {
    float* buf = (float*)mallocCheck(8 * n * sizeof(float));
    float *m = buf, *h = buf + n, *theta = buf + 2 * n, *g = buf + 3 * n, *ag = buf + 4 * n, *an = buf + 5 * n;
    float *mom = buf + 6 * n, *v = buf + 7 * n;
    OMP_PRAGMA(parallel for schedule(static))
    for (size_t i = 0; i < n; i++) {
        m[i] = 0.01f * (float)(i % 7), h[i] = 1e-3f, g[i] = 1e-3f * (float)(i % 5);
        theta[i] = ag[i] = an[i] = mom[i] = v[i] = 0.0f;
    }
    OptimizerConfig oc;
    optimizer_config_defaults(&oc, OPT_IVON);
    oc.ess = 1e6;
    IvonNoiseKey key = ivon_noise_key(&oc, 1, 0, NOISE_STREAM_SAMPLE);
    IvonScalars s = ivon_scalars(&oc, 300.0, oc.prior_2d, 1);
    float essf = (float)oc.ess, wdf = (float)oc.prior_2d;
    double t[5];
    for (int rep = 0; rep < 2; rep++) {  // the first round warms up
        t[0] = bench_now();
        ivon_sample(theta, NULL, m, h, n, 0, essf, wdf, &key);
        t[1] = bench_now();
        ivon_accumulate(ag, an, g, 1.0f, h, n, 0, essf, wdf, &key, 1);
        t[2] = bench_now();
        ivon_update(m, mom, h, ag, an, n, &s);
        t[3] = bench_now();
        adamw_update(theta, g, mom, v, n, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 1);
        t[4] = bench_now();
    }
    printf("optimizer passes on %zu parameters, ms: ivon sample %.0f, ivon accumulate %.0f, ivon update %.0f, "
           "adamw update %.0f\n", n, 1e3 * (t[1] - t[0]), 1e3 * (t[2] - t[1]), 1e3 * (t[3] - t[2]),
           1e3 * (t[4] - t[3]));
    free(buf);
}

// the optimizer step tables of the targets: d12 4x64 and d4 8x128, one micro-batch and two
static void bench_optimizer_tables(void) {
    bench_optimizers("d12", 4, 64, 1, 7);
    bench_optimizers("d4", 8, 128, 1, 9);
    bench_optimizers("d12", 4, 64, 2, 5);
    bench_optimizers("d4", 8, 128, 2, 7);
}

int main(int argc, char** argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);  // progress lines as they come, also into a file
    if (argc == 2 && strcmp(argv[1], "passes") == 0) {  // the optimizer passes alone, at GPT-2 124M size
        bench_passes(124475904);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "optim") == 0) {
        bench_optimizer_tables();
        return 0;
    }
    if (argc != 1 && argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s [descriptor B T [steps]] | passes | optim   e.g. %s d12 4 64 5\n", argv[0], argv[0]);
        return 1;
    }
#ifdef _OPENMP
    int threads = omp_get_max_threads();
#else
    int threads = 1;
#endif
    double peak = bench_peak_gflops();
    printf("threads: %d, measured fp32 FMA peak: %.1f GFLOP/s (%.1f per thread)\n", threads, peak, peak / threads);
    if (argc == 1) {
        bench_passes(124475904);
        bench_gemm_table(256, 768, GPT2_PADDED_VOCAB, peak);
        bench_model("d12", 4, 64, 5, peak);
        bench_model("d4", 8, 128, 10, peak);
        bench_optimizer_tables();
        return 0;
    }
    char* end;
    long B = strtol(argv[2], &end, 10);
    if (*end != '\0' || B < 1 || B > 1 << 16) fatalf("bench: B '%s' is not a positive integer", argv[2]);
    long T = strtol(argv[3], &end, 10);
    if (*end != '\0' || T < 1 || T > 1 << 16) fatalf("bench: T '%s' is not a positive integer", argv[3]);
    long steps = 5;
    if (argc == 5) {
        steps = strtol(argv[4], &end, 10);
        if (*end != '\0' || steps < 1 || steps > 100000) fatalf("bench: steps '%s' is not a positive integer", argv[4]);
    }
    GPT2Config c;
    if (gpt2_config_from_descriptor(argv[1], &c) != 0)
        fatalf("bench: '%s' is not a model descriptor (d4, d12, ...)", argv[1]);
    bench_gemm_table((int)(B * T), c.channels, c.padded_vocab_size, peak);
    bench_model(argv[1], (int)B, (int)T, (int)steps, peak);
    bench_optimizers(argv[1], (int)B, (int)T, 2, (int)steps);
    return 0;
}
