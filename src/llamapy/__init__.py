"""llamapy: run and measure quantized LLMs on the CPU, interchangeable with llama.cpp's GGUF files."""
__version__ = "0.1.0"

__all__ = ["Llama", "LlamaGrammar", "__version__"]


def __getattr__(name):
    # Lazy: `import llamapy` stays light (no kernels, no NumPy) until the API is used.
    if name == "Llama":
        from llamapy.api import Llama
        return Llama
    if name == "LlamaGrammar":
        from llamapy.grammar import LlamaGrammar
        return LlamaGrammar
    raise AttributeError(f"module 'llamapy' has no attribute {name!r}")
