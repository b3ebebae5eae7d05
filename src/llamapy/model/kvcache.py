"""KV cache element types: what ``-ctk/-ctv`` (and ``Llama(type_k=..., type_v=...)``) may ask for.

K: f32, f16 (the default) or q8_0; V: f32 or f16. llama.cpp also offers quantized V caches, but only with flash
attention (without it, llama.cpp refuses them); llamapy has no flash attention, so it refuses them too.
Types are given by name or by ggml type id, as llama-cpp-python's ``type_k``/``type_v`` take them.
"""
from __future__ import annotations

__all__ = ["KV_CACHE_TYPES", "KV_V_TYPES", "LLAMA_CPP_KV_TYPES", "kv_cache_type"]

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
