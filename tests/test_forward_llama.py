"""The llama-architecture forward pass: single ops against numpy, and SmolLM2 end to end against llama.cpp.

Reference logits come from llama.cpp (llama-cpp-python, classic attention, f16 KV cache), made by
scripts/make_forward_refs.py into tests/data/forward/smollm2_q4_1.npz.

SmolLM2-135M Q4_1 is chaotic at rounding level (perturbing the norm weights by 1e-7 moves the logits by up
to 6% of the largest), so agreeing with llama.cpp means computing what it computes, in its order, on its
x86 build: activations quantized as its AVX code does (127 / amax, halves to even), q4_1 / q8_0 dots with
one 8-lane fma accumulator per row, its RoPE (contracted products), its exp (ggml_v_expf) in softmax and
SiLU, and the f16 attention dots in the order of its GEMM for a prompt batch and of ggml_vec_dot_f16 for
one token. Every one of our ISA paths (scalar, AVX2, AVX-512) does so, and the logits come out equal to
llama.cpp's bit for bit, for a batch and token by token.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llamapy._kernels import _ops
from llamapy.models import ModelFetchError, model_path

REFS = Path(__file__).parent / "data" / "forward" / "smollm2_q4_1.npz"
ISSUE_BOUND = 1e-3  # max |ours - llama.cpp| / max |llama.cpp| asked for the first step (we are at 0)
NOISE_BOUND = 0.1   # llama.cpp's own batch vs token-by-token logits differ by ~3% of the largest


def f16(x):
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float64)


# ---- single ops --------------------------------------------------------------------------------

def test_rmsnorm_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 576), dtype=np.float32) * 3
    w = rng.standard_normal(576, dtype=np.float32)
    x64 = x.astype(np.float64)
    want = x64 / np.sqrt((x64 * x64).mean(-1, keepdims=True) + 1e-5) * w
    np.testing.assert_allclose(_ops.op_rmsnorm(x, w, 1e-5), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("neox", [False, True])
def test_rope_matches_numpy(neox):
    rng = np.random.default_rng(1)
    n_head, head_dim, n_dims, base = 3, 64, 64, 100000.0
    pos = np.array([0, 1, 7, 100, 1000], np.int32)
    x = rng.standard_normal((len(pos), n_head * head_dim), dtype=np.float32)
    got = x.copy()
    _ops.op_rope(got, pos, n_head, head_dim, n_dims, base, neox)
    v = x.astype(np.float64).reshape(len(pos), n_head, head_dim)
    half = n_dims // 2
    a_idx = np.arange(half) if neox else 2 * np.arange(half)
    b_idx = a_idx + half if neox else a_idx + 1
    ang = pos[:, None, None] * base ** (-2.0 * np.arange(half) / n_dims)
    a, b = v[..., a_idx], v[..., b_idx]
    want = v.copy()
    want[..., a_idx] = a * np.cos(ang) - b * np.sin(ang)
    want[..., b_idx] = a * np.sin(ang) + b * np.cos(ang)
    # float32 angles: theta = pos * scale^i loses ~1e-7 * pos relative, so allow pos-sized slack
    np.testing.assert_allclose(got, want.reshape(x.shape), rtol=0, atol=2e-4)
    np.testing.assert_array_equal(got[0], x[0])   # position 0 is the identity


def test_rope_partial_dims_leave_the_rest():
    x = np.random.default_rng(2).standard_normal((2, 2 * 64), dtype=np.float32)
    got = x.copy()
    _ops.op_rope(got, np.array([3, 4], np.int32), 2, 64, 32, 10000.0, False)
    np.testing.assert_array_equal(got.reshape(2, 2, 64)[..., 32:], x.reshape(2, 2, 64)[..., 32:])


@pytest.mark.parametrize("n", [64, 128, 256])
def test_fwht_is_the_orthonormal_hadamard_transform(n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((3, 2 * n), dtype=np.float32)
    h = np.ones((1, 1))
    while len(h) < n:
        h = np.block([[h, h], [h, -h]])
    got = x.copy()
    _ops.op_fwht(got, n)
    want = (x.reshape(-1, n).astype(np.float64) @ h.T / np.sqrt(n)).reshape(x.shape)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(x).max() * np.log2(n))
    _ops.op_fwht(got, n)                                   # its own inverse
    np.testing.assert_allclose(got, x, rtol=0, atol=1e-5 * np.abs(x).max() * np.log2(n))
    with pytest.raises(ValueError):
        _ops.op_fwht(x, 48)


def test_rope_rejects_bad_dims():
    x = np.zeros((1, 64), np.float32)
    with pytest.raises(ValueError):
        _ops.op_rope(x, np.zeros(1, np.int32), 1, 64, 63, 10000.0, False)
    with pytest.raises(ValueError):
        _ops.op_rope(x, np.zeros(1, np.int32), 1, 64, 66, 10000.0, False)


def test_swiglu_matches_numpy():
    rng = np.random.default_rng(3)
    g = rng.standard_normal(1000, dtype=np.float32) * 5
    u = rng.standard_normal(1000, dtype=np.float32)
    g64 = g.astype(np.float64)
    np.testing.assert_allclose(_ops.op_swiglu(g, u), g64 / (1 + np.exp(-g64)) * u, rtol=2e-6, atol=1e-7)


def attention_reference(q, kc, vc, pos0, n_head, n_kv_head, hd):
    """float64 attention with llama.cpp's roundings: q and the probabilities go through f16."""
    k = kc.view(np.float16).astype(np.float64)
    v = vc.view(np.float16).astype(np.float64)
    out = np.zeros(q.shape)
    for t in range(q.shape[0]):
        n_kv = pos0 + t + 1
        for h in range(n_head):
            kh = h // (n_head // n_kv_head)
            qh = f16(q[t, h * hd:(h + 1) * hd])
            s = k[:n_kv, kh * hd:(kh + 1) * hd] @ qh / np.sqrt(hd)
            p = np.exp(s - s.max())
            p = f16(p / p.sum())
            out[t, h * hd:(h + 1) * hd] = p @ v[:n_kv, kh * hd:(kh + 1) * hd]
    return out


@pytest.mark.parametrize("pos0,n_tok", [(0, 1), (0, 6), (9, 1), (5, 4)])
def test_attention_matches_numpy(pos0, n_tok):
    rng = np.random.default_rng(pos0 * 10 + n_tok)
    n_head, n_kv_head, hd, n_ctx = 6, 2, 64, 16
    q = rng.standard_normal((n_tok, n_head * hd), dtype=np.float32) * 2
    kc = (rng.standard_normal((n_ctx, n_kv_head * hd)) * 2).astype(np.float16).view(np.uint16)
    vc = rng.standard_normal((n_ctx, n_kv_head * hd)).astype(np.float16).view(np.uint16)
    got = _ops.op_attention(q, kc, vc, pos0, n_head, n_kv_head, hd, 1)
    np.testing.assert_allclose(got, attention_reference(q, kc, vc, pos0, n_head, n_kv_head, hd), rtol=0, atol=2e-5)
    np.testing.assert_array_equal(_ops.op_attention(q, kc, vc, pos0, n_head, n_kv_head, hd, 3), got)


def test_attention_ignores_future_positions():
    rng = np.random.default_rng(7)
    q = rng.standard_normal((2, 128), dtype=np.float32)
    kc = rng.standard_normal((8, 64)).astype(np.float16).view(np.uint16)
    vc = rng.standard_normal((8, 64)).astype(np.float16).view(np.uint16)
    a = _ops.op_attention(q, kc, vc, 2, 2, 1, 64)
    kc2, vc2 = kc.copy(), vc.copy()
    kc2[4:], vc2[4:] = 0x3C00, 0x4000   # rows past the last query position (3) must not matter
    np.testing.assert_array_equal(_ops.op_attention(q, kc2, vc2, 2, 2, 1, 64), a)


# ---- SmolLM2 end to end ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def refs():
    data = np.load(REFS)
    return [dict(tokens=data[f"p{i}_tokens"], last=data[f"p{i}_logits_last"], greedy=data[f"p{i}_greedy"],
                 margins=data[f"p{i}_margins"], all=data[f"p{i}_logits_all"])
            for i in range(int(data["n_prompts"]))]


@pytest.fixture(scope="module")
def smollm2():
    from llamapy.model import Model
    try:
        path = model_path("smollm2", fetch=False)
    except ModelFetchError as e:
        pytest.skip(str(e))
    return Model(path, n_ctx=128, n_threads=2)


def rel_err(a, ref):
    return float(np.abs(a - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("i", range(3))
def test_first_step_logits_match_llama_cpp(smollm2, refs, i):
    r = refs[i]
    logits = smollm2.eval(r["tokens"], 0)
    assert logits.shape == (1, smollm2.n_vocab) and logits.dtype == np.float32
    assert rel_err(logits[0], r["last"]) < ISSUE_BOUND
    np.testing.assert_array_equal(logits[0], r["last"])      # in fact bit for bit


@pytest.mark.parametrize("isa", _ops.available_isas())
def test_every_kernel_path_gives_llama_cpps_bits(smollm2, refs, isa):
    """Prompt batch and one-token step on each ISA this CPU runs (scalar twin included)."""
    r = refs[1]
    before = _ops.current_isa()
    _ops.set_isa(isa)
    try:
        np.testing.assert_array_equal(smollm2.eval(r["tokens"], 0)[0], r["last"])
        step = smollm2.eval([int(r["greedy"][0])], len(r["tokens"]))[0]
    finally:
        _ops.set_isa(before)
    assert int(step.argmax()) == int(r["greedy"][1])


def test_all_positions_match_llama_cpp(smollm2, refs):
    r = refs[0]
    logits = smollm2.eval(r["tokens"], 0, all_logits=True)
    assert logits.shape == r["all"].shape
    np.testing.assert_array_equal(logits, r["all"])


@pytest.mark.parametrize("i", range(3))
def test_greedy_decode_matches_llama_cpp(smollm2, refs, i):
    """Prompt in one batch, then one token per eval, as llama.cpp made its 24 greedy tokens: all equal."""
    r = refs[i]
    toks = list(r["tokens"])
    logits = smollm2.eval(toks, 0)[0]
    out = []
    for _ in range(len(r["greedy"])):
        out.append(int(logits.argmax()))
        logits = smollm2.eval([out[-1]], len(toks) + len(out) - 1)[0]
    assert out == list(r["greedy"])


def test_greedy_decode_runs_incrementally(smollm2, refs):
    """Free-running greedy decode, one token per eval; equals the teacher-forced argmaxes of its own output."""
    r = refs[2]
    toks = list(r["tokens"])
    logits = smollm2.eval(toks, 0)[0]
    out = []
    for _ in range(16):
        out.append(int(logits.argmax()))
        logits = smollm2.eval([out[-1]], len(toks) + len(out) - 1)[0]
    forced = smollm2.eval(toks + out, 0, all_logits=True)[len(toks) - 1:-1].argmax(-1)
    assert out == list(forced)


@pytest.mark.parametrize("i", range(3))
def test_batch_and_incremental_agree(smollm2, refs, i):
    """Token by token, attention sums in llama.cpp's one-token order: the same model up to rounding noise."""
    toks = refs[i]["tokens"]
    batch = smollm2.eval(toks, 0, all_logits=True)
    step = np.concatenate([smollm2.eval([t], p) for p, t in enumerate(toks)])
    np.testing.assert_array_equal(step[0], batch[0])     # one position: nothing to sum in attention
    assert rel_err(step, batch) < NOISE_BOUND
    assert (step.argmax(-1) == batch.argmax(-1)).mean() >= 0.8


def test_chunked_batches_agree(refs):
    """Chunks of at least two tokens sum in the batch order whatever their size: the same bits."""
    from llamapy.model import Model
    try:
        path = model_path("smollm2", fetch=False)
    except ModelFetchError as e:
        pytest.skip(str(e))
    small = Model(path, n_ctx=64, n_batch=4, n_threads=2)
    big = Model(path, n_ctx=64, n_batch=64, n_threads=2)
    toks = refs[1]["tokens"][:16]
    np.testing.assert_array_equal(small.eval(toks, 0, all_logits=True), big.eval(toks, 0, all_logits=True))
    np.testing.assert_array_equal(small.eval(toks, 0), big.eval(toks, 0))


def test_thread_counts_agree(smollm2, refs):
    toks = refs[1]["tokens"]
    one = smollm2.eval(toks, 0, all_logits=True, n_threads=1)
    two = smollm2.eval(toks, 0, all_logits=True, n_threads=2)
    np.testing.assert_array_equal(one, two)


def test_eval_rejects_bad_input(smollm2):
    with pytest.raises(ValueError):
        smollm2.eval([1, 2, 3], smollm2.n_ctx - 2)
    with pytest.raises(ValueError):
        smollm2.eval([smollm2.n_vocab], 0)
    with pytest.raises(ValueError):
        smollm2.eval([-1], 0)
    with pytest.raises(ValueError):
        smollm2.eval([], 0)


def test_config_from_gguf(smollm2):
    c = smollm2.config
    assert (c.arch, c.n_layer, c.n_embd, c.n_head, c.n_kv_head, c.head_dim, c.n_ff, c.n_vocab) == \
        ("llama", 30, 576, 9, 3, 64, 1536, 49152)
    assert c.rope_base == 100000.0 and not c.rope_neox and abs(c.rms_eps - 1e-5) < 1e-9
    assert smollm2.weights.output is smollm2.weights.token_embd   # tied embeddings
