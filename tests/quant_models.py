"""The inputs of the quantization tests, made the same way (bit for bit) every time.

float_export(src, dst): a float GGUF of a quantized model (every non-F32 tensor dequantized to F16, F32
tensors kept, metadata kept with general.file_type = 1 (F16)), as if converted from the original weights.

write_tiny_llama(path): a synthetic 16-layer llama model with an untied output and tensors chosen to reach
the corners of llama.cpp's type rules (see TINY_LLAMA and the comments in the function).

scripts/make_quantize_refs.py has llama.cpp quantize these files; tests/test_quantize.py makes them again
and compares. Both import this module.
"""
from __future__ import annotations

import hashlib

import numpy as np

from llamapy.gguf import GGMLType, GGUFReader, GGUFValueType, GGUFWriter

TINY_LLAMA = dict(seed=20251123, n_layer=16, n_embd=256, n_head=8, n_kv_head=2, n_ff=256, n_vocab=320)


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def float_export(src, dst, n_threads: int = 2):
    """Dequantize every non-F32 tensor of src to F16 into dst; metadata and tensor order stay."""
    from llamapy.quants import dequantize

    reader = GGUFReader(src)
    w = GGUFWriter(dst, alignment=reader.alignment, version=reader.version)
    for key, field in reader.fields.items():
        if key == "general.file_type":
            w.add(key, 1, GGUFValueType.UINT32)
        else:
            w.add_field(field)
    for t in reader.tensors:
        if t.type == GGMLType.F32:
            w.add_tensor(t.name, t.data, type=t.type, shape=t.shape)
            continue
        values = dequantize(t.data.reshape(-1).view(np.uint8), t.type, n_threads)
        w.add_tensor(t.name, values.astype(np.float16), type=GGMLType.F16, shape=t.shape)
    return w.write()


def write_tiny_llama(path, p: dict = TINY_LLAMA):
    rng = np.random.default_rng(p["seed"])
    d, nh, nkv, ff, nv, nl = p["n_embd"], p["n_head"], p["n_kv_head"], p["n_ff"], p["n_vocab"], p["n_layer"]
    hd = d // nh
    U32, F32 = GGUFValueType.UINT32, GGUFValueType.FLOAT32

    def mat(*shape):
        """Weights with a few large outliers per matrix, as real ones have (numpy order: rows last)."""
        x = rng.standard_normal(shape) / np.sqrt(shape[-1])
        flat = x.reshape(-1)
        idx = rng.integers(0, flat.size, max(1, flat.size // 4096))
        flat[idx] *= 12.0
        return x.astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    w = GGUFWriter(path)
    w.add("general.architecture", "llama")
    w.add("general.name", "tiny-llama-quantize")
    # no general.file_type: llama.cpp then guesses it from the tensor types (COPY writes the guess)
    w.add("llama.block_count", nl, U32)
    w.add("llama.context_length", 256, U32)
    w.add("llama.embedding_length", d, U32)
    w.add("llama.feed_forward_length", ff, U32)
    w.add("llama.attention.head_count", nh, U32)
    w.add("llama.attention.head_count_kv", nkv, U32)
    w.add("llama.rope.dimension_count", hd, U32)
    w.add("llama.rope.freq_base", 10000.0, F32)
    w.add("llama.attention.layer_norm_rms_epsilon", 1e-5, F32)
    w.add("llama.vocab_size", nv, U32)

    # Written in "natural" order; the quantizer reorders (output* and token_embd first, blk.2 before blk.10).
    w.add_tensor("token_embd.weight", mat(nv, d).astype(np.float16))      # an F16 source
    w.add_tensor("rope_freqs.weight", norm(hd // 2))                      # 1-D: copied
    w.add_tensor("trunk", mat(4, d))                # 5 characters: llama.cpp's "ends in weight" test passes
    for i in range(nl):
        b = f"blk.{i}."
        w.add_tensor(b + "attn_norm.weight", norm(d))
        w.add_tensor(b + "attn_q.weight", mat(nh * hd, d))
        w.add_tensor(b + "attn_k.weight", mat(nkv * hd, d))
        w.add_tensor(b + "attn_v.weight", mat(nkv * hd, d))
        w.add_tensor(b + "attn_output.weight", mat(d, nh * hd))
        w.add_tensor(b + "ffn_norm.weight", norm(d))
        w.add_tensor(b + "ffn_gate.weight", mat(ff, d))
        w.add_tensor(b + "ffn_up.weight", mat(ff, d))
        w.add_tensor(b + "ffn_down.weight", mat(d, ff))
        if i == 0:
            w.add_tensor(b + "ffn_gate_inp.weight", mat(4, d))                # router: never quantized
            w.add_tensor(b + "layer_scale.weight", norm(d), shape=(d, 1))     # 2 dims in, 1 dim out
        if i == 2:
            w.add_tensor(b + "conv_proj.weight", mat(16, 40))                 # 40 columns: falls back to F16
        if i == 5:
            w.add_tensor(b + "ffn_down_shexp.weight", mat(d, 128))            # counts as an ffn_down; 128 cols
        if i == 7:
            w.add_tensor(b + "ffn_up_exps.weight", mat(2, 64, d))             # 3-D
    w.add_tensor("output_norm.weight", norm(d))
    out = mat(nv, d)
    w.add_tensor("output.weight", (out.view(np.uint32) >> 16).astype(np.uint16), type=GGMLType.BF16,
                 shape=(d, nv))                                               # a BF16 source, untied
    return w.write()
