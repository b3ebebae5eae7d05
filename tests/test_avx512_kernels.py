"""The AVX-512 and AVX-512 VNNI kernels (x86/avx512.c): dots against a float64 numpy dot of the decoded
rows, activation quantizers bit for bit against the scalar references.

The dot tests do not depend on the scalar twins: weights and activations are random valid blocks, the
reference is kernel_data.reference_dot. Row lengths cover the 4-block batches of the 32-element kernels
and every tail length after them.
"""
import numpy as np
import pytest

import kernel_data as kd
from llamapy._kernels import _ops

T = kd.T
ISAS = [isa for isa in ("avx512", "avx512vnni") if isa in _ops.available_isas()]
pytestmark = pytest.mark.skipif(not ISAS, reason="this CPU has no AVX-512")

# Weight types each table serves with its own kernel (the rest fall back to the AVX2 ones, which measured
# as fast without VNNI).
OWN = {
    "avx512": {T.Q5_0, T.Q5_1, T.Q6_K},
    "avx512vnni": {T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.IQ4_NL, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K},
}
REL_BUDGET = 1e-5
BLOCK_COUNTS = (1, 2, 3, 7, 8, 9, 15, 16, 17, 23, 64)


def cases():
    return [pytest.param(t, isa, id=f"{kd.name(t)}-{isa}") for isa in ISAS for t in sorted(OWN[isa])]


@pytest.mark.parametrize("isa", ISAS)
def test_tables_use_these_kernels(isa):
    impls = _ops.kernel_impls(isa)
    assert {t for t in kd.DOT_TYPES if impls[kd.name(t)] == isa} == OWN[isa]


@pytest.mark.parametrize("t,isa", cases())
def test_dot_matches_float64(t, isa):
    rng = np.random.default_rng(7000 + int(t))
    vdt = kd.vec_dot_type(t)
    for nb in BLOCK_COUNTS:
        n = nb * kd.block_elems(t)
        for specials in (True, False):
            w = kd.random_weights(t, n, rng, specials=specials)
            a = kd.random_activations(vdt, n, rng)
            got = _ops.vec_dot(int(t), n, w, a, isa=isa)
            want, magnitude = kd.reference_dot(t, w, a)
            assert abs(got - want) <= REL_BUDGET * magnitude, (
                f"{kd.name(t)} {isa} n={n}: got {got!r}, want {want!r} (magnitude {magnitude:g})")


@pytest.mark.parametrize("t,isa", cases())
def test_saturated_quants(t, isa):
    """All weight bits set, activations at +-127: the widest int16 / int32 intermediates."""
    vdt = kd.vec_dot_type(t)
    n = 9 * kd.block_elems(t)
    rng = np.random.default_rng(7500 + int(t))
    w = kd.random_weights(t, n, rng, specials=False)
    blocks = w.reshape(-1, kd.block_bytes(t))
    keep = {off: blocks[:, off:off + 2].copy() for off in kd.FP16_FIELDS[t]}
    blocks[:] = 0xFF
    if t == T.Q8_0:
        blocks[:, 2:] = np.array(-127, dtype=np.int8).view(np.uint8)
    for off, v in keep.items():
        blocks[:, off:off + 2] = v
    for sign in (1, -1):
        a = kd.random_activations(vdt, n, rng)
        ab = a.reshape(-1, kd.block_bytes(vdt))
        if vdt == T.Q8_K:
            ab[:, 4:260] = np.array(sign * 127, dtype=np.int8).view(np.uint8)
            ab[:, 260:] = np.full((len(ab), 16), sign * 127 * 16, dtype=np.int16).view(np.uint8).reshape(len(ab), -1)
        else:
            start = 2 if vdt == T.Q8_0 else 4
            ab[:, start:] = np.array(sign * 127, dtype=np.int8).view(np.uint8)
            if vdt == T.Q8_1:
                d = ab[:, :2].copy().view(np.float16).astype(np.float32)
                ab[:, 2:4] = (d * sign * 127 * 32).astype(np.float16).view(np.uint8)
        got = _ops.vec_dot(int(t), n, w, a, isa=isa)
        want, magnitude = kd.reference_dot(t, w, a)
        assert abs(got - want) <= REL_BUDGET * magnitude, f"{kd.name(t)} {isa} sign {sign}: got {got!r}, want {want!r}"


ACTIVATIONS = (T.Q8_0, T.Q8_1, T.Q8_K)


def tie_rows(vdt, rng):
    """Rows whose blocks have amax 127 (so 1/d is exactly 1) holding exact .5 ties, one all-zero block,
    and plain random floats, over block counts around the 4-block step."""
    be = kd.block_elems(vdt)
    rows = []
    for nb in (1, 2, 3, 4, 5, 7, 8, 9, 13):
        x = kd.random_floats(nb * be, rng).reshape(nb, be)
        ties = rng.integers(-126, 126, size=(nb, be)) + 0.5
        x[::2] = ties[::2]
        x[::2, 0] = -127.0 if vdt == T.Q8_K else 127.0
        if nb > 2:
            x[1] = 0.0
        rows.append(np.ascontiguousarray(x.reshape(-1), dtype=np.float32))
    return rows


@pytest.mark.parametrize("vdt", ACTIVATIONS, ids=kd.name)
@pytest.mark.parametrize("isa", ISAS)
def test_quantizers_bit_exact(vdt, isa):
    rng = np.random.default_rng(8000 + int(vdt))
    for x in tie_rows(vdt, rng):
        size = x.size // kd.block_elems(vdt) * kd.block_bytes(vdt)
        ref, got = np.zeros(size, dtype=np.uint8), np.full(size, 0xAA, dtype=np.uint8)
        _ops.quantize_activations(int(vdt), x, ref, isa="scalar")
        _ops.quantize_activations(int(vdt), x, got, isa=isa)
        bad = np.nonzero(ref != got)[0]
        assert bad.size == 0, f"{kd.name(vdt)} {isa} n={x.size}: byte {bad[0]} differs ({got[bad[0]]} != {ref[bad[0]]})"
