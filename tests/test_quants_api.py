"""llamapy.quants: the numpy-facing quantize/dequantize, threaded, shaped like GGUF tensors."""
from __future__ import annotations

import numpy as np
import pytest

from llamapy import quants
from llamapy.gguf.constants import GGML_BLOCK_SIZES, KERNEL_TYPES, GGMLType

QUANTIZABLE = [t for t in KERNEL_TYPES if t not in (GGMLType.F32,)]


@pytest.mark.parametrize("t", QUANTIZABLE, ids=lambda t: t.name)
def test_threads_do_not_change_bytes_or_values(t):
    x = np.random.default_rng(int(t)).standard_normal((37, 512), dtype=np.float32)
    one = quants.quantize(x, t, n_threads=1)
    two = quants.quantize(x, t, n_threads=2)
    assert one.tobytes() == two.tobytes()
    block, size = GGML_BLOCK_SIZES[t]
    assert one.shape == (37, 512 // block * size)
    assert np.array_equal(quants.dequantize(one, t, n_threads=1), quants.dequantize(one, t, n_threads=2))
    assert quants.dequantize(one, t).shape == x.shape


def test_rows_are_quantized_independently():
    x = np.random.default_rng(0).standard_normal((3, 256), dtype=np.float32)
    whole = quants.quantize(x, GGMLType.Q4_K)
    for r in range(3):
        assert whole[r].tobytes() == quants.quantize(x[r], GGMLType.Q4_K).tobytes()


def test_large_tensor_dequantizes_across_chunks():
    # more blocks than one thread's work item, so chunk boundaries are crossed
    x = np.random.default_rng(1).standard_normal((64, 4096), dtype=np.float32)
    q = quants.quantize(x, GGMLType.Q8_0, n_threads=2)
    d = quants.dequantize(q, GGMLType.Q8_0, n_threads=2)
    assert np.array_equal(d, quants.dequantize(q, GGMLType.Q8_0, n_threads=1))
    assert np.abs(d - x).max() < np.abs(x).max() / 127  # half a step of the coarsest block, with room


def test_empty_and_bad_shapes():
    assert quants.quantize(np.zeros((0, 64), np.float32), GGMLType.Q8_0).shape == (0, 68)
    with pytest.raises(ValueError, match="not a multiple of its block of 256"):
        quants.quantize(np.zeros((2, 100), np.float32), GGMLType.Q4_K)
    with pytest.raises(ValueError, match="not whole Q4_0 blocks"):
        quants.dequantize(np.zeros((2, 19), np.uint8), GGMLType.Q4_0)
