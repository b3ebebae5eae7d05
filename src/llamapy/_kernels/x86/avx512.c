/* AVX-512 (F/BW/VL/DQ) kernels and their VNNI twins: same contract as the scalar twins in ref/dot.c.
 *
 * The file includes itself: the shared part below is compiled once (plain AVX-512 target), the kernel
 * part at the end twice, once per flavour. The flavours differ only in the u8 x s8 dot macros
 * (vpmaddubsw + vpmaddwd, or vpdpbusd), so the plain table never executes a VNNI instruction.
 *
 * Written for Zen 4 as much as for Intel: Zen 4 runs a 512-bit op as two 256-bit halves, so packing two
 * 32-element blocks into one register only pays where it saves instructions. What AVX-512 brings here
 * is VNNI, vpermt2w (the fp16 scales of 8 blocks gathered at once), masks and ternary logic. */
#include "../include/kernels.h"

#if !defined(__x86_64__)
void llp_register_avx512(llp_kernels *k) { (void)k; }
void llp_register_avx512vnni(llp_kernels *k) { (void)k; }

#elif !defined(LLP_AVX512_FLAVOUR)
/* ================================================================ shared part */
#include "../include/target.h"
LLP_TARGET("avx2,fma,f16c,bmi2,avx512f,avx512bw,avx512vl,avx512dq")
#include <immintrin.h>

#define INLINE static inline __attribute__((always_inline))

INLINE float h2f(llp_fp16 h) { return _cvtsh_ss(h); }

INLINE __m256i load256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

INLINE float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

/* The 16 nibble bytes of a 32-element block (low nibbles first) as 32 values 0..15. */
INLINE __m256i nibbles16(const uint8_t *p) {
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    return _mm256_and_si256(_mm256_mask_srli_epi16(b, 0xff00, b, 4), _mm256_set1_epi8(0x0f));
}

/* 32 bits -> 32 bytes: 16 where the element's bit is set, else 0 (the 5th bits of q5_0 / q5_1). */
INLINE __m256i bit16s(const uint8_t *qh) {
    uint32_t h;
    memcpy(&h, qh, 4);
    return _mm256_maskz_mov_epi8(_cvtu32_mask32(h), _mm256_set1_epi8(16));
}

/* Where the fp16 fields of 8 consecutive blocks lie: one or two 128-byte windows, each read as two
 * registers and picked from with one vpermt2w. Built once per row, for block sizes of 17..42 bytes. */
typedef struct {
    __m512i ia, ib;      /* word indices into window a (at the first field) and window b (at off_b) */
    __mmask32 from_b;    /* result words taken from window b */
    int off_b;
} fp16_plan;

/* `readable`: bytes from the first field to the end of the 8 blocks. */
static inline fp16_plan fp16_plan_for(int stride, int readable) {
    uint16_t ia[32] = {0}, ib[32] = {0};
    fp16_plan g = {.from_b = 0, .off_b = (4 * stride < readable - 128 ? 4 * stride : readable - 128) & ~1};
    for (int i = 0; i < 8; i++) {
        if (i * stride + 2 <= 128) {
            ia[i] = (uint16_t)(i * stride / 2);
        } else {
            ib[i] = (uint16_t)((i * stride - g.off_b) / 2);
            g.from_b |= 1u << i;
        }
    }
    g.ia = _mm512_loadu_si512(ia);
    g.ib = _mm512_loadu_si512(ib);
    return g;
}

INLINE __m256 fp16x8(const fp16_plan *g, const void *field) {
    const char *p = field;
    __m512i w = _mm512_permutex2var_epi16(_mm512_loadu_si512(p), g->ia, _mm512_loadu_si512(p + 64));
    if (g->from_b) {
        const char *q = p + g->off_b;
        w = _mm512_mask_blend_epi16(g->from_b, w,
                                    _mm512_permutex2var_epi16(_mm512_loadu_si512(q), g->ib, _mm512_loadu_si512(q + 64)));
    }
    return _mm256_cvtph_ps(_mm512_castsi512_si128(w));
}

/* ---- row drivers for 32-element blocks against q8_0 / q8_1 ---- */

/* Int32 lanes summing to the integer dot of one weight block with one activation block. */
typedef __m256i (*block_fn)(const void *x, const void *y);

/* sum over blocks of dx*dy * block dot, for weight types whose fp16 d is their first field. The scales
 * of 8 blocks are gathered, multiplied and spilled at once; each block then broadcasts its own. */
INLINE float dot_rows_q8_0(int n, const void *vx, int xsize, const void *vy, block_fn dot) {
    const char *x = vx;
    const block_q8_0 *y = vy;
    const int nb = n / QK8_0;
    const fp16_plan gx = fp16_plan_for(xsize, 8 * xsize), gy = fp16_plan_for(sizeof *y, 8 * sizeof *y);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= nb; i += 8) {
        const char *xi = x + (size_t)i * xsize;
        float d[8];
        _mm256_storeu_ps(d, _mm256_mul_ps(fp16x8(&gx, xi), fp16x8(&gy, &y[i].d)));
        for (int k = 0; k < 8; k += 2) {
            acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d[k]), _mm256_cvtepi32_ps(dot(xi + k * xsize, y + i + k)), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_set1_ps(d[k + 1]), _mm256_cvtepi32_ps(dot(xi + (k + 1) * xsize, y + i + k + 1)), acc1);
        }
    }
    for (; i < nb; i++) {
        const char *xi = x + (size_t)i * xsize;
        const float d = h2f(*(const llp_fp16 *)xi) * h2f(y[i].d);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(dot(xi, y + i)), acc0);
    }
    return hsum256(_mm256_add_ps(acc0, acc1));
}

/* The same plus m_x * s_y per block, for q4_1 / q5_1 (fp16 d then m) against q8_1. */
INLINE float dot_rows_q8_1(int n, const void *vx, int xsize, const void *vy, block_fn dot) {
    const char *x = vx;
    const block_q8_1 *y = vy;
    const int nb = n / QK8_1;
    const fp16_plan gxd = fp16_plan_for(xsize, 8 * xsize), gxm = fp16_plan_for(xsize, 8 * xsize - 2);
    const fp16_plan gyd = fp16_plan_for(sizeof *y, 8 * sizeof *y), gys = fp16_plan_for(sizeof *y, 8 * sizeof *y - 2);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    float summ = 0.0f;
    int i = 0;
    for (; i + 8 <= nb; i += 8) {
        const char *xi = x + (size_t)i * xsize;
        float d[8];
        _mm256_storeu_ps(d, _mm256_mul_ps(fp16x8(&gxd, xi), fp16x8(&gyd, &y[i].d)));
        accm = _mm256_fmadd_ps(fp16x8(&gxm, xi + 2), fp16x8(&gys, &y[i].s), accm);
        for (int k = 0; k < 8; k += 2) {
            acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d[k]), _mm256_cvtepi32_ps(dot(xi + k * xsize, y + i + k)), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_set1_ps(d[k + 1]), _mm256_cvtepi32_ps(dot(xi + (k + 1) * xsize, y + i + k + 1)), acc1);
        }
    }
    for (; i < nb; i++) {
        const llp_fp16 *dm = (const llp_fp16 *)(x + (size_t)i * xsize);
        summ += h2f(dm[1]) * h2f(y[i].s);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(dm[0]) * h2f(y[i].d)), _mm256_cvtepi32_ps(dot(dm, y + i)), acc0);
    }
    return hsum256(_mm256_add_ps(acc0, acc1)) + hsum256(accm) + summ;
}

/* ---- the kernels, once per flavour ---- */
#define LLP_AVX512_FLAVOUR 1
#define K(name) name##_avx512
#define IMPL "avx512"
#include "avx512.c"
#undef LLP_AVX512_FLAVOUR
#undef K
#undef IMPL
LLP_TARGET_END

LLP_TARGET("avx2,fma,f16c,bmi2,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")
#define LLP_AVX512_FLAVOUR 2
#define K(name) name##_avx512vnni
#define IMPL "avx512vnni"
#include "avx512.c"
LLP_TARGET_END

#else
/* ================================================================ kernel part, once per flavour */

#if LLP_AVX512_FLAVOUR == 2
/* Sum of 4 adjacent u8 x s8 products per int32 lane (u <= 63 everywhere below). */
#define UDOT256(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
/* The same for (u - off) x s. */
#define UDOT256_OFF(u, s, off) _mm256_sub_epi32(UDOT256(u, s), UDOT256(off, s))
#else
#define UDOT256(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
#define UDOT256_OFF(u, s, off) \
    _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(u, s), _mm256_maddubs_epi16(off, s)), _mm256_set1_epi16(1))
#endif

/* Signed x . y (x never -128): |x| against y carrying x's sign. */
#define SDOT256(x, y) UDOT256(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))

INLINE __m256i K(block_q4_0)(const void *vx, const void *vy) {
    const block_q4_0 *x = vx;
    return UDOT256_OFF(nibbles16(x->qs), load256(((const block_q8_0 *)vy)->qs), _mm256_set1_epi8(8));
}

INLINE __m256i K(block_q5_0)(const void *vx, const void *vy) {
    const block_q5_0 *x = vx;
    const __m256i q = _mm256_or_si256(nibbles16(x->qs), bit16s(x->qh));
    return UDOT256_OFF(q, load256(((const block_q8_0 *)vy)->qs), _mm256_set1_epi8(16));
}

INLINE __m256i K(block_q8_0)(const void *vx, const void *vy) {
    return SDOT256(load256(((const block_q8_0 *)vx)->qs), load256(((const block_q8_0 *)vy)->qs));
}

INLINE __m256i K(block_iq4_nl)(const void *vx, const void *vy) {
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)llp_iq4nl_values));
    const __m256i q = _mm256_shuffle_epi8(table, nibbles16(((const block_iq4_nl *)vx)->qs));
    return SDOT256(q, load256(((const block_q8_0 *)vy)->qs));
}

INLINE __m256i K(block_q4_1)(const void *vx, const void *vy) {
    return UDOT256(nibbles16(((const block_q4_1 *)vx)->qs), load256(((const block_q8_1 *)vy)->qs));
}

INLINE __m256i K(block_q5_1)(const void *vx, const void *vy) {
    const block_q5_1 *x = vx;
    return UDOT256(_mm256_or_si256(nibbles16(x->qs), bit16s(x->qh)), load256(((const block_q8_1 *)vy)->qs));
}

/* q4_0 . q8_0: dx*dy * sum((nibble - 8) * q) per block */
static void K(vec_dot_q4_0_q8_0)(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    *s = dot_rows_q8_0(n, vx, sizeof(block_q4_0), vy, K(block_q4_0));
}

/* q5_0 . q8_0: dx*dy * sum((nibble | bit << 4) - 16) * q) per block */
static void K(vec_dot_q5_0_q8_0)(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    *s = dot_rows_q8_0(n, vx, sizeof(block_q5_0), vy, K(block_q5_0));
}

/* q8_0 . q8_0: dx*dy * sum(qx * qy) per block */
static void K(vec_dot_q8_0_q8_0)(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    *s = dot_rows_q8_0(n, vx, sizeof(block_q8_0), vy, K(block_q8_0));
}

/* iq4_nl . q8_0: dx*dy * sum(table[nibble] * q) per block */
static void K(vec_dot_iq4_nl_q8_0)(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    *s = dot_rows_q8_0(n, vx, sizeof(block_iq4_nl), vy, K(block_iq4_nl));
}

/* q4_1 . q8_1: dx*dy * sum(nibble * q) + m * s per block */
static void K(vec_dot_q4_1_q8_1)(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    *s = dot_rows_q8_1(n, vx, sizeof(block_q4_1), vy, K(block_q4_1));
}

/* q5_1 . q8_1: dx*dy * sum((nibble | bit << 4) * q) + m * s per block */
static void K(vec_dot_q5_1_q8_1)(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    *s = dot_rows_q8_1(n, vx, sizeof(block_q5_1), vy, K(block_q5_1));
}

void K(llp_register)(llp_kernels *k) {
#define SET(t, fn) (k->vec_dot[t] = K(fn), k->impl[t] = IMPL)
    SET(LLP_Q4_0, vec_dot_q4_0_q8_0);
    SET(LLP_Q4_1, vec_dot_q4_1_q8_1);
    SET(LLP_Q5_0, vec_dot_q5_0_q8_0);
    SET(LLP_Q5_1, vec_dot_q5_1_q8_1);
    SET(LLP_Q8_0, vec_dot_q8_0_q8_0);
    SET(LLP_IQ4_NL, vec_dot_iq4_nl_q8_0);
#undef SET
}

#undef UDOT256
#undef UDOT256_OFF
#undef SDOT256
#endif
