/* The non-matmul operations of a transformer forward pass (ops.c).
 *
 * All are plain C over caller-owned buffers: no allocation, no global state, callable without the GIL.
 * Numerics follow llama.cpp's CPU backend (ggml) on the classic (non flash) attention path:
 *   rms_norm sums squares in double; RoPE angles come from the same running product ggml's rope cache
 *   uses; K and V live in a cache of f16 (the default), f32 or (K only) q8_0, and Q meets K in K's
 *   dot-product partner (f16: Q rounded to f16; q8_0: Q quantized to q8_0; f32: as is); the softmax runs
 *   in f32 with a double sum; the probabilities are rounded to f16 before they weight an f16 V. */
#ifndef LLP_OPS_H
#define LLP_OPS_H

#include <stddef.h>
#include <stdint.h>
#include "blocks.h"
#include "kernels.h"

/* y[r, i] = x[r, i] / sqrt(mean_i(x[r]^2) + eps) * w[i], for n_rows rows of n (y may be x) */
void llp_rmsnorm(const float *x, const float *w, float *y, int64_t n, int64_t n_rows, float eps);

/* Rotary embedding in place on x[t, h, :] (n_tok x n_head x head_dim floats, rows of row_stride floats),
 * token t at position pos[t]. The first n_dims of each head rotate; theta_i = pos * base^(-2i/n_dims).
 * neox = 0: llama's "normal" mode, pairs (2i, 2i+1); neox = 1: pairs (i, i + n_dims/2).
 * Returns nonzero (and does nothing) unless n_dims is even, <= head_dim and <= 1024. */
int llp_rope(float *x, int64_t n_tok, int64_t row_stride, int n_head, int head_dim, int n_dims,
              const int32_t *pos, float base, int neox);

/* RoPE scaling as llama.cpp's rope_yarn applies it (ggml_rope_ext). Per pair i (dims 2i, 2i+1 of the
 * rotated part), with theta_e = pos * base^(-2i/n_dims) (the unscaled angle):
 *   theta_i = freq_scale * theta_e                                   when ext_factor == 0 (linear)
 *   theta_i = freq_scale * theta_e * (1 - m) + theta_e * m,  m = ramp(i) * ext_factor     otherwise,
 *     ramp(i) = 1 - clamp((i - lo) / max(0.001, hi - lo), 0, 1), with the correction dims
 *     lo = max(0, floor(d(beta_fast))), hi = min(n_dims - 1, ceil(d(beta_slow))),
 *     d(b) = n_dims * ln(n_ctx_orig / (b * 2 pi)) / (2 ln(base))
 * and the rotated values are scaled by mscale = attn_factor, times (1 + 0.1 ln(1 / freq_scale)) when
 * ext_factor != 0. freq_scale 1, ext_factor 0, attn_factor 1 is plain RoPE. */
typedef struct {
    float freq_scale;   /* 1 / scaling factor */
    float ext_factor;   /* 0: no YaRN ramp (linear scaling); llama.cpp uses 1 for yarn models */
    float attn_factor;  /* extra magnitude scale (1 unless the model says otherwise) */
    float beta_fast;    /* 32 in llama.cpp */
    float beta_slow;    /* 1 in llama.cpp */
    int n_ctx_orig;     /* the context the model was trained on before scaling */
} llp_rope_scaling;

/* llp_rope with scaling (s may be NULL: none) */
int llp_rope_ext(float *x, int64_t n_tok, int64_t row_stride, int n_head, int head_dim, int n_dims,
                 const int32_t *pos, float base, int neox, const llp_rope_scaling *s);

/* out[t, :] = row ids[t] of W (type `type`, rows of `cols` elements, w_stride bytes apart) as floats */
int llp_get_rows(int type, const void *W, size_t w_stride, int64_t cols, const int32_t *ids, int64_t n,
                 float *out);

/* out[i] = silu(g[i]) * u[i] = g[i] / (1 + exp(-g[i])) * u[i]   (out may alias g or u) */

/* gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) in float */
float llp_gelu_tanh(float x);

/* out[i] = gelu(g[i]) * u[i] as ggml's CPU backend computes GEGLU: g at or below -10 gives 0, at or above 10
 * gives g * u, else gelu is read from a table over f16 inputs (g rounded to f16; the table entry is
 * f16(llp_gelu_tanh(x))). out may alias g or u. */
void llp_geglu(const float *g, const float *u, float *out, int64_t n);

/* x[i] = tanh(x[i] / cap) * cap (logit soft-capping) */
void llp_softcap(float *x, float cap, int64_t n);

/* x[i] += y[i] */
void llp_add(float *x, const float *y, int64_t n);

/* x[r, i] += b[i] for n_rows rows of n (a bias on every row) */
void llp_add_rows(float *x, const float *b, int64_t n, int64_t n_rows);

/* x[i] *= s */
void llp_scale(float *x, float s, int64_t n);

/* dst[i] = f16(src[i]) */
void llp_f32_to_f16_row(const float *src, llp_fp16 *dst, int64_t n);

/* ---- KV cache ---- */

/* Bytes of n cache elements of `type` (LLP_F32, LLP_F16, LLP_Q8_0; n a multiple of 32 for q8_0);
 * 0 for any other type. */
/* x = H x / sqrt(n) per n-element chunk (n a power of two), as llama.cpp rotates q and k for a quantized
 * K cache; H H = n I, so applying it twice gives x back (up to rounding) */
void llp_fwht(float *x, int64_t n_chunks, int n);
size_t llp_kv_row_size(int type, int64_t n);

/* dst = n floats of src stored as `type` (q8_0: quantized as ggml's CPU backend quantizes a row for a
 * q8_0 cache or a q8_0 dot product); returns 1 for an unsupported type or length. */
int llp_kv_store(int type, const float *src, void *dst, int64_t n);

/* One layer's K and V cache: position p's row (n_kv_head * head_dim elements) at k + p * k_row bytes (v
 * likewise). K is f32, f16 or q8_0; V f32 or f16. q8_dot: the q8_0 . q8_0 dot used for a q8_0 K. */
typedef struct {
    const void *k, *v;
    int k_type, v_type;
    size_t k_row, v_row;
    llp_vec_dot_fn q8_dot;
    const llp_kernels *kern;   /* the path's attention kernels, used for an f16 K / V (and the softmax) */
} llp_kv;

/* Scratch floats llp_attention needs per thread for contexts of up to n_ctx positions. */
size_t llp_attention_work_size(int64_t n_ctx, int head_dim);

/* Causal multi-head attention with grouped K/V heads over the cache, for tokens of one or several
 * sequences (each sequence has its own n_ctx cache rows, starting at row row0[t] for token t).
 *   q:   n_tok x (n_head * head_dim) floats, rows q_stride floats apart (already rotated)
 *   kv:  the layer's cache; rows row0[t] + 0 .. row0[t] + pos[t] must be filled
 *   out: n_tok x (n_head * head_dim) floats, rows out_stride floats apart
 * Query token t sits at position p = pos[t] of its sequence and sees positions 0 .. p, or only the last n_swa
 * of them (p - n_swa + 1 .. p: a sliding window, as llama.cpp's standard SWA mask) when n_swa > 0; head h
 * reads K/V head h / (n_head / n_kv_head). scores = (q' . k) * scale with q' = q in K's partner type,
 * p = softmax(scores), out = p' . v with p' = f16(p) for an f16 V, p for an f32 V. One token sums its dots
 * in llama.cpp's one-token order, several in its batch order (kernels.h).
 * work: n_threads * llp_attention_work_size(n_ctx, head_dim) floats. Returns 1 for unsupported cache types. */
int llp_attention(const float *q, int64_t q_stride, const llp_kv *kv, float *out, int64_t out_stride,
                  int64_t n_tok, const int32_t *pos, const int64_t *row0, int n_head, int n_kv_head, int head_dim,
                  float scale, int64_t n_swa, int64_t n_ctx, float *work, int n_threads);

#endif
