"""Model forward passes: configuration from GGUF metadata, weight lookup, and the drivers."""
from llamapy.model.config import ModelConfig
from llamapy.model.llama import Model

__all__ = ["Model", "ModelConfig"]
