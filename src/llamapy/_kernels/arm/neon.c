/* NEON kernels (AArch64 baseline): same contract as the scalar twins in ref/dot.c. */
#include "../include/kernels.h"

#if defined(__aarch64__)
#include <arm_neon.h>

void llp_register_neon(llp_kernels *k) {
    (void)k;
}
#else
void llp_register_neon(llp_kernels *k) { (void)k; }
#endif
