/* Scalar reference (de)quantizers for the K formats: super-blocks of QK_K = 256 elements whose
 * sub-block scales (and mins) are themselves quantized against one or two fp16 super-block scales.
 *
 * The quantizers reproduce ggml's reference algorithms (the ones llama-quantize runs without an
 * importance matrix) with the same float operations in the same order, so their bytes equal ggml's;
 * tests/test_quants_k.py checks that against bytes made by ggml. Built with -ffp-contract=off: a fused
 * multiply-add would round differently. */
#include <math.h>
#include <stdbool.h>
#include <string.h>
#include "../include/kernels.h"

/* A group whose largest magnitude is below this is treated as all zeros. */
#define GROUP_MAX_EPS 1e-15f

/* The largest sub-block the scale searches see (q4_K/q5_K: 32; q2_K, q3_K, q6_K: 16). */
#define MAX_GROUP 32

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Round to nearest, ties to even, by adding 1.5 * 2^23 (valid for |x| < 2^22). Out of that range the
 * result is garbage, but the same garbage as ggml's, which matters for bit-exactness on odd inputs. */
static inline int nearest_int(float x) {
    float v = x + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof(i));
    return (i & 0x007fffff) - 0x00400000;
}

/* ======================================================================================
 * Scale searches
 * ====================================================================================== */

/* The element of largest magnitude, sign kept (the first one on ties); its magnitude in *amax. */
static float signed_absmax(int n, const float *x, float *amax) {
    float max = 0.f, a = 0.f;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > a) {
            a = fabsf(x[i]);
            max = x[i];
        }
    }
    *amax = a;
    return max;
}

/* Levels round(iscale * x) clamped to [-nmax, nmax-1] into L (offset by +nmax), and the x^2-weighted
 * sums sum(w x l) and sum(w l^2) of the least-squares scale sumlx / suml2. */
static void symmetric_levels(int n, int nmax, const float *x, float iscale, int8_t *L, float *sumlx, float *suml2) {
    float slx = 0.f, sl2 = 0.f;
    for (int i = 0; i < n; i++) {
        int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        slx += w * x[i] * l;
        sl2 += w * l * l;
    }
    *sumlx = slx;
    *suml2 = sl2;
}

/* Symmetric scale for n values on levels [-nmax, nmax-1] (ggml's make_qx_quants, weights x^2): tries
 * 19 inverse scales around -nmax/max and keeps the one whose least-squares fit explains the most. */
static float fit_symmetric(int n, int nmax, const float *x, int8_t *L) {
    float amax;
    float max = signed_absmax(n, x, &amax);
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float sumlx, suml2;
    symmetric_levels(n, nmax, x, -nmax / max, L, &sumlx, &suml2);
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;  /* the explained energy sumlx^2 / suml2 */
    int8_t Laux[MAX_GROUP];
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        float iscale = -(nmax + 0.1f * is) / max;
        symmetric_levels(n, nmax, x, iscale, Laux, &sumlx, &suml2);
        /* sumlx^2 / suml2 > best, without the division */
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            memcpy(L, Laux, (size_t)n);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Symmetric scale for n values on levels [-nmax, nmax-1] (ggml's make_q3_quants with rmse): starts from
 * -nmax/max, then moves single levels while that raises sumlx^2 / suml2 (weights x^2), up to 5 passes.
 * L gets the levels offset by +nmax. */
static float fit_symmetric_greedy(int n, int nmax, const float *x, int8_t *L) {
    float amax;
    float max = signed_absmax(n, x, &amax);
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0.f, suml2 = 0.f;
    for (int i = 0; i < n; i++) {
        int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            /* the sums without element i, and the level that fits it best under their scale */
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = clampi(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* sum w * |scale*L + min - x| (use_mad) or sum w * (scale*L + min - x)^2: the error of a scale/min fit. */
static float scale_min_error(int n, const float *x, const float *w, const uint8_t *L, float scale, float min,
                             bool use_mad) {
    float err = 0.f;
    for (int i = 0; i < n; i++) {
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        err += w[i] * diff;
    }
    return err;
}

/* Scale and min for n values on levels [0, nmax], x ~ scale*L - the_min (ggml's make_qkx2_quants).
 * Starts from the min/max range, then for nstep+1 level sets (inverse scales (nmax + rmin + rdelta*is) /
 * range) solves the weighted least-squares scale and min, keeping the fit of least weighted error. */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min,
                           float rmin, float rdelta, int nstep, bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;  /* the min is subtracted, so it never goes above zero */
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    for (int i = 0; i < n; i++) L[i] = (uint8_t)clampi(nearest_int(iscale * (x[i] - min)), 0, nmax);
    float best_error = scale_min_error(n, x, w, L, scale, min, use_mad);

    uint8_t Laux[MAX_GROUP];
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        /* weighted least squares of x on (L, 1) */
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {  /* a positive offset is not representable: refit the scale alone */
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = scale_min_error(n, x, w, Laux, this_scale, this_min, use_mad);
            if (err < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* ======================================================================================
 * Packing helpers
 * ====================================================================================== */

/* 2-bit levels of a super-block: byte 32h + r holds elements 128h + r + 32s at bits 2s (s = 0..3). */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int h = 0; h < QK_K / 128; h++) {
        const uint8_t *Lh = L + 128 * h;
        for (int r = 0; r < 32; r++)
            qs[32 * h + r] = (uint8_t)(Lh[r] | (Lh[r + 32] << 2) | (Lh[r + 64] << 4) | (Lh[r + 96] << 6));
    }
}

/* q4_K/q5_K: 6-bit scale and min of sub-block j (of 8). Bytes 0-3 hold scales 0-3, bytes 4-7 mins 0-3
 * (low 6 bits); bytes 8-11 hold the low nibbles of scales/mins 4-7, whose top 2 bits sit in the top
 * bits of bytes 0-3 (scales) and 4-7 (mins). */
static inline void get_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* The inverse of get_scale_min_k4 for sub-block j; sub-block j-4 must already be stored. */
static inline void set_scale_min_k4(int j, uint8_t *q, uint8_t sc, uint8_t m) {
    if (j < 4) {
        q[j] = sc;
        q[j + 4] = m;
    } else {
        q[j + 4] = (uint8_t)((sc & 0xF) | ((m & 0xF) << 4));
        q[j - 4] |= (uint8_t)((sc >> 4) << 6);
        q[j] |= (uint8_t)((m >> 4) << 6);
    }
}

/* q3_K: 6-bit scale j (of 16), stored +32. Low nibbles: bytes 0-7 (j < 8 low half, j >= 8 high half of
 * byte j-8); top 2 bits: byte 8 + j%4 at bits 2*(j/4). Returns the signed scale. */
static inline int get_scale_q3(int j, const uint8_t *q) {
    int lo = j < 8 ? q[j] & 0xF : q[j - 8] >> 4;
    int hi = (q[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* The inverse of get_scale_q3 for an offset scale v in [0, 63]; q must start zeroed. */
static inline void set_scale_q3(int j, uint8_t *q, int v) {
    if (j < 8)
        q[j] = (uint8_t)(v & 0xF);
    else
        q[j - 8] |= (uint8_t)((v & 0xF) << 4);
    q[8 + j % 4] |= (uint8_t)((v >> 4) << (2 * (j / 4)));
}

/* ======================================================================================
 * q2_K: 16 sub-blocks of 16, 2-bit levels, 4-bit scale and min per sub-block
 * ====================================================================================== */

void quantize_row_q2_K_ref(const float *restrict x, void *restrict vy, int64_t k) {
    block_q2_K *y = vy;
    const int64_t nb = k / QK_K;
    const float q4scale = 15.f;
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        uint8_t L[QK_K];
        float w[16], scales[QK_K / 16], mins[QK_K / 16];
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            for (int l = 0; l < 16; l++) w[l] = fabsf(x[16 * j + l]);
            scales[j] = fit_scale_min(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }

        /* sub-block scales and mins to 4 bits against the largest of each */
        if (max_scale > 0) {
            float iscale = q4scale / max_scale;
            for (int j = 0; j < QK_K / 16; j++) y[i].scales[j] = (uint8_t)nearest_int(iscale * scales[j]);
            y[i].d = llp_f32_to_fp16(max_scale / q4scale);
        } else {
            memset(y[i].scales, 0, sizeof(y[i].scales));
            y[i].d = llp_f32_to_fp16(0.f);
        }
        if (max_min > 0) {
            float iscale = q4scale / max_min;
            for (int j = 0; j < QK_K / 16; j++)
                y[i].scales[j] |= (uint8_t)((unsigned)nearest_int(iscale * mins[j]) << 4);
            y[i].dmin = llp_f32_to_fp16(max_min / q4scale);
        } else {
            y[i].dmin = llp_f32_to_fp16(0.f);
        }

        /* requantize against the scales as stored; a zero scale keeps the search's levels */
        const float d_all = llp_fp16_to_f32(y[i].d), dmin_all = llp_fp16_to_f32(y[i].dmin);
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = d_all * (y[i].scales[j] & 0xF);
            if (!d) continue;
            const float dm = dmin_all * (y[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (uint8_t)clampi(nearest_int((x[16 * j + l] + dm) / d), 0, 3);
        }
        pack_2bit(L, y[i].qs);
    }
}

void dequantize_row_q2_K(const void *restrict vx, float *restrict y, int64_t k) {
    const block_q2_K *x = vx;
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++, y += QK_K) {
        const float d = llp_fp16_to_f32(x[i].d), dmin = llp_fp16_to_f32(x[i].dmin);
        for (int j = 0; j < QK_K / 16; j++) {
            const uint8_t sc = x[i].scales[j];
            const float dl = d * (sc & 0xF), ml = dmin * (sc >> 4);
            for (int l = 0; l < 16; l++) {
                const int e = 16 * j + l;  /* element e: byte 32*(e/128) + e%32, bits 2*((e/32)%4) */
                const int q = (x[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
                y[e] = dl * q - ml;
            }
        }
    }
}

/* ======================================================================================
 * q3_K: 16 sub-blocks of 16, 3-bit signed levels (2 low bits + hmask bit), 6-bit signed scales
 * ====================================================================================== */

void quantize_row_q3_K_ref(const float *restrict x, void *restrict vy, int64_t k) {
    block_q3_K *y = vy;
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        int8_t L[QK_K];
        float scales[QK_K / 16];
        float max_scale = 0, amax = 0;  /* the scale of largest magnitude, sign kept */
        for (int j = 0; j < QK_K / 16; j++) {
            scales[j] = fit_symmetric_greedy(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }

        /* sub-block scales to 6 bits, the largest mapped to -32 */
        memset(y[i].scales, 0, sizeof(y[i].scales));
        if (max_scale) {
            float iscale = -32.f / max_scale;
            for (int j = 0; j < QK_K / 16; j++) {
                int8_t l = (int8_t)nearest_int(iscale * scales[j]);
                set_scale_q3(j, y[i].scales, clampi(l, -32, 31) + 32);
            }
            y[i].d = llp_f32_to_fp16(1 / iscale);
        } else {
            y[i].d = llp_f32_to_fp16(0.f);
        }

        /* requantize against the scales as stored; a zero scale keeps the search's levels */
        const float d_all = llp_fp16_to_f32(y[i].d);
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = d_all * get_scale_q3(j, y[i].scales);
            if (!d) continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (int8_t)(clampi(nearest_int(x[16 * j + l] / d), -4, 3) + 4);
        }

        /* high bit of element e at hmask[e % 32], bit e / 32; the low 2 bits as q2_K */
        uint8_t low[QK_K];
        memset(y[i].hmask, 0, sizeof(y[i].hmask));
        for (int e = 0; e < QK_K; e++) {
            if (L[e] > 3) y[i].hmask[e % 32] |= (uint8_t)(1 << (e / 32));
            low[e] = (uint8_t)(L[e] & 3);
        }
        pack_2bit(low, y[i].qs);
    }
}

void dequantize_row_q3_K(const void *restrict vx, float *restrict y, int64_t k) {
    const block_q3_K *x = vx;
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++, y += QK_K) {
        const float d = llp_fp16_to_f32(x[i].d);
        for (int j = 0; j < QK_K / 16; j++) {
            const float dl = d * get_scale_q3(j, x[i].scales);
            for (int l = 0; l < 16; l++) {
                const int e = 16 * j + l;
                const int lo = (x[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
                const int hi = (x[i].hmask[e % 32] >> (e / 32)) & 1;
                y[e] = dl * (lo - (hi ? 0 : 4));
            }
        }
    }
}

/* ======================================================================================
 * q4_K and q5_K: 8 sub-blocks of 32, 4- or 5-bit levels, 6-bit scale and min per sub-block
 * ====================================================================================== */

/* The part q4_K and q5_K share: levels L[QK_K] in [0, nmax], the packed 6-bit scales/mins and the two
 * fp16 super-block scales. Each sub-block is fitted with weights rms(sub-block) + |x|. */
static void quantize_scale_min_6bit(const float *x, int nmax, float rmin, int nstep, uint8_t *L,
                                    uint8_t packed[K_SCALE_SIZE], llp_fp16 *d_out, llp_fp16 *dmin_out) {
    float w[32], scales[QK_K / 32], mins[QK_K / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; j++) {
        const float *xb = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xb[l] * xb[l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(xb[l]);
        scales[j] = fit_scale_min(32, nmax, xb, w, L + 32 * j, &mins[j], rmin, 0.1f, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }

    /* sub-block scales and mins to 6 bits against the largest of each */
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
        set_scale_min_k4(j, packed, ls < 63 ? ls : 63, lm < 63 ? lm : 63);
    }
    *d_out = llp_f32_to_fp16(max_scale / 63.f);
    *dmin_out = llp_f32_to_fp16(max_min / 63.f);

    /* requantize against the scales as stored; a zero scale keeps the search's levels */
    const float d_all = llp_fp16_to_f32(*d_out), dmin_all = llp_fp16_to_f32(*dmin_out);
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, m;
        get_scale_min_k4(j, packed, &sc, &m);
        const float d = d_all * sc;
        if (!d) continue;
        const float dm = dmin_all * m;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)clampi(nearest_int((x[32 * j + l] + dm) / d), 0, nmax);
    }
}

void quantize_row_q4_K_ref(const float *restrict x, void *restrict vy, int64_t k) {
    block_q4_K *y = vy;
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        uint8_t L[QK_K];
        quantize_scale_min_6bit(x, 15, -1.f, 20, L, y[i].scales, &y[i].d, &y[i].dmin);
        /* byte 32p + r: element 64p + r in the low nibble, 64p + 32 + r in the high nibble */
        for (int p = 0; p < QK_K / 64; p++)
            for (int r = 0; r < 32; r++)
                y[i].qs[32 * p + r] = (uint8_t)(L[64 * p + r] | (L[64 * p + 32 + r] << 4));
    }
}

void dequantize_row_q4_K(const void *restrict vx, float *restrict y, int64_t k) {
    const block_q4_K *x = vx;
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++, y += QK_K) {
        const float d = llp_fp16_to_f32(x[i].d), dmin = llp_fp16_to_f32(x[i].dmin);
        for (int j = 0; j < QK_K / 32; j++) {
            uint8_t sc, m;
            get_scale_min_k4(j, x[i].scales, &sc, &m);
            const float dl = d * sc, ml = dmin * m;
            const uint8_t *q = x[i].qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            for (int r = 0; r < 32; r++) y[32 * j + r] = dl * ((q[r] >> shift) & 0xF) - ml;
        }
    }
}

void quantize_row_q5_K_ref(const float *restrict x, void *restrict vy, int64_t k) {
    block_q5_K *y = vy;
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        uint8_t L[QK_K];
        quantize_scale_min_6bit(x, 31, -0.5f, 15, L, y[i].scales, &y[i].d, &y[i].dmin);
        /* low 4 bits as q4_K; the 5th bit of element 32j + r at qh[r], bit j */
        memset(y[i].qh, 0, sizeof(y[i].qh));
        for (int e = 0; e < QK_K; e++)
            if (L[e] > 15) y[i].qh[e % 32] |= (uint8_t)(1 << (e / 32));
        for (int p = 0; p < QK_K / 64; p++)
            for (int r = 0; r < 32; r++)
                y[i].qs[32 * p + r] = (uint8_t)((L[64 * p + r] & 0xF) | ((L[64 * p + 32 + r] & 0xF) << 4));
    }
}

void dequantize_row_q5_K(const void *restrict vx, float *restrict y, int64_t k) {
    const block_q5_K *x = vx;
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++, y += QK_K) {
        const float d = llp_fp16_to_f32(x[i].d), dmin = llp_fp16_to_f32(x[i].dmin);
        for (int j = 0; j < QK_K / 32; j++) {
            uint8_t sc, m;
            get_scale_min_k4(j, x[i].scales, &sc, &m);
            const float dl = d * sc, ml = dmin * m;
            const uint8_t *q = x[i].qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            for (int r = 0; r < 32; r++) {
                const int hi = (x[i].qh[r] >> j) & 1;
                y[32 * j + r] = dl * (((q[r] >> shift) & 0xF) + 16 * hi) - ml;
            }
        }
    }
}

/* ======================================================================================
 * q6_K: 16 sub-blocks of 16, 6-bit signed levels (4 low bits + 2 high bits), 8-bit signed scales
 * ====================================================================================== */

void quantize_row_q6_K_ref(const float *restrict x, void *restrict vy, int64_t k) {
    block_q6_K *y = vy;
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        int8_t L[QK_K];
        float scales[QK_K / 16];
        float max_scale = 0, max_abs_scale = 0;  /* the scale of largest magnitude, sign kept */
        for (int j = 0; j < QK_K / 16; j++) {
            scales[j] = fit_symmetric(16, 32, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }

        /* sub-block scales to 8 bits, the largest mapped to -128 */
        const float iscale = -128.f / max_scale;
        y[i].d = llp_f32_to_fp16(1 / iscale);
        for (int j = 0; j < QK_K / 16; j++) {
            int l = nearest_int(iscale * scales[j]);
            y[i].scales[j] = (int8_t)(l < 127 ? l : 127);
        }

        /* requantize against the scales as stored; a zero scale keeps the search's levels */
        const float d_all = llp_fp16_to_f32(y[i].d);
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = d_all * y[i].scales[j];
            if (!d) continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (int8_t)(clampi(nearest_int(x[16 * j + l] / d), -32, 31) + 32);
        }

        /* element 128h + 32s + r: low nibble in ql[64h + 32(s%2) + r] (s >= 2: high half),
         * top 2 bits in qh[32h + r] at bits 2s */
        for (int h = 0; h < QK_K / 128; h++) {
            const int8_t *Lh = L + 128 * h;
            uint8_t *ql = y[i].ql + 64 * h, *qh = y[i].qh + 32 * h;
            for (int r = 0; r < 32; r++) {
                ql[r] = (uint8_t)((Lh[r] & 0xF) | ((Lh[r + 64] & 0xF) << 4));
                ql[r + 32] = (uint8_t)((Lh[r + 32] & 0xF) | ((Lh[r + 96] & 0xF) << 4));
                qh[r] = (uint8_t)((Lh[r] >> 4) | ((Lh[r + 32] >> 4) << 2) | ((Lh[r + 64] >> 4) << 4) |
                                  ((Lh[r + 96] >> 4) << 6));
            }
        }
    }
}

void dequantize_row_q6_K(const void *restrict vx, float *restrict y, int64_t k) {
    const block_q6_K *x = vx;
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++, y += QK_K) {
        const float d = llp_fp16_to_f32(x[i].d);
        for (int j = 0; j < QK_K / 16; j++) {
            const float dl = d * x[i].scales[j];
            for (int l = 0; l < 16; l++) {
                const int e = 16 * j + l, h = e / 128, s = (e / 32) % 4, r = e % 32;
                const int lo = (x[i].ql[64 * h + 32 * (s % 2) + r] >> (4 * (s / 2))) & 0xF;
                const int hi = (x[i].qh[32 * h + r] >> (2 * s)) & 3;
                y[e] = dl * ((lo | (hi << 4)) - 32);
            }
        }
    }
}
