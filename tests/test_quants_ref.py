"""The scalar reference (de)quantizers against llama.cpp's bytes and gguf-py's numpy reference.

- tests/data/quant_vectors/*.npz hold float rows and the bytes ggml_quantize_chunk made of them
  (scripts/make_quant_vectors.py); our quantizers must reproduce them byte for byte.
- gguf.quants (llama.cpp's numpy implementation) is the oracle for random data and real model tensors.
"""
from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from llamapy._kernels import _ops
from llamapy.gguf.constants import GGMLType
from llamapy.models import model_path

VECTORS = Path(__file__).parent / "data" / "quant_vectors"

# Types whose quantizer lives in ref/quants.c (the K-quants are in ref/quants_k.c, tested elsewhere).
OWNED = ["f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q8_1", "q8_K", "iq4_nl", "iq4_xs",
         "tq1_0", "tq2_0"]

# Types gguf-py can quantize (besides F32), all following ggml's *_ref rounding.
GGUF_QUANTIZABLE = [GGMLType.F16, GGMLType.BF16, GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1,
                    GGMLType.Q8_0, GGMLType.TQ1_0, GGMLType.TQ2_0]

# Byte offsets of the fp16 scale fields in each block: random bytes there could be inf/nan.
FP16_FIELDS = {
    GGMLType.Q4_0: (0,), GGMLType.Q4_1: (0, 2), GGMLType.Q5_0: (0,), GGMLType.Q5_1: (0, 2),
    GGMLType.Q8_0: (0,), GGMLType.Q8_1: (0, 2), GGMLType.Q2_K: (80, 82), GGMLType.Q3_K: (108,),
    GGMLType.Q4_K: (0, 2), GGMLType.Q5_K: (0, 2), GGMLType.Q6_K: (208,), GGMLType.IQ4_NL: (0,),
    GGMLType.IQ4_XS: (0,), GGMLType.TQ1_0: (52,), GGMLType.TQ2_0: (64,),
}

DEQUANT_TYPES = [GGMLType.F32, GGMLType.F16, GGMLType.BF16, GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0,
                 GGMLType.Q5_1, GGMLType.Q8_0, GGMLType.Q8_1, GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K,
                 GGMLType.Q5_K, GGMLType.Q6_K, GGMLType.Q8_K, GGMLType.IQ4_NL, GGMLType.IQ4_XS, GGMLType.TQ1_0,
                 GGMLType.TQ2_0]


def quantize(t: int, x: np.ndarray) -> np.ndarray:
    bs, ts, _ = _ops.block_info(t)
    out = np.zeros(x.size // bs * ts, dtype=np.uint8)
    _ops.quantize(t, np.ascontiguousarray(x, dtype=np.float32).reshape(-1), out)
    return out


def dequantize(t: int, q: np.ndarray) -> np.ndarray:
    bs, ts, _ = _ops.block_info(t)
    out = np.empty(q.size // ts * bs, dtype=np.float32)
    _ops.dequantize(t, np.ascontiguousarray(q, dtype=np.uint8).reshape(-1), out)
    return out


def bad_blocks(t: int, ours: np.ndarray, ref: np.ndarray) -> int:
    ts = _ops.block_info(t)[1]
    return int((ours.reshape(-1, ts) != ref.reshape(-1, ts)).any(axis=1).sum())


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Exactly equal values (NaN equal to NaN; +0 and -0 told apart)."""
    a, b = np.asarray(a, np.float32).reshape(-1), np.asarray(b, np.float32).reshape(-1)
    return a.shape == b.shape and bool(np.all((a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))))


def test_vectors_cover_every_owned_type():
    assert {p.stem for p in VECTORS.glob("*.npz")} >= set(OWNED)


@pytest.mark.parametrize("name", OWNED)
def test_quantize_matches_ggml_bytes(name):
    z = np.load(VECTORS / f"{name}.npz")
    t = int(z["type_id"])
    assert _ops.block_info(t)  # the id in the file is one the kernels know
    failures = []
    for kind, x, ref in zip(z["kinds"], z["x"], z["q"]):
        n = bad_blocks(t, quantize(t, x), ref)
        if n:
            failures.append(f"{kind}: {n} of {ref.size // _ops.block_info(t)[1]} blocks differ")
    assert not failures, f"{name} vs {z['ggml_version']}: " + "; ".join(failures)
    # the rows are independent: the whole matrix at once gives the same bytes
    assert bad_blocks(t, quantize(t, z["x"]), z["q"]) == 0


def random_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """Normal, heavy-tailed and uniform data at varied scales, n elements per row."""
    scales = np.array([1e-3, 1.0, 30.0, 1.0])[:, None]
    return np.concatenate([rng.standard_normal((4, n)) * scales, rng.standard_t(2, (2, n)),
                           rng.uniform(-1, 1, (2, n))]).astype(np.float32)


@pytest.mark.parametrize("t", GGUF_QUANTIZABLE, ids=lambda t: t.name)
def test_quantize_and_dequantize_match_gguf(t):
    rng = np.random.default_rng(int(t))
    bs = _ops.block_info(t)[0]
    for n in sorted({max(bs, 32), 256, 256 * 3, 32 * 37 if bs == 32 else 256 * 5}):
        x = random_rows(rng, n)
        ref = gguf.quants.quantize(x, gguf.GGMLQuantizationType(int(t))).view(np.uint8).reshape(-1)
        ours = quantize(t, x)
        assert bad_blocks(t, ours, ref) == 0, f"n={n}: {bad_blocks(t, ours, ref)} blocks differ"
        assert same(dequantize(t, ours), gguf.quants.dequantize(ref.reshape(x.shape[0], -1),
                                                                gguf.GGMLQuantizationType(int(t))))


def gguf_dequantize(t: int, q: np.ndarray) -> np.ndarray:
    """gguf-py's dequantize; numpy formulas for the two activation formats gguf-py lacks."""
    if t == GGMLType.Q8_1:
        b = q.reshape(-1, 36)
        return b[:, 0:2].copy().view(np.float16).astype(np.float32) * b[:, 4:].view(np.int8).astype(np.float32)
    if t == GGMLType.Q8_K:
        b = q.reshape(-1, 292)
        return b[:, 0:4].copy().view(np.float32) * b[:, 4:260].view(np.int8).astype(np.float32)
    return gguf.quants.dequantize(q.reshape(1, -1), gguf.GGMLQuantizationType(int(t)))


def random_blocks(rng: np.random.Generator, t: int, nblocks: int) -> np.ndarray:
    """Random block bytes whose scale fields hold finite values."""
    ts = _ops.block_info(t)[1]
    b = rng.integers(0, 256, (nblocks, ts), dtype=np.uint8)
    for off in FP16_FIELDS.get(t, ()):
        b[:, off:off + 2] = (rng.standard_normal((nblocks, 1)) * 0.05).astype(np.float16).view(np.uint8)
    if t == GGMLType.Q8_K:
        b[:, 0:4] = (rng.standard_normal((nblocks, 1)) * 0.05).astype(np.float32).view(np.uint8)
    return b.reshape(-1)


@pytest.mark.parametrize("t", DEQUANT_TYPES, ids=lambda t: t.name)
def test_dequantize_random_blocks_matches_gguf(t):
    rng = np.random.default_rng(1000 + int(t))
    bs = _ops.block_info(t)[0]
    nblocks = 4096 // bs if bs > 1 else 4096  # f32/f16/bf16: every bit pattern class, nan and inf too
    q = random_blocks(rng, t, nblocks)
    assert same(dequantize(t, q), gguf_dequantize(t, q))


MODEL_TYPES = ["F32", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q6_K"]  # what the two reference models hold


@pytest.fixture(scope="module")
def model_tensors():
    return [(model, tensor) for model in ("smollm2", "gemma3")
            for tensor in gguf.GGUFReader(model_path(model)).tensors]


def test_models_hold_the_expected_types(model_tensors):
    assert {tensor.tensor_type.name for _, tensor in model_tensors} == set(MODEL_TYPES)


@pytest.mark.parametrize("type_name", MODEL_TYPES)
def test_dequantize_real_model_tensors_match_gguf(model_tensors, type_name):
    """Every tensor of that type in both reference models; every 64th row of the token embeddings."""
    for model, tensor in model_tensors:
        if tensor.tensor_type.name != type_name:
            continue
        data = np.asarray(tensor.data)
        if data.ndim == 2 and data.shape[0] > 16384:
            data = data[::64]
        data = np.ascontiguousarray(data)
        ref = gguf.quants.dequantize(data, tensor.tensor_type)
        assert same(dequantize(int(tensor.tensor_type), data.view(np.uint8)), ref), f"{model} {tensor.name}"
