/* NEON kernels (AArch64): same contract as the scalar twins in ref/dot.c.
 *
 * Every integer kernel is written once, as an always-inline body that takes the 16-byte int8 dot step
 * as a parameter. It is instantiated twice: with a baseline (armv8-a) step built from widening
 * multiplies, and with the SDOT instruction in a region compiled for armv8.2-a+dotprod. Once the body is
 * inlined the step is a known function and is inlined too, so neither copy makes an indirect call.
 * The dotprod copies are registered only when the CPU reports the extension. */
#include "../include/kernels.h"

#if defined(__aarch64__)
#include <arm_neon.h>
#include "../include/target.h"

#define INLINE static inline __attribute__((always_inline))

/* acc += partial sums of a[i] * b[i] over 16 int8 lanes; only the total of the 4 lanes is meaningful. */
typedef int32x4_t (*dot_s8_fn)(int32x4_t acc, int8x16_t a, int8x16_t b);

/* Hardware half -> float: exact, like llp_fp16_to_f32, in one instruction. */
INLINE float fp16(llp_fp16 h) {
    __fp16 v;
    memcpy(&v, &h, sizeof v);
    return (float)v;
}

INLINE llp_fp16 to_fp16(float f) {
    __fp16 v = (__fp16)f;  /* round to nearest even, like llp_f32_to_fp16 */
    llp_fp16 h;
    memcpy(&h, &v, sizeof h);
    return h;
}

/* Baseline int8 dot step: products fit in int16 (|a*b| <= 128*128), pairwise-added into int32 lanes. */
INLINE int32x4_t dot_s8_base(int32x4_t acc, int8x16_t a, int8x16_t b) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
}

/* Two 16-lane dot steps from zero: the int32 sum of one 32-element block. */
INLINE int32x4_t dot32(dot_s8_fn dot, int8x16_t a0, int8x16_t a1, const int8_t *y) {
    return dot(dot(vdupq_n_s32(0), a0, vld1q_s8(y)), a1, vld1q_s8(y + 16));
}

/* acc += scale * (int32 dot of 16 quants with 16 activations): one scale group of a K-quant. */
INLINE int32x4_t scaled_dot16(dot_s8_fn dot, int32x4_t acc, int8x16_t q, const int8_t *y, int scale) {
    return vmlaq_n_s32(acc, dot(vdupq_n_s32(0), q, vld1q_s8(y)), scale);
}

/* Low and high nibbles of 16 packed bytes: elements 0..15 and 16..31 of a 32-element block. */
INLINE int8x16_t lo_nibbles(uint8x16_t v) { return vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f))); }
INLINE int8x16_t hi_nibbles(uint8x16_t v) { return vreinterpretq_s8_u8(vshrq_n_u8(v, 4)); }

/* 0xff in lane i where bit i%8 of byte b0 (lanes 0..7) or b1 (lanes 8..15) is set. */
INLINE uint8x16_t bits_to_mask(uint8_t b0, uint8_t b1) {
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    return vtstq_u8(vcombine_u8(vdup_n_u8(b0), vdup_n_u8(b1)), vld1q_u8(bit));
}

/* 5-bit quants of a q5 block, biased by `bias` (16 for q5_0, 0 for q5_1): elements 0..15 and 16..31. */
INLINE void q5_unpack(const uint8_t qh[4], const uint8_t qs[16], int bias, int8x16_t *e0, int8x16_t *e1) {
    const int8x16_t b4 = vdupq_n_s8(0x10), b = vdupq_n_s8((int8_t)bias);
    const uint8x16_t v = vld1q_u8(qs);
    const int8x16_t h0 = vandq_s8(vreinterpretq_s8_u8(bits_to_mask(qh[0], qh[1])), b4);
    const int8x16_t h1 = vandq_s8(vreinterpretq_s8_u8(bits_to_mask(qh[2], qh[3])), b4);
    *e0 = vsubq_s8(vorrq_s8(lo_nibbles(v), h0), b);
    *e1 = vsubq_s8(vorrq_s8(hi_nibbles(v), h1), b);
}

/* ---- 32-element block formats against q8_0 / q8_1 ---- */

/* q4_0 . q8_0: nibbles - 8 */
INLINE void dot_q4_0(int n, float *restrict s, const void *restrict vx, const void *restrict vy, dot_s8_fn dot) {
    const block_q4_0 *restrict x = vx;
    const block_q8_0 *restrict y = vy;
    const int8x16_t eight = vdupq_n_s8(8);
    float32x4_t acc = vdupq_n_f32(0);
    for (int i = 0; i < n / QK4_0; i++) {
        const uint8x16_t v = vld1q_u8(x[i].qs);
        const int32x4_t p = dot32(dot, vsubq_s8(lo_nibbles(v), eight), vsubq_s8(hi_nibbles(v), eight), y[i].qs);
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), fp16(x[i].d) * fp16(y[i].d));
    }
    *s = vaddvq_f32(acc);
}

/* q4_1 . q8_1: nibbles * d + m; the min meets the activation through q8_1's precomputed s = d * sum */
INLINE void dot_q4_1(int n, float *restrict s, const void *restrict vx, const void *restrict vy, dot_s8_fn dot) {
    const block_q4_1 *restrict x = vx;
    const block_q8_1 *restrict y = vy;
    float32x4_t acc = vdupq_n_f32(0);
    float mins = 0;
    for (int i = 0; i < n / QK4_1; i++) {
        const uint8x16_t v = vld1q_u8(x[i].qs);
        const int32x4_t p = dot32(dot, lo_nibbles(v), hi_nibbles(v), y[i].qs);
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), fp16(x[i].d) * fp16(y[i].d));
        mins += fp16(x[i].m) * fp16(y[i].s);
    }
    *s = vaddvq_f32(acc) + mins;
}

/* q5_0 . q8_0: (nibble | high bit << 4) - 16 */
INLINE void dot_q5_0(int n, float *restrict s, const void *restrict vx, const void *restrict vy, dot_s8_fn dot) {
    const block_q5_0 *restrict x = vx;
    const block_q8_0 *restrict y = vy;
    float32x4_t acc = vdupq_n_f32(0);
    for (int i = 0; i < n / QK5_0; i++) {
        int8x16_t e0, e1;
        q5_unpack(x[i].qh, x[i].qs, 16, &e0, &e1);
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(dot32(dot, e0, e1, y[i].qs)), fp16(x[i].d) * fp16(y[i].d));
    }
    *s = vaddvq_f32(acc);
}

/* q5_1 . q8_1: (nibble | high bit << 4) * d + m */
INLINE void dot_q5_1(int n, float *restrict s, const void *restrict vx, const void *restrict vy, dot_s8_fn dot) {
    const block_q5_1 *restrict x = vx;
    const block_q8_1 *restrict y = vy;
    float32x4_t acc = vdupq_n_f32(0);
    float mins = 0;
    for (int i = 0; i < n / QK5_1; i++) {
        int8x16_t e0, e1;
        q5_unpack(x[i].qh, x[i].qs, 0, &e0, &e1);
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(dot32(dot, e0, e1, y[i].qs)), fp16(x[i].d) * fp16(y[i].d));
        mins += fp16(x[i].m) * fp16(y[i].s);
    }
    *s = vaddvq_f32(acc) + mins;
}

/* q8_0 . q8_0 */
INLINE void dot_q8_0(int n, float *restrict s, const void *restrict vx, const void *restrict vy, dot_s8_fn dot) {
    const block_q8_0 *restrict x = vx;
    const block_q8_0 *restrict y = vy;
    float32x4_t acc = vdupq_n_f32(0);
    for (int i = 0; i < n / QK8_0; i++) {
        const int32x4_t p = dot32(dot, vld1q_s8(x[i].qs), vld1q_s8(x[i].qs + 16), y[i].qs);
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), fp16(x[i].d) * fp16(y[i].d));
    }
    *s = vaddvq_f32(acc);
}

/* iq4_nl . q8_0: each nibble indexes the non-linear table (one TBL per 16 lanes) */
INLINE void dot_iq4_nl(int n, float *restrict s, const void *restrict vx, const void *restrict vy, dot_s8_fn dot) {
    const block_iq4_nl *restrict x = vx;
    const block_q8_0 *restrict y = vy;
    const int8x16_t table = vld1q_s8(llp_iq4nl_values);
    float32x4_t acc = vdupq_n_f32(0);
    for (int i = 0; i < n / QK4_NL; i++) {
        const uint8x16_t v = vld1q_u8(x[i].qs);
        const int8x16_t e0 = vqtbl1q_s8(table, vandq_u8(v, vdupq_n_u8(0x0f)));
        const int8x16_t e1 = vqtbl1q_s8(table, vshrq_n_u8(v, 4));
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(dot32(dot, e0, e1, y[i].qs)), fp16(x[i].d) * fp16(y[i].d));
    }
    *s = vaddvq_f32(acc);
}

/* ---- 256-element super-blocks against q8_K ---- */

/* The 8 scales and 8 mins (6 bits each) packed in q4_K / q5_K's 12 bytes:
 * bytes 0..3 hold scales 0..3 (low 6 bits), bytes 4..7 mins 0..3, bytes 8..11 the low nibbles of
 * scales 4..7 and high nibbles of mins 4..7, whose top 2 bits sit in bits 6..7 of bytes 0..3 / 4..7. */
INLINE void k4_scales_mins(const uint8_t packed[K_SCALE_SIZE], uint8_t sc[8], uint8_t mn[8]) {
    uint32_t w[3], out[4];
    memcpy(w, packed, sizeof w);
    out[0] = w[0] & 0x3f3f3f3f;                                             /* scales 0..3 */
    out[1] = (w[2] & 0x0f0f0f0f) | ((w[0] >> 2) & 0x30303030);             /* scales 4..7 */
    out[2] = w[1] & 0x3f3f3f3f;                                             /* mins 0..3 */
    out[3] = ((w[2] >> 4) & 0x0f0f0f0f) | ((w[1] >> 2) & 0x30303030);      /* mins 4..7 */
    memcpy(sc, out, 8);
    memcpy(mn, out + 2, 8);
}

/* sum over the 8 sub-blocks of min[j] * (sum of the 32 activations of sub-block j), from q8_K's bsums. */
INLINE int32_t k4_min_dot(const uint8_t mn[8], const int16_t bsums[16]) {
    const int16x8_t sums32 = vpaddq_s16(vld1q_s16(bsums), vld1q_s16(bsums + 8));
    const int16x8_t m = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mn)));
    return vaddvq_s32(vmlal_high_s16(vmull_s16(vget_low_s16(sums32), vget_low_s16(m)), sums32, m));
}


/* q2_K . q8_K: 2-bit quants, 16 groups of 16 with a 4-bit scale (low nibble) and 4-bit min (high) */
INLINE void dot_q2_K(int n, float *restrict s, const void *restrict vx, const void *restrict vy, dot_s8_fn dot) {
    const block_q2_K *restrict x = vx;
    const block_q8_K *restrict y = vy;
    const uint8x16_t m2 = vdupq_n_u8(3);
    float sum = 0;
    for (int i = 0; i < n / QK_K; i++) {
        const uint8x16_t packed = vld1q_u8(x[i].scales);
        /* the mins meet the activations through q8_K's 16 group sums */
        const uint8x16_t mn = vshrq_n_u8(packed, 4);
        const int16x8_t mn0 = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(mn)));
        const int16x8_t mn1 = vreinterpretq_s16_u16(vmovl_high_u8(mn));
        const int16x8_t bs0 = vld1q_s16(y[i].bsums), bs1 = vld1q_s16(y[i].bsums + 8);
        int32x4_t mins = vmull_s16(vget_low_s16(mn0), vget_low_s16(bs0));
        mins = vmlal_high_s16(mins, mn0, bs0);
        mins = vmlal_s16(mins, vget_low_s16(mn1), vget_low_s16(bs1));
        mins = vmlal_high_s16(mins, mn1, bs1);

        uint8_t sc[16];
        vst1q_u8(sc, vandq_u8(packed, vdupq_n_u8(0x0f)));
        int32x4_t acc = vdupq_n_s32(0);
        const int8_t *q8 = y[i].qs;
        for (int h = 0; h < 2; h++) {  /* 32 bytes give 128 elements, 2 bits at a time */
            uint8x16_t q0 = vld1q_u8(x[i].qs + 32 * h), q1 = vld1q_u8(x[i].qs + 32 * h + 16);
            for (int j = 0; j < 4; j++, q8 += 32) {
                const int g = 8 * h + 2 * j;
                acc = scaled_dot16(dot, acc, vreinterpretq_s8_u8(vandq_u8(q0, m2)), q8, sc[g]);
                acc = scaled_dot16(dot, acc, vreinterpretq_s8_u8(vandq_u8(q1, m2)), q8 + 16, sc[g + 1]);
                q0 = vshrq_n_u8(q0, 2);
                q1 = vshrq_n_u8(q1, 2);
            }
        }
        sum += y[i].d * fp16(x[i].d) * (float)vaddvq_s32(acc) - y[i].d * fp16(x[i].dmin) * (float)vaddvq_s32(mins);
    }
    *s = sum;
}

/* The 16 signed scales of q3_K, 6 bits each in 12 bytes: low nibbles in bytes 0..7 (scales 0..7 low
 * nibble, 8..15 high nibble), the top 2 bits of scale j in bits 2*(j/4) of byte 8 + j%4; stored + 32. */
INLINE void q3_scales(const uint8_t packed[12], int8_t sc[16]) {
    uint32_t w[3], out[4];
    memcpy(w, packed, sizeof w);
    out[0] = (w[0] & 0x0f0f0f0f) | ((w[2] << 4) & 0x30303030);
    out[1] = (w[1] & 0x0f0f0f0f) | ((w[2] << 2) & 0x30303030);
    out[2] = ((w[0] >> 4) & 0x0f0f0f0f) | (w[2] & 0x30303030);
    out[3] = ((w[1] >> 4) & 0x0f0f0f0f) | ((w[2] >> 2) & 0x30303030);
    vst1q_s8(sc, vsubq_s8(vreinterpretq_s8_u32(vld1q_u32(out)), vdupq_n_s8(32)));
}

/* q3_K . q8_K: 2 low bits from qs, the third from hmask (clear means -4), 16 groups of 16 */
INLINE void dot_q3_K(int n, float *restrict s, const void *restrict vx, const void *restrict vy, dot_s8_fn dot) {
    const block_q3_K *restrict x = vx;
    const block_q8_K *restrict y = vy;
    const uint8x16_t m2 = vdupq_n_u8(3), b2 = vdupq_n_u8(4);
    const int8x16_t four = vdupq_n_s8(4);
    float sum = 0;
    for (int i = 0; i < n / QK_K; i++) {
        int8_t sc[16];
        q3_scales(x[i].scales, sc);
        int32x4_t acc = vdupq_n_s32(0);
        const int8_t *q8 = y[i].qs;
        /* bit 4*h + j of hmask[l] belongs to element 128*h + 32*j + l */
        uint8x16_t hm0 = vld1q_u8(x[i].hmask), hm1 = vld1q_u8(x[i].hmask + 16);
        for (int h = 0; h < 2; h++) {
            uint8x16_t q0 = vld1q_u8(x[i].qs + 32 * h), q1 = vld1q_u8(x[i].qs + 32 * h + 16);
            for (int j = 0; j < 4; j++, q8 += 32) {
                const int g = 8 * h + 2 * j;
                /* (q | high << 2) - 4 is q - 4 when the high bit is clear, q when it is set */
                const uint8x16_t v0 = vorrq_u8(vandq_u8(q0, m2), vandq_u8(vshlq_n_u8(hm0, 2), b2));
                const uint8x16_t v1 = vorrq_u8(vandq_u8(q1, m2), vandq_u8(vshlq_n_u8(hm1, 2), b2));
                acc = scaled_dot16(dot, acc, vsubq_s8(vreinterpretq_s8_u8(v0), four), q8, sc[g]);
                acc = scaled_dot16(dot, acc, vsubq_s8(vreinterpretq_s8_u8(v1), four), q8 + 16, sc[g + 1]);
                q0 = vshrq_n_u8(q0, 2);
                q1 = vshrq_n_u8(q1, 2);
                hm0 = vshrq_n_u8(hm0, 1);
                hm1 = vshrq_n_u8(hm1, 1);
            }
        }
        sum += fp16(x[i].d) * y[i].d * (float)vaddvq_s32(acc);
    }
    *s = sum;
}

/* q4_K . q8_K: 4-bit quants, 8 groups of 32 with 6-bit scales and mins */
INLINE void dot_q4_K(int n, float *restrict s, const void *restrict vx, const void *restrict vy, dot_s8_fn dot) {
    const block_q4_K *restrict x = vx;
    const block_q8_K *restrict y = vy;
    float sum = 0;
    for (int i = 0; i < n / QK_K; i++) {
        uint8_t sc[8], mn[8];
        k4_scales_mins(x[i].scales, sc, mn);
        int32x4_t acc = vdupq_n_s32(0);
        for (int j = 0; j < 4; j++) {  /* 32 bytes: low nibbles are group 2j, high nibbles group 2j+1 */
            const uint8x16_t v0 = vld1q_u8(x[i].qs + 32 * j), v1 = vld1q_u8(x[i].qs + 32 * j + 16);
            const int8_t *q8 = y[i].qs + 64 * j;
            acc = vmlaq_n_s32(acc, dot32(dot, lo_nibbles(v0), lo_nibbles(v1), q8), sc[2 * j]);
            acc = vmlaq_n_s32(acc, dot32(dot, hi_nibbles(v0), hi_nibbles(v1), q8 + 32), sc[2 * j + 1]);
        }
        sum += y[i].d * fp16(x[i].d) * (float)vaddvq_s32(acc)
             - y[i].d * fp16(x[i].dmin) * (float)k4_min_dot(mn, y[i].bsums);
    }
    *s = sum;
}

/* q5_K . q8_K: q4_K plus a 5th bit per element from qh */
INLINE void dot_q5_K(int n, float *restrict s, const void *restrict vx, const void *restrict vy, dot_s8_fn dot) {
    const block_q5_K *restrict x = vx;
    const block_q8_K *restrict y = vy;
    const uint8x16_t b0 = vdupq_n_u8(1), b1 = vdupq_n_u8(2);
    float sum = 0;
    for (int i = 0; i < n / QK_K; i++) {
        uint8_t sc[8], mn[8];
        k4_scales_mins(x[i].scales, sc, mn);
        int32x4_t acc = vdupq_n_s32(0);
        /* bit 2j of qh[l] is the 5th bit of element 64j + l, bit 2j+1 that of element 64j + 32 + l */
        uint8x16_t h0 = vld1q_u8(x[i].qh), h1 = vld1q_u8(x[i].qh + 16);
        for (int j = 0; j < 4; j++) {
            const uint8x16_t v0 = vld1q_u8(x[i].qs + 32 * j), v1 = vld1q_u8(x[i].qs + 32 * j + 16);
            const int8_t *q8 = y[i].qs + 64 * j;
            const int8x16_t l0 = vorrq_s8(lo_nibbles(v0), vreinterpretq_s8_u8(vshlq_n_u8(vandq_u8(h0, b0), 4)));
            const int8x16_t l1 = vorrq_s8(lo_nibbles(v1), vreinterpretq_s8_u8(vshlq_n_u8(vandq_u8(h1, b0), 4)));
            const int8x16_t u0 = vorrq_s8(hi_nibbles(v0), vreinterpretq_s8_u8(vshlq_n_u8(vandq_u8(h0, b1), 3)));
            const int8x16_t u1 = vorrq_s8(hi_nibbles(v1), vreinterpretq_s8_u8(vshlq_n_u8(vandq_u8(h1, b1), 3)));
            acc = vmlaq_n_s32(acc, dot32(dot, l0, l1, q8), sc[2 * j]);
            acc = vmlaq_n_s32(acc, dot32(dot, u0, u1, q8 + 32), sc[2 * j + 1]);
            h0 = vshrq_n_u8(h0, 2);
            h1 = vshrq_n_u8(h1, 2);
        }
        sum += y[i].d * fp16(x[i].d) * (float)vaddvq_s32(acc)
             - y[i].d * fp16(x[i].dmin) * (float)k4_min_dot(mn, y[i].bsums);
    }
    *s = sum;
}

/* q6_K . q8_K: 4 low bits from ql, 2 high bits from qh, minus 32; 16 groups of 16 with int8 scales */
INLINE void dot_q6_K(int n, float *restrict s, const void *restrict vx, const void *restrict vy, dot_s8_fn dot) {
    const block_q6_K *restrict x = vx;
    const block_q8_K *restrict y = vy;
    const uint8x16_t m4 = vdupq_n_u8(0x0f), m6 = vdupq_n_u8(0x30);
    const int8x16_t bias = vdupq_n_s8(32);
    float sum = 0;
    for (int i = 0; i < n / QK_K; i++) {
        int32x4_t acc = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {  /* each half: 64 ql bytes, 32 qh bytes -> 128 elements */
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            const int8_t *sc = x[i].scales + 8 * h, *q8 = y[i].qs + 128 * h;
            for (int k = 0; k < 2; k++) {  /* lanes l = 16k .. 16k+15 of the 32-wide pattern */
                const uint8x16_t a = vld1q_u8(ql + 16 * k), b = vld1q_u8(ql + 32 + 16 * k);
                const uint8x16_t hb = vld1q_u8(qh + 16 * k);
                /* element 32*r + l takes qh bits 2r..2r+1 and the ql nibble named below */
                const uint8x16_t e0 = vorrq_u8(vandq_u8(a, m4), vandq_u8(vshlq_n_u8(hb, 4), m6));
                const uint8x16_t e1 = vorrq_u8(vandq_u8(b, m4), vandq_u8(vshlq_n_u8(hb, 2), m6));
                const uint8x16_t e2 = vorrq_u8(vshrq_n_u8(a, 4), vandq_u8(hb, m6));
                const uint8x16_t e3 = vorrq_u8(vshrq_n_u8(b, 4), vandq_u8(vshrq_n_u8(hb, 2), m6));
                const int8_t *y8 = q8 + 16 * k;
                acc = scaled_dot16(dot, acc, vsubq_s8(vreinterpretq_s8_u8(e0), bias), y8, sc[k]);
                acc = scaled_dot16(dot, acc, vsubq_s8(vreinterpretq_s8_u8(e1), bias), y8 + 32, sc[k + 2]);
                acc = scaled_dot16(dot, acc, vsubq_s8(vreinterpretq_s8_u8(e2), bias), y8 + 64, sc[k + 4]);
                acc = scaled_dot16(dot, acc, vsubq_s8(vreinterpretq_s8_u8(e3), bias), y8 + 96, sc[k + 6]);
            }
        }
        sum += fp16(x[i].d) * y[i].d * (float)vaddvq_s32(acc);
    }
    *s = sum;
}

/* iq4_xs . q8_K: iq4_nl's table over 8 groups of 32, each with a 6-bit scale (stored + 32) */
INLINE void dot_iq4_xs(int n, float *restrict s, const void *restrict vx, const void *restrict vy, dot_s8_fn dot) {
    const block_iq4_xs *restrict x = vx;
    const block_q8_K *restrict y = vy;
    const int8x16_t table = vld1q_s8(llp_iq4nl_values);
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    float sum = 0;
    for (int i = 0; i < n / QK_K; i++) {
        int32x4_t acc = vdupq_n_s32(0);
        for (int g = 0; g < 8; g++) {
            const int ls = ((x[i].scales_l[g / 2] >> 4 * (g % 2)) & 0x0f) | (((x[i].scales_h >> 2 * g) & 3) << 4);
            const uint8x16_t v = vld1q_u8(x[i].qs + 16 * g);
            const int8x16_t e0 = vqtbl1q_s8(table, vandq_u8(v, m4)), e1 = vqtbl1q_s8(table, vshrq_n_u8(v, 4));
            acc = vmlaq_n_s32(acc, dot32(dot, e0, e1, y[i].qs + 32 * g), ls - 32);
        }
        sum += fp16(x[i].d) * y[i].d * (float)vaddvq_s32(acc);
    }
    *s = sum;
}

/* The trit at position p (0 = most significant) of 8-bit fixed-point ternary bytes: (byte*3^p mod 256)*3 >> 8.
 * (q*3) >> 8 == ((q + (q >> 1)) >> 1) >> 6 with a halving add, so it stays in 8 bits. Result minus 1. */
INLINE int8x16_t trits(uint8x16_t bytes, uint8x16_t pow3) {
    const uint8x16_t q = vmulq_u8(bytes, pow3);
    const uint8x16_t t = vshrq_n_u8(vhaddq_u8(q, vshrq_n_u8(q, 1)), 6);
    return vsubq_s8(vreinterpretq_s8_u8(t), vdupq_n_s8(1));
}

/* tq1_0 . q8_K: ternary, 5 trits per qs byte and 4 per qh byte */
INLINE void dot_tq1_0(int n, float *restrict s, const void *restrict vx, const void *restrict vy, dot_s8_fn dot) {
    const block_tq1_0 *restrict x = vx;
    const block_q8_K *restrict y = vy;
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    static const uint8_t qh_pow3[16] = {1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27};
    float sum = 0;
    for (int i = 0; i < n / QK_K; i++) {
        const uint8x16_t a0 = vld1q_u8(x[i].qs), a1 = vld1q_u8(x[i].qs + 16), b = vld1q_u8(x[i].qs + 32);
        int32x4_t acc = vdupq_n_s32(0);
        for (int p = 0; p < 5; p++) {
            const uint8x16_t m = vdupq_n_u8(pow3[p]);
            /* trit p of qs[l] is element 32p + l (l < 32), of qs[32 + l] element 160 + 16p + l */
            acc = dot(acc, trits(a0, m), vld1q_s8(y[i].qs + 32 * p));
            acc = dot(acc, trits(a1, m), vld1q_s8(y[i].qs + 32 * p + 16));
            acc = dot(acc, trits(b, m), vld1q_s8(y[i].qs + 160 + 16 * p));
        }
        /* trit p of qh[j] is element 240 + 4p + j: lane 4p + j of the 4 bytes repeated */
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        acc = dot(acc, trits(vreinterpretq_u8_u32(vdupq_n_u32(qh)), vld1q_u8(qh_pow3)), vld1q_s8(y[i].qs + 240));
        sum += fp16(x[i].d) * y[i].d * (float)vaddvq_s32(acc);
    }
    *s = sum;
}

/* tq2_0 . q8_K: ternary as 2-bit values minus 1 */
INLINE void dot_tq2_0(int n, float *restrict s, const void *restrict vx, const void *restrict vy, dot_s8_fn dot) {
    const block_tq2_0 *restrict x = vx;
    const block_q8_K *restrict y = vy;
    const uint8x16_t m2 = vdupq_n_u8(3);
    const int8x16_t one = vdupq_n_s8(1);
    float sum = 0;
    for (int i = 0; i < n / QK_K; i++) {
        int32x4_t acc = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {  /* bits 2p..2p+1 of qs[32h + l] are element 128h + 32p + l */
            uint8x16_t q0 = vld1q_u8(x[i].qs + 32 * h), q1 = vld1q_u8(x[i].qs + 32 * h + 16);
            for (int p = 0; p < 4; p++) {
                const int8_t *q8 = y[i].qs + 128 * h + 32 * p;
                acc = dot(acc, vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q0, m2)), one), vld1q_s8(q8));
                acc = dot(acc, vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q1, m2)), one), vld1q_s8(q8 + 16));
                q0 = vshrq_n_u8(q0, 2);
                q1 = vshrq_n_u8(q1, 2);
            }
        }
        sum += fp16(x[i].d) * y[i].d * (float)vaddvq_s32(acc);
    }
    *s = sum;
}

/* ---- float rows ---- */

/* f32 . f32: four accumulators hide the FMA latency */
static void vec_dot_f32_neon(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const float *restrict x = vx, *restrict y = vy;
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
        a1 = vfmaq_f32(a1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
        a2 = vfmaq_f32(a2, vld1q_f32(x + i + 8), vld1q_f32(y + i + 8));
        a3 = vfmaq_f32(a3, vld1q_f32(x + i + 12), vld1q_f32(y + i + 12));
    }
    for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) sum += x[i] * y[i];
    *s = sum;
}

INLINE float16x8_t load_f16x8(const llp_fp16 *p) { return vreinterpretq_f16_u16(vld1q_u16(p)); }

/* f16 . f16: widen 8 halves to two float vectors (FCVTL, baseline armv8-a), accumulate in f32 */
static void vec_dot_f16_neon(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const llp_fp16 *restrict x = vx, *restrict y = vy;
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const float16x8_t x0 = load_f16x8(x + i), y0 = load_f16x8(y + i);
        const float16x8_t x1 = load_f16x8(x + i + 8), y1 = load_f16x8(y + i + 8);
        a0 = vfmaq_f32(a0, vcvt_f32_f16(vget_low_f16(x0)), vcvt_f32_f16(vget_low_f16(y0)));
        a1 = vfmaq_f32(a1, vcvt_high_f32_f16(x0), vcvt_high_f32_f16(y0));
        a2 = vfmaq_f32(a2, vcvt_f32_f16(vget_low_f16(x1)), vcvt_f32_f16(vget_low_f16(y1)));
        a3 = vfmaq_f32(a3, vcvt_high_f32_f16(x1), vcvt_high_f32_f16(y1));
    }
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) sum += fp16(x[i]) * fp16(y[i]);
    *s = sum;
}

/* A bf16 is the top half of a float, so widening by a 16-bit left shift converts exactly. */
INLINE float32x4_t bf16_lo(uint16x8_t v) { return vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(v), 16)); }
INLINE float32x4_t bf16_hi(uint16x8_t v) { return vreinterpretq_f32_u32(vshll_high_n_u16(v, 16)); }

/* bf16 . bf16: widen by shifting, accumulate in f32 */
static void vec_dot_bf16_neon(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const llp_bf16 *restrict x = vx, *restrict y = vy;
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const uint16x8_t x0 = vld1q_u16(x + i), y0 = vld1q_u16(y + i);
        const uint16x8_t x1 = vld1q_u16(x + i + 8), y1 = vld1q_u16(y + i + 8);
        a0 = vfmaq_f32(a0, bf16_lo(x0), bf16_lo(y0));
        a1 = vfmaq_f32(a1, bf16_hi(x0), bf16_hi(y0));
        a2 = vfmaq_f32(a2, bf16_lo(x1), bf16_lo(y1));
        a3 = vfmaq_f32(a3, bf16_hi(x1), bf16_hi(y1));
    }
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) sum += llp_bf16_to_f32(x[i]) * llp_bf16_to_f32(y[i]);
    *s = sum;
}

/* ---- activation quantizers, bit-exact with the scalar references ---- */

INLINE float32x4_t vmax_abs(float32x4_t m, float32x4_t v) { return vmaxq_f32(m, vabsq_f32(v)); }

/* 16 floats times `scale`, rounded half to even, saturated to int8 (q8_K clamps to 127 itself). */
INLINE int8x16_t quant16(const float *x, float scale) {
    int32x4_t r[4];
    for (int k = 0; k < 4; k++) {
        const float32x4_t v = vmulq_n_f32(vld1q_f32(x + 4 * k), scale);
        r[k] = vcvtnq_s32_f32(v);
    }
    const int16x8_t lo = vcombine_s16(vqmovn_s32(r[0]), vqmovn_s32(r[1]));
    const int16x8_t hi = vcombine_s16(vqmovn_s32(r[2]), vqmovn_s32(r[3]));
    return vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi));
}

/* max |x| over a 32-float block */
INLINE float amax32(const float *x) {
    float32x4_t m = vdupq_n_f32(0);
    for (int k = 0; k < 8; k++) m = vmax_abs(m, vld1q_f32(x + 4 * k));
    return vmaxvq_f32(m);
}

/* q8_0 as the scalar twin (llama.cpp's x86 code): d = max|x| / 127, q = x * (127 / max|x|) rounded half to even */
static void quantize_row_q8_0_neon(const float *restrict x, void *restrict vy, int64_t k) {
    block_q8_0 *restrict y = vy;
    for (int64_t i = 0; i < k / QK8_0; i++, x += QK8_0) {
        const float m = amax32(x), d = m / 127;
        const float id = m != 0.0f ? 127.0f / m : 0.0f;
        y[i].d = to_fp16(d);
        vst1q_s8(y[i].qs, quant16(x, id));
        vst1q_s8(y[i].qs + 16, quant16(x + 16, id));
    }
}

/* q8_1: q8_0 plus s = d * sum(q) */
static void quantize_row_q8_1_neon(const float *restrict x, void *restrict vy, int64_t k) {
    block_q8_1 *restrict y = vy;
    for (int64_t i = 0; i < k / QK8_1; i++, x += QK8_1) {
        const float m = amax32(x), d = m / 127;
        const float id = m != 0.0f ? 127.0f / m : 0.0f;
        const int8x16_t q0 = quant16(x, id), q1 = quant16(x + 16, id);
        y[i].d = to_fp16(d);
        y[i].s = to_fp16((float)(vaddlvq_s8(q0) + vaddlvq_s8(q1)) * d);
        vst1q_s8(y[i].qs, q0);
        vst1q_s8(y[i].qs + 16, q1);
    }
}

/* q8_K: scale from the element of largest magnitude (the first one, as the reference scans), q
 * rounded to nearest even and clamped to 127, plus the sums of each 16 quants. */
static void quantize_row_q8_K_neon(const float *restrict x, void *restrict vy, int64_t k) {
    block_q8_K *restrict y = vy;
    for (int64_t i = 0; i < k / QK_K; i++, x += QK_K) {
        float32x4_t vmax = vld1q_f32(x), vmin = vmax;
        for (int j = 4; j < QK_K; j += 4) {
            const float32x4_t v = vld1q_f32(x + j);
            vmax = vmaxq_f32(vmax, v);
            vmin = vminq_f32(vmin, v);
        }
        const float hi = vmaxvq_f32(vmax), lo = vminvq_f32(vmin);
        float max = hi >= -lo ? hi : lo;
        if (hi == -lo)  /* +a and -a both present: the reference keeps whichever comes first */
            for (int j = 0; j < QK_K; j++)
                if (x[j] == hi || x[j] == lo) { max = x[j]; break; }
        if (max == 0) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K / 16; j++) {
            const int8x16_t q = quant16(x + 16 * j, iscale);
            vst1q_s8(y[i].qs + 16 * j, q);
            y[i].bsums[j] = vaddlvq_s8(q);
        }
        y[i].d = 1 / iscale;
    }
}

/* f16 activations: FCVTN rounds to nearest even, as quantize_row_f16_ref does */
static void quantize_row_f16_neon(const float *restrict x, void *restrict vy, int64_t k) {
    llp_fp16 *restrict y = vy;
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        const float16x8_t h = vcvt_high_f16_f32(vcvt_f16_f32(vld1q_f32(x + i)), vld1q_f32(x + i + 4));
        vst1q_u16(y + i, vreinterpretq_u16_f16(h));
    }
    for (; i < k; i++) y[i] = to_fp16(x[i]);
}

/* ---- instantiation and registration ---- */

/* (name, type id) of every integer kernel; each gets a baseline and a dotprod copy. */
#define NEON_INT_KERNELS(X) \
    X(q4_0, LLP_Q4_0) X(q4_1, LLP_Q4_1) X(q5_0, LLP_Q5_0) X(q5_1, LLP_Q5_1) X(q8_0, LLP_Q8_0) \
    X(iq4_nl, LLP_IQ4_NL) X(q2_K, LLP_Q2_K) X(q3_K, LLP_Q3_K) X(q4_K, LLP_Q4_K) X(q5_K, LLP_Q5_K) \
    X(q6_K, LLP_Q6_K) X(iq4_xs, LLP_IQ4_XS) X(tq1_0, LLP_TQ1_0) X(tq2_0, LLP_TQ2_0)

#define BASE_KERNEL(t, id) \
    static void vec_dot_##t##_neon(int n, float *restrict s, const void *restrict vx, const void *restrict vy) { \
        dot_##t(n, s, vx, vy, dot_s8_base); \
    }
NEON_INT_KERNELS(BASE_KERNEL)

/* armv8.2-a, not just +dotprod: GCC declares vdotq_s32 for that architecture level. */
LLP_TARGET("arch=armv8.2-a+dotprod")
/* SDOT: each int32 lane gains the dot of 4 int8 pairs */
INLINE int32x4_t dot_s8_sdot(int32x4_t acc, int8x16_t a, int8x16_t b) { return vdotq_s32(acc, a, b); }

#define SDOT_KERNEL(t, id) \
    static void vec_dot_##t##_dotprod(int n, float *restrict s, const void *restrict vx, const void *restrict vy) { \
        dot_##t(n, s, vx, vy, dot_s8_sdot); \
    }
NEON_INT_KERNELS(SDOT_KERNEL)
LLP_TARGET_END

void llp_register_neon(llp_kernels *k) {
    const int sdot = llp_cpu()->dotprod;
#define REGISTER(t, id) k->vec_dot[id] = sdot ? vec_dot_##t##_dotprod : vec_dot_##t##_neon; k->impl[id] = "neon";
    NEON_INT_KERNELS(REGISTER)
#undef REGISTER
    k->vec_dot[LLP_F32] = vec_dot_f32_neon;
    k->vec_dot[LLP_F16] = vec_dot_f16_neon;
    k->vec_dot[LLP_BF16] = vec_dot_bf16_neon;
    k->impl[LLP_F32] = k->impl[LLP_F16] = k->impl[LLP_BF16] = "neon";
    k->from_float[LLP_Q8_0] = quantize_row_q8_0_neon;
    k->from_float[LLP_Q8_1] = quantize_row_q8_1_neon;
    k->from_float[LLP_Q8_K] = quantize_row_q8_K_neon;
    k->from_float[LLP_F16] = quantize_row_f16_neon;
}
#else
void llp_register_neon(llp_kernels *k) { (void)k; }
#endif
