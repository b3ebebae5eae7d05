"""llama.cpp's file types ("ftypes"): the TYPE argument of llamapy-quantize and what each one means.

A file type names a quantization *mix*: a base tensor type (Q4_K for Q4_K_M) plus the rules in `mix.py`
that move some tensors to other types. The numbers are llama.cpp's `llama_ftype` values, stored in
`general.file_type`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

from llamapy.gguf.constants import GGMLType


class FType(IntEnum):
    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q8_0 = 7
    Q5_0 = 8
    Q5_1 = 9
    Q2_K = 10
    Q3_K_S = 11
    Q3_K_M = 12
    Q3_K_L = 13
    Q4_K_S = 14
    Q4_K_M = 15
    Q5_K_S = 16
    Q5_K_M = 17
    Q6_K = 18
    IQ2_XXS = 19
    IQ2_XS = 20
    Q2_K_S = 21
    IQ3_XS = 22
    IQ3_XXS = 23
    IQ1_S = 24
    IQ4_NL = 25
    IQ3_S = 26
    IQ3_M = 27
    IQ2_S = 28
    IQ2_M = 29
    IQ4_XS = 30
    IQ1_M = 31
    BF16 = 32
    TQ1_0 = 36
    TQ2_0 = 37
    MXFP4_MOE = 38
    NVFP4 = 39
    Q1_0 = 40
    Q2_0 = 41


FTYPE_GUESSED = 1024    # or-ed into a file type that was inferred from the tensor types, not read from the file

# The tensor type each file type starts from. Q1_0, Q2_0 and NVFP4 are ggml types llamapy does not know.
BASE_TYPE: dict[FType, GGMLType] = {
    FType.F32: GGMLType.F32, FType.F16: GGMLType.F16, FType.BF16: GGMLType.BF16,
    FType.Q4_0: GGMLType.Q4_0, FType.Q4_1: GGMLType.Q4_1, FType.Q5_0: GGMLType.Q5_0, FType.Q5_1: GGMLType.Q5_1,
    FType.Q8_0: GGMLType.Q8_0, FType.MXFP4_MOE: GGMLType.MXFP4,
    FType.Q2_K: GGMLType.Q2_K, FType.Q2_K_S: GGMLType.Q2_K,
    FType.Q3_K_S: GGMLType.Q3_K, FType.Q3_K_M: GGMLType.Q3_K, FType.Q3_K_L: GGMLType.Q3_K,
    FType.Q4_K_S: GGMLType.Q4_K, FType.Q4_K_M: GGMLType.Q4_K,
    FType.Q5_K_S: GGMLType.Q5_K, FType.Q5_K_M: GGMLType.Q5_K, FType.Q6_K: GGMLType.Q6_K,
    FType.TQ1_0: GGMLType.TQ1_0, FType.TQ2_0: GGMLType.TQ2_0,
    FType.IQ2_XXS: GGMLType.IQ2_XXS, FType.IQ2_XS: GGMLType.IQ2_XS, FType.IQ2_S: GGMLType.IQ2_XS,
    FType.IQ2_M: GGMLType.IQ2_S, FType.IQ3_XXS: GGMLType.IQ3_XXS, FType.IQ3_XS: GGMLType.IQ3_S,
    FType.IQ3_S: GGMLType.IQ3_S, FType.IQ3_M: GGMLType.IQ3_S,
    FType.IQ1_S: GGMLType.IQ1_S, FType.IQ1_M: GGMLType.IQ1_M,
    FType.IQ4_NL: GGMLType.IQ4_NL, FType.IQ4_XS: GGMLType.IQ4_XS,
}

# Tensor types llamapy can write: ggml's reference quantizers for these are ported bit-exactly in the kernels.
WRITABLE_TYPES = frozenset({
    GGMLType.F32, GGMLType.F16, GGMLType.BF16,
    GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1, GGMLType.Q8_0,
    GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K,
    GGMLType.IQ4_NL, GGMLType.IQ4_XS, GGMLType.TQ1_0, GGMLType.TQ2_0,
})

# Tensor types llamapy can read back to float32 (the source side of a requantization).
READABLE_TYPES = WRITABLE_TYPES


@dataclass(frozen=True)
class QuantOption:
    name: str           # what the user types (case-insensitive); also names the default output file
    ftype: FType
    summary: str        # one line for the usage table


def _opt(name: str, ftype: FType, summary: str) -> QuantOption:
    return QuantOption(name, ftype, summary)


# llama-quantize's table, in its order: a number selects the first entry with that ftype (12 -> Q3_K,
# 0 -> F32), and COPY comes after F32 so that 0 never selects it.
QUANT_OPTIONS: tuple[QuantOption, ...] = (
    _opt("Q1_0", FType.Q1_0, "1-bit, blocks of 128 (not available in llamapy)"),
    _opt("Q2_0", FType.Q2_0, "2-bit, blocks of 64 (not available in llamapy)"),
    _opt("Q4_0", FType.Q4_0, "4.50 bpw, scale per block of 32"),
    _opt("Q4_1", FType.Q4_1, "5.00 bpw, scale and minimum per block of 32"),
    _opt("MXFP4_MOE", FType.MXFP4_MOE, "MXFP4 experts, Q8_0 elsewhere (dry run only)"),
    _opt("Q5_0", FType.Q5_0, "5.50 bpw, scale per block of 32"),
    _opt("Q5_1", FType.Q5_1, "6.00 bpw, scale and minimum per block of 32"),
    _opt("IQ2_XXS", FType.IQ2_XXS, "2.06 bpw, needs an importance matrix (dry run only)"),
    _opt("IQ2_XS", FType.IQ2_XS, "2.31 bpw, needs an importance matrix (dry run only)"),
    _opt("IQ2_S", FType.IQ2_S, "2.5 bpw, needs an importance matrix (dry run only)"),
    _opt("IQ2_M", FType.IQ2_M, "2.7 bpw, needs an importance matrix (dry run only)"),
    _opt("IQ1_S", FType.IQ1_S, "1.56 bpw, needs an importance matrix (dry run only)"),
    _opt("IQ1_M", FType.IQ1_M, "1.75 bpw, needs an importance matrix (dry run only)"),
    _opt("TQ1_0", FType.TQ1_0, "1.69 bpw ternary"),
    _opt("TQ2_0", FType.TQ2_0, "2.06 bpw ternary"),
    _opt("Q2_K", FType.Q2_K, "K-quant mix on Q2_K, attention and ffn_down raised"),
    _opt("Q2_K_S", FType.Q2_K_S, "K-quant mix on Q2_K, smaller (dry run only: needs an importance matrix)"),
    _opt("IQ3_XXS", FType.IQ3_XXS, "3.06 bpw (dry run only)"),
    _opt("IQ3_S", FType.IQ3_S, "3.44 bpw (dry run only)"),
    _opt("IQ3_M", FType.IQ3_M, "3.66 bpw mix (dry run only)"),
    _opt("Q3_K", FType.Q3_K_M, "same as Q3_K_M"),
    _opt("IQ3_XS", FType.IQ3_XS, "3.3 bpw (dry run only)"),
    _opt("Q3_K_S", FType.Q3_K_S, "K-quant mix, Q3_K throughout"),
    _opt("Q3_K_M", FType.Q3_K_M, "K-quant mix on Q3_K, attn_v/ffn_down/attn_output raised"),
    _opt("Q3_K_L", FType.Q3_K_L, "K-quant mix on Q3_K, attn_v/ffn_down/attn_output at Q5_K"),
    _opt("IQ4_NL", FType.IQ4_NL, "4.50 bpw, non-linear levels, blocks of 32"),
    _opt("IQ4_XS", FType.IQ4_XS, "4.25 bpw, non-linear levels, blocks of 256"),
    _opt("Q4_K", FType.Q4_K_M, "same as Q4_K_M"),
    _opt("Q4_K_S", FType.Q4_K_S, "K-quant mix on Q4_K, first layers raised"),
    _opt("Q4_K_M", FType.Q4_K_M, "K-quant mix on Q4_K, half of attn_v/ffn_down at Q6_K"),
    _opt("Q5_K", FType.Q5_K_M, "same as Q5_K_M"),
    _opt("Q5_K_S", FType.Q5_K_S, "K-quant mix, Q5_K throughout"),
    _opt("Q5_K_M", FType.Q5_K_M, "K-quant mix on Q5_K, half of attn_v/ffn_down at Q6_K"),
    _opt("Q6_K", FType.Q6_K, "6.56 bpw K-quant"),
    _opt("Q8_0", FType.Q8_0, "8.50 bpw, scale per block of 32"),
    _opt("F16", FType.F16, "16-bit IEEE half floats"),
    _opt("BF16", FType.BF16, "16-bit bfloat16"),
    _opt("F32", FType.F32, "32-bit floats"),
    _opt("COPY", FType.F32, "copy every tensor unchanged (keeps the input's file type)"),
)


def parse_ftype(text: str) -> QuantOption | None:
    """The option a TYPE argument names: a name (any case) or, failing that, a file type number."""
    upper = text.upper()
    for option in QUANT_OPTIONS:
        if option.name == upper:
            return option
    number = c_stoi(text)
    if number is not None:
        for option in QUANT_OPTIONS:
            if option.ftype == number:
                return option
    return None


_C_INT = re.compile(r"[ \t\n\r\f\v]*([+-]?[0-9]+)")


def c_stoi(text: str) -> int | None:
    """Like C++ std::stoi: optional whitespace and sign, then digits; anything after them is ignored.
    None when there are no digits or the number does not fit in an int."""
    m = _C_INT.match(text)
    if m is None:
        return None
    value = int(m.group(1))
    return value if -(1 << 31) <= value < (1 << 31) else None


def can_write(option: QuantOption) -> bool:
    """Whether llamapy has the quantizers this option's base type needs (COPY and the float types included)."""
    base = BASE_TYPE.get(option.ftype)
    return option.name == "COPY" or base in WRITABLE_TYPES


def can_plan(option: QuantOption) -> bool:
    """Whether the type selection (and so --dry-run) works for this option: its base type is a known ggml type."""
    return option.name == "COPY" or option.ftype in BASE_TYPE
