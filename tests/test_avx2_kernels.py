"""AVX2 kernels against independent numpy references.

Dot products: random valid weight rows (dequantized with gguf's numpy reference) against random
activations in the weight type's vec_dot_type, compared with a float64 dot. Activation quantizers:
bit-exact against numpy ports of ggml's reference rounding.
"""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize

from llamapy._kernels import _ops
from llamapy.gguf.constants import GGMLType as T

pytestmark = pytest.mark.skipif("avx2" not in _ops.available_isas(), reason="CPU lacks AVX2/FMA/F16C")

# weight type -> (block elements, block bytes, byte offsets of fp16 scales)
WEIGHTS = {
    T.Q4_0: (32, 18, (0,)), T.Q4_1: (32, 20, (0, 2)), T.Q5_0: (32, 22, (0,)), T.Q5_1: (32, 24, (0, 2)),
    T.Q8_0: (32, 34, (0,)), T.Q2_K: (256, 84, (80, 82)), T.Q3_K: (256, 110, (108,)),
    T.Q4_K: (256, 144, (0, 2)), T.Q5_K: (256, 176, (0, 2)), T.Q6_K: (256, 210, (208,)),
    T.IQ4_NL: (32, 18, (0,)), T.IQ4_XS: (256, 136, (0,)), T.TQ1_0: (256, 54, (52,)), T.TQ2_0: (256, 66, (64,)),
}
ACT = {T.Q4_0: T.Q8_0, T.Q5_0: T.Q8_0, T.Q8_0: T.Q8_0, T.IQ4_NL: T.Q8_0, T.Q4_1: T.Q8_1, T.Q5_1: T.Q8_1}


def fp16_bytes(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float16).view(np.uint8)


def random_weights(rng, t, n):
    """n elements of type t: random bytes with sane fp16 scales (any byte pattern is a valid code)."""
    blk, size, scales = WEIGHTS[t]
    raw = rng.integers(0, 256, size=(n // blk, size), dtype=np.uint8)
    for off in scales:
        raw[:, off:off + 2] = fp16_bytes(rng.uniform(-0.02, 0.02, n // blk)).reshape(-1, 2)
    return raw.reshape(-1), dequantize(raw, Q(int(t))).reshape(-1).astype(np.float64)


def random_activations(rng, vt, n, qmax=127):
    """n activations already in vec_dot type vt: (bytes, float64 values, per-block exact d*sum(q))."""
    nb = n // (256 if vt == T.Q8_K else 32)
    if vt == T.Q8_K:
        q = rng.integers(-qmax, qmax + 1, size=(nb, 256)).astype(np.int8)
        d = rng.uniform(0.001, 0.1, nb).astype(np.float32)
        bsums = q.reshape(nb, 16, 16).sum(axis=2, dtype=np.int64).astype(np.int16)
        raw = np.concatenate([d.view(np.uint8).reshape(nb, 4), q.view(np.uint8), bsums.view(np.uint8)], axis=1)
        return raw.reshape(-1), (d[:, None].astype(np.float64) * q).reshape(-1), None
    q = rng.integers(-qmax, qmax + 1, size=(nb, 32)).astype(np.int8)
    d = rng.uniform(0.001, 0.1, nb).astype(np.float16)
    parts = [d.view(np.uint8).reshape(nb, 2)]
    exact_s = d.astype(np.float64) * q.sum(axis=1)
    if vt == T.Q8_1:
        parts.append(fp16_bytes(exact_s.astype(np.float32)).reshape(nb, 2))
    parts.append(q.view(np.uint8))
    raw = np.concatenate(parts, axis=1)
    return raw.reshape(-1), (d[:, None].astype(np.float64) * q).reshape(-1), exact_s


def expected_dot(t, w_raw, w, a_raw, a, exact_s):
    ref = float(np.dot(w, a))
    if t in (T.Q4_1, T.Q5_1):   # the kernel uses the stored fp16 s = d*sum(q), not the exact value
        blk, size, _ = WEIGHTS[t]
        m = w_raw.reshape(-1, size)[:, 2:4].copy().view(np.float16).reshape(-1).astype(np.float64)
        s = a_raw.reshape(-1, 36)[:, 2:4].copy().view(np.float16).reshape(-1).astype(np.float64)
        ref += float(np.dot(m, s - exact_s))
    return ref, float(np.dot(np.abs(w), np.abs(a)))


@pytest.mark.parametrize("t", list(WEIGHTS), ids=lambda t: t.name.lower())
@pytest.mark.parametrize("n_blocks", [1, 2, 3, 16])
def test_quantized_dot(t, n_blocks):
    rng = np.random.default_rng(int(t) * 100 + n_blocks)
    n = WEIGHTS[t][0] * n_blocks
    w_raw, w = random_weights(rng, t, n)
    vt = ACT.get(t, T.Q8_K)
    a_raw, a, exact_s = random_activations(rng, vt, n)
    got = _ops.vec_dot(int(t), n, w_raw, a_raw, isa="avx2")
    ref, scale = expected_dot(t, w_raw, w, a_raw, a, exact_s)
    assert abs(got - ref) <= 1e-5 * scale + 1e-30, (got, ref)
    assert _ops.kernel_impls("avx2")[t.name.lower().replace("_k", "_K")] == "avx2"


@pytest.mark.parametrize("t", [T.Q4_K, T.Q6_K, T.Q8_0])
def test_extreme_codes(t):
    """All-max codes and full-scale activations: no i16 saturation in the maddubs/madd chains."""
    rng = np.random.default_rng(7)
    n = 512
    w_raw, _ = random_weights(rng, t, n)
    blk, size, scales = WEIGHTS[t]
    rows = w_raw.reshape(-1, size)
    keep = np.zeros(size, bool)
    for off in scales:
        keep[off:off + 2] = True
    rows[:, ~keep] = 0x80 if t == T.Q8_0 else 0xFF   # q8_0: -128; others: every code and scale at its top
    w = dequantize(rows, Q(int(t))).reshape(-1).astype(np.float64)
    vt = ACT.get(t, T.Q8_K)
    a_raw, a, exact_s = random_activations(rng, vt, n)
    a_q = a_raw.reshape(-1, 292 if vt == T.Q8_K else 34)
    sign = np.where(rng.random(a_q.shape[0]) < 0.5, -127, 127)
    off = 4 if vt == T.Q8_K else 2
    a_q[:, off:off + blk] = sign[:, None].astype(np.int8).view(np.uint8)
    if vt == T.Q8_K:
        a_q[:, 260:] = np.repeat(sign[:, None] * 16, 16, axis=1).astype(np.int16).view(np.uint8)
        a = (a_q[:, :4].copy().view(np.float32).astype(np.float64) * sign[:, None]).repeat(256, axis=1).reshape(-1)
    else:
        a = (a_q[:, :2].copy().view(np.float16).astype(np.float64) * sign[:, None]).repeat(32, axis=1).reshape(-1)
    got = _ops.vec_dot(int(t), n, rows.reshape(-1), a_q.reshape(-1), isa="avx2")
    ref = float(np.dot(w, a))
    assert abs(got - ref) <= 1e-5 * float(np.dot(np.abs(w), np.abs(a))), (got, ref)


@pytest.mark.parametrize("t", [T.F32, T.F16, T.BF16])
@pytest.mark.parametrize("n", [1, 7, 8, 31, 32, 33, 100, 4096])
def test_float_dot(t, n):
    rng = np.random.default_rng(n)
    x, y = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    if t == T.F32:
        xb, yb = x, y
    elif t == T.F16:
        xb, yb = x.astype(np.float16), y.astype(np.float16)
        x, y = xb.astype(np.float32), yb.astype(np.float32)
    else:
        xb, yb = (x.view(np.uint32) >> 16).astype(np.uint16), (y.view(np.uint32) >> 16).astype(np.uint16)
        x, y = (xb.astype(np.uint32) << 16).view(np.float32), (yb.astype(np.uint32) << 16).view(np.float32)
    got = _ops.vec_dot(int(t), n, xb.view(np.uint8), yb.view(np.uint8), isa="avx2")
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    assert abs(got - np.dot(x64, y64)) <= 1e-5 * np.dot(np.abs(x64), np.abs(y64))


# ---- activation quantizers: numpy ports of ggml's reference rounding ----

def roundf(v):
    """C roundf (halves away from zero), exact for float32 inputs."""
    v = v.astype(np.float64)
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def ref_q8_0(x, with_sum=False):
    """q8_0 / q8_1 activations as llama.cpp's x86 code makes them: d = amax / 127, q = x * (127 / amax)
    rounded half to even (its reference quantizer, for files, uses 1 / d and rounds halves away from zero)."""
    b = x.reshape(-1, 32)
    amax = np.abs(b).max(axis=1).astype(np.float32)
    d = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(amax != 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    q = np.rint(b * inv[:, None]).astype(np.int8)
    parts = [d.astype(np.float16).view(np.uint8).reshape(-1, 2)]
    if with_sum:
        s = (q.sum(axis=1).astype(np.float32) * d).astype(np.float16)
        parts.append(s.view(np.uint8).reshape(-1, 2))
    return np.concatenate(parts + [q.view(np.uint8)], axis=1).reshape(-1)


def ref_q8_K(x):
    out = []
    for b in x.reshape(-1, 256):
        amax = np.abs(b).max()
        if amax == 0:
            out.append(np.zeros(292, np.uint8))
            continue
        iscale = np.float32(-127) / b[np.argmax(np.abs(b) == amax)]
        q = np.minimum(127, np.rint(iscale * b)).astype(np.int8)
        bsums = q.reshape(16, 16).sum(axis=1).astype(np.int16)
        d = np.array([np.float32(1) / iscale], np.float32)
        out.append(np.concatenate([d.view(np.uint8), q.view(np.uint8), bsums.view(np.uint8)]))
    return np.concatenate(out)


def decode_activations(vt, raw):
    """float64 values of q8_0 / q8_1 / q8_K activation bytes"""
    if vt == T.Q8_K:
        b = raw.reshape(-1, 292)
        return (b[:, :4].copy().view(np.float32).astype(np.float64) * b[:, 4:260].view(np.int8)).reshape(-1)
    b = raw.reshape(-1, 34 if vt == T.Q8_0 else 36)
    return (b[:, :2].copy().view(np.float16).astype(np.float64) * b[:, -32:].view(np.int8)).reshape(-1)


def activation_rows(rng, n):
    x = (rng.standard_normal(n) * rng.uniform(0.1, 10)).astype(np.float32)
    x[:32] = 0                                        # an all-zero block
    x[32:64] = np.arange(32) - 15.5                   # amax 16.5: many quotients near .5
    x[64:96] = np.r_[127, np.arange(31) * 0.5 - 7.5]  # d = 1: exact halves, roundf must go away from zero
    return x


@pytest.mark.parametrize("vt", [T.Q8_0, T.Q8_1, T.Q8_K])
def test_activation_quantizers_bit_exact(vt):
    rng = np.random.default_rng(int(vt))
    n = 4096
    x = activation_rows(rng, n)
    if vt == T.Q8_K:
        x[256:512] = np.r_[-127, np.arange(255) * 0.5 - 60].astype(np.float32)  # iscale 1: ties go to even
        x[512:768] *= 0
        x[600], x[700] = 3, -3                          # first of the equal magnitudes wins
        ref = ref_q8_K(x)
    else:
        ref = ref_q8_0(x, with_sum=vt == T.Q8_1)
    out = np.zeros_like(ref)
    _ops.quantize_activations(int(vt), x, out, isa="avx2")
    np.testing.assert_array_equal(out, ref)


def test_f16_bf16_activations():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(1003) * 100).astype(np.float32)
    x[:4] = [np.inf, -np.inf, 1e-8, 70000]
    out = np.zeros(1003 * 2, np.uint8)
    _ops.quantize_activations(int(T.F16), x, out, isa="avx2")
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(out.view(np.float16), x.astype(np.float16))
    u = x.view(np.uint32).astype(np.uint64)
    bf = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    _ops.quantize_activations(int(T.BF16), x, out, isa="avx2")
    np.testing.assert_array_equal(out.view(np.uint16), bf)


@pytest.mark.parametrize("t", [T.Q4_0, T.Q4_1, T.Q4_K, T.Q6_K])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_matmul(t, n_threads):
    """Threaded matmul (AVX2 activation quantizer + dot) against numpy on the same quantized activations."""
    rng = np.random.default_rng(11)
    rows, cols, n_tok = 37, 512, 3
    w_raw, w = random_weights(rng, t, rows * cols)
    W = w_raw.reshape(rows, -1)
    X = rng.standard_normal((n_tok, cols)).astype(np.float32)
    vt = ACT.get(t, T.Q8_K)
    Y = np.zeros((n_tok, rows), np.float32)
    work = np.zeros(_ops.matmul_work_size(int(t), cols, n_tok), np.uint8)
    _ops.matmul(int(t), W, X, Y, work, n_threads=n_threads, isa="avx2")
    qx = np.concatenate([ref_q8_K(r) if vt == T.Q8_K else ref_q8_0(r, vt == T.Q8_1) for r in X])
    a = decode_activations(vt, qx).reshape(n_tok, cols)
    wm = w.reshape(rows, cols)
    ref = a @ wm.T
    if vt == T.Q8_1:   # fold the stored s in place of dy*sum(q), as the kernel does
        m = W.reshape(rows, -1, WEIGHTS[t][1])[:, :, 2:4].copy().view(np.float16)[..., 0].astype(np.float64)
        s = qx.reshape(n_tok, -1, 36)[:, :, 2:4].copy().view(np.float16)[..., 0].astype(np.float64)
        exact = a.reshape(n_tok, -1, 32).sum(axis=2)
        ref += (s - exact) @ m.T
    tol = 1e-5 * (np.abs(a) @ np.abs(wm).T)
    assert np.all(np.abs(Y - ref) <= tol)
