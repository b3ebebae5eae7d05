"""Token generation, llamapy beside llama.cpp (through llama-cpp-python), alternating runs.

    python benchmarks/bench_tg_peer.py --peer-python /path/to/venv-with-llama-cpp-python/bin/python

Each round runs both engines in fresh processes on the same model, prompt, 2 threads, greedy, n tokens,
and reports the decode speed each measured for itself (prompt evaluation excluded). The peer is never
installed by the project: point --peer-python at a scratch environment (see README, Development).
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

# One script for both engines: they share the Llama(...) / create_completion(stream=True) surface.
RUN = r"""
import json, sys, time
mod, path, prompt, n, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
Llama = __import__(mod, fromlist=["Llama"]).Llama
llm = Llama(path, n_ctx=512, n_threads=threads, verbose=False)
llm(prompt, max_tokens=4, temperature=0)                       # warm-up: page in the weights
t_first = None
count = 0
for chunk in llm(prompt, max_tokens=n, temperature=0, stream=True):
    count += 1
    if t_first is None:
        t_first = time.perf_counter()
t_end = time.perf_counter()
print(json.dumps({"tokens": count, "tg": (count - 1) / (t_end - t_first)}))
"""


def run(python: str, module: str, model: str, prompt: str, n: int, threads: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    out = subprocess.run([python, "-c", RUN, module, model, prompt, str(n), str(threads)], capture_output=True,
                         text=True, env=env)
    if out.returncode:
        sys.exit(f"{module} run failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["tg"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer-python", required=True)
    ap.add_argument("--model", default=None, help="GGUF path (default: SmolLM2 Q4_1)")
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompt", default="Here is a short story about a lighthouse keeper:")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from llamapy.models import model_path
    model = args.model or str(model_path("smollm2"))
    ours, theirs = [], []
    for _ in range(args.rounds):
        ours.append(run(sys.executable, "llamapy", model, args.prompt, args.n, args.threads))
        theirs.append(run(args.peer_python, "llama_cpp", model, args.prompt, args.n, args.threads))
    mo, mt = statistics.median(ours), statistics.median(theirs)
    print(f"| {Path(model).name} | tg{args.n} | {args.threads} | {mo:.1f} | {mt:.1f} | {mo / mt:.2f}x |")
    print(f"(rounds: llamapy {', '.join(f'{v:.1f}' for v in ours)}; llama.cpp {', '.join(f'{v:.1f}' for v in theirs)})")


if __name__ == "__main__":
    main()
