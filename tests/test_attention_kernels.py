"""Attention kernels over an f16 cache (scores q . k_j and the p-weighted sum of V rows): every SIMD path
gives the scalar twin's bits, and the scalar twin is the math (checked in float64)."""
import numpy as np
import pytest

from llamapy._kernels import _ops

SIMD_ISAS = [isa for isa in _ops.available_isas() if isa != "scalar"]
# head sizes of real models (64, 128, 256) and odd ones around the 8/16/32-element steps
HEAD_DIMS = (1, 7, 8, 9, 15, 16, 17, 24, 40, 64, 80, 128, 256)
ROW_COUNTS = (1, 2, 5, 37)
# The scalar twin sums at most 16 rounded products per lane then folds 16 lanes: far inside 1e-5 of
# sum |terms| (float32 has 2^-24), while one wrong element is not.
REL_BUDGET = 1e-5


def cache_rows(rng, n, head_dim, extra=24):
    """n f16 rows of head_dim inside a wider cache (rows `head_dim + extra` elements apart), as the KV
    cache lays out one head among several."""
    full = rng.standard_normal((n, head_dim + extra)).astype(np.float16)
    return full.view(np.uint16)[:, 3:3 + head_dim]


@pytest.mark.parametrize("isa", ["scalar"] + SIMD_ISAS)
@pytest.mark.parametrize("head_dim", HEAD_DIMS)
def test_scores(isa, head_dim):
    rng = np.random.default_rng(head_dim)
    for n in ROW_COUNTS:
        q = rng.standard_normal(head_dim).astype(np.float16).astype(np.float32)
        k = cache_rows(rng, n, head_dim)
        got = _ops.attn_scores(q, k, 0.125, isa=isa)
        if isa == "scalar":
            kf = k.view(np.float16).astype(np.float64)
            want = kf @ q.astype(np.float64) * 0.125
            budget = REL_BUDGET * (np.abs(kf) @ np.abs(q.astype(np.float64))) * 0.125
            assert np.all(np.abs(got - want) <= budget + 1e-30), (n, head_dim)
        else:
            np.testing.assert_array_equal(got, _ops.attn_scores(q, k, 0.125, isa="scalar"))


def probabilities(rng, n):
    """Softmax-like weights before normalisation, down to values that round to f16 subnormals and zero."""
    return np.exp(-rng.random(n) * 30).astype(np.float32)


@pytest.mark.parametrize("isa", ["scalar"] + SIMD_ISAS)
@pytest.mark.parametrize("head_dim", HEAD_DIMS)
def test_accum(isa, head_dim):
    rng = np.random.default_rng(1000 + head_dim)
    for n in ROW_COUNTS + (8, 9, 16):
        p0 = probabilities(rng, n)
        pscale = np.float32(1 / (p0.astype(np.float64).sum() + 0.5))
        v = cache_rows(rng, n, head_dim)
        start = rng.standard_normal(head_dim).astype(np.float32)
        got, p = start.copy(), p0.copy()
        _ops.attn_accum(p, pscale, v, got, isa=isa)
        # the weights are rounded through f16 exactly as numpy rounds (to nearest even)
        np.testing.assert_array_equal(p, (p0 * pscale).astype(np.float16).astype(np.float32))
        if isa == "scalar":
            vf = v.view(np.float16).astype(np.float64)
            want = start + p.astype(np.float64) @ vf
            budget = REL_BUDGET * (np.abs(start) + p.astype(np.float64) @ np.abs(vf))
            assert np.all(np.abs(got - want) <= budget), (n, head_dim)
        else:
            ref, p_ref = start.copy(), p0.copy()
            _ops.attn_accum(p_ref, pscale, v, ref, isa="scalar")
            np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("isa", ["scalar"] + SIMD_ISAS)
@pytest.mark.parametrize("n", (0, 1, 7, 8, 9, 16, 100, 1000))
def test_exp_sum(isa, n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 12).astype(np.float32)
    if n:
        x[rng.integers(0, n, max(1, n // 10))] = -200.0   # far below the max: 0
    mx = np.float32(x.max()) if n else np.float32(0)
    p = x.copy()
    total = _ops.exp_sum(p, mx, isa=isa)
    if isa == "scalar":
        want = np.exp((x - mx).astype(np.float64))
        # llama.cpp's exp (llp_ggml_expf) within 2 ulp, of an argument x - mx rounded to float (half an ulp)
        arg = np.abs((x - mx).astype(np.float64))
        assert np.all(np.abs(p - want) <= (2.0 ** -22 + arg * 2.0 ** -24) * want + 1e-37)
        assert abs(total - want.sum()) <= 1e-6 * want.sum() + 1e-30
    else:
        ref = x.copy()
        ref_total = _ops.exp_sum(ref, mx, isa="scalar")
        np.testing.assert_array_equal(p, ref)
        assert total == ref_total


@pytest.mark.parametrize("isa", ["scalar"] + SIMD_ISAS)
@pytest.mark.parametrize("n", (1, 7, 8, 9, 100, 1536))
def test_swiglu(isa, n):
    rng = np.random.default_rng(50 + n)
    g = (rng.standard_normal(n) * 6).astype(np.float32)
    g[: n // 4] *= 40                                     # deep in both tails: 0 and x
    u = rng.standard_normal(n).astype(np.float32)
    got = _ops.op_swiglu(g, u, isa=isa)
    if isa == "scalar":
        g64 = g.astype(np.float64)
        with np.errstate(over="ignore"):                  # exp(-x) = inf for x << 0: silu(x) = 0
            want = g64 / (1 + np.exp(-g64)) * u
        # exp within 2 ulp, then a division and a product rounded: a few ulp of the result
        np.testing.assert_allclose(got, want, rtol=4 * 2.0 ** -23, atol=1e-37)
    else:
        np.testing.assert_array_equal(got, _ops.op_swiglu(g, u, isa="scalar"))


def test_shape_errors():
    q = np.zeros(8, dtype=np.float32)
    with pytest.raises(ValueError):
        _ops.attn_scores(q, np.zeros((3, 9), dtype=np.uint16), 1.0)
    with pytest.raises(ValueError):
        _ops.attn_accum(np.zeros(2, dtype=np.float32), 1.0, np.zeros((3, 8), dtype=np.uint16), q)
