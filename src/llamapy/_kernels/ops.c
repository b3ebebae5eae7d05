/* Forward-pass operations other than the matmul: see include/ops.h for the contracts. */
#include <math.h>
#include <string.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#include "include/kernels.h"
#include "include/ops.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define LOAD_ACQUIRE(p) __atomic_load_n(p, __ATOMIC_ACQUIRE)
#define STORE_RELEASE(p, v) __atomic_store_n(p, v, __ATOMIC_RELEASE)
#else
#define LOAD_ACQUIRE(p) (*(volatile int *)(p))
#define STORE_RELEASE(p, v) (*(volatile int *)(p) = (v))
#endif

/* ---- f16 -> f32 through a table (as ggml does): one load per element on every ISA ---- */

static float f16_table[1 << 16];
static int f16_table_ready;

static void f16_table_init(void) {
    if (LOAD_ACQUIRE(&f16_table_ready)) return;
    #pragma omp critical(llp_f16_table)
    {
        if (!f16_table_ready) {
            for (uint32_t i = 0; i < (1u << 16); i++) f16_table[i] = llp_fp16_to_f32((llp_fp16)i);
            STORE_RELEASE(&f16_table_ready, 1);
        }
    }
}

void llp_rmsnorm(const float *x, const float *w, float *y, int64_t n, int64_t n_rows, float eps) {
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        double sum = 0.0;                                  /* ggml sums the squares in double */
        for (int64_t i = 0; i < n; i++) sum += (double)(xr[i] * xr[i]);
        const float mean = (float)(sum / (double)n);
        const float s = 1.0f / sqrtf(mean + eps);
        for (int64_t i = 0; i < n; i++) yr[i] = (xr[i] * s) * w[i];  /* rms_norm, then mul by weight */
    }
}

int llp_rope(float *x, int64_t n_tok, int64_t row_stride, int n_head, int head_dim, int n_dims,
              const int32_t *pos, float base, int neox) {
    return llp_rope_ext(x, n_tok, row_stride, n_head, head_dim, n_dims, pos, base, neox, NULL);
}

/* ggml_rope_yarn_corr_dim: the dim at which the rotation makes n_rot turns over n_ctx_orig positions */
static float yarn_corr_dim(int n_dims, int n_ctx_orig, float n_rot, float base) {
    return n_dims * logf(n_ctx_orig / (n_rot * 2 * (float)M_PI)) / (2 * logf(base));
}

int llp_rope_ext(float *x, int64_t n_tok, int64_t row_stride, int n_head, int head_dim, int n_dims,
                 const int32_t *pos, float base, int neox, const llp_rope_scaling *s) {
    const float theta_scale = powf(base, -2.0f / (float)n_dims);
    float cs[2 * 512];                                     /* (cos, sin) per pair: n_dims <= 1024 */
    float freq_scale = 1.0f, ext_factor = 0.0f, mscale = 1.0f, lo = 0.0f, hi = 0.0f;
    if (n_dims > 1024 || n_dims > head_dim || n_dims % 2) return 1;
    if (s) {
        freq_scale = s->freq_scale;
        ext_factor = s->ext_factor;
        mscale = s->attn_factor;
        if (ext_factor != 0.0f) {
            const float start = floorf(yarn_corr_dim(n_dims, s->n_ctx_orig, s->beta_fast, base));
            const float end = ceilf(yarn_corr_dim(n_dims, s->n_ctx_orig, s->beta_slow, base));
            lo = start > 0.0f ? start : 0.0f;
            hi = end < (float)(n_dims - 1) ? end : (float)(n_dims - 1);
            mscale *= 1.0f + 0.1f * logf(1.0f / freq_scale);
        }
    }
    for (int64_t t = 0; t < n_tok; t++) {
        /* theta_i = pos * theta_scale^i, built by the same running product as ggml's rope cache */
        float theta_e = (float)pos[t];
        for (int i = 0; i < n_dims / 2; i++) {
            float theta = freq_scale * theta_e;
            if (ext_factor != 0.0f) {
                float y = ((float)i - lo) / fmaxf(0.001f, hi - lo);
                const float ramp = 1.0f - fminf(1.0f, fmaxf(0.0f, y)), mix = ramp * ext_factor;
                theta = theta * (1 - mix) + theta_e * mix;
            }
            cs[2 * i] = cosf(theta) * mscale;
            cs[2 * i + 1] = sinf(theta) * mscale;
            theta_e *= theta_scale;
        }
        for (int h = 0; h < n_head; h++) {
            float *v = x + t * row_stride + (int64_t)h * head_dim;
            for (int i = 0; i < n_dims / 2; i++) {
                const int a = neox ? i : 2 * i, b = neox ? i + n_dims / 2 : 2 * i + 1;
                const float c = cs[2 * i], sn = cs[2 * i + 1], x0 = v[a], x1 = v[b];
                /* ggml's C compiled with contraction: the first product fused into the sum */
                v[a] = fmaf(x0, c, -(x1 * sn));
                v[b] = fmaf(x0, sn, x1 * c);
            }
        }
    }
    return 0;
}

int llp_get_rows(int type, const void *W, size_t w_stride, int64_t cols, const int32_t *ids, int64_t n,
                 float *out) {
    if (type < 0 || type >= LLP_TYPE_COUNT || llp_types[type].to_float == NULL) return 1;
    for (int64_t t = 0; t < n; t++)
        llp_types[type].to_float((const uint8_t *)W + (size_t)ids[t] * w_stride, out + t * cols, cols);
    return 0;
}

/* ---- GELU through an f16 table, as ggml's CPU backend evaluates it ---- */

static llp_fp16 gelu_table[1 << 16];
static int gelu_table_ready;

float llp_gelu_tanh(float x) {
    const float sqrt_2_over_pi = 0.79788456080286535587989211986876f, coef_a = 0.044715f;
    /* 1 + a x^2 fused, as ggml's C compiled with contraction evaluates it */
    return 0.5f * x * (1.0f + tanhf(sqrt_2_over_pi * x * fmaf(coef_a * x, x, 1.0f)));
}

static void gelu_table_init(void) {
    if (LOAD_ACQUIRE(&gelu_table_ready)) return;
    #pragma omp critical(llp_gelu_table)
    {
        if (!gelu_table_ready) {
            for (uint32_t i = 0; i < (1u << 16); i++)
                gelu_table[i] = llp_f32_to_fp16(llp_gelu_tanh(llp_fp16_to_f32((llp_fp16)i)));
            STORE_RELEASE(&gelu_table_ready, 1);
        }
    }
}

void llp_geglu(const float *g, const float *u, float *out, int64_t n) {
    gelu_table_init();
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i];
        if (x <= -10.0f) out[i] = 0.0f;
        else if (x >= 10.0f) out[i] = x * u[i];
        else out[i] = llp_fp16_to_f32(gelu_table[llp_f32_to_fp16(x)]) * u[i];
    }
}

void llp_softcap(float *x, float cap, int64_t n) {
    const float inv = 1.0f / cap;
    for (int64_t i = 0; i < n; i++) x[i] = tanhf(x[i] * inv) * cap;
}

void llp_add(float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

void llp_add_rows(float *x, const float *b, int64_t n, int64_t n_rows) {
    for (int64_t r = 0; r < n_rows; r++)
        for (int64_t i = 0; i < n; i++) x[r * n + i] += b[i];
}

void llp_scale(float *x, float s, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] *= s;
}

void llp_f32_to_f16_row(const float *src, llp_fp16 *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = llp_f32_to_fp16(src[i]);
}

/* x = H x / sqrt(n) on each n-element chunk (n a power of two): llama.cpp's fast Walsh-Hadamard transform,
 * which it applies to q and k ahead of a quantized K cache (outliers spread over the block, so q8_0 loses
 * less). Scale first, then butterflies of width 1, 2, ..., n/2: the order fixes the bits. */
void llp_fwht(float *x, int64_t n_chunks, int n) {
    const float scale = 1.0f / sqrtf((float)n);
    for (int64_t c = 0; c < n_chunks; c++) {
        float *v = x + c * n;
        for (int j = 0; j < n; j++) v[j] *= scale;
        for (int len = 1; len < n; len <<= 1)
            for (int i = 0; i < n; i += 2 * len)
                for (int j = i; j < i + len; j++) {
                    const float a = v[j], b = v[j + len];
                    v[j] = a + b;
                    v[j + len] = a - b;
                }
    }
}

/* ---- KV cache ---- */

size_t llp_kv_row_size(int type, int64_t n) {
    switch (type) {
    case LLP_F32: return (size_t)n * sizeof(float);
    case LLP_F16: return (size_t)n * sizeof(llp_fp16);
    case LLP_Q8_0: return n % QK8_0 ? 0 : (size_t)(n / QK8_0) * sizeof(block_q8_0);
    default: return 0;
    }
}

int llp_kv_store(int type, const float *src, void *dst, int64_t n) {
    switch (type) {
    case LLP_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return 0;
    case LLP_F16: llp_f32_to_f16_row(src, dst, n); return 0;
    case LLP_Q8_0:
        if (n % QK8_0) return 1;
        llp_quantize_row_q8_0_act(src, dst, n);
        return 0;
    default: return 1;
    }
}

size_t llp_attention_work_size(int64_t n_ctx, int head_dim) {
    return (size_t)n_ctx + 2 * (size_t)head_dim;
}

/* sum_i a[i] * b[i] with stride-`bs` b, in llama.cpp's f32 orders (see kernels.h for f16): `lanes` lanes with
 * one fma per element, folded in halves; with 64 lanes (ggml_vec_dot_f32) the elements past the last whole
 * 64 are fused on in float after the fold, unless `padded` (over cache positions, which llama.cpp pads
 * with masked ones to a multiple of 256) */
static float dot_f32_lanes(const float *a, const float *b, int64_t bs, int64_t n, int lanes, int padded) {
    float lane[64] = {0};
    const int64_t whole = lanes == 64 && !padded ? n / 64 * 64 : n;
    for (int64_t i = 0; i < whole; i++) lane[i % lanes] = fmaf(a[i], b[i * bs], lane[i % lanes]);
    for (int w = lanes / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) lane[l] += lane[l + w];
    float sum = lane[0];
    for (int64_t i = whole; i < n; i++) sum = fmaf(a[i], b[i * bs], sum);
    return sum;
}

/* one query row of one head against positions j0 .. n_kv - 1; k, v point at this K/V head in position 0 */
static void attend_one(const float *q, const uint8_t *k, const uint8_t *v, const llp_kv *kv, float *out,
                       int64_t j0, int64_t n_kv, int head_dim, float scale, int lanes, float *work) {
    float *qh = work;                   /* [head_dim] q in K's partner type (f16 values, or q8_0 blocks) */
    float *acc = work + head_dim;       /* [head_dim] f32 accumulator of p . V */
    float *p = work + 2 * head_dim;     /* [n_kv - j0] scores, then probabilities (p[j - j0] for position j) */
    const size_t k_row = kv->k_row, v_row = kv->v_row;
    /* scores_j = (q . k_j) * scale */
    float mx = -INFINITY;
    switch (kv->k_type) {
    case LLP_F16:
        for (int d = 0; d < head_dim; d++) qh[d] = f16_table[llp_f32_to_fp16(q[d])];
        kv->kern->attn_scores(head_dim, qh, (const llp_fp16 *)(k + j0 * k_row), (int64_t)(k_row / sizeof(llp_fp16)),
                              n_kv - j0, scale, p, lanes);
        for (int64_t j = j0; j < n_kv; j++)
            if (p[j - j0] > mx) mx = p[j - j0];
        break;
    case LLP_F32:
        for (int64_t j = j0; j < n_kv; j++) {
            /* a batch too: llama.cpp's f32 GEMM never sees q (permuted, and already in K's partner type) */
            p[j - j0] = dot_f32_lanes(q, (const float *)(k + j * k_row), 1, head_dim, 64, 0) * scale;
            if (p[j - j0] > mx) mx = p[j - j0];
        }
        break;
    case LLP_Q8_0: {
        block_q8_0 *q8 = (block_q8_0 *)qh;   /* head_dim / 32 blocks: 34 bytes per 32 floats fit in qh */
        llp_quantize_row_q8_0_act(q, q8, head_dim);
        for (int64_t j = j0; j < n_kv; j++) {
            float s;
            kv->q8_dot(head_dim, &s, k + j * k_row, q8);
            p[j - j0] = s * scale;
            if (p[j - j0] > mx) mx = p[j - j0];
        }
        break;
    }
    }
    /* p = softmax(scores): exp in f32, sum in double */
    const double sum = kv->kern->exp_sum(p, n_kv - j0, mx);
    const float inv = (float)(1.0 / sum);
    memset(acc, 0, sizeof(float) * (size_t)head_dim);
    if (kv->v_type == LLP_F16) {
        /* out = f16(p) . V */
        kv->kern->attn_accum(head_dim, p, inv, (const llp_fp16 *)(v + j0 * v_row), (int64_t)(v_row / sizeof(llp_fp16)),
                             n_kv - j0, acc, lanes);
    } else {
        /* out = p . V, p kept in f32 (an f32 V takes f32 weights) */
        for (int64_t j = j0; j < n_kv; j++) p[j - j0] *= inv;
        for (int d = 0; d < head_dim; d++)
            acc[d] = dot_f32_lanes(p, (const float *)(v + j0 * v_row) + d, (int64_t)(v_row / sizeof(float)), n_kv - j0, lanes, 1);
    }
    memcpy(out, acc, sizeof(float) * (size_t)head_dim);
}

int llp_attention(const float *q, int64_t q_stride, const llp_kv *kv, float *out, int64_t out_stride,
                  int64_t n_tok, const int32_t *pos, const int64_t *row0, int n_head, int n_kv_head, int head_dim,
                  float scale, int64_t n_swa, int64_t n_ctx, float *work, int n_threads) {
    if (kv->kern == NULL
        || !(kv->k_type == LLP_F16 || kv->k_type == LLP_F32 || (kv->k_type == LLP_Q8_0 && kv->q8_dot != NULL))
        || !(kv->v_type == LLP_F16 || kv->v_type == LLP_F32))
        return 1;
    const size_t k_head = llp_kv_row_size(kv->k_type, head_dim), v_head = llp_kv_row_size(kv->v_type, head_dim);
    if (k_head == 0 || v_head == 0) return 1;
    f16_table_init();
    const int group = n_head / n_kv_head;
    const int64_t n_items = n_tok * n_head;
    const size_t wsize = llp_attention_work_size(n_ctx, head_dim);
    if (n_threads < 1) n_threads = 1;
    if (n_items < n_threads) n_threads = (int)n_items;
    /* llama.cpp sums f16 attention dots in one order for a batch and another for a single token */
    const int lanes = n_tok == 1 ? 64 : 16;
    /* every (token, head) is computed whole by one thread: results do not depend on n_threads */
    #pragma omp parallel num_threads(n_threads) if (n_threads > 1)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *w = work + (size_t)tid * wsize;
        #pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < n_items; it++) {
            const int64_t t = it / n_head;
            const int h = (int)(it % n_head), kh = h / group;
            const int64_t p = pos[t], j0 = (n_swa > 0 && p >= n_swa) ? p - n_swa + 1 : 0;
            const uint8_t *k = (const uint8_t *)kv->k + (size_t)row0[t] * kv->k_row + (size_t)kh * k_head;
            const uint8_t *v = (const uint8_t *)kv->v + (size_t)row0[t] * kv->v_row + (size_t)kh * v_head;
            attend_one(q + t * q_stride + (int64_t)h * head_dim, k, v, kv, out + t * out_stride + (int64_t)h * head_dim,
                       j0, p + 1, head_dim, scale, lanes, w);
        }
    }
    return 0;
}
