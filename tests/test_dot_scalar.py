"""The scalar reference dot products (ref/dot.c) against a float64 numpy dot of the decoded rows.

Weights are random valid blocks and real rows from the reference models; activations are random valid
q8_0 / q8_1 / q8_K / float blocks, so these tests do not depend on any quantizer.
"""
import numpy as np
import pytest

import kernel_data as kd
from llamapy._kernels import _ops

# The kernels sum each block exactly in integers, then do a few float multiplies and one running-sum add
# per block (float types: one multiply and one add per element). Each float operation rounds by at most
# 2^-24 of the magnitude sum|terms|; at <= 64 blocks (or 1000 random-sign float terms) that stays well
# under this budget (seen: < 1e-7), while one wrong element among the longest rows' 16384 exceeds it.
SCALAR_REL_BUDGET = 1e-5

BLOCK_COUNTS = (1, 2, 3, 7, 16, 64)
FLOAT_LENGTHS = (1, 2, 3, 7, 16, 31, 64, 255, 1000)


def lengths(t):
    return FLOAT_LENGTHS if t in kd.FLOAT_TYPES else tuple(nb * kd.block_elems(t) for nb in BLOCK_COUNTS)


def check(t, n, w, a):
    got = _ops.vec_dot(int(t), n, w, a, isa="scalar")
    want, magnitude = kd.reference_dot(t, w, a)
    assert abs(got - want) <= SCALAR_REL_BUDGET * magnitude, (
        f"{kd.name(t)} n={n}: got {got!r}, want {want!r} (magnitude {magnitude:g})")


@pytest.mark.parametrize("t", kd.DOT_TYPES, ids=kd.name)
def test_scalar_dot_random_blocks(t):
    rng = np.random.default_rng(1000 + int(t))
    vdt = kd.vec_dot_type(t)
    for n in lengths(t):
        for _ in range(4):
            check(t, n, kd.random_weights(t, n, rng), kd.random_activations(vdt, n, rng))


@pytest.mark.parametrize("t", kd.DOT_TYPES, ids=kd.name)
def test_scalar_dot_is_linear_in_every_element(t):
    """One weight element at a time: a dot with a one-hot activation picks out exactly that element, so a
    wrong nibble order, bit position or scale index shows up as a wrong element, not as noise."""
    rng = np.random.default_rng(2000 + int(t))
    vdt = kd.vec_dot_type(t)
    n = 2 * kd.block_elems(t)
    w = kd.random_weights(t, n, rng, specials=False)
    a = kd.random_activations(vdt, n, rng)
    av = kd.decode_activations(vdt, a)
    for i in rng.choice(n, size=min(n, 48), replace=False):
        # Zero every activation except element i. For q8_* rows that means zero quants (and sums) with the
        # block scale kept; the q8_1 `s` field and q8_K bsums must follow the quants.
        a1 = kd.one_hot_activation(vdt, a, int(i))
        check(t, n, w, a1)
        assert kd.decode_activations(vdt, a1)[i] == av[i]


@pytest.mark.parametrize("t", kd.REAL_WEIGHT_TYPES, ids=kd.name)
def test_scalar_dot_real_rows(t):
    rng = np.random.default_rng(3000 + int(t))
    vdt = kd.vec_dot_type(t)
    for nb in BLOCK_COUNTS:
        n = nb * kd.block_elems(t)
        check(t, n, kd.real_weights(t, n), kd.random_activations(vdt, n, rng))


@pytest.mark.parametrize("t", kd.DOT_TYPES, ids=kd.name)
def test_scalar_dot_extremes_do_not_overflow(t):
    """Largest quants in every element (and +-127 activations): the int32 block sums must not wrap."""
    vdt = kd.vec_dot_type(t)
    n = 2 * kd.block_elems(t)
    w = np.full(n * kd.block_bytes(t) // kd.block_elems(t), 0xFF, dtype=np.uint8)
    if t == kd.T.F32:
        w = np.full(n, 1.5, dtype=np.float32).view(np.uint8)
    elif t == kd.T.F16:
        w = np.full(n, 1.5, dtype=np.float16).view(np.uint8)
    elif t == kd.T.BF16:
        w = np.full(n, 0x3FC0, dtype=np.uint16).view(np.uint8)
    else:
        blocks = w.reshape(-1, kd.block_bytes(t))
        if t == kd.T.Q8_0:
            blocks[:, 2:] = np.array(-127, dtype=np.int8).view(np.uint8)
        for off in kd.FP16_FIELDS[t]:
            blocks[:, off:off + 2] = np.array([0.25], dtype=np.float16).view(np.uint8)
    for sign in (1, -1):
        a = extreme_activations(vdt, n, sign)
        check(t, n, w, a)


def extreme_activations(vdt, n, sign):
    if vdt in kd.FLOAT_TYPES:
        return extreme_float(vdt, n, sign)
    be, bb = kd.block_elems(vdt), kd.block_bytes(vdt)
    nb = n // be
    qs = np.full((nb, be), sign * 127, dtype=np.int8)
    if vdt == kd.T.Q8_K:
        d = np.full((nb, 1), 0.5, dtype=np.float32)
        bsums = np.full((nb, 16), sign * 127 * 16, dtype=np.int16)
        return np.concatenate([d.view(np.uint8), qs.view(np.uint8), bsums.view(np.uint8)], axis=1).reshape(-1)
    d = np.full((nb, 1), 0.5, dtype=np.float16)
    parts = [d.view(np.uint8)]
    if vdt == kd.T.Q8_1:
        parts.append(np.full((nb, 1), 0.5 * sign * 127 * be, dtype=np.float16).view(np.uint8))
    parts.append(qs.view(np.uint8))
    return np.concatenate(parts, axis=1).reshape(-1)


def extreme_float(vdt, n, sign):
    if vdt == kd.T.F32:
        return np.full(n, sign * 3.0, dtype=np.float32).view(np.uint8)
    if vdt == kd.T.F16:
        return np.full(n, sign * 3.0, dtype=np.float16).view(np.uint8)
    return (np.full(n, sign * 3.0, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)


def test_every_dot_type_is_registered_as_scalar():
    impls = _ops.kernel_impls("scalar")
    assert impls == {kd.name(t): "scalar" for t in kd.DOT_TYPES}
