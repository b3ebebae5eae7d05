/* Kernel signatures, the per-type trait table and the per-ISA kernel tables.
 *
 * Every ISA file (ref/, x86/avx2.c, x86/avx512.c, arm/neon.c) defines kernels with the same contract and
 * registers them into an llp_kernels table. The table of ISA X starts as a copy of the next-lower ISA's
 * table, so a kernel an ISA lacks falls back to the best lower one (ultimately the scalar reference). */
#ifndef LLP_KERNELS_H
#define LLP_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include "blocks.h"

/* x[k] (k a multiple of the block size) -> y */
typedef void (*llp_to_float_fn)(const void *restrict x, float *restrict y, int64_t k);
typedef void (*llp_from_float_fn)(const float *restrict x, void *restrict y, int64_t k);
/* *s = dot(row vx of the weight type, row vy of its vec_dot_type), both n elements */
typedef void (*llp_vec_dot_fn)(int n, float *restrict s, const void *restrict vx, const void *restrict vy);
/* s[r] = dot(row vx + r * bx, row vy) for r < 4: one activation row against 4 weight rows, sharing the
 * activation-side work. Each s[r] has exactly the bits the same table's vec_dot gives for that row, so
 * how rows are grouped never changes a result. */
typedef void (*llp_vec_dot4_fn)(int n, float *restrict s, const void *restrict vx, size_t bx, const void *restrict vy);
/* s[t * ls + r] = dot(row vx + r * bx, row vy + t * by) for r < 4, t < 2: a tile for prompt batches, each
 * weight block unpacked once for both activation rows; again each output has vec_dot's bits. */
typedef void (*llp_vec_dot4x2_fn)(int n, float *restrict s, size_t ls, const void *restrict vx, size_t bx,
                                  const void *restrict vy, size_t by);

/* Attention over an f16 cache, one query row against n cached rows (stride elements apart):
 *   scores: s[j] = scale * (q . k_j), q of head_dim floats (already rounded through f16, as the cache);
 *   accum:  p[j] = f16(p[j] * pscale) in place (softmax weights rounded as ggml rounds them for an f16 V),
 *           then acc[d] += sum_j p[j] * v_j[d].
 * Each dot runs in one of llama.cpp's two CPU orders, so that logits agree with its bit for bit:
 *   lanes = 16: a prompt batch (its f16 GEMM): element i to lane i mod 16 with one fma per element;
 *   lanes = 64: one token (ggml_vec_dot_f16): the same with 64 lanes; in scores, elements past the last
 *               whole 64 add their rounded products in double after the fold (accum pads with zeros).
 * The lanes then fold in halves (l + lanes/2, ..., l + 1). Every ISA gives the scalar twin's bits. */
typedef void (*llp_attn_scores_fn)(int head_dim, const float *restrict q, const llp_fp16 *restrict k, int64_t stride,
                                   int64_t n, float scale, float *restrict s, int lanes);
typedef void (*llp_attn_accum_fn)(int head_dim, float *restrict p, float pscale, const llp_fp16 *restrict v,
                                  int64_t stride, int64_t n, float *restrict acc, int lanes);
/* Softmax numerators: p[j] = llp_ggml_expf(p[j] - mx), returning their sum as ggml's soft_max takes it:
 * each chunk of 16 positions folded in float as above, the chunk sums added in double. */
typedef double (*llp_exp_sum_fn)(float *p, int64_t n, float mx);
/* out[i] = silu(g[i]) * u[i], silu(x) = x / (1 + llp_ggml_expf(-x)); out may be g */
typedef void (*llp_swiglu_fn)(const float *g, const float *u, float *out, int64_t n);
/* exp(x) computed as llama.cpp's AVX-512 code does (ggml_v_expf: x = n ln2 + b, a degree-5 polynomial in
 * b, scaled by 2^n), whose bits the softmax and SiLU must reproduce; within 2 ulp of expf */
float llp_ggml_expf(float x);
/* f32 -> q8_0 as llama.cpp's x86 code quantizes activations (id = 127 / amax, halves to even): the scalar
 * activation quantizer, also what a q8_0 K cache row and the query against it are stored as */
void llp_quantize_row_q8_0_act(const float *restrict x, void *restrict vy, int64_t k);

typedef struct {
    const char *name;          /* ggml's name: "q4_K" */
    int blck_size;             /* elements per block (0: type not supported by the kernels) */
    size_t type_size;          /* bytes per block */
    llp_to_float_fn to_float;  /* scalar dequantize */
    llp_from_float_fn from_float_ref;  /* scalar reference quantizer, bit-exact with ggml's *_ref */
    int vec_dot_type;          /* activation format the dot product takes */
} llp_type_info;

extern const llp_type_info llp_types[LLP_TYPE_COUNT];

typedef enum { LLP_ISA_SCALAR = 0, LLP_ISA_AVX2, LLP_ISA_AVX512, LLP_ISA_AVX512VNNI, LLP_ISA_NEON, LLP_ISA_COUNT } llp_isa;

typedef struct {
    llp_vec_dot_fn vec_dot[LLP_TYPE_COUNT];       /* weight type -> dot with its vec_dot_type */
    llp_from_float_fn from_float[LLP_TYPE_COUNT]; /* fast activation quantizers (q8_0, q8_1, q8_K, f16, bf16) */
    const char *impl[LLP_TYPE_COUNT];             /* which ISA's vec_dot is in use, for `info` */
    llp_vec_dot4_fn vec_dot4[LLP_TYPE_COUNT];     /* optional 4-row twin of vec_dot (NULL: none); an ISA
                                                   * that sets vec_dot[t] must set or clear vec_dot4[t] */
    llp_vec_dot4x2_fn vec_dot4x2[LLP_TYPE_COUNT]; /* optional tile twin of vec_dot, the same rule */
    llp_attn_scores_fn attn_scores;
    llp_attn_accum_fn attn_accum;
    llp_exp_sum_fn exp_sum;
    llp_swiglu_fn swiglu;
} llp_kernels;

/* ---- scalar reference: ref/quants.c, ref/quants_k.c, ref/dot.c ---- */
#define LLP_DECLARE_TYPE(t) \
    void dequantize_row_##t(const void *restrict x, float *restrict y, int64_t k); \
    void quantize_row_##t##_ref(const float *restrict x, void *restrict y, int64_t k);
LLP_DECLARE_TYPE(f16)  LLP_DECLARE_TYPE(bf16)  LLP_DECLARE_TYPE(f32)
LLP_DECLARE_TYPE(q4_0) LLP_DECLARE_TYPE(q4_1) LLP_DECLARE_TYPE(q5_0) LLP_DECLARE_TYPE(q5_1)
LLP_DECLARE_TYPE(q8_0) LLP_DECLARE_TYPE(q8_1)
LLP_DECLARE_TYPE(q2_K) LLP_DECLARE_TYPE(q3_K) LLP_DECLARE_TYPE(q4_K) LLP_DECLARE_TYPE(q5_K)
LLP_DECLARE_TYPE(q6_K) LLP_DECLARE_TYPE(q8_K)
LLP_DECLARE_TYPE(iq4_nl) LLP_DECLARE_TYPE(iq4_xs) LLP_DECLARE_TYPE(tq1_0) LLP_DECLARE_TYPE(tq2_0)
#undef LLP_DECLARE_TYPE

void llp_register_scalar(llp_kernels *k);   /* ref/dot.c: every *_generic dot and activation quantizer */
void llp_register_avx2(llp_kernels *k);     /* x86/avx2.c   (AVX2 + FMA + F16C) */
void llp_register_avx512(llp_kernels *k);   /* x86/avx512.c (AVX-512 F/BW/VL/DQ) */
void llp_register_avx512vnni(llp_kernels *k); /* x86/avx512.c, VNNI variants */
void llp_register_neon(llp_kernels *k);     /* arm/neon.c */

/* ---- dispatch.c ---- */
typedef struct {
    int sse3, ssse3, avx, avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512dq, avx512vnni, avx512bf16,
        avx_vnni, neon, dotprod;
} llp_cpu_features;

const llp_cpu_features *llp_cpu(void);
int llp_isa_supported(llp_isa isa);
const char *llp_isa_name(llp_isa isa);
const llp_kernels *llp_kernels_for(llp_isa isa);  /* NULL when the CPU cannot run isa */
llp_isa llp_best_isa(void);

/* ---- matmul.c: the threaded entry points ---- */
/* Y[t, r] = dot(W row r, X row t) for t < n_tok, r < rows. W is rows x cols in type `type` with
 * w_stride bytes between rows; X is n_tok x cols float32; Y is n_tok x rows float32 with y_stride
 * floats between token rows. `work` holds the quantized activations: llp_matmul_work_size bytes, which
 * is never less than LLP_MAX_THREADS rows (one per thread for a one-token product). */
#define LLP_MAX_THREADS 64
size_t llp_matmul_work_size(int type, int64_t cols, int64_t n_tok);
int llp_matmul(const llp_kernels *k, int type, const void *W, int64_t rows, int64_t cols, size_t w_stride,
               const float *X, int64_t n_tok, float *Y, int64_t y_stride, void *work, int n_threads);

/* Several products of the same input X (n_tok x cols floats): Y_m = X W_m^T for each product m, in one
 * parallel region with one quantization of X (q, k and v; gate and up). Products whose types want X
 * quantized differently run one after the other. Each output has the bits llp_matmul gives it. */
#define LLP_MAX_GROUP 8
typedef struct {
    int type;           /* weight type */
    const void *W;      /* rows x cols, w_stride bytes between rows */
    int64_t rows;
    size_t w_stride;
    float *Y;           /* n_tok x rows, y_stride floats between token rows */
    int64_t y_stride;
} llp_product;
int llp_matmul_group(const llp_kernels *k, const llp_product *prods, int n_prods, int64_t cols, const float *X,
                     int64_t n_tok, void *work, int n_threads);

/* ---- probe.c ---- */
uint64_t llp_read_bytes(const void *p, size_t n, int n_threads);

#endif
