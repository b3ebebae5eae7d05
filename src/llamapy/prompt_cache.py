"""Prompt cache files (``llamapy-cli --prompt-cache FILE``): evaluated tokens and their KV cache entries.

    save(path, model, tokens, n_kv)      # tokens[:n_kv] have their K/V in the model's cache
    tokens, n_kv = load(path, model)     # the entries are back in the model's cache; PromptCacheError if not

As llama.cpp's session files, the token list may hold one more token than the cache (the last prompt token:
whoever loads the file evaluates it again to get logits). The file is llamapy's own format (llama.cpp's holds
its ggml cache layout): a header naming the model (a hash of the GGUF header: metadata and tensor table), the
context size and the cache types, then the tokens, then K and V rows of every layer. A file made for another
model, context size or cache type is refused. Written to a temporary file and renamed.
"""
from __future__ import annotations

import hashlib
import os
import struct
import tempfile

import numpy as np

__all__ = ["PromptCacheError", "load", "model_fingerprint", "save"]

MAGIC = b"LLPYPC\x00\x01"        # llamapy prompt cache, format 1
_HEADER = struct.Struct("<8s32sIIII")   # magic, model hash, n_ctx, n_layer, n_tokens, n_kv
_TYPES = struct.Struct("<16s16s")        # K and V cache type names


class PromptCacheError(ValueError):
    """The file cannot be used with this model and context (one-line message)."""


def model_fingerprint(model) -> bytes:
    """sha256 of the GGUF header (metadata and tensor table): the same model file, the same quantization."""
    with open(model.reader.path, "rb") as f:
        return hashlib.sha256(f.read(model.reader.data_offset)).digest()


def save(path, model, tokens, n_kv: int) -> None:
    tokens = np.asarray(tokens, np.int32)
    if not 0 <= n_kv <= len(tokens) or n_kv > model.n_ctx:
        raise ValueError(f"bad prompt cache state: {len(tokens)} tokens, {n_kv} cached")
    k, v = model.kv_rows(n_kv)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".prompt-cache-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_HEADER.pack(MAGIC, model_fingerprint(model), model.n_ctx, model.config.n_layer,
                                 len(tokens), n_kv))
            f.write(_TYPES.pack(model.type_k.encode(), model.type_v.encode()))
            f.write(tokens.tobytes())
            f.write(np.ascontiguousarray(k).tobytes())
            f.write(np.ascontiguousarray(v).tobytes())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)      # mkstemp made it private; a saved file gets the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path, model) -> tuple[list[int], int]:
    """Read a prompt cache into the model's KV cache; returns (tokens, n_kv)."""
    with open(path, "rb") as f:
        head = f.read(_HEADER.size + _TYPES.size)
        if len(head) < _HEADER.size + _TYPES.size or not head.startswith(MAGIC):
            raise PromptCacheError("not a llamapy prompt cache file")
        _, digest, n_ctx, n_layer, n_tokens, n_kv = _HEADER.unpack_from(head)
        type_k, type_v = (t.rstrip(b"\x00").decode("ascii", "replace") for t in _TYPES.unpack_from(head, _HEADER.size))
        if digest != model_fingerprint(model) or n_layer != model.config.n_layer:
            raise PromptCacheError("it was made with another model")
        if n_ctx != model.n_ctx:
            raise PromptCacheError(f"it was made with context size {n_ctx} (this run: -c {model.n_ctx})")
        if (type_k, type_v) != (model.type_k, model.type_v):
            raise PromptCacheError(f"it was made with cache types K {type_k}, V {type_v} "
                                   f"(this run: K {model.type_k}, V {model.type_v})")
        if not n_tokens - 1 <= n_kv <= n_tokens or n_tokens > n_ctx:
            raise PromptCacheError(f"inconsistent counts ({n_tokens} tokens, {n_kv} cached, context {n_ctx})")
        tokens = np.frombuffer(f.read(4 * n_tokens), np.int32)
        no_k, no_v = model.kv_rows(0)          # (n_layer, 0, row bytes): the row sizes
        k_row, v_row = no_k.shape[2], no_v.shape[2]
        k = np.frombuffer(f.read(n_layer * n_kv * k_row), np.uint8)
        v = np.frombuffer(f.read(n_layer * n_kv * v_row), np.uint8)
        if len(tokens) != n_tokens or k.size != n_layer * n_kv * k_row or v.size != n_layer * n_kv * v_row:
            raise PromptCacheError("the file is truncated")
        if f.read(1):
            raise PromptCacheError("the file has trailing bytes")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= model.n_vocab):
        raise PromptCacheError("it holds token ids outside the vocabulary")
    model.kv_restore(k.reshape(n_layer, n_kv, k_row), v.reshape(n_layer, n_kv, v_row))
    return tokens.tolist(), n_kv
