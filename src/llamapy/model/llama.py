"""The model driver: load a GGUF model and evaluate tokens into logits (any registered architecture:
llamapy.model.arch maps general.architecture to its forward pass; llama, qwen2 and gemma3 today).

    model = Model(path, n_ctx=512, n_threads=2)
    logits = model.eval(prompt_ids, pos=0)            # (1, n_vocab): the last token's logits
    logits = model.eval([next_id], pos=len(prompt_ids))
    model.kv_shift(p0, p1, -d)                        # context shift: positions p0..p1-1 move d back

Weights stay in the file's memory map. The KV cache (n_ctx positions of type_k / type_v: f16 by default, f32,
or q8_0 for K) and the activation buffers are allocated once here; each eval call runs every layer in C
(llamapy._kernels._ops.LlamaForward / Gemma3Forward) without Python in the loop.
"""
from __future__ import annotations

import numpy as np

from llamapy.gguf import GGUFReader
from llamapy.model.arch import architecture, layer_rope_bases
from llamapy.model.config import ModelConfig
from llamapy.model.kvcache import kv_cache_type, shift_positions
from llamapy.runtime import effective_n_threads


class Model:
    def __init__(self, path, n_ctx: int = 2048, n_batch: int = 512, n_threads: int | None = None,
                 type_k: str | int = "f16", type_v: str | int = "f16", n_seq: int = 1):
        """path: a .gguf file, or an open GGUFReader of one (reused, so the file is parsed only once).
        type_k, type_v: KV cache types, by name or ggml type id (llamapy.model.kvcache: K f32, f16, q8_0;
        V f32, f16). n_seq: sequences with a KV cache of their own (n_ctx positions each), evaluated
        together by eval_seqs; eval, kv_shift, kv_rows and kv_restore work on sequence 0."""
        type_k, type_v = kv_cache_type(type_k, "K"), kv_cache_type(type_v, "V")
        self.reader = path if isinstance(path, GGUFReader) else GGUFReader(path)
        path = self.reader.path
        name = self.reader.get("general.architecture")
        if name is None:
            raise ValueError(f"{path}: no general.architecture")
        try:
            arch = architecture(name)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        self.config = cfg = ModelConfig.from_gguf(self.reader)
        self.n_threads = effective_n_threads(n_threads)
        self.n_ctx = n_ctx
        self.weights, self._fwd = arch.build(self.reader, cfg, n_ctx, n_batch, self.n_threads, type_k, type_v,
                                             n_seq=n_seq)
        self.n_seq = n_seq
        self.type_k, self.type_v = type_k, type_v
        self.n_batch = self._fwd.n_batch
        self.n_vocab = cfg.n_vocab

    def eval(self, tokens, pos: int, all_logits: bool = False, n_threads: int | None = None,
             out: np.ndarray | None = None) -> np.ndarray:
        """Evaluate tokens at positions pos, pos + 1, ... (their K/V go into the cache there; positions
        before pos must already be filled). Returns float32 logits, shape (len(tokens), n_vocab) when
        all_logits, else (1, n_vocab) for the last token. Inputs longer than n_batch go in chunks.
        out: an array of that shape to write the logits into and return (a generation loop reuses one
        rather than allocating a vocabulary-sized array per token)."""
        ids = np.ascontiguousarray(tokens, dtype=np.int32).reshape(-1)
        n = ids.shape[0]
        if n == 0:
            raise ValueError("no tokens to evaluate")
        if pos < 0 or pos + n > self.n_ctx:
            raise ValueError(f"positions {pos}..{pos + n - 1} do not fit the context of {self.n_ctx}")
        threads = self.n_threads if n_threads is None else min(n_threads, self.n_threads)
        shape = (n if all_logits else 1, self.n_vocab)
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous float32 array of shape {shape}")
        for start in range(0, n, self.n_batch):
            chunk = ids[start:start + self.n_batch]
            last = start + chunk.shape[0] == n
            if all_logits:
                self._fwd.forward(chunk, pos + start, out[start:start + chunk.shape[0]], True, threads)
            elif last:
                self._fwd.forward(chunk, pos + start, out, False, threads)
            else:
                self._fwd.forward(chunk, pos + start, np.empty((1, self.n_vocab), np.float32), False, threads)
        return out

    def eval_seqs(self, tokens, seqs, positions, all_logits: bool = True, n_threads: int | None = None) -> np.ndarray:
        """Evaluate tokens of several sequences in one batch (the weights are read once for all): token t at
        position positions[t] of sequence seqs[t] (earlier positions of that sequence evaluated before, or
        earlier in this call). Returns float32 logits, (len(tokens), n_vocab) when all_logits, else (1,
        n_vocab) for the last token. Inputs longer than n_batch go in chunks, in order."""
        ids = np.ascontiguousarray(tokens, dtype=np.int32).reshape(-1)
        seqs = np.ascontiguousarray(seqs, dtype=np.int32).reshape(-1)
        positions = np.ascontiguousarray(positions, dtype=np.int32).reshape(-1)
        n = ids.shape[0]
        if n == 0:
            raise ValueError("no tokens to evaluate")
        if seqs.shape[0] != n or positions.shape[0] != n:
            raise ValueError("seqs and positions need one entry per token")
        threads = self.n_threads if n_threads is None else min(n_threads, self.n_threads)
        out = np.empty((n if all_logits else 1, self.n_vocab), dtype=np.float32)
        for start in range(0, n, self.n_batch):
            end = min(start + self.n_batch, n)
            rows = out[start:end] if all_logits else (out if end == n else np.empty((1, self.n_vocab), np.float32))
            self._fwd.forward(ids[start:end], 0, rows, all_logits, threads, seqs=seqs[start:end],
                              positions=positions[start:end])
        return out

    def kv_shift(self, p0: int, p1: int, delta: int) -> None:
        """Move the cached positions [p0, p1) by delta (< 0 for llama.cpp's context shift); what was at the
        target positions is overwritten, positions from p1 + delta on are left stale (evaluate over them)."""
        shift_positions(self._fwd, self.config, layer_rope_bases(self.config), p0, p1, delta)

    def kv_rows(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the K and V cache bytes of positions 0..n-1: (n_layer, n, row bytes) each."""
        return self._fwd.kcache[:, :n].copy(), self._fwd.vcache[:, :n].copy()

    def kv_restore(self, k: np.ndarray, v: np.ndarray) -> None:
        """Put cache bytes from kv_rows (of a model with the same shape and cache types) back at positions 0.."""
        n = k.shape[1]
        self._fwd.kcache[:, :n] = k
        self._fwd.vcache[:, :n] = v
