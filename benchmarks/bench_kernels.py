"""Kernel benchmark: matrix-vector speed against the memory-bandwidth floor, and (de)quantize throughput.

    python benchmarks/bench_kernels.py [--threads 2] [--reps 5] [--quick]

Matrix-vector: for each reference model, the weight matrices of one token's forward pass (every layer's
attention and FFN projections plus the output projection), in the model's own types and in each of
Q4_0 Q4_1 Q5_0 Q8_0 Q4_K Q6_K (random data, real shapes; K types only where the row length allows).
Each set is larger than the last-level cache, so weights stream from RAM, as in token generation.
The floor is the set's bytes over the read bandwidth measured here, in the same run.
Prints markdown tables for BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from llamapy import quants  # noqa: E402
from llamapy._kernels import _ops  # noqa: E402
from llamapy.gguf import GGUFReader  # noqa: E402
from llamapy.gguf.constants import GGML_BLOCK_SIZES, GGMLType, type_name  # noqa: E402
from llamapy.models import model_path  # noqa: E402

TARGET_TYPES = (GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q8_0, GGMLType.Q4_K, GGMLType.Q6_K)
MIN_SET_BYTES = 3 * 32 << 20  # three times this CPU's 32 MiB L3, so nothing stays cached between passes
PROJECTIONS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def read_bandwidth(n_threads: int, reps: int) -> float:
    """Best-of-reps read bandwidth in GB/s over a 1 GiB buffer."""
    buf = np.ones(1 << 30, dtype=np.uint8)
    _ops.read_bytes(buf, n_threads)
    best = 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        _ops.read_bytes(buf, n_threads)
        best = max(best, buf.nbytes / (time.perf_counter() - t0) / 1e9)
    return best


# Products the forward pass computes in one call, from one input (llp_matmul_group).
SHARED_INPUT = {"attn_q": "qkv", "attn_k": "qkv", "attn_v": "qkv", "ffn_gate": "gate_up", "ffn_up": "gate_up"}


def group_key(name: str):
    """Matrices with the same key share their input and are multiplied in one call, as in the forward pass."""
    base, _, copy = name.partition("@")   # synthetic sets: "<tensor name>@<copy>"
    parts = base.split(".")
    if len(parts) >= 3 and parts[0] == "blk" and parts[2] in SHARED_INPUT:
        return (copy, parts[1], SHARED_INPUT[parts[2]])
    return name


def forward_matrices(reader: GGUFReader):
    """(name, type, rows, cols, data) of every matrix one token multiplies, in forward order."""
    names = [t.name for t in reader.tensors]
    out_name = "output.weight" if "output.weight" in names else "token_embd.weight"
    mats = []
    for t in reader.tensors:
        if t.name.startswith("blk.") and t.name.split(".")[2] in PROJECTIONS or t.name == out_name:
            cols, rows = t.shape[0], t.shape[1]
            mats.append((t.name, t.type, rows, cols, t.data.reshape(rows, -1)))
    return mats


def synthetic_set(shapes, keys, qtype: GGMLType, rng):
    """Distinct buffers of the given (rows, cols) in qtype, repeated until the set outgrows the cache; each copy
    of the set keeps the file's grouping of products that share an input (keys)."""
    block = GGML_BLOCK_SIZES[qtype][0]
    usable = [(r, c) for r, c in shapes if c % block == 0]
    if not usable:
        return []
    templates = {}
    for r, c in set(usable):
        templates[(r, c)] = quants.quantize(rng.standard_normal((r, c), dtype=np.float32), qtype)
    mats, total, copy = [], 0, 0
    while total < MIN_SET_BYTES:
        for key, (r, c) in zip(keys, shapes):
            if (r, c) not in templates:
                continue
            w = templates[(r, c)].copy()
            mats.append((f"{key}@{copy}", qtype, r, c, w))
            total += w.nbytes
        copy += 1
    return mats


def time_matvec(mats, n_threads: int, reps: int) -> tuple[float, int]:
    """Best-of-rounds seconds for one pass of matrix-vector products over mats, and the bytes a pass reads.

    The pass runs in C (as a forward pass would), so Python call overhead is not counted; OpenMP fork and
    join per call, and activation quantization, are. As in the forward pass, q, k, v share one call, and so
    do gate and up.
    """
    groups = {}
    for name, qtype, _, _, w in mats:
        groups.setdefault(group_key(name), []).append((int(qtype), w))
    weights = [g if len(g) > 1 else g[0] for g in groups.values()]
    total = sum(w.nbytes for _, _, _, _, w in mats)
    _ops.time_matvec_pass(weights, n_threads, 1)  # warm-up
    return min(_ops.time_matvec_pass(weights, n_threads, 3) for _ in range(reps)), total


def matvec_table(n_threads: int, reps: int, bandwidth: float, quick: bool):
    rng = np.random.default_rng(1)
    rows = []
    for model in ("smollm2", "gemma3"):
        reader = GGUFReader(model_path(model))
        mats = forward_matrices(reader)
        by_type = {}
        for m in mats:
            by_type.setdefault(m[1], []).append(m)
        label = ", ".join(f"{type_name(t)} x{len(v)}" for t, v in by_type.items())
        secs, total = time_matvec(mats, n_threads, reps)
        rows.append((model, f"file weights ({label})", total, secs, bandwidth))
        shapes = [(r, c) for _, _, r, c, _ in mats]
        keys = [m[0] for m in mats]
        for qtype in TARGET_TYPES[:2] if quick else TARGET_TYPES:
            syn = synthetic_set(shapes, keys, qtype, rng)
            if not syn:
                continue
            secs, total = time_matvec(syn, n_threads, reps)
            rows.append((model, type_name(qtype), total, secs, bandwidth))
            del syn
    print(f"\n### Matrix-vector, {n_threads} threads, kernels {_ops.current_isa()}\n")
    print("| model | weights | MiB per pass | ms per pass | GB/s | % of bandwidth floor |")
    print("|---|---|---:|---:|---:|---:|")
    for model, what, total, secs, bw in rows:
        gbs = total / secs / 1e9
        print(f"| {model} | {what} | {total / 2**20:.1f} | {secs * 1e3:.2f} | {gbs:.1f} | {100 * gbs / bw:.0f}% |")


def throughput_table(reps: int):
    import gguf
    import gguf.quants as gq
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1024, 4096), dtype=np.float32)  # 16 MiB of f32
    mb = x.nbytes / 1e6
    print("\n### Quantize / dequantize throughput (MB of f32 per second; gguf-py is numpy, one thread)\n")
    print("| type | quantize llamapy 1t | 2t | quantize gguf-py | dequantize llamapy 1t | 2t | dequantize gguf-py |")
    print("|---|---:|---:|---:|---:|---:|---:|")

    def best(fn):
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return mb / min(ts)

    for qtype in (GGMLType.F16, GGMLType.BF16, GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1,
                  GGMLType.Q8_0, GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K,
                  GGMLType.IQ4_NL, GGMLType.IQ4_XS, GGMLType.TQ1_0, GGMLType.TQ2_0):
        q = quants.quantize(x, qtype)
        gtype = gguf.GGMLQuantizationType(int(qtype))
        ours_q = [best(lambda: quants.quantize(x, qtype, n)) for n in (1, 2)]
        try:
            theirs_q = f"{best(lambda: gq.quantize(x, gtype)):.0f}"
        except NotImplementedError:
            theirs_q = "n/a"
        ours_d = [best(lambda: quants.dequantize(q, qtype, n)) for n in (1, 2)]
        theirs_d = best(lambda: gq.dequantize(q, gtype))
        print(f"| {type_name(qtype)} | {ours_q[0]:.0f} | {ours_q[1]:.0f} | {theirs_q} | {ours_d[0]:.0f} | {ours_d[1]:.0f} "
              f"| {theirs_d:.0f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer types, for a smoke run")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-matvec", action="store_true")
    args = ap.parse_args()
    print(f"## Kernels, {time.strftime('%Y-%m-%d')}, {cpu_name()}, {args.threads} threads, llamapy kernels "
          f"{_ops.current_isa()}")
    if not args.skip_matvec:
        bw = read_bandwidth(args.threads, args.reps)
        print(f"\nMeasured read bandwidth ({args.threads} threads, 1 GiB buffer, best of {args.reps}): {bw:.1f} GB/s")
        matvec_table(args.threads, args.reps, bw, args.quick)
    if not args.skip_throughput:
        throughput_table(args.reps)


if __name__ == "__main__":
    import gguf  # noqa: F401  (the gguf package: comparison baseline)
    main()
