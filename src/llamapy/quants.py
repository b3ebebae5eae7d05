"""Quantize and dequantize numpy arrays in any GGML tensor format, through the C kernels.

Shapes follow numpy order (the last axis is the row, GGUF's ne0). Quantized data is a uint8 array
of shape (*rows, row_bytes), the same layout GGUF files and the `gguf` package use.
"""
from __future__ import annotations

import numpy as np

from llamapy._kernels import _ops
from llamapy.gguf.constants import GGML_BLOCK_SIZES, GGMLType

FLOAT_VIEWS = {GGMLType.F32: np.float32, GGMLType.F16: np.float16}


def _check_row(t: GGMLType, n: int) -> tuple[int, int]:
    block, size = GGML_BLOCK_SIZES[t]
    if n % block:
        raise ValueError(f"rows of {n} elements cannot be stored as {t.name}: not a multiple of its block of {block}")
    return block, size


def quantize(x: np.ndarray, qtype: int, n_threads: int = 1) -> np.ndarray:
    """x (..., n) float -> (..., n // block * block_bytes) uint8, bit-exact with ggml's reference quantizers.

    Rows are shared among n_threads threads; the bytes do not depend on the thread count."""
    t = GGMLType(qtype)
    src = np.ascontiguousarray(x, dtype=np.float32)
    n = src.shape[-1] if src.ndim else 1
    block, size = _check_row(t, n)
    out = np.empty(src.shape[:-1] + (n // block * size,), dtype=np.uint8)
    _ops.quantize(int(t), src.reshape(-1), out.reshape(-1), n, n_threads)
    return out


def dequantize(data: np.ndarray, qtype: int, n_threads: int = 1) -> np.ndarray:
    """(..., row_bytes) uint8 of type qtype -> (..., n) float32, split among n_threads threads."""
    t = GGMLType(qtype)
    raw = np.ascontiguousarray(data)
    if t in FLOAT_VIEWS and raw.dtype != np.uint8:
        return raw.astype(np.float32)
    raw = raw.view(np.uint8)
    block, size = GGML_BLOCK_SIZES[t]
    if raw.shape[-1] % size:
        raise ValueError(f"rows of {raw.shape[-1]} bytes are not whole {t.name} blocks of {size} bytes")
    out = np.empty(raw.shape[:-1] + (raw.shape[-1] // size * block,), dtype=np.float32)
    _ops.dequantize(int(t), raw.reshape(-1), out.reshape(-1), n_threads)
    return out
