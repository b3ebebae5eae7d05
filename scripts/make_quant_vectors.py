"""Write tests/data/quant_vectors/<type>.npz: float32 rows and the bytes llama.cpp's ggml makes of them.

Run with the peer environment that has llama-cpp-python (it ships ggml's shared libraries):

    PEER_VENV/bin/python scripts/make_quant_vectors.py

ggml is called through ctypes: ggml_quantize_chunk (what llama-quantize uses, imatrix NULL) for the
file formats, quantize_row_q8_1_ref / quantize_row_q8_K_ref for the two activation formats. Each .npz
holds x (rows x N float32), q (rows x row_bytes uint8), kinds (what each row is), type_name, type_id,
and ggml_version (the llama-cpp-python version that made the bytes).
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

import gguf
import llama_cpp

N = 512  # elements per row: a multiple of every block size (32 and 256)
OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "quant_vectors"
MODELS = Path(os.environ.get("LLAMAPY_CACHE", Path.home() / ".cache" / "llamapy")) / "models"

# name -> (ggml type id, block elements, block bytes); ids are the GGUF ones
TYPES = {
    "f16": (1, 1, 2), "bf16": (30, 1, 2),
    "q4_0": (2, 32, 18), "q4_1": (3, 32, 20), "q5_0": (6, 32, 22), "q5_1": (7, 32, 24),
    "q8_0": (8, 32, 34), "q8_1": (9, 32, 36),
    "q2_K": (10, 256, 84), "q3_K": (11, 256, 110), "q4_K": (12, 256, 144), "q5_K": (13, 256, 176),
    "q6_K": (14, 256, 210), "q8_K": (15, 256, 292),
    "iq4_nl": (20, 32, 18), "iq4_xs": (23, 256, 136), "tq1_0": (34, 256, 54), "tq2_0": (35, 256, 66),
}
ROW_REF = {"q8_1", "q8_K"}  # not file formats: ggml_quantize_chunk refuses them, call the *_ref row function


def load_ggml():
    lib = Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"
    g = ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
    g.ggml_quantize_chunk.restype = ctypes.c_size_t
    g.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                      ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    g.ggml_quantize_init.argtypes = [ctypes.c_int]
    for name in ("quantize_row_q8_1_ref", "quantize_row_q8_K_ref"):
        getattr(g, name).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    return g


def real_rows():
    """Two rows of real weights (first N values of a row), dequantized from each reference model."""
    rows = []
    for fname, tensors in (("SmolLM2-135M-Instruct.Q4_1.gguf", ("blk.0.attn_q.weight", "blk.5.ffn_down.weight")),
                           ("gemma-3-270m-q4_k_m.gguf", ("blk.0.ffn_gate.weight", "blk.3.attn_v.weight"))):
        reader = gguf.GGUFReader(MODELS / fname)
        by_name = {t.name: t for t in reader.tensors}
        for tn in tensors:
            t = by_name[tn]
            w = gguf.quants.dequantize(np.asarray(t.data[7:8]), t.tensor_type).reshape(-1)
            rows.append((f"real:{fname.split('.')[0].split('-q4')[0]}:{tn}", w[:N].astype(np.float32)))
    return rows


def input_rows():
    """(kind, row) pairs: the shapes of data that exercise every branch of the quantizers."""
    rng = np.random.default_rng(20240531)
    rows = [
        ("normal", rng.standard_normal(N)),
        ("uniform", rng.uniform(-1, 1, N)),
        ("student_t3", rng.standard_t(3, N)),
        ("cauchy", rng.standard_cauchy(N)),
        ("zeros", np.zeros(N)),
        ("constant", np.full(N, 0.37)),
        ("tiny_1e-30", rng.standard_normal(N) * 1e-30),
        ("large_1e4", rng.standard_normal(N) * 1e4),
        ("positive_lognormal", rng.lognormal(0, 1, N)),
    ]
    outlier = rng.standard_normal(N) * 0.02
    outlier[137] = 3.0
    outlier[400] = -5.0
    rows.append(("outliers", outlier))
    # integers and half-integers with a block max of 127: rounding ties for every rounding rule
    halves = np.tile(np.arange(-127, 127, dtype=np.float64) + 0.5, 3)[:N]
    halves[::32] = 127.0
    rows.append(("half_integers", halves))
    small_ints = rng.integers(-8, 8, N).astype(np.float64)
    small_ints[::32] = -8
    rows.append(("small_integers", small_ints))
    # some blocks and sub-blocks all zero, others not; one 16-group with near-zero values
    sparse = rng.standard_normal(N)
    sparse[0:32] = 0
    sparse[64:96] = 0
    sparse[256:288] = 1e-20
    sparse[300:316] = 0
    rows.append(("zero_subblocks", sparse))
    # f16 edge cases: halfway points, subnormals, overflow
    edges = rng.standard_normal(N) * 100
    edges[:12] = [65504, 65519, 65520, 70000, -65520, 6e-8, 2.9802322e-08, 1e-5, 1 + 2 ** -11 + 2 ** -20,
                  1 + 2 ** -11, 1 + 3 * 2 ** -11, -(1 + 2 ** -11)]
    rows.append(("f16_edges", edges))
    rows += real_rows()
    kinds = [k for k, _ in rows]
    return kinds, np.stack([np.asarray(r, dtype=np.float32) for _, r in rows])


def quantize(g, name, x):
    tid, bs, ts = TYPES[name]
    rows, n = x.shape
    q = np.zeros((rows, n // bs * ts), dtype=np.uint8)
    x = np.ascontiguousarray(x)
    if name in ROW_REF:
        getattr(g, f"quantize_row_{name}_ref")(x.ctypes.data, q.ctypes.data, x.size)
    else:
        g.ggml_quantize_init(tid)
        size = g.ggml_quantize_chunk(tid, x.ctypes.data, q.ctypes.data, 0, rows, n, None)
        assert size == q.nbytes, (name, size, q.nbytes)
    return q


def main():
    g = load_ggml()
    kinds, x = input_rows()
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (tid, _, _) in TYPES.items():
        q = quantize(g, name, x)
        path = OUT / f"{name}.npz"
        np.savez_compressed(path, x=x, q=q, kinds=np.array(kinds), type_name=name, type_id=tid,
                            ggml_version=f"llama-cpp-python {llama_cpp.__version__}")
        print(f"{path.name}: {x.shape[0]} rows x {x.shape[1]}, {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
