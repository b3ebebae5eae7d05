# Declarations of the C kernel library (include/kernels.h) for Cython.
from libc.stdint cimport int64_t, uint16_t, uint64_t

cdef extern from "include/kernels.h" nogil:
    ctypedef void (*llp_to_float_fn)(const void *x, float *y, int64_t k) noexcept nogil
    ctypedef void (*llp_from_float_fn)(const float *x, void *y, int64_t k) noexcept nogil
    ctypedef void (*llp_vec_dot_fn)(int n, float *s, const void *vx, const void *vy) noexcept nogil
    ctypedef void (*llp_vec_dot4_fn)(int n, float *s, const void *vx, size_t bx, const void *vy) noexcept nogil
    ctypedef void (*llp_vec_dot4x2_fn)(int n, float *s, size_t ls, const void *vx, size_t bx, const void *vy,
                                       size_t by) noexcept nogil
    ctypedef void (*llp_attn_scores_fn)(int head_dim, const float *q, const uint16_t *k, int64_t stride, int64_t n,
                                        float scale, float *s, int lanes) noexcept nogil
    ctypedef void (*llp_attn_accum_fn)(int head_dim, float *p, float pscale, const uint16_t *v, int64_t stride,
                                       int64_t n, float *acc, int lanes) noexcept nogil
    ctypedef struct llp_type_info:
        const char *name
        int blck_size
        size_t type_size
        llp_to_float_fn to_float
        llp_from_float_fn from_float_ref
        int vec_dot_type

    const llp_type_info llp_types[]
    int LLP_TYPE_COUNT
    int LLP_ISA_COUNT

    ctypedef int llp_isa

    ctypedef struct llp_kernels:
        llp_vec_dot_fn vec_dot[40]
        llp_from_float_fn from_float[40]
        const char *impl[40]
        llp_vec_dot4_fn vec_dot4[40]
        llp_vec_dot4x2_fn vec_dot4x2[40]
        llp_attn_scores_fn attn_scores
        llp_attn_accum_fn attn_accum
        double (*exp_sum)(float *p, int64_t n, float mx) noexcept nogil
        void (*swiglu)(const float *g, const float *u, float *out, int64_t n) noexcept nogil

    ctypedef struct llp_cpu_features:
        int sse3, ssse3, avx, avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512dq, avx512vnni, avx512bf16
        int avx_vnni, neon, dotprod

    const llp_cpu_features *llp_cpu()
    int llp_isa_supported(llp_isa isa)
    const char *llp_isa_name(llp_isa isa)
    const llp_kernels *llp_kernels_for(llp_isa isa)
    llp_isa llp_best_isa()

    size_t llp_matmul_work_size(int type, int64_t cols, int64_t n_tok)
    int llp_matmul(const llp_kernels *k, int type, const void *W, int64_t rows, int64_t cols, size_t w_stride,
                   const float *X, int64_t n_tok, float *Y, int64_t y_stride, void *work, int n_threads)
    ctypedef struct llp_product:
        int type
        const void *W
        int64_t rows
        size_t w_stride
        float *Y
        int64_t y_stride
    enum: LLP_MAX_GROUP
    int llp_matmul_group(const llp_kernels *k, const llp_product *prods, int n_prods, int64_t cols, const float *X,
                         int64_t n_tok, void *work, int n_threads)

cdef extern from "include/kernels.h" nogil:
    uint64_t llp_read_bytes(const void *p, size_t n, int n_threads)

cdef extern from "include/quantize.h" nogil:
    int llp_quantize_rows(int type, const float *src, void *dst, int64_t nrows, int64_t n_per_row, int n_threads)
    int llp_dequantize(int type, const void *src, float *dst, int64_t n, int n_threads)
