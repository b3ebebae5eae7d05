"""Shared test data for the kernel tests: random valid blocks of every type, numpy decoders for the
activation formats, real weight rows from the cached models, and a float64 reference dot product.

Everything here is independent of the C code under test: blocks are built byte by byte with numpy,
weights are decoded with the `gguf` package, activations with the small decoders below.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from gguf import GGMLQuantizationType
from gguf import quants as gguf_quants

from llamapy._kernels import _ops
from llamapy.gguf.constants import GGML_BLOCK_SIZES, KERNEL_TYPES, GGMLType, type_name
from llamapy.gguf.reader import GGUFReader
from llamapy.models import model_path

T = GGMLType

# Weight types that have a dot product (q8_K is an activation format only).
DOT_TYPES = tuple(t for t in KERNEL_TYPES if t != T.Q8_K)
FLOAT_TYPES = (T.F32, T.F16, T.BF16)

# Byte offsets of the fp16 scale fields in each block (see include/blocks.h).
FP16_FIELDS = {
    T.Q4_0: (0,), T.Q4_1: (0, 2), T.Q5_0: (0,), T.Q5_1: (0, 2), T.Q8_0: (0,),
    T.Q2_K: (80, 82), T.Q3_K: (108,), T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,),
    T.IQ4_NL: (0,), T.IQ4_XS: (0,), T.TQ1_0: (52,), T.TQ2_0: (64,),
}
# Offsets of the (d, min) fp16 pair of the types whose values are d * q + min-term.
SCALE_MIN_FIELDS = {T.Q4_1: (0, 2), T.Q5_1: (0, 2), T.Q2_K: (80, 82), T.Q4_K: (0, 2), T.Q5_K: (0, 2)}

# fp16 bit patterns worth meeting as a block scale: zeros, subnormals, the smallest normal.
SPECIAL_FP16 = np.array([0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x8201], dtype=np.uint16)
# Share of blocks whose scales are drawn from SPECIAL_FP16.
SPECIAL_SCALE_SHARE = 1 / 8

# Quantizers never emit -128 (they round within +-127), and SIMD kernels may rely on it (sign tricks).
INT8_LIMIT = 127


def name(t: int) -> str:
    return type_name(t)


def block_elems(t: int) -> int:
    return GGML_BLOCK_SIZES[T(t)][0]


def block_bytes(t: int) -> int:
    return GGML_BLOCK_SIZES[T(t)][1]


def vec_dot_type(t: int) -> int:
    return _ops.block_info(int(t))[2]


# ---- random blocks ----

def random_scales(rng: np.random.Generator, count: int, specials: bool = True) -> np.ndarray:
    """fp16 bit patterns of random signed scales over several binades, some special ones mixed in."""
    mags = rng.uniform(0.5, 1.0, count) * np.exp2(rng.integers(-14, -1, count))
    vals = (mags * rng.choice([-1.0, 1.0], count)).astype(np.float16).view(np.uint16)
    if specials:
        pick = rng.random(count) < SPECIAL_SCALE_SHARE
        vals[pick] = rng.choice(SPECIAL_FP16, int(pick.sum()))
    return vals


def _valid_trit_bytes(rng: np.random.Generator, shape, n_trits: int) -> np.ndarray:
    """tq1_0 bytes: n_trits trits (first = most significant), zero-padded to 5, as ceil(v * 256 / 243)."""
    trits = rng.integers(0, 3, size=(*shape, 5))
    trits[..., n_trits:] = 0
    v = np.zeros(shape, dtype=np.int64)
    for k in range(5):
        v = v * 3 + trits[..., k]
    return ((v * 256 + 242) // 243).astype(np.uint8)


def random_weights(t: int, n: int, rng: np.random.Generator, specials: bool = True) -> np.ndarray:
    """A row of n elements of type t as raw bytes: random but valid, as a quantizer could write it."""
    t = T(t)
    if t == T.F32:
        return rng.standard_normal(n).astype(np.float32).view(np.uint8)
    if t == T.F16:
        return rng.standard_normal(n).astype(np.float16).view(np.uint8)
    if t == T.BF16:
        bits = rng.standard_normal(n).astype(np.float32).view(np.uint32)
        return (bits >> 16).astype(np.uint16).view(np.uint8)
    nb = n // block_elems(t)
    blocks = rng.integers(0, 256, size=(nb, block_bytes(t)), dtype=np.uint8)
    if t == T.Q8_0:
        blocks[:, 2:] = rng.integers(-INT8_LIMIT, INT8_LIMIT + 1, size=(nb, 32)).astype(np.int8).view(np.uint8)
    elif t == T.TQ1_0:
        blocks[:, :48] = _valid_trit_bytes(rng, (nb, 48), 5)
        blocks[:, 48:52] = _valid_trit_bytes(rng, (nb, 4), 4)
    elif t == T.TQ2_0:
        fields = rng.integers(0, 3, size=(nb, 64, 4))  # 3 is never written: values are -1, 0, 1
        blocks[:, :64] = (fields << np.array([0, 2, 4, 6])).sum(axis=-1).astype(np.uint8)
    for off in FP16_FIELDS[t]:
        blocks[:, off:off + 2] = random_scales(rng, nb, specials).reshape(nb, 1).view(np.uint8)
    return blocks.reshape(-1)


def random_activations(vdt: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """A row of n elements in activation format vdt (q8_0, q8_1, q8_K, f32, f16, bf16) as raw bytes,
    with consistent derived fields (q8_1 s, q8_K bsums) and quants within +-127."""
    vdt = T(vdt)
    if vdt in FLOAT_TYPES:
        return random_weights(vdt, n, rng)
    nb = n // block_elems(vdt)
    qs = rng.integers(-INT8_LIMIT, INT8_LIMIT + 1, size=(nb, block_elems(vdt))).astype(np.int8)
    if vdt == T.Q8_K:
        d = (rng.uniform(0.5, 1.0, nb) * np.exp2(rng.integers(-10, 0, nb))).astype(np.float32)
        bsums = qs.reshape(nb, 16, 16).astype(np.int16).sum(axis=-1, dtype=np.int16)
        return np.concatenate([d.reshape(nb, 1).view(np.uint8), qs.view(np.uint8), bsums.view(np.uint8)],
                              axis=1).reshape(-1)
    d = (rng.uniform(0.5, 1.0, nb) * np.exp2(rng.integers(-10, 0, nb))).astype(np.float16)
    parts = [d.reshape(nb, 1).view(np.uint8)]
    if vdt == T.Q8_1:
        s = (d.astype(np.float32) * qs.sum(axis=1)).astype(np.float16)
        parts.append(s.reshape(nb, 1).view(np.uint8))
    elif vdt != T.Q8_0:
        raise ValueError(f"not an activation format: {name(vdt)}")
    parts.append(qs.view(np.uint8))
    return np.concatenate(parts, axis=1).reshape(-1)


def random_floats(n: int, rng: np.random.Generator) -> np.ndarray:
    """Activation-like floats: normal values with a different magnitude every 32 elements, an all-zero
    stretch and one large outlier, so quantizers meet varied block maxima."""
    x = rng.standard_normal(n) * np.repeat(np.exp2(rng.uniform(-6, 3, (n + 31) // 32)), 32)[:n]
    if n >= 64:
        x[32:64] = 0.0
    x[rng.integers(0, n)] *= 50.0
    return x.astype(np.float32)


# ---- decoders (float64, exact) ----

def one_hot_activation(vdt: int, a: np.ndarray, i: int) -> np.ndarray:
    """Copy of activation row a with every element but i set to zero (derived fields kept consistent)."""
    a = a.copy()
    if vdt in FLOAT_TYPES:
        vals = a.reshape(-1, block_bytes(vdt))  # one element per row
        keep = vals[i].copy()
        vals[:] = 0
        vals[i] = keep
        return a
    be, bb = block_elems(vdt), block_bytes(vdt)
    blocks = a.reshape(-1, bb)
    qs_off = {T.Q8_0: 2, T.Q8_1: 4, T.Q8_K: 4}[T(vdt)]
    b, j = divmod(i, be)
    q = np.int8(blocks[b, qs_off + j].view(np.int8))
    blocks[:, qs_off:qs_off + be] = 0
    blocks[b, qs_off + j] = np.array(q).view(np.uint8)
    if vdt == T.Q8_1:
        blocks[:, 2:4] = 0
        d = blocks[b, 0:2].copy().view(np.float16).astype(np.float32)[0]
        blocks[b, 2:4] = np.array([d * np.float32(q)], dtype=np.float16).view(np.uint8)
    elif vdt == T.Q8_K:
        blocks[:, 260:] = 0
        blocks[b, 260 + 2 * (j // 16):262 + 2 * (j // 16)] = np.array([q], dtype=np.int16).view(np.uint8)
    return a


def decode_activations(vdt: int, buf: np.ndarray) -> np.ndarray:
    """The float64 values of a row in activation format vdt."""
    vdt = T(vdt)
    buf = np.ascontiguousarray(buf, dtype=np.uint8)
    if vdt == T.F32:
        return buf.view(np.float32).astype(np.float64)
    if vdt == T.F16:
        return buf.view(np.float16).astype(np.float64)
    if vdt == T.BF16:
        return (buf.view(np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    blocks = buf.reshape(-1, block_bytes(vdt))
    if vdt == T.Q8_0:
        d, qs = blocks[:, :2].copy().view(np.float16), blocks[:, 2:].view(np.int8)
    elif vdt == T.Q8_1:
        d, qs = blocks[:, :2].copy().view(np.float16), blocks[:, 4:].view(np.int8)
    elif vdt == T.Q8_K:
        d, qs = blocks[:, :4].copy().view(np.float32), blocks[:, 4:260].view(np.int8)
    else:
        raise ValueError(f"not an activation format: {name(vdt)}")
    return (d.astype(np.float64) * qs.astype(np.float64)).reshape(-1)


def q8_1_sums(buf: np.ndarray) -> np.ndarray:
    """The `s` field (d * sum of quants, as fp16) of each q8_1 block, float64."""
    return buf.reshape(-1, 36)[:, 2:4].copy().view(np.float16).astype(np.float64).reshape(-1)


def q8_K_bsums(buf: np.ndarray) -> np.ndarray:
    """The 16 bsums of each q8_K block, shape (blocks, 16)."""
    return buf.reshape(-1, 292)[:, 260:].copy().view(np.int16)


def dequantize(t: int, buf: np.ndarray) -> np.ndarray:
    """float64 values of a weight row, decoded by the gguf package (independent of our C code)."""
    t = T(t)
    buf = np.ascontiguousarray(buf, dtype=np.uint8)
    if t == T.BF16:
        return decode_activations(t, buf)
    return gguf_quants.dequantize(buf, GGMLQuantizationType(int(t))).astype(np.float64).reshape(-1)


def _with_zeroed_field(t: int, buf: np.ndarray, off: int) -> np.ndarray:
    blocks = np.array(buf, dtype=np.uint8).reshape(-1, block_bytes(t))
    blocks[:, off:off + 2] = 0
    return blocks.reshape(-1)


def reference_dot(t: int, w: np.ndarray, a: np.ndarray) -> tuple[float, float]:
    """(float64 dot of weight row w (type t) with activation row a (t's vec_dot_type), magnitude).

    The magnitude is sum |term| over every product the kernel adds, the scale its float rounding errors
    are relative to. Types with a min term are split into their scale part and min part (decoded with the
    other field zeroed), so cancellation between the two cannot hide errors in either. q4_1 and q5_1 fold
    the min in through the activation's fp16 `s` field rather than the exact sum, so the reference does
    the same.
    """
    t = T(t)
    vdt = vec_dot_type(t)
    av = decode_activations(vdt, a)
    if t in (T.Q4_1, T.Q5_1):
        scaled = dequantize(t, _with_zeroed_field(t, w, 2)) * av
        mins = w.reshape(-1, block_bytes(t))[:, 2:4].copy().view(np.float16).astype(np.float64).reshape(-1)
        min_terms = mins * q8_1_sums(a)
        return float(scaled.sum() + min_terms.sum()), float(np.abs(scaled).sum() + np.abs(min_terms).sum())
    if t in SCALE_MIN_FIELDS:
        d_off, m_off = SCALE_MIN_FIELDS[t]
        scaled = dequantize(t, _with_zeroed_field(t, w, m_off)) * av
        mins = dequantize(t, _with_zeroed_field(t, w, d_off)) * av
        return float(scaled.sum() + mins.sum()), float(np.abs(scaled).sum() + np.abs(mins).sum())
    terms = dequantize(t, w) * av
    return float(terms.sum()), float(np.abs(terms).sum())


# ---- real rows from the reference models ----

REFERENCE_MODELS = ("smollm2", "gemma3")
# Quantized weight types the reference models hold (SmolLM2 Q4_1: q4_1, q8_0; Gemma 3 Q4_K_M: q4_K, q6_K,
# q5_0, q8_0). Static, so the test list does not depend on what happens to be cached.
REAL_WEIGHT_TYPES = (T.Q4_1, T.Q5_0, T.Q8_0, T.Q4_K, T.Q6_K)
# Enough real blocks for the longest rows the tests cut.
REAL_POOL_BLOCKS = 64


@lru_cache(maxsize=None)
def _real_blocks_by_type() -> dict:
    """{type: bytes of >= REAL_POOL_BLOCKS whole blocks cut from real tensors} for every dot type the
    reference models hold (fetched into the cache on first use, like the conftest fixture does). Rows
    come from several tensors and rows so the mix of scales is realistic."""
    pools: dict = {}
    for model in REFERENCE_MODELS:
        for tensor in GGUFReader(model_path(model)).tensors:
            t = int(tensor.type)
            if t not in DOT_TYPES or tensor.data.ndim != 2:
                continue
            if sum(len(p) for p in pools.get(t, [])) // block_bytes(t) >= REAL_POOL_BLOCKS:
                continue
            data = tensor.data.view(np.uint8)  # (rows, row bytes)
            step = max(1, data.shape[0] // 4)
            for r in range(step // 2, data.shape[0], step):  # a few rows spread over the tensor
                pools.setdefault(t, []).append(np.array(data[r]))
    return {t: np.concatenate(p) for t, p in pools.items()}


def real_weights(t: int, n: int) -> np.ndarray:
    """n elements of type t cut from real reference-model tensors."""
    nbytes = n // block_elems(t) * block_bytes(t)
    pool = _real_blocks_by_type().get(int(t))
    assert pool is not None and len(pool) >= nbytes, f"the reference models hold too little {name(t)}"
    return pool[:nbytes].copy()
