/* AVX2 + FMA + F16C kernels: same contract as the scalar twins in ref/dot.c.
 *
 * Integer dots use maddubs (u8 x s8 -> pairs summed to i16) then madd (i16 pairs -> i32). Weights
 * are kept unsigned where their format allows (q4_0 is nibble - 8: the -8 is folded in as -8*sum(y)),
 * otherwise the sign trick |x| * (y with x's sign) makes a signed x usable as maddubs' unsigned side.
 * Float accumulators are reduced once per row.
 *
 * Tuned on Zen 4, where the vector pipes, not the loads, bound these loops: integer multiplies share two
 * pipes with each other and FMA shares one of them, so the work per block is kept to few vector ops and
 * the per-block fp16 scales are packed by the integer pipes (see DOT_Q8_0_BODY). */
#include <math.h>
#include "../include/kernels.h"

#if defined(__x86_64__)
#include "../include/target.h"
LLP_TARGET("avx2,fma,f16c,bmi2")
#include <immintrin.h>

/* ---------------------------------------------------------------- helpers */

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

static inline float fp16_to_f32(llp_fp16 h) { return _cvtsh_ss(h); }

static inline uint32_t load_u32(const void *p) { uint32_t u; memcpy(&u, p, 4); return u; }

static inline __m256i loadu256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* 16 bytes of packed nibbles (q4_0 layout) -> 32 bytes in element order: low nibbles in the low lane,
 * high nibbles in the high lane. Broadcast + per-lane shift avoids a cross-lane insert. */
static inline __m256i nibbles_16(const uint8_t *p) {
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    return _mm256_and_si256(_mm256_srlv_epi64(b, _mm256_set_epi64x(4, 4, 0, 0)), _mm256_set1_epi8(0x0F));
}

/* 32 bits at p -> 32 bytes: byte j is 0xFF where bit j is set (the 5th bits of q5_0/q5_1). Each byte
 * gets its source byte by pshufb, then all bits but its own are forced on: all-ones iff its bit is set. */
static inline __m256i bits_to_bytes(const uint8_t *p) {
    const __m256i spread = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    const __m256i others = _mm256_set1_epi64x((long long)0x7fbfdfeff7fbfdfeULL);
    const __m256i v = _mm256_shuffle_epi8(_mm256_castps_si256(_mm256_broadcast_ss((const float *)p)), spread);
    return _mm256_cmpeq_epi8(_mm256_or_si256(v, others), _mm256_set1_epi8(-1));
}

/* Moves bit `from` of every byte to bit `to`, clearing the rest. 16-bit shifts are fine: the moved bit
 * never crosses a byte boundary. */
static inline __m256i move_bit(__m256i v, int from, int to) {
    v = from > to ? _mm256_srli_epi16(v, from - to) : _mm256_slli_epi16(v, to - from);
    return _mm256_and_si256(v, _mm256_set1_epi8((char)(1 << to)));
}

/* sum of u8 x s8 products, as 8 partial i32 sums */
static inline __m256i dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* sum of s8 x s8 products (x never -128): the sign trick moves x's sign onto y */
static inline __m256i dot_s8s8(__m256i x, __m256i y) {
    return dot_u8s8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* i16 pshufb control repeating 16-bit element a of the low lane and element b of the high lane */
static inline __m256i rep16(int a, int b) {
    return _mm256_set_m128i(_mm_set1_epi16((short)(0x0100 + 0x0202 * b)), _mm_set1_epi16((short)(0x0100 + 0x0202 * a)));
}

/* Four fp16 values -> [f(a), f(b), f(c), f(d)] with one conversion */
static inline __m128 fp16x4(uint16_t a, uint16_t b, uint16_t c, uint16_t d) {
    const uint64_t u = a | (uint32_t)b << 16 | (uint64_t)c << 32 | (uint64_t)d << 48;
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)u));
}

/* Four (fp16, fp16) pairs -> 8 floats with one conversion */
static inline __m256 fp16x8_pairs(const void *a, const void *b, const void *c, const void *d) {
    const uint64_t lo = load_u32(a) | (uint64_t)load_u32(b) << 32, hi = load_u32(c) | (uint64_t)load_u32(d) << 32;
    return _mm256_cvtph_ps(_mm_insert_epi64(_mm_cvtsi64_si128((long long)lo), (long long)hi, 1));
}

/* lane k of v in every lane: one vpermps, cheaper than extracting and broadcasting */
static inline __m256 lane(__m256 v, int k) { return _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(k)); }

/* ---------------------------------------------------------------- 32-element blocks against q8_0/q8_1 */

/* i32 partial sums of one block's integer dot, per weight format */
static inline __m256i idot_q4_0(const block_q4_0 *x, const block_q8_0 *y) {
    const __m256i q = loadu256(y->qs);
    /* nibble*y - 8*y, both in i16 before widening */
    const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(nibbles_16(x->qs), q),
                                       _mm256_maddubs_epi16(_mm256_set1_epi8(8), q));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* (nibble | bit << 4) - 16 = nibble - 16 * (1 - bit): the offset is 16 where the bit is clear */
static inline __m256i idot_q5_0(const block_q5_0 *x, const block_q8_0 *y) {
    const __m256i q = loadu256(y->qs);
    const __m256i off = _mm256_andnot_si256(bits_to_bytes(x->qh), _mm256_set1_epi8(16));
    const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(nibbles_16(x->qs), q), _mm256_maddubs_epi16(off, q));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

static inline __m256i idot_q8_0(const block_q8_0 *x, const block_q8_0 *y) {
    return dot_s8s8(loadu256(x->qs), loadu256(y->qs));
}

static inline __m256i idot_iq4_nl(const block_iq4_nl *x, const block_q8_0 *y) {
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)llp_iq4nl_values));
    return dot_s8s8(_mm256_shuffle_epi8(table, nibbles_16(x->qs)), loadu256(y->qs));
}

/* sum over blocks of dx*dy * idot. Blocks go by 4, their 8 fp16 scales in two conversions: the scalar
 * loads and shifts that pack them run on the integer pipes, leaving the vector pipes to the dots. */
#define DOT_Q8_0_BODY(blk, idot)                                                              \
    const blk *x = vx;                                                                        \
    const block_q8_0 *y = vy;                                                                 \
    const int nb = n / QK8_0;                                                                 \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                            \
    int i = 0;                                                                                \
    for (; i + 4 <= nb; i += 4) {                                                             \
        const __m256 d = _mm256_castps128_ps256(_mm_mul_ps(                                   \
            fp16x4(x[i].d, x[i + 1].d, x[i + 2].d, x[i + 3].d), fp16x4(y[i].d, y[i + 1].d, y[i + 2].d, y[i + 3].d))); \
        acc0 = _mm256_fmadd_ps(lane(d, 0), _mm256_cvtepi32_ps(idot(&x[i], &y[i])), acc0);     \
        acc1 = _mm256_fmadd_ps(lane(d, 1), _mm256_cvtepi32_ps(idot(&x[i + 1], &y[i + 1])), acc1); \
        acc0 = _mm256_fmadd_ps(lane(d, 2), _mm256_cvtepi32_ps(idot(&x[i + 2], &y[i + 2])), acc0); \
        acc1 = _mm256_fmadd_ps(lane(d, 3), _mm256_cvtepi32_ps(idot(&x[i + 3], &y[i + 3])), acc1); \
    }                                                                                         \
    for (; i < nb; i++) {                                                                     \
        const __m256 d = _mm256_set1_ps(fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d));           \
        acc0 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(idot(&x[i], &y[i])), acc0);              \
    }                                                                                         \
    *s = hsum_ps(_mm256_add_ps(acc0, acc1));

/* q4_0 . q8_0: sum of dx*dy * sum((nibble - 8) * q) */
static void vec_dot_q4_0_q8_0(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    DOT_Q8_0_BODY(block_q4_0, idot_q4_0)
}

/* q5_0 . q8_0 in llama.cpp's x86 order (the scalar twin's): one accumulator, one fma per block */
static void vec_dot_q5_0_q8_0(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_q5_0 *x = vx;
    const block_q8_0 *y = vy;
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n / QK8_0; i++)
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d)),
                              _mm256_cvtepi32_ps(idot_q5_0(&x[i], &y[i])), acc);
    *s = hsum_ps(acc);
}

/* q8_0 . q8_0 in llama.cpp's x86 order (the scalar twin's): one accumulator, one fma per block */
static void vec_dot_q8_0_q8_0(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_q8_0 *x = vx, *y = vy;
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n / QK8_0; i++)
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d)),
                              _mm256_cvtepi32_ps(idot_q8_0(&x[i], &y[i])), acc);
    *s = hsum_ps(acc);
}

/* iq4_nl . q8_0: sum of dx*dy * sum(table[index] * q), the table looked up with pshufb */
static void vec_dot_iq4_nl_q8_0(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    DOT_Q8_0_BODY(block_iq4_nl, idot_iq4_nl)
}

static inline __m256i idot_q4_1(const block_q4_1 *x, const block_q8_1 *y) {
    return dot_u8s8(nibbles_16(x->qs), loadu256(y->qs));
}

static inline __m256i idot_q5_1(const block_q5_1 *x, const block_q8_1 *y) {
    const __m256i hi = _mm256_and_si256(bits_to_bytes(x->qh), _mm256_set1_epi8(0x10));
    return dot_u8s8(_mm256_or_si256(nibbles_16(x->qs), hi), loadu256(y->qs));
}

/* w = d*q + m against y = dy*qy: dx*dy*sum(q*qy) + m*sy, with sy = dy*sum(qy) stored in q8_1.
 * Blocks go by 4 as for q8_0: the product of their converted (d, m) and (d, s) pairs holds dx*dy in
 * even lanes and m*sy in odd lanes, which `mins` accumulates. */
#define DOT_Q8_1_BODY(blk, idot)                                                              \
    const blk *x = vx;                                                                        \
    const block_q8_1 *y = vy;                                                                 \
    const int nb = n / QK8_1;                                                                 \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), mins = _mm256_setzero_ps(); \
    float tail_mins = 0.0f;                                                                   \
    int i = 0;                                                                                \
    for (; i + 4 <= nb; i += 4) {                                                             \
        const __m256 f = _mm256_mul_ps(fp16x8_pairs(&x[i].d, &x[i + 1].d, &x[i + 2].d, &x[i + 3].d), \
                                       fp16x8_pairs(&y[i].d, &y[i + 1].d, &y[i + 2].d, &y[i + 3].d)); \
        mins = _mm256_add_ps(mins, f);                                                        \
        acc0 = _mm256_fmadd_ps(lane(f, 0), _mm256_cvtepi32_ps(idot(&x[i], &y[i])), acc0);     \
        acc1 = _mm256_fmadd_ps(lane(f, 2), _mm256_cvtepi32_ps(idot(&x[i + 1], &y[i + 1])), acc1); \
        acc0 = _mm256_fmadd_ps(lane(f, 4), _mm256_cvtepi32_ps(idot(&x[i + 2], &y[i + 2])), acc0); \
        acc1 = _mm256_fmadd_ps(lane(f, 6), _mm256_cvtepi32_ps(idot(&x[i + 3], &y[i + 3])), acc1); \
    }                                                                                         \
    for (; i < nb; i++) {                                                                     \
        const __m256 d = _mm256_set1_ps(fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d));           \
        acc0 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(idot(&x[i], &y[i])), acc0);              \
        tail_mins += fp16_to_f32(x[i].m) * fp16_to_f32(y[i].s);                               \
    }                                                                                         \
    *s = hsum_ps(_mm256_add_ps(acc0, acc1)) + hsum_ps(_mm256_blend_ps(_mm256_setzero_ps(), mins, 0xAA)) + tail_mins;

/* q4_1 . q8_1 in llama.cpp's x86 order (the scalar twin's): one accumulator, one fma per block, and the
 * m * s terms in a scalar fma chain added last */
static void vec_dot_q4_1_q8_1(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_q4_1 *x = vx;
    const block_q8_1 *y = vy;
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int i = 0; i < n / QK8_1; i++) {
        mins = fmaf(fp16_to_f32(x[i].m), fp16_to_f32(y[i].s), mins);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d)),
                              _mm256_cvtepi32_ps(idot_q4_1(&x[i], &y[i])), acc);
    }
    *s = hsum_ps(acc) + mins;
}

/* q5_1 . q8_1: sum of dx*dy * sum((nibble | bit << 4) * q) + m*s */
static void vec_dot_q5_1_q8_1(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    DOT_Q8_1_BODY(block_q5_1, idot_q5_1)
}

/* ---------------------------------------------------------------- K-quants against q8_K */

/* The 12 scale bytes of q4_K/q5_K -> 8 six-bit scales (bytes 0-7) and 8 six-bit mins (bytes 8-15).
 * Scales/mins 0-3 are the low 6 bits of bytes 0-3/4-7; 4-7 take 4 bits from bytes 8-11 (low/high
 * nibble) and their top 2 bits from the spare top bits of bytes 0-3/4-7. */
static inline __m128i k4_scales_mins(const uint8_t *p) {
    uint32_t w[3];
    memcpy(w, p, 12);
    const uint32_t sc_lo = w[0] & 0x3f3f3f3f, m_lo = w[1] & 0x3f3f3f3f;
    const uint32_t sc_hi = (w[2] & 0x0f0f0f0f) | ((w[0] >> 6) & 0x03030303) << 4;
    const uint32_t m_hi = ((w[2] >> 4) & 0x0f0f0f0f) | ((w[1] >> 6) & 0x03030303) << 4;
    return _mm_insert_epi64(_mm_cvtsi64_si128((long long)(sc_lo | (uint64_t)sc_hi << 32)), (long long)(m_lo | (uint64_t)m_hi << 32), 1);
}

/* sum_j min_j * (y sum of sub-block j of 32) for the 8 mins in bytes 8-15 of sm, as 8 i32 */
static inline __m256i k4_min_dot(__m128i sm, const int16_t *bsums) {
    const __m128i dup = _mm_shuffle_epi8(sm, _mm_set_epi8(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8));
    return _mm256_madd_epi16(_mm256_cvtepu8_epi16(dup), loadu256(bsums));
}

/* One q4_K/q5_K super-block against q8_K, as 8 i32 each: sum_j sc_j * sum(q*qy) over the 8 sub-blocks of
 * 32, and sum_j m_j * (sum of qy over sub-block j). q is the nibble (sub-block 2j: low nibbles of qs[32j..],
 * 2j+1: high nibbles), plus for q5_K the 5th bit from qh (bit 2j / 2j+1 of qh[l]). */
static inline void k4_superblock(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, const block_q8_K *y,
                                 __m256i *sums, __m256i *min_sums) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m128i sm = k4_scales_mins(scales);
    const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
    const __m256i hbits = qh ? loadu256(qh) : _mm256_setzero_si256();
    __m256i sum0 = _mm256_setzero_si256(), sum1 = _mm256_setzero_si256();
    for (int j = 0; j < 4; j++) {
        const __m256i q = loadu256(qs + 32 * j);
        __m256i q0 = _mm256_and_si256(q, low4), q1 = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
        if (qh) {
            q0 = _mm256_or_si256(q0, move_bit(hbits, 2 * j, 4));
            q1 = _mm256_or_si256(q1, move_bit(hbits, 2 * j + 1, 4));
        }
        const __m256i p0 = _mm256_maddubs_epi16(q0, loadu256(y->qs + 64 * j));
        const __m256i p1 = _mm256_maddubs_epi16(q1, loadu256(y->qs + 64 * j + 32));
        sum0 = _mm256_add_epi32(sum0, _mm256_madd_epi16(p0, _mm256_shuffle_epi8(sc, rep16(2 * j, 2 * j))));
        sum1 = _mm256_add_epi32(sum1, _mm256_madd_epi16(p1, _mm256_shuffle_epi8(sc, rep16(2 * j + 1, 2 * j + 1))));
    }
    *sums = _mm256_add_epi32(sum0, sum1);
    *min_sums = k4_min_dot(sm, y->bsums);
}

/* per super-block dy * (d * sums - dmin * min_sums), sums from k4_superblock */
#define DOT_K4_BODY(blk, qh)                                                                  \
    const blk *x = vx;                                                                        \
    const block_q8_K *y = vy;                                                                 \
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();                             \
    for (int i = 0; i < n / QK_K; i++) {                                                      \
        __m256i sums, min_sums;                                                               \
        k4_superblock(x[i].scales, x[i].qs, qh, &y[i], &sums, &min_sums);                     \
        const __m128 f = _mm_mul_ps(fp16x4(x[i].d, x[i].dmin, 0, 0), _mm_set1_ps(y[i].d));   \
        acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(f), _mm256_cvtepi32_ps(sums), acc);       \
        accm = _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(f)), _mm256_cvtepi32_ps(min_sums), accm); \
    }                                                                                         \
    *s = hsum_ps(_mm256_sub_ps(acc, accm));

/* q4_K . q8_K: 4-bit quants with a 6-bit scale and min per sub-block of 32 */
static void vec_dot_q4_K_q8_K(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    DOT_K4_BODY(block_q4_K, NULL)
}

/* q5_K . q8_K: q4_K with a 5th bit per element */
static void vec_dot_q5_K_q8_K(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    DOT_K4_BODY(block_q5_K, x[i].qh)
}

/* q6_K . q8_K: per super-block d*dy * sum_g sc_g * sum((q - 32) * qy) over 16 groups of 16; the -32 is
 * folded in as -32 * sum_g sc_g * bsum_g so the 6-bit q stays unsigned for maddubs */
static void vec_dot_q6_K_q8_K(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
    const int nb = n / QK_K;
    const __m256i low4 = _mm256_set1_epi8(0x0F), bits45 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < nb; i++) {
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        __m256i sum = _mm256_slli_epi32(_mm256_madd_epi16(loadu256(y[i].bsums), sc16), 5);
        sum = _mm256_sub_epi32(_mm256_setzero_si256(), sum);
        for (int h = 0; h < 2; h++) {
            /* both lanes hold the 8 scales of this half; vector k uses 2k (low lane) and 2k+1 (high lane) */
            const __m256i sc = h ? _mm256_permute4x64_epi64(sc16, 0xEE) : _mm256_permute4x64_epi64(sc16, 0x44);
            const uint8_t *ql = x[i].ql + 64 * h;
            const int8_t *qy = y[i].qs + 128 * h;
            const __m256i l0 = loadu256(ql), l1 = loadu256(ql + 32), qh = loadu256(x[i].qh + 32 * h);
            const __m256i q0 = _mm256_or_si256(_mm256_and_si256(l0, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), bits45));
            const __m256i q1 = _mm256_or_si256(_mm256_and_si256(l1, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), bits45));
            const __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4), _mm256_and_si256(qh, bits45));
            const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                                               _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45));
            const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(q0, loadu256(qy)), _mm256_shuffle_epi8(sc, rep16(0, 1)));
            const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(q1, loadu256(qy + 32)), _mm256_shuffle_epi8(sc, rep16(2, 3)));
            const __m256i p2 = _mm256_madd_epi16(_mm256_maddubs_epi16(q2, loadu256(qy + 64)), _mm256_shuffle_epi8(sc, rep16(4, 5)));
            const __m256i p3 = _mm256_madd_epi16(_mm256_maddubs_epi16(q3, loadu256(qy + 96)), _mm256_shuffle_epi8(sc, rep16(6, 7)));
            sum = _mm256_add_epi32(sum, _mm256_add_epi32(_mm256_add_epi32(p0, p1), _mm256_add_epi32(p2, p3)));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_f32(x[i].d) * y[i].d), _mm256_cvtepi32_ps(sum), acc);
    }
    *s = hsum_ps(acc);
}

/* q2_K . q8_K: per super-block dy * (d * sum_g sc_g*sum(q*qy) - dmin * sum_g m_g*bsum_g), 16 groups of 16,
 * 4-bit scale (low nibble) and min (high nibble) per group */
static void vec_dot_q2_K_q8_K(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_q2_K *x = vx;
    const block_q8_K *y = vy;
    const int nb = n / QK_K;
    const __m128i low4 = _mm_set1_epi8(0x0F);
    const __m256i low2 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int i = 0; i < nb; i++) {
        const __m128 f = _mm_mul_ps(fp16x4(x[i].d, x[i].dmin, 0, 0), _mm_set1_ps(y[i].d));
        const __m128i packed = _mm_loadu_si128((const __m128i *)x[i].scales);
        const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(packed, low4));
        const __m256i m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), low4));
        accm = _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(f)),
                               _mm256_cvtepi32_ps(_mm256_madd_epi16(loadu256(y[i].bsums), m16)), accm);
        __m256i sum = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i sc = h ? _mm256_permute4x64_epi64(sc16, 0xEE) : _mm256_permute4x64_epi64(sc16, 0x44);
            const __m256i q = loadu256(x[i].qs + 32 * h);
            const int8_t *qy = y[i].qs + 128 * h;
            for (int k = 0; k < 4; k++) {
                const __m256i qk = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), low2);
                const __m256i p = _mm256_maddubs_epi16(qk, loadu256(qy + 32 * k));
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, _mm256_shuffle_epi8(sc, rep16(2 * k, 2 * k + 1))));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(f), _mm256_cvtepi32_ps(sum), acc);
    }
    *s = hsum_ps(_mm256_sub_ps(acc, accm));
}

/* The 12 scale bytes of q3_K -> 16 six-bit scales as bytes: low 4 bits from the nibbles of bytes 0-7
 * (scales 0-7 low nibbles, 8-15 high nibbles), top 2 bits from bytes 8-11, 2 bits per scale */
static inline __m128i q3_K_scales(const uint8_t *p) {
    uint32_t w[3];
    memcpy(w, p, 12);
    const uint32_t m2 = 0x03030303, m4 = 0x0f0f0f0f;
    return _mm_set_epi32((int)(((w[1] >> 4) & m4) | ((w[2] >> 6) & m2) << 4),
                         (int)(((w[0] >> 4) & m4) | ((w[2] >> 4) & m2) << 4),
                         (int)((w[1] & m4) | ((w[2] >> 2) & m2) << 4),
                         (int)((w[0] & m4) | (w[2] & m2) << 4));
}

/* q3_K . q8_K: per super-block d*dy * sum_g (sc_g - 32) * sum((q - 4) * qy), 16 groups of 16, where
 * q = 2 low bits | high-mask bit << 2 is unsigned; the -4 is folded in as -4 * sum_g sc_g*bsum_g */
static void vec_dot_q3_K_q8_K(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    const int nb = n / QK_K;
    const __m256i low2 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < nb; i++) {
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_sub_epi8(q3_K_scales(x[i].scales), _mm_set1_epi8(32)));
        __m256i sum = _mm256_slli_epi32(_mm256_madd_epi16(loadu256(y[i].bsums), sc16), 2);
        sum = _mm256_sub_epi32(_mm256_setzero_si256(), sum);
        const __m256i hm = loadu256(x[i].hmask);
        for (int h = 0; h < 2; h++) {
            const __m256i sc = h ? _mm256_permute4x64_epi64(sc16, 0xEE) : _mm256_permute4x64_epi64(sc16, 0x44);
            const __m256i q = loadu256(x[i].qs + 32 * h);
            const int8_t *qy = y[i].qs + 128 * h;
            for (int k = 0; k < 4; k++) {
                const __m256i qk = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * k), low2), move_bit(hm, 4 * h + k, 2));
                const __m256i p = _mm256_maddubs_epi16(qk, loadu256(qy + 32 * k));
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, _mm256_shuffle_epi8(sc, rep16(2 * k, 2 * k + 1))));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_f32(x[i].d) * y[i].d), _mm256_cvtepi32_ps(sum), acc);
    }
    *s = hsum_ps(acc);
}

/* iq4_xs . q8_K: per super-block d*dy * sum_b (ls_b - 32) * sum(table[index] * qy), 8 sub-blocks of 32
 * with 6-bit scales ls (4 low bits in scales_l, 2 high bits in scales_h) */
static void vec_dot_iq4_xs_q8_K(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_iq4_xs *x = vx;
    const block_q8_K *y = vy;
    const int nb = n / QK_K;
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)llp_iq4nl_values));
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < nb; i++) {
        const uint32_t sl = load_u32(x[i].scales_l), sh = x[i].scales_h;
        __m256i sum = _mm256_setzero_si256();
        for (int b = 0; b < QK_K / 32; b++) {
            const int ls = (int)(((sl >> 4 * b) & 0xF) | ((sh >> 2 * b) & 3) << 4) - 32;
            const __m256i v = _mm256_shuffle_epi8(table, nibbles_16(x[i].qs + 16 * b));
            const __m256i y8 = loadu256(y[i].qs + 32 * b);
            const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(y8, v));
            sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, _mm256_set1_epi16((short)ls)));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_f32(x[i].d) * y[i].d), _mm256_cvtepi32_ps(sum), acc);
    }
    *s = hsum_ps(acc);
}

/* sum(qy) of a q8_K block, from its bsums, as 8 i32 */
static inline __m256i q8_K_sum(const block_q8_K *y) {
    return _mm256_madd_epi16(loadu256(y->bsums), _mm256_set1_epi16(1));
}

/* tq2_0 . q8_K: per super-block d*dy * sum((q - 1) * qy), q the 2-bit codes; -1 folded in via bsums */
static void vec_dot_tq2_0_q8_K(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_tq2_0 *x = vx;
    const block_q8_K *y = vy;
    const int nb = n / QK_K;
    const __m256i low2 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < nb; i++) {
        __m256i sum16 = _mm256_setzero_si256();   /* |q*qy| pairs <= 508, 8 of them fit in i16 */
        for (int h = 0; h < 2; h++) {
            const __m256i q = loadu256(x[i].qs + 32 * h);
            for (int k = 0; k < 4; k++) {
                const __m256i qk = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), low2);
                sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(qk, loadu256(y[i].qs + 128 * h + 32 * k)));
            }
        }
        const __m256i sum = _mm256_sub_epi32(_mm256_madd_epi16(sum16, _mm256_set1_epi16(1)), q8_K_sum(&y[i]));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_f32(x[i].d) * y[i].d), _mm256_cvtepi32_ps(sum), acc);
    }
    *s = hsum_ps(acc);
}

/* 32 bytes holding base-3 digits -> the digit each byte's scaled value carries: byte b times `mul`
 * (per 16-bit lane) mod 256 is the fixed-point fraction q/256, the digit is (3*q) >> 8. Bytes are
 * handled in the high half of 16-bit lanes so the products stay mod 256 without masking. */
static inline __m256i tq1_digits(__m256i even_hi, __m256i odd_hi, __m256i mul) {
    const __m256i three = _mm256_set1_epi16(3);
    const __m256i de = _mm256_mulhi_epu16(_mm256_mullo_epi16(even_hi, mul), three);
    const __m256i dd = _mm256_mulhi_epu16(_mm256_mullo_epi16(odd_hi, mul), three);
    return _mm256_or_si256(de, _mm256_slli_epi16(dd, 8));
}

/* tq1_0 . q8_K: per super-block d*dy * sum((t - 1) * qy), t the ternary digits: qs[0..31] hold 5 digits
 * each (elements 32n + m), qs[32..47] 5 each (160 + 16n + m), qh[0..3] 4 each (240 + 4n + j) */
static void vec_dot_tq1_0_q8_K(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_tq1_0 *x = vx;
    const block_q8_K *y = vy;
    const int nb = n / QK_K;
    const __m256i hi_byte = _mm256_set1_epi16((short)0xFF00);
    /* multipliers: digits n of qs[32..47] in the low lane, n+1 (or the 4 qh digits) in the high lane */
    const __m256i mul01 = _mm256_set_m128i(_mm_set1_epi16(3), _mm_set1_epi16(1));
    const __m256i mul23 = _mm256_set_m128i(_mm_set1_epi16(27), _mm_set1_epi16(9));
    const __m256i mul4h = _mm256_set_m128i(_mm_set_epi16(27, 27, 9, 9, 3, 3, 1, 1), _mm_set1_epi16(81));
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < nb; i++) {
        const int8_t *qy = y[i].qs;
        __m256i sum16 = _mm256_setzero_si256();   /* |t*qy| pairs <= 508, 8 of them fit in i16 */
        const __m256i a = loadu256(x[i].qs);
        const __m256i ae = _mm256_slli_epi16(a, 8), ao = _mm256_and_si256(a, hi_byte);
        for (int k = 0, pow3 = 1; k < 5; k++, pow3 *= 3)
            sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(tq1_digits(ae, ao, _mm256_set1_epi16((short)pow3)),
                                                                 loadu256(qy + 32 * k)));
        const __m128i b = _mm_loadu_si128((const __m128i *)(x[i].qs + 32));
        const __m256i bb = _mm256_broadcastsi128_si256(b);
        const __m256i bh = _mm256_set_m128i(_mm_set1_epi32((int)load_u32(x[i].qh)), b);
        const __m256i bbe = _mm256_slli_epi16(bb, 8), bbo = _mm256_and_si256(bb, hi_byte);
        sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(tq1_digits(bbe, bbo, mul01), loadu256(qy + 160)));
        sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(tq1_digits(bbe, bbo, mul23), loadu256(qy + 192)));
        sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(tq1_digits(_mm256_slli_epi16(bh, 8), _mm256_and_si256(bh, hi_byte), mul4h),
                                                             loadu256(qy + 224)));
        const __m256i sum = _mm256_sub_epi32(_mm256_madd_epi16(sum16, _mm256_set1_epi16(1)), q8_K_sum(&y[i]));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_f32(x[i].d) * y[i].d), _mm256_cvtepi32_ps(sum), acc);
    }
    *s = hsum_ps(acc);
}

/* ---------------------------------------------------------------- float rows */

static inline __m256 load_f32x8(const float *p) { return _mm256_loadu_ps(p); }
static inline __m256 load_f16x8(const llp_fp16 *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

/* bf16 is the top half of an f32: widen and shift */
static inline __m256 load_bf16x8(const llp_bf16 *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

static inline float f32_to_f32(float f) { return f; }

/* 32 elements per step into 4 accumulators (FMA latency), then 8 at a time, then a scalar tail */
#define DOT_FLOAT_BODY(T, load8, to_f32)                                                         \
    const T *x = vx, *y = vy;                                                                    \
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps(); \
    int i = 0;                                                                                   \
    for (; i + 32 <= n; i += 32) {                                                               \
        a0 = _mm256_fmadd_ps(load8(x + i), load8(y + i), a0);                                    \
        a1 = _mm256_fmadd_ps(load8(x + i + 8), load8(y + i + 8), a1);                            \
        a2 = _mm256_fmadd_ps(load8(x + i + 16), load8(y + i + 16), a2);                          \
        a3 = _mm256_fmadd_ps(load8(x + i + 24), load8(y + i + 24), a3);                          \
    }                                                                                            \
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load8(x + i), load8(y + i), a0);             \
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));            \
    for (; i < n; i++) sum += to_f32(x[i]) * to_f32(y[i]);                                       \
    *s = sum;

/* f32 . f32 */
static void vec_dot_f32_f32(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    DOT_FLOAT_BODY(float, load_f32x8, f32_to_f32)
}

/* f16 . f16, widened with F16C */
static void vec_dot_f16_f16(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    DOT_FLOAT_BODY(llp_fp16, load_f16x8, fp16_to_f32)
}

/* bf16 . bf16 */
static void vec_dot_bf16_bf16(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    DOT_FLOAT_BODY(llp_bf16, load_bf16x8, llp_bf16_to_f32)
}

/* ---------------------------------------------------------------- attention over an f16 cache */

/* 8 elements at p as floats; past `valid` (< 8) zero, so a tail adds only zero products */
static inline __m256 load_f16_upto8(const llp_fp16 *p, int valid) {
    if (valid >= 8) return load_f16x8(p);
    llp_fp16 t[8] = {0};
    memcpy(t, p, sizeof(llp_fp16) * (size_t)valid);
    return load_f16x8(t);
}

static inline __m256 load_f32_upto8(const float *p, int valid) {
    if (valid >= 8) return _mm256_loadu_ps(p);
    float t[8] = {0};
    memcpy(t, p, sizeof(float) * (size_t)valid);
    return _mm256_loadu_ps(t);
}

/* Lanes 0-7 in lo, 8-15 in hi, folded in halves: l + 8, l + 4, l + 2, l + 1 (the scalar twin's order) */
static inline float fold16(__m256 lo, __m256 hi) {
    const __m256 s8 = _mm256_add_ps(lo, hi);
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

/* q . k over 16 lanes (lo, hi): one fma per element, the tail zero-padded */
static inline float dot16_f16(const float *q, const llp_fp16 *k, int n) {
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    int d = 0;
    for (; d + 16 <= n; d += 16) {
        lo = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), load_f16x8(k + d), lo);
        hi = _mm256_fmadd_ps(_mm256_loadu_ps(q + d + 8), load_f16x8(k + d + 8), hi);
    }
    if (d < n) {
        const int r = n - d;
        lo = _mm256_fmadd_ps(load_f32_upto8(q + d, r), load_f16_upto8(k + d, r), lo);
        if (r > 8) hi = _mm256_fmadd_ps(load_f32_upto8(q + d + 8, r - 8), load_f16_upto8(k + d + 8, r - 8), hi);
    }
    return fold16(lo, hi);
}

/* q . k over 64 lanes (a[c]: lanes 8c .. 8c + 7), folded l + 32, l + 16, then as fold16; the elements past
 * the last whole 64 added in double */
static inline float dot64_f16(const float *q, const llp_fp16 *k, int n) {
    __m256 a[8];
    for (int c = 0; c < 8; c++) a[c] = _mm256_setzero_ps();
    int d = 0;
    for (; d + 64 <= n; d += 64)
        for (int c = 0; c < 8; c++) a[c] = _mm256_fmadd_ps(_mm256_loadu_ps(q + d + 8 * c), load_f16x8(k + d + 8 * c), a[c]);
    for (int c = 0; c < 4; c++) a[c] = _mm256_add_ps(a[c], a[c + 4]);
    for (int c = 0; c < 2; c++) a[c] = _mm256_add_ps(a[c], a[c + 2]);
    double sum = fold16(a[0], a[1]);
    for (; d < n; d++) sum += (double)(q[d] * fp16_to_f32(k[d]));
    return (float)sum;
}

static void attn_scores(int head_dim, const float *restrict q, const llp_fp16 *restrict k, int64_t stride,
                        int64_t n, float scale, float *restrict s, int lanes) {
    for (int64_t j = 0; j < n; j++)
        s[j] = (lanes == 64 ? dot64_f16(q, k + j * stride, head_dim) : dot16_f16(q, k + j * stride, head_dim)) * scale;
}

/* p = f16(p * pscale), then acc += p . V as the scalar twin: per column, `lanes` lanes (position j in lane
 * j % lanes) with one fma per position, folded as a tree. Lane l's sum runs over positions l, l + lanes, ...
 * for 32 columns at a time; the lane sums wait in `part` for the fold. */
static void attn_accum(int head_dim, float *restrict p, float pscale, const llp_fp16 *restrict v, int64_t stride,
                       int64_t n, float *restrict acc, int lanes) {
    const __m256 ps = _mm256_set1_ps(pscale);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)  /* F16C rounds to nearest even, as the scalar conversion */
        _mm256_storeu_ps(p + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(p + i), ps), _MM_FROUND_TO_NEAREST_INT)));
    for (; i < n; i++) p[i] = fp16_to_f32(_cvtss_sh(p[i] * pscale, _MM_FROUND_TO_NEAREST_INT));
    int d = 0;
    for (; d + 32 <= head_dim; d += 32) {
        __m256 part[64][4];
        for (int l = 0; l < lanes; l++) {
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int64_t j = l; j < n; j += lanes) {
                const __m256 pj = _mm256_set1_ps(p[j]);
                const llp_fp16 *vj = v + j * stride + d;
                a0 = _mm256_fmadd_ps(pj, load_f16x8(vj), a0);
                a1 = _mm256_fmadd_ps(pj, load_f16x8(vj + 8), a1);
                a2 = _mm256_fmadd_ps(pj, load_f16x8(vj + 16), a2);
                a3 = _mm256_fmadd_ps(pj, load_f16x8(vj + 24), a3);
            }
            part[l][0] = a0, part[l][1] = a1, part[l][2] = a2, part[l][3] = a3;
        }
        for (int w = lanes / 2; w >= 1; w /= 2)
            for (int l = 0; l < w; l++)
                for (int c = 0; c < 4; c++) part[l][c] = _mm256_add_ps(part[l][c], part[l + w][c]);
        for (int c = 0; c < 4; c++) _mm256_storeu_ps(acc + d + 8 * c, _mm256_add_ps(_mm256_loadu_ps(acc + d + 8 * c), part[0][c]));
    }
    for (; d < head_dim; d++) {
        float lane[64] = {0};
        for (int64_t j = 0; j < n; j++) lane[j % lanes] = fmaf(p[j], fp16_to_f32(v[j * stride + d]), lane[j % lanes]);
        for (int w = lanes / 2; w >= 1; w /= 2)
            for (int l = 0; l < w; l++) lane[l] += lane[l + w];
        acc[d] += lane[0];
    }
}

/* exp as the scalar twin llp_ggml_expf (llama.cpp's AVX-512 exp): 2^n applied as two exact power-of-two
 * factors, so the one rounding is that of the final product, as with ldexpf or vscalefps */
static inline __m256 ggml_expf8(__m256 x) {
    const __m256 r = _mm256_set1_ps(0x1.8p23f);
    const __m256 n = _mm256_sub_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r), r);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f), _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256 u = _mm256_mul_ps(b, b);
    const __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                        _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_fmadd_ps(_mm256_set1_ps(0x1.ffffecp-1f), b, _mm256_set1_ps(1.0f)));
    const __m256 n1 = _mm256_max_ps(_mm256_min_ps(n, _mm256_set1_ps(127.0f)), _mm256_set1_ps(-126.0f));
    const __m256i e1 = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n1), _mm256_set1_epi32(127)), 23);
    const __m256 n2 = _mm256_min_ps(_mm256_max_ps(_mm256_sub_ps(n, n1), _mm256_set1_ps(-126.0f)), _mm256_set1_ps(127.0f));
    const __m256i e2 = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n2), _mm256_set1_epi32(127)), 23);
    __m256 res = _mm256_mul_ps(_mm256_mul_ps(j, _mm256_castsi256_ps(e1)), _mm256_castsi256_ps(e2));
    const __m256 big = _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), n), _mm256_set1_ps(192.0f), _CMP_GT_OQ);
    const __m256 alt = _mm256_and_ps(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_GT_OQ), _mm256_set1_ps(INFINITY));
    return _mm256_blendv_ps(res, alt, big);
}

/* the scalar twin's exp_sum: 16 positions per chunk, folded in float, chunks added in double */
static double exp_sum(float *p, int64_t n, float mx) {
    const __m256 m = _mm256_set1_ps(mx);
    double sum = 0.0;
    int64_t c = 0;
    for (; c + 16 <= n; c += 16) {
        const __m256 lo = ggml_expf8(_mm256_sub_ps(_mm256_loadu_ps(p + c), m));
        const __m256 hi = ggml_expf8(_mm256_sub_ps(_mm256_loadu_ps(p + c + 8), m));
        _mm256_storeu_ps(p + c, lo);
        _mm256_storeu_ps(p + c + 8, hi);
        sum += (double)fold16(lo, hi);
    }
    if (c < n) {
        float buf[16] = {0};
        for (int64_t j = c; j < n; j++) buf[j - c] = p[j] - mx;
        __m256 lo = ggml_expf8(_mm256_loadu_ps(buf)), hi = ggml_expf8(_mm256_loadu_ps(buf + 8));
        _mm256_storeu_ps(buf, lo);
        _mm256_storeu_ps(buf + 8, hi);
        for (int64_t j = n - c; j < 16; j++) buf[j] = 0.0f;   /* positions past n count as exp(-inf) */
        for (int64_t j = c; j < n; j++) p[j] = buf[j - c];
        sum += (double)fold16(_mm256_loadu_ps(buf), _mm256_loadu_ps(buf + 8));
    }
    return sum;
}

/* out = silu(g) * u with silu(x) = x / (1 + exp(-x)), as the scalar twin */
static void swiglu(const float *g, const float *u, float *out, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 e = ggml_expf8(_mm256_sub_ps(_mm256_setzero_ps(), x));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) out[i] = g[i] / (1.0f + llp_ggml_expf(0.0f - g[i])) * u[i];
}

/* ---------------------------------------------------------------- activation quantizers */

static inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

static inline float hmax_ps(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* 4 x 8 i32 (each within i8 range) -> 32 i8 in order */
static inline __m256i pack_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i v = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    return _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* q8_0 and q8_1 share everything but the sum: d = amax/127 as fp16, q = x * (127/amax) rounded half to even
 * (llama.cpp's x86 code, not its reference quantizer); returns d and sum(q) */
static inline float quantize_block_q8(const float *x, int8_t *qs, llp_fp16 *d16, int *sum) {
    __m256 v[4], amax = _mm256_setzero_ps();
    for (int j = 0; j < 4; j++) {
        v[j] = _mm256_loadu_ps(x + 8 * j);
        amax = _mm256_max_ps(amax, abs_ps(v[j]));
    }
    const float m = hmax_ps(amax), d = m / 127.0f;
    const __m256 id = _mm256_set1_ps(m != 0.0f ? 127.0f / m : 0.0f);
    __m256i q[4];
    for (int j = 0; j < 4; j++) q[j] = _mm256_cvtps_epi32(_mm256_mul_ps(v[j], id));  /* halves to even */
    _mm256_storeu_si256((__m256i *)qs, pack_i8(q[0], q[1], q[2], q[3]));
    *d16 = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
    if (sum) *sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    return d;
}

/* f32 -> q8_0 */
static void quantize_row_q8_0(const float *restrict x, void *restrict vy, int64_t k) {
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < k / QK8_0; i++) quantize_block_q8(x + i * QK8_0, y[i].qs, &y[i].d, NULL);
}

/* f32 -> q8_1, s = d * sum(q) */
static void quantize_row_q8_1(const float *restrict x, void *restrict vy, int64_t k) {
    block_q8_1 *y = vy;
    for (int64_t i = 0; i < k / QK8_1; i++) {
        int sum;
        const float d = quantize_block_q8(x + i * QK8_1, y[i].qs, &y[i].d, &sum);
        y[i].s = _cvtss_sh((float)sum * d, _MM_FROUND_TO_NEAREST_INT);
    }
}

/* sums of 16 consecutive i32 in a[0..7] (each group is two vectors) -> 4 group sums */
static inline __m128i group16_sums(const __m256i *a) {
    const __m256i h01 = _mm256_hadd_epi32(_mm256_add_epi32(a[0], a[1]), _mm256_add_epi32(a[2], a[3]));
    const __m256i h23 = _mm256_hadd_epi32(_mm256_add_epi32(a[4], a[5]), _mm256_add_epi32(a[6], a[7]));
    const __m256i h = _mm256_hadd_epi32(h01, h23);
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* f32 -> q8_K as the reference: scale from the signed value of largest magnitude (the first one),
 * q = nearest-even(-127/max * x), d = 1/iscale, bsums per 16 */
static void quantize_row_q8_K(const float *restrict x, void *restrict vy, int64_t k) {
    block_q8_K *y = vy;
    for (int64_t i = 0; i < k / QK_K; i++, x += QK_K) {
        __m256 amaxv = _mm256_setzero_ps();
        /* operand order: max_ps returns its second operand when one is NaN, so NaNs are skipped as in the reference */
        for (int j = 0; j < QK_K; j += 8) amaxv = _mm256_max_ps(abs_ps(_mm256_loadu_ps(x + j)), amaxv);
        const float amax = hmax_ps(amaxv);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        const __m256 target = _mm256_set1_ps(amax);
        int j = 0;
        unsigned hit = 0;
        for (; j < QK_K; j += 8)
            if ((hit = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + j)), target, _CMP_EQ_OQ)))) break;
        const float iscale = -127.0f / x[j + __builtin_ctz(hit)];
        const __m256 is = _mm256_set1_ps(iscale);
        for (int g = 0; g < QK_K; g += 64) {
            __m256i q[8];
            for (int t = 0; t < 8; t++)
                q[t] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + g + 8 * t), is),
                                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            _mm256_storeu_si256((__m256i *)(y[i].qs + g), pack_i8(q[0], q[1], q[2], q[3]));
            _mm256_storeu_si256((__m256i *)(y[i].qs + g + 32), pack_i8(q[4], q[5], q[6], q[7]));
            _mm_storel_epi64((__m128i *)(y[i].bsums + g / 16), _mm_packs_epi32(group16_sums(q), _mm_setzero_si128()));
        }
        y[i].d = 1.0f / iscale;
    }
}

/* f32 -> f16 with F16C (round to nearest even) */
static void quantize_row_f16(const float *restrict x, void *restrict vy, int64_t k) {
    llp_fp16 *y = vy;
    int64_t i = 0;
    for (; i + 8 <= k; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < k; i++) y[i] = llp_f32_to_fp16(x[i]);
}

/* f32 -> bf16: round to nearest even on the dropped half; NaNs stay quiet NaNs */
static void quantize_row_bf16(const float *restrict x, void *restrict vy, int64_t k) {
    llp_bf16 *y = vy;
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
        __m256i r[2];
        for (int h = 0; h < 2; h++) {
            const __m256i u = _mm256_loadu_si256((const __m256i *)(x + i + 8 * h));
            const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
            const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff))), 16);
            const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
            const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
            r[h] = _mm256_blendv_epi8(rounded, quiet, nan);
        }
        _mm256_storeu_si256((__m256i *)(y + i), _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xD8));
    }
    for (; i < k; i++) y[i] = llp_f32_to_bf16(x[i]);
}

void llp_register_avx2(llp_kernels *k) {
    k->attn_scores = attn_scores;
    k->attn_accum = attn_accum;
    k->exp_sum = exp_sum;
    k->swiglu = swiglu;
#define SET(t, fn) (k->vec_dot[t] = fn, k->impl[t] = "avx2")
    SET(LLP_F32, vec_dot_f32_f32);
    SET(LLP_F16, vec_dot_f16_f16);
    SET(LLP_BF16, vec_dot_bf16_bf16);
    SET(LLP_Q4_0, vec_dot_q4_0_q8_0);
    SET(LLP_Q4_1, vec_dot_q4_1_q8_1);
    SET(LLP_Q5_0, vec_dot_q5_0_q8_0);
    SET(LLP_Q5_1, vec_dot_q5_1_q8_1);
    SET(LLP_Q8_0, vec_dot_q8_0_q8_0);
    SET(LLP_Q2_K, vec_dot_q2_K_q8_K);
    SET(LLP_Q3_K, vec_dot_q3_K_q8_K);
    SET(LLP_Q4_K, vec_dot_q4_K_q8_K);
    SET(LLP_Q5_K, vec_dot_q5_K_q8_K);
    SET(LLP_Q6_K, vec_dot_q6_K_q8_K);
    SET(LLP_IQ4_NL, vec_dot_iq4_nl_q8_0);
    SET(LLP_IQ4_XS, vec_dot_iq4_xs_q8_K);
    SET(LLP_TQ1_0, vec_dot_tq1_0_q8_K);
    SET(LLP_TQ2_0, vec_dot_tq2_0_q8_K);
#undef SET
    k->from_float[LLP_Q8_0] = quantize_row_q8_0;
    k->from_float[LLP_Q8_1] = quantize_row_q8_1;
    k->from_float[LLP_Q8_K] = quantize_row_q8_K;
    k->from_float[LLP_F16] = quantize_row_f16;
    k->from_float[LLP_BF16] = quantize_row_bf16;
}
LLP_TARGET_END
#else
void llp_register_avx2(llp_kernels *k) { (void)k; }
#endif
