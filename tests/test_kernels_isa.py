"""Every SIMD kernel path against the scalar reference: dot products, activation quantizers, dispatch.

For each ISA this CPU can run (besides scalar) and each weight type, vec_dot(isa) must match
vec_dot("scalar") on the same bytes; the fast activation quantizers must match the scalar reference
quantizers; and the dispatch (kernel tables, LLAMAPY_CPU) must pick what it claims to.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import kernel_data as kd
import llamapy
from llamapy._kernels import _ops

T = kd.T
SIMD_ISAS = [isa for isa in _ops.available_isas() if isa != "scalar"]

# Integer parts are exact on every path; a SIMD kernel differs from the scalar one only in the order of
# its float operations (lane-wise partial sums, fused multiply-adds). Each of the at most ~64 per-block
# (or, for float types, per-element) roundings is 2^-24 of the magnitude sum|terms|, so two correct
# kernels stay far inside this relative budget (seen: < 3e-7), while one wrong element among the longest
# rows' 16384 exceeds it.
# Kept per type so one kernel's budget can be argued (and loosened) on its own; today all share one value.
SIMD_REL_BUDGET = {t: 1e-5 for t in kd.DOT_TYPES}

BLOCK_COUNTS = (1, 2, 3, 5, 8, 17, 64)
# Float rows: lengths on both sides of the 8/16/32/64-element SIMD steps, and a long row.
FLOAT_LENGTHS = (1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 255, 1000)

ACTIVATION_TYPES = (T.Q8_0, T.Q8_1, T.Q8_K, T.F16, T.BF16)
# A fast q8 quantizer may round exact (or, through a differently rounded 1/d, near) .5 ties the other way
# than the reference's roundf: such a quant differs by exactly 1. Random floats land that close to a tie
# for ~1 element in 30000; this share (one element per 256) still catches any systematic rounding error.
QUANT_FLIP_MAX_SIZE = 1
QUANT_FLIP_MAX_SHARE = 1 / 256
# q8_1 `s` is rounded to fp16 (half an ulp, 2^-11 relative) after summing quants; two independent roundings.
FP16_S_REL_BUDGET = 2.0 ** -10


def pairs(types, isas=SIMD_ISAS):
    return [pytest.param(t, isa, id=f"{kd.name(t)}-{isa}") for t in types for isa in isas]


def lengths(t):
    return FLOAT_LENGTHS if t in kd.FLOAT_TYPES else tuple(nb * kd.block_elems(t) for nb in BLOCK_COUNTS)


def quantized_activations(vdt, n, rng):
    """n random floats quantized by the scalar reference quantizer (as llama.cpp's activations are)."""
    x = kd.random_floats(n, rng)
    out = np.zeros(n // kd.block_elems(vdt) * kd.block_bytes(vdt), dtype=np.uint8)
    _ops.quantize_activations(int(vdt), x, out, isa="scalar")
    assert np.any(kd.decode_activations(vdt, out) != 0), "the scalar quantizer produced an all-zero row"
    return out


def assert_same_dot(t, isa, n, w, a, where=""):
    got = _ops.vec_dot(int(t), n, w, a, isa=isa)
    want = _ops.vec_dot(int(t), n, w, a, isa="scalar")
    _, magnitude = kd.reference_dot(t, w, a)
    assert abs(got - want) <= SIMD_REL_BUDGET[t] * magnitude, (
        f"{kd.name(t)} {isa} n={n}{where}: got {got!r}, scalar {want!r} (magnitude {magnitude:g})")


# ---- dot products ----

@pytest.mark.parametrize("t,isa", pairs(kd.DOT_TYPES))
def test_vec_dot_matches_scalar(t, isa):
    rng = np.random.default_rng(4000 + int(t))
    vdt = kd.vec_dot_type(t)
    for n in lengths(t):
        for _ in range(2):
            w = kd.random_weights(t, n, rng)
            # activations as llama.cpp makes them, and random valid blocks (every quant value reachable)
            assert_same_dot(t, isa, n, w, quantized_activations(vdt, n, rng))
            assert_same_dot(t, isa, n, w, kd.random_activations(vdt, n, rng))


@pytest.mark.parametrize("t,isa", pairs(kd.DOT_TYPES))
def test_vec_dot_one_element_at_a_time(t, isa):
    """One-hot activations pick out single weight elements, so a wrong lane, nibble or scale index is
    reported with the element it hits."""
    rng = np.random.default_rng(4500 + int(t))
    vdt = kd.vec_dot_type(t)
    n = 67 if t in kd.FLOAT_TYPES else 2 * kd.block_elems(t)
    w = kd.random_weights(t, n, rng, specials=False)
    a = kd.random_activations(vdt, n, rng)
    for i in range(n) if n <= 67 else rng.choice(n, size=96, replace=False):
        assert_same_dot(t, isa, n, w, kd.one_hot_activation(vdt, a, int(i)), where=f" element {i}")


@pytest.mark.parametrize("t,isa", pairs(kd.REAL_WEIGHT_TYPES))
def test_vec_dot_real_rows_match_scalar(t, isa):
    rng = np.random.default_rng(5000 + int(t))
    vdt = kd.vec_dot_type(t)
    for n in lengths(t):
        assert_same_dot(t, isa, n, kd.real_weights(t, n), quantized_activations(vdt, n, rng))


@pytest.mark.parametrize("t,isa", pairs(kd.DOT_TYPES))
def test_vec_dot_extreme_values_match_scalar(t, isa):
    """Every weight byte 0xff / 0x00 (largest and smallest quants, all high bits set or clear) against
    +-127 activations: saturating or wrapping SIMD integer arithmetic would show here."""
    vdt = kd.vec_dot_type(t)
    n = 8 * kd.block_elems(t)
    rng = np.random.default_rng(6000 + int(t))
    for fill in (0x00, 0xFF):
        w = kd.random_weights(t, n, rng, specials=False)
        if t not in kd.FLOAT_TYPES:
            blocks = w.reshape(-1, kd.block_bytes(t))
            keep = {off: blocks[:, off:off + 2].copy() for off in kd.FP16_FIELDS[t]}
            blocks[:] = fill
            if t == T.Q8_0:
                blocks[:, 2:] = np.array(-127 if fill else 127, dtype=np.int8).view(np.uint8)
            for off, v in keep.items():
                blocks[:, off:off + 2] = v
        for sign in (1, -1):
            a = kd.random_activations(vdt, n, rng)
            if vdt not in kd.FLOAT_TYPES:
                a = saturate_activations(vdt, a, sign)
            assert_same_dot(t, isa, n, w, a)


def saturate_activations(vdt, a, sign):
    """Activation row a with every quant set to sign * 127 (s / bsums updated)."""
    a = a.copy()
    be, bb = kd.block_elems(vdt), kd.block_bytes(vdt)
    blocks = a.reshape(-1, bb)
    qs_off = 2 if vdt == T.Q8_0 else 4
    blocks[:, qs_off:qs_off + be] = np.array(sign * 127, dtype=np.int8).view(np.uint8)
    if vdt == T.Q8_1:
        d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
        blocks[:, 2:4] = (d * np.float32(sign * 127 * be)).astype(np.float16).view(np.uint8)
    elif vdt == T.Q8_K:
        blocks[:, 260:] = np.full((blocks.shape[0], 16), sign * 127 * 16, dtype=np.int16).view(np.uint8)
    return a


# ---- activation quantizers ----

def special_floats():
    """Values whose f16/bf16 rounding is delicate: ties, subnormals, overflow, infinities, NaNs."""
    vals = np.array([0.0, -0.0, 1.0, -1.0, 65504.0, 65519.99, 65520.0, 1e6, -1e6, 6.1e-5, 6.0e-5, 3e-8,
                     2.9802322e-08, 5.9604645e-08, 1e-30, 3.4e38, np.inf, -np.inf, np.nan,
                     1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8],
                    dtype=np.float32)
    snan = np.array([0x7F800001, 0xFFC12345], dtype=np.uint32).view(np.float32)
    return np.concatenate([vals, -vals, snan])


def activation_inputs(vdt, rng):
    """Float rows to quantize: random rows of several lengths, and for f16/bf16 the special values."""
    if vdt in (T.F16, T.BF16):
        rows = [kd.random_floats(n, rng) for n in FLOAT_LENGTHS]
        sp = special_floats()
        rows += [sp, np.tile(sp, 5)[:67]]
        # every float exactly halfway between two neighbours of the target format, both signs
        mant = rng.integers(0, 1 << 23, 200, dtype=np.uint32)
        exps = rng.integers(100, 150, 200, dtype=np.uint32) << 23
        low = 13 if vdt == T.F16 else 16
        ties = (exps | (mant & ~np.uint32((1 << low) - 1)) | np.uint32(1 << (low - 1))).view(np.float32)
        rows.append(np.concatenate([ties, -ties]))
        return rows
    be = kd.block_elems(vdt)
    return [kd.random_floats(nb * be, rng) for nb in BLOCK_COUNTS]


def q8_fields(vdt, buf):
    """(scale bytes per block, quants, q8_1 s or q8_K bsums) of an activation row."""
    blocks = buf.reshape(-1, kd.block_bytes(vdt))
    if vdt == T.Q8_0:
        return blocks[:, :2], blocks[:, 2:].view(np.int8), None
    if vdt == T.Q8_1:
        return blocks[:, :2], blocks[:, 4:].view(np.int8), blocks[:, 2:4].copy().view(np.float16)
    return blocks[:, :4], blocks[:, 4:260].view(np.int8), blocks[:, 260:].copy().view(np.int16)


@pytest.mark.parametrize("vdt,isa", pairs(ACTIVATION_TYPES))
def test_quantize_activations_matches_scalar(vdt, isa):
    rng = np.random.default_rng(7000 + int(vdt))
    for x in activation_inputs(vdt, rng):
        n = x.size
        size = n // kd.block_elems(vdt) * kd.block_bytes(vdt)
        ref, got = np.zeros(size, dtype=np.uint8), np.full(size, 0xAA, dtype=np.uint8)
        _ops.quantize_activations(int(vdt), x, ref, isa="scalar")
        _ops.quantize_activations(int(vdt), x, got, isa=isa)
        if vdt in (T.F16, T.BF16):
            bad = np.nonzero(ref.view(np.uint16) != got.view(np.uint16))[0]
            assert bad.size == 0, (f"{kd.name(vdt)} {isa}: {bad.size} differ, first x={x[bad[0]]!r} "
                                   f"bits {x[bad[:1]].view(np.uint32)[0]:#010x}: "
                                   f"{got.view(np.uint16)[bad[0]]:#06x} != {ref.view(np.uint16)[bad[0]]:#06x}")
            continue
        d_ref, q_ref, extra_ref = q8_fields(vdt, ref)
        d_got, q_got, extra_got = q8_fields(vdt, got)
        assert np.array_equal(d_ref, d_got), f"{kd.name(vdt)} {isa} n={n}: block scales differ"
        assert np.any(q_ref != 0), "the scalar quantizer produced an all-zero row"
        diff = np.abs(q_ref.astype(np.int32) - q_got.astype(np.int32))
        assert diff.max() <= QUANT_FLIP_MAX_SIZE, f"{kd.name(vdt)} {isa} n={n}: a quant is off by {diff.max()}"
        assert np.count_nonzero(diff) <= n * QUANT_FLIP_MAX_SHARE, (
            f"{kd.name(vdt)} {isa} n={n}: {np.count_nonzero(diff)} quants differ")
        if vdt == T.Q8_K:
            # bsums must be the exact sums of the path's own quants
            sums = q_got.astype(np.int32).reshape(-1, 16, 16).sum(axis=-1)
            assert np.array_equal(extra_got.astype(np.int32), sums), f"q8_K {isa}: bsums do not match quants"
        elif vdt == T.Q8_1:
            d = d_got.copy().view(np.float16).astype(np.float64).reshape(-1)
            s_ref, s_got = extra_ref.astype(np.float64).reshape(-1), extra_got.astype(np.float64).reshape(-1)
            flips = (q_got.astype(np.int64) - q_ref.astype(np.int64)).sum(axis=1)
            tol = np.abs(d * flips) + FP16_S_REL_BUDGET * np.abs(s_ref) + 2.0 ** -24
            assert np.all(np.abs(s_got - s_ref) <= tol), f"q8_1 {isa} n={n}: s fields differ"


# ---- dispatch ----

def expected_impls(isa):
    """The ISAs whose kernels may serve `isa`'s table: itself and those below it in the fallback chain."""
    chain = {"scalar": ["scalar"], "avx2": ["scalar", "avx2"], "avx512": ["scalar", "avx2", "avx512"],
             "avx512vnni": ["scalar", "avx2", "avx512", "avx512vnni"], "neon": ["scalar", "neon"]}
    return set(chain[isa])


@pytest.mark.parametrize("isa", _ops.available_isas())
def test_kernel_impls_name_a_kernel_for_every_type(isa):
    impls = _ops.kernel_impls(isa)
    assert set(impls) == {kd.name(t) for t in kd.DOT_TYPES}
    for tname, impl in impls.items():
        assert impl in expected_impls(isa), f"{isa} table: {tname} served by {impl!r}"


def test_available_isas_follow_cpu_features():
    f = _ops.cpu_features()
    avx2 = f["AVX2"] and f["FMA"] and f["F16C"]
    avx512 = avx2 and f["AVX512F"] and f["AVX512BW"] and f["AVX512VL"] and f["AVX512DQ"]
    want = ["scalar"] + ["avx2"] * avx2 + ["avx512"] * avx512 + ["avx512vnni"] * (avx512 and f["AVX512_VNNI"])
    want += ["neon"] * f["NEON"]
    assert _ops.available_isas() == want


def run_python(code, cpu=None):
    env = dict(os.environ)
    env.pop("LLAMAPY_CPU", None)
    if cpu is not None:
        env["LLAMAPY_CPU"] = cpu
    # the folder the llamapy under test was imported from: src/ in a checkout, site-packages for a wheel
    here = os.path.dirname(os.path.dirname(os.path.abspath(llamapy.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([here] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


REPORT = "from llamapy._kernels import _ops; print(_ops.current_isa(), _ops.best_isa())"


@pytest.mark.parametrize("isa", _ops.available_isas())
def test_llamapy_cpu_selects_the_path(isa):
    r = run_python(REPORT, cpu=isa)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == isa


def test_best_isa_is_the_default():
    r = run_python(REPORT)
    assert r.returncode == 0, r.stderr
    current, best = r.stdout.split()
    assert current == best == _ops.best_isa() == _ops.available_isas()[-1]


def last_line(text):
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def test_llamapy_cpu_bogus_fails_with_one_line():
    r = run_python(REPORT, cpu="bogus")
    assert r.returncode != 0
    msg = last_line(r.stderr)
    assert "bogus" in msg and "scalar" in msg, r.stderr  # names the bad value and the choices, on one line


@pytest.mark.parametrize("isa", [i for i in _ops.ISA_NAMES if i not in _ops.available_isas()])
def test_llamapy_cpu_unsupported_path_fails_with_one_line(isa):
    r = run_python(REPORT, cpu=isa)
    assert r.returncode != 0
    msg = last_line(r.stderr)
    assert isa in msg and "cannot run" in msg, r.stderr
