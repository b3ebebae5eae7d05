"""The 4-row dot kernels (vec_dot4): four weight rows against one activation row at once.

matmul uses them for groups of 4 rows and vec_dot for the rest, so each of the 4 results must carry
exactly the bits the same path's vec_dot gives for that row (then no grouping or thread count changes an
output), and through it stay within the scalar reference's budget.
"""
import numpy as np
import pytest

import kernel_data as kd
from llamapy._kernels import _ops
from test_kernels_isa import SIMD_REL_BUDGET, quantized_activations

T = kd.T
ISAS = _ops.available_isas()

# Paths that must have 4-row kernels (so these tests cannot pass by finding none).
EXPECTED = {
    "avx512": (T.Q5_0, T.Q5_1),
    "avx512vnni": (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.IQ4_NL, T.Q4_K),
}
BLOCK_COUNTS = (1, 2, 3, 4, 5, 7, 8, 17, 18, 20, 64)


def with_x4(isa):
    return [t for t in kd.DOT_TYPES if t not in kd.FLOAT_TYPES
            and _ops.vec_dot4(int(t), 0, np.zeros((4, 0), np.uint8), np.zeros(0, np.uint8), isa=isa) is not None]


CASES = [pytest.param(t, isa, id=f"{kd.name(t)}-{isa}") for isa in ISAS for t in with_x4(isa)]


@pytest.mark.parametrize("isa", [isa for isa in EXPECTED if isa in ISAS])
def test_expected_paths_have_4_row_kernels(isa):
    assert set(EXPECTED[isa]) <= set(with_x4(isa))


@pytest.mark.skipif(not CASES, reason="no 4-row kernels on this CPU")
@pytest.mark.parametrize("t,isa", CASES)
def test_vec_dot4_is_vec_dot_row_by_row(t, isa):
    rng = np.random.default_rng(7000 + int(t))
    vdt = kd.vec_dot_type(t)
    for nb in BLOCK_COUNTS:
        n = nb * kd.block_elems(t)
        for a in (quantized_activations(vdt, n, rng), kd.random_activations(vdt, n, rng)):
            W = np.stack([kd.random_weights(t, n, rng) for _ in range(4)])
            got = _ops.vec_dot4(int(t), n, W, a, isa=isa)
            for r in range(4):
                one = np.float32(_ops.vec_dot(int(t), n, W[r], a, isa=isa))
                assert got[r].view(np.uint32) == one.view(np.uint32), (
                    f"{kd.name(t)} {isa} n={n} row {r}: vec_dot4 {got[r]!r}, vec_dot {one!r}")
                want = _ops.vec_dot(int(t), n, W[r], a, isa="scalar")
                _, magnitude = kd.reference_dot(t, W[r], a)
                assert abs(got[r] - want) <= SIMD_REL_BUDGET[t] * magnitude, (
                    f"{kd.name(t)} {isa} n={n} row {r}: got {got[r]!r}, scalar {want!r}")


@pytest.mark.skipif(not CASES, reason="no 4-row kernels on this CPU")
@pytest.mark.parametrize("t,isa", CASES)
def test_matmul_with_4_row_groups_and_leftover_rows(t, isa):
    """Row counts around multiples of 4 and of the 16-row blocks, and some that split into several chunks
    per thread: every output is vec_dot's bits, with 1 and 2 threads."""
    rng = np.random.default_rng(7500 + int(t))
    n = 18 * kd.block_elems(t)
    vdt = kd.vec_dot_type(t)
    for rows in (3, 4, 5, 17, 35, 150):
        W = np.stack([kd.random_weights(t, n, rng) for _ in range(rows)])
        X = kd.random_floats(2 * n, rng).reshape(2, n)
        work = np.zeros(_ops.matmul_work_size(int(t), n, 2), dtype=np.uint8)
        for n_threads in (1, 2):
            Y = np.zeros((2, rows), dtype=np.float32)
            _ops.matmul(int(t), W, X, Y, work, n_threads=n_threads, isa=isa)
            for i in range(2):
                a = np.zeros(n // kd.block_elems(vdt) * kd.block_bytes(vdt), dtype=np.uint8)
                _ops.quantize_activations(int(vdt), X[i], a, isa=isa)
                want = np.array([_ops.vec_dot(int(t), n, W[r], a, isa=isa) for r in range(rows)], dtype=np.float32)
                assert np.array_equal(Y[i].view(np.uint32), want.view(np.uint32)), (
                    f"{kd.name(t)} {isa} rows={rows} threads={n_threads} token {i}")


# The 4-row x 2-token tiles for prompt batches (vec_dot4x2), where a path has them.
EXPECTED_TILES = {
    "avx512": (T.Q5_0, T.Q6_K),
    "avx512vnni": (T.Q4_0, T.Q4_1, T.Q5_0, T.Q8_0, T.IQ4_NL, T.Q4_K, T.Q6_K),
}


def with_tile(isa):
    return [t for t in kd.DOT_TYPES if t not in kd.FLOAT_TYPES
            and _ops.vec_dot4x2(int(t), 0, np.zeros((4, 0), np.uint8), np.zeros((2, 0), np.uint8), isa=isa) is not None]


TILE_CASES = [pytest.param(t, isa, id=f"{kd.name(t)}-{isa}") for isa in ISAS for t in with_tile(isa)]


@pytest.mark.parametrize("isa", [isa for isa in EXPECTED_TILES if isa in ISAS])
def test_expected_paths_have_tile_kernels(isa):
    assert set(EXPECTED_TILES[isa]) <= set(with_tile(isa))


@pytest.mark.parametrize("t,isa", TILE_CASES)
def test_vec_dot4x2_is_vec_dot_element_by_element(t, isa):
    rng = np.random.default_rng(8000 + int(t))
    vdt = kd.vec_dot_type(t)
    for nb in BLOCK_COUNTS:
        n = nb * kd.block_elems(t)
        W = np.stack([kd.random_weights(t, n, rng) for _ in range(4)])
        A = np.stack([quantized_activations(vdt, n, rng), kd.random_activations(vdt, n, rng)])
        got = _ops.vec_dot4x2(int(t), n, W, A, isa=isa)
        for tok in range(2):
            for r in range(4):
                one = np.float32(_ops.vec_dot(int(t), n, W[r], A[tok], isa=isa))
                assert got[tok, r].view(np.uint32) == one.view(np.uint32), (
                    f"{kd.name(t)} {isa} n={n} token {tok} row {r}: tile {got[tok, r]!r}, vec_dot {one!r}")
