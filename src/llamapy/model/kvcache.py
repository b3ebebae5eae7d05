"""The KV cache: its element types (what ``-ctk/-ctv`` and ``Llama(type_k=..., type_v=...)`` may ask for), and
moving entries to other positions (llama.cpp's context shift).

K: f32, f16 (the default) or q8_0; V: f32 or f16. llama.cpp also offers quantized V caches, but only with flash
attention (without it, llama.cpp refuses them); llamapy has no flash attention, so it refuses them too.
Types are given by name or by ggml type id, as llama-cpp-python's ``type_k``/``type_v`` take them.
"""
from __future__ import annotations

import numpy as np

__all__ = ["KV_CACHE_TYPES", "KV_V_TYPES", "LLAMA_CPP_KV_TYPES", "kv_cache_type", "shift_positions"]

KV_CACHE_TYPES = {"f32": 0, "f16": 1, "q8_0": 8}   # name -> ggml type id
KV_V_TYPES = ("f32", "f16")
# every type llama.cpp's -ctk/-ctv accept: the quantized ones need flash attention for V
LLAMA_CPP_KV_TYPES = {"f32": 0, "f16": 1, "bf16": 30, "q8_0": 8, "q4_0": 2, "q4_1": 3, "iq4_nl": 20, "q5_0": 6,
                       "q5_1": 7}


def kv_cache_type(t, which: str = "K") -> str:
    """A KV cache type given by name ('q8_0') or ggml id (8, as llama-cpp-python's type_k) -> its name.
    ValueError (one line) for types the cache cannot hold; a quantized V gets llama.cpp's refusal."""
    if isinstance(t, str):
        name = t.lower()
    else:
        ids = {v: k for k, v in LLAMA_CPP_KV_TYPES.items()}
        if isinstance(t, bool) or int(t) != t or int(t) not in ids:
            raise ValueError(f"unsupported {which} cache type {t!r} (supported: {', '.join(KV_CACHE_TYPES)})")
        name = ids[int(t)]
    if which == "V" and name in LLAMA_CPP_KV_TYPES and name not in ("f32", "f16", "bf16"):
        raise ValueError(f"quantized V cache ({name}) requires flash attention, which llamapy does not have "
                         "(llama.cpp refuses it without flash attention too)")
    supported = KV_CACHE_TYPES if which == "K" else KV_V_TYPES
    if name not in supported:
        raise ValueError(f"unsupported {which} cache type {name!r} (supported: {', '.join(supported)})")
    return name


def _rows_to_f32(rows: np.ndarray, type_k: str) -> np.ndarray:
    """(n, row bytes) of K cache rows -> (n, n_kv_head * head_dim) float32."""
    if type_k == "f32":
        return rows.view(np.float32).copy()
    if type_k == "f16":
        return rows.view(np.float16).astype(np.float32)
    from llamapy import quants
    from llamapy.gguf.constants import GGMLType
    return quants.dequantize(np.ascontiguousarray(rows).reshape(-1), GGMLType.Q8_0).reshape(len(rows), -1)


def shift_positions(fwd, cfg, layer_bases, p0: int, p1: int, delta: int) -> None:
    """Move the cache entries of positions [p0, p1) to [p0 + delta, p1 + delta), as llama_memory_seq_add.

    fwd: the C forward pass (its kcache / vcache arrays are indexed by position); cfg: the ModelConfig;
    layer_bases: each layer's RoPE base. K was stored rotated by its position, and RoPE angles add up, so
    rotating the rows by delta gives exactly the K of the new position: that is what llama.cpp does, and
    like it a quantized K (q8_0) is dequantized, rotated and quantized again, taken out of (and back into)
    the Hadamard basis it is stored in (fwd.k_rot, see forward.pxi). V moves unchanged.
    """
    from llamapy._kernels import _ops
    n = p1 - p0
    if n <= 0 or delta == 0:
        return
    if p0 + delta < 0 or p1 + delta > fwd.n_ctx:
        raise ValueError(f"cannot move positions {p0}..{p1 - 1} by {delta} in a context of {fwd.n_ctx}")
    kc, vc = fwd.kcache, fwd.vcache
    type_k = kv_cache_type(fwd.type_k, "K")
    shift = np.full(n, delta, np.int32)
    for layer, base in enumerate(layer_bases):
        k = _rows_to_f32(kc[layer, p0:p1], type_k)
        if fwd.k_rot:
            _ops.op_fwht(k, fwd.k_rot)          # its own inverse
        _ops.op_rope_ext(k, shift, cfg.n_kv_head, cfg.head_dim, cfg.rope_dims, base, cfg.rope_neox,
                         cfg.rope_freq_scale, cfg.yarn_ext_factor, cfg.rope_attn_factor, cfg.yarn_beta_fast,
                         cfg.yarn_beta_slow, cfg.rope_n_ctx_orig)
        if fwd.k_rot:
            _ops.op_fwht(k, fwd.k_rot)
        kc[layer, p0 + delta:p1 + delta] = _ops.op_kv_store(type_k, k.reshape(-1)).reshape(n, -1)
        vc[layer, p0 + delta:p1 + delta] = vc[layer, p0:p1].copy()
