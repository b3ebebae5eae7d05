"""Model quantization, llamapy-quantize beside llama.cpp's quantizer (through llama-cpp-python), alternating runs.

    python benchmarks/bench_quantize_peer.py --peer-python /path/to/venv-with-llama-cpp-python/bin/python

The input is the F16 export of Gemma 3 270M that the tests use (tests/quant_models.float_export, made once
into --workdir). Each round quantizes it to TYPE (default Q4_K_M) with 2 threads in a fresh process per
engine, llamapy first in odd rounds and llama.cpp first in even ones, and records two times per engine:
"quantize", the library call as each measures it (llama-quantize's "quantize time": open, choose types,
convert, write), and "process", the whole process as seen from outside (interpreter start and imports
included). Both outputs must be byte-identical. The peer is never installed by the project: point
--peer-python at a scratch environment (see README, Development).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PEER = r"""
import ctypes, json, sys, time
import llama_cpp
src, dst, ftype, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
quiet = llama_cpp.llama_log_callback(lambda *a: None)     # kept referenced while llama.cpp may call it
llama_cpp.llama_log_set(quiet, ctypes.c_void_p(0))
llama_cpp.llama_backend_init()
p = llama_cpp.llama_model_quantize_default_params()
p.nthread, p.ftype = threads, ftype
t0 = time.perf_counter()
rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))
print(json.dumps({"rc": rc, "quantize": time.perf_counter() - t0}))
"""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def run_ours(src: Path, dst: Path, type_: str, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "llamapy.cli.cmd_quantize", str(src), str(dst), type_, str(threads)],
                         capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if out.returncode:
        sys.exit(f"llamapy-quantize failed: {out.stderr.strip()[-300:]}")
    line = next(x for x in out.stdout.splitlines() if "quantize time" in x)
    return {"quantize": float(line.split("=")[1].split()[0]) / 1000, "process": wall}


def run_peer(python: str, src: Path, dst: Path, ftype: int, threads: int) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([python, "-c", PEER, str(src), str(dst), str(ftype), str(threads)], capture_output=True,
                         text=True)
    wall = time.perf_counter() - t0
    result = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {"rc": -1}
    if result["rc"] != 0:
        sys.exit(f"llama.cpp quantize failed: {out.stderr.strip()[-300:]}")
    return {"quantize": result["quantize"], "process": wall}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer-python", required=True)
    ap.add_argument("--model", default="gemma3", help="reference model whose F16 export is quantized")
    ap.add_argument("--type", default="Q4_K_M")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workdir", default="/tmp/llamapy-bench-quantize")
    args = ap.parse_args()
    sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
    from llamapy.models import model_path
    from llamapy.quantize import parse_ftype
    from quant_models import float_export

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"{args.model}-f16.gguf"
    if not src.exists():
        float_export(model_path(args.model), src)
    ftype = int(parse_ftype(args.type).ftype)
    ours_out, peer_out = work / "llamapy.gguf", work / "llama_cpp.gguf"

    run_ours(src, ours_out, args.type, args.threads)           # warm-up: page cache, both engines
    run_peer(args.peer_python, src, peer_out, ftype, args.threads)
    if sha256(ours_out) != sha256(peer_out):
        sys.exit("the two outputs differ")
    ours, peer = [], []
    for i in range(args.rounds):
        pair = [lambda: ours.append(run_ours(src, ours_out, args.type, args.threads)),
                lambda: peer.append(run_peer(args.peer_python, src, peer_out, ftype, args.threads))]
        for step in (pair if i % 2 == 0 else pair[::-1]):
            step()
    for f in (ours_out, peer_out):
        f.unlink()

    def med(runs, key):
        return statistics.median(r[key] for r in runs)
    print(f"| {src.name} -> {args.type} | {args.threads} | {med(ours, 'quantize'):.2f} | {med(peer, 'quantize'):.2f} "
          f"| {med(peer, 'quantize') / med(ours, 'quantize'):.2f}x | {med(ours, 'process'):.2f} | "
          f"{med(peer, 'process'):.2f} |")
    for name, runs in (("llamapy", ours), ("llama.cpp", peer)):
        quantize = ", ".join(f"{r['quantize']:.2f}" for r in runs)
        process = ", ".join(f"{r['process']:.2f}" for r in runs)
        print(f"({name} quantize s: {quantize}; process s: {process})")


if __name__ == "__main__":
    main()
