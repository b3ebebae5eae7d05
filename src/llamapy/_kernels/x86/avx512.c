/* AVX-512 (F/BW/VL/DQ) kernels and their VNNI twins: same contract as the scalar twins in ref/dot.c.
 *
 * The file includes itself: the shared part is compiled once (plain AVX-512 target), the kernel part
 * at the end twice, once per flavour. The flavours differ in the u8 x s8 dot macros (vpmaddubsw +
 * vpmaddwd, or vpdpbusd) and in how K-quant sub-block scales are applied, so the plain table never
 * executes a VNNI instruction.
 *
 * Tuned on Zen 4, which runs a 512-bit op as two 256-bit halves: packing two 32-element blocks (or 64
 * K-quant elements) into one register costs more shuffles than it saves, so data goes 256 bits at a
 * time (AVX-512VL). What AVX-512 brings is VNNI, masks (bit planes -> bytes) and ternary logic; without
 * VNNI only q5_0, q5_1 and q6_K beat the AVX2 kernels, so the plain table keeps AVX2's for the rest. */
#include <math.h>
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

/* vpternlog truth table of (a & c) | b */
#define A_AND_C_OR_B 0xEC

/* The 16 nibble bytes of a 32-element block (low nibbles first) as 32 values 0..15. */
INLINE __m256i nibbles16(const uint8_t *p) {
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    return _mm256_and_si256(_mm256_mask_srli_epi16(b, 0xff00, b, 4), _mm256_set1_epi8(0x0f));
}

/* 32 bits -> 32 bytes: 16 where the element's bit is set, else 0 (the 5th bits of q5_0 / q5_1). */
INLINE __m256i bit4s(const uint8_t *qh) {
    uint32_t h;
    memcpy(&h, qh, 4);
    return _mm256_maskz_mov_epi8(_cvtu32_mask32(h), _mm256_set1_epi8(16));
}

/* The fp16 at p + i * stride (i < cnt <= 4) as 4 floats, 0 past cnt: packed into one integer, one
 * conversion. (vpermt2w windows, vpgatherdd and vpinsrw chains all measured slower on Zen 4.) */
INLINE __m128 fp16x4(const void *p, int stride, int cnt) {
    const char *c = p;
    uint64_t lo = 0;
    for (int i = 0; i < 4; i++) {
        uint16_t h = 0;
        if (i < cnt) memcpy(&h, c + i * stride, 2);
        lo |= (uint64_t)h << 16 * i;
    }
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)lo));
}

/* The two adjacent fp16 at p + i * stride (i < cnt <= 4) as 8 floats, in that order, 0 past cnt. */
INLINE __m256 fp16x2x4(const void *p, int stride, int cnt) {
    const char *c = p;
    uint32_t w[4] = {0, 0, 0, 0};
    for (int i = 0; i < 4; i++)
        if (i < cnt) memcpy(&w[i], c + i * stride, 4);
    const uint64_t lo = w[0] | (uint64_t)w[1] << 32, hi = w[2] | (uint64_t)w[3] << 32;
    return _mm256_cvtph_ps(_mm_insert_epi64(_mm_cvtsi64_si128((long long)lo), (long long)hi, 1));
}

/* Element k of v in every element. */
INLINE __m256 lane(__m256 v, int k) { return _mm256_permutexvar_ps(_mm256_set1_epi32(k), v); }

/* ---- row drivers for 32-element blocks against q8_0 / q8_1 ----
 *
 * Each driver dots R weight rows (bx bytes apart) with one activation row; the single-row kernels are
 * R = 1 and the 4-row kernels R = 4 of the same code, so every row sees the same operations in the same
 * order either way (bit-identical results). Per activation block, yterm (when given) computes what all
 * rows share, such as the activation side of an offset correction, once. */

/* With R > 1: stepping through R rows at once hides from the hardware prefetchers the one long
 * sequential stream they follow when rows go one by one (contiguous rows make one stream), and 4-row
 * kernels ran slower than single rows on weights streamed from memory. So the group of blocks at byte
 * offset o of each row prefetches, in address order, the same share of R rows some way ahead: with
 * contiguous rows, one sequential stream again. The distance is whole groups of R rows and at least
 * PREFETCH_BYTES: one group ahead was too close for short rows (576 columns of q4_0: a group is 1.3 KB,
 * read in less than memory latency), leaving 4-row matvecs at 55-70% of the bandwidth floor; 8 KiB
 * ahead measured 90-100% on the same shapes and no worse on long rows. Prefetches never fault, so
 * running past the matrix is harmless. */
#define PREFETCH_BYTES 8192
INLINE void prefetch_ahead(int R, const char *x, size_t bx, size_t o, int bytes) {
    if (R > 1) {
        const size_t group = (size_t)R * bx, ahead = (PREFETCH_BYTES + group - 1) / group * group;
        for (int b = 0; b < R * bytes; b += 64) _mm_prefetch(x + ahead + R * o + b, _MM_HINT_T0);
    }
}

/* Int32 lanes summing to the integer dot of one weight block with one activation block; t is yterm's
 * value for the activation block (zero when there is no yterm). */
typedef __m256i (*block_fn)(const void *x, const void *y, __m256i t);
typedef __m256i (*yterm_fn)(const void *y);

/* For blocks i .. i + cnt - 1 (cnt <= 4) of R rows and T activation rows (by bytes apart), weight types whose
 * fp16 d is their first field: the activation rows y[t], and d[r][t] = dx * dy of each block in lanes 0-3
 * (the group's scales converted and multiplied at once). Streams the weights' prefetch for one token. */
INLINE void scales_q8_0(int R, int T, int i, int cnt, const char *x, size_t bx, const char *vy, size_t by, int xsize,
                        const block_q8_0 *y[2], __m256 d[4][2]) {
    __m128 dy[2];
    for (int t = 0; t < T; t++) {
        y[t] = (const block_q8_0 *)(vy + t * by);
        dy[t] = fp16x4(&y[t][i].d, sizeof(block_q8_0), cnt);
    }
    if (T == 1) prefetch_ahead(R, x, bx, (size_t)i * xsize, cnt * xsize);  /* batches reuse their weights from cache */
    for (int r = 0; r < R; r++) {
        const __m128 dx = fp16x4(x + r * bx + (size_t)i * xsize, xsize, cnt);
        for (int t = 0; t < T; t++) d[r][t] = _mm256_castps128_ps256(_mm_mul_ps(dx, dy[t]));
    }
}

/* Blocks i .. i + cnt - 1 (cnt <= 4) of R rows and T activation rows (by bytes apart) into acc0 / acc1
 * (even / odd blocks), indexed [r][t], for weight types whose fp16 d is their first field: the scales of
 * the group are converted and multiplied at once, and each block then takes its own lane. Called with
 * cnt = 4 for whole groups, so those unroll fully. With T > 1 (prompt batches) each weight block's
 * unpacking, the same expression for every token, is computed once by the compiler for all T. */
INLINE void group_q8_0(int R, int T, int i, int cnt, __m256 acc0[4][2], __m256 acc1[4][2], const char *x, size_t bx,
                       const char *vy, size_t by, int xsize, block_fn dot, yterm_fn yterm) {
    const block_q8_0 *y[2];
    __m256 d[4][2];
    scales_q8_0(R, T, i, cnt, x, bx, vy, by, xsize, y, d);
    for (int k = 0; k < cnt; k++) {
        __m256i yt[2];
        for (int t = 0; t < T; t++) yt[t] = yterm ? yterm(y[t] + i + k) : _mm256_setzero_si256();
        for (int r = 0; r < R; r++)
            for (int t = 0; t < T; t++) {
                const __m256 p = _mm256_cvtepi32_ps(dot(x + r * bx + (size_t)(i + k) * xsize, y[t] + i + k, yt[t]));
                if (k & 1) acc1[r][t] = _mm256_fmadd_ps(lane(d[r][t], k), p, acc1[r][t]);
                else acc0[r][t] = _mm256_fmadd_ps(lane(d[r][t], k), p, acc0[r][t]);
            }
    }
}

/* s[t * ls + r] = sum over blocks of dx*dy * block dot, for R rows x T activation rows */
INLINE void dot_tile_q8_0(int n, float *s, size_t ls, int R, int T, const void *vx, size_t bx, const void *vy,
                          size_t by, int xsize, block_fn dot, yterm_fn yterm) {
    const int nb = n / QK8_0;
    __m256 acc0[4][2], acc1[4][2];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc0[r][t] = acc1[r][t] = _mm256_setzero_ps();
    int i = 0;
    for (; i + 4 <= nb; i += 4) group_q8_0(R, T, i, 4, acc0, acc1, vx, bx, vy, by, xsize, dot, yterm);
    if (i < nb) group_q8_0(R, T, i, nb - i, acc0, acc1, vx, bx, vy, by, xsize, dot, yterm);
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) s[t * ls + r] = hsum256(_mm256_add_ps(acc0[r][t], acc1[r][t]));
}

INLINE void dot_rows_q8_0(int n, float *s, int R, const void *vx, size_t bx, const void *vy, int xsize,
                          block_fn dot, yterm_fn yterm) {
    dot_tile_q8_0(n, s, 0, R, 1, vx, bx, vy, 0, xsize, dot, yterm);
}

/* The same plus m_x * s_y per block, for q4_1 / q5_1 (fp16 d, m first) against q8_1 (d, s first). The
 * product of 4 blocks' (d, m) pairs with their (d, s) pairs holds dx*dy in even lanes, m*s in odd ones. */
INLINE void group_q8_1(int R, int i, int cnt, __m256 *acc0, __m256 *acc1, __m256 *accm, const char *x, size_t bx,
                       const block_q8_1 *y, int xsize, block_fn dot) {
    const __m256 ds = fp16x2x4(&y[i].d, sizeof *y, cnt);
    prefetch_ahead(R, x, bx, (size_t)i * xsize, cnt * xsize);
    __m256 dm[4];
    for (int r = 0; r < R; r++) {
        dm[r] = _mm256_mul_ps(fp16x2x4(x + r * bx + (size_t)i * xsize, xsize, cnt), ds);
        accm[r] = _mm256_add_ps(accm[r], dm[r]);
    }
    for (int k = 0; k < cnt; k++)
        for (int r = 0; r < R; r++) {
            const __m256 p = _mm256_cvtepi32_ps(dot(x + r * bx + (size_t)(i + k) * xsize, y + i + k, _mm256_setzero_si256()));
            if (k & 1) acc1[r] = _mm256_fmadd_ps(lane(dm[r], 2 * k), p, acc1[r]);
            else acc0[r] = _mm256_fmadd_ps(lane(dm[r], 2 * k), p, acc0[r]);
        }
}

INLINE void dot_rows_q8_1(int n, float *s, int R, const void *vx, size_t bx, const void *vy, int xsize, block_fn dot) {
    const int nb = n / QK8_1;
    __m256 acc0[4], acc1[4], accm[4];
    for (int r = 0; r < R; r++) acc0[r] = acc1[r] = accm[r] = _mm256_setzero_ps();
    int i = 0;
    for (; i + 4 <= nb; i += 4) group_q8_1(R, i, 4, acc0, acc1, accm, vx, bx, vy, xsize, dot);
    if (i < nb) group_q8_1(R, i, nb - i, acc0, acc1, accm, vx, bx, vy, xsize, dot);
    /* odd lanes of accm: the m * s terms */
    for (int r = 0; r < R; r++)
        s[r] = hsum256(_mm256_add_ps(acc0[r], acc1[r])) + hsum256(_mm256_maskz_mov_ps(0xaa, accm[r]));
}

/* ---- K-quant helpers ---- */

/* The 12 scale bytes of q4_K / q5_K -> 8 six-bit scales (bytes 0-7) and 8 six-bit mins (bytes 8-15):
 * entries 0-3 are the low 6 bits of bytes 0-3 (scales) and 4-7 (mins); entries 4-7 take their low 4
 * bits from the nibbles of bytes 8-11 and their top 2 bits from the spare top bits of bytes 0-7. */
INLINE __m128i k4_scales_mins(const uint8_t *p) {
    uint32_t w[3];
    memcpy(w, p, 12);
    const uint32_t m6 = 0x3f3f3f3f, m4 = 0x0f0f0f0f, m2 = 0x03030303;
    return _mm_setr_epi32((int)(w[0] & m6), (int)((w[2] & m4) | ((w[0] >> 6) & m2) << 4),
                          (int)(w[1] & m6), (int)(((w[2] >> 4) & m4) | ((w[1] >> 6) & m2) << 4));
}

/* sum_j min_j * (sum of y over sub-block j of 32) for the 8 mins in bytes 8-15 of sm, as 8 int32; bsums: the 16
 * bsums of q8_K (pairs of 16 make the sub-block sums) */
INLINE __m256i k4_min_dot(__m128i sm, __m256i bsums) {
    return _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm)), bsums);
}

/* The 12 scale bytes of q3_K -> its 16 six-bit scales: low 4 bits from the nibbles of bytes 0-7 (scales
 * 0-7 low nibbles, 8-15 high), top 2 bits from bytes 8-11 (scale j: byte 8 + j % 4, bits 2 * (j / 4)). */
INLINE __m128i q3_K_scales(const uint8_t *p) {
    uint32_t w[3];
    memcpy(w, p, 12);
    const uint32_t m4 = 0x0f0f0f0f, m2 = 0x03030303;
    return _mm_setr_epi32((int)((w[0] & m4) | (w[2] & m2) << 4), (int)((w[1] & m4) | ((w[2] >> 2) & m2) << 4),
                          (int)(((w[0] >> 4) & m4) | ((w[2] >> 4) & m2) << 4),
                          (int)(((w[1] >> 4) & m4) | ((w[2] >> 6) & m2) << 4));
}

/* vpshufb control: in each 128-bit lane, word a (low lane) / b (high lane) repeated. */
INLINE __m256i rep8(int a, int b) {
    return _mm256_setr_m128i(_mm_set1_epi16((short)(0x0100 + 0x0202 * a)), _mm_set1_epi16((short)(0x0100 + 0x0202 * b)));
}

/* vpshufb control: words a, a, a, a, c, c, c, c in the low lane; b x4, d x4 in the high lane. */
INLINE __m256i rep4(int a, int b, int c, int d) {
    const short wa = (short)(0x0100 + 0x0202 * a), wb = (short)(0x0100 + 0x0202 * b);
    const short wc = (short)(0x0100 + 0x0202 * c), wd = (short)(0x0100 + 0x0202 * d);
    return _mm256_setr_epi16(wa, wa, wa, wa, wc, wc, wc, wc, wb, wb, wb, wb, wd, wd, wd, wd);
}

/* ---- activation quantizers (bit-exact with the scalar references; no dot step, so compiled once) ---- */

INLINE __m512 abs512(__m512 v) { return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff))); }

/* Per-128-bit-lane reduction of 4 registers: lane k of the result holds, in every element, the max
 * (is_max) or sum of all 16 elements of v[k]. One pass serves 4 blocks. */
INLINE __m512 reduce4(const __m512 v[4], int is_max) {
#define OP(a, b) (is_max ? _mm512_max_ps(a, b) : _mm512_add_ps(a, b))
    const __m512 t0 = OP(_mm512_shuffle_f32x4(v[0], v[1], 0x44), _mm512_shuffle_f32x4(v[0], v[1], 0xee));
    const __m512 t1 = OP(_mm512_shuffle_f32x4(v[2], v[3], 0x44), _mm512_shuffle_f32x4(v[2], v[3], 0xee));
    __m512 u = OP(_mm512_shuffle_f32x4(t0, t1, 0x88), _mm512_shuffle_f32x4(t0, t1, 0xdd));
    u = OP(u, _mm512_permute_ps(u, 0x4e));
    return OP(u, _mm512_permute_ps(u, 0xb1));
#undef OP
}

/* f32 -> q8_0 (sums = 0) or q8_1 (sums = 1), 4 blocks per pass, as llama.cpp's x86 code: d = amax / 127,
 * q = x * (127 / amax) rounded half to even */
INLINE void quantize_q8_x4(const float *x, void *vy, int64_t nb, int sums) {
    const size_t bsize = sums ? sizeof(block_q8_1) : sizeof(block_q8_0), qoff = sums ? 4 : 2;
    char *y = vy;
    for (int64_t i = 0; i < nb; i += 4, x += 128, y += 4 * bsize) {
        const int nblk = nb - i < 4 ? (int)(nb - i) : 4;
        __m512 v[8], amax[4];
        for (int j = 0; j < 8; j++) v[j] = j < 2 * nblk ? _mm512_loadu_ps(x + 16 * j) : _mm512_setzero_ps();
        for (int k = 0; k < 4; k++) amax[k] = _mm512_max_ps(abs512(v[2 * k]), abs512(v[2 * k + 1]));
        const __m512 m = reduce4(amax, 1), d = _mm512_div_ps(m, _mm512_set1_ps(127.0f));
        const __mmask16 nz = _mm512_cmp_ps_mask(m, _mm512_setzero_ps(), _CMP_NEQ_OQ);
        const __m512 id = _mm512_maskz_div_ps(nz, _mm512_set1_ps(127.0f), m);
        uint16_t dh[16];
        _mm256_storeu_si256((__m256i *)dh, _mm512_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m512 qsum[4];
        for (int k = 0; k < nblk; k++) {
            /* lane k of id in all four 128-bit lanes (a permute: shuffle_f32x4 needs a constant k) */
            const __m512i lane_k = _mm512_add_epi32(_mm512_set1_epi32(4 * k),
                                                    _mm512_set_epi32(3, 2, 1, 0, 3, 2, 1, 0, 3, 2, 1, 0, 3, 2, 1, 0));
            const __m512 idk = _mm512_permutexvar_ps(lane_k, id);
            const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v[2 * k], idk)), q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v[2 * k + 1], idk));
            char *blk = y + k * bsize;
            memcpy(blk, &dh[4 * k], 2);
            _mm_storeu_si128((__m128i *)(blk + qoff), _mm512_cvtsepi32_epi8(q0));
            _mm_storeu_si128((__m128i *)(blk + qoff + 16), _mm512_cvtsepi32_epi8(q1));
            qsum[k] = _mm512_cvtepi32_ps(_mm512_add_epi32(q0, q1));
        }
        if (sums) {
            /* s = d * sum(q): the quants are small integers, so the float sum is exact */
            for (int k = nblk; k < 4; k++) qsum[k] = _mm512_setzero_ps();
            uint16_t sh[16];
            _mm256_storeu_si256((__m256i *)sh, _mm512_cvtps_ph(_mm512_mul_ps(reduce4(qsum, 0), d), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            for (int k = 0; k < nblk; k++) memcpy(y + k * bsize + 2, &sh[4 * k], 2);
        }
    }
}

/* f32 -> q8_0 */
static void quantize_row_q8_0_avx512(const float *restrict x, void *restrict y, int64_t k) { quantize_q8_x4(x, y, k / QK8_0, 0); }

/* f32 -> q8_1, s = d * sum(q) */
static void quantize_row_q8_1_avx512(const float *restrict x, void *restrict y, int64_t k) { quantize_q8_x4(x, y, k / QK8_1, 1); }

/* f32 -> q8_K as the reference: iscale = -127 / (the first value of largest magnitude), q = nearest-even
 * (iscale * x), d = 1 / iscale; bsums per 16 from the bytes (vpsadbw of q + 128 against 0, per 8). */
static void quantize_row_q8_K_avx512(const float *restrict x, void *restrict vy, int64_t k) {
    block_q8_K *y = vy;
    for (int64_t i = 0; i < k / QK_K; i++, x += QK_K) {
        __m512 amaxv = _mm512_setzero_ps();
        /* max_ps returns its second operand when the first is NaN: NaNs are skipped, as in the reference */
        for (int j = 0; j < QK_K; j += 16) amaxv = _mm512_max_ps(abs512(_mm512_loadu_ps(x + j)), amaxv);
        const float amax = _mm512_reduce_max_ps(amaxv);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        int j = 0;
        __mmask16 hit = 0;
        while (!(hit = _mm512_cmp_ps_mask(abs512(_mm512_loadu_ps(x + j)), _mm512_set1_ps(amax), _CMP_EQ_OQ))) j += 16;
        const float iscale = -127.0f / x[j + __builtin_ctz(hit)];
        const __m512 is = _mm512_set1_ps(iscale);
        __m512i sad[4];
        for (int g = 0; g < 4; g++) {
            __m128i b[4];
            for (int t = 0; t < 4; t++)
                b[t] = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 64 * g + 16 * t), is)));
            const __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_setr_m128i(b[0], b[1])), _mm256_setr_m128i(b[2], b[3]), 1);
            _mm512_storeu_si512(y[i].qs + 64 * g, q);
            sad[g] = _mm512_sad_epu8(_mm512_xor_si512(q, _mm512_set1_epi8((char)0x80)), _mm512_setzero_si512());
        }
        /* sad[g] holds 8 sums of 8 (each + 8 * 128); adjacent pairs make the 4 bsums of g */
        const __m512i s01 = _mm512_add_epi64(_mm512_unpacklo_epi64(sad[0], sad[1]), _mm512_unpackhi_epi64(sad[0], sad[1]));
        const __m512i s23 = _mm512_add_epi64(_mm512_unpacklo_epi64(sad[2], sad[3]), _mm512_unpackhi_epi64(sad[2], sad[3]));
        /* 128-bit lane L of s01 holds group L of g = 0 and of g = 1: reorder to 0's four, then 1's */
        const __m512i order = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
        const __m128i b01 = _mm512_cvtepi64_epi16(_mm512_permutexvar_epi64(order, s01));
        const __m128i b23 = _mm512_cvtepi64_epi16(_mm512_permutexvar_epi64(order, s23));
        const __m256i bs = _mm256_sub_epi16(_mm256_setr_m128i(b01, b23), _mm256_set1_epi16(16 * 128));  /* the +128s */
        _mm256_storeu_si256((__m256i *)y[i].bsums, bs);
        y[i].d = 1.0f / iscale;
    }
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

/* UDOT256(u, s): sum of 4 adjacent u8 x s8 products per int32 lane (the plain flavour only meets u <= 63,
 * so vpmaddubsw's int16 pair sums never saturate). UDOT256_OFF(u, s, t): the same for (u - off) x s, where
 * t = OFF_TERM(off, s) is the activation side, computed once for all weight rows.
 * SCALED2(q0, y0, q1, y1, sc, a, b, c, d): int32 lanes summing to s[a] * (q0 . y0 over its first 16
 * elements) + s[b] * (its last 16) + s[c] * (q1 . y1, first 16) + s[d] * (last 16), s being the int16
 * words of sc (the same 8 in both 128-bit lanes). With VNNI the 4-product sums (|.| <= 4*63*128) are
 * packed to int16 and scaled by one vpmaddwd; without, vpmaddwd scales the pair sums directly. */
#if LLP_AVX512_FLAVOUR == 2
#define UDOT256(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
#define OFF_TERM(off, s) _mm256_sub_epi32(_mm256_setzero_si256(), UDOT256(off, s))
#define UDOT256_OFF(u, s, t) _mm256_dpbusd_epi32(t, u, s)
#define SCALED2(q0, y0, q1, y1, sc, a, b, c, d) \
    _mm256_madd_epi16(_mm256_packs_epi32(UDOT256(q0, y0), UDOT256(q1, y1)), _mm256_shuffle_epi8(sc, rep4(a, b, c, d)))
#else
#define UDOT256(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
#define OFF_TERM(off, s) _mm256_maddubs_epi16(off, s)
#define UDOT256_OFF(u, s, t) _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(u, s), t), _mm256_set1_epi16(1))
#define SCALED2(q0, y0, q1, y1, sc, a, b, c, d) \
    _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(q0, y0), _mm256_shuffle_epi8(sc, rep8(a, b))), \
                     _mm256_madd_epi16(_mm256_maddubs_epi16(q1, y1), _mm256_shuffle_epi8(sc, rep8(c, d))))
#endif

/* ---- both flavours ---- */

/* A single-row kernel and its 4-row twin over one row driver. */
#define ROW_KERNELS(name, driver, ...) \
    static void K(name)(int n, float *restrict s, const void *restrict vx, const void *restrict vy) { \
        driver(n, s, 1, vx, 0, __VA_ARGS__); \
    } \
    static void K(name##_x4)(int n, float *restrict s, const void *restrict vx, size_t bx, const void *restrict vy) { \
        driver(n, s, 4, vx, bx, __VA_ARGS__); \
    }

/* Its 4-row x 2-activation-row tile, for prompt batches (each output with vec_dot's bits). */
#define TILE_KERNEL(name, driver, ...) \
    static void K(name##_x4x2)(int n, float *restrict s, size_t ls, const void *restrict vx, size_t bx, \
                               const void *restrict vy, size_t by) { \
        driver(n, s, ls, 4, 2, vx, bx, vy, by, ##__VA_ARGS__); \
    }

/* 32-element blocks: one block's integer dot; yterm functions: the part all weight rows share */

INLINE __m256i K(yterm_off16)(const void *vy) { return OFF_TERM(_mm256_set1_epi8(16), load256(((const block_q8_0 *)vy)->qs)); }

INLINE __m256i K(block_q5_0)(const void *vx, const void *vy, __m256i t) {
    const block_q5_0 *x = vx;
    const __m256i q = _mm256_or_si256(nibbles16(x->qs), bit4s(x->qh));
    return UDOT256_OFF(q, load256(((const block_q8_0 *)vy)->qs), t);
}

INLINE __m256i K(block_q5_1)(const void *vx, const void *vy, __m256i t) {
    (void)t;
    const block_q5_1 *x = vx;
    return UDOT256(_mm256_or_si256(nibbles16(x->qs), bit4s(x->qh)), load256(((const block_q8_1 *)vy)->qs));
}

/* llama.cpp's x86 order for 32-element blocks against q8_0, the scalar twins' (ref/dot.c): per output one
 * 8-lane accumulator taking each block's eight 4-element integer sums times dx*dy with one fma, block after
 * block. R rows x T activation rows, results at s[t * ls + r]; xsize: bytes per weight block (d first). */
INLINE void K(ggml_tile_q8)(int n, float *s, size_t ls, int R, int T, const void *vx, size_t bx, const void *vy,
                            size_t by, int xsize, block_fn dot, yterm_fn yterm) {
    const char *x = vx;
    __m256 acc[4][2];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    for (int i = 0; i < n / QK8_0; i++) {
        if (T == 1 && i % 4 == 0) prefetch_ahead(R, x, bx, (size_t)i * xsize, 4 * xsize);
        const block_q8_0 *y[2];
        __m256i yt[2];
        float dy[2];
        for (int t = 0; t < T; t++) {
            y[t] = (const block_q8_0 *)((const char *)vy + t * by) + i;
            yt[t] = yterm ? yterm(y[t]) : _mm256_setzero_si256();
            dy[t] = h2f(y[t]->d);
        }
        for (int r = 0; r < R; r++) {
            const char *b = x + r * bx + (size_t)i * xsize;
            llp_fp16 d16;
            memcpy(&d16, b, sizeof d16);
            const float dx = h2f(d16);
            for (int t = 0; t < T; t++)
                acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(dx * dy[t]), _mm256_cvtepi32_ps(dot(b, y[t], yt[t])), acc[r][t]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) s[t * ls + r] = hsum256(acc[r][t]);
}

/* q5_0 . q8_0: dx*dy * sum(((nibble | bit << 4) - 16) * q) per block */
static void K(vec_dot_q5_0_q8_0)(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    K(ggml_tile_q8)(n, s, 0, 1, 1, vx, 0, vy, 0, sizeof(block_q5_0), K(block_q5_0), K(yterm_off16));
}
static void K(vec_dot_q5_0_q8_0_x4)(int n, float *restrict s, const void *restrict vx, size_t bx, const void *restrict vy) {
    K(ggml_tile_q8)(n, s, 0, 4, 1, vx, bx, vy, 0, sizeof(block_q5_0), K(block_q5_0), K(yterm_off16));
}
static void K(vec_dot_q5_0_q8_0_x4x2)(int n, float *restrict s, size_t ls, const void *restrict vx, size_t bx,
                                      const void *restrict vy, size_t by) {
    K(ggml_tile_q8)(n, s, ls, 4, 2, vx, bx, vy, by, sizeof(block_q5_0), K(block_q5_0), K(yterm_off16));
}

/* q5_1 . q8_1: dx*dy * sum((nibble | bit << 4) * q) + m * s per block */
ROW_KERNELS(vec_dot_q5_1_q8_1, dot_rows_q8_1, vy, sizeof(block_q5_1), K(block_q5_1))

/* ---- K-quants against q8_K ---- */

/* q6_K . q8_K: d*dy * sum_g sc_g * ((q . y)_g - 32 * ysum_g), 16 groups of 16, q = 4 low bits | 2 high << 4.
 * R rows x T activation rows (results at s[t * ls + r]); R = T = 1 is the single-row kernel. */
INLINE void K(dot_tile_q6_K)(int n, float *s, size_t ls, int R, int T, const void *vx, size_t bx, const void *vy, size_t by) {
    const __m256i low4 = _mm256_set1_epi8(0x0f), bits45 = _mm256_set1_epi8(0x30);
    __m256 acc[4][2];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        const block_q6_K *x[4];
        const block_q8_K *y[2];
        for (int t = 0; t < T; t++) y[t] = (const block_q8_K *)((const char *)vy + t * by) + i;
        __m256i sc16[4], sum[4][2];
        for (int r = 0; r < R; r++) {
            x[r] = (const block_q6_K *)((const char *)vx + r * bx) + i;
            sc16[r] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[r]->scales));
            for (int t = 0; t < T; t++)
                sum[r][t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(load256(y[t]->bsums), sc16[r]), 5));
        }
        for (int h = 0; h < 2; h++)
            for (int r = 0; r < R; r++) {
                /* both lanes: the 8 scales of this half */
                const __m256i sc = h ? _mm256_permute4x64_epi64(sc16[r], 0xEE) : _mm256_permute4x64_epi64(sc16[r], 0x44);
                const __m256i l0 = load256(x[r]->ql + 64 * h), l1 = load256(x[r]->ql + 64 * h + 32), qh = load256(x[r]->qh + 32 * h);
                /* element groups of 32: low nibbles of l0, l1 with qh bits 0-1, 2-3; high nibbles with bits 4-5, 6-7 */
                const __m256i q0 = _mm256_ternarylogic_epi32(l0, _mm256_and_si256(_mm256_slli_epi16(qh, 4), bits45), low4, A_AND_C_OR_B);
                const __m256i q1 = _mm256_ternarylogic_epi32(l1, _mm256_and_si256(_mm256_slli_epi16(qh, 2), bits45), low4, A_AND_C_OR_B);
                const __m256i q2 = _mm256_ternarylogic_epi32(_mm256_srli_epi16(l0, 4), _mm256_and_si256(qh, bits45), low4, A_AND_C_OR_B);
                const __m256i q3 = _mm256_ternarylogic_epi32(_mm256_srli_epi16(l1, 4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45),
                                                             low4, A_AND_C_OR_B);
                for (int t = 0; t < T; t++) {
                    const int8_t *qy = y[t]->qs + 128 * h;
                    sum[r][t] = _mm256_add_epi32(sum[r][t], SCALED2(q0, load256(qy), q1, load256(qy + 32), sc, 0, 1, 2, 3));
                    sum[r][t] = _mm256_add_epi32(sum[r][t], SCALED2(q2, load256(qy + 64), q3, load256(qy + 96), sc, 4, 5, 6, 7));
                }
            }
        for (int r = 0; r < R; r++)
            for (int t = 0; t < T; t++)
                acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[r]->d) * y[t]->d), _mm256_cvtepi32_ps(sum[r][t]), acc[r][t]);
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) s[t * ls + r] = hsum256(acc[r][t]);
}

static void K(vec_dot_q6_K_q8_K)(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    K(dot_tile_q6_K)(n, s, 0, 1, 1, vx, 0, vy, 0);
}

TILE_KERNEL(vec_dot_q6_K_q8_K, K(dot_tile_q6_K))

#if LLP_AVX512_FLAVOUR == 2
/* ---- VNNI only: without VNNI these measured no faster than the AVX2 kernels, which serve the plain table ---- */

/* Signed x . y (x never -128): |x| against y carrying x's sign. */
#define SDOT256(x, y) UDOT256(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))

/* ---- VNNI: two blocks per register ----
 *
 * One block per register costs an int->float conversion, a lane broadcast and an fmadd per block, which
 * left short rows compute-bound. Here a 256-bit register holds the same 16 elements of two blocks (low
 * 128 bits block i, high block i + 1): the nibble bytes of both blocks give elements 0-15 (low nibbles)
 * and 16-31 (high nibbles) of both, the activations are rearranged to match once for all rows, and the
 * int32 lanes 0-3 / 4-7 end up holding block i's / i + 1's dot, so one conversion and one fmadd with a
 * [s_i x4, s_i+1 x4] scale serve two blocks. (q5_0 measured ~5% slower this way: regrouping its 5th
 * bits into the pair layout costs what the pairing saves, so it keeps the one-block driver.) */

/* Int32 lanes 0-3 summing to the dot of block x0 with (ya, yb)'s low halves, 4-7 of x1 with the high
 * halves (x1 is not read when !two); t: pterm's value for (ya, yb). */
typedef __m256i (*pair_fn)(const void *x0, const void *x1, int two, __m256i ya, __m256i yb, __m256i t);
typedef __m256i (*pterm_fn)(__m256i ya, __m256i yb);

/* 16 bytes at a (low) and b (high; zero when !two). */
INLINE __m256i load2x128(const void *a, const void *b, int two) {
    const __m128i lo = _mm_loadu_si128((const __m128i *)a);
    return two ? _mm256_inserti128_si256(_mm256_castsi128_si256(lo), _mm_loadu_si128((const __m128i *)b), 1)
               : _mm256_zextsi128_si256(lo);
}

/* Activation blocks at q0, q1 (their qs) in pair layout: *ya elements 0-15, *yb 16-31. */
INLINE void y_pair(const int8_t *q0, const int8_t *q1, int two, __m256i *ya, __m256i *yb) {
    *ya = load2x128(q0, q1, two);
    *yb = load2x128(q0 + 16, q1 + 16, two);
}

INLINE __m256i low_nibbles(__m256i v) { return _mm256_and_si256(v, _mm256_set1_epi8(0x0f)); }
INLINE __m256i high_nibbles(__m256i v) { return _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0f)); }

/* -8 * (sum of each activation block), as the pair's int32 lanes: q4_0's offset, shared by all rows */
INLINE __m256i pterm_off8(__m256i ya, __m256i yb) {
    const __m256i o = _mm256_set1_epi8(8);
    return _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), o, ya), o, yb));
}

/* dx*dy of blocks k, k+1 of a group (lanes k, k+1 of d; of dm even lanes, step 2) as [x4, x4] */
INLINE __m256 pair_scale(__m256 d, int k, int step) {
    const int a = k * step, b = (k + 1) * step;
    return _mm256_permutexvar_ps(_mm256_setr_epi32(a, a, a, a, b, b, b, b), d);
}

/* Blocks i .. i + cnt - 1 (cnt <= 4) of R rows and T activation rows into acc0 / acc1 (first / second
 * pair), as group_q8_0. */
INLINE void pgroup_q8_0(int R, int T, int i, int cnt, __m256 acc0[4][2], __m256 acc1[4][2], const char *x, size_t bx,
                        const char *vy, size_t by, int xsize, pair_fn dot, pterm_fn pterm) {
    const block_q8_0 *y[2];
    __m256 d[4][2];
    scales_q8_0(R, T, i, cnt, x, bx, vy, by, xsize, y, d);
    for (int k = 0; k < cnt; k += 2) {
        const int two = k + 1 < cnt;
        __m256i ya[2], yb[2], pt[2];
        for (int t = 0; t < T; t++) {
            y_pair(y[t][i + k].qs, two ? y[t][i + k + 1].qs : NULL, two, &ya[t], &yb[t]);
            pt[t] = pterm ? pterm(ya[t], yb[t]) : _mm256_setzero_si256();
        }
        for (int r = 0; r < R; r++) {
            const char *xb = x + r * bx + (size_t)(i + k) * xsize;
            for (int t = 0; t < T; t++) {
                const __m256 p = _mm256_cvtepi32_ps(dot(xb, xb + xsize, two, ya[t], yb[t], pt[t]));
                if (k & 2) acc1[r][t] = _mm256_fmadd_ps(pair_scale(d[r][t], k, 1), p, acc1[r][t]);
                else acc0[r][t] = _mm256_fmadd_ps(pair_scale(d[r][t], k, 1), p, acc0[r][t]);
            }
        }
    }
}

INLINE void pair_tile_q8_0(int n, float *s, size_t ls, int R, int T, const void *vx, size_t bx, const void *vy,
                           size_t by, int xsize, pair_fn dot, pterm_fn pterm) {
    const int nb = n / QK8_0;
    __m256 acc0[4][2], acc1[4][2];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc0[r][t] = acc1[r][t] = _mm256_setzero_ps();
    int i = 0;
    for (; i + 4 <= nb; i += 4) pgroup_q8_0(R, T, i, 4, acc0, acc1, vx, bx, vy, by, xsize, dot, pterm);
    if (i < nb) pgroup_q8_0(R, T, i, nb - i, acc0, acc1, vx, bx, vy, by, xsize, dot, pterm);
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) s[t * ls + r] = hsum256(_mm256_add_ps(acc0[r][t], acc1[r][t]));
}

INLINE void pair_rows_q8_0(int n, float *s, int R, const void *vx, size_t bx, const void *vy, int xsize,
                           pair_fn dot, pterm_fn pterm) {
    pair_tile_q8_0(n, s, 0, R, 1, vx, bx, vy, 0, xsize, dot, pterm);
}

/* Nibble bytes of two blocks in pair layout: u8 x s8 dot with (ya, yb) on top of t. */
INLINE __m256i pair_nibble_dot(__m256i v, __m256i ya, __m256i yb, __m256i t) {
    return _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(t, low_nibbles(v), ya), high_nibbles(v), yb);
}

INLINE __m256i pair_q4_0(const void *x0, const void *x1, int two, __m256i ya, __m256i yb, __m256i t) {
    return pair_nibble_dot(load2x128(((const block_q4_0 *)x0)->qs, two ? ((const block_q4_0 *)x1)->qs : NULL, two), ya, yb, t);
}

/* q4_0 . q8_0: dx*dy * sum((nibble - 8) * q) per block */
ROW_KERNELS(vec_dot_q4_0_q8_0, pair_rows_q8_0, vy, sizeof(block_q4_0), pair_q4_0, pterm_off8)
TILE_KERNEL(vec_dot_q4_0_q8_0, pair_tile_q8_0, sizeof(block_q4_0), pair_q4_0, pterm_off8)

/* q4_1 and q8_0 in llama.cpp's x86 order, the scalar twins' (ref/dot.c): per output one 8-lane accumulator
 * taking each block's eight 4-element integer sums with one fma, block after block, and for q4_1 a scalar
 * fma chain of m * s added last. R rows x T activation rows, results at s[t * ls + r]. */
INLINE void ggml_tile_q4_1(int n, float *s, size_t ls, int R, int T, const void *vx, size_t bx, const void *vy, size_t by) {
    const char *x = vx;
    __m256 acc[4][2];
    float mins[4][2];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps(), mins[r][t] = 0.0f;
    for (int i = 0; i < n / QK4_1; i++) {
        if (T == 1 && i % 4 == 0) prefetch_ahead(R, x, bx, (size_t)i * sizeof(block_q4_1), 4 * sizeof(block_q4_1));
        const block_q8_1 *y[2];
        __m256i yq[2];
        float dy[2], sy[2];
        for (int t = 0; t < T; t++) {
            y[t] = (const block_q8_1 *)((const char *)vy + t * by) + i;
            yq[t] = load256(y[t]->qs), dy[t] = h2f(y[t]->d), sy[t] = h2f(y[t]->s);
        }
        for (int r = 0; r < R; r++) {
            const block_q4_1 *b = (const block_q4_1 *)(x + r * bx) + i;
            const __m256i q = nibbles16(b->qs);
            const float dx = h2f(b->d), mx = h2f(b->m);
            for (int t = 0; t < T; t++) {
                mins[r][t] = fmaf(mx, sy[t], mins[r][t]);
                acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(dx * dy[t]), _mm256_cvtepi32_ps(UDOT256(q, yq[t])), acc[r][t]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) s[t * ls + r] = hsum256(acc[r][t]) + mins[r][t];
}

INLINE void ggml_tile_q8_0(int n, float *s, size_t ls, int R, int T, const void *vx, size_t bx, const void *vy, size_t by) {
    const char *x = vx;
    __m256 acc[4][2];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    for (int i = 0; i < n / QK8_0; i++) {
        if (T == 1 && i % 4 == 0) prefetch_ahead(R, x, bx, (size_t)i * sizeof(block_q8_0), 4 * sizeof(block_q8_0));
        __m256i yq[2];
        float dy[2];
        for (int t = 0; t < T; t++) {
            const block_q8_0 *y = (const block_q8_0 *)((const char *)vy + t * by) + i;
            yq[t] = load256(y->qs), dy[t] = h2f(y->d);
        }
        for (int r = 0; r < R; r++) {
            const block_q8_0 *b = (const block_q8_0 *)(x + r * bx) + i;
            const __m256i q = load256(b->qs), aq = _mm256_sign_epi8(q, q);   /* |q|, its sign moved onto y */
            const float dx = h2f(b->d);
            for (int t = 0; t < T; t++)
                acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(dx * dy[t]), _mm256_cvtepi32_ps(UDOT256(aq, _mm256_sign_epi8(yq[t], q))),
                                            acc[r][t]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) s[t * ls + r] = hsum256(acc[r][t]);
}

/* A single-row kernel, its 4-row twin and its 4 x 2 tile over one tile driver. */
#define TILE_KERNELS(name, tile) \
    static void K(name)(int n, float *restrict s, const void *restrict vx, const void *restrict vy) { \
        tile(n, s, 0, 1, 1, vx, 0, vy, 0); \
    } \
    static void K(name##_x4)(int n, float *restrict s, const void *restrict vx, size_t bx, const void *restrict vy) { \
        tile(n, s, 0, 4, 1, vx, bx, vy, 0); \
    } \
    static void K(name##_x4x2)(int n, float *restrict s, size_t ls, const void *restrict vx, size_t bx, \
                               const void *restrict vy, size_t by) { \
        tile(n, s, ls, 4, 2, vx, bx, vy, by); \
    }

TILE_KERNELS(vec_dot_q4_1_q8_1, ggml_tile_q4_1)
TILE_KERNELS(vec_dot_q8_0_q8_0, ggml_tile_q8_0)
#undef TILE_KERNELS

INLINE __m256i K(block_iq4_nl)(const void *vx, const void *vy, __m256i t) {
    (void)t;
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)llp_iq4nl_values));
    const __m256i q = _mm256_shuffle_epi8(table, nibbles16(((const block_iq4_nl *)vx)->qs));
    return SDOT256(q, load256(((const block_q8_0 *)vy)->qs));
}

/* -128 * (sum of each activation block): iq4_nl's table is looked up shifted into u8 (+128), which makes
 * its dot one vpdpbusd per register, like q4_0's, instead of two sign ops more per weight row. */
INLINE __m256i pterm_off128(__m256i ya, __m256i yb) {
    const __m256i o = _mm256_set1_epi8((char)128);
    return _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), o, ya), o, yb));
}

INLINE __m256i pair_iq4_nl(const void *x0, const void *x1, int two, __m256i ya, __m256i yb, __m256i t) {
    const __m256i table = _mm256_xor_si256(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)llp_iq4nl_values)),
                                           _mm256_set1_epi8((char)0x80));
    const __m256i v = load2x128(((const block_iq4_nl *)x0)->qs, two ? ((const block_iq4_nl *)x1)->qs : NULL, two);
    const __m256i lo = _mm256_shuffle_epi8(table, low_nibbles(v)), hi = _mm256_shuffle_epi8(table, high_nibbles(v));
    return _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(t, lo, ya), hi, yb);
}

/* iq4_nl . q8_0: dx*dy * sum(table[nibble] * q) per block */
ROW_KERNELS(vec_dot_iq4_nl_q8_0, pair_rows_q8_0, vy, sizeof(block_iq4_nl), pair_iq4_nl, pterm_off128)
TILE_KERNEL(vec_dot_iq4_nl_q8_0, pair_tile_q8_0, sizeof(block_iq4_nl), pair_iq4_nl, pterm_off128)

/* q2_K . q8_K: dy * (d * sum_g sc_g * (q . y)_g - dmin * sum_g m_g * ysum_g), 16 groups of 16 with a 4-bit
 * scale (low nibble) and min (high nibble); group 8h + 2j (+1) takes bits 2j of qs[32h..] */
static void K(vec_dot_q2_K_q8_K)(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_q2_K *x = vx;
    const block_q8_K *y = vy;
    const __m256i low2 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        const __m128i raw = _mm_loadu_si128((const __m128i *)x[i].scales);
        const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, _mm_set1_epi8(0x0f)));
        const __m256i m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0f)));
        __m256i sum = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i sc = h ? _mm256_permute4x64_epi64(sc16, 0xEE) : _mm256_permute4x64_epi64(sc16, 0x44);
            const __m256i qs = load256(x[i].qs + 32 * h);
            const int8_t *qy = y[i].qs + 128 * h;
            __m256i q[4];
            for (int j = 0; j < 4; j++) q[j] = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * j), low2);
            sum = _mm256_add_epi32(sum, SCALED2(q[0], load256(qy), q[1], load256(qy + 32), sc, 0, 1, 2, 3));
            sum = _mm256_add_epi32(sum, SCALED2(q[2], load256(qy + 64), q[3], load256(qy + 96), sc, 4, 5, 6, 7));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * y[i].d), _mm256_cvtepi32_ps(sum), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].dmin) * y[i].d),
                               _mm256_cvtepi32_ps(_mm256_madd_epi16(m16, load256(y[i].bsums))), accm);
    }
    *s = hsum256(_mm256_sub_ps(acc, accm));
}

/* q4_K . q8_K: dy * (d * sum_j sc_j * (q . y)_j - dmin * sum_j m_j * ysum_j), 8 sub-blocks of 32.
 * R rows (bx bytes apart) at once share the activation loads and the bsums, and T activation rows (by
 * bytes apart) each weight row's scales and loads; R = T = 1 is the single-row kernel, so each output
 * sees the same operations either way. Results go to s[t * ls + r]. */
INLINE void K(dot_tile_q4_K)(int n, float *s, size_t ls, int R, int T, const void *vx, size_t bx, const void *vy, size_t by) {
    const char *x = vx;
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m256 acc[4][2], accm[4][2];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = accm[r][t] = _mm256_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        if (T == 1) prefetch_ahead(R, x, bx, (size_t)i * sizeof(block_q4_K), sizeof(block_q4_K));
        const block_q8_K *y[2];
        for (int t = 0; t < T; t++) y[t] = (const block_q8_K *)((const char *)vy + t * by) + i;
        const block_q4_K *xr[4];
        __m128i sm[4];
        __m256i sc[4], sum[4][2];
        for (int r = 0; r < R; r++) {
            xr[r] = (const block_q4_K *)(x + r * bx) + i;
            sm[r] = k4_scales_mins(xr[r]->scales);
            sc[r] = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm[r]));
            for (int t = 0; t < T; t++) sum[r][t] = _mm256_setzero_si256();
        }
        for (int j = 0; j < 4; j++) {
            __m256i y0[2], y1[2];
            for (int t = 0; t < T; t++) {
                y0[t] = load256(y[t]->qs + 64 * j);
                y1[t] = load256(y[t]->qs + 64 * j + 32);
            }
            for (int r = 0; r < R; r++) {
                const __m256i q = load256(xr[r]->qs + 32 * j);
                const __m256i lo = _mm256_and_si256(q, low4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
                for (int t = 0; t < T; t++)
                    sum[r][t] = _mm256_add_epi32(sum[r][t], SCALED2(lo, y0[t], hi, y1[t], sc[r], 2 * j, 2 * j, 2 * j + 1, 2 * j + 1));
            }
        }
        for (int t = 0; t < T; t++) {
            const __m256i bsums = load256(y[t]->bsums);
            for (int r = 0; r < R; r++) {
                acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(xr[r]->d) * y[t]->d), _mm256_cvtepi32_ps(sum[r][t]), acc[r][t]);
                accm[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(xr[r]->dmin) * y[t]->d), _mm256_cvtepi32_ps(k4_min_dot(sm[r], bsums)), accm[r][t]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) s[t * ls + r] = hsum256(_mm256_sub_ps(acc[r][t], accm[r][t]));
}

INLINE void K(dot_rows_q4_K)(int n, float *s, int R, const void *vx, size_t bx, const void *vy) {
    K(dot_tile_q4_K)(n, s, 0, R, 1, vx, bx, vy, 0);
}

ROW_KERNELS(vec_dot_q4_K_q8_K, K(dot_rows_q4_K), vy)
TILE_KERNEL(vec_dot_q4_K_q8_K, K(dot_tile_q4_K))

/* q5_K . q8_K: q4_K with a 5th bit per element (bit 2j of qh for sub-block 2j, 2j+1 for 2j+1) */
static void K(vec_dot_q5_K_q8_K)(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_q5_K *x = vx;
    const block_q8_K *y = vy;
    const __m256i low4 = _mm256_set1_epi8(0x0f), bit4 = _mm256_set1_epi8(0x10);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        const __m128i sm = k4_scales_mins(x[i].scales);
        const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
        const __m256i qh = load256(x[i].qh);
        __m256i sum = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            const __m256i q = load256(x[i].qs + 32 * j);
            /* qh bits 2j, 2j+1 moved to bit 4 (16-bit shifts: the bit stays in its byte) */
            const __m256i h0 = j < 2 ? _mm256_slli_epi16(qh, 4 - 2 * j) : _mm256_srli_epi16(qh, 2 * j - 4);
            const __m256i h1 = j < 2 ? _mm256_slli_epi16(qh, 3 - 2 * j) : _mm256_srli_epi16(qh, 2 * j - 3);
            const __m256i q0 = _mm256_ternarylogic_epi32(q, _mm256_and_si256(h0, bit4), low4, A_AND_C_OR_B);
            const __m256i q1 = _mm256_ternarylogic_epi32(_mm256_srli_epi16(q, 4), _mm256_and_si256(h1, bit4), low4, A_AND_C_OR_B);
            const int8_t *qy = y[i].qs + 64 * j;
            sum = _mm256_add_epi32(sum, SCALED2(q0, load256(qy), q1, load256(qy + 32), sc, 2 * j, 2 * j, 2 * j + 1, 2 * j + 1));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * y[i].d), _mm256_cvtepi32_ps(sum), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].dmin) * y[i].d), _mm256_cvtepi32_ps(k4_min_dot(sm, load256(y[i].bsums))), accm);
    }
    *s = hsum256(_mm256_sub_ps(acc, accm));
}

/* q3_K . q8_K: d*dy * sum_g (sc_g - 32) * ((q . y)_g - 4 * ysum_g), 16 groups of 16, q = 2 low bits | hmask
 * bit << 2; group 8h + 2j (+1) takes bits 2j of qs[32h..] and bit 4h + j of hmask */
static void K(vec_dot_q3_K_q8_K)(int n, float *restrict s, const void *restrict vx, const void *restrict vy) {
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    const __m256i low2 = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_sub_epi8(q3_K_scales(x[i].scales), _mm_set1_epi8(32)));
        __m256i sum = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(load256(y[i].bsums), sc16), 2));
        const __m256i hm = load256(x[i].hmask);
        for (int h = 0; h < 2; h++) {
            const __m256i sc = h ? _mm256_permute4x64_epi64(sc16, 0xEE) : _mm256_permute4x64_epi64(sc16, 0x44);
            const __m256i qs = load256(x[i].qs + 32 * h);
            const int8_t *qy = y[i].qs + 128 * h;
            __m256i q[4];
            for (int j = 0; j < 4; j++) {
                q[j] = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * j), low2);
                q[j] = _mm256_mask_add_epi8(q[j], _mm256_test_epi8_mask(hm, _mm256_set1_epi8((char)(1 << (4 * h + j)))), q[j], four);
            }
            sum = _mm256_add_epi32(sum, SCALED2(q[0], load256(qy), q[1], load256(qy + 32), sc, 0, 1, 2, 3));
            sum = _mm256_add_epi32(sum, SCALED2(q[2], load256(qy + 64), q[3], load256(qy + 96), sc, 4, 5, 6, 7));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * y[i].d), _mm256_cvtepi32_ps(sum), acc);
    }
    *s = hsum256(acc);
}

#endif

void K(llp_register)(llp_kernels *k) {
    /* vec_dot4 is set with every vec_dot, NULL where there is no 4-row twin, so a table never pairs one
     * flavour's vec_dot with another's vec_dot4 */
#define SET(t, fn) (k->vec_dot[t] = K(fn), k->vec_dot4[t] = NULL, k->vec_dot4x2[t] = NULL, k->impl[t] = IMPL)
#define SET4(t, fn) (k->vec_dot[t] = K(fn), k->vec_dot4[t] = K(fn##_x4), k->vec_dot4x2[t] = NULL, k->impl[t] = IMPL)
#define SETT(t, fn) (k->vec_dot[t] = K(fn), k->vec_dot4[t] = NULL, k->vec_dot4x2[t] = K(fn##_x4x2), k->impl[t] = IMPL)
#define SET4T(t, fn) (k->vec_dot[t] = K(fn), k->vec_dot4[t] = K(fn##_x4), k->vec_dot4x2[t] = K(fn##_x4x2), k->impl[t] = IMPL)
    SET4T(LLP_Q5_0, vec_dot_q5_0_q8_0);
    SET4(LLP_Q5_1, vec_dot_q5_1_q8_1);
    SETT(LLP_Q6_K, vec_dot_q6_K_q8_K);
#if LLP_AVX512_FLAVOUR == 2
    SET4T(LLP_Q4_0, vec_dot_q4_0_q8_0);
    SET4T(LLP_Q4_1, vec_dot_q4_1_q8_1);
    SET4T(LLP_Q8_0, vec_dot_q8_0_q8_0);
    SET4T(LLP_IQ4_NL, vec_dot_iq4_nl_q8_0);
    SET(LLP_Q2_K, vec_dot_q2_K_q8_K);
    SET(LLP_Q3_K, vec_dot_q3_K_q8_K);
    SET4T(LLP_Q4_K, vec_dot_q4_K_q8_K);
    SET(LLP_Q5_K, vec_dot_q5_K_q8_K);
#else
    /* the VNNI table inherits these */
    k->from_float[LLP_Q8_0] = quantize_row_q8_0_avx512;
    k->from_float[LLP_Q8_1] = quantize_row_q8_1_avx512;
    k->from_float[LLP_Q8_K] = quantize_row_q8_K_avx512;
#endif
#undef SET
#undef SET4
#undef SET4T
#undef SETT
}

#undef UDOT256
#undef UDOT256_OFF
#undef OFF_TERM
#undef ROW_KERNELS
#undef TILE_KERNEL
#undef SCALED2
#undef SDOT256
#endif
