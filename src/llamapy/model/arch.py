"""Architecture registry: `general.architecture` -> how to load the model's weights and build its forward pass.

Each entry's build(reader, cfg, n_ctx, n_batch, n_threads, type_k, type_v, n_seq=1) returns (weights,
forward), where forward is a C forward-pass object of llamapy._kernels._ops (LlamaForward or a subclass) that holds the weight addresses,
the KV cache and the activation buffers, and weights owns the memory-map views those addresses point into.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from llamapy._kernels import _ops
from llamapy.model.weights import Gemma3Weights, LlamaWeights


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable


ARCHITECTURES: dict[str, Architecture] = {}


def register(name: str):
    def deco(build):
        ARCHITECTURES[name] = Architecture(name, build)
        return build
    return deco


def architecture(name) -> Architecture:
    """The registered architecture called name; ValueError (one line, naming it) when there is none."""
    arch = ARCHITECTURES.get(name)
    if arch is None:
        raise ValueError(f"unsupported model architecture {name!r} (supported: {', '.join(sorted(ARCHITECTURES))})")
    return arch


def _base_cfg(cfg) -> dict:
    return dict(n_layer=cfg.n_layer, n_embd=cfg.n_embd, n_head=cfg.n_head, n_kv_head=cfg.n_kv_head,
                head_dim=cfg.head_dim, n_ff=cfg.n_ff, n_vocab=cfg.n_vocab, rms_eps=cfg.rms_eps,
                rope_base=cfg.rope_base, rope_dims=cfg.rope_dims, rope_neox=int(cfg.rope_neox))


def _rope_scaling_cfg(cfg) -> dict:
    return dict(rope_freq_scale=cfg.rope_freq_scale, rope_ext_factor=cfg.yarn_ext_factor,
                rope_attn_factor=cfg.rope_attn_factor, rope_beta_fast=cfg.yarn_beta_fast,
                rope_beta_slow=cfg.yarn_beta_slow, rope_n_ctx_orig=cfg.rope_n_ctx_orig)


# qwen2 is llama with biases on the q/k/v projections (loaded when present, for llama too, as llama.cpp
# does) and NEOX RoPE (config.NEOX_ROPE_ARCHES).
@register("llama")
@register("qwen2")
def build_llama(reader, cfg, n_ctx, n_batch, n_threads, type_k="f16", type_v="f16", n_seq=1):
    w = LlamaWeights.from_gguf(reader, cfg)
    if cfg.arch == "qwen2" and any(layer.bq is None or layer.bk is None or layer.bv is None for layer in w.layers):
        raise ValueError("qwen2 model without attn_q/k/v biases")
    fcfg = _base_cfg(cfg)
    fcfg.update(_rope_scaling_cfg(cfg))
    fwd = _ops.LlamaForward(fcfg, [layer.spec() for layer in w.layers], w.token_embd.spec(),
                            w.output_norm.ctypes.data, w.output.spec(), n_ctx, n_batch, n_threads, keep=(reader, w),
                            type_k=type_k, type_v=type_v, n_seq=n_seq)
    return w, fwd


# Gemma 3 (as llama.cpp runs it): five local layers with a sliding window and RoPE base 10000, then one
# global layer with the model's RoPE base (layers 5, 11, 17, ... are global).
GEMMA3_SWA_PATTERN = 6
GEMMA3_ROPE_BASE_SWA = 10000.0


def gemma3_layer_kinds(n_layer: int, pattern: int = GEMMA3_SWA_PATTERN) -> list:
    """True for the sliding-window (local) layers."""
    return [pattern > 0 and il % pattern < pattern - 1 for il in range(n_layer)]


def layer_rope_bases(cfg) -> list:
    """Each layer's RoPE base as the forward pass rotates with it (a context shift rotates K again with it)."""
    if cfg.arch == "gemma3":
        return [GEMMA3_ROPE_BASE_SWA if local else cfg.rope_base for local in gemma3_layer_kinds(cfg.n_layer)]
    return [cfg.rope_base] * cfg.n_layer


@register("gemma3")
def build_gemma3(reader, cfg, n_ctx, n_batch, n_threads, type_k="f16", type_v="f16", n_seq=1):
    if cfg.rope_scaling != "none":
        raise ValueError(f"gemma3 with RoPE scaling ({cfg.rope_scaling}, freq scale {cfg.rope_freq_scale}) "
                         "is not supported yet")
    if cfg.n_swa <= 0:
        raise ValueError("gemma3 model without gemma3.attention.sliding_window")
    w = Gemma3Weights.from_gguf(reader, cfg)
    # the query scale: 1/sqrt(head_dim), except Gemma 3 27B (62 layers): 1/sqrt(n_embd / n_head)
    qk_dim = cfg.n_embd // cfg.n_head if cfg.n_layer == 62 else cfg.head_dim
    fcfg = _base_cfg(cfg)
    fcfg.update(embd_scale=math.sqrt(cfg.n_embd), attn_scale=1.0 / math.sqrt(qk_dim),
                final_softcap=cfg.final_logit_softcap)
    specs = []
    for layer, local, base in zip(w.layers, gemma3_layer_kinds(cfg.n_layer), layer_rope_bases(cfg)):
        spec = layer.spec()
        spec.update(rope_base=base, n_swa=cfg.n_swa if local else 0)
        specs.append(spec)
    fwd = _ops.Gemma3Forward(fcfg, specs, w.token_embd.spec(), w.output_norm.ctypes.data, w.output.spec(),
                             n_ctx, n_batch, n_threads, keep=(reader, w), type_k=type_k, type_v=type_v,
                             n_seq=n_seq)
    return w, fwd
