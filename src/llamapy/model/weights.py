"""Weight lookup: where each tensor of a model lies in the GGUF memory map (nothing is copied)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llamapy.gguf.constants import GGMLType


@dataclass(frozen=True)
class Matrix:
    """A rows x cols weight matrix as stored: data is the mmap view (uint8 rows for quantized types)."""
    name: str
    data: np.ndarray
    type: int
    rows: int
    cols: int
    stride: int         # bytes between rows

    def spec(self) -> tuple:
        """(address, type, rows, cols, stride): what the C forward pass takes."""
        return (self.data.ctypes.data, int(self.type), self.rows, self.cols, self.stride)


def matrix(reader, name: str) -> Matrix:
    t = reader.tensor(name)
    if len(t.shape) != 2:
        raise ValueError(f"{name}: expected a matrix, got shape {t.shape}")
    cols, rows = t.shape            # GGUF order: ne0 (row length) first
    data = t.data.reshape(rows, -1) if t.data.ndim != 2 else t.data
    if not data.flags.c_contiguous:
        raise ValueError(f"{name}: tensor data is not contiguous")
    return Matrix(name, data, int(t.type), rows, cols, data.strides[0])


def optional_vector(reader, name: str, n: int):
    """vector(reader, name, n), or None when the model has no such tensor."""
    try:
        reader.tensor(name)
    except KeyError:
        return None
    return vector(reader, name, n)


def vector(reader, name: str, n: int) -> np.ndarray:
    """A float32 vector of n elements (norm weights), as the mmap view."""
    t = reader.tensor(name)
    if t.type != GGMLType.F32 or t.n_elements != n:
        raise ValueError(f"{name}: expected {n} float32 values, got {t.n_elements} of type {t.type!r}")
    return t.data.reshape(n)


@dataclass(frozen=True)
class LlamaLayer:
    attn_norm: np.ndarray   # [n_embd]
    wq: Matrix              # [n_head * head_dim, n_embd]
    wk: Matrix              # [n_kv_head * head_dim, n_embd]
    wv: Matrix              # [n_kv_head * head_dim, n_embd]
    wo: Matrix              # [n_embd, n_head * head_dim]
    ffn_norm: np.ndarray    # [n_embd]
    w_gate: Matrix          # [n_ff, n_embd]
    w_up: Matrix            # [n_ff, n_embd]
    w_down: Matrix          # [n_embd, n_ff]
    bq: np.ndarray = None   # optional biases of the projections (qwen2: bq, bk, bv)
    bk: np.ndarray = None
    bv: np.ndarray = None
    bo: np.ndarray = None

    def spec(self) -> dict:
        out = {name: getattr(self, name).spec() for name in ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")}
        out["attn_norm"] = self.attn_norm.ctypes.data
        out["ffn_norm"] = self.ffn_norm.ctypes.data
        for name in ("bq", "bk", "bv", "bo"):
            b = getattr(self, name)
            out[name] = 0 if b is None else b.ctypes.data
        return out


@dataclass(frozen=True)
class LlamaWeights:
    token_embd: Matrix      # [n_vocab, n_embd]
    layers: list
    output_norm: np.ndarray # [n_embd]
    output: Matrix          # [n_vocab, n_embd]; token_embd itself when the model ties them

    @classmethod
    def from_gguf(cls, reader, cfg) -> "LlamaWeights":
        d = cfg.n_embd
        layers = []
        for i in range(cfg.n_layer):
            p = f"blk.{i}."
            layers.append(LlamaLayer(
                attn_norm=vector(reader, p + "attn_norm.weight", d),
                wq=matrix(reader, p + "attn_q.weight"),
                wk=matrix(reader, p + "attn_k.weight"),
                wv=matrix(reader, p + "attn_v.weight"),
                wo=matrix(reader, p + "attn_output.weight"),
                ffn_norm=vector(reader, p + "ffn_norm.weight", d),
                w_gate=matrix(reader, p + "ffn_gate.weight"),
                w_up=matrix(reader, p + "ffn_up.weight"),
                w_down=matrix(reader, p + "ffn_down.weight"),
                bq=optional_vector(reader, p + "attn_q.bias", cfg.n_head * cfg.head_dim),
                bk=optional_vector(reader, p + "attn_k.bias", cfg.n_kv_head * cfg.head_dim),
                bv=optional_vector(reader, p + "attn_v.bias", cfg.n_kv_head * cfg.head_dim),
                bo=optional_vector(reader, p + "attn_output.bias", d),
            ))
        token_embd = matrix(reader, "token_embd.weight")
        try:
            output = matrix(reader, "output.weight")
        except KeyError:
            output = token_embd
        return cls(token_embd, layers, vector(reader, "output_norm.weight", d), output)


@dataclass(frozen=True)
class Gemma3Layer(LlamaLayer):
    q_norm: np.ndarray = None          # [head_dim], shared by the query heads
    k_norm: np.ndarray = None          # [head_dim], shared by the key heads
    post_attn_norm: np.ndarray = None  # [n_embd]
    post_ffw_norm: np.ndarray = None   # [n_embd]

    def spec(self) -> dict:
        out = super().spec()
        for name in ("q_norm", "k_norm", "post_attn_norm", "post_ffw_norm"):
            out[name] = getattr(self, name).ctypes.data
        return out


@dataclass(frozen=True)
class Gemma3Weights(LlamaWeights):
    """Gemma 3's tensors. The converter to GGUF stores every RMSNorm weight as 1 + w (Gemma's norms
    multiply by 1 + w), so they are used as stored."""

    @classmethod
    def from_gguf(cls, reader, cfg) -> "Gemma3Weights":
        base = LlamaWeights.from_gguf(reader, cfg)
        d, hd = cfg.n_embd, cfg.head_dim
        layers = []
        for i, layer in enumerate(base.layers):
            p = f"blk.{i}."
            layers.append(Gemma3Layer(
                **{f: getattr(layer, f) for f in LlamaLayer.__dataclass_fields__},
                q_norm=vector(reader, p + "attn_q_norm.weight", hd),
                k_norm=vector(reader, p + "attn_k_norm.weight", hd),
                post_attn_norm=vector(reader, p + "post_attention_norm.weight", d),
                post_ffw_norm=vector(reader, p + "post_ffw_norm.weight", d),
            ))
        return cls(base.token_embd, layers, base.output_norm, base.output)
