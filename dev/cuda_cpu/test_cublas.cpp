// Tests of the CPU backend's cuBLAS and cuBLASLt (dev/cuda_cpu/include/cublas_v2.h, cublasLt.h, cuda_cpu_gemm.h).
// Each product is checked twice: bitwise against a scalar model of the numerics documented in cuda_cpu_gemm.h (the
// whole output buffer, so elements outside the m x n view must be untouched), and within rounding tolerance against
// a double-precision reference. Then determinism over OpenMP thread counts and the error paths (status and the one
// stderr line). Prints one line per check and `N passed, N failed`; exits 1 on failure.
// `test_cublas --bench` times the d2 model's LM-head GEMMs and the attention batches instead.
// Build: make build/cuda_cpu/test_cublas
#include <cublas_v2.h>
#include <cublasLt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <stdarg.h>
#include <chrono>
#include <functional>
#include <string>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#include "test_util.h"
#endif

static int n_pass = 0, n_fail = 0;

static void check(bool ok, const std::string& name, const std::string& detail = "") {
    if (ok) {
        n_pass++;
        printf("ok   %s\n", name.c_str());
    } else {
        n_fail++;
        printf("FAIL %s%s%s\n", name.c_str(), detail.empty() ? "" : ": ", detail.c_str());
    }
    fflush(stdout);
}


static void set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

// ----------------------------------------------------------------------------
// buffers of one storage type (fp32, bf16, fp16), random fill

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng() {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float uniform() { return (float)((double)(rng() >> 11) / 9007199254740992.0) * 2.0f - 1.0f; }

static const char* tname(int t) { return t == CUDA_R_32F ? "f32" : t == CUDA_R_16BF ? "bf16" : "f16"; }

struct Buf {
    int type = CUDA_R_32F;
    size_t n = 0;
    std::vector<float> f;            // CUDA_R_32F
    std::vector<__nv_bfloat16> bf;   // CUDA_R_16BF
    std::vector<__half> h;           // CUDA_R_16F
    Buf() {}
    Buf(int t, size_t count) : type(t), n(count) {
        if (t == CUDA_R_32F) f.resize(count);
        else if (t == CUDA_R_16BF) bf.resize(count);
        else h.resize(count);
    }
    void* ptr() { return type == CUDA_R_32F ? (void*)f.data() : type == CUDA_R_16BF ? (void*)bf.data() : (void*)h.data(); }
    float get(size_t i) const {
        return type == CUDA_R_32F ? f[i] : type == CUDA_R_16BF ? __bfloat162float(bf[i]) : __half2float(h[i]);
    }
    void set(size_t i, float v) {
        if (type == CUDA_R_32F) f[i] = v;
        else if (type == CUDA_R_16BF) bf[i] = __float2bfloat16(v);
        else h[i] = __float2half(v);
    }
    uint32_t bits(size_t i) const {
        uint32_t u = 0;
        if (type == CUDA_R_32F) memcpy(&u, &f[i], 4);
        else if (type == CUDA_R_16BF) memcpy(&u, &bf[i], 2);
        else memcpy(&u, &h[i], 2);
        return u;
    }
    void random(float scale = 1.0f) {
        for (size_t i = 0; i < n; i++) set(i, scale * uniform());
    }
    void fill(float v) {
        for (size_t i = 0; i < n; i++) set(i, v);
    }
};

// ----------------------------------------------------------------------------
// one product as the API sees it

struct Spec {
    std::string name;
    int64_t m = 0, n = 0, k = 0, batch = 1;
    bool ta = false, tb = false;
    int abt = CUDA_R_16BF, cdt = CUDA_R_16BF;  // A/B type, C/D type
    int64_t lda = 0, ldb = 0, ldc = 0, ldd = 0, sa = 0, sb = 0, sc = 0, sd = 0;
    float alpha = 1.0f, beta = 0.0f;
    uint32_t epi = CUBLASLT_EPILOGUE_DEFAULT;
    bool inplace = false;  // C == D (same buffer and layout)
    int64_t sbias = 0, ldaux = 0, saux = 0;
    bool nan_c = false;    // fill C with NaN (only meaningful with beta == 0)
    bool b_broadcast = false;  // B's batch stride 0: one B for every batch item
    bool nan_ab = false;       // fill A and B with NaN (only meaningful with alpha == 0 or k == 0)
    bool aux_type_unset = false;  // leave EPILOGUE_AUX_DATA_TYPE at its default (-1: D's type)
};

struct Data {
    Buf A, B, C, D, bias, aux;
};

static bool epi_bias(uint32_t e) {
    return e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_GELU_BIAS || e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
}
static bool epi_aux_out(uint32_t e) { return e == CUBLASLT_EPILOGUE_GELU_AUX || e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS; }
static bool epi_gelu(uint32_t e) {
    return e == CUBLASLT_EPILOGUE_GELU || e == CUBLASLT_EPILOGUE_GELU_BIAS || epi_aux_out(e);
}
static bool epi_bgrad(uint32_t e) { return e == CUBLASLT_EPILOGUE_BGRADA || e == CUBLASLT_EPILOGUE_BGRADB; }

// fills in default leading dimensions (rows + 3) and batch strides (matrix size + 5), allocates and fills the data
static void prepare(Spec& s, Data& d) {
    int64_t ra = s.ta ? s.k : s.m, ca = s.ta ? s.m : s.k, rb = s.tb ? s.n : s.k, cb = s.tb ? s.k : s.n;
    if (s.lda == 0) s.lda = ra + 3;
    if (s.ldb == 0) s.ldb = rb + 3;
    if (s.ldd == 0) s.ldd = s.m + 3;
    if (s.ldc == 0) s.ldc = s.inplace ? s.ldd : s.m + 5;
    if (s.batch > 1) {
        if (s.sa == 0) s.sa = s.lda * ca + 5;
        if (s.sb == 0 && !s.b_broadcast) s.sb = s.ldb * cb + 5;
        if (s.sd == 0) s.sd = s.ldd * s.n + 5;
        if (s.sc == 0) s.sc = s.inplace ? s.sd : s.ldc * s.n + 7;
    }
    auto span = [&](int64_t ld, int64_t cols, int64_t stride) {
        return (size_t)(ld * cols + (s.batch - 1) * stride + 1);
    };
    d.A = Buf(s.abt, span(s.lda, ca, s.sa));
    d.B = Buf(s.abt, span(s.ldb, cb, s.sb));
    d.D = Buf(s.cdt, span(s.ldd, s.n, s.sd));
    d.A.random();
    d.B.random();
    if (s.nan_ab) {
        d.A.fill(NAN);
        d.B.fill(NAN);
    }
    d.D.fill(-7.0f);  // sentinel: elements outside the view must keep it
    if (!s.inplace) {
        d.C = Buf(s.cdt, span(s.ldc, s.n, s.sc));
        d.C.random();
        if (s.nan_c) d.C.fill(NAN);
    } else {
        d.D.random();
        if (s.nan_c) d.D.fill(NAN);
    }
    if (epi_bias(s.epi)) {
        d.bias = Buf(s.cdt, (size_t)(s.m + (s.batch - 1) * s.sbias));
        d.bias.random();
    }
    if (epi_bgrad(s.epi)) {
        d.bias = Buf(s.cdt, (size_t)(s.epi == CUBLASLT_EPILOGUE_BGRADA ? s.m : s.n) + 2);
        d.bias.fill(-7.0f);
    }
    if (epi_aux_out(s.epi) || s.epi == CUBLASLT_EPILOGUE_DGELU) {
        if (s.ldaux == 0) s.ldaux = (s.m + 7) / 8 * 8 + 8;
        if (s.batch > 1 && s.saux == 0) s.saux = s.ldaux * s.n + 8;
        d.aux = Buf(s.cdt, span(s.ldaux, s.n, s.saux));
        if (s.epi == CUBLASLT_EPILOGUE_DGELU) d.aux.random(3.0f);
        else d.aux.fill(-7.0f);
    }
}

// ----------------------------------------------------------------------------
// the numerics of cuda_cpu_gemm.h, element by element (fp32, explicit fmaf), and a double reference

static float model_gelu(float x) {
    float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}
static float model_gelu_grad(float x) {
    float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    float th = tanhf(u);
    float du = 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * x * x);
    return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
}
static double ref_gelu(double x) { return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
static double ref_gelu_grad(double x) {
    double th = tanh(0.7978845608028654 * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
}

static float opA(const Spec& s, const Buf& A, int64_t b, int64_t i, int64_t p) {
    return A.get((size_t)(b * s.sa + (s.ta ? p + i * s.lda : i + p * s.lda)));
}
static float opB(const Spec& s, const Buf& B, int64_t b, int64_t p, int64_t j) {
    return B.get((size_t)(b * s.sb + (s.tb ? j + p * s.ldb : p + j * s.ldb)));
}

struct Expect {
    Buf D, aux, bias;   // exact model
    std::vector<double> ref, scale;  // double reference of D's view and the magnitude its errors scale with
};

// C0: C's values before the call (D's, in place)
static void model(const Spec& s, const Data& d, const Buf& C0, Expect& e) {
    e.D = d.D;
    e.aux = d.aux;
    e.bias = d.bias;
    e.ref.assign((size_t)(s.batch * s.m * s.n), 0.0);
    e.scale.assign(e.ref.size(), 0.0);
    bool prod = s.k > 0 && s.alpha != 0.0f;
    for (int64_t b = 0; b < s.batch; b++)
        for (int64_t j = 0; j < s.n; j++)
            for (int64_t i = 0; i < s.m; i++) {
                float acc = 0.0f;
                double dacc = 0.0, mag = 0.0;
                if (prod) {
                    for (int64_t p = 0; p < s.k; p++) {
                        float x = opA(s, d.A, b, i, p), y = opB(s, d.B, b, p, j);
                        acc = fmaf(x, y, acc);
                        dacc += (double)x * y;
                        mag += fabs((double)x * y);
                    }
                }
                size_t ci = (size_t)(b * s.sc + i + j * s.ldc);
                float t = 0.0f;
                double r = prod ? (double)s.alpha * dacc : 0.0;
                mag *= fabs(s.alpha);
                if (prod) t = s.alpha * acc;
                if (s.beta != 0.0f) {
                    float c = C0.get(ci);
                    t = prod ? t + s.beta * c : s.beta * c;
                    r += (double)s.beta * c;
                    mag += fabs((double)s.beta * c);
                }
                if (epi_bias(s.epi)) {
                    float bv = d.bias.get((size_t)(b * s.sbias + i));
                    t = t + bv;
                    r += bv;
                    mag += fabs(bv);
                }
                size_t ai = (size_t)(b * s.saux + i + j * s.ldaux);
                if (epi_aux_out(s.epi)) e.aux.set(ai, t);
                if (epi_gelu(s.epi)) {
                    t = model_gelu(t);
                    r = ref_gelu(r);
                    mag *= 1.2;
                }
                if (s.epi == CUBLASLT_EPILOGUE_DGELU) {
                    float g = model_gelu_grad(d.aux.get(ai));
                    t = t * g;
                    r *= ref_gelu_grad(d.aux.get(ai));
                    mag *= fabs(g) + 0.01;
                }
                e.D.set((size_t)(b * s.sd + i + j * s.ldd), t);
                size_t ri = (size_t)((b * s.n + j) * s.m + i);
                e.ref[ri] = r;
                e.scale[ri] = mag;
            }
    if (s.epi == CUBLASLT_EPILOGUE_BGRADA)
        for (int64_t i = 0; i < s.m; i++) {
            float sum = 0.0f;
            for (int64_t p = 0; p < s.k; p++) sum = sum + opA(s, d.A, 0, i, p);
            e.bias.set((size_t)i, sum);
        }
    if (s.epi == CUBLASLT_EPILOGUE_BGRADB)
        for (int64_t j = 0; j < s.n; j++) {
            float sum = 0.0f;
            for (int64_t p = 0; p < s.k; p++) sum = sum + opB(s, d.B, 0, p, j);
            e.bias.set((size_t)j, sum);
        }
}

static std::string compare_bits(const char* what, const Buf& got, const Buf& want) {
    for (size_t i = 0; i < want.n; i++)
        if (got.bits(i) != want.bits(i))
            return fmt("%s[%zu] = %.9g (bits 0x%x), model %.9g (bits 0x%x)", what, i, (double)got.get(i),
                       got.bits(i), (double)want.get(i), want.bits(i));
    return "";
}

// D's view within rounding of the double reference: half an ulp of the output type plus fp32 accumulation error
static std::string compare_ref(const Spec& s, const Buf& D, const Expect& e) {
    double rel = s.cdt == CUDA_R_16BF ? 1.0 / 256 : s.cdt == CUDA_R_16F ? 1.0 / 2048 : 1e-6;
    for (int64_t b = 0; b < s.batch; b++)
        for (int64_t j = 0; j < s.n; j++)
            for (int64_t i = 0; i < s.m; i++) {
                size_t ri = (size_t)((b * s.n + j) * s.m + i);
                double got = D.get((size_t)(b * s.sd + i + j * s.ldd)), r = e.ref[ri];
                double tol = rel * fabs(r) + 1e-5 * (e.scale[ri] + 1e-3) * (double)(s.k + 4) / 16.0;
                if (!(fabs(got - r) <= tol))
                    return fmt("D(%lld,%lld) batch %lld = %.9g, reference %.9g (tolerance %.3g)", (long long)i,
                               (long long)j, (long long)b, got, r, tol);
            }
    return "";
}

// ----------------------------------------------------------------------------
// the two entry points

static cublasHandle_t blas;
static cublasLtHandle_t lt;
static std::vector<char> workspace(32u << 20);

static uint32_t alignment(const void* p) {
    uintptr_t x = (uintptr_t)p;
    uint32_t al = 256;
    while (al > 1 && x % al != 0) al >>= 1;
    return al;
}

#define LT_TRY(call)                                 \
    do {                                             \
        cublasStatus_t st_ = (call);                 \
        if (st_ != CUBLAS_STATUS_SUCCESS) return st_; \
    } while (0)

static cublasStatus_t lt_layout(cublasLtMatrixLayout_t* l, int type, int64_t rows, int64_t cols, int64_t ld,
                                int64_t batch, int64_t stride) {
    LT_TRY(cublasLtMatrixLayoutCreate(l, (cudaDataType)type, (uint64_t)rows, (uint64_t)cols, ld));
    if (batch > 1) {
        int32_t bc = (int32_t)batch;
        LT_TRY(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof(bc)));
        LT_TRY(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                sizeof(stride)));
    }
    return CUBLAS_STATUS_SUCCESS;
}

// the calls of train_gpt2.cu's matmul_cublaslt, generalized; use_heuristic 0 passes algo NULL
static cublasStatus_t run_lt(const Spec& s, Data& d, bool use_heuristic = true) {
    cublasLtMatmulDesc_t desc;
    LT_TRY(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = s.ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = s.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    LT_TRY(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    LT_TRY(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    cublasLtEpilogue_t epi = (cublasLtEpilogue_t)s.epi;
    LT_TRY(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
    if (d.bias.n > 0) {
        void* bp = d.bias.ptr();
        cudaDataType_t bt = (cudaDataType_t)d.bias.type;
        LT_TRY(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof(bp)));
        LT_TRY(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)));
        LT_TRY(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, &s.sbias,
                                              sizeof(s.sbias)));
    }
    if (d.aux.n > 0) {
        void* ap = d.aux.ptr();
        cudaDataType_t at = (cudaDataType_t)d.aux.type;
        LT_TRY(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &ap, sizeof(ap)));
        LT_TRY(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &s.ldaux, sizeof(s.ldaux)));
        LT_TRY(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE, &s.saux,
                                              sizeof(s.saux)));
        if (!s.aux_type_unset)
            LT_TRY(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE, &at, sizeof(at)));
    }
    cublasLtMatrixLayout_t la, lb, lc, ld;
    LT_TRY(lt_layout(&la, s.abt, s.ta ? s.k : s.m, s.ta ? s.m : s.k, s.lda, s.batch, s.sa));
    LT_TRY(lt_layout(&lb, s.abt, s.tb ? s.n : s.k, s.tb ? s.k : s.n, s.ldb, s.batch, s.sb));
    LT_TRY(lt_layout(&lc, s.cdt, s.m, s.n, s.ldc, s.batch, s.sc));
    LT_TRY(lt_layout(&ld, s.cdt, s.m, s.n, s.ldd, s.batch, s.sd));
    void* C = s.inplace ? d.D.ptr() : d.C.ptr();
    cublasLtMatmulHeuristicResult_t heur;
    const cublasLtMatmulAlgo_t* algo = nullptr;
    if (use_heuristic) {
        cublasLtMatmulPreference_t pref;
        LT_TRY(cublasLtMatmulPreferenceCreate(&pref));
        size_t ws = workspace.size();
        LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
        uint32_t al[4] = {alignment(d.A.ptr()), alignment(d.B.ptr()), alignment(C), alignment(d.D.ptr())};
        LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al[0], 4));
        LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al[1], 4));
        LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al[2], 4));
        LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al[3], 4));
        int found = 0;
        LT_TRY(cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, lc, ld, pref, 1, &heur, &found));
        if (found != 1 || heur.state != CUBLAS_STATUS_SUCCESS) return CUBLAS_STATUS_INTERNAL_ERROR;
        algo = &heur.algo;
        LT_TRY(cublasLtMatmulPreferenceDestroy(pref));
    }
    LT_TRY(cublasLtMatmul(lt, desc, &s.alpha, d.A.ptr(), la, d.B.ptr(), lb, &s.beta, C, lc, d.D.ptr(), ld, algo,
                          workspace.data(), workspace.size(), 0));
    LT_TRY(cublasLtMatrixLayoutDestroy(la));
    LT_TRY(cublasLtMatrixLayoutDestroy(lb));
    LT_TRY(cublasLtMatrixLayoutDestroy(lc));
    LT_TRY(cublasLtMatrixLayoutDestroy(ld));
    return cublasLtMatmulDescDestroy(desc);
}

// cublasGemmStridedBatchedEx, or cublasGemmEx / cublasSgemm for one item (C is D: s.inplace)
enum { API_BATCHED, API_GEMMEX, API_SGEMM };
static cublasStatus_t run_blas(const Spec& s, Data& d, int api = API_BATCHED) {
    cublasOperation_t ta = s.ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = s.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (api == API_SGEMM)
        return cublasSgemm(blas, ta, tb, (int)s.m, (int)s.n, (int)s.k, &s.alpha, (const float*)d.A.ptr(), (int)s.lda,
                           (const float*)d.B.ptr(), (int)s.ldb, &s.beta, (float*)d.D.ptr(), (int)s.ldd);
    if (api == API_GEMMEX)
        return cublasGemmEx(blas, ta, tb, (int)s.m, (int)s.n, (int)s.k, &s.alpha, d.A.ptr(), (cudaDataType)s.abt,
                            (int)s.lda, d.B.ptr(), (cudaDataType)s.abt, (int)s.ldb, &s.beta, d.D.ptr(),
                            (cudaDataType)s.cdt, (int)s.ldd, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    return cublasGemmStridedBatchedEx(blas, ta, tb, (int)s.m, (int)s.n, (int)s.k, &s.alpha, d.A.ptr(),
                                      (cudaDataType)s.abt, (int)s.lda, s.sa, d.B.ptr(), (cudaDataType)s.abt,
                                      (int)s.ldb, s.sb, &s.beta, d.D.ptr(), (cudaDataType)s.cdt, (int)s.ldd, s.sd,
                                      (int)s.batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

// runs one product through an entry point and checks it against the model and the reference
enum { VIA_LT, VIA_LT_NULL_ALGO, VIA_BATCHED, VIA_GEMMEX, VIA_SGEMM };
static void test_product(Spec s, int via) {
    Data d;
    prepare(s, d);
    Buf C0 = s.inplace ? d.D : d.C;
    Expect e;
    model(s, d, C0, e);
    cublasStatus_t st = via == VIA_LT ? run_lt(s, d)
                      : via == VIA_LT_NULL_ALGO ? run_lt(s, d, false)
                      : run_blas(s, d, via == VIA_BATCHED ? API_BATCHED : via == VIA_GEMMEX ? API_GEMMEX : API_SGEMM);
    static const char* vias[] = {"lt", "lt(algo NULL)", "batchedEx", "gemmEx", "sgemm"};
    std::string name = fmt("%s %s %s->%s %c%c m%lld n%lld k%lld b%lld alpha %g beta %g%s", vias[via], s.name.c_str(),
                           tname(s.abt), tname(s.cdt), s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', (long long)s.m,
                           (long long)s.n, (long long)s.k, (long long)s.batch, (double)s.alpha, (double)s.beta,
                           s.inplace ? " in place" : "");
    if (st != CUBLAS_STATUS_SUCCESS) {
        check(false, name, fmt("status %d (%s)", (int)st, cublasGetStatusName(st)));
        return;
    }
    std::string err = compare_bits("D", d.D, e.D);
    if (err.empty() && d.aux.n > 0) err = compare_bits("aux", d.aux, e.aux);
    if (err.empty() && d.bias.n > 0) err = compare_bits("bias", d.bias, e.bias);
    if (err.empty()) err = compare_ref(s, d.D, e);
    check(err.empty(), name, err);
}

// ----------------------------------------------------------------------------
// stderr capture for the error paths

struct Capture {
    FILE* tmp = nullptr;
    int saved = -1;
    void begin() {
        fflush(stderr);
        tmp = tmpfile();
        saved = dup(2);
        dup2(fileno(tmp), 2);
    }
    std::string end() {
        fflush(stderr);
        dup2(saved, 2);
        close(saved);
        std::string out;
        rewind(tmp);
        char buf[1024];
        size_t r;
        while ((r = fread(buf, 1, sizeof(buf), tmp)) > 0) out.append(buf, r);
        fclose(tmp);
        return out;
    }
};

// the status and one stderr line containing `msg`
static void expect_error(const std::string& name, cublasStatus_t want, const char* msg, cublasStatus_t got,
                         const std::string& err) {
    size_t lines = 0;
    for (char c : err) lines += c == '\n';
    bool ok = got == want && lines == 1 && err.find(msg) != std::string::npos;
    check(ok, "error: " + name,
          ok ? "" : fmt("status %d (want %d), stderr '%s' (want one line with '%s')", (int)got, (int)want,
                        err.c_str(), msg));
}

#define EXPECT_ERROR(name, want, msg, call)         \
    do {                                            \
        Capture cap_;                               \
        cap_.begin();                               \
        cublasStatus_t got_ = (call);               \
        std::string err_ = cap_.end();              \
        expect_error(name, want, msg, got_, err_);  \
    } while (0)

static void test_errors() {
    cublasLtMatmulDesc_t desc;
    cublasStatus_t st = cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    check(st == CUBLAS_STATUS_SUCCESS, "cublasLtMatmulDescCreate");
    int32_t ct = 0;
    size_t written = 0;
    st = cublasLtMatmulDescGetAttribute(desc, CUBLASLT_MATMUL_DESC_COMPUTE_TYPE, &ct, sizeof(ct), &written);
    check(st == CUBLAS_STATUS_SUCCESS && ct == CUBLAS_COMPUTE_32F && written == 4, "get COMPUTE_TYPE reads back 32F");
    written = 0;
    st = cublasLtMatmulDescGetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, nullptr, 0, &written);
    check(st == CUBLAS_STATUS_SUCCESS && written == sizeof(void*), "get attribute size with sizeInBytes 0");
    uint32_t e = 0;
    st = cublasLtMatmulDescGetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof(e), nullptr);
    check(st == CUBLAS_STATUS_SUCCESS && e == CUBLASLT_EPILOGUE_DEFAULT, "get EPILOGUE default");

    uint32_t relu = CUBLASLT_EPILOGUE_RELU, bad = 12345, dgb = CUBLASLT_EPILOGUE_DGELU_BGRAD;
    EXPECT_ERROR("epilogue RELU", CUBLAS_STATUS_NOT_SUPPORTED,
                 "cuda_cpu: cublasLtMatmulDescSetAttribute: epilogue 2 (CUBLASLT_EPILOGUE_RELU) is not implemented",
                 cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &relu, sizeof(relu)));
    EXPECT_ERROR("epilogue DGELU_BGRAD", CUBLAS_STATUS_NOT_SUPPORTED, "(CUBLASLT_EPILOGUE_DGELU_BGRAD)",
                 cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &dgb, sizeof(dgb)));
    EXPECT_ERROR("epilogue 12345", CUBLAS_STATUS_INVALID_VALUE, "epilogue 12345 is not a cublasLtEpilogue_t value",
                 cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &bad, sizeof(bad)));
    st = cublasLtMatmulDescGetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof(e), nullptr);
    check(st == CUBLAS_STATUS_SUCCESS && e == CUBLASLT_EPILOGUE_DEFAULT, "a refused value leaves the attribute");
    EXPECT_ERROR("attribute size", CUBLAS_STATUS_INVALID_VALUE, "sizeInBytes 8",
                 cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &written, 8));
    int32_t sm = 4;
    EXPECT_ERROR("SM_COUNT_TARGET", CUBLAS_STATUS_NOT_SUPPORTED, "(CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET)",
                 cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET, &sm, sizeof(sm)));
    EXPECT_ERROR("attribute 99", CUBLAS_STATUS_INVALID_VALUE, "attribute 99 is not",
                 cublasLtMatmulDescSetAttribute(desc, (cublasLtMatmulDescAttributes_t)99, &sm, sizeof(sm)));
    int32_t tf32 = CUBLAS_COMPUTE_32F_FAST_TF32, s16 = CUDA_R_16BF, transc = CUBLAS_OP_T, ptrvec = 2;
    EXPECT_ERROR("set COMPUTE_TYPE 32F_FAST_TF32", CUBLAS_STATUS_NOT_SUPPORTED, "CUBLAS_COMPUTE_32F_FAST_TF32",
                 cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_COMPUTE_TYPE, &tf32, sizeof(tf32)));
    EXPECT_ERROR("set SCALE_TYPE 16BF", CUBLAS_STATUS_NOT_SUPPORTED, "scale type 14 (CUDA_R_16BF)",
                 cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_SCALE_TYPE, &s16, sizeof(s16)));
    EXPECT_ERROR("TRANSC T", CUBLAS_STATUS_INVALID_VALUE, "TRANSC",
                 cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSC, &transc, sizeof(transc)));
    EXPECT_ERROR("pointer mode vector", CUBLAS_STATUS_NOT_SUPPORTED, "pointer mode 2",
                 cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_POINTER_MODE, &ptrvec, sizeof(ptrvec)));
    cublasLtMatmulDesc_t d2 = nullptr;
    EXPECT_ERROR("DescCreate FAST_16BF", CUBLAS_STATUS_NOT_SUPPORTED, "cublasLtMatmulDescCreate: compute type 75",
                 cublasLtMatmulDescCreate(&d2, CUBLAS_COMPUTE_32F_FAST_16BF, CUDA_R_32F));
    EXPECT_ERROR("DescCreate 64F", CUBLAS_STATUS_NOT_SUPPORTED, "CUBLAS_COMPUTE_64F",
                 cublasLtMatmulDescCreate(&d2, CUBLAS_COMPUTE_64F, CUDA_R_64F));
    cublasLtMatmulDescDestroy(desc);

    cublasLtMatrixLayout_t lay;
    st = cublasLtMatrixLayoutCreate(&lay, CUDA_R_16BF, 8, 4, 8);
    int32_t row = CUBLASLT_ORDER_ROW, col32 = CUBLASLT_ORDER_COL32, bc = 0;
    EXPECT_ERROR("order ROW", CUBLAS_STATUS_NOT_SUPPORTED, "order 1 (CUBLASLT_ORDER_ROW) is not implemented",
                 cublasLtMatrixLayoutSetAttribute(lay, CUBLASLT_MATRIX_LAYOUT_ORDER, &row, sizeof(row)));
    EXPECT_ERROR("order COL32", CUBLAS_STATUS_NOT_SUPPORTED, "CUBLASLT_ORDER_COL32",
                 cublasLtMatrixLayoutSetAttribute(lay, CUBLASLT_MATRIX_LAYOUT_ORDER, &col32, sizeof(col32)));
    EXPECT_ERROR("batch count 0", CUBLAS_STATUS_INVALID_VALUE, "BATCH_COUNT 0",
                 cublasLtMatrixLayoutSetAttribute(lay, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof(bc)));
    uint64_t rows = 0;
    st = cublasLtMatrixLayoutGetAttribute(lay, CUBLASLT_MATRIX_LAYOUT_ROWS, &rows, sizeof(rows), nullptr);
    check(st == CUBLAS_STATUS_SUCCESS && rows == 8, "layout ROWS reads back");
    cublasLtMatrixLayoutDestroy(lay);
    EXPECT_ERROR("layout ld negative", CUBLAS_STATUS_INVALID_VALUE, "ld -1 is negative",
                 cublasLtMatrixLayoutCreate(&lay, CUDA_R_16BF, 8, 4, -1));

    cublasLtMatmulPreference_t pref;
    cublasLtMatmulPreferenceCreate(&pref);
    float waves = 1.0f;
    EXPECT_ERROR("pref MAX_WAVES_COUNT", CUBLAS_STATUS_NOT_SUPPORTED, "(CUBLASLT_MATMUL_PREF_MAX_WAVES_COUNT)",
                 cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WAVES_COUNT, &waves,
                                                      sizeof(waves)));
    uint32_t al = 0;
    st = cublasLtMatmulPreferenceGetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al, 4, nullptr);
    check(st == CUBLAS_STATUS_SUCCESS && al == 256, "pref MIN_ALIGNMENT default 256");
    cublasLtMatmulPreferenceDestroy(pref);

    // matmul configurations, from a valid one (bf16 32 x 16 x 24 with bias)
    Spec s;
    s.m = 32, s.n = 16, s.k = 24, s.epi = CUBLASLT_EPILOGUE_BIAS;
    Data d;
    prepare(s, d);
    check(run_lt(s, d) == CUBLAS_STATUS_SUCCESS, "valid configuration runs");
    {
        Spec t = s;
        t.lda = s.m - 1;
        EXPECT_ERROR("ld < rows", CUBLAS_STATUS_INVALID_VALUE, "A: leading dimension 31 is less than its 32 rows",
                     run_lt(t, d));
    }
    {
        Spec t = s;
        t.abt = CUDA_R_8I;
        EXPECT_ERROR("type 8I", CUBLAS_STATUS_NOT_SUPPORTED, "types A CUDA_R_8I", run_lt(t, d));
    }
    {
        Spec t = s;
        t.cdt = CUDA_R_16F;
        Data dd;
        prepare(t, dd);
        EXPECT_ERROR("bf16 inputs with fp16 D", CUBLAS_STATUS_NOT_SUPPORTED, "D CUDA_R_16F", run_lt(t, dd));
    }
    {
        Data dd;
        Spec t = s;
        prepare(t, dd);
        dd.bias = Buf(CUDA_R_32F, (size_t)t.m);  // fp32 bias with bf16 D
        EXPECT_ERROR("bias type", CUBLAS_STATUS_NOT_SUPPORTED, "bias data type CUDA_R_32F with D of CUDA_R_16BF",
                     run_lt(t, dd));
        Buf dsave = dd.D;
        dd.bias = Buf();  // BIAS epilogue without a bias pointer
        EXPECT_ERROR("BIAS without pointer", CUBLAS_STATUS_INVALID_VALUE, "the bias (CUBLASLT_MATMUL_DESC_BIAS_POINTER) is NULL",
                     run_lt(t, dd));
        check(compare_bits("D", dd.D, dsave).empty(), "a refused matmul leaves D untouched");
    }
    {
        Spec t = s;
        t.epi = CUBLASLT_EPILOGUE_GELU_AUX;
        Data dd;
        prepare(t, dd);
        t.ldaux = 36;
        EXPECT_ERROR("aux ld not a multiple of 8", CUBLAS_STATUS_INVALID_VALUE, "aux ld 36 must be a multiple of 8",
                     run_lt(t, dd));
    }
    {
        Spec t = s;
        t.epi = CUBLASLT_EPILOGUE_GELU_AUX;
        t.batch = 2;
        Data dd;
        prepare(t, dd);
        t.saux = 0;
        EXPECT_ERROR("batched GELU_AUX, aux stride 0", CUBLAS_STATUS_INVALID_VALUE, "aux batch stride 0",
                     run_lt(t, dd));
    }
    {
        Spec t = s;
        t.epi = CUBLASLT_EPILOGUE_BGRADB;
        t.alpha = 2.0f;
        Data dd;
        prepare(t, dd);
        EXPECT_ERROR("BGRADB alpha 2", CUBLAS_STATUS_NOT_SUPPORTED, "CUBLASLT_EPILOGUE_BGRADB with alpha 2",
                     run_lt(t, dd));
    }
    {
        Spec t = s;
        t.epi = CUBLASLT_EPILOGUE_BGRADA;
        t.batch = 2;
        Data dd;
        prepare(t, dd);
        EXPECT_ERROR("BGRADA batched", CUBLAS_STATUS_NOT_SUPPORTED, "CUBLASLT_EPILOGUE_BGRADA with 2 batch items",
                     run_lt(t, dd));
    }
    {
        Spec t = s;
        t.inplace = true;
        Data dd;
        prepare(t, dd);
        t.ldc = t.ldd + 1;  // C is D's buffer, with another ld
        EXPECT_ERROR("in place with different layouts", CUBLAS_STATUS_INVALID_VALUE, "C and D are the same matrix",
                     run_lt(t, dd));
    }
    {
        // misaligned bf16 A: the heuristic finds no algorithm for a 1-byte alignment; matmul itself refuses it
        Spec t = s;
        t.epi = CUBLASLT_EPILOGUE_DEFAULT;
        Data dd;
        prepare(t, dd);
        cublasLtMatmulDesc_t de;
        cublasLtMatmulDescCreate(&de, CUBLAS_COMPUTE_32F, CUDA_R_32F);
        cublasLtMatrixLayout_t la, lb, lc;
        cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, t.m, t.k, t.lda);
        cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, t.k, t.n, t.ldb);
        cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, t.m, t.n, t.ldd);
        cublasLtMatmulPreference_t p;
        cublasLtMatmulPreferenceCreate(&p);
        uint32_t one = 1;
        cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &one, 4);
        cublasLtMatmulHeuristicResult_t h;
        int found = 7;
        EXPECT_ERROR("heuristic alignment 1 for bf16", CUBLAS_STATUS_NOT_SUPPORTED, "no algorithm",
                     cublasLtMatmulAlgoGetHeuristic(lt, de, la, lb, lc, lc, p, 1, &h, &found));
        check(found == 0, "no algorithm: returnAlgoCount 0");
        EXPECT_ERROR("heuristic requestedAlgoCount 0", CUBLAS_STATUS_INVALID_VALUE, "requestedAlgoCount 0",
                     cublasLtMatmulAlgoGetHeuristic(lt, de, la, lb, lc, lc, p, 0, &h, &found));
        uint32_t two = 2;
        cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &two, 4);
        st = cublasLtMatmulAlgoGetHeuristic(lt, de, la, lb, lc, lc, p, 4, &h, &found);
        check(st == CUBLAS_STATUS_SUCCESS && found == 1 && h.workspaceSize == 0 && h.state == CUBLAS_STATUS_SUCCESS,
              "heuristic: one algorithm, no workspace, for alignment 2");
        float one_f = 1.0f, zero_f = 0.0f;
        const char* a_odd = (const char*)dd.A.ptr() + 1;
        EXPECT_ERROR("misaligned A", CUBLAS_STATUS_INVALID_VALUE, "A (",
                     cublasLtMatmul(lt, de, &one_f, a_odd, la, dd.B.ptr(), lb, &zero_f, dd.D.ptr(), lc, dd.D.ptr(),
                                    lc, &h.algo, nullptr, 0, 0));
        EXPECT_ERROR("null B", CUBLAS_STATUS_INVALID_VALUE, "B is NULL",
                     cublasLtMatmul(lt, de, &one_f, dd.A.ptr(), la, nullptr, lb, &zero_f, dd.D.ptr(), lc, dd.D.ptr(),
                                    lc, &h.algo, nullptr, 0, 0));
        cublasLtMatmulAlgo_t foreign;
        memset(&foreign, 0, sizeof(foreign));
        EXPECT_ERROR("foreign algo", CUBLAS_STATUS_INVALID_VALUE, "algo was not returned",
                     cublasLtMatmul(lt, de, &one_f, dd.A.ptr(), la, dd.B.ptr(), lb, &zero_f, dd.D.ptr(), lc,
                                    dd.D.ptr(), lc, &foreign, nullptr, 0, 0));
        cublasOperation_t opt = CUBLAS_OP_T;  // A is laid out 32 x 24: op(A) is 24 x 32, D is 32 x 16
        cublasLtMatmulDescSetAttribute(de, CUBLASLT_MATMUL_DESC_TRANSA, &opt, sizeof(opt));
        EXPECT_ERROR("shape mismatch", CUBLAS_STATUS_INVALID_VALUE, "shapes do not match: op(A) 24 x 32",
                     cublasLtMatmul(lt, de, &one_f, dd.A.ptr(), la, dd.B.ptr(), lb, &zero_f, dd.D.ptr(), lc,
                                    dd.D.ptr(), lc, nullptr, nullptr, 0, 0));
        opt = CUBLAS_OP_N;
        cublasLtMatmulDescSetAttribute(de, CUBLASLT_MATMUL_DESC_TRANSA, &opt, sizeof(opt));
        int32_t b3 = 3;
        cublasLtMatrixLayoutSetAttribute(lb, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &b3, sizeof(b3));
        EXPECT_ERROR("batch counts differ", CUBLAS_STATUS_INVALID_VALUE, "batch counts differ",
                     cublasLtMatmul(lt, de, &one_f, dd.A.ptr(), la, dd.B.ptr(), lb, &zero_f, dd.D.ptr(), lc,
                                    dd.D.ptr(), lc, nullptr, nullptr, 0, 0));
        cublasLtMatmulPreferenceDestroy(p);
        cublasLtMatrixLayoutDestroy(la);
        cublasLtMatrixLayoutDestroy(lb);
        cublasLtMatrixLayoutDestroy(lc);
        cublasLtMatmulDescDestroy(de);
    }

    // cuBLAS
    float one = 1.0f, zero = 0.0f;
    std::vector<float> A(64), B(64), C(64);
    EXPECT_ERROR("gemmEx lda < m", CUBLAS_STATUS_INVALID_VALUE, "lda 3 (needs >= 4)",
                 cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, A.data(), CUDA_R_32F, 3, B.data(),
                              CUDA_R_32F, 4, &zero, C.data(), CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    EXPECT_ERROR("gemmEx FAST_TF32", CUBLAS_STATUS_NOT_SUPPORTED, "cublasGemmEx: compute type 77",
                 cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, A.data(), CUDA_R_32F, 4, B.data(),
                              CUDA_R_32F, 4, &zero, C.data(), CUDA_R_32F, 4, CUBLAS_COMPUTE_32F_FAST_TF32,
                              CUBLAS_GEMM_DEFAULT));
    EXPECT_ERROR("gemmEx mixed A/B types", CUBLAS_STATUS_NOT_SUPPORTED, "types A CUDA_R_16BF, B CUDA_R_32F",
                 cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, A.data(), CUDA_R_16BF, 4, B.data(),
                              CUDA_R_32F, 4, &zero, C.data(), CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    EXPECT_ERROR("gemmEx 8I", CUBLAS_STATUS_NOT_SUPPORTED, "CUDA_R_8I",
                 cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, A.data(), CUDA_R_8I, 4, B.data(),
                              CUDA_R_8I, 4, &zero, C.data(), CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    EXPECT_ERROR("gemmEx algo 5", CUBLAS_STATUS_NOT_SUPPORTED, "algo 5",
                 cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, A.data(), CUDA_R_32F, 4, B.data(),
                              CUDA_R_32F, 4, &zero, C.data(), CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, (cublasGemmAlgo_t)5));
    EXPECT_ERROR("gemmEx op 3", CUBLAS_STATUS_INVALID_VALUE, "transa 3",
                 cublasGemmEx(blas, CUBLAS_OP_CONJG, CUBLAS_OP_N, 4, 4, 4, &one, A.data(), CUDA_R_32F, 4, B.data(),
                              CUDA_R_32F, 4, &zero, C.data(), CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    EXPECT_ERROR("batched C stride 0", CUBLAS_STATUS_INVALID_VALUE, "C has batch stride 0",
                 cublasGemmStridedBatchedEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, A.data(), CUDA_R_32F, 4,
                                            16, B.data(), CUDA_R_32F, 4, 16, &zero, C.data(), CUDA_R_32F, 4, 0, 2,
                                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    EXPECT_ERROR("batched negative count", CUBLAS_STATUS_INVALID_VALUE, "batchCount -1",
                 cublasGemmStridedBatchedEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, A.data(), CUDA_R_32F, 4,
                                            16, B.data(), CUDA_R_32F, 4, 16, &zero, C.data(), CUDA_R_32F, 4, 16, -1,
                                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    EXPECT_ERROR("sgemm NULL handle", CUBLAS_STATUS_NOT_INITIALIZED, "handle is NULL",
                 cublasSgemm(nullptr, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, A.data(), 4, B.data(), 4, &zero,
                             C.data(), 4));
    EXPECT_ERROR("sgemm NULL C", CUBLAS_STATUS_INVALID_VALUE, "cublasSgemm: C is NULL",
                 cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, A.data(), 4, B.data(), 4, &zero, nullptr,
                             4));
    EXPECT_ERROR("math mode TF32", CUBLAS_STATUS_NOT_SUPPORTED, "(CUBLAS_TF32_TENSOR_OP_MATH)",
                 cublasSetMathMode(blas, CUBLAS_TF32_TENSOR_OP_MATH));
    check(cublasSetMathMode(blas, CUBLAS_PEDANTIC_MATH) == CUBLAS_STATUS_SUCCESS &&
              cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH) == CUBLAS_STATUS_SUCCESS,
          "math modes DEFAULT and PEDANTIC");
    check(strcmp(cublasGetStatusString(CUBLAS_STATUS_NOT_SUPPORTED), "the functionality requested is not supported") == 0,
          "cublasGetStatusString");
}

// ----------------------------------------------------------------------------
// determinism: the same bits for 1, 2 and 3 OpenMP threads

static void test_determinism() {
    struct Case {
        const char* name;
        Spec s;
        int via;
    };
    std::vector<Case> cases;
    {
        Spec s;  // LM-head forward shape, scaled down: many tiles, two slabs
        s.m = 3100, s.n = 200, s.k = 300, s.ta = true;
        cases.push_back({"lt forward shape, k > KC", s, VIA_LT});
    }
    {
        Spec s;  // dweight shape: beta 1, B transposed, bias gradient
        s.m = 96, s.n = 2000, s.k = 130, s.tb = true, s.beta = 1.0f, s.inplace = true;
        s.epi = CUBLASLT_EPILOGUE_BGRADB;
        cases.push_back({"lt BGRADB beta 1", s, VIA_LT});
    }
    {
        Spec s;  // attention at T 128: tiles of several batch items on each thread
        s.m = 128, s.n = 128, s.k = 64, s.batch = 16, s.ta = true, s.inplace = true;
        cases.push_back({"batchedEx 16 x 128 x 128 x 64", s, VIA_BATCHED});
    }
    {
        Spec s;
        s.m = 150, s.n = 100, s.k = 1000, s.abt = s.cdt = CUDA_R_32F;
        s.epi = CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
        cases.push_back({"lt fp32 GELU_AUX_BIAS", s, VIA_LT});
    }
    {
        Spec s;  // a bias gradient large enough for several threads
        s.m = 33000, s.n = 8, s.k = 300, s.epi = CUBLASLT_EPILOGUE_BGRADA;
        cases.push_back({"lt BGRADA m 33000", s, VIA_LT});
        s.ta = true;
        cases.push_back({"lt BGRADA m 33000, A transposed", s, VIA_LT});
    }
    for (Case& c : cases) {
        Data d;
        prepare(c.s, d);
        Data base = d;
        std::vector<Buf> outs;
        bool ok = true;
        std::string err;
        for (int th = 1; th <= 3; th++) {
            set_threads(th);
            Data r = base;
            cublasStatus_t st = c.via == VIA_LT ? run_lt(c.s, r) : run_blas(c.s, r);
            if (st != CUBLAS_STATUS_SUCCESS) {
                ok = false;
                err = fmt("status %d with %d threads", (int)st, th);
                break;
            }
            if (th > 1) {
                err = compare_bits("D", r.D, outs[0]);
                if (err.empty() && r.bias.n) err = compare_bits("bias", r.bias, outs[1]);
                if (err.empty() && r.aux.n) err = compare_bits("aux", r.aux, outs[2]);
                if (!err.empty()) {
                    ok = false;
                    err = fmt("%d threads vs 1: ", th) + err;
                    break;
                }
            } else {
                outs = {r.D, r.bias, r.aux};
            }
        }
        check(ok, fmt("deterministic over 1, 2, 3 threads: %s", c.name), err);
    }
    set_threads(2);
}

// ----------------------------------------------------------------------------

static void test_products() {
    const int types[4][2] = {{CUDA_R_16BF, CUDA_R_16BF}, {CUDA_R_16BF, CUDA_R_32F}, {CUDA_R_32F, CUDA_R_32F},
                             {CUDA_R_16F, CUDA_R_16F}};
    // every type pair x transpose combination x {beta 0 with NaN C, out of place alpha/beta, in place beta 1}
    for (auto& t : types)
        for (int tr = 0; tr < 4; tr++)
            for (int mode = 0; mode < 3; mode++) {
                Spec s;
                s.name = mode == 0 ? "NaN C" : mode == 1 ? "out of place" : "";
                s.m = 37, s.n = 29, s.k = 45, s.abt = t[0], s.cdt = t[1], s.ta = tr & 1, s.tb = tr >> 1;
                if (mode == 0) s.nan_c = true;
                if (mode == 1) s.alpha = 0.5f, s.beta = 0.75f;
                if (mode == 2) s.beta = 1.0f, s.inplace = true;
                test_product(s, VIA_LT);
            }
    // tiling edges: several tiles and slabs, many tiles, k == 0, alpha == 0 (NaN A and B are not read)
    {
        Spec s;
        s.name = "several tiles and slabs";
        s.m = 300, s.n = 100, s.k = 600, s.ta = true, s.beta = 0.5f, s.epi = CUBLASLT_EPILOGUE_BIAS;
        test_product(s, VIA_LT);
        s.ta = false, s.tb = true, s.abt = s.cdt = CUDA_R_32F;
        test_product(s, VIA_LT);
    }
    {
        Spec s;
        s.name = "many tiles";
        s.m = 3000, s.n = 800, s.k = 20, s.tb = true, s.epi = CUBLASLT_EPILOGUE_BIAS;
        test_product(s, VIA_LT);
    }
    {
        Spec s;
        s.name = "k 0";
        s.m = 40, s.n = 13, s.k = 0, s.beta = 0.5f;
        test_product(s, VIA_LT);
        s.name = "k 0 beta 0";
        s.beta = 0.0f, s.nan_c = true;
        test_product(s, VIA_LT);
        s.name = "tiny";
        s.m = 1, s.n = 1, s.k = 1, s.nan_c = false;
        test_product(s, VIA_LT);
    }
    {
        Spec s;
        s.name = "alpha 0, NaN A and B";
        s.m = 40, s.n = 13, s.k = 9, s.alpha = 0.0f, s.beta = 2.0f, s.nan_ab = true;
        test_product(s, VIA_LT);
        s.inplace = true;
        test_product(s, VIA_BATCHED);
    }
    // epilogues
    const uint32_t epis[] = {CUBLASLT_EPILOGUE_BIAS, CUBLASLT_EPILOGUE_GELU, CUBLASLT_EPILOGUE_GELU_BIAS,
                             CUBLASLT_EPILOGUE_GELU_AUX, CUBLASLT_EPILOGUE_GELU_AUX_BIAS, CUBLASLT_EPILOGUE_DGELU,
                             CUBLASLT_EPILOGUE_BGRADA, CUBLASLT_EPILOGUE_BGRADB};
    for (uint32_t e : epis)
        for (int ti = 0; ti < 2; ti++)
            for (int tr = 0; tr < 2; tr++) {
                Spec s;
                s.name = cuda_cpu_gemm::epilogue_name(e);
                s.epi = e;
                s.m = 45, s.n = 27, s.k = 70, s.ta = tr, s.tb = !tr;
                s.abt = s.cdt = ti == 0 ? CUDA_R_16BF : CUDA_R_32F;
                if (e == CUBLASLT_EPILOGUE_GELU_BIAS) s.beta = 0.5f;
                if (e == CUBLASLT_EPILOGUE_DGELU) s.inplace = true, s.beta = 1.0f;
                test_product(s, VIA_LT);
            }
    {
        Spec s;
        s.name = "batched BIAS, bias batch stride";
        s.m = 33, s.n = 20, s.k = 17, s.batch = 3, s.epi = CUBLASLT_EPILOGUE_BIAS, s.sbias = 40;
        test_product(s, VIA_LT);
        s.name = "batched GELU_AUX_BIAS, shared bias";
        s.epi = CUBLASLT_EPILOGUE_GELU_AUX_BIAS, s.sbias = 0, s.ta = true;
        test_product(s, VIA_LT);
        s.name = "batched DGELU";
        s.epi = CUBLASLT_EPILOGUE_DGELU, s.tb = true;
        test_product(s, VIA_LT);
        s.name = "batched, B stride 0 (broadcast)";
        s.epi = CUBLASLT_EPILOGUE_DEFAULT, s.tb = false, s.b_broadcast = true;
        test_product(s, VIA_LT);
        s.name = "algo NULL";
        test_product(s, VIA_LT_NULL_ALGO);
    }
    // the project's own calls: matmul_forward (T N, bias; with the GELU fusion GELU_AUX_BIAS), matmul_backward (N N,
    // with the GELU fusion DGELU; N T beta 1), bf16 and fp32; the aux (ld m) of the aux type left unset
    for (int ti = 0; ti < 2; ti++) {
        int t = ti == 0 ? CUDA_R_16BF : CUDA_R_32F;
        Spec f;
        f.name = "matmul_forward";
        f.m = 96, f.n = 64, f.k = 32, f.ta = true, f.abt = f.cdt = t, f.epi = CUBLASLT_EPILOGUE_BIAS;
        f.lda = f.k, f.ldb = f.k, f.ldd = f.m, f.inplace = true;
        test_product(f, VIA_LT);
        Spec fg = f;
        fg.name = "matmul_forward, gelu fusion";
        fg.epi = CUBLASLT_EPILOGUE_GELU_AUX_BIAS, fg.ldaux = fg.m, fg.aux_type_unset = true;
        test_product(fg, VIA_LT);
        Spec g = f;
        g.name = "matmul_backward dinp";
        g.m = 32, g.n = 64, g.k = 96, g.ta = false, g.epi = CUBLASLT_EPILOGUE_DEFAULT, g.lda = 32, g.ldb = 96, g.ldd = 32;
        test_product(g, VIA_LT);
        Spec gg = g;
        gg.name = "matmul_backward dinp, gelu fusion";
        gg.epi = CUBLASLT_EPILOGUE_DGELU, gg.ldaux = gg.m, gg.aux_type_unset = true;
        test_product(gg, VIA_LT);
        Spec w = g;
        w.name = "matmul_backward dweight";
        w.m = 32, w.n = 96, w.k = 64, w.tb = true, w.beta = 1.0f, w.lda = 32, w.ldb = 96, w.ldd = 32;
        test_product(w, VIA_LT);
    }
    // cuBLAS: strided batched (the attention calls of train_gpt2.cu and more), GemmEx, Sgemm
    const int hs = 64, T = 64;
    for (int ti = 0; ti < 2; ti++) {
        int t = ti == 0 ? CUDA_R_16BF : CUDA_R_32F;
        struct {
            const char* name;
            bool ta, tb;
            int m, n, k, lda, ldb, ldc;
        } att[] = {{"attention q k^T", true, false, T, T, hs, hs, hs, T},
                   {"attention att v", false, false, hs, T, T, hs, T, hs},
                   {"attention dv", false, true, hs, T, T, hs, T, hs}};
        for (auto& a : att) {
            Spec s;
            s.name = a.name;
            s.m = a.m, s.n = a.n, s.k = a.k, s.ta = a.ta, s.tb = a.tb, s.lda = a.lda, s.ldb = a.ldb, s.ldd = a.ldc;
            s.batch = 16, s.abt = s.cdt = t, s.inplace = true, s.nan_c = true;
            s.sa = (int64_t)T * hs, s.sb = a.ta ? (int64_t)T * hs : (int64_t)T * T;
            s.sd = (int64_t)a.ldc * a.n;
            test_product(s, VIA_BATCHED);
        }
    }
    for (auto& t : types)
        for (int tr = 0; tr < 4; tr++) {
            Spec s;
            s.name = "";
            s.m = 21, s.n = 34, s.k = 55, s.batch = 5, s.abt = t[0], s.cdt = t[1], s.ta = tr & 1, s.tb = tr >> 1;
            s.inplace = true, s.alpha = 1.5f, s.beta = tr == 3 ? 0.0f : -0.25f, s.nan_c = tr == 3;
            test_product(s, VIA_BATCHED);
        }
    {
        Spec s;
        s.name = "";
        s.m = 50, s.n = 40, s.k = 30, s.ta = true, s.inplace = true, s.beta = 1.0f;
        test_product(s, VIA_GEMMEX);
        s.abt = s.cdt = CUDA_R_32F, s.tb = true, s.ta = false, s.alpha = 2.0f;
        test_product(s, VIA_SGEMM);
    }
}

// ----------------------------------------------------------------------------
// --bench: the d2 model's LM head (V 50304, C 128, B*T 256) in bf16, and the attention batches

static double time_ms(const std::function<void()>& f) {
    f();
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        auto t0 = std::chrono::steady_clock::now();
        f();
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (ms < best) best = ms;
    }
    return best;
}

static void bench() {
    const int V = 50304, C = 128, N = 256;
    Spec fwd;
    fwd.m = V, fwd.n = N, fwd.k = C, fwd.ta = true, fwd.lda = C, fwd.ldb = C, fwd.ldd = V, fwd.inplace = true;
    Spec dinp;
    dinp.m = C, dinp.n = N, dinp.k = V, dinp.lda = C, dinp.ldb = V, dinp.ldd = C, dinp.inplace = true;
    Spec dw;
    dw.m = C, dw.n = V, dw.k = N, dw.tb = true, dw.beta = 1.0f, dw.lda = C, dw.ldb = V, dw.ldd = C, dw.inplace = true;
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    printf("threads %d\n", threads);
    Spec* specs[3] = {&fwd, &dinp, &dw};
    const char* names[3] = {"lm_head forward  (T N) m 50304 n 256 k 128  ", "lm_head dinp     (N N) m 128 n 256 k 50304  ",
                            "lm_head dweight  (N T) m 128 n 50304 k 256 beta 1"};
    for (int i = 0; i < 3; i++) {
        Data d;
        prepare(*specs[i], d);
        double ms = time_ms([&] {
            if (run_lt(*specs[i], d) != CUBLAS_STATUS_SUCCESS) abort();
        });
        double gf = 2.0 * specs[i]->m * specs[i]->n * specs[i]->k / (ms * 1e6);
        printf("%s bf16: %7.2f ms  (%.1f GFLOP/s)\n", names[i], ms, gf);
    }
    const int hs = 64, T = 64, BNH = 16;
    Spec att;
    att.m = T, att.n = T, att.k = hs, att.ta = true, att.lda = hs, att.ldb = hs, att.ldd = T, att.batch = BNH;
    att.sa = att.sb = (int64_t)T * hs, att.sd = (int64_t)T * T, att.inplace = true;
    Data d;
    prepare(att, d);
    double ms = time_ms([&] {
        for (int r = 0; r < 10; r++)
            if (run_blas(att, d) != CUBLAS_STATUS_SUCCESS) abort();
    });
    printf("attention q k^T batchedEx 16 x (64 x 64 x 64) bf16: %7.3f ms per call\n", ms / 10);
}

int main(int argc, char** argv) {
    if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS || cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "test_cublas: cannot create the handles\n");
        return 1;
    }
    if (argc > 1 && strcmp(argv[1], "--bench") == 0) {
        bench();
        return 0;
    }
    set_threads(2);
    test_products();
    test_determinism();
    test_errors();
    cublasLtDestroy(lt);
    cublasDestroy(blas);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail == 0 ? 0 : 1;
}
