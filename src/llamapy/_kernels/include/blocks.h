/* Block layouts of the GGML tensor formats: the byte contract shared with llama.cpp files.
 * This is the only place layouts are declared; every kernel casts raw bytes to these structs. */
#ifndef LLP_BLOCKS_H
#define LLP_BLOCKS_H

#include <assert.h>
#include <stdint.h>
#include <string.h>

typedef uint16_t llp_fp16;  /* IEEE half, stored as bits */
typedef uint16_t llp_bf16;  /* top 16 bits of an IEEE float */

/* Type ids as in GGUF tensor infos. */
enum llp_type {
    LLP_F32 = 0, LLP_F16 = 1, LLP_Q4_0 = 2, LLP_Q4_1 = 3, LLP_Q5_0 = 6, LLP_Q5_1 = 7,
    LLP_Q8_0 = 8, LLP_Q8_1 = 9, LLP_Q2_K = 10, LLP_Q3_K = 11, LLP_Q4_K = 12, LLP_Q5_K = 13,
    LLP_Q6_K = 14, LLP_Q8_K = 15, LLP_IQ4_NL = 20, LLP_IQ4_XS = 23, LLP_BF16 = 30,
    LLP_TQ1_0 = 34, LLP_TQ2_0 = 35,
    LLP_TYPE_COUNT = 40
};

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK4_NL 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef struct {
    llp_fp16 d;              /* scale */
    uint8_t qs[QK4_0 / 2];   /* byte j: element j in the low nibble, element j+16 in the high nibble */
} block_q4_0;
static_assert(sizeof(block_q4_0) == 18, "block_q4_0 size");

typedef struct {
    llp_fp16 d;              /* scale */
    llp_fp16 m;              /* min */
    uint8_t qs[QK4_1 / 2];   /* nibbles as q4_0 */
} block_q4_1;
static_assert(sizeof(block_q4_1) == 20, "block_q4_1 size");

typedef struct {
    llp_fp16 d;              /* scale */
    uint8_t qh[4];           /* 5th bit of each element, element j at bit j */
    uint8_t qs[QK5_0 / 2];   /* low 4 bits, nibbles as q4_0 */
} block_q5_0;
static_assert(sizeof(block_q5_0) == 22, "block_q5_0 size");

typedef struct {
    llp_fp16 d;              /* scale */
    llp_fp16 m;              /* min */
    uint8_t qh[4];           /* 5th bits */
    uint8_t qs[QK5_1 / 2];   /* low 4 bits */
} block_q5_1;
static_assert(sizeof(block_q5_1) == 24, "block_q5_1 size");

typedef struct {
    llp_fp16 d;              /* scale */
    int8_t qs[QK8_0];        /* quants */
} block_q8_0;
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 size");

typedef struct {
    llp_fp16 d;              /* scale */
    llp_fp16 s;              /* d * sum(qs): lets q4_1/q5_1 dots fold in their min */
    int8_t qs[QK8_1];        /* quants */
} block_q8_1;
static_assert(sizeof(block_q8_1) == 36, "block_q8_1 size");

typedef struct {
    uint8_t scales[QK_K / 16];  /* 4-bit scale (low) and min (high) per 16 elements */
    uint8_t qs[QK_K / 4];       /* 2-bit quants */
    llp_fp16 d;                 /* super-block scale of the scales */
    llp_fp16 dmin;              /* super-block scale of the mins */
} block_q2_K;
static_assert(sizeof(block_q2_K) == 84, "block_q2_K size");

typedef struct {
    uint8_t hmask[QK_K / 8];    /* high bit of the 3-bit quants */
    uint8_t qs[QK_K / 4];       /* low 2 bits */
    uint8_t scales[12];         /* 16 scales of 6 bits */
    llp_fp16 d;                 /* super-block scale */
} block_q3_K;
static_assert(sizeof(block_q3_K) == 110, "block_q3_K size");

typedef struct {
    llp_fp16 d;                     /* super-block scale of the scales */
    llp_fp16 dmin;                  /* super-block scale of the mins */
    uint8_t scales[K_SCALE_SIZE];   /* 8 scales and 8 mins of 6 bits */
    uint8_t qs[QK_K / 2];           /* 4-bit quants */
} block_q4_K;
static_assert(sizeof(block_q4_K) == 144, "block_q4_K size");

typedef struct {
    llp_fp16 d;
    llp_fp16 dmin;
    uint8_t scales[K_SCALE_SIZE];   /* as q4_K */
    uint8_t qh[QK_K / 8];           /* 5th bits */
    uint8_t qs[QK_K / 2];           /* low 4 bits */
} block_q5_K;
static_assert(sizeof(block_q5_K) == 176, "block_q5_K size");

typedef struct {
    uint8_t ql[QK_K / 2];       /* low 4 bits */
    uint8_t qh[QK_K / 4];       /* high 2 bits */
    int8_t scales[QK_K / 16];   /* 8-bit scales */
    llp_fp16 d;                 /* super-block scale */
} block_q6_K;
static_assert(sizeof(block_q6_K) == 210, "block_q6_K size");

typedef struct {
    float d;                    /* scale (f32: this is an intermediate, never stored in files) */
    int8_t qs[QK_K];            /* quants */
    int16_t bsums[QK_K / 16];   /* sum of each group of 16 quants, for the K-quant mins */
} block_q8_K;
static_assert(sizeof(block_q8_K) == 292, "block_q8_K size");

typedef struct {
    llp_fp16 d;
    uint8_t qs[QK4_NL / 2];     /* indices into the non-linear table, nibbles as q4_0 */
} block_iq4_nl;
static_assert(sizeof(block_iq4_nl) == 18, "block_iq4_nl size");

typedef struct {
    llp_fp16 d;
    uint16_t scales_h;          /* high 2 bits of the 8 sub-block scales */
    uint8_t scales_l[QK_K / 64];/* low 4 bits of the 8 sub-block scales */
    uint8_t qs[QK_K / 2];       /* table indices */
} block_iq4_xs;
static_assert(sizeof(block_iq4_xs) == 136, "block_iq4_xs size");

typedef struct {
    uint8_t qs[(QK_K - 4 * QK_K / 64) / 5];  /* 5 trits per byte */
    uint8_t qh[QK_K / 64];                    /* 4 trits per byte */
    llp_fp16 d;
} block_tq1_0;
static_assert(sizeof(block_tq1_0) == 54, "block_tq1_0 size");

typedef struct {
    uint8_t qs[QK_K / 4];       /* 2 bits per element */
    llp_fp16 d;
} block_tq2_0;
static_assert(sizeof(block_tq2_0) == 66, "block_tq2_0 size");

/* The 16 values an IQ4_NL / IQ4_XS index stands for. */
static const int8_t llp_iq4nl_values[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

/* ---- scalar float conversions (bit-exact with IEEE round-to-nearest-even) ---- */

static inline float llp_bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t llp_f32_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline float llp_fp16_to_f32(llp_fp16 h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return llp_bits_to_f32(sign | 0x7f800000u | (man << 13));   /* inf, nan */
    if (exp == 0) {
        if (man == 0) return llp_bits_to_f32(sign);
        /* subnormal: value is man * 2^-24 */
        float f = (float)man * 5.9604644775390625e-08f;
        return sign ? -f : f;
    }
    return llp_bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

static inline llp_fp16 llp_f32_to_fp16(float f) {
    uint32_t x = llp_f32_to_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (llp_fp16)(sign | 0x7e00 | ((ax >> 13) & 0x3ff));  /* nan stays nan */
    if (ax >= 0x47800000u) return (llp_fp16)(sign | 0x7c00);  /* >= 65536 rounds to inf */
    if (ax < 0x38800000u) {                        /* below 2^-14: subnormal half or zero */
        /* round ax * 2^24 to nearest even, done on the float's integer significand */
        uint32_t e = ax >> 23;
        if (e < 102) return (llp_fp16)sign;         /* below half the smallest subnormal */
        uint32_t m = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e;                   /* bits to drop so the unit is 2^-24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (llp_fp16)(sign | q);
    }
    {
        uint32_t r = ax + 0xfff + ((ax >> 13) & 1);  /* round to nearest even at bit 13 */
        r -= 0x38000000u;                              /* rebias exponent 127 -> 15 */
        if (r >= 0x0f800000u) return (llp_fp16)(sign | 0x7c00);
        return (llp_fp16)(sign | (r >> 13));
    }
}

static inline float llp_bf16_to_f32(llp_bf16 h) { return llp_bits_to_f32((uint32_t)h << 16); }

static inline llp_bf16 llp_f32_to_bf16(float f) {
    uint32_t u = llp_f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (llp_bf16)((u >> 16) | 64);  /* quiet nan */
    return (llp_bf16)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

#define LLP_FP16_TO_FP32(x) llp_fp16_to_f32(x)
#define LLP_FP32_TO_FP16(x) llp_f32_to_fp16(x)

#endif
