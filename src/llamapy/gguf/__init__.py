"""GGUF files: a hardened memory-mapped reader and a writer with llama.cpp's exact layout."""
from .constants import (
    GGML_BLOCK_SIZES,
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    GGUF_SUPPORTED_VERSIONS,
    KERNEL_TYPES,
    QK_K,
    GGMLType,
    GGUFValueType,
    row_bytes,
    type_name,
)
from .reader import GGML_MAX_DIMS, GGUFArray, GGUFError, GGUFReader, ReaderField, ReaderTensor, tensor_view
from .writer import GGUFWriter, copy_gguf

__all__ = [
    "GGUFReader", "GGUFWriter", "GGUFError", "ReaderField", "ReaderTensor", "GGUFArray", "copy_gguf",
    "tensor_view", "GGML_MAX_DIMS",
    "GGUFValueType", "GGMLType", "GGML_BLOCK_SIZES", "GGUF_MAGIC", "GGUF_SUPPORTED_VERSIONS",
    "GGUF_DEFAULT_ALIGNMENT", "KERNEL_TYPES", "QK_K", "type_name", "row_bytes",
]
