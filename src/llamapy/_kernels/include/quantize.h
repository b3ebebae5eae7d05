/* Whole-tensor conversions, threaded: quantize.c */
#ifndef LLP_QUANTIZE_H
#define LLP_QUANTIZE_H
#include <stdint.h>

/* dst = nrows rows of n_per_row floats from src in `type`, with the scalar reference quantizer (bit-exact
 * with ggml's); rows are shared among n_threads threads. Returns 0, or -1 for a type without a quantizer. */
int llp_quantize_rows(int type, const float *src, void *dst, int64_t nrows, int64_t n_per_row, int n_threads);

/* dst = the floats of n elements of `type` in src, split among n_threads threads at block boundaries. */
int llp_dequantize(int type, const void *src, float *dst, int64_t n, int n_threads);

#endif
