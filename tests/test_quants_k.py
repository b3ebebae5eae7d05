"""K-quant reference kernels (q2_K .. q6_K): quantized bytes equal to ggml's, dequantized floats equal to
the gguf package's numpy reference, and sane reconstruction error."""
from __future__ import annotations

import hashlib
from pathlib import Path

import gguf
import numpy as np
import pytest

from llamapy._kernels import _ops
from llamapy.gguf import GGML_BLOCK_SIZES, GGMLType, GGUFReader
from llamapy.models import model_path

K_TYPES = (GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K)
VECTORS = Path(__file__).parent / "data" / "quant_vectors"

# Byte offsets of the fp16 super-block scales (d, and dmin where the type has one) inside a block.
FP16_FIELDS = {
    GGMLType.Q2_K: (80, 82),
    GGMLType.Q3_K: (108,),
    GGMLType.Q4_K: (0, 2),
    GGMLType.Q5_K: (0, 2),
    GGMLType.Q6_K: (208,),
}

# Upper bounds on the relative RMS error of quantize -> dequantize on standard normal data; the
# measured values are about 0.297, 0.151, 0.0716, 0.0362, 0.0178.
GAUSSIAN_REL_RMSE = {
    GGMLType.Q2_K: 0.31,
    GGMLType.Q3_K: 0.16,
    GGMLType.Q4_K: 0.076,
    GGMLType.Q5_K: 0.038,
    GGMLType.Q6_K: 0.019,
}

# sha256 (first 16 hex digits) of the bytes ggml_quantize_chunk (llama-cpp-python 0.3.36, imatrix NULL)
# makes of each stress_inputs() case: 256 super-blocks per case, enough to catch a slip that changes
# one block in a hundred. Regenerate with: PYTHONPATH=src python tests/test_quants_k.py path/to/libggml-base.so
# (libggml-base.so from llama_cpp/lib of a llama-cpp-python install).
GGML_DIGESTS = {
    GGMLType.Q2_K: {
        "bell": "ea3ba0803b6dd175",
        "uniform": "80d4d3ba08afb59a",
        "positive": "d5554d59e04b09f8",
        "negative": "69503078d6a69e66",
        "heavy_tail": "1931db4e7ce2f8d9",
        "scaled": "8ea96f2eea2802b8",
        "sparse": "e8250a2e6911517f",
        "grid": "0ad61a1e2cdee2bd",
    },
    GGMLType.Q3_K: {
        "bell": "fa24edc2ab9b2e5d",
        "uniform": "c4b103be56f005c8",
        "positive": "8fe43c0d3719e79e",
        "negative": "21d2cc83405bedb9",
        "heavy_tail": "c46c553aa14989ad",
        "scaled": "bc56a02d630b03aa",
        "sparse": "848ea9cb5262f159",
        "grid": "d2e47f14ed7748e7",
    },
    GGMLType.Q4_K: {
        "bell": "098835b670aa9bd5",
        "uniform": "a47230dba07fe681",
        "positive": "fc380d60358a9eda",
        "negative": "b84df3a219189d44",
        "heavy_tail": "b3239f8b06355ab7",
        "scaled": "5c4107daf5deb966",
        "sparse": "e868d7302d30f147",
        "grid": "98800605876745df",
    },
    GGMLType.Q5_K: {
        "bell": "81bf7f86c594210d",
        "uniform": "bd2bf35e52165cf0",
        "positive": "0e2c14c0d0e40e97",
        "negative": "a02b06377a8aeece",
        "heavy_tail": "dbd1ff0e5b618e28",
        "scaled": "9316603daf7f0481",
        "sparse": "a75e60f80aa855b6",
        "grid": "06244c9d3abff582",
    },
    GGMLType.Q6_K: {
        "bell": "dcc362324aa5e28c",
        "uniform": "249ab7ded484234d",
        "positive": "ab1d333de2a936c5",
        "negative": "cde953ef31a59893",
        "heavy_tail": "79f9900301d3f2f1",
        "scaled": "c08576c7a3e25c4a",
        "sparse": "134991ce01f29398",
        "grid": "6de25d413cdbe57c",
    },
}

MAX_MODEL_ROWS = 256  # rows sampled from each model tensor: keeps the test well under 30 s


def quantize(t: GGMLType, x: np.ndarray) -> np.ndarray:
    """Rows of float32 -> rows of block bytes, through the scalar reference quantizer."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    block, size = GGML_BLOCK_SIZES[t]
    out = np.empty((x.shape[0], x.shape[1] // block * size), dtype=np.uint8)
    _ops.quantize(int(t), x.reshape(-1), out.reshape(-1))
    return out


def dequantize(t: GGMLType, q: np.ndarray) -> np.ndarray:
    """Rows of block bytes -> rows of float32."""
    q = np.ascontiguousarray(q, dtype=np.uint8)
    block, size = GGML_BLOCK_SIZES[t]
    out = np.empty((q.shape[0], q.shape[1] // size * block), dtype=np.float32)
    _ops.dequantize(int(t), q.reshape(-1), out.reshape(-1))
    return out


def gguf_dequantize(t: GGMLType, q: np.ndarray) -> np.ndarray:
    """llama.cpp's numpy reference dequantizer, as float32 rows."""
    return gguf.quants.dequantize(q, gguf.GGMLQuantizationType(int(t))).astype(np.float32)


def assert_bits_equal(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    """Equal as float32 bit patterns (so -0.0 vs 0.0 counts), with the first differences in the message."""
    a = np.ascontiguousarray(actual, dtype=np.float32).reshape(-1).view(np.uint32)
    e = np.ascontiguousarray(expected, dtype=np.float32).reshape(-1).view(np.uint32)
    assert a.shape == e.shape, what
    bad = np.nonzero(a != e)[0]
    assert bad.size == 0, (f"{what}: {bad.size} of {a.size} values differ, first at {bad[:5].tolist()}: "
                           f"{a.view(np.float32)[bad[:5]].tolist()} vs {e.view(np.float32)[bad[:5]].tolist()}")


def splitmix_uniform(seed: int, shape: tuple) -> np.ndarray:
    """Uniform [0, 1) float64 from splitmix64 over a counter: integer arithmetic only, so the same on
    every machine and numpy version (a seeded numpy Generator promises no stable stream)."""
    n = int(np.prod(shape))
    z = (np.arange(n, dtype=np.uint64) + np.uint64(seed * n)) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53).reshape(shape)


def stress_inputs(rows: int = 64, n: int = 1024) -> dict[str, np.ndarray]:
    """Float32 rows of several shapes, built with correctly rounded operations only (no log/exp/pow, whose
    last bit varies between libraries), so the exact inputs behind GGML_DIGESTS are reproducible."""
    shape = (rows, n)
    u = [splitmix_uniform(seed, shape) for seed in range(6)]
    bell = u[0] + u[1] + u[2] + u[3] - 2.0  # Irwin-Hall: close to a normal
    exponent = np.floor(u[4][:, :1] * 61).astype(np.int32) - 40  # whole rows scaled by 2^-40 .. 2^20
    cases = {
        "bell": bell,
        "uniform": 2.0 * u[0] - 1.0,
        "positive": u[1],  # all positive: the mins of q2_K/q4_K/q5_K clamp to zero
        "negative": -u[2],
        "heavy_tail": (u[0] - 0.5) / (u[1] + 1e-3),
        "scaled": np.ldexp(bell, exponent),
        "sparse": np.where(u[5] < 0.3, 0.0, bell),
        "grid": np.round(8.0 * u[3] - 4.0) * 0.25,  # few distinct values: many exact rounding ties
    }
    return {name: x.astype(np.float32) for name, x in cases.items()}


def digest(q: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(q).tobytes()).hexdigest()[:16]


def load_vectors(t: GGMLType):
    data = np.load(VECTORS / f"{t.name.replace('Q', 'q')}.npz")  # q4_K.npz: ggml's type name
    assert int(data["type_id"]) == int(t)
    return data["x"], data["q"], data["kinds"]


@pytest.mark.parametrize("t", K_TYPES, ids=lambda t: t.name)
def test_quantize_matches_ggml_bytes(t):
    x, expected, kinds = load_vectors(t)
    got = quantize(t, x)
    assert got.shape == expected.shape
    bad_rows = [str(kinds[r]) for r in range(len(x)) if not np.array_equal(got[r], expected[r])]
    assert not bad_rows, f"{t.name}: bytes differ from ggml's for rows {bad_rows}"


@pytest.mark.parametrize("t", K_TYPES, ids=lambda t: t.name)
def test_quantize_matches_ggml_digests(t):
    bad = [name for name, x in stress_inputs().items() if digest(quantize(t, x)) != GGML_DIGESTS[t][name]]
    assert not bad, f"{t.name}: bytes differ from ggml's for the stress inputs {bad}"


@pytest.mark.parametrize("t", K_TYPES, ids=lambda t: t.name)
def test_dequantize_ggml_bytes_matches_gguf(t):
    _, q, _ = load_vectors(t)
    assert_bits_equal(dequantize(t, q), gguf_dequantize(t, q), f"{t.name} vectors")


@pytest.mark.parametrize("t", K_TYPES, ids=lambda t: t.name)
def test_dequantize_random_blocks_matches_gguf(t):
    """Random quant and packed-scale bytes, with random finite fp16 super-block scales (zeros, subnormals,
    negatives and +-65504 included)."""
    rng = np.random.default_rng(1000 + int(t))
    block, size = GGML_BLOCK_SIZES[t]
    n_blocks = 512
    q = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    for offset in FP16_FIELDS[t]:
        half = rng.integers(0, 1 << 16, n_blocks, dtype=np.uint16)
        half[(half & 0x7C00) == 0x7C00] &= 0xBFFF  # inf/nan exponent -> a finite one
        half[:8] = [0x0000, 0x8000, 0x0001, 0x03FF, 0x3C00, 0xBC00, 0x7BFF, 0xFBFF]  # zeros, subnormals, ±1, ±max
        q[:, offset:offset + 2] = half.view(np.uint8).reshape(n_blocks, 2)
    q = q.reshape(16, -1)  # 16 rows of 32 blocks
    assert_bits_equal(dequantize(t, q), gguf_dequantize(t, q), f"{t.name} random blocks")


def test_dequantize_gemma_k_tensors_match_gguf():
    """Every Q4_K and Q6_K tensor of the real Gemma 3 270M Q4_K_M model (rows sampled)."""
    reader = GGUFReader(model_path("gemma3"))  # ours: gguf's reader takes ~15 s on this file
    rng = np.random.default_rng(7)
    seen = {GGMLType.Q4_K: 0, GGMLType.Q6_K: 0}
    for tensor in reader.tensors:
        t = tensor.type
        if t not in seen:
            continue
        raw = np.asarray(tensor.data)
        if raw.shape[0] > MAX_MODEL_ROWS:
            raw = raw[np.sort(rng.choice(raw.shape[0], MAX_MODEL_ROWS, replace=False))]
        assert_bits_equal(dequantize(t, raw), gguf_dequantize(t, raw), tensor.name)
        seen[t] += 1
    assert seen[GGMLType.Q4_K] > 0 and seen[GGMLType.Q6_K] > 0, seen


@pytest.mark.parametrize("t", K_TYPES, ids=lambda t: t.name)
def test_gaussian_round_trip_error(t):
    x = np.random.default_rng(42).standard_normal((64, 2048)).astype(np.float32)
    y = dequantize(t, quantize(t, x))
    rel_rmse = float(np.sqrt(np.mean((x - y) ** 2) / np.mean(x ** 2)))
    assert rel_rmse < GAUSSIAN_REL_RMSE[t], f"{t.name}: relative RMSE {rel_rmse:.4f}"


@pytest.mark.parametrize("t", K_TYPES, ids=lambda t: t.name)
def test_zero_rows_quantize_to_zero_bytes(t):
    x = np.zeros((2, 512), dtype=np.float32)
    q = quantize(t, x)
    assert not q.any()
    assert np.all(dequantize(t, q) == 0)


if __name__ == "__main__":
    # Print GGML_DIGESTS from llama.cpp's own quantizers: python tests/test_quants_k.py path/to/libggml-base.so
    import ctypes
    import sys

    ggml = ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)
    ggml.ggml_quantize_chunk.restype = ctypes.c_size_t
    ggml.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                         ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    inputs = stress_inputs()
    print("GGML_DIGESTS = {")
    for t in K_TYPES:
        print(f"    GGMLType.{t.name}: {{")
        for name, x in inputs.items():
            block, size = GGML_BLOCK_SIZES[t]
            q = np.zeros((x.shape[0], x.shape[1] // block * size), dtype=np.uint8)
            ggml.ggml_quantize_chunk(int(t), x.ctypes.data, q.ctypes.data, 0, x.shape[0], x.shape[1], None)
            print(f'        "{name}": "{digest(q)}",')
        print("    },")
    print("}")
