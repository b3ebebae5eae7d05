/* Kernel consistency harness: every SIMD table this CPU can run, checked against the scalar reference.
 *
 * For each ISA that llp_isa_supported() reports (neon on AArch64, avx2/avx512 on x86), and each weight
 * type: random valid weight rows (random bytes, sane fp16 scales) are dotted with activations quantized
 * by the scalar reference, and the ISA's vec_dot must match the scalar vec_dot within an error budget;
 * the ISA's 4-row kernels must give vec_dot's bits row by row; the ISA's activation quantizers must match
 * the scalar ones; llp_matmul must give the same bits with 1 and 2 threads and agree with the row-by-row dots.
 *
 * Rows and activations end exactly at a PROT_NONE page, so a kernel reading past its row faults even
 * without a sanitizer (under qemu, say). Build it with -fsanitize=address,undefined natively as well.
 *
 * Build: cc -O3 -std=gnu11 -ffp-contract=off -fopenmp -I src/llamapy/_kernels tests/c/test_kernels.c, plus
 * types.c dispatch.c matmul.c and every .c under ref/, x86/ and arm/, with -lm (scripts/test_neon.sh does it).
 *
 * Prints one line per check and ends with "N passed, M failed"; the exit status is 1 on any failure. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "include/kernels.h"

/* Error budgets, relative to sum |w_i * a_i| over the dequantized row pair. */
/* Quantized types: block sums are exact integers in every kernel; only the order of the float
 * scaling and accumulation differs (a few float roundings per block). */
#define TOL_QUANT_DOT 1e-5
/* Float types: lane-wise partial sums against the reference's one running sum. */
#define TOL_FLOAT_DOT 1e-5

static int n_passed, n_failed;

static void report(int ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "PASS" : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (ok) n_passed++; else n_failed++;
}

/* ---- deterministic random numbers (xorshift64*) ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd_u32(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

static float rnd_unit(void) { return (float)(rnd_u32() >> 8) / 8388608.0f - 1.0f; }  /* [-1, 1) */

/* ---- buffers that end at an inaccessible page ---- */

typedef struct { void *base; size_t len; } guard_map;
static guard_map maps[64];

/* `size` bytes whose last byte is followed by a PROT_NONE page. */
static void *guarded_alloc(size_t size) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t data_pages = (size + page - 1) / page, len = (data_pages + 1) * page;
    char *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED || mprotect(base + data_pages * page, page, PROT_NONE)) {
        perror("guarded_alloc");
        exit(2);
    }
    for (size_t i = 0; i < sizeof maps / sizeof maps[0]; i++)
        if (!maps[i].base) { maps[i].base = base; maps[i].len = len; break; }
    return base + data_pages * page - size;
}

static void guarded_free_all(void) {
    for (size_t i = 0; i < sizeof maps / sizeof maps[0]; i++)
        if (maps[i].base) { munmap(maps[i].base, maps[i].len); maps[i].base = NULL; }
}

/* ---- random rows ---- */

static size_t row_bytes(int type, int n) {
    return (size_t)(n / llp_types[type].blck_size) * llp_types[type].type_size;
}

/* A scale in [2^-8, 2^-4), either sign: products of quants and activations stay far from overflow. */
static llp_fp16 rnd_scale(void) {
    return llp_f32_to_fp16(ldexpf(1.0f + 0.5f * (rnd_unit() + 1.0f), -8 + (int)(rnd_u32() % 4)) *
                           (rnd_u32() & 1 ? 1.0f : -1.0f));
}

/* The fp16 scale fields of each block type: n of them, at these offsets. */
typedef struct { int type; int n; size_t off[2]; } scale_fields;
static const scale_fields SCALES[] = {
    {LLP_Q4_0, 1, {offsetof(block_q4_0, d)}},
    {LLP_Q4_1, 2, {offsetof(block_q4_1, d), offsetof(block_q4_1, m)}},
    {LLP_Q5_0, 1, {offsetof(block_q5_0, d)}},
    {LLP_Q5_1, 2, {offsetof(block_q5_1, d), offsetof(block_q5_1, m)}},
    {LLP_Q8_0, 1, {offsetof(block_q8_0, d)}},
    {LLP_IQ4_NL, 1, {offsetof(block_iq4_nl, d)}},
    {LLP_Q2_K, 2, {offsetof(block_q2_K, d), offsetof(block_q2_K, dmin)}},
    {LLP_Q3_K, 1, {offsetof(block_q3_K, d)}},
    {LLP_Q4_K, 2, {offsetof(block_q4_K, d), offsetof(block_q4_K, dmin)}},
    {LLP_Q5_K, 2, {offsetof(block_q5_K, d), offsetof(block_q5_K, dmin)}},
    {LLP_Q6_K, 1, {offsetof(block_q6_K, d)}},
    {LLP_IQ4_XS, 1, {offsetof(block_iq4_xs, d)}},
    {LLP_TQ1_0, 1, {offsetof(block_tq1_0, d)}},
    {LLP_TQ2_0, 1, {offsetof(block_tq2_0, d)}},
};

/* A valid weight row of n elements: random bytes, then sane values in the fields that need them. */
static void random_weights(int type, void *row, int n) {
    if (type == LLP_F32) {
        for (int i = 0; i < n; i++) ((float *)row)[i] = rnd_unit();
        return;
    }
    if (type == LLP_F16 || type == LLP_BF16) {
        for (int i = 0; i < n; i++)
            ((uint16_t *)row)[i] = type == LLP_F16 ? llp_f32_to_fp16(rnd_unit()) : llp_f32_to_bf16(rnd_unit());
        return;
    }
    const size_t bytes = row_bytes(type, n), bsize = llp_types[type].type_size;
    for (size_t i = 0; i < bytes; i++) ((uint8_t *)row)[i] = (uint8_t)rnd_u32();
    for (size_t k = 0; k < sizeof SCALES / sizeof SCALES[0]; k++) {
        if (SCALES[k].type != type) continue;
        for (size_t b = 0; b < bytes / bsize; b++)
            for (int f = 0; f < SCALES[k].n; f++) {
                const llp_fp16 h = rnd_scale();
                memcpy((char *)row + b * bsize + SCALES[k].off[f], &h, sizeof h);
            }
    }
    if (type == LLP_Q8_0)  /* quantizers emit -127..127 */
        for (size_t b = 0; b < bytes / bsize; b++)
            for (int j = 0; j < QK8_0; j++) {
                int8_t *q = &((block_q8_0 *)row)[b].qs[j];
                if (*q == -128) *q = -127;
            }
}

/* Activations: uniform in [-amp, amp) with amp varying per row, plus the odd outlier. */
static void random_activations(float *x, int n) {
    const float amp = ldexpf(1.0f, (int)(rnd_u32() % 8) - 4);
    for (int i = 0; i < n; i++) x[i] = amp * rnd_unit();
    for (int i = 0; i < n / 64; i++) x[rnd_u32() % (uint32_t)n] *= 8.0f;
}

/* sum |w_i * a_i| of the dequantized rows: the scale the dot's rounding error is measured against. */
static double magnitude(int type, const void *w, const void *a, int n) {
    const int vdt = llp_types[type].vec_dot_type;
    float *wf = malloc((size_t)n * sizeof(float)), *af = malloc((size_t)n * sizeof(float));
    llp_types[type].to_float(w, wf, n);
    llp_types[vdt].to_float(a, af, n);
    double m = 0;
    for (int i = 0; i < n; i++) m += fabs((double)wf[i] * (double)af[i]);
    free(wf);
    free(af);
    return m;
}

static int is_quantized(int type) { return type != LLP_F32 && type != LLP_F16 && type != LLP_BF16; }

/* Element counts to try: a few blocks, an odd count of blocks, a long row; float rows add ragged tails. */
static int sizes_for(int type, int *out) {
    const int bs = llp_types[type].blck_size;
    if (bs == 1) {
        static const int f[] = {1, 3, 15, 16, 17, 100, 4099};
        memcpy(out, f, sizeof f);
        return (int)(sizeof f / sizeof f[0]);
    }
    if (bs == QK_K) {
        static const int k[] = {256, 512, 768, 4096};
        memcpy(out, k, sizeof k);
        return (int)(sizeof k / sizeof k[0]);
    }
    static const int b[] = {32, 64, 96, 4128};
    memcpy(out, b, sizeof b);
    return (int)(sizeof b / sizeof b[0]);
}

/* ---- checks ---- */

static void check_vec_dot(llp_isa isa, const llp_kernels *tbl, const llp_kernels *ref, int type) {
    const char *isa_name = llp_isa_name(isa), *name = llp_types[type].name;
    if (tbl->vec_dot[type] == ref->vec_dot[type]) {
        printf("SKIP %s vec_dot %s (scalar fallback)\n", isa_name, name);
        return;
    }
    const int vdt = llp_types[type].vec_dot_type;
    const double tol = is_quantized(type) ? TOL_QUANT_DOT : TOL_FLOAT_DOT;
    int sizes[8];
    const int n_sizes = sizes_for(type, sizes);
    for (int si = 0; si < n_sizes; si++) {
        const int n = sizes[si];
        double worst = 0;  /* largest error / (tol * magnitude) over the trials */
        float got_w = 0, want_w = 0;
        for (int trial = 0; trial < 4; trial++) {
            void *w = guarded_alloc(row_bytes(type, n));
            void *a = guarded_alloc(row_bytes(vdt, n));
            float *x = guarded_alloc((size_t)n * sizeof(float));
            random_weights(type, w, n);
            random_activations(x, n);
            llp_types[vdt].from_float_ref(x, a, n);
            float got = NAN, want = NAN;
            tbl->vec_dot[type](n, &got, w, a);
            ref->vec_dot[type](n, &want, w, a);
            const double budget = tol * magnitude(type, w, a, n);
            const double err = fabs((double)got - (double)want);
            const double ratio = err == 0 ? 0 : budget > 0 ? err / budget : INFINITY;
            if (!(ratio <= worst)) { worst = ratio; got_w = got; want_w = want; }
            guarded_free_all();
        }
        report(worst <= 1, "%s vec_dot %-6s n=%-5d err/budget=%.3g (tol %.0e)%s", isa_name, name, n, worst, tol,
               worst <= 1 ? "" : "  <- see values");
        if (worst > 1) printf("     got %.9g want %.9g\n", got_w, want_w);
    }
}

/* vec_dot4 (where the table has one): each of its 4 results has the bits of vec_dot on that row. Rows
 * lie bx apart, bx the row size or more (padded rows); the last row ends at the guard page. */
static void check_vec_dot4(llp_isa isa, const llp_kernels *tbl, int type) {
    if (!tbl->vec_dot4[type]) return;
    const char *isa_name = llp_isa_name(isa), *name = llp_types[type].name;
    const int vdt = llp_types[type].vec_dot_type;
    int sizes[8];
    const int n_sizes = sizes_for(type, sizes);
    for (int si = 0; si < n_sizes; si++) {
        const int n = sizes[si];
        int mismatches = 0;
        for (int pad = 0; pad <= 64; pad += 64) {
            const size_t rb = row_bytes(type, n), bx = rb + (size_t)pad;
            char *w = guarded_alloc(3 * bx + rb);
            void *a = guarded_alloc(row_bytes(vdt, n));
            float *x = guarded_alloc((size_t)n * sizeof(float));
            for (int r = 0; r < 4; r++) random_weights(type, w + r * bx, n);
            random_activations(x, n);
            llp_types[vdt].from_float_ref(x, a, n);
            float got[4], want;
            tbl->vec_dot4[type](n, got, w, bx, a);
            for (int r = 0; r < 4; r++) {
                tbl->vec_dot[type](n, &want, w + r * bx, a);
                mismatches += memcmp(&want, &got[r], sizeof want) != 0;
            }
            guarded_free_all();
        }
        report(!mismatches, "%s vec_dot4 %-6s n=%-5d %d/8 rows differ from vec_dot", isa_name, name, n, mismatches);
    }
}

/* Activation quantizer of the ISA against the scalar reference: scales exact, quants within 1. */
static void check_from_float(llp_isa isa, const llp_kernels *tbl, int vdt) {
    const char *isa_name = llp_isa_name(isa), *name = llp_types[vdt].name;
    llp_from_float_fn fast = tbl->from_float[vdt], slow = llp_types[vdt].from_float_ref;
    if (!fast || fast == slow) {
        if (fast) printf("SKIP %s from_float %s (scalar reference)\n", isa_name, name);
        return;
    }
    const int n = 4 * QK_K;
    const size_t bytes = row_bytes(vdt, n);
    int max_qdiff = 0, scale_mismatch = 0, other = 0;
    for (int trial = 0; trial < 8; trial++) {
        float *x = guarded_alloc((size_t)n * sizeof(float));
        random_activations(x, n);
        if (trial == 1) memset(x + QK_K, 0, QK_K * sizeof(float));  /* an all-zero block */
        if (trial == 2)  /* every block's max is 127, so scale 1 and each k + 0.5 is a rounding tie */
            for (int i = 0; i < n; i++) x[i] = i % 32 ? (float)((int)(rnd_u32() % 253) - 126) + 0.5f : 127.0f;
        if (trial == 3) {  /* +m and -m both largest in magnitude: q8_K keeps the first one's sign */
            for (int i = 0; i < n; i++) x[i] = rnd_unit();
            x[5] = 3.0f, x[77] = -3.0f, x[QK_K + 9] = -3.0f, x[QK_K + 200] = 3.0f;
        }
        uint8_t *a = guarded_alloc(bytes), *b = guarded_alloc(bytes);
        memset(a, 0, bytes);
        memset(b, 0, bytes);
        fast(x, a, n);
        slow(x, b, n);
        if (vdt == LLP_F16 || vdt == LLP_BF16) {
            other += memcmp(a, b, bytes) != 0;
        } else if (vdt == LLP_Q8_0 || vdt == LLP_Q8_1) {
            for (int i = 0; i < n / 32; i++) {
                const block_q8_1 *p = (const void *)(a + i * llp_types[vdt].type_size);
                const block_q8_1 *q = (const void *)(b + i * llp_types[vdt].type_size);
                const int8_t *pq = vdt == LLP_Q8_0 ? ((const block_q8_0 *)p)->qs : p->qs;
                const int8_t *qq = vdt == LLP_Q8_0 ? ((const block_q8_0 *)q)->qs : q->qs;
                int sum_diff = 0;
                scale_mismatch += p->d != q->d;
                for (int j = 0; j < 32; j++) {
                    const int dq = abs(pq[j] - qq[j]);
                    max_qdiff = dq > max_qdiff ? dq : max_qdiff;
                    sum_diff += dq;
                }
                if (vdt == LLP_Q8_1) {
                    /* s = d * sum(q): equal when the quants are, else off by at most d per unit of quant change */
                    const float ds = fabsf(llp_fp16_to_f32(p->s) - llp_fp16_to_f32(q->s));
                    const float slack = fabsf(llp_fp16_to_f32(q->d)) * (float)sum_diff * 1.01f +
                                        ldexpf(fabsf(llp_fp16_to_f32(q->s)), -10);
                    other += sum_diff ? ds > slack : p->s != q->s;
                }
            }
        } else {  /* q8_K */
            for (int i = 0; i < n / QK_K; i++) {
                const block_q8_K *p = (const block_q8_K *)a + i, *q = (const block_q8_K *)b + i;
                scale_mismatch += memcmp(&p->d, &q->d, sizeof p->d) != 0;
                for (int g = 0; g < QK_K / 16; g++) {
                    int sum = 0;
                    for (int j = 0; j < 16; j++) {
                        const int dq = abs(p->qs[16 * g + j] - q->qs[16 * g + j]);
                        max_qdiff = dq > max_qdiff ? dq : max_qdiff;
                        sum += p->qs[16 * g + j];
                    }
                    other += p->bsums[g] != sum;  /* bsums must describe the quants actually written */
                }
            }
        }
        guarded_free_all();
    }
    const int ok = max_qdiff <= 1 && !scale_mismatch && !other;
    report(ok, "%s from_float %-4s max|dq|=%d scale mismatches=%d other mismatches=%d", isa_name, name, max_qdiff,
           scale_mismatch, other);
}

/* llp_matmul: 1 and 2 threads give the same bits, which equal this table's row-by-row dots. */
static void check_matmul(llp_isa isa, const llp_kernels *tbl, int type) {
    const char *isa_name = llp_isa_name(isa), *name = llp_types[type].name;
    const int vdt = llp_types[type].vec_dot_type;
    const int64_t rows = 37, cols = 2 * QK_K, n_tok = 3, y_stride = rows + 3;
    const size_t w_stride = row_bytes(type, (int)cols);
    char *W = guarded_alloc(w_stride * rows);
    float *X = guarded_alloc((size_t)(n_tok * cols) * sizeof(float));
    const size_t work_size = llp_matmul_work_size(type, cols, n_tok);
    void *work = guarded_alloc(work_size ? work_size : 1);
    float *Y1 = guarded_alloc((size_t)(n_tok * y_stride) * sizeof(float));
    float *Y2 = guarded_alloc((size_t)(n_tok * y_stride) * sizeof(float));
    for (int64_t r = 0; r < rows; r++) random_weights(type, W + r * w_stride, (int)cols);
    for (int64_t t = 0; t < n_tok; t++) random_activations(X + t * cols, (int)cols);
    memset(Y1, 0, (size_t)(n_tok * y_stride) * sizeof(float));
    memset(Y2, 0, (size_t)(n_tok * y_stride) * sizeof(float));
    const int rc1 = llp_matmul(tbl, type, W, rows, cols, w_stride, X, n_tok, Y1, y_stride, work, 1);
    const int rc2 = llp_matmul(tbl, type, W, rows, cols, w_stride, X, n_tok, Y2, y_stride, work, 2);
    int same = rc1 == 0 && rc2 == 0 && !memcmp(Y1, Y2, (size_t)(n_tok * y_stride) * sizeof(float));

    /* the same product one dot at a time, activations quantized the way llp_matmul does */
    llp_from_float_fn quantize = tbl->from_float[vdt] ? tbl->from_float[vdt] : llp_types[vdt].from_float_ref;
    int mismatches = 0;
    void *act = guarded_alloc(row_bytes(vdt, (int)cols));
    for (int64_t t = 0; t < n_tok; t++) {
        if (vdt == LLP_F32) memcpy(act, X + t * cols, (size_t)cols * sizeof(float));
        else quantize(X + t * cols, act, cols);
        for (int64_t r = 0; r < rows; r++) {
            float want;
            tbl->vec_dot[type]((int)cols, &want, W + r * w_stride, act);
            mismatches += memcmp(&want, &Y1[t * y_stride + r], sizeof want) != 0;
        }
    }
    guarded_free_all();
    report(same && !mismatches, "%s matmul  %-6s %dx%d, %d tokens: 1 vs 2 threads %s, %d/%d differ from vec_dot",
           isa_name, name, (int)rows, (int)cols, (int)n_tok, same ? "identical" : "DIFFER", mismatches,
           (int)(rows * n_tok));
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);  /* a kernel that faults still leaves the lines before it */
    const llp_kernels *ref = llp_kernels_for(LLP_ISA_SCALAR);
    const llp_cpu_features *cpu = llp_cpu();
    printf("cpu: neon=%d dotprod=%d avx2=%d avx512f=%d avx512vnni=%d\n", cpu->neon, cpu->dotprod, cpu->avx2,
           cpu->avx512f, cpu->avx512vnni);
    for (int isa = 0; isa < LLP_ISA_COUNT; isa++) {
        if (!llp_isa_supported((llp_isa)isa)) {
            printf("isa %s: not available on this CPU\n", llp_isa_name((llp_isa)isa));
            continue;
        }
        printf("isa %s\n", llp_isa_name((llp_isa)isa));
        const llp_kernels *tbl = llp_kernels_for((llp_isa)isa);
        for (int type = 0; type < LLP_TYPE_COUNT; type++) {
            if (!llp_types[type].blck_size || llp_types[type].vec_dot_type < 0 || !ref->vec_dot[type]) continue;
            if (isa != LLP_ISA_SCALAR) check_vec_dot((llp_isa)isa, tbl, ref, type);
            check_vec_dot4((llp_isa)isa, tbl, type);
            check_matmul((llp_isa)isa, tbl, type);
        }
        if (isa != LLP_ISA_SCALAR) {
            static const int acts[] = {LLP_Q8_0, LLP_Q8_1, LLP_Q8_K, LLP_F16, LLP_BF16};
            for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) check_from_float((llp_isa)isa, tbl, acts[i]);
        }
    }
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed ? 1 : 0;
}
