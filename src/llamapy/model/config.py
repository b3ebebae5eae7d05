"""Hyperparameters of a model, read from its GGUF metadata (`{arch}.*` keys, as llama.cpp names them)."""
from __future__ import annotations

from dataclasses import dataclass

# Architectures whose RoPE rotates pairs (i, i + n_dims/2) ("neox" mode); the rest rotate (2i, 2i+1).
NEOX_ROPE_ARCHES = {"gemma", "gemma2", "gemma3", "qwen2", "qwen3", "phi2", "phi3", "gptneox", "falcon", "stablelm"}


@dataclass(frozen=True)
class ModelConfig:
    arch: str
    n_layer: int        # transformer blocks
    n_embd: int         # model width
    n_head: int         # query heads
    n_kv_head: int      # key/value heads (GQA when < n_head)
    head_dim: int       # width of one head
    n_ff: int           # feed-forward hidden width
    n_vocab: int
    n_ctx_train: int    # context length the model was trained for
    rms_eps: float
    rope_base: float    # theta_i = pos * rope_base^(-2i/rope_dims)
    rope_dims: int      # leading dims of each head that rotate
    rope_neox: bool
    n_swa: int = 0                  # sliding-window size of the local layers ({arch}.attention.sliding_window)
    final_logit_softcap: float = 0.0  # logits = tanh(logits / c) * c when > 0
    # RoPE scaling, as llama.cpp reads it ({arch}.rope.scaling.*): angles times rope_freq_scale (1 / factor),
    # with YaRN's per-dimension ramp back to the unscaled angle and its magnitude scale when rope_scaling == "yarn"
    rope_scaling: str = "none"      # "none", "linear" or "yarn"
    rope_freq_scale: float = 1.0
    rope_n_ctx_orig: int = 0        # context before scaling (.original_context_length, else context_length)
    rope_attn_factor: float = 1.0   # extra magnitude scale of the rotated values
    yarn_ext_factor: float = 0.0    # 1 for yarn unless the model says otherwise; 0 otherwise
    yarn_beta_fast: float = 32.0
    yarn_beta_slow: float = 1.0

    @classmethod
    def from_gguf(cls, reader) -> "ModelConfig":
        arch = reader.get("general.architecture")
        if arch is None:
            raise ValueError(f"{reader.path}: no general.architecture")

        def key(name, default=None, required=True):
            value = reader.get(f"{arch}.{name}", default)
            if value is None and required:
                raise ValueError(f"{reader.path}: missing metadata {arch}.{name}")
            return value

        n_embd = int(key("embedding_length"))
        n_head = int(key("attention.head_count"))
        n_kv_head = int(key("attention.head_count_kv", n_head))
        head_dim = int(key("attention.key_length", n_embd // n_head))
        n_vocab = reader.get(f"{arch}.vocab_size")
        n_ctx_train = int(key("context_length", 2048))
        # llama.cpp: the type defaults to linear, the factor (or the older rope.scale_linear) to none
        scaling = str(key("rope.scaling.type", "linear", required=False))
        factor = float(key("rope.scaling.factor", 0.0, required=False) or key("rope.scale_linear", 0.0, required=False)
                       or 0.0)
        freq_scale = 1.0 if scaling == "none" or factor == 0.0 else 1.0 / factor
        if scaling not in ("none", "linear", "yarn"):
            raise ValueError(f"{reader.path}: unsupported RoPE scaling type {scaling!r}")
        if freq_scale == 1.0 and scaling != "yarn":
            scaling = "none"
        yarn = scaling == "yarn"
        attn_factor = float(key("rope.scaling.attn_factor", 1.0, required=False) or 1.0)
        attn_factor *= float(key("rope.scaling.yarn_attn_factor", 1.0, required=False) or 1.0)
        if n_vocab is None:
            n_vocab = reader.tensor("token_embd.weight").shape[1]
        return cls(
            arch=arch,
            n_layer=int(key("block_count")),
            n_embd=n_embd,
            n_head=n_head,
            n_kv_head=n_kv_head,
            head_dim=head_dim,
            n_ff=int(key("feed_forward_length")),
            n_vocab=int(n_vocab),
            n_ctx_train=n_ctx_train,
            rms_eps=float(key("attention.layer_norm_rms_epsilon", 1e-5)),
            rope_base=float(key("rope.freq_base", 10000.0)),
            rope_dims=int(key("rope.dimension_count", head_dim)),
            rope_neox=arch in NEOX_ROPE_ARCHES,
            n_swa=int(key("attention.sliding_window", 0, required=False) or 0),
            final_logit_softcap=float(key("final_logit_softcapping", 0.0, required=False) or 0.0),
            rope_scaling=scaling,
            rope_freq_scale=freq_scale,
            rope_n_ctx_orig=int(key("rope.scaling.original_context_length", 0, required=False) or n_ctx_train),
            rope_attn_factor=attn_factor,
            yarn_ext_factor=float(key("rope.scaling.yarn_ext_factor", 1.0, required=False)) if yarn else 0.0,
            yarn_beta_fast=float(key("rope.scaling.yarn_beta_fast", 32.0, required=False)),
            yarn_beta_slow=float(key("rope.scaling.yarn_beta_slow", 1.0, required=False)),
        )
