"""Tiny synthetic GGUF models for end-to-end tests (random F32 weights from a fixed seed).

write_tiny_qwen2(path, rope_scaling) writes a 2-layer qwen2 model (d 64, 4 heads of 16, 2 KV heads, FFN 128,
vocab 256) with a minimal byte-level "gpt2" vocabulary (the 256 GPT-2 byte tokens, no merges), which is
what llama.cpp needs to load it. scripts/make_qwen2_refs.py has llama.cpp evaluate the same files;
tests/test_forward_qwen2.py compares. Needs only numpy and llamapy.gguf (pure Python).
"""
from __future__ import annotations

import numpy as np

from llamapy.gguf import GGMLType, GGUFValueType, GGUFWriter

QWEN2_TINY = dict(seed=20240611, n_layer=2, n_embd=64, n_head=4, n_kv_head=2, n_ff=128, n_vocab=256,
                  n_ctx_train=512, rope_base=100.0, rms_eps=1e-6)

# RoPE scaling variants: {arch}.rope.scaling.* keys (None: no scaling keys at all)
ROPE_VARIANTS = {
    "none": None,
    "linear": {"type": "linear", "factor": 4.0},
    # with base 100 and an original context of 256 the YaRN ramp spans pairs 0..7 of the 8 (head_dim 16)
    "yarn": {"type": "yarn", "factor": 4.0, "original_context_length": 256},
}


def gpt2_byte_tokens() -> list:
    """GPT-2's byte -> printable unicode mapping, as 256 one-character tokens (token i is byte i)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    extra, out = 0, []
    for b in range(256):
        if b in keep:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def write_tiny_qwen2(path, rope: str = "none", params: dict = QWEN2_TINY):
    p = params
    rng = np.random.default_rng(p["seed"])
    d, nh, nkv, ff, nv = p["n_embd"], p["n_head"], p["n_kv_head"], p["n_ff"], p["n_vocab"]
    hd = d // nh
    U32, F32, S = GGUFValueType.UINT32, GGUFValueType.FLOAT32, GGUFValueType.STRING

    def mat(rows, cols):
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def norm(n):
        return (1.0 + 0.2 * rng.standard_normal(n)).astype(np.float32)

    def bias(n):
        return (0.5 * rng.standard_normal(n)).astype(np.float32)

    with GGUFWriter(path) as w:
        w.add("general.architecture", "qwen2")
        w.add("general.name", f"tiny-qwen2-{rope}")
        w.add("qwen2.block_count", p["n_layer"], U32)
        w.add("qwen2.context_length", p["n_ctx_train"], U32)
        w.add("qwen2.embedding_length", d, U32)
        w.add("qwen2.feed_forward_length", ff, U32)
        w.add("qwen2.attention.head_count", nh, U32)
        w.add("qwen2.attention.head_count_kv", nkv, U32)
        w.add("qwen2.rope.freq_base", p["rope_base"], F32)
        w.add("qwen2.attention.layer_norm_rms_epsilon", p["rms_eps"], F32)
        for key, value in (ROPE_VARIANTS[rope] or {}).items():
            vtype = S if key == "type" else U32 if key == "original_context_length" else F32
            w.add(f"qwen2.rope.scaling.{key}", value, vtype)
        w.add("tokenizer.ggml.model", "gpt2")
        w.add("tokenizer.ggml.pre", "qwen2")
        w.add("tokenizer.ggml.tokens", gpt2_byte_tokens(), GGUFValueType.ARRAY, S)
        w.add("tokenizer.ggml.token_type", [1] * nv, GGUFValueType.ARRAY, GGUFValueType.INT32)
        w.add("tokenizer.ggml.merges", [], GGUFValueType.ARRAY, S)
        w.add("tokenizer.ggml.bos_token_id", 0, U32)
        w.add("tokenizer.ggml.eos_token_id", 1, U32)
        w.add_tensor("token_embd.weight", rng.standard_normal((nv, d)).astype(np.float32))
        for i in range(p["n_layer"]):
            b = f"blk.{i}."
            w.add_tensor(b + "attn_norm.weight", norm(d))
            w.add_tensor(b + "attn_q.weight", mat(nh * hd, d))
            w.add_tensor(b + "attn_q.bias", bias(nh * hd))
            w.add_tensor(b + "attn_k.weight", mat(nkv * hd, d))
            w.add_tensor(b + "attn_k.bias", bias(nkv * hd))
            w.add_tensor(b + "attn_v.weight", mat(nkv * hd, d))
            w.add_tensor(b + "attn_v.bias", bias(nkv * hd))
            w.add_tensor(b + "attn_output.weight", mat(d, nh * hd))
            w.add_tensor(b + "ffn_norm.weight", norm(d))
            w.add_tensor(b + "ffn_gate.weight", mat(ff, d))
            w.add_tensor(b + "ffn_up.weight", mat(ff, d))
            w.add_tensor(b + "ffn_down.weight", mat(d, ff))
        w.add_tensor("output_norm.weight", norm(d))
        w.add_tensor("output.weight", mat(nv, d))
    return path


def tiny_prompt(n: int = 40, seed: int = 7) -> np.ndarray:
    """The token ids every tiny-model test evaluates."""
    return np.random.default_rng(seed).integers(2, 256, n).astype(np.int32)
