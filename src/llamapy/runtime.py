"""What the kernels found on this machine and chose: the system_info line, threads, versions."""
from __future__ import annotations

import os

from llamapy import __version__
from llamapy._kernels import _ops
from llamapy.gguf.constants import KERNEL_TYPES, type_name

ISA_LABELS = {"scalar": "scalar", "avx2": "AVX2", "avx512": "AVX-512", "avx512vnni": "AVX-512 VNNI", "neon": "NEON"}


def effective_n_threads(n_threads: int | None = None) -> int:
    """Threads to use: n_threads if positive, else every core this process may run on."""
    if n_threads is not None and n_threads > 0:
        return n_threads
    if n_threads is not None and n_threads < 0:
        raise ValueError(f"thread count must be positive, got {n_threads}")
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def backend_label() -> str:
    """The kernel path in use, as llama-bench's backend column would name it (`CPU AVX-512 VNNI`)."""
    return f"CPU {ISA_LABELS[_ops.current_isa()]}"


def system_info() -> str:
    """One line like llama.cpp's system_info: the CPU features found, then the kernel path chosen."""
    features = " | ".join(f"{name} = {int(on)}" for name, on in _ops.cpu_features().items())
    return f"CPU : {features} | KERNELS = {_ops.current_isa()} (available: {', '.join(_ops.available_isas())})"


def runtime_report() -> dict:
    return {
        "version": __version__,
        "cpu_features": _ops.cpu_features(),
        "available": _ops.available_isas(),
        "best": _ops.best_isa(),
        "current": _ops.current_isa(),
        "kernels": {type_name(t): _ops.kernel_impls().get(type_name(t), "-") for t in KERNEL_TYPES if type_name(t) != "q8_K"},
        "threads": effective_n_threads(),
    }
