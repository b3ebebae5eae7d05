/* Scalar reference (de)quantizers for the non-K formats. STUBS: to be written. */
#include <math.h>
#include <string.h>
#include "../include/kernels.h"

void dequantize_row_f32(const void *restrict x, float *restrict y, int64_t k) { (void)x; memset(y, 0, (size_t)k * sizeof(float)); /* TODO */ }
void quantize_row_f32_ref(const float *restrict x, void *restrict y, int64_t k) { (void)x; (void)y; (void)k; /* TODO */ }
void dequantize_row_f16(const void *restrict x, float *restrict y, int64_t k) { (void)x; memset(y, 0, (size_t)k * sizeof(float)); /* TODO */ }
void quantize_row_f16_ref(const float *restrict x, void *restrict y, int64_t k) { (void)x; (void)y; (void)k; /* TODO */ }
void dequantize_row_bf16(const void *restrict x, float *restrict y, int64_t k) { (void)x; memset(y, 0, (size_t)k * sizeof(float)); /* TODO */ }
void quantize_row_bf16_ref(const float *restrict x, void *restrict y, int64_t k) { (void)x; (void)y; (void)k; /* TODO */ }
void dequantize_row_q4_0(const void *restrict x, float *restrict y, int64_t k) { (void)x; memset(y, 0, (size_t)k * sizeof(float)); /* TODO */ }
void quantize_row_q4_0_ref(const float *restrict x, void *restrict y, int64_t k) { (void)x; (void)y; (void)k; /* TODO */ }
void dequantize_row_q4_1(const void *restrict x, float *restrict y, int64_t k) { (void)x; memset(y, 0, (size_t)k * sizeof(float)); /* TODO */ }
void quantize_row_q4_1_ref(const float *restrict x, void *restrict y, int64_t k) { (void)x; (void)y; (void)k; /* TODO */ }
void dequantize_row_q5_0(const void *restrict x, float *restrict y, int64_t k) { (void)x; memset(y, 0, (size_t)k * sizeof(float)); /* TODO */ }
void quantize_row_q5_0_ref(const float *restrict x, void *restrict y, int64_t k) { (void)x; (void)y; (void)k; /* TODO */ }
void dequantize_row_q5_1(const void *restrict x, float *restrict y, int64_t k) { (void)x; memset(y, 0, (size_t)k * sizeof(float)); /* TODO */ }
void quantize_row_q5_1_ref(const float *restrict x, void *restrict y, int64_t k) { (void)x; (void)y; (void)k; /* TODO */ }
void dequantize_row_q8_0(const void *restrict x, float *restrict y, int64_t k) { (void)x; memset(y, 0, (size_t)k * sizeof(float)); /* TODO */ }
void quantize_row_q8_0_ref(const float *restrict x, void *restrict y, int64_t k) { (void)x; (void)y; (void)k; /* TODO */ }
void dequantize_row_q8_1(const void *restrict x, float *restrict y, int64_t k) { (void)x; memset(y, 0, (size_t)k * sizeof(float)); /* TODO */ }
void quantize_row_q8_1_ref(const float *restrict x, void *restrict y, int64_t k) { (void)x; (void)y; (void)k; /* TODO */ }
void dequantize_row_q8_K(const void *restrict x, float *restrict y, int64_t k) { (void)x; memset(y, 0, (size_t)k * sizeof(float)); /* TODO */ }
void quantize_row_q8_K_ref(const float *restrict x, void *restrict y, int64_t k) { (void)x; (void)y; (void)k; /* TODO */ }
void dequantize_row_iq4_nl(const void *restrict x, float *restrict y, int64_t k) { (void)x; memset(y, 0, (size_t)k * sizeof(float)); /* TODO */ }
void quantize_row_iq4_nl_ref(const float *restrict x, void *restrict y, int64_t k) { (void)x; (void)y; (void)k; /* TODO */ }
void dequantize_row_iq4_xs(const void *restrict x, float *restrict y, int64_t k) { (void)x; memset(y, 0, (size_t)k * sizeof(float)); /* TODO */ }
void quantize_row_iq4_xs_ref(const float *restrict x, void *restrict y, int64_t k) { (void)x; (void)y; (void)k; /* TODO */ }
void dequantize_row_tq1_0(const void *restrict x, float *restrict y, int64_t k) { (void)x; memset(y, 0, (size_t)k * sizeof(float)); /* TODO */ }
void quantize_row_tq1_0_ref(const float *restrict x, void *restrict y, int64_t k) { (void)x; (void)y; (void)k; /* TODO */ }
void dequantize_row_tq2_0(const void *restrict x, float *restrict y, int64_t k) { (void)x; memset(y, 0, (size_t)k * sizeof(float)); /* TODO */ }
void quantize_row_tq2_0_ref(const float *restrict x, void *restrict y, int64_t k) { (void)x; (void)y; (void)k; /* TODO */ }
