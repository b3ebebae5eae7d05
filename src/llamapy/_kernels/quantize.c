/* Threaded whole-tensor quantize and dequantize over the scalar reference converters.
 * Each row (or block range) is converted by one thread, so the bytes never depend on the thread count. */
#include "include/kernels.h"
#include "include/quantize.h"

int llp_quantize_rows(int type, const float *src, void *dst, int64_t nrows, int64_t n_per_row, int n_threads) {
    if (type < 0 || type >= LLP_TYPE_COUNT || !llp_types[type].blck_size || !llp_types[type].from_float_ref) return -1;
    const llp_type_info *t = &llp_types[type];
    const size_t row_bytes = (size_t)(n_per_row / t->blck_size) * t->type_size;
#pragma omp parallel for schedule(dynamic, 16) num_threads(n_threads > 0 ? n_threads : 1)
    for (int64_t r = 0; r < nrows; r++)
        t->from_float_ref(src + r * n_per_row, (char *)dst + r * row_bytes, n_per_row);
    return 0;
}

/* Blocks per work item: big enough that scheduling is free, small enough to balance two threads. */
#define DEQUANT_CHUNK_BLOCKS 4096

int llp_dequantize(int type, const void *src, float *dst, int64_t n, int n_threads) {
    if (type < 0 || type >= LLP_TYPE_COUNT || !llp_types[type].blck_size) return -1;
    const llp_type_info *t = &llp_types[type];
    const int64_t n_blocks = n / t->blck_size;
    const int64_t n_chunks = (n_blocks + DEQUANT_CHUNK_BLOCKS - 1) / DEQUANT_CHUNK_BLOCKS;
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads > 0 ? n_threads : 1)
    for (int64_t c = 0; c < n_chunks; c++) {
        const int64_t b0 = c * DEQUANT_CHUNK_BLOCKS;
        const int64_t nb = b0 + DEQUANT_CHUNK_BLOCKS < n_blocks ? DEQUANT_CHUNK_BLOCKS : n_blocks - b0;
        t->to_float((const char *)src + b0 * (int64_t)t->type_size, dst + b0 * t->blck_size, nb * t->blck_size);
    }
    return 0;
}
