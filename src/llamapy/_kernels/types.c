/* The per-type trait table: sizes, scalar converters and the activation format of each dot product.
 * vec_dot_type follows llama.cpp's x86 choices, so activations are rounded the way llama.cpp rounds them. */
#include "include/kernels.h"

#define T(id, nm, bs, ts, deq, quant, vdt) [id] = {nm, bs, ts, deq, quant, vdt}

const llp_type_info llp_types[LLP_TYPE_COUNT] = {
    T(LLP_F32,    "f32",    1,  4,                    dequantize_row_f32,    quantize_row_f32_ref,    LLP_F32),
    T(LLP_F16,    "f16",    1,  2,                    dequantize_row_f16,    quantize_row_f16_ref,    LLP_F16),
    T(LLP_BF16,   "bf16",   1,  2,                    dequantize_row_bf16,   quantize_row_bf16_ref,   LLP_BF16),
    T(LLP_Q4_0,   "q4_0",   QK4_0, sizeof(block_q4_0), dequantize_row_q4_0,  quantize_row_q4_0_ref,   LLP_Q8_0),
    T(LLP_Q4_1,   "q4_1",   QK4_1, sizeof(block_q4_1), dequantize_row_q4_1,  quantize_row_q4_1_ref,   LLP_Q8_1),
    T(LLP_Q5_0,   "q5_0",   QK5_0, sizeof(block_q5_0), dequantize_row_q5_0,  quantize_row_q5_0_ref,   LLP_Q8_0),
    T(LLP_Q5_1,   "q5_1",   QK5_1, sizeof(block_q5_1), dequantize_row_q5_1,  quantize_row_q5_1_ref,   LLP_Q8_1),
    T(LLP_Q8_0,   "q8_0",   QK8_0, sizeof(block_q8_0), dequantize_row_q8_0,  quantize_row_q8_0_ref,   LLP_Q8_0),
    T(LLP_Q8_1,   "q8_1",   QK8_1, sizeof(block_q8_1), dequantize_row_q8_1,  quantize_row_q8_1_ref,   -1),
    T(LLP_Q2_K,   "q2_K",   QK_K, sizeof(block_q2_K),  dequantize_row_q2_K,  quantize_row_q2_K_ref,   LLP_Q8_K),
    T(LLP_Q3_K,   "q3_K",   QK_K, sizeof(block_q3_K),  dequantize_row_q3_K,  quantize_row_q3_K_ref,   LLP_Q8_K),
    T(LLP_Q4_K,   "q4_K",   QK_K, sizeof(block_q4_K),  dequantize_row_q4_K,  quantize_row_q4_K_ref,   LLP_Q8_K),
    T(LLP_Q5_K,   "q5_K",   QK_K, sizeof(block_q5_K),  dequantize_row_q5_K,  quantize_row_q5_K_ref,   LLP_Q8_K),
    T(LLP_Q6_K,   "q6_K",   QK_K, sizeof(block_q6_K),  dequantize_row_q6_K,  quantize_row_q6_K_ref,   LLP_Q8_K),
    T(LLP_Q8_K,   "q8_K",   QK_K, sizeof(block_q8_K),  dequantize_row_q8_K,  quantize_row_q8_K_ref,   -1),
    T(LLP_IQ4_NL, "iq4_nl", QK4_NL, sizeof(block_iq4_nl), dequantize_row_iq4_nl, quantize_row_iq4_nl_ref, LLP_Q8_0),
    T(LLP_IQ4_XS, "iq4_xs", QK_K, sizeof(block_iq4_xs), dequantize_row_iq4_xs, quantize_row_iq4_xs_ref, LLP_Q8_K),
    T(LLP_TQ1_0,  "tq1_0",  QK_K, sizeof(block_tq1_0), dequantize_row_tq1_0, quantize_row_tq1_0_ref,  LLP_Q8_K),
    T(LLP_TQ2_0,  "tq2_0",  QK_K, sizeof(block_tq2_0), dequantize_row_tq2_0, quantize_row_tq2_0_ref,  LLP_Q8_K),
};
