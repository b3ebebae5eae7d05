/* AVX2 + FMA + F16C kernels: same contract as the scalar twins in ref/dot.c. */
#include "../include/kernels.h"

#if defined(__x86_64__)
#include "../include/target.h"
LLP_TARGET("avx2,fma,f16c,bmi2")
#include <immintrin.h>

void llp_register_avx2(llp_kernels *k) {
    (void)k;
}
LLP_TARGET_END
#else
void llp_register_avx2(llp_kernels *k) { (void)k; }
#endif
