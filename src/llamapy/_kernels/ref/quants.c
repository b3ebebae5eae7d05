/* Scalar reference (de)quantizers for the float and non-K block formats.
 *
 * Each quantizer reproduces ggml's reference rounding step by step (same operations, same order), so the
 * bytes equal what llama.cpp writes; tests/test_quants_ref.py checks them against bytes made by ggml.
 * Built with -ffp-contract=off: a fused multiply-add would round differently from ggml's code. */
#include <float.h>
#include <math.h>
#include <string.h>
#include "../include/kernels.h"

/* Smallest block maximum the iq4 search treats as non-zero. */
#define GROUP_MAX_EPS 1e-15f

/* Round to nearest, ties to even, by adding 1.5 * 2^23 (valid for |x| < 2^22). */
static inline int nearest_int(float x) {
    float v = x + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof(i));
    return (i & 0x007fffff) - 0x00400000;
}

/* ---- float formats ---- */

/* f32 -> f32: a copy. */
void dequantize_row_f32(const void *restrict x, float *restrict y, int64_t k) {
    memcpy(y, x, (size_t)k * sizeof(float));
}

/* f32 -> f32: a copy. */
void quantize_row_f32_ref(const float *restrict x, void *restrict y, int64_t k) {
    memcpy(y, x, (size_t)k * sizeof(float));
}

/* f16 -> f32, exact. */
void dequantize_row_f16(const void *restrict x, float *restrict y, int64_t k) {
    const llp_fp16 *h = x;
    for (int64_t i = 0; i < k; i++) y[i] = llp_fp16_to_f32(h[i]);
}

/* f32 -> f16, round to nearest even. */
void quantize_row_f16_ref(const float *restrict x, void *restrict y, int64_t k) {
    llp_fp16 *h = y;
    for (int64_t i = 0; i < k; i++) h[i] = llp_f32_to_fp16(x[i]);
}

/* bf16 -> f32, exact. */
void dequantize_row_bf16(const void *restrict x, float *restrict y, int64_t k) {
    const llp_bf16 *h = x;
    for (int64_t i = 0; i < k; i++) y[i] = llp_bf16_to_f32(h[i]);
}

/* f32 -> bf16, round to nearest even, NaN kept quiet. */
void quantize_row_bf16_ref(const float *restrict x, void *restrict y, int64_t k) {
    llp_bf16 *h = y;
    for (int64_t i = 0; i < k; i++) h[i] = llp_f32_to_bf16(x[i]);
}

/* ---- helpers shared by the 32-element formats ---- */

/* The element of largest magnitude, sign kept (the first one on ties). */
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

/* The largest magnitude. */
static float absmax(const float *x, int n) {
    float amax = 0.0f;
    for (int j = 0; j < n; j++) amax = fmaxf(amax, fabsf(x[j]));
    return amax;
}

/* Smallest and largest element. */
static void min_max(const float *x, int n, float *mn, float *mx) {
    *mn = FLT_MAX;
    *mx = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < *mn) *mn = x[j];
        if (x[j] > *mx) *mx = x[j];
    }
}

/* ---- q4_0: 4-bit, scale only; the largest-magnitude element maps to -8 ---- */

/* q4_0 -> f32. */
void dequantize_row_q4_0(const void *restrict vx, float *restrict y, int64_t k) {
    const block_q4_0 *x = vx;
    for (int64_t i = 0; i < k / QK4_0; i++, y += QK4_0) {
        const float d = llp_fp16_to_f32(x[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = (float)((x[i].qs[j] & 0x0f) - 8) * d;
            y[j + QK4_0 / 2] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

/* f32 -> q4_0 (ggml quantize_row_q4_0_ref). */
void quantize_row_q4_0_ref(const float *restrict x, void *restrict vy, int64_t k) {
    block_q4_0 *y = vy;
    for (int64_t i = 0; i < k / QK4_0; i++, x += QK4_0) {
        const float d = signed_absmax(x, QK4_0) / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = llp_f32_to_fp16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            /* +8.5 then truncation: round to nearest with the offset of 8 folded in */
            int q0 = (int8_t)(x[j] * id + 8.5f);
            int q1 = (int8_t)(x[j + QK4_0 / 2] * id + 8.5f);
            q0 = q0 < 15 ? q0 : 15;
            q1 = q1 < 15 ? q1 : 15;
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* ---- q4_1: 4-bit with scale and min ---- */

/* q4_1 -> f32. */
void dequantize_row_q4_1(const void *restrict vx, float *restrict y, int64_t k) {
    const block_q4_1 *x = vx;
    for (int64_t i = 0; i < k / QK4_1; i++, y += QK4_1) {
        const float d = llp_fp16_to_f32(x[i].d), m = llp_fp16_to_f32(x[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            y[j] = (float)(x[i].qs[j] & 0x0f) * d + m;
            y[j + QK4_1 / 2] = (float)(x[i].qs[j] >> 4) * d + m;
        }
    }
}

/* f32 -> q4_1 (ggml quantize_row_q4_1_ref). */
void quantize_row_q4_1_ref(const float *restrict x, void *restrict vy, int64_t k) {
    block_q4_1 *y = vy;
    for (int64_t i = 0; i < k / QK4_1; i++, x += QK4_1) {
        float mn, mx;
        min_max(x, QK4_1, &mn, &mx);
        const float d = (mx - mn) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = llp_f32_to_fp16(d);
        y[i].m = llp_f32_to_fp16(mn);
        for (int j = 0; j < QK4_1 / 2; j++) {
            int q0 = (int8_t)((x[j] - mn) * id + 0.5f);
            int q1 = (int8_t)((x[j + QK4_1 / 2] - mn) * id + 0.5f);
            q0 = q0 < 15 ? q0 : 15;
            q1 = q1 < 15 ? q1 : 15;
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* ---- q5_0 / q5_1: as q4 with a 5th bit per element in qh ---- */

/* The 5th bit of element j (0..31) of a q5 block. */
static inline int q5_high(const uint8_t qh[4], int j) {
    uint32_t h;
    memcpy(&h, qh, sizeof(h));
    return (int)((h >> j) & 1) << 4;
}

/* q5_0 -> f32. */
void dequantize_row_q5_0(const void *restrict vx, float *restrict y, int64_t k) {
    const block_q5_0 *x = vx;
    for (int64_t i = 0; i < k / QK5_0; i++, y += QK5_0) {
        const float d = llp_fp16_to_f32(x[i].d);
        for (int j = 0; j < QK5_0 / 2; j++) {
            y[j] = (float)(((x[i].qs[j] & 0x0f) | q5_high(x[i].qh, j)) - 16) * d;
            y[j + QK5_0 / 2] = (float)(((x[i].qs[j] >> 4) | q5_high(x[i].qh, j + QK5_0 / 2)) - 16) * d;
        }
    }
}

/* f32 -> q5_0 (ggml quantize_row_q5_0_ref). */
void quantize_row_q5_0_ref(const float *restrict x, void *restrict vy, int64_t k) {
    block_q5_0 *y = vy;
    for (int64_t i = 0; i < k / QK5_0; i++, x += QK5_0) {
        const float d = signed_absmax(x, QK5_0) / -16;
        const float id = d ? 1.0f / d : 0.0f;
        uint32_t qh = 0;
        y[i].d = llp_f32_to_fp16(d);
        for (int j = 0; j < QK5_0 / 2; j++) {
            int q0 = (int8_t)(x[j] * id + 16.5f);
            int q1 = (int8_t)(x[j + QK5_0 / 2] * id + 16.5f);
            q0 = q0 < 31 ? q0 : 31;
            q1 = q1 < 31 ? q1 : 31;
            y[i].qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= (uint32_t)(q0 >> 4) << j;
            qh |= (uint32_t)(q1 >> 4) << (j + QK5_0 / 2);
        }
        memcpy(y[i].qh, &qh, sizeof(qh));
    }
}

/* q5_1 -> f32. */
void dequantize_row_q5_1(const void *restrict vx, float *restrict y, int64_t k) {
    const block_q5_1 *x = vx;
    for (int64_t i = 0; i < k / QK5_1; i++, y += QK5_1) {
        const float d = llp_fp16_to_f32(x[i].d), m = llp_fp16_to_f32(x[i].m);
        for (int j = 0; j < QK5_1 / 2; j++) {
            y[j] = (float)((x[i].qs[j] & 0x0f) | q5_high(x[i].qh, j)) * d + m;
            y[j + QK5_1 / 2] = (float)((x[i].qs[j] >> 4) | q5_high(x[i].qh, j + QK5_1 / 2)) * d + m;
        }
    }
}

/* f32 -> q5_1 (ggml quantize_row_q5_1_ref; ggml does not clamp here, the min keeps q in 0..31). */
void quantize_row_q5_1_ref(const float *restrict x, void *restrict vy, int64_t k) {
    block_q5_1 *y = vy;
    for (int64_t i = 0; i < k / QK5_1; i++, x += QK5_1) {
        float mn, mx;
        min_max(x, QK5_1, &mn, &mx);
        const float d = (mx - mn) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        uint32_t qh = 0;
        y[i].d = llp_f32_to_fp16(d);
        y[i].m = llp_f32_to_fp16(mn);
        for (int j = 0; j < QK5_1 / 2; j++) {
            const uint8_t q0 = (uint8_t)((x[j] - mn) * id + 0.5f);
            const uint8_t q1 = (uint8_t)((x[j + QK5_1 / 2] - mn) * id + 0.5f);
            y[i].qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= (uint32_t)((q0 >> 4) & 1) << j;
            qh |= (uint32_t)((q1 >> 4) & 1) << (j + QK5_1 / 2);
        }
        memcpy(y[i].qh, &qh, sizeof(qh));
    }
}

/* ---- q8_0 / q8_1: 8-bit, amax maps to 127 ---- */

/* q8_0 -> f32. */
void dequantize_row_q8_0(const void *restrict vx, float *restrict y, int64_t k) {
    const block_q8_0 *x = vx;
    for (int64_t i = 0; i < k / QK8_0; i++, y += QK8_0) {
        const float d = llp_fp16_to_f32(x[i].d);
        for (int j = 0; j < QK8_0; j++) y[j] = (float)x[i].qs[j] * d;
    }
}

/* f32 -> q8_0 (ggml quantize_row_q8_0_ref). */
void quantize_row_q8_0_ref(const float *restrict x, void *restrict vy, int64_t k) {
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < k / QK8_0; i++, x += QK8_0) {
        const float d = absmax(x, QK8_0) / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = llp_f32_to_fp16(d);
        for (int j = 0; j < QK8_0; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

/* q8_1 -> f32 (s is only a helper for dot products). */
void dequantize_row_q8_1(const void *restrict vx, float *restrict y, int64_t k) {
    const block_q8_1 *x = vx;
    for (int64_t i = 0; i < k / QK8_1; i++, y += QK8_1) {
        const float d = llp_fp16_to_f32(x[i].d);
        for (int j = 0; j < QK8_1; j++) y[j] = (float)x[i].qs[j] * d;
    }
}

/* f32 -> q8_1 (ggml quantize_row_q8_1_ref): as q8_0, plus s = d * sum(q). */
void quantize_row_q8_1_ref(const float *restrict x, void *restrict vy, int64_t k) {
    block_q8_1 *y = vy;
    for (int64_t i = 0; i < k / QK8_1; i++, x += QK8_1) {
        const float d = absmax(x, QK8_1) / 127;
        const float id = d ? 1.0f / d : 0.0f;
        int sum = 0;
        y[i].d = llp_f32_to_fp16(d);
        for (int j = 0; j < QK8_1; j++) {
            y[i].qs[j] = (int8_t)roundf(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].s = llp_f32_to_fp16((float)sum * d);
    }
}

/* ---- q8_K: the activation format of the K-quant dot products ---- */

/* q8_K -> f32. */
void dequantize_row_q8_K(const void *restrict vx, float *restrict y, int64_t k) {
    const block_q8_K *x = vx;
    for (int64_t i = 0; i < k / QK_K; i++, y += QK_K) {
        for (int j = 0; j < QK_K; j++) y[j] = x[i].d * (float)x[i].qs[j];
    }
}

/* f32 -> q8_K (ggml quantize_row_q8_K_ref): the signed max maps to -127, d stays f32. */
void quantize_row_q8_K_ref(const float *restrict x, void *restrict vy, int64_t k) {
    block_q8_K *y = vy;
    for (int64_t i = 0; i < k / QK_K; i++, x += QK_K) {
        const float max = signed_absmax(x, QK_K);
        if (max == 0.0f) {
            /* ggml leaves bsums unwritten here; zeros keep the block well defined */
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++) {
            const int v = nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += y[i].qs[g * 16 + j];
            y[i].bsums[g] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

/* ---- iq4_nl / iq4_xs: 4-bit indices into the non-linear table llp_iq4nl_values ---- */

/* Index of the table value nearest to x (the upper one on ties), by bisection. */
static int best_index_iq4(float x) {
    const int8_t *val = llp_iq4nl_values;
    if (x <= val[0]) return 0;
    if (x >= val[15]) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (x < val[mid]) hi = mid;
        else lo = mid;
    }
    return x - val[hi - 1] < val[hi] - x ? hi - 1 : hi;
}

/* Weighted fit of scale d for the 32 elements xb at table-scale id: sums of w*q*x and w*q*q. */
static void iq4_fit(const float *xb, const float *w, float id, float *sumqx, float *sumq2) {
    float sqx = 0, sq2 = 0;
    for (int j = 0; j < 32; j++) {
        const float q = llp_iq4nl_values[best_index_iq4(id * xb[j])];
        sqx += w[j] * q * xb[j];
        sq2 += w[j] * q * q;
    }
    *sumqx = sqx;
    *sumq2 = sq2;
}

/* Best scale of one 32-element block (ggml's no-imatrix search: weights x^2, a first fit with the
 * signed max at +127, then 15 trial scales putting it at -127-7 .. -127+7). 0 for a near-zero block. */
static float iq4_block_scale(const float *xb) {
    const int ntry = 7;
    float w[32];
    for (int j = 0; j < 32; j++) w[j] = xb[j] * xb[j];
    const float max = signed_absmax(xb, 32);
    if (fabsf(max) < GROUP_MAX_EPS) return 0;
    float sumqx, sumq2;
    iq4_fit(xb, w, 1 / (-max / llp_iq4nl_values[0]), &sumqx, &sumq2);
    float d = sumqx / sumq2;
    float best = d * sumqx;
    for (int itry = -ntry; itry <= ntry; itry++) {
        iq4_fit(xb, w, (float)(itry + llp_iq4nl_values[0]) / max, &sumqx, &sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

/* Pack 32 indices of a block: element j in the low nibble of byte j, element j+16 in the high one. */
static void iq4_pack(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
}

/* iq4_nl -> f32. */
void dequantize_row_iq4_nl(const void *restrict vx, float *restrict y, int64_t k) {
    const block_iq4_nl *x = vx;
    for (int64_t i = 0; i < k / QK4_NL; i++, y += QK4_NL) {
        const float d = llp_fp16_to_f32(x[i].d);
        for (int j = 0; j < QK4_NL / 2; j++) {
            y[j] = d * llp_iq4nl_values[x[i].qs[j] & 0x0f];
            y[j + QK4_NL / 2] = d * llp_iq4nl_values[x[i].qs[j] >> 4];
        }
    }
}

/* f32 -> iq4_nl (ggml quantize_iq4_nl without imatrix): fit the scale, then re-pick indices for it. */
void quantize_row_iq4_nl_ref(const float *restrict x, void *restrict vy, int64_t k) {
    block_iq4_nl *y = vy;
    for (int64_t i = 0; i < k / QK4_NL; i++, x += QK4_NL) {
        uint8_t L[QK4_NL];
        const float d = iq4_block_scale(x);
        const float id = d ? 1 / d : 0;
        y[i].d = llp_f32_to_fp16(d);
        for (int j = 0; j < QK4_NL; j++) L[j] = (uint8_t)best_index_iq4(id * x[j]);
        iq4_pack(L, y[i].qs);
    }
}

/* iq4_xs -> f32. */
void dequantize_row_iq4_xs(const void *restrict vx, float *restrict y, int64_t k) {
    const block_iq4_xs *x = vx;
    for (int64_t i = 0; i < k / QK_K; i++) {
        const float d = llp_fp16_to_f32(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ib++, y += 32) {
            const int ls = ((x[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0x0f) | (((x[i].scales_h >> 2 * ib) & 3) << 4);
            const float dl = d * (float)(ls - 32);
            const uint8_t *qs = x[i].qs + 16 * ib;
            for (int j = 0; j < 16; j++) {
                y[j] = dl * llp_iq4nl_values[qs[j] & 0x0f];
                y[j + 16] = dl * llp_iq4nl_values[qs[j] >> 4];
            }
        }
    }
}

/* f32 -> iq4_xs (ggml quantize_iq4_xs without imatrix): per-32 scales fitted as iq4_nl, then stored
 * as 6-bit multiples of a super-block scale d = -max_scale/32, and indices re-picked for them. */
void quantize_row_iq4_xs_ref(const float *restrict x, void *restrict vy, int64_t k) {
    block_iq4_xs *y = vy;
    for (int64_t i = 0; i < k / QK_K; i++, x += QK_K) {
        float scales[QK_K / 32];
        float amax_scale = 0, max_scale = 0;
        uint8_t L[32];
        for (int ib = 0; ib < QK_K / 32; ib++) {
            scales[ib] = iq4_block_scale(x + 32 * ib);
            if (fabsf(scales[ib]) > amax_scale) {
                amax_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        const float d = -max_scale / 32;
        const float id = d ? 1 / d : 0;
        y[i].d = llp_f32_to_fp16(d);
        y[i].scales_h = 0;
        memset(y[i].scales_l, 0, sizeof(y[i].scales_l));
        for (int ib = 0; ib < QK_K / 32; ib++) {
            int l = nearest_int(id * scales[ib]);
            l = l < -32 ? -32 : l > 31 ? 31 : l;
            const float dl = d * (float)l;
            const float idl = dl ? 1 / dl : 0;
            for (int j = 0; j < 32; j++) L[j] = (uint8_t)best_index_iq4(idl * x[32 * ib + j]);
            iq4_pack(L, y[i].qs + 16 * ib);
            l += 32;
            y[i].scales_l[ib / 2] |= (uint8_t)((l & 0x0f) << 4 * (ib % 2));
            y[i].scales_h |= (uint16_t)((l >> 4) << 2 * ib);
        }
    }
}

/* ---- tq1_0 / tq2_0: ternary weights {-1, 0, 1} times a scale ---- */

/* Trit digits of a tq1_0 byte: byte b holds trits t0..t4 as ceil((t0 t1 t2 t3 t4)_3 * 256 / 243), so
 * the n-th trit is the top of (b * 3^n mod 256) * 3 / 256. */
static inline int tq1_trit(uint8_t b, int n) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    const uint8_t q = (uint8_t)(b * pow3[n]);
    return ((uint16_t)q * 3) >> 8;
}

/* Packs trits base-3, most significant first, scaled into a byte so tq1_trit can read them back. */
static inline uint8_t tq1_pack(const int *t, int n) {
    int q = 0;
    for (int m = 0; m < n; m++) q = q * 3 + t[m];
    for (int m = n; m < 5; m++) q *= 3;
    return (uint8_t)((q * 256 + 242) / 243);
}

/* tq1_0 -> f32: 32 bytes of 5 trits, then 16 bytes of 5, then 4 bytes of 4; trit n of byte m
 * is element n*stride + m of its group. */
void dequantize_row_tq1_0(const void *restrict vx, float *restrict y, int64_t k) {
    const block_tq1_0 *x = vx;
    for (int64_t i = 0; i < k / QK_K; i++) {
        const float d = llp_fp16_to_f32(x[i].d);
        for (int n = 0; n < 5; n++)
            for (int m = 0; m < 32; m++) *y++ = (float)(tq1_trit(x[i].qs[m], n) - 1) * d;
        for (int n = 0; n < 5; n++)
            for (int m = 0; m < 16; m++) *y++ = (float)(tq1_trit(x[i].qs[32 + m], n) - 1) * d;
        for (int n = 0; n < 4; n++)
            for (int m = 0; m < 4; m++) *y++ = (float)(tq1_trit(x[i].qh[m], n) - 1) * d;
    }
}

/* f32 -> tq1_0 (ggml quantize_row_tq1_0_ref): d = amax, trits = round(x/d) + 1. */
void quantize_row_tq1_0_ref(const float *restrict x, void *restrict vy, int64_t k) {
    block_tq1_0 *y = vy;
    for (int64_t i = 0; i < k / QK_K; i++, x += QK_K) {
        const float d = absmax(x, QK_K);
        const float id = d ? 1.0f / d : 0.0f;
        int t[5];
        y[i].d = llp_f32_to_fp16(d);
        for (int m = 0; m < 32; m++) {
            for (int n = 0; n < 5; n++) t[n] = (int)lroundf(x[n * 32 + m] * id) + 1;
            y[i].qs[m] = tq1_pack(t, 5);
        }
        for (int m = 0; m < 16; m++) {
            for (int n = 0; n < 5; n++) t[n] = (int)lroundf(x[160 + n * 16 + m] * id) + 1;
            y[i].qs[32 + m] = tq1_pack(t, 5);
        }
        for (int m = 0; m < 4; m++) {
            for (int n = 0; n < 4; n++) t[n] = (int)lroundf(x[240 + n * 4 + m] * id) + 1;
            y[i].qh[m] = tq1_pack(t, 4);
        }
    }
}

/* tq2_0 -> f32: 2-bit fields, field l of byte m in each 32-byte half is element 32*l + m of its 128. */
void dequantize_row_tq2_0(const void *restrict vx, float *restrict y, int64_t k) {
    const block_tq2_0 *x = vx;
    for (int64_t i = 0; i < k / QK_K; i++) {
        const float d = llp_fp16_to_f32(x[i].d);
        for (int h = 0; h < QK_K / 128; h++)
            for (int l = 0; l < 4; l++)
                for (int m = 0; m < 32; m++) *y++ = (float)(((x[i].qs[32 * h + m] >> (2 * l)) & 3) - 1) * d;
    }
}

/* f32 -> tq2_0 (ggml quantize_row_tq2_0_ref): d = amax, fields = round(x/d) + 1. */
void quantize_row_tq2_0_ref(const float *restrict x, void *restrict vy, int64_t k) {
    block_tq2_0 *y = vy;
    for (int64_t i = 0; i < k / QK_K; i++, x += QK_K) {
        const float d = absmax(x, QK_K);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = llp_f32_to_fp16(d);
        for (int h = 0; h < QK_K / 128; h++) {
            for (int m = 0; m < 32; m++) {
                int q = 0;
                for (int l = 0; l < 4; l++) q |= (((int)lroundf(x[128 * h + 32 * l + m] * id) + 1) & 3) << (2 * l);
                y[i].qs[32 * h + m] = (uint8_t)q;
            }
        }
    }
}
