"""Build the Cython + C kernel extension.

One extension holds every ISA's kernels: each x86 source compiles its own target with pragmas
(include/target.h), so the baseline stays plain x86-64 and dispatch.c picks a path at run time.
No -march=native: a wheel built here runs on any x86-64.
"""
import os
import sys

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

KERNELS = "src/llamapy/_kernels"
C_SOURCES = [
    "types.c", "dispatch.c", "matmul.c", "probe.c", "quantize.c",
    "ref/quants.c", "ref/quants_k.c", "ref/dot.c",
    "x86/avx2.c", "x86/avx512.c", "arm/neon.c", "ops.c",
]

def compile_args():
    if sys.platform == "win32":
        return ["/O2", "/openmp"], []
    args = ["-O3", "-std=gnu11", "-ffp-contract=off", "-Wno-unused-function", "-fno-strict-aliasing"]
    link = []
    if sys.platform != "darwin" and os.environ.get("LLAMAPY_NO_OPENMP") != "1":
        args.append("-fopenmp")
        link.append("-fopenmp")
    if os.environ.get("LLAMAPY_SANITIZE"):
        args += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1"]
        link += ["-fsanitize=address,undefined"]
    return args, link

cflags, ldflags = compile_args()

ext = Extension(
    "llamapy._kernels._ops",
    sources=[f"{KERNELS}/_ops.pyx"] + [f"{KERNELS}/{s}" for s in C_SOURCES],
    include_dirs=[KERNELS, numpy.get_include()],
    extra_compile_args=cflags,
    extra_link_args=ldflags,
    depends=[f"{KERNELS}/include/{h}" for h in ("blocks.h", "kernels.h", "target.h", "quantize.h", "ops.h")],
)

setup(ext_modules=cythonize([ext], compiler_directives={"language_level": 3}))
