// CPU backend: nvcuda::wmma, the warp-level matrix multiply-accumulate of the CUDA programming guide (tensor cores).
// Shapes m16n16k16, m32n8k16, m8n32k16; matrix_a / matrix_b fragments of __nv_bfloat16 or __half (row_major or
// col_major), accumulator fragments of float. load_matrix_sync, store_matrix_sync and mma_sync are warp
// collectives over all 32 lanes (cuda_cpu_exec.h's machinery: a lane that diverges, exits or is missing is reported
// as for a bad __syncwarp), run once for the warp when the last lane arrives. fill_fragment is per thread.
// Checked as documented: the pointer 256-bit aligned, ldm a multiple of 16 bytes, and pointer, ldm and layout the
// same in every lane; a violation fails the launch with one `cuda_cpu:` line naming the call site.
// Element mapping (unspecified on a GPU, so kernels must not depend on it): element x[e] of lane l is element
// i = e * 32 + l of the fragment's tile in row-major order (row i / cols, column i % cols), whatever the layout.
// mma_sync: d[r][c] = (...((c[r][c] + a[r][0] b[0][c]) + a[r][1] b[1][c]) + ...) + a[r][K-1] b[K-1][c], every
// product exact in fp32 (bf16 and half products fit), every addition rounded to nearest in fp32, k ascending.
#ifndef CUDA_CPU_MMA_H
#define CUDA_CPU_MMA_H

#include <stdint.h>
#include <string.h>
#include <type_traits>
#include "cuda_cpu_exec.h"
#include "cuda_bf16.h"
#include "cuda_fp16.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

namespace detail {
template <class Use, int M, int N, int K> struct dims;
template <int M, int N, int K> struct dims<matrix_a, M, N, K> { static constexpr int rows = M, cols = K; };
template <int M, int N, int K> struct dims<matrix_b, M, N, K> { static constexpr int rows = K, cols = N; };
template <int M, int N, int K> struct dims<accumulator, M, N, K> { static constexpr int rows = M, cols = N; };
template <int M, int N, int K> constexpr bool shape_ok =
    (M == 16 && N == 16 && K == 16) || (M == 32 && N == 8 && K == 16) || (M == 8 && N == 32 && K == 16);
// element types: 0 float, 1 bf16, 2 half
template <class T> constexpr int type_id = std::is_same<T, float>::value ? 0 : std::is_same<T, __nv_bfloat16>::value ? 1
                                           : std::is_same<T, __half>::value ? 2 : -1;
}  // namespace detail

template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    static_assert(detail::shape_ok<M, N, K>, "wmma (CPU backend): shapes m16n16k16, m32n8k16, m8n32k16");
    static_assert(std::is_same<Use, accumulator>::value ? std::is_same<T, float>::value && std::is_void<Layout>::value
                  : (detail::type_id<T> == 1 || detail::type_id<T> == 2) &&
                    (std::is_same<Layout, row_major>::value || std::is_same<Layout, col_major>::value),
                  "wmma (CPU backend): matrix_a/b of __nv_bfloat16 or __half with row_major/col_major, "
                  "accumulator of float without a layout");
    typedef T element_type;
    static constexpr int rows = detail::dims<Use, M, N, K>::rows, cols = detail::dims<Use, M, N, K>::cols;
    enum { num_elements = rows * cols / 32 };
    T x[num_elements];
};

}  // namespace wmma
}  // namespace nvcuda

namespace cuda_cpu {

// one lane's arguments of a wmma collective (on the lane's fiber stack while it waits)
struct WmmaLane {
    void* x;              // load / store: the lane's fragment elements
    const void* ptr;      // load / store: the memory tile
    unsigned ldm;
    int col_major, rows, cols, type;
    const void *a, *b, *c;  // mma: the lane's fragments
    void* d;
    int M, N, K, in_type;
};

inline const WmmaLane* wmma_lane(Block* b, int w, int l) {
    return (const WmmaLane*)(uintptr_t)b->threads[w * 32 + l].val;
}

inline int wmma_esize(int type) { return type == 0 ? 4 : 2; }

inline float wmma_to_float(const void* p, int type, int i) {
    if (type == 0) return ((const float*)p)[i];
    unsigned short u;
    memcpy(&u, (const char*)p + 2 * i, 2);
    return type == 1 ? cuda_cpu_bf_bits2f(u) : cuda_cpu_h_bits2f(u);
}

// the documented requirements of a load/store, and the same arguments in every lane; 0 when good
inline int wmma_check_args(Block* b, const WarpOp* op, int w) {
    const WmmaLane* a0 = wmma_lane(b, w, 0);
    int es = wmma_esize(a0->type);
    const char* name = warp_op_names[op->kind];
    for (int l = 0; l < 32; l++) {
        const WmmaLane* a = wmma_lane(b, w, l);
        if (a->ptr != a0->ptr || a->ldm != a0->ldm || a->col_major != a0->col_major) {
            cur_thread = &b->threads[w * 32 + l];
            block_fail(b, "%s (%s:%d): pointer %p, ldm %u, %s differ from lane 0's %p, %u, %s (they must be the same "
                       "in every lane)", name, op->file, op->line, a->ptr, a->ldm,
                       a->col_major ? "col-major" : "row-major", a0->ptr, a0->ldm,
                       a0->col_major ? "col-major" : "row-major");
            return 1;
        }
    }
    cur_thread = &b->threads[w * 32];
    if ((uintptr_t)a0->ptr % 32 != 0) {
        block_fail(b, "%s (%s:%d): pointer %p is not 256-bit aligned", name, op->file, op->line, a0->ptr);
        return 1;
    }
    if ((a0->ldm * es) % 16 != 0) {
        block_fail(b, "%s (%s:%d): ldm %u is not a multiple of %d elements (16 bytes)", name, op->file, op->line,
                   a0->ldm, 16 / es);
        return 1;
    }
    return 0;
}

// memory offset (elements) of element i of a fragment's tile
inline size_t wmma_offset(const WmmaLane* a, int i) {
    int r = i / a->cols, c = i % a->cols;
    return a->col_major ? (size_t)c * a->ldm + r : (size_t)r * a->ldm + c;
}

inline void wmma_resolve_load(Block* b, const WarpOp* op, int w) {
    if (wmma_check_args(b, op, w)) return;
    for (int l = 0; l < 32; l++) {
        const WmmaLane* a = wmma_lane(b, w, l);
        int es = wmma_esize(a->type), n = a->rows * a->cols / 32;
        for (int e = 0; e < n; e++)
            memcpy((char*)a->x + (size_t)e * es, (const char*)a->ptr + wmma_offset(a, e * 32 + l) * es, es);
    }
}

inline void wmma_resolve_store(Block* b, const WarpOp* op, int w) {
    if (wmma_check_args(b, op, w)) return;
    for (int l = 0; l < 32; l++) {
        const WmmaLane* a = wmma_lane(b, w, l);
        int n = a->rows * a->cols / 32;
        for (int e = 0; e < n; e++)
            memcpy((char*)a->ptr + wmma_offset(a, e * 32 + l) * 4, (const char*)a->x + (size_t)e * 4, 4);
    }
}

// gathers a, b, c from every lane, then writes d (d may be c)
inline void wmma_resolve_mma(Block* b, const WarpOp*, int w) {
    const WmmaLane* a0 = wmma_lane(b, w, 0);
    int M = a0->M, N = a0->N, K = a0->K, t = a0->in_type;
    float A[32 * 16], B[16 * 32], C[32 * 32];
    for (int i = 0; i < M * K; i++) A[i] = wmma_to_float(wmma_lane(b, w, i % 32)->a, t, i / 32);
    for (int i = 0; i < K * N; i++) B[i] = wmma_to_float(wmma_lane(b, w, i % 32)->b, t, i / 32);
    for (int i = 0; i < M * N; i++) C[i] = wmma_to_float(wmma_lane(b, w, i % 32)->c, 0, i / 32);
    for (int i = 0; i < M * N; i++) {
        int r = i / N, c = i % N;
        float acc = C[i];
        for (int k = 0; k < K; k++) acc = acc + A[r * K + k] * B[k * N + c];
        ((float*)wmma_lane(b, w, i % 32)->d)[i / 32] = acc;
    }
}

inline void wmma_collective(int kind, const WmmaLane* args, WarpResolveFn fn, const char* file, int line) {
    warp_collective(kind, 0xffffffffu, (uint64_t)(uintptr_t)args, 0, 32, file, line, fn);
}

}  // namespace cuda_cpu

namespace nvcuda {
namespace wmma {

template <class Use, int M, int N, int K, class T, class L>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f,
                          const typename fragment<Use, M, N, K, T, L>::element_type& v) {
    for (int i = 0; i < f.num_elements; i++) f.x[i] = v;
}

template <class Use, int M, int N, int K, class T, class L>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const T* p, unsigned ldm,
                             const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    static_assert(!std::is_same<Use, accumulator>::value, "wmma: an accumulator load takes a layout_t");
    cuda_cpu::WmmaLane a = {};
    a.x = f.x, a.ptr = p, a.ldm = ldm, a.col_major = std::is_same<L, col_major>::value;
    a.rows = f.rows, a.cols = f.cols, a.type = detail::type_id<T>;
    cuda_cpu::wmma_collective(cuda_cpu::WARP_WMMA_LOAD, &a, cuda_cpu::wmma_resolve_load, file, line);
}

template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p, unsigned ldm, layout_t layout,
                             const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    cuda_cpu::WmmaLane a = {};
    a.x = f.x, a.ptr = p, a.ldm = ldm, a.col_major = layout == mem_col_major;
    a.rows = f.rows, a.cols = f.cols, a.type = 0;
    cuda_cpu::wmma_collective(cuda_cpu::WARP_WMMA_LOAD, &a, cuda_cpu::wmma_resolve_load, file, line);
}

template <int M, int N, int K>
inline void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm, layout_t layout,
                              const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    cuda_cpu::WmmaLane a = {};
    a.x = (void*)f.x, a.ptr = p, a.ldm = ldm, a.col_major = layout == mem_col_major;
    a.rows = f.rows, a.cols = f.cols, a.type = 0;
    cuda_cpu::wmma_collective(cuda_cpu::WARP_WMMA_STORE, &a, cuda_cpu::wmma_resolve_store, file, line);
}

template <int M, int N, int K, class T, class LA, class LB>
inline void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
                     const fragment<matrix_b, M, N, K, T, LB>& b, const fragment<accumulator, M, N, K, float>& c,
                     const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    cuda_cpu::WmmaLane x = {};
    x.a = a.x, x.b = b.x, x.c = c.x, x.d = d.x;
    x.M = M, x.N = N, x.K = K, x.in_type = detail::type_id<T>;
    cuda_cpu::wmma_collective(cuda_cpu::WARP_WMMA_MMA, &x, cuda_cpu::wmma_resolve_mma, file, line);
}

}  // namespace wmma
}  // namespace nvcuda

#endif  // CUDA_CPU_MMA_H
