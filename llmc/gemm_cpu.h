// Packed, cache-blocked fp32 GEMM for the CPU (BLIS-style loop nest).
//   C(m, n) (+)= A(m, k) @ B(k, n), A and B given by element strides, C row-major.
// Loops: jc (NC columns) -> pc (KC depth, pack B block, shared) -> ic (MC rows, pack A block,
// per thread) -> jr (NR) -> ir (MR) -> micro-kernel on an MR x NR register tile.
// The three products of a linear layer map onto it through the strides (gemm_matmul_*).
#ifndef LLMC_GEMM_CPU_H
#define LLMC_GEMM_CPU_H

#include <stddef.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __AVX512F__
#include <immintrin.h>
#endif
#include "sanitize.h"
#include "utils.h"


#define GEMM_MR 8      // register tile rows (broadcast operand)
#define GEMM_NR 48     // register tile columns (3 zmm)
#ifndef GEMM_KC
#define GEMM_KC 256    // depth of a packed block
#endif
#ifndef GEMM_MC
#define GEMM_MC 144    // rows of a packed A block (MC x KC in L2)
#endif
#ifndef GEMM_NC
#define GEMM_NC 3072   // columns of a packed B block (KC x NC, shared by the threads)
#endif

// pack buffers: grown on demand, kept for the life of the process
static float* gemm_buf_a = NULL;    // (threads, MC, KC) per-thread A blocks
static float* gemm_buf_b = NULL;    // (KC, NC) rounded up to NR panels
static size_t gemm_buf_a_len = 0, gemm_buf_b_len = 0;

static inline int gemm_max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// Makes the pack buffers large enough for `threads` threads. Called outside the parallel region.
static void gemm_reserve(int threads) {
    size_t need_a = (size_t)threads * GEMM_MC * GEMM_KC;
    size_t need_b = (size_t)GEMM_KC * GEMM_NC;
    if (need_a > gemm_buf_a_len) {
        free(gemm_buf_a);
        gemm_buf_a = (float*)mallocCheck(need_a * sizeof(float));
        gemm_buf_a_len = need_a;
    }
    if (need_b > gemm_buf_b_len) {
        free(gemm_buf_b);
        gemm_buf_b = (float*)mallocCheck(need_b * sizeof(float));
        gemm_buf_b_len = need_b;
    }
}

#ifdef __AVX512F__
// dst[c*ldd + i] = src[i*lds + c] for an 8 x 8 block (AVX 8x8 transpose)
static inline void gemm_transpose8x8(const float* src, size_t lds, float* dst, size_t ldd) {
    __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + lds), r2 = _mm256_loadu_ps(src + 2 * lds),
           r3 = _mm256_loadu_ps(src + 3 * lds), r4 = _mm256_loadu_ps(src + 4 * lds),
           r5 = _mm256_loadu_ps(src + 5 * lds), r6 = _mm256_loadu_ps(src + 6 * lds),
           r7 = _mm256_loadu_ps(src + 7 * lds);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#endif

// Packs rows [0, mc) x depth [0, kc) of A (element (i, p) at A[i*rs + p*cs]) into MR-row
// micro-panels: panel r holds Ap[r*MR*kc + p*MR + i]; rows past mc are zero.
static void gemm_pack_a(float* Ap, const float* A, size_t rs, size_t cs, int mc, int kc) {
    int full = mc / GEMM_MR * GEMM_MR;
    if (rs == 1 && full > 0) {
        // rows are contiguous: walk the depth outside so each source row segment is read once, in order
        for (int p = 0; p < kc; p++) {
            const float* s = A + (size_t)p * cs;
            for (int r = 0; r < full; r += GEMM_MR)
                for (int i = 0; i < GEMM_MR; i++) Ap[(size_t)r * kc + p * GEMM_MR + i] = s[r + i];
        }
        if (full == mc) return;
    } else {
        full = 0;
    }
    for (int r = full; r < mc; r += GEMM_MR) {
        int mr = mc - r < GEMM_MR ? mc - r : GEMM_MR;
        float* dst = Ap + (size_t)r * kc;
        const float* src = A + (size_t)r * rs;
        if (mr == GEMM_MR && cs == 1) {
            int p = 0;
#ifdef __AVX512F__
            for (; p + 8 <= kc; p += 8) gemm_transpose8x8(src + p, rs, dst + p * GEMM_MR, GEMM_MR);
#endif
            for (int i = 0; i < GEMM_MR; i++) {
                const float* s = src + (size_t)i * rs;
                for (int q = p; q < kc; q++) dst[q * GEMM_MR + i] = s[q];
            }
        } else {
            for (int p = 0; p < kc; p++) {
                for (int i = 0; i < GEMM_MR; i++)
                    dst[p * GEMM_MR + i] = i < mr ? src[(size_t)i * rs + (size_t)p * cs] : 0.0f;
            }
        }
    }
}

// Packs one NR-column micro-panel: depth [0, kc) x columns [0, nr) of B (element (p, j) at
// B[p*rs + j*cs]) into Bp[p*NR + j]; columns past nr are zero.
static void gemm_pack_b_panel(float* Bp, const float* B, size_t rs, size_t cs, int kc, int nr) {
    if (nr == GEMM_NR && cs == 1) {
        for (int p = 0; p < kc; p++) memcpy(Bp + (size_t)p * GEMM_NR, B + (size_t)p * rs, GEMM_NR * sizeof(float));
    } else if (nr == GEMM_NR && rs == 1) {
        int p0 = 0;
#ifdef __AVX512F__
        for (; p0 + 8 <= kc; p0 += 8)
            for (int j = 0; j < GEMM_NR; j += 8)
                gemm_transpose8x8(B + (size_t)j * cs + p0, cs, Bp + (size_t)p0 * GEMM_NR + j, GEMM_NR);
#endif
        // transpose the rest: 16 depths at a time so each source line is used whole
        for (; p0 < kc; p0 += 16) {
            int pe = p0 + 16 < kc ? p0 + 16 : kc;
            for (int j = 0; j < GEMM_NR; j++) {
                const float* s = B + (size_t)j * cs;
                for (int p = p0; p < pe; p++) Bp[(size_t)p * GEMM_NR + j] = s[p];
            }
        }
    } else {
        for (int p = 0; p < kc; p++) {
            for (int j = 0; j < GEMM_NR; j++)
                Bp[(size_t)p * GEMM_NR + j] = j < nr ? B[(size_t)p * rs + (size_t)j * cs] : 0.0f;
        }
    }
}

// the regions gemm_kernel reads and writes (a no-op without ASan)
static inline void gemm_check_tile(int kc, const float* Ap, const float* Bp, const float* C, size_t ldc, int mr, int nr,
                                   int first, const float* bias) {
#ifdef LLMC_ASAN
    sanitize_check_region("gemm_kernel", "packed A panel", Ap, (size_t)kc * GEMM_MR * sizeof(float));
    sanitize_check_region("gemm_kernel", "packed B panel", Bp, (size_t)kc * GEMM_NR * sizeof(float));
    for (int i = 0; i < mr; i++)
        sanitize_check_region("gemm_kernel", "C row", C + (size_t)i * ldc, (size_t)nr * sizeof(float));
    if (first && bias != NULL) sanitize_check_region("gemm_kernel", "bias", bias, (size_t)nr * sizeof(float));
#else
    (void)kc; (void)Ap; (void)Bp; (void)C; (void)ldc; (void)mr; (void)nr; (void)first; (void)bias;
#endif
}

// Writes an MR x NR tile `acc` into C (mr x nr valid): C = acc (+ bias) when `first`, else C += acc.
static inline void gemm_store_tile(const float* acc, float* C, size_t ldc, int mr, int nr, int first,
                                   const float* bias) {
    for (int i = 0; i < mr; i++) {
        float* c = C + (size_t)i * ldc;
        const float* a = acc + i * GEMM_NR;
        if (!first) {
            for (int j = 0; j < nr; j++) c[j] += a[j];
        } else if (bias != NULL) {
            for (int j = 0; j < nr; j++) c[j] = a[j] + bias[j];
        } else {
            for (int j = 0; j < nr; j++) c[j] = a[j];
        }
    }
}

#ifdef __AVX512F__
// AVX-512 micro-kernel: 8 x 48 tile in 24 zmm accumulators, one broadcast per row per depth.
// LLMC_NO_SANITIZE: the whole tile is checked on entry (llmc/sanitize.h)
LLMC_NO_SANITIZE static void gemm_kernel(int kc, const float* restrict Ap, const float* restrict Bp, float* C,
                                         size_t ldc, int mr, int nr, int first, const float* bias) {
    gemm_check_tile(kc, Ap, Bp, C, ldc, mr, nr, first, bias);
    __m512 c[GEMM_MR][3];
    for (int i = 0; i < GEMM_MR; i++) {
        _mm_prefetch((const char*)(C + (size_t)i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char*)(C + (size_t)i * ldc + 16), _MM_HINT_T0);
        _mm_prefetch((const char*)(C + (size_t)i * ldc + 32), _MM_HINT_T0);
        c[i][0] = _mm512_setzero_ps();
        c[i][1] = _mm512_setzero_ps();
        c[i][2] = _mm512_setzero_ps();
    }
    for (int p = 0; p < kc; p++) {
        const float* b = Bp + (size_t)p * GEMM_NR;
        const float* a = Ap + (size_t)p * GEMM_MR;
        _mm_prefetch((const char*)(b + 8 * GEMM_NR), _MM_HINT_T0);
        __m512 b0 = _mm512_load_ps(b);
        __m512 b1 = _mm512_load_ps(b + 16);
        __m512 b2 = _mm512_load_ps(b + 32);
#pragma GCC unroll 8
        for (int i = 0; i < GEMM_MR; i++) {
            __m512 av = _mm512_set1_ps(a[i]);
            c[i][0] = _mm512_fmadd_ps(av, b0, c[i][0]);
            c[i][1] = _mm512_fmadd_ps(av, b1, c[i][1]);
            c[i][2] = _mm512_fmadd_ps(av, b2, c[i][2]);
        }
    }
    if (mr == GEMM_MR && nr == GEMM_NR) {
        __m512 bb0 = _mm512_setzero_ps(), bb1 = _mm512_setzero_ps(), bb2 = _mm512_setzero_ps();
        if (first && bias != NULL) {
            bb0 = _mm512_loadu_ps(bias);
            bb1 = _mm512_loadu_ps(bias + 16);
            bb2 = _mm512_loadu_ps(bias + 32);
        }
        for (int i = 0; i < GEMM_MR; i++) {
            float* cr = C + (size_t)i * ldc;
            if (first) {
                _mm512_storeu_ps(cr, _mm512_add_ps(c[i][0], bb0));
                _mm512_storeu_ps(cr + 16, _mm512_add_ps(c[i][1], bb1));
                _mm512_storeu_ps(cr + 32, _mm512_add_ps(c[i][2], bb2));
            } else {
                _mm512_storeu_ps(cr, _mm512_add_ps(c[i][0], _mm512_loadu_ps(cr)));
                _mm512_storeu_ps(cr + 16, _mm512_add_ps(c[i][1], _mm512_loadu_ps(cr + 16)));
                _mm512_storeu_ps(cr + 32, _mm512_add_ps(c[i][2], _mm512_loadu_ps(cr + 32)));
            }
        }
    } else {
        float acc[GEMM_MR * GEMM_NR] __attribute__((aligned(64)));
        for (int i = 0; i < GEMM_MR; i++) {
            _mm512_store_ps(acc + i * GEMM_NR, c[i][0]);
            _mm512_store_ps(acc + i * GEMM_NR + 16, c[i][1]);
            _mm512_store_ps(acc + i * GEMM_NR + 32, c[i][2]);
        }
        gemm_store_tile(acc, C, ldc, mr, nr, first, bias);
    }
}
#else
// Portable micro-kernel: the same tile as plain C loops that gcc vectorizes.
// LLMC_NO_SANITIZE: the whole tile is checked on entry (llmc/sanitize.h)
LLMC_NO_SANITIZE static void gemm_kernel(int kc, const float* restrict Ap, const float* restrict Bp, float* C,
                                         size_t ldc, int mr, int nr, int first, const float* bias) {
    gemm_check_tile(kc, Ap, Bp, C, ldc, mr, nr, first, bias);
    float acc[GEMM_MR * GEMM_NR] __attribute__((aligned(64)));
    for (int i = 0; i < GEMM_MR * GEMM_NR; i++) acc[i] = 0.0f;
    for (int p = 0; p < kc; p++) {
        const float* b = Bp + (size_t)p * GEMM_NR;
        const float* a = Ap + (size_t)p * GEMM_MR;
        for (int i = 0; i < GEMM_MR; i++) {
            float av = a[i];
            float* ar = acc + i * GEMM_NR;
            for (int j = 0; j < GEMM_NR; j++) ar[j] += av * b[j];
        }
    }
    gemm_store_tile(acc, C, ldc, mr, nr, first, bias);
}
#endif

// C(m, n) = A @ B (+ bias(n)) when accumulate == 0, C += A @ B when accumulate == 1.
// A(i, p) = A[i*rsa + p*csa], B(p, j) = B[p*rsb + j*csb], C(i, j) = C[i*ldc + j]. bias may be NULL
// and is only used when accumulate == 0. Any m, n, k >= 0 and any alignment.
static void gemm_run(int m, int n, int k, const float* A, size_t rsa, size_t csa, const float* B, size_t rsb,
                     size_t csb, float* C, size_t ldc, int accumulate, const float* bias) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        if (!accumulate) {
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) C[(size_t)i * ldc + j] = bias != NULL ? bias[j] : 0.0f;
        }
        return;
    }
    int threads = gemm_max_threads();
    gemm_reserve(threads);
    // row blocks: a multiple of the thread count when there is enough work, each <= MC rows
    int per = (m + threads - 1) / threads;
    int rounds = (per + GEMM_MC - 1) / GEMM_MC;
    int mc_eff = (m + threads * rounds - 1) / (threads * rounds);
    mc_eff = (mc_eff + GEMM_MR - 1) / GEMM_MR * GEMM_MR;
    if (mc_eff > GEMM_MC) mc_eff = GEMM_MC;
    int mblocks = (m + mc_eff - 1) / mc_eff;
    OMP_PRAGMA(parallel num_threads(threads))
    {
#ifdef _OPENMP
        int tid = omp_get_thread_num();
#else
        int tid = 0;
#endif
        float* Ap = gemm_buf_a + (size_t)tid * GEMM_MC * GEMM_KC;
        for (int jc = 0; jc < n; jc += GEMM_NC) {
            int nc = n - jc < GEMM_NC ? n - jc : GEMM_NC;
            int npanels = (nc + GEMM_NR - 1) / GEMM_NR;
            for (int pc = 0; pc < k; pc += GEMM_KC) {
                int kc = k - pc < GEMM_KC ? k - pc : GEMM_KC;
                int first = pc == 0 && !accumulate;
                OMP_PRAGMA(for schedule(static))
                for (int jp = 0; jp < npanels; jp++) {
                    int j0 = jp * GEMM_NR;
                    int nr = nc - j0 < GEMM_NR ? nc - j0 : GEMM_NR;
                    gemm_pack_b_panel(gemm_buf_b + (size_t)jp * GEMM_NR * kc,
                                      B + (size_t)pc * rsb + (size_t)(jc + j0) * csb, rsb, csb, kc, nr);
                }
                if (mblocks < threads) {
                    // few rows (e.g. sampling): one shared A block, the threads split the column panels
                    for (int ib = 0; ib < mblocks; ib++) {
                        int ic = ib * mc_eff;
                        int mc = m - ic < mc_eff ? m - ic : mc_eff;
                        OMP_PRAGMA(single)
                        gemm_pack_a(gemm_buf_a, A + (size_t)ic * rsa + (size_t)pc * csa, rsa, csa, mc, kc);
                        OMP_PRAGMA(for schedule(static))
                        for (int jp = 0; jp < npanels; jp++) {
                            int j0 = jp * GEMM_NR;
                            int nr = nc - j0 < GEMM_NR ? nc - j0 : GEMM_NR;
                            const float* Bp = gemm_buf_b + (size_t)jp * GEMM_NR * kc;
                            const float* bj = bias != NULL ? bias + jc + j0 : NULL;
                            for (int ir = 0; ir < mc; ir += GEMM_MR) {
                                int mr = mc - ir < GEMM_MR ? mc - ir : GEMM_MR;
                                gemm_kernel(kc, gemm_buf_a + (size_t)ir * kc, Bp,
                                            C + (size_t)(ic + ir) * ldc + jc + j0, ldc, mr, nr, first, bj);
                            }
                        }
                    }
                    continue;
                }
                OMP_PRAGMA(for schedule(static))
                for (int ib = 0; ib < mblocks; ib++) {
                    int ic = ib * mc_eff;
                    int mc = m - ic < mc_eff ? m - ic : mc_eff;
                    gemm_pack_a(Ap, A + (size_t)ic * rsa + (size_t)pc * csa, rsa, csa, mc, kc);
                    for (int jp = 0; jp < npanels; jp++) {
                        int j0 = jp * GEMM_NR;
                        int nr = nc - j0 < GEMM_NR ? nc - j0 : GEMM_NR;
                        const float* Bp = gemm_buf_b + (size_t)jp * GEMM_NR * kc;
                        const float* bj = bias != NULL ? bias + jc + j0 : NULL;
                        for (int ir = 0; ir < mc; ir += GEMM_MR) {
                            int mr = mc - ir < GEMM_MR ? mc - ir : GEMM_MR;
                            gemm_kernel(kc, Ap + (size_t)ir * kc, Bp, C + (size_t)(ic + ir) * ldc + jc + j0, ldc,
                                        mr, nr, first, bj);
                        }
                    }
                }
            }
        }
    }
}

// Forward of a linear layer: out(M, N) = inp(M, K) @ W(N, K)^T + bias(N); bias may be NULL.
static inline void gemm_matmul_forward(float* out, const float* inp, const float* W, const float* bias, int M, int N,
                                       int K) {
    gemm_run(M, N, K, inp, (size_t)K, 1, W, 1, (size_t)K, out, (size_t)N, 0, bias);
}

// dinp(M, K) += dout(M, N) @ W(N, K)
static inline void gemm_matmul_backward_input(float* dinp, const float* dout, const float* W, int M, int N, int K) {
    gemm_run(M, K, N, dout, (size_t)N, 1, W, (size_t)K, 1, dinp, (size_t)K, 1, NULL);
}

// dW(N, K) += dout(M, N)^T @ inp(M, K)
static inline void gemm_matmul_backward_weight(float* dW, const float* dout, const float* inp, int M, int N, int K) {
    gemm_run(N, K, M, dout, 1, (size_t)N, inp, (size_t)K, 1, dW, (size_t)K, 1, NULL);
}

// dbias(N) += column sums of dout(M, N); threads split the columns in 64-wide chunks
static inline void gemm_bias_backward(float* dbias, const float* dout, int M, int N) {
    int chunks = (N + 63) / 64;
    OMP_PRAGMA(parallel for schedule(static))
    for (int ch = 0; ch < chunks; ch++) {
        int j0 = ch * 64, j1 = j0 + 64 < N ? j0 + 64 : N;
        float acc[64];
        for (int j = 0; j < 64; j++) acc[j] = 0.0f;
        for (int i = 0; i < M; i++) {
            const float* row = dout + (size_t)i * N;
            for (int j = j0; j < j1; j++) acc[j - j0] += row[j];
        }
        for (int j = j0; j < j1; j++) dbias[j] += acc[j - j0];
    }
}

#endif // LLMC_GEMM_CPU_H
