/* Scalar reference dot products (the *_generic twins of every SIMD kernel). STUBS. */
#include <math.h>
#include <string.h>
#include "../include/kernels.h"

void llp_register_scalar(llp_kernels *k) {
    /* activation quantizers */
    k->from_float[LLP_Q8_0] = quantize_row_q8_0_ref;
    k->from_float[LLP_Q8_1] = quantize_row_q8_1_ref;
    k->from_float[LLP_Q8_K] = quantize_row_q8_K_ref;
    k->from_float[LLP_F16] = quantize_row_f16_ref;
    k->from_float[LLP_BF16] = quantize_row_bf16_ref;
}
