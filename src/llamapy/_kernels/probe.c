/* Memory read bandwidth probe: the yardstick the matrix-vector benchmark is measured against. */
#include <stddef.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Read n bytes (n a multiple of 64) with n_threads threads, each streaming its own contiguous part,
 * as the matrix-vector product does; returns a checksum so the reads cannot be optimised away. */
uint64_t llp_read_bytes(const void *p, size_t n, int n_threads) {
    const uint64_t *w = (const uint64_t *)p;
    const int64_t words = (int64_t)(n / 8);
    uint64_t total = 0;
    if (n_threads < 1) n_threads = 1;
#pragma omp parallel num_threads(n_threads) reduction(^ : total)
    {
#ifdef _OPENMP
        const int ith = omp_get_thread_num(), nth = omp_get_num_threads();
#else
        const int ith = 0, nth = 1;
#endif
        const int64_t i0 = words * ith / nth / 8 * 8, i1 = ith == nth - 1 ? words : words * (ith + 1) / nth / 8 * 8;
        uint64_t acc[8] = {0};
        for (int64_t i = i0; i < i1; i += 8)
            for (int j = 0; j < 8; j++) acc[j] ^= w[i + j];
        for (int j = 0; j < 8; j++) total ^= acc[j];
    }
    return total;
}
