"""The gemma3 forward pass: its own ops against numpy, and Gemma 3 270M end to end against llama.cpp.

Reference logits come from llama.cpp (llama-cpp-python 0.3.36, classic attention, f16 KV cache, 2 threads),
made by `scripts/make_forward_refs.py gemma3` into tests/data/forward/gemma3_270m_q4_k_m.npz: four prompts
tokenized by llama.cpp with BOS, the last one (795 tokens) past the 512-token sliding window of the local
layers.

How close two implementations can get (measured on x86-64, 2 threads): the model is Q4_K/Q5_0/Q6_K/Q8_0
and every matmul input is quantized to q8_0 or q8_K, so one flipped rounding anywhere moves the final
logits by percent (max |diff| / max |logit| of the last position):
  - llama.cpp against itself, the prompt in one batch vs token by token: 0.053, 0.046, 0.050, 0.040
    (the p*_peer_self_err entries of the reference file);
  - ours against ourselves, AVX-512 VNNI vs AVX2 vs scalar kernels (same math, other summation orders):
    up to 0.062;
  - ours (best ISA) against llama.cpp's batch logits: 0.048, 0.041, 0.073, 0.045 (other ISAs: 0.031-0.083).
For scale, a wrong architecture detail is far outside that: RoPE base 1e6 on the local layers gives 0.36
on the long prompt, no sliding window 0.38. NOISE_BOUND = 0.12 is ~1.5x the worst measured noise. The
exactness is checked where it is achievable: GEGLU and sliding-window attention against numpy, and our own
batch / incremental / chunked / thread-count paths against each other, bit for bit.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llamapy._kernels import _ops
from llamapy.models import ModelFetchError, model_path

REFS = Path(__file__).parent / "data" / "forward" / "gemma3_270m_q4_k_m.npz"
NOISE_BOUND = 0.12  # max |ours - llama.cpp| / max |llama.cpp|: ~1.5x the measured noise (see above)
SURE_MARGIN = 1.0   # a reference argmax that beats the runner-up by this much must be reproduced


def f16(x):
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float64)


def rel_err(a, ref):
    return float(np.abs(a - ref).max() / np.abs(ref).max())


# ---- single ops --------------------------------------------------------------------------------

def gelu_tanh(x):
    x = np.asarray(x, np.float64)
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def test_gelu_tanh_matches_numpy():
    for x in (-9.5, -3.0, -0.5, 0.0, 1e-3, 0.7, 2.5, 8.0):
        assert abs(_ops.op_gelu_tanh(x) - gelu_tanh(x)) <= 2e-6 * max(1.0, abs(x))


def test_geglu_matches_ggml_table():
    rng = np.random.default_rng(5)
    g = np.concatenate([rng.standard_normal(3000).astype(np.float32) * 4,
                        np.array([-10.5, -10.0, -9.99, 9.99, 10.0, 12.0, 0.0], np.float32)])
    u = rng.standard_normal(g.size).astype(np.float32)
    got = _ops.op_geglu(g, u)
    # ggml: |g| >= 10 is exact (0 or g), else gelu(f16(g)) rounded to f16, then times u in float
    table = f16(gelu_tanh(f16(g)))
    want = np.where(g <= -10, 0.0, np.where(g >= 10, g.astype(np.float64), table)) * u
    # where gelu is not tiny the f16 table entry is the same: equal to float rounding of the product.
    # (For g below about -3, 1 + tanh cancels in float, as in ggml, and float64 differs: check loosely.)
    big = np.abs(table) >= 1e-2
    np.testing.assert_allclose(got[big], want[big], rtol=2e-7, atol=0)
    np.testing.assert_allclose(got[~big], want[~big], rtol=0, atol=1e-5 * np.abs(u).max())
    # and within f16 rounding of the exact GEGLU
    np.testing.assert_allclose(got, gelu_tanh(g) * u, rtol=0, atol=5e-3 * np.abs(u).max() * 4)


def swa_attention_reference(q, kc, vc, pos0, n_head, n_kv_head, hd, n_swa):
    k = kc.view(np.float16).astype(np.float64)
    v = vc.view(np.float16).astype(np.float64)
    out = np.zeros(q.shape)
    for t in range(q.shape[0]):
        p = pos0 + t
        lo = max(0, p - n_swa + 1) if n_swa else 0
        for h in range(n_head):
            kh = h // (n_head // n_kv_head)
            s = k[lo:p + 1, kh * hd:(kh + 1) * hd] @ f16(q[t, h * hd:(h + 1) * hd]) / np.sqrt(hd)
            e = np.exp(s - s.max())
            out[t, h * hd:(h + 1) * hd] = f16(e / e.sum()) @ v[lo:p + 1, kh * hd:(kh + 1) * hd]
    return out


@pytest.mark.parametrize("pos0,n_tok,n_swa", [(0, 8, 3), (10, 1, 4), (5, 6, 1), (3, 5, 100)])
def test_sliding_window_attention_matches_numpy(pos0, n_tok, n_swa):
    rng = np.random.default_rng(pos0 * 100 + n_tok * 10 + n_swa)
    n_head, n_kv_head, hd, n_ctx = 4, 1, 32, 16
    q = rng.standard_normal((n_tok, n_head * hd), dtype=np.float32) * 2
    kc = (rng.standard_normal((n_ctx, n_kv_head * hd)) * 2).astype(np.float16).view(np.uint16)
    vc = rng.standard_normal((n_ctx, n_kv_head * hd)).astype(np.float16).view(np.uint16)
    got = _ops.op_attention(q, kc, vc, pos0, n_head, n_kv_head, hd, 1, n_swa)
    want = swa_attention_reference(q, kc, vc, pos0, n_head, n_kv_head, hd, n_swa)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
    np.testing.assert_array_equal(_ops.op_attention(q, kc, vc, pos0, n_head, n_kv_head, hd, 3, n_swa), got)


def test_sliding_window_ignores_old_positions():
    rng = np.random.default_rng(9)
    q = rng.standard_normal((1, 64), dtype=np.float32)
    kc = rng.standard_normal((12, 64)).astype(np.float16).view(np.uint16)
    vc = rng.standard_normal((12, 64)).astype(np.float16).view(np.uint16)
    a = _ops.op_attention(q, kc, vc, 9, 1, 1, 64, 1, 4)      # position 9 sees 6..9
    kc2, vc2 = kc.copy(), vc.copy()
    kc2[:6], vc2[:6] = 0x3C00, 0x4000
    np.testing.assert_array_equal(_ops.op_attention(q, kc2, vc2, 9, 1, 1, 64, 1, 4), a)
    assert not np.array_equal(_ops.op_attention(q, kc2, vc2, 9, 1, 1, 64, 1, 0), a)


def test_unknown_architecture_is_one_line():
    from llamapy.model.arch import architecture
    with pytest.raises(ValueError) as e:
        architecture("mamba9")
    assert "'mamba9'" in str(e.value) and "\n" not in str(e.value)


def test_model_rejects_unknown_architecture():
    from llamapy.model import Model
    path = Path(__file__).parent / "data" / "tokenizer" / "ggml-vocab-gpt-2.gguf"   # general.architecture gpt2
    with pytest.raises(ValueError, match="unsupported model architecture 'gpt2'") as e:
        Model(path, n_ctx=16)
    assert "\n" not in str(e.value)


def test_gemma3_layer_pattern():
    from llamapy.model.arch import gemma3_layer_kinds
    local = gemma3_layer_kinds(18)
    assert [i for i, is_local in enumerate(local) if not is_local] == [5, 11, 17]


# ---- Gemma 3 270M end to end -------------------------------------------------------------------

@pytest.fixture(scope="module")
def refs():
    data = np.load(REFS)
    return [dict(tokens=data[f"p{i}_tokens"], last=data[f"p{i}_logits_last"], greedy=data[f"p{i}_greedy"],
                 margins=data[f"p{i}_margins"], self_err=float(data[f"p{i}_peer_self_err"]))
            for i in range(int(data["n_prompts"]))], data


def gemma_path():
    try:
        return model_path("gemma3", fetch=False)
    except ModelFetchError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def gemma():
    from llamapy.model import Model
    return Model(gemma_path(), n_ctx=1024, n_threads=2)


def test_config_from_gguf(gemma):
    c = gemma.config
    assert (c.arch, c.n_layer, c.n_embd, c.n_head, c.n_kv_head, c.head_dim, c.n_ff, c.n_vocab) == \
        ("gemma3", 18, 640, 4, 1, 256, 2048, 262144)
    assert c.rope_base == 1e6 and c.rope_neox and c.n_swa == 512 and c.final_logit_softcap == 0
    assert gemma.weights.output is gemma.weights.token_embd   # tied embeddings
    assert gemma._fwd.attn_scale == pytest.approx(1 / 16) and gemma._fwd.embd_scale == pytest.approx(640 ** 0.5)


@pytest.mark.parametrize("i", range(4))
def test_last_logits_match_llama_cpp(gemma, refs, i):
    r = refs[0][i]
    logits = gemma.eval(r["tokens"], 0)
    assert logits.shape == (1, gemma.n_vocab) and logits.dtype == np.float32
    err = rel_err(logits[0], r["last"])
    print(f"prompt {i}: {len(r['tokens'])} tokens, rel err vs llama.cpp {err:.4f} "
          f"(llama.cpp batch vs incremental {r['self_err']:.4f})")
    assert err < NOISE_BOUND
    assert int(logits[0].argmax()) == int(r["last"].argmax())
    assert len(set(np.argsort(logits[0])[-10:]) & set(np.argsort(r["last"])[-10:])) >= 8


def test_all_positions_argmax_match_llama_cpp(gemma, refs):
    r, data = refs[0][0], refs[1]
    logits = gemma.eval(r["tokens"], 0, all_logits=True)
    sure = data["p0_margin_all"] >= SURE_MARGIN
    np.testing.assert_array_equal(logits.argmax(-1)[sure], data["p0_argmax_all"][sure])
    np.testing.assert_array_equal(logits[-1], gemma.eval(r["tokens"], 0)[0])


@pytest.mark.parametrize("i", range(4))
def test_greedy_steps_match_llama_cpp(gemma, refs, i):
    """Teacher-forced over llama.cpp's 24 greedy steps: every confident argmax agrees, nearly all do."""
    r = refs[0][i]
    seq = np.concatenate([r["tokens"], r["greedy"][:-1]])
    n = len(r["tokens"])
    gemma.eval(seq[:n - 1], 0)
    logits = gemma.eval(seq[n - 1:], n - 1, all_logits=True)   # the prompt's last position on
    ours = logits.argmax(-1)
    sure = r["margins"] >= SURE_MARGIN
    np.testing.assert_array_equal(ours[sure], r["greedy"][sure])
    assert (ours == r["greedy"]).mean() >= 0.85


def test_greedy_decode_runs_incrementally(gemma, refs):
    """Free-running greedy decode, one token per eval; equals the teacher-forced argmaxes of its own output."""
    r = refs[0][1]
    toks = list(r["tokens"])
    logits = gemma.eval(toks, 0)[0]
    out = []
    for _ in range(12):
        out.append(int(logits.argmax()))
        logits = gemma.eval([out[-1]], len(toks) + len(out) - 1)[0]
    forced = gemma.eval(toks + out, 0, all_logits=True)[len(toks) - 1:-1].argmax(-1)
    assert out == list(forced)


@pytest.mark.parametrize("i", [0, 2])
def test_batch_and_incremental_agree(gemma, refs, i):
    toks = refs[0][i]["tokens"]
    batch = gemma.eval(toks, 0, all_logits=True)
    step = np.concatenate([gemma.eval([t], p) for p, t in enumerate(toks)])
    # llama.cpp's two attention orders (batch, one token), as its own logits differ (peer_self_err)
    np.testing.assert_array_equal(step[0], batch[0])
    assert rel_err(step, batch) < NOISE_BOUND


def test_batch_and_incremental_agree_past_the_window(gemma, refs):
    """The long prompt: first 700 tokens in one batch, the rest token by token (local layers now drop
    positions from their window one at a time) against the whole prompt in one batch."""
    toks = refs[0][3]["tokens"]
    assert len(toks) > 512 + 100
    whole = gemma.eval(toks, 0)[0]
    gemma.eval(toks[:700], 0)
    for p in range(700, len(toks)):
        last = gemma.eval(toks[p:p + 1], p)[0]
    # one-token attention sums in another order (as llama.cpp's): rounding apart, where a wrong window
    # would be 0.38 apart (see the top of this file)
    assert rel_err(last, whole) < NOISE_BOUND
    assert last.argmax() == whole.argmax()


def test_chunked_batches_agree(refs):
    from llamapy.model import Model
    path = gemma_path()
    small = Model(path, n_ctx=64, n_batch=5, n_threads=2)
    big = Model(path, n_ctx=64, n_batch=64, n_threads=2)
    toks = refs[0][1]["tokens"]
    assert rel_err(small.eval(toks, 0, all_logits=True), big.eval(toks, 0, all_logits=True)) < 1e-5


def test_thread_counts_agree(gemma, refs):
    toks = refs[0][1]["tokens"]
    one = gemma.eval(toks, 0, all_logits=True, n_threads=1)
    two = gemma.eval(toks, 0, all_logits=True, n_threads=2)
    np.testing.assert_array_equal(one, two)
