/* AVX-512 (F/BW/VL/DQ) kernels, plus VNNI variants: same contract as the scalar twins in ref/dot.c. */
#include "../include/kernels.h"

#if defined(__x86_64__)
#include "../include/target.h"
LLP_TARGET("avx2,fma,f16c,bmi2,avx512f,avx512bw,avx512vl,avx512dq")
#include <immintrin.h>

void llp_register_avx512(llp_kernels *k) {
    (void)k;
}
LLP_TARGET_END

LLP_TARGET("avx2,fma,f16c,bmi2,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")
void llp_register_avx512vnni(llp_kernels *k) {
    (void)k;
}
LLP_TARGET_END
#else
void llp_register_avx512(llp_kernels *k) { (void)k; }
void llp_register_avx512vnni(llp_kernels *k) { (void)k; }
#endif
