"""llamapy: run and measure quantized LLMs on the CPU, interchangeable with llama.cpp's GGUF files."""
__version__ = "0.1.0"
