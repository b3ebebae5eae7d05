/* CPU feature detection and the per-ISA kernel tables, built once on first use. */
#include <stdlib.h>
#include <string.h>
#include "include/kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#define LLP_X86 1
#include <cpuid.h>
#elif defined(__aarch64__)
#define LLP_ARM64 1
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#endif

static llp_cpu_features cpu;
static llp_kernels tables[LLP_ISA_COUNT];
static int supported[LLP_ISA_COUNT];
static int initialized, detected;

#if LLP_X86
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void detect_x86(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    cpu.sse3 = (c >> 0) & 1;
    cpu.ssse3 = (c >> 9) & 1;
    cpu.fma = (c >> 12) & 1;
    cpu.f16c = (c >> 29) & 1;
    int osxsave = (c >> 27) & 1, avx_hw = (c >> 28) & 1;
    /* The OS must save the wide registers on context switch, or using them corrupts state. */
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    int os_avx = (xcr0 & 0x6) == 0x6;
    int os_avx512 = (xcr0 & 0xe6) == 0xe6;
    cpu.avx = avx_hw && os_avx;
    if (!cpu.avx) cpu.fma = cpu.f16c = 0;
    if (__get_cpuid_max(0, NULL) < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    cpu.avx2 = cpu.avx && ((b >> 5) & 1);
    if (os_avx512) {
        cpu.avx512f = (b >> 16) & 1;
        cpu.avx512dq = cpu.avx512f && ((b >> 17) & 1);
        cpu.avx512bw = cpu.avx512f && ((b >> 30) & 1);
        cpu.avx512vl = cpu.avx512f && ((b >> 31) & 1);
        cpu.avx512vnni = cpu.avx512f && ((c >> 11) & 1);
    }
    __cpuid_count(7, 1, a, b, c, d);
    cpu.avx_vnni = cpu.avx2 && ((a >> 4) & 1);
    cpu.avx512bf16 = cpu.avx512f && os_avx512 && ((a >> 5) & 1);
}
#endif

static void detect(void) {
    if (detected) return;
#if LLP_X86
    detect_x86();
#elif LLP_ARM64
    cpu.neon = 1;
#if defined(__linux__)
    cpu.dotprod = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
    int has = 0;
    size_t len = sizeof(has);
    cpu.dotprod = sysctlbyname("hw.optional.arm.FEAT_DotProd", &has, &len, NULL, 0) == 0 && has;
#endif
#endif
    detected = 1;
}

static void init(void) {
    if (initialized) return;
    detect();
    supported[LLP_ISA_SCALAR] = 1;
    supported[LLP_ISA_AVX2] = cpu.avx2 && cpu.fma && cpu.f16c;
    supported[LLP_ISA_AVX512] = supported[LLP_ISA_AVX2] && cpu.avx512f && cpu.avx512bw && cpu.avx512vl && cpu.avx512dq;
    supported[LLP_ISA_AVX512VNNI] = supported[LLP_ISA_AVX512] && cpu.avx512vnni;
    supported[LLP_ISA_NEON] = cpu.neon;

    /* Each table starts from the one below it, so missing kernels fall back down the chain. */
    memset(&tables[LLP_ISA_SCALAR], 0, sizeof(llp_kernels));
    llp_register_scalar(&tables[LLP_ISA_SCALAR]);
    tables[LLP_ISA_AVX2] = tables[LLP_ISA_SCALAR];
    if (supported[LLP_ISA_AVX2]) llp_register_avx2(&tables[LLP_ISA_AVX2]);
    tables[LLP_ISA_AVX512] = tables[LLP_ISA_AVX2];
    if (supported[LLP_ISA_AVX512]) llp_register_avx512(&tables[LLP_ISA_AVX512]);
    tables[LLP_ISA_AVX512VNNI] = tables[LLP_ISA_AVX512];
    if (supported[LLP_ISA_AVX512VNNI]) llp_register_avx512vnni(&tables[LLP_ISA_AVX512VNNI]);
    tables[LLP_ISA_NEON] = tables[LLP_ISA_SCALAR];
    if (supported[LLP_ISA_NEON]) llp_register_neon(&tables[LLP_ISA_NEON]);
    initialized = 1;
}

/* Detection only: register functions may ask for optional features (e.g. AVX512_BF16) while tables build. */
const llp_cpu_features *llp_cpu(void) { detect(); return &cpu; }

int llp_isa_supported(llp_isa isa) { init(); return isa >= 0 && isa < LLP_ISA_COUNT && supported[isa]; }

const char *llp_isa_name(llp_isa isa) {
    static const char *names[LLP_ISA_COUNT] = {"scalar", "avx2", "avx512", "avx512vnni", "neon"};
    return isa >= 0 && isa < LLP_ISA_COUNT ? names[isa] : "?";
}

const llp_kernels *llp_kernels_for(llp_isa isa) {
    init();
    return llp_isa_supported(isa) ? &tables[isa] : NULL;
}

llp_isa llp_best_isa(void) {
    init();
    for (int isa = LLP_ISA_COUNT - 1; isa > 0; isa--)
        if (supported[isa]) return (llp_isa)isa;
    return LLP_ISA_SCALAR;
}
