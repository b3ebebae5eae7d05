"""KV cache types (-ctk/-ctv f32|f16|q8_0, Llama(type_k=..., type_v=...)): the cache ops against numpy
references of ggml's numerics; a tiny F32 model's logits against llama.cpp's with the same cache types
(tests/data/generate/kvcache_tiny.npz), close enough to tell every pair apart; and SmolLM2 generation against
llama.cpp's greedy tokens with the same cache types (tests/data/generate/kvcache.json). Both files are made by
scripts/make_kvcache_refs.py with llama-cpp-python 0.3.36, flash attention off.

What llama.cpp does on its classic attention path: K is stored as f32, f16 or q8_0 and Q meets it in K's
dot-product partner type (f32 as is, f16 rounded, q8_0 quantized as ggml's CPU backend quantizes rows: d =
amax/127, x * 127/amax rounded half to even on x86); V is f32 or f16 (the softmax output is rounded to f16
for an f16 V); a quantized V cache needs flash attention, and without it llama.cpp refuses to make a context.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llamapy._kernels import _ops
from llamapy.model.kvcache import kv_cache_type
from llamapy.models import model_path

from tiny_models import QWEN2_TINY, tiny_prompt, write_tiny_qwen2

REFS = json.loads((Path(__file__).parent / "data" / "generate" / "kvcache.json").read_text())
PAIRS = [("f16", "f16"), ("f32", "f16"), ("q8_0", "f16"), ("f16", "f32"), ("f32", "f32"), ("q8_0", "f32")]
Q8 = np.dtype([("d", "<f2"), ("qs", "i1", 32)])


# ---- numpy references ----

def q8_0_cpu(x: np.ndarray) -> np.ndarray:
    """ggml's x86 quantize_row_q8_0 (the AVX code llama.cpp's CPU backend runs): blocks of 32."""
    x = x.astype(np.float32).reshape(-1, 32)
    amax = np.abs(x).max(axis=1)
    d = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        idv = np.where(amax != 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    out = np.zeros(x.shape[0], Q8)
    out["d"] = d.astype(np.float16)
    out["qs"] = np.rint((x * idv[:, None]).astype(np.float32)).astype(np.int8)   # rint: halves to even
    return out


def reference(q, kc, vc, pos0, n_head, n_kv_head, hd, type_k, type_v):
    """Float64 attention doing what llama.cpp does with these cache types (q rows in K's partner type)."""
    n, n_ctx = q.shape[0], kc.shape[0]
    group = n_head // n_kv_head
    out = np.zeros((n, n_head * hd))
    scale = 1.0 / np.sqrt(np.float32(hd))
    for t in range(n):
        p_ = pos0 + t
        for h in range(n_head):
            kh = h // group
            qh = q[t, h * hd:(h + 1) * hd]
            if type_k == "q8_0":
                qb = q8_0_cpu(qh)
                kb = kc[:p_ + 1].view(Q8).reshape(p_ + 1, -1)[:, kh * hd // 32:(kh + 1) * hd // 32]
                s = (kb["qs"].astype(np.int64) * qb["qs"][None].astype(np.int64)).sum(-1)
                scores = (s * (kb["d"].astype(np.float64) * qb["d"].astype(np.float64)[None])).sum(-1)
            else:
                k = kc[:p_ + 1, kh * hd:(kh + 1) * hd].astype(np.float64)
                qq = qh.astype(np.float16) if type_k == "f16" else qh
                scores = k @ qq.astype(np.float64)
            scores = scores * np.float32(scale)
            w = np.exp(scores - scores.max())
            w /= w.sum()
            if type_v == "f16":
                w = w.astype(np.float32).astype(np.float16)
            vh = vc[:p_ + 1, kh * hd:(kh + 1) * hd].astype(np.float64)
            out[t, h * hd:(h + 1) * hd] = w.astype(np.float64) @ vh
    return out


def caches(rng, n_ctx, dkv, type_k, type_v):
    k = (rng.standard_normal((n_ctx, dkv)) * 2).astype(np.float32)
    v = rng.standard_normal((n_ctx, dkv)).astype(np.float32)
    kc = {"f32": k, "f16": k.astype(np.float16),
          "q8_0": np.stack([_ops.op_kv_store("q8_0", row) for row in k])}[type_k]
    vc = {"f32": v, "f16": v.astype(np.float16)}[type_v]
    return kc, vc


# ---- the cache ops ----

def test_q8_0_store_is_ggml_cpu_quantizer():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(32 * 40) * rng.choice([0.01, 1, 300], 32 * 40)).astype(np.float32)
    # exact halves: with amax 127 the scale is 1, so 2.5 -> 2 and -3.5 -> -4 (the scalar reference's
    # roundf would give 3 and -4); and an all-zero block
    x[:32] = 0
    x[32:64] = np.float32(0.25)
    x[32], x[33], x[34], x[35] = 127, 2.5, -3.5, 0.5
    got = _ops.op_kv_store("q8_0", x).view(Q8)
    want = q8_0_cpu(x)
    np.testing.assert_array_equal(got["d"].view(np.uint16), want["d"].view(np.uint16))
    np.testing.assert_array_equal(got["qs"], want["qs"])
    assert list(got["qs"][1][:4]) == [127, 2, -4, 0]
    assert _ops.op_kv_store("f16", x).view(np.float16).tolist() == x.astype(np.float16).tolist()
    assert _ops.op_kv_store(0, x).view(np.float32).tolist() == x.tolist()
    with pytest.raises(ValueError):
        _ops.op_kv_store("q8_0", x[:40])
    with pytest.raises(ValueError):
        _ops.op_kv_store("q4_0", x)


@pytest.mark.parametrize("type_k, type_v", PAIRS)
def test_attention_matches_reference(type_k, type_v):
    rng = np.random.default_rng(1)
    n_head, n_kv_head, hd, n_ctx, pos0, n = 6, 2, 64, 24, 5, 7
    q = rng.standard_normal((n, n_head * hd)).astype(np.float32)
    kc, vc = caches(rng, n_ctx, n_kv_head * hd, type_k, type_v)
    got = _ops.op_attention(q, kc, vc, pos0, n_head, n_kv_head, hd, 1, 0, type_k, type_v)
    want = reference(q, kc, vc, pos0, n_head, n_kv_head, hd, type_k, type_v)
    np.testing.assert_allclose(got, want, rtol=0, atol=3e-6 if type_v == "f32" else 2e-5)
    # (token, head) items are computed whole by one thread: any thread count gives the same bits
    threads3 = _ops.op_attention(q, kc, vc, pos0, n_head, n_kv_head, hd, 3, 0, type_k, type_v)
    np.testing.assert_array_equal(threads3, got)
    # a sliding window still works for every type
    w = _ops.op_attention(q, kc, vc, pos0, n_head, n_kv_head, hd, 2, 4, type_k, type_v)
    assert w.shape == got.shape and not np.array_equal(w, got)


def test_q_meets_k_in_its_partner_type():
    """The same K values as f32, f16 and q8_0 give scores that differ as the partner rounding says."""
    rng = np.random.default_rng(2)
    hd, n_ctx = 64, 8
    q = rng.standard_normal((1, hd)).astype(np.float32) * 3
    k = rng.standard_normal((n_ctx, hd)).astype(np.float32)
    v = np.eye(n_ctx, hd, dtype=np.float32)            # out[j] = p_j: the attention weights themselves
    outs = {}
    for t in ("f32", "f16", "q8_0"):
        kc = {"f32": k, "f16": k.astype(np.float16),
              "q8_0": np.stack([_ops.op_kv_store("q8_0", r) for r in k])}[t]
        outs[t] = _ops.op_attention(q, kc, v, n_ctx - 1, 1, 1, hd, 1, 0, t, "f32")[0, :n_ctx]
        np.testing.assert_allclose(outs[t], reference(q, kc, v, n_ctx - 1, 1, 1, hd, t, "f32")[0, :n_ctx],
                                   rtol=1e-5, atol=1e-7)
    assert abs(outs["f32"] - outs["f16"]).max() < 5e-3 and abs(outs["f32"] - outs["q8_0"]).max() < 5e-2
    assert len({outs[t].tobytes() for t in outs}) == 3


def test_type_names_and_ids():
    assert [kv_cache_type(t) for t in ("f32", "F16", "q8_0", 0, 1, 8)] == ["f32", "f16", "q8_0"] * 2
    assert kv_cache_type(0, "V") == "f32"
    for bad, which, msg in (("q8_0", "V", "requires flash attention"), (8, "V", "requires flash attention"),
                            ("q4_0", "V", "requires flash attention"), ("q4_0", "K", "unsupported K cache type"),
                            ("bf16", "V", "unsupported V cache type"), (99, "K", "unsupported"),
                            ("nope", "K", "unsupported")):
        with pytest.raises(ValueError, match=msg) as e:
            kv_cache_type(bad, which)
        assert "\n" not in str(e.value)


# ---- a tiny F32 model, where the cache type is the only rounding that matters ----

TINY = np.load(Path(__file__).parent / "data" / "generate" / "kvcache_tiny.npz")
TINY_PARAMS = dict(QWEN2_TINY, seed=20251123, n_embd=128, n_ff=256)    # as scripts/make_kvcache_refs.py
# max |ours - llama.cpp| on the tiny model's logits (max |logit| ~3), per cache pair. Measured: f32/f32 1e-6,
# q8_0 K 1e-5 (f32 V) / 4e-5 (f16 V), f32/f16 2e-5, f16/f32 4e-5, f16/f16 3e-4 (the classic f16 path, as
# on test_forward_qwen2's tiny models). The nearest other pair is >= 5e-4 away (f16 vs f32), q8_0 1e-2.
TINY_BOUND = {pair: 1e-4 for pair in PAIRS} | {("f16", "f16"): 4.5e-4}


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return write_tiny_qwen2(tmp_path_factory.mktemp("kv") / "qwen2_kv.gguf", "none", TINY_PARAMS)


@pytest.mark.parametrize("type_k, type_v", PAIRS)
def test_tiny_model_matches_llama_cpp_with_the_same_cache_types(tiny_path, type_k, type_v):
    from llamapy.model import Model
    ids = tiny_prompt()
    np.testing.assert_array_equal(TINY["ids"], ids)
    m = Model(tiny_path, n_ctx=128, n_threads=1, type_k=type_k, type_v=type_v)
    got = m.eval(ids, 0, all_logits=True)[TINY["rows"]]
    assert np.abs(got - TINY[f"logits_{type_k}_{type_v}"]).max() < TINY_BOUND[(type_k, type_v)]
    for other in PAIRS:        # and it is llama.cpp's result for these types, not for others
        if other != (type_k, type_v):
            assert np.abs(got - TINY[f"logits_{other[0]}_{other[1]}"]).max() > TINY_BOUND[(type_k, type_v)]
    step = np.concatenate([m.eval(ids[i:i + 1], i) for i in range(len(ids))])[TINY["rows"]]
    np.testing.assert_allclose(step, got, rtol=0, atol=1e-5)


# ---- the forward pass with each cache type ----

# SmolLM2 Q4_1 is chaotic at q8 rounding (test_forward_llama): llama.cpp's own cache types differ from each
# other by ~3% of the largest logit (~20), and its batch and one-token logits as much. Teacher-forced (all
# in one batch, unlike llama.cpp's token-by-token references), llama.cpp's argmax must be ours where it
# leads by SURE_MARGIN, and nearly everywhere.
SURE_MARGIN = 1.0


@pytest.fixture(scope="module", params=PAIRS, ids=[f"{k}-{v}" for k, v in PAIRS])
def smollm2(request):
    from llamapy.model import Model
    type_k, type_v = request.param
    return Model(model_path("smollm2"), n_ctx=128, n_threads=2, type_k=type_k, type_v=type_v)


def test_cache_is_preallocated_in_the_type(smollm2):
    cfg, f = smollm2.config, smollm2._fwd
    dkv = cfg.n_kv_head * cfg.head_dim
    size = {"f32": 4 * dkv, "f16": 2 * dkv, "q8_0": dkv // 32 * 34}
    assert f.kcache.shape == (cfg.n_layer, 128, size[smollm2.type_k])
    assert f.vcache.shape == (cfg.n_layer, 128, size[smollm2.type_v])
    assert f.k_row == size[smollm2.type_k] and f.v_row == size[smollm2.type_v]
    assert (f.type_k, f.type_v) == (kv_cache_type_id(smollm2.type_k), kv_cache_type_id(smollm2.type_v))


def kv_cache_type_id(name):
    return {"f32": 0, "f16": 1, "q8_0": 8}[name]


def test_batch_incremental_and_threads_agree(smollm2):
    toks = [1, 504, 3575, 282, 4649, 314, 7042, 30, 198]
    batch = smollm2.eval(toks, 0, all_logits=True)
    step = np.concatenate([smollm2.eval([t], p) for p, t in enumerate(toks)])
    # llama.cpp's two attention orders (batch, one token): equal at position 0, then rounding apart
    np.testing.assert_array_equal(step[0], batch[0])
    assert np.abs(step - batch).max() / np.abs(batch).max() < 0.1
    np.testing.assert_array_equal(smollm2.eval(toks, 0, all_logits=True, n_threads=1), batch)


def test_close_to_the_f16_cache(smollm2):
    """Another cache type moves the logits by rounding only: llama.cpp's own types differ from its f16 by
    about 3% of the largest logit on this (chaotic at q8 rounding) model; the best tokens stay."""
    from llamapy.model import Model
    f16 = Model(model_path("smollm2"), n_ctx=128, n_threads=2)
    toks = REFS["cases"][0]["prompt_ids"]
    a, b = smollm2.eval(toks, 0)[0], f16.eval(toks, 0)[0]
    assert np.abs(a - b).max() / np.abs(b).max() < 0.1
    assert a.argmax() == b.argmax()


def cases_for(type_k, type_v, model="smollm2"):
    return [c for c in REFS["cases"] if (c["model"], c["type_k"], c["type_v"]) == (model, type_k, type_v)]


def test_reference_covers_every_pair():
    assert REFS["llama_cpp_python"] == "0.3.36" and REFS["flash_attn"] is False
    for k, v in PAIRS:
        assert len(cases_for(k, v)) == 5
    # llama.cpp (flash attention off) refuses a quantized V cache
    assert "Failed to create llama_context" in REFS["quantized_v_without_flash_attn"]


def test_teacher_forced_greedy_matches_llama_cpp(smollm2):
    """Over llama.cpp's 48 greedy steps with the same cache types (ours fed its tokens): every confident
    argmax agrees, and nearly all do."""
    agree = total = 0
    for c in cases_for(smollm2.type_k, smollm2.type_v):
        ids, ref = c["prompt_ids"], np.array(c["greedy_ids"])
        logits = smollm2.eval(ids + c["greedy_ids"], 0, all_logits=True)[len(ids) - 1:len(ids) - 1 + len(ref)]
        ours = logits.argmax(-1)
        sure = np.array(c["margins"]) >= SURE_MARGIN
        np.testing.assert_array_equal(ours[sure], ref[sure], err_msg=c["prompt"])
        agree += int((ours == ref).sum())
        total += len(ref)
    assert agree / total >= 0.85


@pytest.mark.parametrize("type_k, type_v", PAIRS)
def test_generation_is_llama_cpps(type_k, type_v):
    """Free-running greedy text through the API, prompt in a batch then a token per step as llama.cpp made
    its references: the very same 48 tokens, for every prompt, with every cache type (llama.cpp's own types
    give different texts: an f32 V turns "The capital of France is" into a date)."""
    from llamapy import Llama
    llm = Llama(model_path("smollm2"), n_ctx=256, n_threads=2, verbose=False,
                type_k=kv_cache_type_id(type_k), type_v=type_v)
    for c in cases_for(type_k, type_v):
        out = llm.create_completion(c["prompt_ids"], max_tokens=len(c["greedy_ids"]), temperature=0)
        assert out["choices"][0]["text"] == llm.detokenize(c["greedy_ids"]).decode("utf-8", "replace"), c["prompt"]


def test_quantized_v_is_refused():
    from llamapy import Llama
    from llamapy.model import Model
    with pytest.raises(ValueError, match="requires flash attention"):
        Model(model_path("smollm2"), n_ctx=32, type_v="q8_0")
    with pytest.raises(ValueError, match="requires flash attention"):
        Llama(model_path("smollm2"), n_ctx=32, type_v=8, verbose=False)
    with pytest.raises(ValueError, match="unsupported K cache type"):
        Llama(model_path("smollm2"), n_ctx=32, type_k=2, verbose=False)    # q4_0


def test_cli_cache_types():
    from test_cli_generate import assert_one_line_error, run_cli
    model = str(model_path("smollm2"))
    c = cases_for("q8_0", "f32")[0]
    r = run_cli("-m", model, "-p", c["prompt"], "-n", "6", "--temp", "0", "-t", "2", "-c", "256",
                "-ctk", "q8_0", "-ctv", "f32")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().startswith(c["prompt"] + " Paris.")
    for args, needle in ((("-ctv", "q8_0"), "requires flash attention"),
                         (("-ctv", "q4_0"), "requires flash attention"),
                         (("-ctk", "q4_0"), "unsupported K cache type"), (("-ctk", "f64"), "unsupported cache type")):
        assert_one_line_error(run_cli("-m", model, "-p", "x", *args), needle)


def test_gemma3_cache_types():
    """Gemma 3 (head_dim 256, sliding-window layers): q8_0 K and f32 K/V against llama.cpp, teacher-forced."""
    from llamapy.model import Model
    for type_k, type_v in (("q8_0", "f16"), ("f32", "f32")):
        m = Model(model_path("gemma3"), n_ctx=128, n_threads=2, type_k=type_k, type_v=type_v)
        agree = total = 0
        for c in cases_for(type_k, type_v, "gemma3"):
            ids, ref = c["prompt_ids"], np.array(c["greedy_ids"])
            logits = m.eval(ids + c["greedy_ids"], 0, all_logits=True)[len(ids) - 1:len(ids) - 1 + len(ref)]
            ours = logits.argmax(-1)
            sure = np.array(c["margins"]) >= SURE_MARGIN
            np.testing.assert_array_equal(ours[sure], ref[sure], err_msg=c["prompt"])
            agree += int((ours == ref).sum())
            total += len(ref)
        assert total and agree / total >= 0.85
