"""The threaded matmul: Y[i, r] = dot(W row r, activations of X row i), for every type and kernel path.

Reference: float64 numpy product of the decoded weights with the activations as that path quantized
them. The matmul must also equal vec_dot on the same bytes bit for bit, whatever the thread count.
"""
import numpy as np
import pytest

import kernel_data as kd
from llamapy._kernels import _ops

T = kd.T

# Each output is one dot product of <= 8 blocks (or 67 float elements): a few float roundings per block,
# each 2^-24 of the magnitude sum|terms|. This budget is far above that and far below any wrong term.
MATMUL_REL_BUDGET = 1e-5

ROW_COUNTS = (1, 7, 37)   # odd counts: uneven thread split, a partial row block of 16
TOKENS = (1, 5)


def cols_for(t):
    return 67 if t in kd.FLOAT_TYPES else 3 * kd.block_elems(t)


def make_case(t, rows, n_tok, seed):
    rng = np.random.default_rng(seed)
    cols = cols_for(t)
    W = np.stack([kd.random_weights(t, cols, rng) for _ in range(rows)])
    X = np.stack([kd.random_floats(cols, rng) for _ in range(n_tok)])
    return W, X


def run_matmul(t, W, X, n_threads, isa):
    Y = np.full((X.shape[0], W.shape[0]), np.nan, dtype=np.float32)
    work = np.zeros(_ops.matmul_work_size(int(t), X.shape[1], X.shape[0]), dtype=np.uint8)
    _ops.matmul(int(t), W, X, Y, work, n_threads=n_threads, isa=isa)
    return Y


def activations(t, x, isa):
    """x as the path quantizes it for t's dot product (f32 weights take the floats as they are)."""
    vdt = kd.vec_dot_type(t)
    if vdt == T.F32:
        return x.view(np.uint8).copy()
    out = np.zeros(x.size // kd.block_elems(vdt) * kd.block_bytes(vdt), dtype=np.uint8)
    _ops.quantize_activations(int(vdt), x, out, isa=isa)
    return out


@pytest.mark.parametrize("isa", _ops.available_isas())
@pytest.mark.parametrize("t", kd.DOT_TYPES, ids=kd.name)
def test_matmul_matches_reference(t, isa):
    for rows in ROW_COUNTS:
        for n_tok in TOKENS:
            W, X = make_case(t, rows, n_tok, seed=100 * int(t) + rows + n_tok)
            Y1 = run_matmul(t, W, X, 1, isa)
            Y2 = run_matmul(t, W, X, 2, isa)
            # threads split rows, never a dot product, so results must not depend on the thread count
            assert np.array_equal(Y1.view(np.uint32), Y2.view(np.uint32)), f"{kd.name(t)} {isa}: 1 vs 2 threads"
            for i in range(n_tok):
                a = activations(t, X[i], isa)
                assert np.any(kd.decode_activations(kd.vec_dot_type(t), a) != 0), "all-zero activations"
                for r in range(rows):
                    want, magnitude = kd.reference_dot(t, W[r], a)
                    assert abs(Y1[i, r] - want) <= MATMUL_REL_BUDGET * magnitude, (
                        f"{kd.name(t)} {isa} rows={rows} n_tok={n_tok} Y[{i},{r}]={Y1[i, r]!r} want {want!r}")
                    # same quantizer, same kernel: bit-identical to a single vec_dot
                    dot = _ops.vec_dot(int(t), X.shape[1], W[r], a, isa=isa)
                    assert np.float32(dot).view(np.uint32) == Y1[i, r].view(np.uint32)


def test_matmul_more_threads_than_rows():
    t = T.Q4_0
    W, X = make_case(t, 3, 2, seed=7)
    Y1 = run_matmul(t, W, X, 1, None)
    Y8 = run_matmul(t, W, X, 8, None)
    assert np.array_equal(Y1.view(np.uint32), Y8.view(np.uint32))


def test_matmul_rejects_a_strided_output():
    """Y must be C-contiguous: a column slice of a wider array is refused, not written through."""
    t = T.Q8_0
    W, X = make_case(t, 5, 3, seed=8)
    big = np.full((3, 9), -7.0, dtype=np.float32)
    work = np.zeros(_ops.matmul_work_size(int(t), X.shape[1], 3), dtype=np.uint8)
    with pytest.raises(ValueError):
        _ops.matmul(int(t), W, X, big[:, 2:7], work, n_threads=2)
    assert np.all(big == -7.0)


def test_matmul_empty_inputs_are_fine():
    t = T.Q4_0
    cols = cols_for(t)
    W = np.zeros((0, kd.block_bytes(t) * cols // kd.block_elems(t)), dtype=np.uint8)
    X = np.ones((2, cols), dtype=np.float32)
    Y = np.zeros((2, 0), dtype=np.float32)
    _ops.matmul(int(t), W, X, Y, np.zeros(_ops.matmul_work_size(int(t), cols, 2), dtype=np.uint8))


# ---- bad shapes ----

def good_args(t=T.Q4_0, rows=4, n_tok=2):
    W, X = make_case(t, rows, n_tok, seed=9)
    Y = np.zeros((n_tok, rows), dtype=np.float32)
    work = np.zeros(_ops.matmul_work_size(int(t), X.shape[1], n_tok), dtype=np.uint8)
    return W, X, Y, work


def test_matmul_good_args_work():
    W, X, Y, work = good_args()
    _ops.matmul(int(T.Q4_0), W, X, Y, work)


def test_matmul_rejects_weight_rows_of_the_wrong_size():
    W, X, Y, work = good_args()
    with pytest.raises(ValueError, match="weight rows"):
        _ops.matmul(int(T.Q4_0), np.ascontiguousarray(W[:, :-1]), X, Y, work)


def test_matmul_rejects_columns_that_are_not_whole_blocks():
    W, X, Y, work = good_args()
    with pytest.raises(ValueError, match="multiple"):
        _ops.matmul(int(T.Q4_0), W, np.ascontiguousarray(X[:, :-1]), Y, work)


@pytest.mark.parametrize("shape", [(2, 5), (3, 4), (1, 4)], ids=str)
def test_matmul_rejects_an_output_of_the_wrong_shape(shape):
    W, X, _, work = good_args()
    with pytest.raises(ValueError, match="output must be"):
        _ops.matmul(int(T.Q4_0), W, X, np.zeros(shape, dtype=np.float32), work)


def test_matmul_rejects_a_short_work_buffer():
    W, X, Y, work = good_args()
    with pytest.raises(ValueError, match="work buffer"):
        _ops.matmul(int(T.Q4_0), W, X, Y, work[:-1])


@pytest.mark.parametrize("t", [T.Q8_K, T.IQ2_XXS, 99], ids=["q8_K", "iq2_xxs", "99"])
def test_matmul_rejects_types_without_a_dot_product(t):
    X = np.ones((1, 256), dtype=np.float32)
    W = np.zeros((1, 292), dtype=np.uint8)
    with pytest.raises(ValueError):
        _ops.matmul(int(t), W, X, np.zeros((1, 1), dtype=np.float32), np.zeros(1024, dtype=np.uint8))


def test_matmul_rejects_an_unknown_path():
    W, X, Y, work = good_args()
    with pytest.raises(ValueError, match="unknown kernel path"):
        _ops.matmul(int(T.Q4_0), W, X, Y, work, isa="sse9")


@pytest.mark.parametrize("isa", _ops.available_isas())
@pytest.mark.parametrize("types", [(T.Q4_1, T.Q4_1, T.Q4_1), (T.Q5_0, T.Q8_0), (T.Q4_K, T.Q6_K), (T.Q5_0, T.Q4_K, T.F16)],
                         ids=lambda ts: "+".join(kd.name(t) for t in ts))
def test_matmul_group_gives_each_product_the_bits_of_matmul(types, isa):
    """Products sharing one input in one call (q, k, v; gate, up), including types whose activations are
    quantized differently (run one after another), equal separate matmul calls bit for bit."""
    cols = 512
    rng = np.random.default_rng(len(types))
    for n_tok in (1, 5):
        Ws = [np.stack([kd.random_weights(t, cols, rng) for _ in range(rows)]) for t, rows in zip(types, (37, 16, 5))]
        X = np.stack([kd.random_floats(cols, rng) for _ in range(n_tok)])
        outs = _ops.matmul_group([(int(t), W) for t, W in zip(types, Ws)], X, n_threads=2, isa=isa)
        for t, W, Y in zip(types, Ws, outs):
            want = run_matmul(t, W, X, 2, isa)
            assert np.array_equal(Y.view(np.uint32), want.view(np.uint32)), f"{kd.name(t)} n_tok={n_tok}"
