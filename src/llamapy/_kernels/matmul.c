/* Threaded matrix-vector and matrix-matrix products over quantized weights.
 *
 * Activations are first quantized to the weight type's vec_dot_type (as llama.cpp does), then threads
 * take contiguous chunks of weight rows, so each weight byte is read from memory once. */
#include "include/kernels.h"
#ifdef _OPENMP
#include <omp.h>
#endif

static size_t row_size(int type, int64_t n) {
    return (size_t)(n / llp_types[type].blck_size) * llp_types[type].type_size;
}

/* Room for n_tok quantized rows, and never less than LLP_MAX_THREADS rows: a one-token product lets
 * each thread quantize the row into its own slot (see llp_matmul). Growing with n_tok, so a buffer
 * sized for a batch also serves every smaller call. */
size_t llp_matmul_work_size(int type, int64_t cols, int64_t n_tok) {
    if (type < 0 || type >= LLP_TYPE_COUNT || !llp_types[type].blck_size) return 0;
    int vdt = llp_types[type].vec_dot_type;
    if (vdt < 0 || vdt == LLP_F32) return 0;
    return row_size(vdt, cols) * (size_t)(n_tok > LLP_MAX_THREADS ? n_tok : LLP_MAX_THREADS);
}

/* Rows handled together so a few weight rows stay in L1 while every token's activations pass by. */
#define ROW_BLOCK 16

int llp_matmul_group(const llp_kernels *k, const llp_product *prods, int n_prods, int64_t cols, const float *X,
                     int64_t n_tok, void *work, int n_threads) {
    if (n_prods < 1 || n_prods > LLP_MAX_GROUP) return -3;
    const int vdt = prods[0].type >= 0 && prods[0].type < LLP_TYPE_COUNT ? llp_types[prods[0].type].vec_dot_type : -1;
    for (int m = 0; m < n_prods; m++) {
        const int t = prods[m].type;
        if (t < 0 || t >= LLP_TYPE_COUNT || !llp_types[t].blck_size || llp_types[t].vec_dot_type < 0 || !k->vec_dot[t])
            return -1;
        if (cols % llp_types[t].blck_size || cols % llp_types[llp_types[t].vec_dot_type].blck_size) return -2;
    }
    for (int m = 1; m < n_prods; m++)
        if (llp_types[prods[m].type].vec_dot_type != vdt) {
            /* activations quantized two ways: one product at a time */
            for (int i = 0; i < n_prods; i++) {
                const int rc = llp_matmul_group(k, prods + i, 1, cols, X, n_tok, work, n_threads);
                if (rc) return rc;
            }
            return 0;
        }
    llp_from_float_fn quantize = k->from_float[vdt] ? k->from_float[vdt] : llp_types[vdt].from_float_ref;
    const int direct = vdt == LLP_F32;  /* f32 weights dot the activations as they are */
    const size_t act_stride = direct ? (size_t)cols * sizeof(float) : row_size(vdt, cols);
    const char *act = direct ? (const char *)X : (const char *)work;
    if (n_threads < 1) n_threads = 1;
    /* One token: every thread quantizes the row itself into its own slot of `work` (a fraction of a
     * microsecond, the same bytes in each slot) instead of one thread doing it behind a barrier; on
     * small matrices that barrier was a visible share of the call. */
    const int solo = !direct && n_tok == 1 && n_threads <= LLP_MAX_THREADS;

#pragma omp parallel num_threads(n_threads)
    {
#ifdef _OPENMP
        const int ith = omp_get_thread_num(), nth = omp_get_num_threads();
#else
        const int ith = 0, nth = 1;
#endif
        const char *acts = act;
        if (solo) {
            acts = (const char *)work + ith * act_stride;
            quantize(X, (char *)acts, cols);
        } else {
            if (!direct)
                for (int64_t t = ith; t < n_tok; t += nth)
                    quantize(X + t * cols, (char *)work + t * act_stride, cols);
#pragma omp barrier
        }
        /* The row blocks of all products form one loop, handed out in guided chunks: each thread first takes a
         * long contiguous run (one long stream for the prefetchers: 4 fixed chunks per thread and product ran
         * 20-30% slower on 576-column matvecs than one), then ever smaller ones, so a thread that loses its
         * core to another process delays only its current run. Each output has the bits of one vec_dot call
         * (vec_dot4 and the tiles give the same), so results do not depend on the thread count or on which
         * products share the call; blocks are whole ROW_BLOCKs, so 4-row groups start at multiples of 4. */
        int64_t first_block[LLP_MAX_GROUP + 1];
        first_block[0] = 0;
        for (int m = 0; m < n_prods; m++) first_block[m + 1] = first_block[m] + (prods[m].rows + ROW_BLOCK - 1) / ROW_BLOCK;
#pragma omp for schedule(guided, 1) nowait
        for (int64_t c = 0; c < first_block[n_prods]; c++) {
            int m = 0;
            while (c >= first_block[m + 1]) m++;
            const llp_product *P = &prods[m];
            llp_vec_dot_fn dot = k->vec_dot[P->type];
            llp_vec_dot4_fn dot4 = k->vec_dot4[P->type];      /* same bits as dot, row by row */
            llp_vec_dot4x2_fn tile = k->vec_dot4x2[P->type];  /* the same, 4 rows x 2 tokens at a time */
            const char *W = P->W;
            const int64_t rb = (c - first_block[m]) * ROW_BLOCK, re = rb + ROW_BLOCK < P->rows ? rb + ROW_BLOCK : P->rows;
            int64_t t = 0;
            if (tile && re - rb == ROW_BLOCK)
                for (; t + 2 <= n_tok; t += 2)
                    for (int64_t r = rb; r < re; r += 4)
                        tile((int)cols, &P->Y[t * P->y_stride + r], (size_t)P->y_stride, W + r * P->w_stride,
                             P->w_stride, acts + t * act_stride, act_stride);
            for (; t < n_tok; t++) {
                const void *a = acts + t * act_stride;
                float *y = P->Y + t * P->y_stride;
                int64_t r = rb;
                if (dot4)
                    for (; r + 4 <= re; r += 4) dot4((int)cols, &y[r], W + r * P->w_stride, P->w_stride, a);
                for (; r < re; r++) dot((int)cols, &y[r], W + r * P->w_stride, a);
            }
        }
    }
    return 0;
}

int llp_matmul(const llp_kernels *k, int type, const void *W, int64_t rows, int64_t cols, size_t w_stride,
               const float *X, int64_t n_tok, float *Y, int64_t y_stride, void *work, int n_threads) {
    const llp_product p = {type, W, rows, w_stride, Y, y_stride};
    return llp_matmul_group(k, &p, 1, cols, X, n_tok, work, n_threads);
}
