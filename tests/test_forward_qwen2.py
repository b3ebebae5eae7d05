"""qwen2 (llama plus q/k/v biases, NEOX RoPE) and RoPE scaling (linear, YaRN).

RoPE scaling is checked op by op against a float64 numpy transcription of llama.cpp's rope_yarn formulas,
and end to end on tiny synthetic qwen2 models (tests/tiny_models.py, F32 weights) against logits from
llama.cpp (llama-cpp-python), made by scripts/make_qwen2_refs.py into tests/data/forward/qwen2_tiny.npz.
With F32 weights the only roundings left are the f16 KV cache / f16 q and probabilities, which both sides
share, and float summation order: measured max |ours - llama.cpp| is 7e-5 (none), 2e-4 (linear), 8e-7
(yarn) on logits of magnitude ~4, while the variants differ from each other by ~1.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from llamapy._kernels import _ops
from llamapy.gguf import GGUFReader
from llamapy.model.config import ModelConfig
from llamapy.model.llama import Model
from tiny_models import ROPE_VARIANTS, tiny_prompt, write_tiny_qwen2

REFS = Path(__file__).parent / "data" / "forward" / "qwen2_tiny.npz"
E2E_BOUND = 1e-3    # max |ours - llama.cpp| on the tiny models' logits (measured <= 2e-4, see above)


# ---- RoPE scaling, single op ----------------------------------------------------------------------

def rope_reference(x, pos, n_head, head_dim, n_dims, base, neox, freq_scale=1.0, ext_factor=0.0,
                   attn_factor=1.0, beta_fast=32.0, beta_slow=1.0, n_ctx_orig=0):
    """float64 llama.cpp rope_yarn: theta = interp * (1 - mix) + extrap * mix, values scaled by mscale."""
    half = n_dims // 2
    i = np.arange(half)
    theta_e = pos[:, None].astype(np.float64) * base ** (-2.0 * i / n_dims)
    theta = freq_scale * theta_e
    mscale = attn_factor
    if ext_factor != 0:
        def corr_dim(b):
            return n_dims * math.log(n_ctx_orig / (b * 2 * math.pi)) / (2 * math.log(base))
        lo = max(0.0, math.floor(corr_dim(beta_fast)))
        hi = min(n_dims - 1.0, math.ceil(corr_dim(beta_slow)))
        ramp = 1 - np.clip((i - lo) / max(0.001, hi - lo), 0, 1)
        mix = ramp * ext_factor
        theta = theta * (1 - mix) + theta_e * mix
        mscale *= 1 + 0.1 * math.log(1 / freq_scale)
    v = x.astype(np.float64).reshape(len(pos), n_head, head_dim)
    a_idx = i if neox else 2 * i
    b_idx = a_idx + half if neox else a_idx + 1
    c, s = (np.cos(theta) * mscale)[:, None, :], (np.sin(theta) * mscale)[:, None, :]
    a, b = v[..., a_idx], v[..., b_idx]
    out = v.copy()
    out[..., a_idx] = a * c - b * s
    out[..., b_idx] = a * s + b * c
    return out.reshape(x.shape)


SCALINGS = {
    "linear": dict(freq_scale=0.25),
    "yarn": dict(freq_scale=0.25, ext_factor=1.0, n_ctx_orig=4096),
    "yarn_params": dict(freq_scale=0.125, ext_factor=0.7, attn_factor=1.3, beta_fast=16.0, beta_slow=2.0,
                        n_ctx_orig=2048),
}


@pytest.mark.parametrize("neox", [False, True])
@pytest.mark.parametrize("name", sorted(SCALINGS))
def test_rope_scaling_matches_numpy(name, neox):
    rng = np.random.default_rng(11)
    n_head, head_dim, n_dims, base = 3, 64, 64, 10000.0
    pos = np.array([0, 1, 7, 100, 1000, 5000], np.int32)
    x = rng.standard_normal((len(pos), n_head * head_dim), dtype=np.float32)
    got = x.copy()
    _ops.op_rope_ext(got, pos, n_head, head_dim, n_dims, base, neox, **SCALINGS[name])
    want = rope_reference(x, pos, n_head, head_dim, n_dims, base, neox, **SCALINGS[name])
    # float32 angles lose ~1e-7 * pos relative (as for plain RoPE); measured max 6e-4 at pos 5000
    np.testing.assert_allclose(got, want, rtol=0, atol=1.5e-3)
    # and the scaling does something: the unscaled rotation is far off
    plain = rope_reference(x, pos, n_head, head_dim, n_dims, base, neox)
    assert np.abs(plain - want).max() > 0.1


def test_yarn_ramp_is_per_dimension():
    """YaRN keeps the fast dims unscaled (extrapolated) and interpolates the slow ones: at pos p the first pair
    rotates by p (like plain RoPE, times mscale) and the last by p * base^(-(n-2)/n) * freq_scale."""
    n_dims, base, fs = 64, 10000.0, 0.25
    x = np.zeros((1, n_dims), np.float32)
    x[0, 0] = x[0, n_dims - 2] = 1.0          # normal mode: pairs (0, 1) and (62, 63)
    p = 50
    _ops.op_rope_ext(x, np.array([p], np.int32), 1, n_dims, n_dims, base, False, freq_scale=fs, ext_factor=1.0,
                     n_ctx_orig=4096)
    mscale = 1 + 0.1 * math.log(1 / fs)
    np.testing.assert_allclose(x[0, :2], [math.cos(p) * mscale, math.sin(p) * mscale], atol=1e-4)
    th = p * base ** (-(n_dims - 2) / n_dims) * fs
    np.testing.assert_allclose(x[0, -2:], [math.cos(th) * mscale, math.sin(th) * mscale], atol=1e-6)


def test_rope_ext_without_scaling_is_rope():
    rng = np.random.default_rng(12)
    pos = np.array([0, 3, 999], np.int32)
    x = rng.standard_normal((3, 2 * 64), dtype=np.float32)
    a, b = x.copy(), x.copy()
    _ops.op_rope(a, pos, 2, 64, 64, 10000.0, True)
    _ops.op_rope_ext(b, pos, 2, 64, 64, 10000.0, True)
    np.testing.assert_array_equal(a, b)


# ---- tiny qwen2 end to end ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_paths(tmp_path_factory):
    d = tmp_path_factory.mktemp("qwen2_tiny")
    return {rope: write_tiny_qwen2(d / f"qwen2_{rope}.gguf", rope) for rope in ROPE_VARIANTS}


def test_tiny_config(tiny_paths):
    c = {rope: ModelConfig.from_gguf(GGUFReader(p)) for rope, p in tiny_paths.items()}
    assert c["none"].arch == "qwen2" and c["none"].rope_neox and c["none"].head_dim == 16
    assert c["none"].rope_scaling == "none" and c["none"].rope_freq_scale == 1.0
    assert c["linear"].rope_scaling == "linear" and c["linear"].rope_freq_scale == 0.25
    assert c["linear"].yarn_ext_factor == 0.0
    y = c["yarn"]
    assert y.rope_scaling == "yarn" and y.rope_freq_scale == 0.25 and y.yarn_ext_factor == 1.0
    assert y.rope_n_ctx_orig == 256 and y.yarn_beta_fast == 32.0 and y.yarn_beta_slow == 1.0


@pytest.mark.parametrize("rope", sorted(ROPE_VARIANTS))
def test_tiny_qwen2_matches_llama_cpp(tiny_paths, rope):
    ref = np.load(REFS)
    ids = tiny_prompt()
    np.testing.assert_array_equal(ref["ids"], ids)
    m = Model(tiny_paths[rope], n_ctx=128, n_threads=1)
    got = m.eval(ids, 0, all_logits=True)[ref["rows"]]
    want = ref[f"logits_{rope}"]
    assert np.abs(got - want).max() < E2E_BOUND
    for other in ROPE_VARIANTS:        # the variants are far apart, so the bound tells them apart
        if other != rope:
            assert np.abs(got - ref[f"logits_{other}"]).max() > 100 * E2E_BOUND


def test_tiny_qwen2_incremental_matches_batch(tiny_paths):
    ids = tiny_prompt()
    m = Model(tiny_paths["yarn"], n_ctx=128, n_threads=2)
    batch = m.eval(ids, 0, all_logits=True)
    step = np.concatenate([m.eval(ids[i:i + 1], i) for i in range(len(ids))])
    # attention sums in llama.cpp's batch order, then its one-token order: 1.5e-4 apart at most here, while
    # a wrong position or rotation moves these logits (|.| ~3) by 1e-2 and more
    np.testing.assert_array_equal(step[0], batch[0])
    np.testing.assert_allclose(step, batch, rtol=0, atol=5e-4)


def test_qwen2_needs_its_biases(tmp_path, tiny_paths):
    from llamapy.gguf import GGUFWriter
    r = GGUFReader(tiny_paths["none"])
    out = tmp_path / "nobias.gguf"
    with GGUFWriter(out) as w:
        for f in r.fields.values():
            w.add_field(f)
        for t in r.tensors:
            if not t.name.endswith(".bias"):
                w.add_tensor(t.name, t.data, type=t.type, shape=t.shape)
    with pytest.raises(ValueError, match="bias"):
        Model(out, n_ctx=16)
