"""Model quantization as llama-quantize does it: the same type for every tensor, the same bytes in the file.

    from llamapy.quantize import QuantizeParams, parse_ftype, quantize_file
    quantize_file("model-f16.gguf", "model-q4_k_m.gguf", QuantizeParams(parse_ftype("Q4_K_M"), n_threads=4))

`ftypes` holds the TYPE table, `mix` the per-tensor type rules, `model` the planning and the file writing.
"""
from .ftypes import QUANT_OPTIONS, WRITABLE_TYPES, FType, QuantOption, can_plan, can_write, parse_ftype
from .mix import QuantizeError, tensor_order
from .model import (Converter, KVOverride, QuantizeListener, QuantizeParams, QuantizePlan, QuantizeResult,
                    TensorJob, make_plan, open_input, parse_kv_override, quantize_file, tensor_job, valid_data)

__all__ = [
    "QUANT_OPTIONS", "WRITABLE_TYPES", "FType", "QuantOption", "can_plan", "can_write", "parse_ftype",
    "QuantizeError", "tensor_order", "KVOverride", "QuantizeListener", "QuantizeParams", "QuantizePlan",
    "QuantizeResult", "TensorJob", "Converter", "make_plan", "open_input", "parse_kv_override",
    "quantize_file", "tensor_job", "valid_data",
]
