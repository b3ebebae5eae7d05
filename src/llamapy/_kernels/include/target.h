/* Compile the rest of a source file for one x86 target, whatever the baseline flags are.
 * Kernels in that file may only run after dispatch.c has checked the CPU supports the target. */
#ifndef LLP_TARGET_H
#define LLP_TARGET_H
#define LLP_STR(x) #x
#if defined(__clang__)
#define LLP_TARGET(t) _Pragma(LLP_STR(clang attribute push(__attribute__((target(t))), apply_to = function)))
#define LLP_TARGET_END _Pragma("clang attribute pop")
#elif defined(__GNUC__)
#define LLP_TARGET(t) _Pragma("GCC push_options") _Pragma(LLP_STR(GCC target(t)))
#define LLP_TARGET_END _Pragma("GCC pop_options")
#endif
#endif
