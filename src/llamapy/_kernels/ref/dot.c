/* Scalar reference dot products: the "generic" twin of every SIMD kernel, and the fallback of every ISA.
 *
 * Contract (llp_vec_dot_fn): *s = dot(weight row vx of type t, activation row vy of t's vec_dot_type),
 * n elements, n a multiple of the block size.
 *
 * Quantized types: within a block every product is int8 x small int, summed exactly in int32; only then
 * is the block sum scaled by the float block scales and added to a float accumulator. So the integer
 * part is exact and SIMD twins can differ from these only in the order of the float operations.
 * K-quant mins use the q8_K bsums (sums of 16 activation quants), q4_1/q5_1 mins the q8_1 `s` field.
 *
 * Float types (f32, f16, bf16) accumulate in one float, in element order. ggml's generic code sums in
 * double; float is chosen here because that is what every SIMD twin does (float lanes), so the reference
 * measures the same thing. For f16 and bf16 each product of two converted values is exact in float
 * (11 + 11 and 8 + 8 significant bits fit in 24), so only the running sum rounds. */
#include <math.h>
#include <string.h>
#include "../include/kernels.h"

/* ---- float types ---- */

/* sum x[i] * y[i], f32 x f32 */
static void vec_dot_f32(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const float *x = vx, *y = vy;
    float sum = 0.0f;
    for (int i = 0; i < n; i++) sum += x[i] * y[i];
    *s = sum;
}

/* sum x[i] * y[i], f16 x f16 (exact products, float sum) */
static void vec_dot_f16(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const llp_fp16 *x = vx, *y = vy;
    float sum = 0.0f;
    for (int i = 0; i < n; i++) sum += llp_fp16_to_f32(x[i]) * llp_fp16_to_f32(y[i]);
    *s = sum;
}

/* sum x[i] * y[i], bf16 x bf16 (exact products, float sum) */
static void vec_dot_bf16(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const llp_bf16 *x = vx, *y = vy;
    float sum = 0.0f;
    for (int i = 0; i < n; i++) sum += llp_bf16_to_f32(x[i]) * llp_bf16_to_f32(y[i]);
    *s = sum;
}

/* ---- 32-element blocks ---- */

/* The 5th bit of element j of a q5_0/q5_1 block, as 0 or 16. */
static inline int q5_high(const uint8_t qh[4], int j) {
    return ((qh[j / 8] >> (j % 8)) & 1) << 4;
}

/* q4_0 x q8_0: sum over blocks of dx * dy * sum((nibble - 8) * q8) */
static void vec_dot_q4_0_q8_0(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int ib = 0; ib < n / QK4_0; ib++) {
        int32_t sumi = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            sumi += ((x[ib].qs[j] & 0x0F) - 8) * y[ib].qs[j];
            sumi += ((x[ib].qs[j] >> 4) - 8) * y[ib].qs[j + QK4_0 / 2];
        }
        sum += (float)sumi * (llp_fp16_to_f32(x[ib].d) * llp_fp16_to_f32(y[ib].d));
    }
    *s = sum;
}

/* ggml's x86 order for one row (what llama.cpp computes on this CPU class): eight float lanes, lane j
 * taking each block's integer sum over elements 4j .. 4j+3 times dx*dy with one fma, block after block;
 * then the lanes are folded (j + 4), (0 + 2, 1 + 3), and the two halves. */
static inline float fold8(const float a[8]) {
    float r[4];
    for (int j = 0; j < 4; j++) r[j] = a[j + 4] + a[j];
    return (r[0] + r[2]) + (r[1] + r[3]);
}

/* q4_1 x q8_1: sum over blocks of dx * dy * sum(nibble * q8), plus the chain of mx * sy (sy = dy * sum(q8)) */
static void vec_dot_q4_1_q8_1(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_q4_1 *x = vx;
    const block_q8_1 *y = vy;
    float lane[8] = {0}, mins = 0.0f;
    for (int ib = 0; ib < n / QK4_1; ib++) {
        const float d = llp_fp16_to_f32(x[ib].d) * llp_fp16_to_f32(y[ib].d);
        mins = fmaf(llp_fp16_to_f32(x[ib].m), llp_fp16_to_f32(y[ib].s), mins);
        for (int j = 0; j < 8; j++) {
            int32_t sumi = 0;
            for (int e = 4 * j; e < 4 * j + 4; e++)
                sumi += (e < 16 ? x[ib].qs[e] & 0x0F : x[ib].qs[e - 16] >> 4) * y[ib].qs[e];
            lane[j] = fmaf(d, (float)sumi, lane[j]);
        }
    }
    *s = fold8(lane) + mins;
}

/* q5_0 x q8_0: sum over blocks of dx * dy * sum((5-bit value - 16) * q8), in ggml's x86 lane order (fold8) */
static void vec_dot_q5_0_q8_0(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_q5_0 *x = vx;
    const block_q8_0 *y = vy;
    float lane[8] = {0};
    for (int ib = 0; ib < n / QK5_0; ib++) {
        const float d = llp_fp16_to_f32(x[ib].d) * llp_fp16_to_f32(y[ib].d);
        for (int j = 0; j < 8; j++) {
            int32_t sumi = 0;
            for (int e = 4 * j; e < 4 * j + 4; e++) {
                const int nibble = e < 16 ? x[ib].qs[e] & 0x0F : x[ib].qs[e - 16] >> 4;
                sumi += ((nibble | q5_high(x[ib].qh, e)) - 16) * y[ib].qs[e];
            }
            lane[j] = fmaf(d, (float)sumi, lane[j]);
        }
    }
    *s = fold8(lane);
}

/* q5_1 x q8_1: sum over blocks of dx * dy * sum(5-bit value * q8) + mx * sy */
static void vec_dot_q5_1_q8_1(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_q5_1 *x = vx;
    const block_q8_1 *y = vy;
    float sum = 0.0f;
    for (int ib = 0; ib < n / QK5_1; ib++) {
        int32_t sumi = 0;
        for (int j = 0; j < QK5_1 / 2; j++) {
            int lo = (x[ib].qs[j] & 0x0F) | q5_high(x[ib].qh, j);
            int hi = (x[ib].qs[j] >> 4) | q5_high(x[ib].qh, j + QK5_1 / 2);
            sumi += lo * y[ib].qs[j] + hi * y[ib].qs[j + QK5_1 / 2];
        }
        sum += (float)sumi * (llp_fp16_to_f32(x[ib].d) * llp_fp16_to_f32(y[ib].d))
             + llp_fp16_to_f32(x[ib].m) * llp_fp16_to_f32(y[ib].s);
    }
    *s = sum;
}

/* q8_0 x q8_0: sum over blocks of dx * dy * sum(qx * qy), in ggml's x86 lane order (see fold8) */
static void vec_dot_q8_0_q8_0(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_q8_0 *x = vx;
    const block_q8_0 *y = vy;
    float lane[8] = {0};
    for (int ib = 0; ib < n / QK8_0; ib++) {
        const float d = llp_fp16_to_f32(x[ib].d) * llp_fp16_to_f32(y[ib].d);
        for (int j = 0; j < 8; j++) {
            int32_t sumi = 0;
            for (int e = 4 * j; e < 4 * j + 4; e++) sumi += x[ib].qs[e] * y[ib].qs[e];
            lane[j] = fmaf(d, (float)sumi, lane[j]);
        }
    }
    *s = fold8(lane);
}

/* iq4_nl x q8_0: sum over blocks of dx * dy * sum(table[index] * q8) */
static void vec_dot_iq4_nl_q8_0(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_iq4_nl *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int ib = 0; ib < n / QK4_NL; ib++) {
        int32_t sumi = 0;
        for (int j = 0; j < QK4_NL / 2; j++) {
            sumi += llp_iq4nl_values[x[ib].qs[j] & 0x0F] * y[ib].qs[j];
            sumi += llp_iq4nl_values[x[ib].qs[j] >> 4] * y[ib].qs[j + QK4_NL / 2];
        }
        sum += (float)sumi * (llp_fp16_to_f32(x[ib].d) * llp_fp16_to_f32(y[ib].d));
    }
    *s = sum;
}

/* ---- 256-element super-blocks, all against q8_K ---- */

/* Sub-block j's 6-bit scale and min from the 12 packed bytes of q4_K/q5_K: j < 4 keep theirs in the low
 * 6 bits of bytes j and j+4; j >= 4 have 4 low bits in byte j+4 and their top 2 bits in the spare top
 * bits of bytes j-4 (scale) and j (min). */
static inline void k4_scale_min(const uint8_t *q, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Scale i (of 16, already minus 32) of a q3_K block: 4 low bits from byte i (i < 8, low nibble) or
 * byte i-8 (high nibble), 2 high bits from byte 8 + i%4 at bit 2*(i/4). */
static inline int q3_scale(const uint8_t *sc, int i) {
    int lo = i < 8 ? sc[i] & 0x0F : sc[i - 8] >> 4;
    int hi = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* q2_K x q8_K: per block d*dy * sum(scale_g * sum(q2 * q8)) - dmin*dy * sum(min_g * bsum_g), 16 groups */
static void vec_dot_q2_K_q8_K(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_q2_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int ib = 0; ib < n / QK_K; ib++) {
        /* element 128h + 32j + l sits in qs[32h + l] at bits 2j..2j+1; its group is 8h + 2j + l/16 */
        int32_t isum = 0, summs = 0;
        for (int h = 0; h < 2; h++)
            for (int j = 0; j < 4; j++)
                for (int half = 0; half < 2; half++) {
                    const int g = 8 * h + 2 * j + half;
                    int32_t gsum = 0;
                    for (int l = 16 * half; l < 16 * half + 16; l++)
                        gsum += ((x[ib].qs[32 * h + l] >> (2 * j)) & 3) * y[ib].qs[128 * h + 32 * j + l];
                    isum += (x[ib].scales[g] & 0x0F) * gsum;
                }
        for (int g = 0; g < QK_K / 16; g++) summs += (x[ib].scales[g] >> 4) * y[ib].bsums[g];
        const float dall = y[ib].d * llp_fp16_to_f32(x[ib].d);
        const float dmin = y[ib].d * llp_fp16_to_f32(x[ib].dmin);
        sum += dall * (float)isum - dmin * (float)summs;
    }
    *s = sum;
}

/* q3_K x q8_K: per block d*dy * sum(scale_g * sum(q3 * q8)), q3 = 2 low bits - (hmask bit ? 0 : 4) */
static void vec_dot_q3_K_q8_K(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int ib = 0; ib < n / QK_K; ib++) {
        /* element 128h + 32j + l: low bits in qs[32h + l] at 2j, high bit in hmask[l] at bit 4h + j */
        int32_t isum = 0;
        for (int h = 0; h < 2; h++)
            for (int j = 0; j < 4; j++)
                for (int half = 0; half < 2; half++) {
                    int32_t gsum = 0;
                    for (int l = 16 * half; l < 16 * half + 16; l++) {
                        int q = (x[ib].qs[32 * h + l] >> (2 * j)) & 3;
                        if (!(x[ib].hmask[l] & (1 << (4 * h + j)))) q -= 4;
                        gsum += q * y[ib].qs[128 * h + 32 * j + l];
                    }
                    isum += q3_scale(x[ib].scales, 8 * h + 2 * j + half) * gsum;
                }
        sum += (llp_fp16_to_f32(x[ib].d) * y[ib].d) * (float)isum;
    }
    *s = sum;
}

/* q4_K x q8_K: per block d*dy * sum(sc_j * sum(q4 * q8)) - dmin*dy * sum(m_j * bsums of sub-block j) */
static void vec_dot_q4_K_q8_K(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_q4_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int ib = 0; ib < n / QK_K; ib++) {
        /* sub-block j (32 elements): bytes qs[32*(j/2) ..], low nibbles for even j, high for odd j */
        int32_t isum = 0, summs = 0;
        for (int j = 0; j < QK_K / 32; j++) {
            int sc, m;
            k4_scale_min(x[ib].scales, j, &sc, &m);
            const uint8_t *q = x[ib].qs + 32 * (j / 2);
            const int8_t *a = y[ib].qs + 32 * j;
            int32_t jsum = 0;
            for (int l = 0; l < 32; l++) jsum += ((q[l] >> (4 * (j % 2))) & 0x0F) * a[l];
            isum += sc * jsum;
            summs += m * (y[ib].bsums[2 * j] + y[ib].bsums[2 * j + 1]);
        }
        const float dall = y[ib].d * llp_fp16_to_f32(x[ib].d);
        const float dmin = y[ib].d * llp_fp16_to_f32(x[ib].dmin);
        sum += dall * (float)isum - dmin * (float)summs;
    }
    *s = sum;
}

/* q5_K x q8_K: as q4_K with a 5th bit per element from qh (bit j of qh[l] for sub-block j) */
static void vec_dot_q5_K_q8_K(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_q5_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int ib = 0; ib < n / QK_K; ib++) {
        int32_t isum = 0, summs = 0;
        for (int j = 0; j < QK_K / 32; j++) {
            int sc, m;
            k4_scale_min(x[ib].scales, j, &sc, &m);
            const uint8_t *q = x[ib].qs + 32 * (j / 2);
            const int8_t *a = y[ib].qs + 32 * j;
            int32_t jsum = 0;
            for (int l = 0; l < 32; l++) {
                int v = ((q[l] >> (4 * (j % 2))) & 0x0F) | (((x[ib].qh[l] >> j) & 1) << 4);
                jsum += v * a[l];
            }
            isum += sc * jsum;
            summs += m * (y[ib].bsums[2 * j] + y[ib].bsums[2 * j + 1]);
        }
        const float dall = y[ib].d * llp_fp16_to_f32(x[ib].d);
        const float dmin = y[ib].d * llp_fp16_to_f32(x[ib].dmin);
        sum += dall * (float)isum - dmin * (float)summs;
    }
    *s = sum;
}

/* q6_K x q8_K: per block d*dy * sum(scale_g * sum((6-bit value - 32) * q8)), 16 groups of 16 */
static void vec_dot_q6_K_q8_K(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int ib = 0; ib < n / QK_K; ib++) {
        /* element 128h + 32k + l (k < 4, l < 32): low 4 bits from ql[64h + l + 32*(k%2)], nibble k/2;
         * high 2 bits from qh[32h + l] at bit 2k */
        int32_t isum = 0;
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 4; k++)
                for (int half = 0; half < 2; half++) {
                    int32_t gsum = 0;
                    for (int l = 16 * half; l < 16 * half + 16; l++) {
                        int lo = (x[ib].ql[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 0x0F;
                        int hi = (x[ib].qh[32 * h + l] >> (2 * k)) & 3;
                        gsum += ((lo | (hi << 4)) - 32) * y[ib].qs[128 * h + 32 * k + l];
                    }
                    isum += x[ib].scales[8 * h + 2 * k + half] * gsum;
                }
        sum += (llp_fp16_to_f32(x[ib].d) * y[ib].d) * (float)isum;
    }
    *s = sum;
}

/* iq4_xs x q8_K: per block d*dy * sum over 8 sub-blocks of (6-bit scale - 32) * sum(table[index] * q8) */
static void vec_dot_iq4_xs_q8_K(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_iq4_xs *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int ib = 0; ib < n / QK_K; ib++) {
        int32_t isum = 0;
        for (int j = 0; j < QK_K / 32; j++) {
            const int ls = ((x[ib].scales_l[j / 2] >> (4 * (j % 2))) & 0x0F) | (((x[ib].scales_h >> (2 * j)) & 3) << 4);
            const uint8_t *q = x[ib].qs + 16 * j;
            const int8_t *a = y[ib].qs + 32 * j;
            int32_t jsum = 0;
            for (int l = 0; l < 16; l++)
                jsum += llp_iq4nl_values[q[l] & 0x0F] * a[l] + llp_iq4nl_values[q[l] >> 4] * a[l + 16];
            isum += (ls - 32) * jsum;
        }
        sum += (llp_fp16_to_f32(x[ib].d) * y[ib].d) * (float)isum;
    }
    *s = sum;
}

/* The top trit of a tq1_0 byte after shifting out `shift` trits: bytes hold trits as a base-3 fraction
 * of 256, so multiplying by 3^shift (mod 256) moves the wanted trit to the top and *3 >> 8 reads it. */
static inline int tq1_trit(uint8_t byte, int shift) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    const uint8_t q = (uint8_t)(byte * pow3[shift]);
    return ((uint16_t)q * 3) >> 8;
}

/* tq1_0 x q8_K: per block d*dy * sum((trit - 1) * q8) */
static void vec_dot_tq1_0_q8_K(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_tq1_0 *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int ib = 0; ib < n / QK_K; ib++) {
        const int8_t *a = y[ib].qs;
        int32_t isum = 0;
        /* qs[0..31] hold elements 32t + m (t < 5), qs[32..47] elements 160 + 16t + m, qh elements 240 + 4t + m */
        for (int t = 0; t < 5; t++)
            for (int m = 0; m < 32; m++) isum += (tq1_trit(x[ib].qs[m], t) - 1) * a[32 * t + m];
        for (int t = 0; t < 5; t++)
            for (int m = 0; m < 16; m++) isum += (tq1_trit(x[ib].qs[32 + m], t) - 1) * a[160 + 16 * t + m];
        for (int t = 0; t < 4; t++)
            for (int m = 0; m < 4; m++) isum += (tq1_trit(x[ib].qh[m], t) - 1) * a[240 + 4 * t + m];
        sum += (float)isum * (llp_fp16_to_f32(x[ib].d) * y[ib].d);
    }
    *s = sum;
}

/* tq2_0 x q8_K: per block d*dy * sum((2-bit value - 1) * q8) */
static void vec_dot_tq2_0_q8_K(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_tq2_0 *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int ib = 0; ib < n / QK_K; ib++) {
        /* element 128h + 32k + m sits in qs[32h + m] at bits 2k..2k+1 */
        int32_t isum = 0;
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 4; k++)
                for (int m = 0; m < 32; m++)
                    isum += (((x[ib].qs[32 * h + m] >> (2 * k)) & 3) - 1) * y[ib].qs[128 * h + 32 * k + m];
        sum += (float)isum * (llp_fp16_to_f32(x[ib].d) * y[ib].d);
    }
    *s = sum;
}

/* ---- attention over an f16 cache (contract and summation order in kernels.h) ---- */

/* ---- activation quantizers: ggml's CPU code on x86, not its reference (id = 127 / amax, halves to even) ---- */

static inline float q8_act_block(const float *x, int8_t *qs, llp_fp16 *d16) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
    *d16 = llp_f32_to_fp16(d);
    for (int j = 0; j < 32; j++) qs[j] = (int8_t)nearbyintf(x[j] * id);
    return d;
}

void llp_quantize_row_q8_0_act(const float *restrict x, void *restrict vy, int64_t k) {
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < k / QK8_0; i++) q8_act_block(x + i * QK8_0, y[i].qs, &y[i].d);
}

static void quantize_row_q8_1_act(const float *restrict x, void *restrict vy, int64_t k) {
    block_q8_1 *y = vy;
    for (int64_t i = 0; i < k / QK8_1; i++) {
        const float d = q8_act_block(x + i * QK8_1, y[i].qs, &y[i].d);
        int sum = 0;
        for (int j = 0; j < QK8_1; j++) sum += y[i].qs[j];
        y[i].s = llp_f32_to_fp16((float)sum * d);
    }
}

/* ---- attention pieces ---- */
/* q . k in llama.cpp's order for `lanes` (16 or 64, see kernels.h) */
static float f16_row_dot(const float *q, const llp_fp16 *k, int n, int lanes) {
    float lane[64] = {0};
    const int whole = lanes == 64 ? n / 64 * 64 : n;
    for (int d = 0; d < whole; d++) lane[d % lanes] = fmaf(q[d], llp_fp16_to_f32(k[d]), lane[d % lanes]);
    for (int w = lanes / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) lane[l] += lane[l + w];
    double sum = lane[0];
    for (int d = whole; d < n; d++) sum += (double)(q[d] * llp_fp16_to_f32(k[d]));
    return (float)sum;
}

static void attn_scores_ref(int head_dim, const float *restrict q, const llp_fp16 *restrict k, int64_t stride,
                            int64_t n, float scale, float *restrict s, int lanes) {
    for (int64_t j = 0; j < n; j++) s[j] = f16_row_dot(q, k + j * stride, head_dim, lanes) * scale;
}

static void attn_accum_ref(int head_dim, float *restrict p, float pscale, const llp_fp16 *restrict v, int64_t stride,
                           int64_t n, float *restrict acc, int lanes) {
    for (int64_t j = 0; j < n; j++) p[j] = llp_fp16_to_f32(llp_f32_to_fp16(p[j] * pscale));
    for (int d = 0; d < head_dim; d++) {
        float lane[64] = {0};
        for (int64_t j = 0; j < n; j++) lane[j % lanes] = fmaf(p[j], llp_fp16_to_f32(v[j * stride + d]), lane[j % lanes]);
        for (int w = lanes / 2; w >= 1; w /= 2)
            for (int l = 0; l < w; l++) lane[l] += lane[l + w];
        acc[d] += lane[0];
    }
}

/* exp as ggml's AVX-512 ggml_v_expf (see kernels.h) */
float llp_ggml_expf(float x) {
    const float r = 0x1.8p23f;
    const float n = fmaf(x, 0x1.715476p+0f, r) - r;
    const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    const float u = b * b;
    const float j = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)), u,
                         fmaf(0x1.ffffecp-1f, b, 1.0f));
    if (n != n) return n;
    if (fabsf(n) > 192.0f) return n <= 0.0f ? 0.0f : INFINITY;
    return ldexpf(j, (int)n);
}

/* p[j] = exp(p[j] - mx); the sum as ggml's soft_max: each chunk of 16 folded in float, chunks summed in double */
static double exp_sum_ref(float *p, int64_t n, float mx) {
    double sum = 0.0;
    for (int64_t c = 0; c < n; c += 16) {
        float lane[16] = {0};
        for (int64_t j = c; j < c + 16 && j < n; j++) lane[j - c] = p[j] = llp_ggml_expf(p[j] - mx);
        for (int w = 8; w >= 1; w /= 2)
            for (int l = 0; l < w; l++) lane[l] += lane[l + w];
        sum += (double)lane[0];
    }
    return sum;
}

static void swiglu_ref(const float *g, const float *u, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = g[i] / (1.0f + llp_ggml_expf(0.0f - g[i])) * u[i];
}

void llp_register_scalar(llp_kernels *k) {
    static const struct { int type; llp_vec_dot_fn fn; } dots[] = {
        {LLP_F32, vec_dot_f32},         {LLP_F16, vec_dot_f16},         {LLP_BF16, vec_dot_bf16},
        {LLP_Q4_0, vec_dot_q4_0_q8_0},  {LLP_Q4_1, vec_dot_q4_1_q8_1},  {LLP_Q5_0, vec_dot_q5_0_q8_0},
        {LLP_Q5_1, vec_dot_q5_1_q8_1},  {LLP_Q8_0, vec_dot_q8_0_q8_0},  {LLP_Q2_K, vec_dot_q2_K_q8_K},
        {LLP_Q3_K, vec_dot_q3_K_q8_K},  {LLP_Q4_K, vec_dot_q4_K_q8_K},  {LLP_Q5_K, vec_dot_q5_K_q8_K},
        {LLP_Q6_K, vec_dot_q6_K_q8_K},  {LLP_IQ4_NL, vec_dot_iq4_nl_q8_0}, {LLP_IQ4_XS, vec_dot_iq4_xs_q8_K},
        {LLP_TQ1_0, vec_dot_tq1_0_q8_K}, {LLP_TQ2_0, vec_dot_tq2_0_q8_K},
    };
    for (size_t i = 0; i < sizeof(dots) / sizeof(dots[0]); i++) {
        k->vec_dot[dots[i].type] = dots[i].fn;
        k->impl[dots[i].type] = "scalar";
    }

    /* activation quantizers */
    k->from_float[LLP_Q8_0] = llp_quantize_row_q8_0_act;
    k->from_float[LLP_Q8_1] = quantize_row_q8_1_act;
    k->from_float[LLP_Q8_K] = quantize_row_q8_K_ref;
    k->from_float[LLP_F16] = quantize_row_f16_ref;
    k->from_float[LLP_BF16] = quantize_row_bf16_ref;

    k->attn_scores = attn_scores_ref;
    k->attn_accum = attn_accum_ref;
    k->exp_sum = exp_sum_ref;
    k->swiglu = swiglu_ref;
}
