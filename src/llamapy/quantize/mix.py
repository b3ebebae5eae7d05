"""Which type each tensor gets: llama.cpp's quantization mixes (`llama_tensor_get_type`), rule for rule.

The rules depend on the tensor's name (its category), on the model (architecture, layer count, grouped-query
ratio, experts) and on running counters over the tensors already seen, so `TypeChooser.choose` must be called
once per tensor in file order (see `tensor_order`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum, auto

from llamapy.gguf.constants import GGML_BLOCK_SIZES, GGMLType, type_name

from .ftypes import BASE_TYPE, FType

FLOAT_TYPES = frozenset({GGMLType.F32, GGMLType.F16, GGMLType.BF16})
NOT_QUANTIZED = FLOAT_TYPES | {GGMLType.F64, GGMLType.I8, GGMLType.I16, GGMLType.I32, GGMLType.I64}

_BLK = re.compile(r"blk\.[ \t\n\r\f\v]*([+-]?\d+)\.")


def block_index(name: str) -> int | None:
    """N for a name starting `blk.N.` (read as C's sscanf("blk.%d.") reads it), else None."""
    m = _BLK.match(name)
    return int(m.group(1)) if m else None


def tensor_order(names) -> list[str]:
    """llama.cpp's tensor order: names without a `blk.N.` prefix first, then by block number; by bytes within."""
    def key(name):
        n = block_index(name)
        return (-1 if n is None else n, name.encode())
    return sorted(names, key=key)


def n_dims(shape: tuple[int, ...]) -> int:
    """ggml_n_dims: dimensions up to the last one that is not 1 (at least 1)."""
    for i in range(len(shape) - 1, 0, -1):
        if shape[i] != 1:
            return i + 1
    return 1


def is_quantized(t: GGMLType) -> bool:
    return t not in NOT_QUANTIZED


class Category(Enum):
    TOKEN_EMBD = auto()
    ATTN_Q = auto()
    ATTN_V = auto()
    ATTN_K = auto()
    ATTN_QKV = auto()
    ATTN_KV_B = auto()
    ATTN_OUTPUT = auto()
    FFN_UP = auto()
    FFN_GATE = auto()
    FFN_DOWN = auto()
    OUTPUT = auto()
    OTHER = auto()


# Substrings tried in order after the two exact names; the first one found decides.
_CATEGORY_SUBSTRINGS = (
    ("attn_qkv.weight", Category.ATTN_QKV),
    ("attn_kv_b.weight", Category.ATTN_KV_B),
    ("attn_v.weight", Category.ATTN_V),
    ("attn_k.weight", Category.ATTN_K),
    ("attn_q.weight", Category.ATTN_Q),
    ("attn_output.weight", Category.ATTN_OUTPUT),
    ("ffn_up", Category.FFN_UP),
    ("ffn_gate", Category.FFN_GATE),
    ("ffn_down", Category.FFN_DOWN),
)
TOKEN_EMBD_NAMES = ("token_embd.weight", "per_layer_token_embd.weight")
ATTN_V_LIKE = frozenset({Category.ATTN_V, Category.ATTN_QKV, Category.ATTN_KV_B})


def category(name: str) -> Category:
    if name == "output.weight":
        return Category.OUTPUT
    if name in TOKEN_EMBD_NAMES:
        return Category.TOKEN_EMBD
    for part, cat in _CATEGORY_SUBSTRINGS:
        if part in name:
            return cat
    return Category.OTHER


# Tensors never quantized, by substring of the name (small, or sensitive, or not matrices of weights).
_KEEP_SUBSTRINGS = (
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
    "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
    "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
    "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
    "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
    "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
    "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd",
    ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
)
_KEEP_EXACT = ("position_embd.weight", "token_types.weight")
_KEEP_GLM5_NEXT = (
    "hc_", "indexer.attn_q_b", "indexer.attn_k", "indexer.proj", "indexer_compressor_gate",
    "indexer_compressor_ape", "ssm_f_a.weight", "ssm_f_b.weight", "ssm_g_a.weight", "ssm_g_b.weight",
    "ssm_beta.weight", "attn_kv_a_mqa.weight", "attn_k_b.weight", "attn_v_b.weight",
)


def allows_quantization(name: str, shape: tuple[int, ...], arch: str, *, only_copy: bool,
                        quantize_output: bool) -> bool:
    """llama.cpp's tensor_allows_quantization: matrices (2-D and up) of weights, minus a list of exceptions."""
    if only_copy or n_dims(shape) < 2:
        return False
    # llama.cpp tests `rfind("weight") == size - 6` on size_t, which a 5-character name also passes.
    if not (name.endswith("weight") or len(name) == 5):
        return False
    if not quantize_output and name == "output.weight":
        return False
    if name in _KEEP_EXACT or any(part in name for part in _KEEP_SUBSTRINGS):
        return False
    if arch == "glm5-next" and any(part in name for part in _KEEP_GLM5_NEXT):
        return False
    return True


@dataclass(frozen=True)
class ModelFacts:
    """What the mixes look at besides tensor names, read from the GGUF metadata as llama.cpp's hparams."""
    arch: str
    n_layer: int        # {arch}.block_count
    n_head: int         # of layer 0
    n_head_kv: int      # of layer 0
    n_expert: int
    is_70b: bool        # llama.cpp's LLM_TYPE_70B: attn_v gets more bits

    @property
    def n_gqa(self) -> int:
        return self.n_head // self.n_head_kv if self.n_head_kv else 0

    @classmethod
    def from_metadata(cls, get) -> "ModelFacts":
        """`get(key, default)` reads a metadata value (GGUFReader.get)."""
        arch = get("general.architecture", "") or ""
        n_layer = _first_int(get(f"{arch}.block_count", 0))
        n_head = _first_int(get(f"{arch}.attention.head_count", 0))
        n_head_kv = _first_int(get(f"{arch}.attention.head_count_kv", n_head))
        n_expert = _first_int(get(f"{arch}.expert_count", 0))
        # The architectures whose 80-layer (jais2: 68-layer) size is called 70B.
        is_70b = ((arch == "llama" and n_expert != 8 and n_layer == 80 and n_head != n_head_kv)
                  or (arch in ("qwen2", "deci", "olmo") and n_layer == 80) or (arch == "jais2" and n_layer == 68))
        return cls(arch, n_layer, n_head, n_head_kv, n_expert, is_70b)


def _first_int(value) -> int:
    try:
        return int(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else int(value)
    except (TypeError, ValueError, IndexError):
        return 0


@dataclass
class MixOptions:
    ftype: FType
    pure: bool = False
    only_copy: bool = False
    quantize_output: bool = True                            # False with --leave-output-tensor
    output_tensor_type: GGMLType | None = None
    token_embedding_type: GGMLType | None = None
    tensor_types: list[tuple[str, GGMLType]] = field(default_factory=list)    # (lower-cased regex, type)
    has_imatrix: bool = False


def use_more_bits(i_layer: int, n_layers: int) -> bool:
    """The layers Q4_K_M / Q5_K_M give Q6_K: the first and last eighth, and every third one between."""
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or _cmod(i_layer - n_layers // 8, 3) == 2


def _cmod(a: int, b: int) -> int:
    """C's % (the sign follows the dividend)."""
    r = abs(a) % b
    return -r if a < 0 else r


class QuantizeError(RuntimeError):
    """The quantization cannot be done as asked (bad options for this model, missing data...)."""


# Shape fallbacks: a type whose block does not divide the row length is replaced by one with a smaller block.
_FALLBACK = {
    GGMLType.IQ1_S: GGMLType.IQ4_NL, GGMLType.IQ1_M: GGMLType.IQ4_NL, GGMLType.IQ2_XXS: GGMLType.IQ4_NL,
    GGMLType.IQ2_XS: GGMLType.IQ4_NL, GGMLType.IQ2_S: GGMLType.IQ4_NL, GGMLType.IQ3_XXS: GGMLType.IQ4_NL,
    GGMLType.IQ3_S: GGMLType.IQ4_NL, GGMLType.IQ4_XS: GGMLType.IQ4_NL,
    GGMLType.Q2_K: GGMLType.Q4_0, GGMLType.Q3_K: GGMLType.Q4_0, GGMLType.TQ1_0: GGMLType.Q4_0,
    GGMLType.TQ2_0: GGMLType.Q4_0,
    GGMLType.Q4_K: GGMLType.Q5_0, GGMLType.Q5_K: GGMLType.Q5_1, GGMLType.Q6_K: GGMLType.Q8_0,
}

_IQ_LOW = frozenset({FType.IQ2_XXS, FType.IQ2_XS, FType.IQ1_S, FType.IQ2_S, FType.IQ2_M, FType.IQ1_M})
_OUTPUT_Q5_K = frozenset({FType.IQ2_XXS, FType.IQ2_XS, FType.IQ3_XXS, FType.IQ1_S, FType.IQ2_S, FType.IQ2_M,
                          FType.IQ1_M})
_ATTN_OUTPUT_Q5_K_8X = frozenset({FType.Q2_K, FType.IQ3_XS, FType.IQ3_XXS, FType.Q3_K_S, FType.Q3_K_M,
                                  FType.IQ4_NL, FType.Q4_K_S, FType.Q4_K_M, FType.IQ3_S, FType.IQ3_M,
                                  FType.IQ4_XS})


def block_size(t: GGMLType) -> int:
    return GGML_BLOCK_SIZES[GGMLType(t)][0]


def requires_imatrix(name: str, new_type: GGMLType, ftype: FType) -> bool:
    """Targets that are garbage without an importance matrix (token embeddings and output are exempt)."""
    if name in TOKEN_EMBD_NAMES or name == "output.weight":
        return False
    if new_type in (GGMLType.IQ3_XXS, GGMLType.IQ2_XXS, GGMLType.IQ2_XS, GGMLType.IQ2_S, GGMLType.IQ1_M,
                    GGMLType.IQ1_S):
        return True
    return new_type == GGMLType.Q2_K and ftype == FType.Q2_K_S


class TypeChooser:
    """The state of one pass of type selection over a model's tensors (in `tensor_order`)."""

    def __init__(self, facts: ModelFacts, options: MixOptions, names):
        self.facts = facts
        self.opts = options
        self.base = BASE_TYPE[options.ftype] if not options.only_copy else None
        cats = [category(n) for n in names]
        self.n_attention_wv = sum(c in ATTN_V_LIKE for c in cats)
        self.has_tied_embeddings = Category.OUTPUT not in cats   # no output.weight: token_embd doubles as it
        self.n_ffn = facts.n_layer          # n_ffn_down = n_ffn_gate = n_ffn_up
        self.i_attention_wv = self.i_ffn_down = self.i_ffn_gate = self.i_ffn_up = 0
        self.n_fallback = 0
        self.patterns = [(re.compile(p), t) for p, t in options.tensor_types]
        self.messages: list[str] = []       # llama.cpp's warnings from this pass, in order

    # ---- the outer rules ----------------------------------------------------------------------------

    def choose(self, name: str, shape: tuple[int, ...], src_type: GGMLType) -> GGMLType:
        """The type tensor `name` (GGUF shape, ne0 first) is written as."""
        opts, facts = self.opts, self.facts
        if not allows_quantization(name, shape, facts.arch, only_copy=opts.only_copy,
                                   quantize_output=opts.quantize_output):
            return src_type
        cat = category(name)
        if opts.token_embedding_type is not None and cat == Category.TOKEN_EMBD:
            # per_layer_token_embd may still be named by a --tensor-type pattern
            named = name == "per_layer_token_embd.weight" and any(p.search(name) for p, _ in self.patterns)
            if not named:
                return opts.token_embedding_type
        if opts.output_tensor_type is not None and cat == Category.OUTPUT:
            return opts.output_tensor_type

        new_type = self.base
        if not is_quantized(new_type):
            return new_type
        manual = False
        for pattern, qtype in self.patterns:
            if pattern.search(name):
                if qtype != new_type:
                    self.messages.append(f"llama_tensor_get_type: {name:<36} - applying manual override: "
                                         f"{type_name(new_type)} -> {type_name(qtype)}")
                    new_type = qtype
                manual = True
                break
        if not manual and not opts.pure:
            new_type = self._mix(new_type, name, shape, cat)
        return self._fallback(name, shape, new_type)

    def _fallback(self, name: str, shape: tuple[int, ...], target: GGMLType) -> GGMLType:
        ncols = shape[0]
        qk = block_size(target)
        if ncols % qk == 0:
            return target
        self.n_fallback += 1
        message = (f"warning: {name:<36} - ncols {ncols:6d} not divisible by {qk:3d} "
                   f"(required for type {type_name(target):>7}) ")
        if target in _FALLBACK:
            result = _FALLBACK[target]
        elif qk <= 32:
            result = target         # already a 32-block type: only F16 is left (below)
        else:
            raise QuantizeError(f"no tensor type fallback is defined for type {type_name(target)}")
        if ncols % block_size(result):
            message += "(WARNING: must use F16 due to unusual shape) "
            result = GGMLType.F16
        self.messages.append(message + f"-> falling back to {type_name(result):>7}")
        return result

    # ---- the mix rules (llama_tensor_get_type_impl) -----------------------------------------------

    def _layer(self, counter: int, name: str) -> tuple[int, int]:
        """(layer index, layer count) for the ffn rules: a running counter, or the blk number with experts."""
        n_layer = self.n_ffn
        if max(1, self.facts.n_expert) > 1:
            i = block_index(name)
            if i is None:
                raise QuantizeError(f"Failed to determine layer for tensor {name}")
            if i < 0 or i >= n_layer:
                raise QuantizeError(f"Bad layer {i} for tensor {name}. Must be in [0, {n_layer})")
            return i, n_layer
        return counter, n_layer

    def _mix(self, new_type: GGMLType, name: str, shape: tuple[int, ...], cat: Category) -> GGMLType:
        f, facts, T, F = self.opts.ftype, self.facts, GGMLType, FType
        arch, n_expert, gqa = facts.arch, facts.n_expert, facts.n_gqa
        falcon = arch == "falcon"

        if arch == "glm5-next" and any(p in name for p in ("attn_q_a", "attn_q_b", "nextn.eh_proj")):
            if new_type not in FLOAT_TYPES:
                return T.Q8_0

        if cat == Category.OUTPUT or (self.has_tied_embeddings and cat == Category.TOKEN_EMBD):
            if self.opts.output_tensor_type is not None:
                return self.opts.output_tensor_type
            if f == F.MXFP4_MOE:
                return T.Q8_0
            if falcon or shape[0] % block_size(new_type):
                return T.Q8_0
            if f in _OUTPUT_Q5_K:
                return T.Q5_K
            return new_type if new_type == T.Q8_0 else T.Q6_K

        if f == F.MXFP4_MOE:
            ne2 = shape[2] if len(shape) > 2 else 1
            expert_role = cat in (Category.FFN_UP, Category.FFN_GATE, Category.FFN_DOWN)
            if ne2 > 1 and (arch != "bailingmoe3" or expert_role):
                return T.MXFP4
            return T.Q8_0

        if cat == Category.TOKEN_EMBD:
            if self.opts.token_embedding_type is not None:
                return self.opts.token_embedding_type
            if f in (F.IQ2_XXS, F.IQ2_XS, F.IQ1_S, F.IQ1_M):
                return T.Q2_K
            if f in (F.IQ2_S, F.IQ2_M, F.IQ3_XXS):
                return T.IQ3_S
            if f in (F.TQ1_0, F.TQ2_0, F.Q2_0):
                return T.Q4_K
            return new_type

        if f in _IQ_LOW:
            iq3s_or_q2k = T.IQ3_S if f in (F.IQ2_S, F.IQ2_M) else T.Q2_K
            if cat in ATTN_V_LIKE:
                new_type = T.Q4_K if (gqa >= 4 or n_expert >= 4) else iq3s_or_q2k
                self.i_attention_wv += 1
            elif n_expert == 8 and cat == Category.ATTN_K:
                new_type = T.Q4_K
            elif cat == Category.FFN_DOWN:
                if self.i_ffn_down < self.n_ffn // 8:
                    new_type = iq3s_or_q2k
                self.i_ffn_down += 1
            elif cat == Category.ATTN_OUTPUT:
                if n_expert == 8:
                    new_type = T.Q5_K
                elif f in (F.IQ1_S, F.IQ1_M):
                    new_type = T.IQ2_XXS
                elif f in (F.IQ2_S, F.IQ2_M):
                    new_type = T.IQ3_S
            return new_type

        if cat in ATTN_V_LIKE:
            i, n = self.i_attention_wv, self.n_attention_wv
            if f == F.Q2_K:
                new_type = T.Q4_K if gqa >= 4 else T.Q3_K
            elif f == F.Q2_K_S and gqa >= 4:
                new_type = T.Q4_K
            elif f == F.IQ3_XXS:
                new_type = T.Q4_K if gqa >= 4 else (T.IQ3_S if not self.opts.has_imatrix else T.IQ3_XXS)
            elif f in (F.IQ3_XS, F.IQ3_S) and gqa >= 4:
                new_type = T.Q4_K
            elif f == F.IQ3_M:
                new_type = T.Q4_K
            elif f == F.Q3_K_M:
                new_type = T.Q5_K if i < 2 else T.Q4_K
            elif f == F.Q3_K_L:
                new_type = T.Q5_K
            elif f in (F.IQ4_NL, F.IQ4_XS) and gqa >= 4:
                new_type = T.Q5_K
            elif f in (F.Q4_K_M, F.Q5_K_M) and use_more_bits(i, n):
                new_type = T.Q6_K
            elif f == F.Q4_K_S and i < 4:
                new_type = T.Q5_K
            if facts.is_70b and new_type in (T.Q3_K, T.Q4_K):
                new_type = T.Q5_K     # 70B models share attn_v across 8 heads: cheap to give it more bits
            if n_expert == 8:
                new_type = T.Q8_0
            self.i_attention_wv += 1
            return new_type

        if cat == Category.ATTN_K:
            if n_expert == 8:
                return T.Q8_0
            if f == F.IQ3_XS:
                return T.IQ3_XXS
            if f == F.IQ3_XXS:
                return T.IQ2_S
            return new_type

        if cat == Category.ATTN_Q:
            if f == F.IQ3_XS:
                return T.IQ3_XXS
            if f == F.IQ3_XXS:
                return T.IQ2_S
            return new_type

        if cat == Category.FFN_DOWN:
            i, n = self._layer(self.i_ffn_down, name)
            imatrix = self.opts.has_imatrix
            if f == F.Q2_K:
                new_type = T.Q3_K
            elif f == F.Q2_K_S:
                if i < n // 8:
                    new_type = T.Q4_K
            elif f == F.IQ3_XXS and not imatrix:
                new_type = T.Q4_K if i < n // 8 else T.Q3_K
            elif f == F.Q3_K_M:
                if i < n // 16:
                    new_type = T.Q5_K
                elif not falcon or use_more_bits(i, n):
                    new_type = T.Q4_K
                else:
                    new_type = T.Q3_K
            elif f == F.IQ3_M and (i < n // 8 or (n_expert == 8 and use_more_bits(i, n))):
                new_type = T.Q4_K
            elif f == F.Q3_K_L:
                new_type = T.Q4_K if falcon else T.Q5_K
            elif f == F.Q4_K_M:
                if falcon:
                    new_type = T.Q6_K if i < n // 16 else T.Q5_K if use_more_bits(i, n) else T.Q4_K
                elif use_more_bits(i, n):
                    new_type = T.Q6_K
            elif i < n // 8 and f in (F.IQ4_NL, F.IQ4_XS) and not imatrix:
                new_type = T.Q5_K
            elif f == F.Q5_K_M and use_more_bits(i, n):
                new_type = T.Q6_K
            elif f == F.Q4_K_S and not falcon and i < n // 8:
                new_type = T.Q5_K
            elif f in (F.Q4_0, F.Q5_0) and imatrix and i < n // 8:
                new_type = T.Q4_1 if f == F.Q4_0 else T.Q5_1
            self.i_ffn_down += 1
            return new_type

        if cat == Category.ATTN_OUTPUT:
            if not falcon:
                if n_expert == 8:
                    if f in _ATTN_OUTPUT_Q5_K_8X:
                        new_type = T.Q5_K
                elif f == F.Q2_K:
                    new_type = T.Q3_K
                elif f == F.IQ3_XXS:
                    new_type = T.IQ3_S
                elif f == F.Q3_K_M:
                    new_type = T.Q4_K
                elif f == F.Q3_K_L:
                    new_type = T.Q5_K
                elif f == F.IQ3_M:
                    new_type = T.Q4_K
            elif f == F.Q3_K_L:
                new_type = T.Q4_K
            return new_type

        # (llama.cpp has an attn_qkv rule here that can never run: fused qkv is attn_v-like, handled above.)
        if cat in (Category.FFN_GATE, Category.FFN_UP):
            counter = self.i_ffn_gate if cat == Category.FFN_GATE else self.i_ffn_up
            i, n = self._layer(counter, name)
            if f == F.IQ3_XS and n // 8 <= i < 7 * n // 8:
                new_type = T.IQ3_XXS
            if cat == Category.FFN_GATE:
                self.i_ffn_gate += 1
            else:
                self.i_ffn_up += 1
            return new_type

        return new_type
