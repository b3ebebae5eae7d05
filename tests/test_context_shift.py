"""Context shift (llama.cpp's: keep n_keep tokens, drop half of the rest, slide the later KV entries back).

K is cached rotated by its position, so moving an entry by d positions rotates it again by d. Checked three
ways: every layer's moved K against a numpy rotation with that layer's RoPE base (exact up to the cache
type's rounding), layer 0 (which depends on the token alone) against a fresh evaluation at the new
positions, and the generation after a shift against a fresh evaluation of the kept tokens. That last one
cannot be exact: the kept tokens' upper-layer K/V were computed while they could see the dropped ones
(llama.cpp's shift has the same property), so it is bounded like the forward-pass noise instead.
"""
from __future__ import annotations

import numpy as np
import pytest

from llamapy import quants
from llamapy.gguf import GGUFReader
from llamapy.gguf.constants import GGMLType
from llamapy.model import Model
from llamapy.model.arch import layer_rope_bases
from llamapy.models import model_path
from llamapy.tokenizer import Tokenizer

TEXT = ("Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing to do: "
        "once or twice she had peeped into the book her sister was reading, but it had no pictures or "
        "conversations in it, and what is the use of a book, thought Alice, without pictures or conversations?")
N_CTX, N_PAST, N_KEEP = 64, 56, 8
N_DISCARD = (N_PAST - N_KEEP) // 2      # llama.cpp's rule: half of what follows n_keep


@pytest.fixture(scope="module", params=["smollm2", "gemma3"])
def model_and_ids(request):
    reader = GGUFReader(model_path(request.param))
    ids = Tokenizer.from_gguf(reader).encode(TEXT)[:N_PAST]
    assert len(ids) == N_PAST
    return reader, ids


def hadamard(n):
    """The orthonormal Walsh-Hadamard matrix of size n (a power of two), Sylvester's construction."""
    h = np.ones((1, 1))
    while len(h) < n:
        h = np.block([[h, h], [h, -h]])
    return h / np.sqrt(n)


def k_rows_f32(model, layer, p0, p1):
    """K of positions p0..p1-1 in float64, in the model's own basis (a q8_0 K is stored Hadamard-rotated)."""
    rows = model._fwd.kcache[layer, p0:p1]
    if model.type_k == "f32":
        return rows.view(np.float32).astype(np.float64)
    if model.type_k == "f16":
        return rows.view(np.float16).astype(np.float64)
    k = quants.dequantize(np.ascontiguousarray(rows).reshape(-1), GGMLType.Q8_0).reshape(p1 - p0, -1)
    n = model._fwd.k_rot
    assert n == 64 if model.config.head_dim == 64 else n == 256          # llama.cpp's choice of size
    return (k.reshape(-1, n).astype(np.float64) @ hadamard(n)).reshape(p1 - p0, -1)


def numpy_rotate(k, delta, cfg, base):
    """RoPE by `delta` positions of (n, n_kv_head * head_dim) rows, in float64."""
    v = k.reshape(len(k), cfg.n_kv_head, cfg.head_dim).copy()
    half = cfg.rope_dims // 2
    a_idx = np.arange(half) if cfg.rope_neox else 2 * np.arange(half)
    b_idx = a_idx + half if cfg.rope_neox else a_idx + 1
    ang = delta * base ** (-2.0 * np.arange(half) / cfg.rope_dims)
    a, b = v[..., a_idx].copy(), v[..., b_idx].copy()
    v[..., a_idx] = a * np.cos(ang) - b * np.sin(ang)
    v[..., b_idx] = a * np.sin(ang) + b * np.cos(ang)
    return v.reshape(len(k), -1)


@pytest.mark.parametrize("type_k", ["f16", "f32", "q8_0"])
def test_shift_rotates_every_layer_with_its_rope_base(model_and_ids, type_k):
    reader, ids = model_and_ids
    m = Model(reader, n_ctx=N_CTX, n_threads=2, type_k=type_k)
    m.eval(ids, 0)
    src = N_KEEP + N_DISCARD
    before = [k_rows_f32(m, layer, src, N_PAST) for layer in range(m.config.n_layer)]
    v_before = m._fwd.vcache[:, src:N_PAST].copy()
    m.kv_shift(src, N_PAST, -N_DISCARD)
    bases = layer_rope_bases(m.config)
    if m.config.arch == "gemma3":
        assert len(set(bases)) == 2     # local layers rotate with base 10000, global ones with the model's
    for layer, base in enumerate(bases):
        want = numpy_rotate(before[layer], -N_DISCARD, m.config, base)
        got = k_rows_f32(m, layer, N_KEEP, N_PAST - N_DISCARD)
        scale = np.abs(want).max()
        tol = {"f32": 1e-5, "f16": 2e-3, "q8_0": 1.5e-2}[type_k]   # one more rounding to the cache type
        assert np.abs(got - want).max() <= tol * scale, (layer, np.abs(got - want).max() / scale)
    assert np.array_equal(m._fwd.vcache[:, N_KEEP:N_PAST - N_DISCARD], v_before)   # V moves as it is


def test_shifted_layer0_equals_fresh_evaluation(model_and_ids):
    """Layer 0's K and V depend on the token alone: after the shift they are what a fresh evaluation of the
    kept tokens puts at the new positions."""
    reader, ids = model_and_ids
    m = Model(reader, n_ctx=N_CTX, n_threads=2)
    m.eval(ids, 0)
    m.kv_shift(N_KEEP + N_DISCARD, N_PAST, -N_DISCARD)
    fresh = Model(reader, n_ctx=N_CTX, n_threads=2)
    kept = ids[:N_KEEP] + ids[N_KEEP + N_DISCARD:]
    fresh.eval(kept, 0)
    n = len(kept)
    got, want = k_rows_f32(m, 0, 0, n), k_rows_f32(fresh, 0, 0, n)
    assert np.abs(got - want).max() <= 2e-3 * np.abs(want).max()
    np.testing.assert_allclose(m._fwd.vcache[0, :n].view(np.float16).astype(np.float32),
                               fresh._fwd.vcache[0, :n].view(np.float16).astype(np.float32), rtol=2e-3, atol=2e-3)


def test_generation_across_a_shift_follows_a_fresh_evaluation(model_and_ids):
    """Greedy steps after a shift against the same steps on a fresh evaluation of the kept tokens: the
    logits differ only by the context the kept tokens once saw (bounded like the forward-pass noise), and the
    greedy tokens agree; moving the entries without rotating them would be far off."""
    reader, ids = model_and_ids
    m = Model(reader, n_ctx=N_CTX, n_threads=2)
    m.eval(ids[:-1], 0)
    m.kv_shift(N_KEEP + N_DISCARD, N_PAST - 1, -N_DISCARD)
    fresh = Model(reader, n_ctx=N_CTX, n_threads=2)
    kept = ids[:N_KEEP] + ids[N_KEEP + N_DISCARD:]
    fresh.eval(kept[:-1], 0)
    pos = len(kept) - 1
    a, b = m.eval(kept[-1:], pos)[0], fresh.eval(kept[-1:], pos)[0]
    first_fresh = b.copy()
    agree, errors = 0, []
    for step in range(6):
        errors.append(np.abs(a - b).max() / np.abs(b).max())
        top5 = set(np.argsort(-a)[:5].tolist())
        assert int(b.argmax()) in top5, step
        agree += int(a.argmax() == b.argmax())
        t = int(b.argmax())
        pos += 1
        a, b = m.eval([t], pos)[0], fresh.eval([t], pos)[0]
    assert agree >= 4 and max(errors) < 0.4 and np.mean(errors) < 0.3, (agree, errors)

    # the control: the same move without the rotation
    bad = Model(reader, n_ctx=N_CTX, n_threads=2)
    bad.eval(ids[:-1], 0)
    k, v = bad.kv_rows(N_PAST - 1)
    bad._fwd.kcache[:, N_KEEP:N_PAST - 1 - N_DISCARD] = k[:, N_KEEP + N_DISCARD:]
    bad._fwd.vcache[:, N_KEEP:N_PAST - 1 - N_DISCARD] = v[:, N_KEEP + N_DISCARD:]
    c = bad.eval(kept[-1:], len(kept) - 1)[0]
    assert np.abs(c - first_fresh).max() / np.abs(first_fresh).max() > 1.5 * errors[0]


# ---- llamapy-cli: --context-shift, --keep, and the stops ---------------------------------------------------

STORY = "Once upon a time, there was a little fox who lived in the forest."


def run_cli(*args):
    import subprocess
    import sys
    from pathlib import Path
    cli = str(Path(sys.executable).with_name("llamapy-cli"))
    r = subprocess.run([cli, "-no-cnv", "-t", "1", "-c", "64", "--temp", "0", "--ignore-eos", "-p", STORY, *args],
                       capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    return r, r.stdout.decode(), r.stderr.decode()


def test_cli_generates_past_a_full_context_with_context_shift():
    r, out, err = run_cli("-n", "120", "--context-shift", "--keep", "4")
    assert r.returncode == 0, err
    assert "context full" not in err and "n_keep = 4" in err
    assert "/   119 runs" in err                         # 120 tokens in a 64-token context: two shifts
    words = out[len(STORY):].split()
    assert len(words) > 60 and len(set(words[-40:])) > 15, out   # still text after the shifts, not a loop
    assert sum(w.strip(".,!?\"'").isalpha() for w in words) > 0.9 * len(words)


def test_cli_stops_cleanly_when_the_context_is_full():
    r, out, err = run_cli("-n", "120")                 # context shift is off by default, as in llama.cpp
    assert r.returncode == 0 and "\n\nmain: context full and context shift is disabled => stopping" in err
    assert "/    47 runs" in err                          # 16 prompt tokens + 48 = 64
    r, out, err = run_cli("-n", "-2", "--context-shift")
    assert r.returncode == 0 and "main: context full and n_predict == -2 => stopping" in err


def test_cli_keep_minus_one_keeps_the_whole_prompt():
    r, out, err = run_cli("-n", "60", "--context-shift", "--keep", "-1")
    assert r.returncode == 0 and "n_keep = 16" in err and out.startswith(STORY)
