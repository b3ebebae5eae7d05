"""Prompt processing (llama-bench's pp512), llamapy beside llama.cpp (through llama-cpp-python), alternating.

    python benchmarks/bench_pp_peer.py --peer-python /path/to/venv-with-llama-cpp-python/bin/python [--model gemma3]

Each round runs both engines in fresh processes: load the model, evaluate a batch of n random token ids
once to warm up, then time `reps` evaluations of the same batch from position 0 (as llama-bench does:
one batch, logits for the last token only, 2 threads). Reports tokens per second, best of the reps.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

OURS = r"""
import json, sys, time
import numpy as np
from llamapy.model import Model
path, n, threads, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
m = Model(path, n_ctx=max(n, 512), n_batch=n, n_threads=threads)
toks = np.random.default_rng(0).integers(100, 1000, n).astype(np.int32)
m.eval(toks, 0)
best = min((lambda t0: (m.eval(toks, 0), time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(reps))
print(json.dumps({"pp": n / best}))
"""

PEER = r"""
import json, sys, time
import numpy as np
from llama_cpp import Llama
path, n, threads, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = Llama(path, n_ctx=max(n, 512), n_batch=n, n_ubatch=n, n_threads=threads, n_threads_batch=threads,
            verbose=False)
toks = [int(t) for t in np.random.default_rng(0).integers(100, 1000, n)]
llm.eval(toks)
best = 1e9
for _ in range(reps):
    llm.reset()
    llm._ctx.memory_clear(True) if hasattr(llm._ctx, "memory_clear") else None
    t0 = time.perf_counter()
    llm.eval(toks)
    best = min(best, time.perf_counter() - t0)
print(json.dumps({"pp": n / best}))
"""


def run(python: str, code: str, model: str, n: int, threads: int, reps: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([python, "-c", code, model, str(n), str(threads), str(reps)], capture_output=True,
                         text=True, env=env)
    if out.returncode:
        sys.exit(f"run failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["pp"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer-python", required=True)
    ap.add_argument("--model", default="smollm2", help="smollm2, gemma3 or a GGUF path")
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-r", "--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from llamapy.models import model_path
    model = str(model_path(args.model)) if args.model in ("smollm2", "gemma3") else args.model
    ours, theirs = [], []
    for _ in range(args.rounds):
        ours.append(run(sys.executable, OURS, model, args.p, args.threads, args.reps))
        theirs.append(run(args.peer_python, PEER, model, args.p, args.threads, args.reps))
    mo, mt = statistics.median(ours), statistics.median(theirs)
    print(f"| {Path(model).name} | pp{args.p} | {args.threads} | {mo:.1f} | {mt:.1f} | {mo / mt:.2f}x |")
    print(f"(rounds: llamapy {', '.join(f'{v:.1f}' for v in ours)}; llama.cpp {', '.join(f'{v:.1f}' for v in theirs)})")


if __name__ == "__main__":
    main()
