// CPU backend: cuBLASLt matmul (cublasLtMatmul with its descriptors, layouts, preferences and heuristic) on the host.
// Numerics: see cuda_cpu_gemm.h (fp32 accumulation in a fixed order, epilogue in fp32, one rounding of each output,
// bitwise independent of the thread count).
//
// Implemented:
//   types: A and B of one type, CUDA_R_32F, CUDA_R_16BF or CUDA_R_16F; C and D of one type, A's or CUDA_R_32F;
//     compute CUBLAS_COMPUTE_32F or CUBLAS_COMPUTE_32F_PEDANTIC with scale type CUDA_R_32F; bias, bias gradient
//     and aux of D's type (the rule cuBLASLt documents for these types);
//   layouts: CUBLASLT_ORDER_COL, any ld >= rows, strided batches (the four batch counts equal, strides may be 0);
//   D = alpha op(A) op(B) + beta C in place (C == D, same layout) or out of place (any ld of C);
//   epilogues DEFAULT, BIAS, GELU, GELU_BIAS, GELU_AUX, GELU_AUX_BIAS, DGELU, BGRADA, BGRADB (the last two with
//     alpha == 1 and one batch item: cuBLASLt does not document how alpha or batches enter the bias gradient);
//   desc attributes COMPUTE_TYPE, SCALE_TYPE, POINTER_MODE (HOST or DEVICE: both are host memory here), TRANSA,
//     TRANSB, TRANSC (N), EPILOGUE, BIAS_POINTER, BIAS_BATCH_STRIDE, BIAS_DATA_TYPE, EPILOGUE_AUX_POINTER,
//     EPILOGUE_AUX_LD, EPILOGUE_AUX_BATCH_STRIDE, EPILOGUE_AUX_DATA_TYPE;
//   preference attributes SEARCH_MODE (BEST_FIT), MAX_WORKSPACE_BYTES, REDUCTION_SCHEME_MASK (the algorithm does
//     no split reduction, CUBLASLT_REDUCTION_SCHEME_NONE, which every mask admits), MIN_ALIGNMENT_A/B/C/D_BYTES.
// The heuristic returns one algorithm, needing no workspace, unless a preferred minimum alignment is smaller than
// (or not a multiple of) the element size of its matrix, or the desc's bias / aux pointer is not aligned to its
// elements: then it returns CUBLAS_STATUS_NOT_SUPPORTED with returnAlgoCount 0, as cuBLASLt does when no
// algorithm fits. cublasLtMatmul accepts any workspace (also NULL / 0) and algo NULL or one from the heuristic.
// Anything else returns CUBLAS_STATUS_NOT_SUPPORTED (not implemented here) or CUBLAS_STATUS_INVALID_VALUE (invalid
// in cuBLASLt), with one line on stderr naming the function and the value. Calls run synchronously; the stream
// argument is accepted and not used.
#ifndef CUDA_CPU_CUBLASLT_H
#define CUDA_CPU_CUBLASLT_H

#include <new>
#include <cuda_runtime.h>
#include "cuda_cpu_gemm.h"

typedef enum {
    CUBLASLT_POINTER_MODE_HOST = 0,
    CUBLASLT_POINTER_MODE_DEVICE = 1,
    CUBLASLT_POINTER_MODE_DEVICE_VECTOR = 2,
    CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_ZERO = 3,
    CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_HOST = 4
} cublasLtPointerMode_t;

typedef enum {
    CUBLASLT_ORDER_COL = 0,
    CUBLASLT_ORDER_ROW = 1,
    CUBLASLT_ORDER_COL32 = 2,
    CUBLASLT_ORDER_COL4_4R2_8C = 3,
    CUBLASLT_ORDER_COL32_2R_4R4 = 4
} cublasLtOrder_t;

typedef enum { CUBLASLT_BATCH_MODE_STRIDED = 0, CUBLASLT_BATCH_MODE_POINTER_ARRAY = 1 } cublasLtBatchMode_t;

typedef enum {
    CUBLASLT_MATRIX_LAYOUT_TYPE = 0,
    CUBLASLT_MATRIX_LAYOUT_ORDER = 1,
    CUBLASLT_MATRIX_LAYOUT_ROWS = 2,
    CUBLASLT_MATRIX_LAYOUT_COLS = 3,
    CUBLASLT_MATRIX_LAYOUT_LD = 4,
    CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT = 5,
    CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET = 6,
    CUBLASLT_MATRIX_LAYOUT_PLANE_OFFSET = 7,
    CUBLASLT_MATRIX_LAYOUT_BATCH_MODE = 8
} cublasLtMatrixLayoutAttribute_t;

typedef enum {
    CUBLASLT_MATMUL_DESC_COMPUTE_TYPE = 0,
    CUBLASLT_MATMUL_DESC_SCALE_TYPE = 1,
    CUBLASLT_MATMUL_DESC_POINTER_MODE = 2,
    CUBLASLT_MATMUL_DESC_TRANSA = 3,
    CUBLASLT_MATMUL_DESC_TRANSB = 4,
    CUBLASLT_MATMUL_DESC_TRANSC = 5,
    CUBLASLT_MATMUL_DESC_FILL_MODE = 6,
    CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
    CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,
    CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE = 10,
    CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER = 11,
    CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD = 12,
    CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE = 13,
    CUBLASLT_MATMUL_DESC_ALPHA_VECTOR_BATCH_STRIDE = 14,
    CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET = 15,
    CUBLASLT_MATMUL_DESC_A_SCALE_POINTER = 17,
    CUBLASLT_MATMUL_DESC_B_SCALE_POINTER = 18,
    CUBLASLT_MATMUL_DESC_C_SCALE_POINTER = 19,
    CUBLASLT_MATMUL_DESC_D_SCALE_POINTER = 20,
    CUBLASLT_MATMUL_DESC_AMAX_D_POINTER = 21,
    CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE = 22,
    CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_SCALE_POINTER = 23,
    CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_AMAX_POINTER = 24,
    CUBLASLT_MATMUL_DESC_FAST_ACCUM = 25,
    CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = 26,
    CUBLASLT_MATMUL_DESC_A_SCALE_MODE = 31,
    CUBLASLT_MATMUL_DESC_B_SCALE_MODE = 32,
    CUBLASLT_MATMUL_DESC_C_SCALE_MODE = 33,
    CUBLASLT_MATMUL_DESC_D_SCALE_MODE = 34,
    CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_SCALE_MODE = 35,
    CUBLASLT_MATMUL_DESC_D_OUT_SCALE_POINTER = 36,
    CUBLASLT_MATMUL_DESC_D_OUT_SCALE_MODE = 37,
    CUBLASLT_MATMUL_DESC_EMULATION_DESCRIPTOR = 38
} cublasLtMatmulDescAttributes_t;

typedef enum {
    CUBLASLT_EPILOGUE_DEFAULT = 1,
    CUBLASLT_EPILOGUE_RELU = 2,
    CUBLASLT_EPILOGUE_RELU_AUX = 130,
    CUBLASLT_EPILOGUE_BIAS = 4,
    CUBLASLT_EPILOGUE_RELU_BIAS = 6,
    CUBLASLT_EPILOGUE_RELU_AUX_BIAS = 134,
    CUBLASLT_EPILOGUE_DRELU = 136,
    CUBLASLT_EPILOGUE_DRELU_BGRAD = 152,
    CUBLASLT_EPILOGUE_GELU = 32,
    CUBLASLT_EPILOGUE_GELU_AUX = 160,
    CUBLASLT_EPILOGUE_GELU_BIAS = 36,
    CUBLASLT_EPILOGUE_GELU_AUX_BIAS = 164,
    CUBLASLT_EPILOGUE_DGELU = 192,
    CUBLASLT_EPILOGUE_DGELU_BGRAD = 208,
    CUBLASLT_EPILOGUE_BGRADA = 256,
    CUBLASLT_EPILOGUE_BGRADB = 512
} cublasLtEpilogue_t;

typedef enum {
    CUBLASLT_SEARCH_BEST_FIT = 0,
    CUBLASLT_SEARCH_LIMITED_BY_ALGO_ID = 1
} cublasLtMatmulSearch_t;

typedef enum {
    CUBLASLT_REDUCTION_SCHEME_NONE = 0,
    CUBLASLT_REDUCTION_SCHEME_INPLACE = 1,
    CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE = 2,
    CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE = 4,
    CUBLASLT_REDUCTION_SCHEME_MASK = 7
} cublasLtReductionScheme_t;

typedef enum {
    CUBLASLT_MATMUL_PREF_SEARCH_MODE = 0,
    CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
    CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK = 3,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
    CUBLASLT_MATMUL_PREF_MAX_WAVES_COUNT = 9,
    CUBLASLT_MATMUL_PREF_IMPL_MASK = 12
} cublasLtMatmulPreferenceAttributes_t;

struct cublasLtContext {
    int unused;
};
typedef struct cublasLtContext* cublasLtHandle_t;

// the descriptors hold each attribute in the storage type cuBLASLt documents for it
struct cublasLtMatmulDescOpaque_t {
    int32_t compute_type, scale_type, pointer_mode, transa, transb, transc;
    uint32_t epilogue;
    void* bias;
    int64_t bias_batch_stride;
    void* aux;
    int64_t aux_ld, aux_batch_stride;
    int32_t aux_type, bias_type;  // -1: D's type
};
typedef struct cublasLtMatmulDescOpaque_t* cublasLtMatmulDesc_t;

struct cublasLtMatrixLayoutOpaque_t {
    uint32_t type;
    int32_t order;
    uint64_t rows, cols;
    int64_t ld;
    int32_t batch;
    int64_t stride, plane_offset;
    uint32_t batch_mode;
};
typedef struct cublasLtMatrixLayoutOpaque_t* cublasLtMatrixLayout_t;

struct cublasLtMatmulPreferenceOpaque_t {
    uint32_t search_mode;
    uint64_t max_workspace;
    uint32_t reduction_mask;
    uint32_t align[4];  // A, B, C, D
};
typedef struct cublasLtMatmulPreferenceOpaque_t* cublasLtMatmulPreference_t;

typedef struct {
    uint64_t data[8];
} cublasLtMatmulAlgo_t;

typedef struct {
    cublasLtMatmulAlgo_t algo;
    size_t workspaceSize;
    cublasStatus_t state;
    float wavesCount;
    int reserved[4];
} cublasLtMatmulHeuristicResult_t;

inline const char* cublasLtGetStatusName(cublasStatus_t status) { return cublasGetStatusName(status); }
inline const char* cublasLtGetStatusString(cublasStatus_t status) { return cublasGetStatusString(status); }

inline cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
    if (handle == nullptr) {
        cuda_cpu_gemm::report("cublasLtCreate", "lightHandle is NULL");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    cublasLtContext* h = new (std::nothrow) cublasLtContext;
    if (h == nullptr) return CUBLAS_STATUS_ALLOC_FAILED;
    h->unused = 0;
    *handle = h;
    return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

namespace cuda_cpu_gemm {

inline const char* epilogue_name(uint32_t e) {
    switch (e) {
    case CUBLASLT_EPILOGUE_DEFAULT: return "CUBLASLT_EPILOGUE_DEFAULT";
    case CUBLASLT_EPILOGUE_RELU: return "CUBLASLT_EPILOGUE_RELU";
    case CUBLASLT_EPILOGUE_RELU_AUX: return "CUBLASLT_EPILOGUE_RELU_AUX";
    case CUBLASLT_EPILOGUE_BIAS: return "CUBLASLT_EPILOGUE_BIAS";
    case CUBLASLT_EPILOGUE_RELU_BIAS: return "CUBLASLT_EPILOGUE_RELU_BIAS";
    case CUBLASLT_EPILOGUE_RELU_AUX_BIAS: return "CUBLASLT_EPILOGUE_RELU_AUX_BIAS";
    case CUBLASLT_EPILOGUE_DRELU: return "CUBLASLT_EPILOGUE_DRELU";
    case CUBLASLT_EPILOGUE_DRELU_BGRAD: return "CUBLASLT_EPILOGUE_DRELU_BGRAD";
    case CUBLASLT_EPILOGUE_GELU: return "CUBLASLT_EPILOGUE_GELU";
    case CUBLASLT_EPILOGUE_GELU_AUX: return "CUBLASLT_EPILOGUE_GELU_AUX";
    case CUBLASLT_EPILOGUE_GELU_BIAS: return "CUBLASLT_EPILOGUE_GELU_BIAS";
    case CUBLASLT_EPILOGUE_GELU_AUX_BIAS: return "CUBLASLT_EPILOGUE_GELU_AUX_BIAS";
    case CUBLASLT_EPILOGUE_DGELU: return "CUBLASLT_EPILOGUE_DGELU";
    case CUBLASLT_EPILOGUE_DGELU_BGRAD: return "CUBLASLT_EPILOGUE_DGELU_BGRAD";
    case CUBLASLT_EPILOGUE_BGRADA: return "CUBLASLT_EPILOGUE_BGRADA";
    case CUBLASLT_EPILOGUE_BGRADB: return "CUBLASLT_EPILOGUE_BGRADB";
    }
    return nullptr;
}

inline bool epilogue_implemented(uint32_t e) {
    switch (e) {
    case CUBLASLT_EPILOGUE_DEFAULT:
    case CUBLASLT_EPILOGUE_BIAS:
    case CUBLASLT_EPILOGUE_GELU:
    case CUBLASLT_EPILOGUE_GELU_BIAS:
    case CUBLASLT_EPILOGUE_GELU_AUX:
    case CUBLASLT_EPILOGUE_GELU_AUX_BIAS:
    case CUBLASLT_EPILOGUE_DGELU:
    case CUBLASLT_EPILOGUE_BGRADA:
    case CUBLASLT_EPILOGUE_BGRADB: return true;
    }
    return false;
}

inline const char* desc_attr_name(int a) {
    switch (a) {
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: return "CUBLASLT_MATMUL_DESC_COMPUTE_TYPE";
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE: return "CUBLASLT_MATMUL_DESC_SCALE_TYPE";
    case CUBLASLT_MATMUL_DESC_POINTER_MODE: return "CUBLASLT_MATMUL_DESC_POINTER_MODE";
    case CUBLASLT_MATMUL_DESC_TRANSA: return "CUBLASLT_MATMUL_DESC_TRANSA";
    case CUBLASLT_MATMUL_DESC_TRANSB: return "CUBLASLT_MATMUL_DESC_TRANSB";
    case CUBLASLT_MATMUL_DESC_TRANSC: return "CUBLASLT_MATMUL_DESC_TRANSC";
    case CUBLASLT_MATMUL_DESC_FILL_MODE: return "CUBLASLT_MATMUL_DESC_FILL_MODE";
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return "CUBLASLT_MATMUL_DESC_EPILOGUE";
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return "CUBLASLT_MATMUL_DESC_BIAS_POINTER";
    case CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE: return "CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE";
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER: return "CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER";
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD: return "CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD";
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE: return "CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE";
    case CUBLASLT_MATMUL_DESC_ALPHA_VECTOR_BATCH_STRIDE: return "CUBLASLT_MATMUL_DESC_ALPHA_VECTOR_BATCH_STRIDE";
    case CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET: return "CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET";
    case CUBLASLT_MATMUL_DESC_A_SCALE_POINTER: return "CUBLASLT_MATMUL_DESC_A_SCALE_POINTER";
    case CUBLASLT_MATMUL_DESC_B_SCALE_POINTER: return "CUBLASLT_MATMUL_DESC_B_SCALE_POINTER";
    case CUBLASLT_MATMUL_DESC_C_SCALE_POINTER: return "CUBLASLT_MATMUL_DESC_C_SCALE_POINTER";
    case CUBLASLT_MATMUL_DESC_D_SCALE_POINTER: return "CUBLASLT_MATMUL_DESC_D_SCALE_POINTER";
    case CUBLASLT_MATMUL_DESC_AMAX_D_POINTER: return "CUBLASLT_MATMUL_DESC_AMAX_D_POINTER";
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE: return "CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE";
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_SCALE_POINTER: return "CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_SCALE_POINTER";
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_AMAX_POINTER: return "CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_AMAX_POINTER";
    case CUBLASLT_MATMUL_DESC_FAST_ACCUM: return "CUBLASLT_MATMUL_DESC_FAST_ACCUM";
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: return "CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE";
    case CUBLASLT_MATMUL_DESC_A_SCALE_MODE: return "CUBLASLT_MATMUL_DESC_A_SCALE_MODE";
    case CUBLASLT_MATMUL_DESC_B_SCALE_MODE: return "CUBLASLT_MATMUL_DESC_B_SCALE_MODE";
    case CUBLASLT_MATMUL_DESC_C_SCALE_MODE: return "CUBLASLT_MATMUL_DESC_C_SCALE_MODE";
    case CUBLASLT_MATMUL_DESC_D_SCALE_MODE: return "CUBLASLT_MATMUL_DESC_D_SCALE_MODE";
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_SCALE_MODE: return "CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_SCALE_MODE";
    case CUBLASLT_MATMUL_DESC_D_OUT_SCALE_POINTER: return "CUBLASLT_MATMUL_DESC_D_OUT_SCALE_POINTER";
    case CUBLASLT_MATMUL_DESC_D_OUT_SCALE_MODE: return "CUBLASLT_MATMUL_DESC_D_OUT_SCALE_MODE";
    case CUBLASLT_MATMUL_DESC_EMULATION_DESCRIPTOR: return "CUBLASLT_MATMUL_DESC_EMULATION_DESCRIPTOR";
    }
    return nullptr;
}

inline const char* layout_attr_name(int a) {
    switch (a) {
    case CUBLASLT_MATRIX_LAYOUT_TYPE: return "CUBLASLT_MATRIX_LAYOUT_TYPE";
    case CUBLASLT_MATRIX_LAYOUT_ORDER: return "CUBLASLT_MATRIX_LAYOUT_ORDER";
    case CUBLASLT_MATRIX_LAYOUT_ROWS: return "CUBLASLT_MATRIX_LAYOUT_ROWS";
    case CUBLASLT_MATRIX_LAYOUT_COLS: return "CUBLASLT_MATRIX_LAYOUT_COLS";
    case CUBLASLT_MATRIX_LAYOUT_LD: return "CUBLASLT_MATRIX_LAYOUT_LD";
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: return "CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT";
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET: return "CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET";
    case CUBLASLT_MATRIX_LAYOUT_PLANE_OFFSET: return "CUBLASLT_MATRIX_LAYOUT_PLANE_OFFSET";
    case CUBLASLT_MATRIX_LAYOUT_BATCH_MODE: return "CUBLASLT_MATRIX_LAYOUT_BATCH_MODE";
    }
    return nullptr;
}

inline const char* pref_attr_name(int a) {
    switch (a) {
    case CUBLASLT_MATMUL_PREF_SEARCH_MODE: return "CUBLASLT_MATMUL_PREF_SEARCH_MODE";
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: return "CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES";
    case CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK: return "CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK";
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: return "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES";
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES: return "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES";
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: return "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES";
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: return "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES";
    case CUBLASLT_MATMUL_PREF_MAX_WAVES_COUNT: return "CUBLASLT_MATMUL_PREF_MAX_WAVES_COUNT";
    case CUBLASLT_MATMUL_PREF_IMPL_MASK: return "CUBLASLT_MATMUL_PREF_IMPL_MASK";
    }
    return nullptr;
}

// an attribute this backend does not store: NOT_SUPPORTED for a cuBLASLt attribute, INVALID_VALUE for no attribute
inline cublasStatus_t attr_missing(const char* fn, int attr, const char* name, const char* kind) {
    if (name != nullptr) {
        report(fn, "attribute %d (%s) is not implemented by the CPU backend", attr, name);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    report(fn, "attribute %d is not a %s value", attr, kind);
    return CUBLAS_STATUS_INVALID_VALUE;
}

// the buffer checks of the SetAttribute functions: buf non-NULL, sizeInBytes the attribute's storage size
inline cublasStatus_t attr_size(const char* fn, const char* name, size_t size, const void* buf, size_t sizeInBytes) {
    if (buf == nullptr || sizeInBytes != size) {
        report(fn, "%s: buf is %s and sizeInBytes %zu (the attribute has %zu bytes)", name,
               buf == nullptr ? "NULL" : "set", sizeInBytes, size);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_SUCCESS;
}

// GetAttribute as documented: sizeInBytes 0 asks for the size in *sizeWritten
inline cublasStatus_t attr_get(const char* fn, const char* name, const void* field, size_t size, void* buf,
                               size_t sizeInBytes, size_t* sizeWritten) {
    if (sizeInBytes == 0 && sizeWritten != nullptr) {
        *sizeWritten = size;
        return CUBLAS_STATUS_SUCCESS;
    }
    if (buf == nullptr || sizeInBytes != size) {
        report(fn, "%s: buf is %s and sizeInBytes %zu (the attribute has %zu bytes)", name,
               buf == nullptr ? "NULL" : "set", sizeInBytes, size);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    memcpy(buf, field, size);
    if (sizeWritten != nullptr) *sizeWritten = size;
    return CUBLAS_STATUS_SUCCESS;
}

inline void* desc_field(cublasLtMatmulDescOpaque_t* d, int attr, size_t* size) {
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: *size = 4; return &d->compute_type;
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE: *size = 4; return &d->scale_type;
    case CUBLASLT_MATMUL_DESC_POINTER_MODE: *size = 4; return &d->pointer_mode;
    case CUBLASLT_MATMUL_DESC_TRANSA: *size = 4; return &d->transa;
    case CUBLASLT_MATMUL_DESC_TRANSB: *size = 4; return &d->transb;
    case CUBLASLT_MATMUL_DESC_TRANSC: *size = 4; return &d->transc;
    case CUBLASLT_MATMUL_DESC_EPILOGUE: *size = 4; return &d->epilogue;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: *size = sizeof(void*); return &d->bias;
    case CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE: *size = 8; return &d->bias_batch_stride;
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER: *size = sizeof(void*); return &d->aux;
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD: *size = 8; return &d->aux_ld;
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE: *size = 8; return &d->aux_batch_stride;
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE: *size = 4; return &d->aux_type;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: *size = 4; return &d->bias_type;
    }
    return nullptr;
}

inline cublasStatus_t check_scale_type(const char* fn, int t) {
    if (t == CUDA_R_32F) return CUBLAS_STATUS_SUCCESS;
    report(fn, "scale type %d (%s) is not implemented by the CPU backend (only CUDA_R_32F)", t, type_name(t));
    return CUBLAS_STATUS_NOT_SUPPORTED;
}

// the value checks of cublasLtMatmulDescSetAttribute
inline cublasStatus_t desc_check(const char* fn, int attr, const void* buf) {
    int32_t i32;
    int64_t i64;
    memcpy(&i32, buf, 4);
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: return check_compute_type(fn, i32);
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE: return check_scale_type(fn, i32);
    case CUBLASLT_MATMUL_DESC_POINTER_MODE:
        if (i32 == CUBLASLT_POINTER_MODE_HOST || i32 == CUBLASLT_POINTER_MODE_DEVICE) return CUBLAS_STATUS_SUCCESS;
        if (i32 >= CUBLASLT_POINTER_MODE_DEVICE_VECTOR && i32 <= CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_HOST) {
            report(fn, "pointer mode %d (alpha / beta vectors) is not implemented by the CPU backend", i32);
            return CUBLAS_STATUS_NOT_SUPPORTED;
        }
        report(fn, "pointer mode %d is not a cublasLtPointerMode_t value", i32);
        return CUBLAS_STATUS_INVALID_VALUE;
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB:
        if (i32 >= CUBLAS_OP_N && i32 <= CUBLAS_OP_C) return CUBLAS_STATUS_SUCCESS;
        report(fn, "%s %d is not CUBLAS_OP_N, CUBLAS_OP_T or CUBLAS_OP_C", desc_attr_name(attr), i32);
        return CUBLAS_STATUS_INVALID_VALUE;
    case CUBLASLT_MATMUL_DESC_TRANSC:
        if (i32 == CUBLAS_OP_N) return CUBLAS_STATUS_SUCCESS;
        report(fn, "CUBLASLT_MATMUL_DESC_TRANSC %d: only CUBLAS_OP_N is supported (as in cuBLASLt)", i32);
        return CUBLAS_STATUS_INVALID_VALUE;
    case CUBLASLT_MATMUL_DESC_EPILOGUE: {
        uint32_t e = (uint32_t)i32;
        if (epilogue_implemented(e)) return CUBLAS_STATUS_SUCCESS;
        if (epilogue_name(e) != nullptr) {
            report(fn, "epilogue %u (%s) is not implemented by the CPU backend", e, epilogue_name(e));
            return CUBLAS_STATUS_NOT_SUPPORTED;
        }
        report(fn, "epilogue %u is not a cublasLtEpilogue_t value", e);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    case CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE:
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD:
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE:
        memcpy(&i64, buf, 8);
        if (i64 >= 0) return CUBLAS_STATUS_SUCCESS;
        report(fn, "%s %lld is negative", desc_attr_name(attr), (long long)i64);
        return CUBLAS_STATUS_INVALID_VALUE;
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE:
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
        if (i32 == -1 || type_supported(i32)) return CUBLAS_STATUS_SUCCESS;
        report(fn, "%s %d (%s) is not implemented by the CPU backend (CUDA_R_32F, CUDA_R_16BF, CUDA_R_16F)",
               desc_attr_name(attr), i32, type_name(i32));
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    return CUBLAS_STATUS_SUCCESS;  // pointers
}

inline void* layout_field(cublasLtMatrixLayoutOpaque_t* l, int attr, size_t* size) {
    switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_TYPE: *size = 4; return &l->type;
    case CUBLASLT_MATRIX_LAYOUT_ORDER: *size = 4; return &l->order;
    case CUBLASLT_MATRIX_LAYOUT_ROWS: *size = 8; return &l->rows;
    case CUBLASLT_MATRIX_LAYOUT_COLS: *size = 8; return &l->cols;
    case CUBLASLT_MATRIX_LAYOUT_LD: *size = 8; return &l->ld;
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: *size = 4; return &l->batch;
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET: *size = 8; return &l->stride;
    case CUBLASLT_MATRIX_LAYOUT_PLANE_OFFSET: *size = 8; return &l->plane_offset;
    case CUBLASLT_MATRIX_LAYOUT_BATCH_MODE: *size = 4; return &l->batch_mode;
    }
    return nullptr;
}

inline const char* order_name(int o) {
    switch (o) {
    case CUBLASLT_ORDER_COL: return "CUBLASLT_ORDER_COL";
    case CUBLASLT_ORDER_ROW: return "CUBLASLT_ORDER_ROW";
    case CUBLASLT_ORDER_COL32: return "CUBLASLT_ORDER_COL32";
    case CUBLASLT_ORDER_COL4_4R2_8C: return "CUBLASLT_ORDER_COL4_4R2_8C";
    case CUBLASLT_ORDER_COL32_2R_4R4: return "CUBLASLT_ORDER_COL32_2R_4R4";
    }
    return nullptr;
}

// the value checks of cublasLtMatrixLayoutSetAttribute (the data type is checked by the matmul, as in cuBLASLt)
inline cublasStatus_t layout_check(const char* fn, int attr, const void* buf) {
    int32_t i32;
    int64_t i64;
    memcpy(&i32, buf, 4);
    switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_ORDER:
        if (i32 == CUBLASLT_ORDER_COL) return CUBLAS_STATUS_SUCCESS;
        if (order_name(i32) != nullptr) {
            report(fn, "order %d (%s) is not implemented by the CPU backend (only CUBLASLT_ORDER_COL)", i32,
                   order_name(i32));
            return CUBLAS_STATUS_NOT_SUPPORTED;
        }
        report(fn, "order %d is not a cublasLtOrder_t value", i32);
        return CUBLAS_STATUS_INVALID_VALUE;
    case CUBLASLT_MATRIX_LAYOUT_LD:
        memcpy(&i64, buf, 8);
        if (i64 >= 0) return CUBLAS_STATUS_SUCCESS;
        report(fn, "CUBLASLT_MATRIX_LAYOUT_LD %lld is negative", (long long)i64);
        return CUBLAS_STATUS_INVALID_VALUE;
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT:
        if (i32 >= 1) return CUBLAS_STATUS_SUCCESS;
        report(fn, "CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT %d is less than 1", i32);
        return CUBLAS_STATUS_INVALID_VALUE;
    case CUBLASLT_MATRIX_LAYOUT_PLANE_OFFSET:
        memcpy(&i64, buf, 8);
        if (i64 == 0) return CUBLAS_STATUS_SUCCESS;
        report(fn, "CUBLASLT_MATRIX_LAYOUT_PLANE_OFFSET %lld (planar complex) is not implemented by the CPU backend",
               (long long)i64);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    case CUBLASLT_MATRIX_LAYOUT_BATCH_MODE:
        if (i32 == CUBLASLT_BATCH_MODE_STRIDED) return CUBLAS_STATUS_SUCCESS;
        report(fn, "CUBLASLT_MATRIX_LAYOUT_BATCH_MODE %d is not implemented by the CPU backend (only "
                   "CUBLASLT_BATCH_MODE_STRIDED)", i32);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    return CUBLAS_STATUS_SUCCESS;
}

inline void* pref_field(cublasLtMatmulPreferenceOpaque_t* p, int attr, size_t* size) {
    switch (attr) {
    case CUBLASLT_MATMUL_PREF_SEARCH_MODE: *size = 4; return &p->search_mode;
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: *size = 8; return &p->max_workspace;
    case CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK: *size = 4; return &p->reduction_mask;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: *size = 4; return &p->align[0];
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES: *size = 4; return &p->align[1];
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: *size = 4; return &p->align[2];
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: *size = 4; return &p->align[3];
    }
    return nullptr;
}

inline cublasStatus_t pref_check(const char* fn, int attr, const void* buf) {
    uint32_t u32;
    memcpy(&u32, buf, 4);
    if (attr == CUBLASLT_MATMUL_PREF_SEARCH_MODE && u32 != CUBLASLT_SEARCH_BEST_FIT) {
        report(fn, "search mode %u is not implemented by the CPU backend (only CUBLASLT_SEARCH_BEST_FIT)", u32);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (attr == CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK && (u32 & ~(uint32_t)CUBLASLT_REDUCTION_SCHEME_MASK)) {
        report(fn, "reduction scheme mask 0x%x has bits outside CUBLASLT_REDUCTION_SCHEME_MASK", u32);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_SUCCESS;
}

// Checks a matmul configuration (everything but the data pointers and alpha / beta) and fills in g
inline cublasStatus_t lt_setup(const char* fn, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t la,
                               cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t lc, cublasLtMatrixLayout_t ld,
                               Gemm* g) {
    if (desc == nullptr || la == nullptr || lb == nullptr || lc == nullptr || ld == nullptr) {
        report(fn, "a descriptor is NULL (computeDesc %p, Adesc %p, Bdesc %p, Cdesc %p, Ddesc %p)", (void*)desc,
               (void*)la, (void*)lb, (void*)lc, (void*)ld);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    int at = (int)la->type, bt = (int)lb->type, ct = (int)lc->type, dt = (int)ld->type;
    if (!type_supported(at) || bt != at || ct != dt || (dt != at && dt != CUDA_R_32F)) {
        report(fn, "types A %s, B %s, C %s, D %s are not implemented by the CPU backend (A and B both CUDA_R_32F, "
                   "CUDA_R_16BF or CUDA_R_16F; C and D both A's type or CUDA_R_32F)", type_name(at), type_name(bt),
               type_name(ct), type_name(dt));
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    bool ta = desc->transa != CUBLAS_OP_N, tb = desc->transb != CUBLAS_OP_N;
    int64_t m = (int64_t)ld->rows, n = (int64_t)ld->cols, k = (int64_t)(ta ? la->rows : la->cols);
    int64_t am = (int64_t)(ta ? la->cols : la->rows);
    int64_t bk = (int64_t)(tb ? lb->cols : lb->rows), bn = (int64_t)(tb ? lb->rows : lb->cols);
    if (m < 0 || n < 0 || k < 0 || am != m || bk != k || bn != n || (int64_t)lc->rows != m ||
        (int64_t)lc->cols != n) {
        report(fn, "shapes do not match: op(A) %lld x %lld, op(B) %lld x %lld, C %llu x %llu, D %llu x %llu",
               (long long)am, (long long)k, (long long)bk, (long long)bn, (unsigned long long)lc->rows,
               (unsigned long long)lc->cols, (unsigned long long)ld->rows, (unsigned long long)ld->cols);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    const cublasLtMatrixLayoutOpaque_t* ls[4] = {la, lb, lc, ld};
    const char* names = "ABCD";
    for (int i = 0; i < 4; i++) {
        if (ls[i]->ld < max64(1, (int64_t)ls[i]->rows)) {
            report(fn, "%c: leading dimension %lld is less than its %llu rows", names[i], (long long)ls[i]->ld,
                   (unsigned long long)ls[i]->rows);
            return CUBLAS_STATUS_INVALID_VALUE;
        }
        if (ls[i]->batch != ld->batch) {
            report(fn, "batch counts differ: A %d, B %d, C %d, D %d", la->batch, lb->batch, lc->batch, ld->batch);
            return CUBLAS_STATUS_INVALID_VALUE;
        }
    }
    uint32_t e = desc->epilogue;
    bool bias = e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_GELU_BIAS || e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    bool aux_out = e == CUBLASLT_EPILOGUE_GELU_AUX || e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    bool dgelu = e == CUBLASLT_EPILOGUE_DGELU;
    int bgrad = e == CUBLASLT_EPILOGUE_BGRADA ? 'A' : e == CUBLASLT_EPILOGUE_BGRADB ? 'B' : 0;
    int bias_type = desc->bias_type == -1 ? dt : desc->bias_type;
    int aux_type = desc->aux_type == -1 ? dt : desc->aux_type;
    if ((bias || bgrad) && bias_type != dt) {
        report(fn, "bias data type %s with D of %s is not implemented by the CPU backend (the bias has D's type)",
               type_name(bias_type), type_name(dt));
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (aux_out || dgelu) {
        if (aux_type != dt) {
            report(fn, "aux data type %s with D of %s is not implemented by the CPU backend (the aux matrix has "
                       "D's type)", type_name(aux_type), type_name(dt));
            return CUBLAS_STATUS_NOT_SUPPORTED;
        }
        if (aux_out && ld->batch > 1 && desc->aux_batch_stride == 0) {
            report(fn, "%s: aux batch stride 0: the %d batch items would all write the same aux matrix",
                   epilogue_name(e), ld->batch);
            return CUBLAS_STATUS_INVALID_VALUE;
        }
        if (desc->aux_ld < m || desc->aux_ld % 8 != 0 || desc->aux_batch_stride % 8 != 0) {
            report(fn, "%s: aux ld %lld must be a multiple of 8 and at least the %lld rows of D, aux batch stride "
                       "%lld a multiple of 8", epilogue_name(e), (long long)desc->aux_ld, (long long)m,
                   (long long)desc->aux_batch_stride);
            return CUBLAS_STATUS_INVALID_VALUE;
        }
    }
    if (bgrad && ld->batch != 1) {
        report(fn, "%s with %d batch items is not implemented by the CPU backend (one item)", epilogue_name(e),
               ld->batch);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    *g = gemm_init();
    g->m = m;
    g->n = n;
    g->k = k;
    g->batch = ld->batch;
    g->ta = ta;
    g->tb = tb;
    g->a = Matrix{nullptr, at, la->ld, la->stride};
    g->b = Matrix{nullptr, bt, lb->ld, lb->stride};
    g->c = Matrix{nullptr, ct, lc->ld, lc->stride};
    g->ldd = ld->ld;
    g->sd = ld->stride;
    g->dtype = dt;
    g->bias_type = bias_type;
    g->bias_stride = desc->bias_batch_stride;
    g->aux_type = aux_type;
    g->aux_ld = desc->aux_ld;
    g->aux_stride = desc->aux_batch_stride;
    g->aux_out = aux_out;
    g->gelu = e == CUBLASLT_EPILOGUE_GELU || e == CUBLASLT_EPILOGUE_GELU_BIAS || aux_out;
    g->dgelu = dgelu;
    g->bgrad = bgrad;
    g->bgrad_type = bias_type;
    if (bias) g->bias = desc->bias;
    if (bgrad) g->bgrad_out = desc->bias;
    if (aux_out || dgelu) g->aux = desc->aux;
    return CUBLAS_STATUS_SUCCESS;
}

// the Set/GetAttribute pair of the three descriptor kinds: Field(obj, attr, &size) finds the stored field, Check
// validates a new value, Name names the attribute, kind the attribute enum
template <class Obj, void* (*Field)(Obj*, int, size_t*), cublasStatus_t (*Check)(const char*, int, const void*),
          const char* (*Name)(int)>
inline cublasStatus_t lt_set_attribute(const char* fn, const char* obj_name, const char* kind, Obj* obj, int attr,
                                       const void* buf, size_t sizeInBytes) {
    if (obj == nullptr) {
        report(fn, "%s is NULL", obj_name);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    size_t size = 0;
    void* field = Field(obj, attr, &size);
    if (field == nullptr) return attr_missing(fn, attr, Name(attr), kind);
    cublasStatus_t st = attr_size(fn, Name(attr), size, buf, sizeInBytes);
    if (st == CUBLAS_STATUS_SUCCESS) st = Check(fn, attr, buf);
    if (st == CUBLAS_STATUS_SUCCESS) memcpy(field, buf, size);
    return st;
}

template <class Obj, void* (*Field)(Obj*, int, size_t*), const char* (*Name)(int)>
inline cublasStatus_t lt_get_attribute(const char* fn, const char* obj_name, const char* kind, Obj* obj, int attr,
                                       void* buf, size_t sizeInBytes, size_t* sizeWritten) {
    if (obj == nullptr) {
        report(fn, "%s is NULL", obj_name);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    size_t size = 0;
    void* field = Field(obj, attr, &size);
    if (field == nullptr) return attr_missing(fn, attr, Name(attr), kind);
    return attr_get(fn, Name(attr), field, size, buf, sizeInBytes, sizeWritten);
}

}  // namespace cuda_cpu_gemm

inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* matmulDesc, cublasComputeType_t computeType,
                                               cudaDataType_t scaleType) {
    const char* fn = "cublasLtMatmulDescCreate";
    if (matmulDesc == nullptr) {
        cuda_cpu_gemm::report(fn, "matmulDesc is NULL");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    cublasStatus_t st = cuda_cpu_gemm::check_compute_type(fn, computeType);
    if (st == CUBLAS_STATUS_SUCCESS) st = cuda_cpu_gemm::check_scale_type(fn, scaleType);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    cublasLtMatmulDescOpaque_t* d = new (std::nothrow) cublasLtMatmulDescOpaque_t;
    if (d == nullptr) return CUBLAS_STATUS_ALLOC_FAILED;
    memset(d, 0, sizeof(*d));
    d->compute_type = computeType;
    d->scale_type = scaleType;
    d->pointer_mode = CUBLASLT_POINTER_MODE_HOST;
    d->transa = d->transb = d->transc = CUBLAS_OP_N;
    d->epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    d->aux_type = d->bias_type = -1;
    *matmulDesc = d;
    return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t matmulDesc) {
    delete matmulDesc;
    return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t matmulDesc,
                                                     cublasLtMatmulDescAttributes_t attr, const void* buf,
                                                     size_t sizeInBytes) {
    using namespace cuda_cpu_gemm;
    return lt_set_attribute<cublasLtMatmulDescOpaque_t, desc_field, desc_check, desc_attr_name>(
        "cublasLtMatmulDescSetAttribute", "matmulDesc", "cublasLtMatmulDescAttributes_t", matmulDesc, attr, buf,
        sizeInBytes);
}

inline cublasStatus_t cublasLtMatmulDescGetAttribute(cublasLtMatmulDesc_t matmulDesc,
                                                     cublasLtMatmulDescAttributes_t attr, void* buf,
                                                     size_t sizeInBytes, size_t* sizeWritten) {
    using namespace cuda_cpu_gemm;
    return lt_get_attribute<cublasLtMatmulDescOpaque_t, desc_field, desc_attr_name>(
        "cublasLtMatmulDescGetAttribute", "matmulDesc", "cublasLtMatmulDescAttributes_t", matmulDesc, attr, buf,
        sizeInBytes, sizeWritten);
}

inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* matLayout, cudaDataType type, uint64_t rows,
                                                 uint64_t cols, int64_t ld) {
    const char* fn = "cublasLtMatrixLayoutCreate";
    if (matLayout == nullptr) {
        cuda_cpu_gemm::report(fn, "matLayout is NULL");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (ld < 0) {
        cuda_cpu_gemm::report(fn, "ld %lld is negative", (long long)ld);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    cublasLtMatrixLayoutOpaque_t* l = new (std::nothrow) cublasLtMatrixLayoutOpaque_t;
    if (l == nullptr) return CUBLAS_STATUS_ALLOC_FAILED;
    memset(l, 0, sizeof(*l));
    l->type = (uint32_t)type;
    l->order = CUBLASLT_ORDER_COL;
    l->rows = rows;
    l->cols = cols;
    l->ld = ld;
    l->batch = 1;
    *matLayout = l;
    return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t matLayout) {
    delete matLayout;
    return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t matLayout,
                                                       cublasLtMatrixLayoutAttribute_t attr, const void* buf,
                                                       size_t sizeInBytes) {
    using namespace cuda_cpu_gemm;
    return lt_set_attribute<cublasLtMatrixLayoutOpaque_t, layout_field, layout_check, layout_attr_name>(
        "cublasLtMatrixLayoutSetAttribute", "matLayout", "cublasLtMatrixLayoutAttribute_t", matLayout, attr, buf,
        sizeInBytes);
}

inline cublasStatus_t cublasLtMatrixLayoutGetAttribute(cublasLtMatrixLayout_t matLayout,
                                                       cublasLtMatrixLayoutAttribute_t attr, void* buf,
                                                       size_t sizeInBytes, size_t* sizeWritten) {
    using namespace cuda_cpu_gemm;
    return lt_get_attribute<cublasLtMatrixLayoutOpaque_t, layout_field, layout_attr_name>(
        "cublasLtMatrixLayoutGetAttribute", "matLayout", "cublasLtMatrixLayoutAttribute_t", matLayout, attr, buf,
        sizeInBytes, sizeWritten);
}

inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
    if (pref == nullptr) {
        cuda_cpu_gemm::report("cublasLtMatmulPreferenceCreate", "pref is NULL");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    cublasLtMatmulPreferenceOpaque_t* p = new (std::nothrow) cublasLtMatmulPreferenceOpaque_t;
    if (p == nullptr) return CUBLAS_STATUS_ALLOC_FAILED;
    p->search_mode = CUBLASLT_SEARCH_BEST_FIT;
    p->max_workspace = 0;
    p->reduction_mask = CUBLASLT_REDUCTION_SCHEME_MASK;
    for (int i = 0; i < 4; i++) p->align[i] = 256;
    *pref = p;
    return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
    delete pref;
    return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                           cublasLtMatmulPreferenceAttributes_t attr, const void* buf,
                                                           size_t sizeInBytes) {
    using namespace cuda_cpu_gemm;
    return lt_set_attribute<cublasLtMatmulPreferenceOpaque_t, pref_field, pref_check, pref_attr_name>(
        "cublasLtMatmulPreferenceSetAttribute", "pref", "cublasLtMatmulPreferenceAttributes_t", pref, attr, buf,
        sizeInBytes);
}

inline cublasStatus_t cublasLtMatmulPreferenceGetAttribute(cublasLtMatmulPreference_t pref,
                                                           cublasLtMatmulPreferenceAttributes_t attr, void* buf,
                                                           size_t sizeInBytes, size_t* sizeWritten) {
    using namespace cuda_cpu_gemm;
    return lt_get_attribute<cublasLtMatmulPreferenceOpaque_t, pref_field, pref_attr_name>(
        "cublasLtMatmulPreferenceGetAttribute", "pref", "cublasLtMatmulPreferenceAttributes_t", pref, attr, buf,
        sizeInBytes, sizeWritten);
}

inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t operationDesc,
                                                     cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
                                                     cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
                                                     cublasLtMatmulPreference_t preference, int requestedAlgoCount,
                                                     cublasLtMatmulHeuristicResult_t heuristicResultsArray[],
                                                     int* returnAlgoCount) {
    using namespace cuda_cpu_gemm;
    const char* fn = "cublasLtMatmulAlgoGetHeuristic";
    if (lightHandle == nullptr) {
        report(fn, "lightHandle is NULL (cublasLtCreate was not called)");
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    if (preference == nullptr || heuristicResultsArray == nullptr || returnAlgoCount == nullptr ||
        requestedAlgoCount <= 0) {
        report(fn, "preference, heuristicResultsArray or returnAlgoCount is NULL, or requestedAlgoCount %d <= 0",
               requestedAlgoCount);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    *returnAlgoCount = 0;
    Gemm g;
    cublasStatus_t st = lt_setup(fn, operationDesc, Adesc, Bdesc, Cdesc, Ddesc, &g);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    // the kernel reads and writes whole elements: it needs element-aligned matrices
    const int types[4] = {g.a.type, g.b.type, g.c.type, g.dtype};
    for (int i = 0; i < 4; i++) {
        uint32_t al = preference->align[i], es = (uint32_t)type_size(types[i]);
        if (al < es || al % es != 0) {
            report(fn, "no algorithm: minimum alignment of %c %u bytes is not a multiple of its %u-byte elements",
                   "ABCD"[i], al, es);
            return CUBLAS_STATUS_NOT_SUPPORTED;
        }
    }
    const void* vec[2] = {g.bias != nullptr ? g.bias : g.bgrad_out, g.aux};
    const int vec_type[2] = {g.bias_type, g.aux_type};
    for (int i = 0; i < 2; i++) {
        if (vec[i] != nullptr && (uintptr_t)vec[i] % (uintptr_t)type_size(vec_type[i]) != 0) {
            report(fn, "no algorithm: the %s pointer %p is not aligned to its %d-byte elements",
                   i == 0 ? "bias" : "aux", vec[i], type_size(vec_type[i]));
            return CUBLAS_STATUS_NOT_SUPPORTED;
        }
    }
    cublasLtMatmulHeuristicResult_t* r = &heuristicResultsArray[0];
    memset(r, 0, sizeof(*r));
    r->algo.data[0] = ALGO_TAG;
    r->workspaceSize = 0;
    r->state = CUBLAS_STATUS_SUCCESS;
    r->wavesCount = 1.0f;
    *returnAlgoCount = 1;
    return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t computeDesc,
                                     const void* alpha, const void* A, cublasLtMatrixLayout_t Adesc, const void* B,
                                     cublasLtMatrixLayout_t Bdesc, const void* beta, const void* C,
                                     cublasLtMatrixLayout_t Cdesc, void* D, cublasLtMatrixLayout_t Ddesc,
                                     const cublasLtMatmulAlgo_t* algo, void* workspace, size_t workspaceSizeInBytes,
                                     cudaStream_t stream) {
    using namespace cuda_cpu_gemm;
    const char* fn = "cublasLtMatmul";
    (void)workspace;
    (void)workspaceSizeInBytes;
    (void)stream;
    if (lightHandle == nullptr) {
        report(fn, "lightHandle is NULL (cublasLtCreate was not called)");
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    Gemm g;
    cublasStatus_t st = lt_setup(fn, computeDesc, Adesc, Bdesc, Cdesc, Ddesc, &g);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    if (alpha == nullptr || beta == nullptr) {
        report(fn, "alpha or beta is NULL");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (algo != nullptr && algo->data[0] != ALGO_TAG) {
        report(fn, "algo was not returned by cublasLtMatmulAlgoGetHeuristic of this backend");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    g.alpha = *(const float*)alpha;
    g.beta = *(const float*)beta;
    g.a.p = A;
    g.b.p = B;
    g.c.p = C;
    g.d = D;
    if (C == D && C != nullptr && (g.c.ld != g.ldd || g.c.stride != g.sd)) {
        report(fn, "C and D are the same matrix (in place) but their layouts differ: ld %lld / %lld, batch stride "
                   "%lld / %lld", (long long)g.c.ld, (long long)g.ldd, (long long)g.c.stride, (long long)g.sd);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (g.bgrad) {
        if (g.alpha != 1.0f) {
            report(fn, "%s with alpha %g is not implemented by the CPU backend (alpha 1)",
                   epilogue_name(computeDesc->epilogue), (double)g.alpha);
            return CUBLAS_STATUS_NOT_SUPPORTED;
        }
        if ((st = check_ptr(fn, "the bias gradient (CUBLASLT_MATMUL_DESC_BIAS_POINTER)", g.bgrad_out, g.bgrad_type)) !=
            CUBLAS_STATUS_SUCCESS)
            return st;
        const void* src = g.bgrad == 'A' ? A : B;
        if ((st = check_ptr(fn, g.bgrad == 'A' ? "A" : "B", src, g.a.type)) != CUBLAS_STATUS_SUCCESS) return st;
    }
    if ((st = check_operands(fn, g, "D")) != CUBLAS_STATUS_SUCCESS) return st;
    uint32_t e = computeDesc->epilogue;
    if (e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_GELU_BIAS || e == CUBLASLT_EPILOGUE_GELU_AUX_BIAS) {
        if ((st = check_ptr(fn, "the bias (CUBLASLT_MATMUL_DESC_BIAS_POINTER)", g.bias, g.bias_type)) !=
            CUBLAS_STATUS_SUCCESS)
            return st;
    }
    if (g.aux_out || g.dgelu) {
        if ((st = check_ptr(fn, "the aux matrix (CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER)", g.aux, g.aux_type)) !=
            CUBLAS_STATUS_SUCCESS)
            return st;
    }
    return run(g, fn);
}

#endif  // CUDA_CPU_CUBLASLT_H
