/* Scalar reference (de)quantizers for the K formats. STUBS: to be written. */
#include <math.h>
#include <string.h>
#include "../include/kernels.h"

void dequantize_row_q2_K(const void *restrict x, float *restrict y, int64_t k) { (void)x; memset(y, 0, (size_t)k * sizeof(float)); /* TODO */ }
void quantize_row_q2_K_ref(const float *restrict x, void *restrict y, int64_t k) { (void)x; (void)y; (void)k; /* TODO */ }
void dequantize_row_q3_K(const void *restrict x, float *restrict y, int64_t k) { (void)x; memset(y, 0, (size_t)k * sizeof(float)); /* TODO */ }
void quantize_row_q3_K_ref(const float *restrict x, void *restrict y, int64_t k) { (void)x; (void)y; (void)k; /* TODO */ }
void dequantize_row_q4_K(const void *restrict x, float *restrict y, int64_t k) { (void)x; memset(y, 0, (size_t)k * sizeof(float)); /* TODO */ }
void quantize_row_q4_K_ref(const float *restrict x, void *restrict y, int64_t k) { (void)x; (void)y; (void)k; /* TODO */ }
void dequantize_row_q5_K(const void *restrict x, float *restrict y, int64_t k) { (void)x; memset(y, 0, (size_t)k * sizeof(float)); /* TODO */ }
void quantize_row_q5_K_ref(const float *restrict x, void *restrict y, int64_t k) { (void)x; (void)y; (void)k; /* TODO */ }
void dequantize_row_q6_K(const void *restrict x, float *restrict y, int64_t k) { (void)x; memset(y, 0, (size_t)k * sizeof(float)); /* TODO */ }
void quantize_row_q6_K_ref(const float *restrict x, void *restrict y, int64_t k) { (void)x; (void)y; (void)k; /* TODO */ }
