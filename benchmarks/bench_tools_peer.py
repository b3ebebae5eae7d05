"""llamapy-perplexity and llamapy-bench beside llama.cpp (through llama-cpp-python), alternating runs.

    python benchmarks/bench_tools_peer.py --peer-python /path/to/venv-with-llama-cpp-python/bin/python \\
        [--what perplexity,bench] [--models smollm2,gemma3] [--rounds 3] [--chunks 8] [-t 2]

perplexity: each round runs `llamapy-perplexity -f tests/data/perplexity/hamlet.txt --chunks N` and then the
same work in llama.cpp, each in a fresh process; both report the wall time of the chunk loop (model loading
and tokenization excluded) and the final PPL. llama-cpp-python has no perplexity tool, so the peer side does
what llama-perplexity does with llama.cpp's low-level API: n_ctx 512 x 4 sequences in one 2048-token batch
(n_ubatch 512), logits requested for the second half of each chunk only, BOS replacement, flash attention
on its default (auto), and the nll sums in numpy.

bench: each round runs `llamapy-bench -p 512 -n 128 -r R -o json` and the peer's equivalent of llama-bench's
pp512 and tg128 tests: a warm-up, then R samples of 512 random tokens in one decode call, and of 128 one-token
decode calls, each from an empty cache; t/s = tokens / time per sample, averaged.

Figures are medians over rounds, and the ratio llamapy / llama.cpp of those medians.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT / "tests" / "data" / "perplexity" / "hamlet.txt"

PEER_PPL = r"""
import json, math, sys, time
import numpy as np
import llama_cpp as L
path, text_path, n_chunk, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
N_CTX, N_SEQ = 512, 4
L.llama_backend_init()
QUIET = L.llama_log_callback(lambda *a: None)
L.llama_log_set(QUIET, None)
mp = L.llama_model_default_params()
model = L.llama_model_load_from_file(path.encode(), mp)
cp = L.llama_context_default_params()
cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = N_CTX * N_SEQ, N_CTX * N_SEQ, 512, N_SEQ
cp.n_threads = cp.n_threads_batch = threads
ctx = L.llama_init_from_model(model, cp)
vocab = L.llama_model_get_vocab(model)
n_vocab = L.llama_vocab_n_tokens(vocab)
add_bos = L.llama_vocab_get_add_bos(vocab)
bos = L.llama_vocab_bos(vocab)
raw = open(text_path, "rb").read()
raw = raw[:-1] if raw.endswith(b"\n") else raw
buf = (L.llama_token * (len(raw) + 16))()
n_tok = L.llama_tokenize(vocab, raw, len(raw), buf, len(buf), True, False)
tokens = list(buf[:n_tok])
n_chunk = min(n_chunk, n_tok // N_CTX)
first = N_CTX // 2
batch = L.llama_batch_init(N_CTX * N_SEQ, 0, N_SEQ)
nll = 0.0
count = 0
t0 = time.perf_counter()
for i in range(0, n_chunk, N_SEQ):
    n_seq = min(N_SEQ, n_chunk - i)
    L.llama_memory_clear(L.llama_get_memory(ctx), True)
    k = 0
    for s in range(n_seq):
        chunk = tokens[(i + s) * N_CTX:(i + s + 1) * N_CTX]
        if add_bos:
            chunk[0] = bos
        for p, t in enumerate(chunk):
            batch.token[k] = t
            batch.pos[k] = p
            batch.n_seq_id[k] = 1
            batch.seq_id[k][0] = s
            batch.logits[k] = p >= first
            k += 1
    batch.n_tokens = k
    assert L.llama_decode(ctx, batch) == 0
    for s in range(n_seq):
        chunk = tokens[(i + s) * N_CTX:(i + s + 1) * N_CTX]
        rows = np.stack([np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, s * N_CTX + p), shape=(n_vocab,))
                         for p in range(first, N_CTX - 1)])
        mx = rows.max(1)
        sums = np.exp(rows - mx[:, None]).sum(1, dtype=np.float64)
        t = np.asarray(chunk[first + 1:N_CTX])
        v = -((rows[np.arange(len(t)), t] - mx).astype(np.float64) - np.log(sums))
        nll += v.sum()
        count += len(v)
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "ppl": math.exp(nll / count), "chunks": n_chunk}))
"""

PEER_BENCH = r"""
import json, sys, time
import numpy as np
import llama_cpp as L
path, reps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
L.llama_backend_init()
QUIET = L.llama_log_callback(lambda *a: None)
L.llama_log_set(QUIET, None)
model = L.llama_model_load_from_file(path.encode(), L.llama_model_default_params())
cp = L.llama_context_default_params()
cp.n_ctx, cp.n_batch, cp.n_ubatch = 640, 2048, 512
cp.n_threads = cp.n_threads_batch = threads
ctx = L.llama_init_from_model(model, cp)
vocab = L.llama_model_get_vocab(model)
n_vocab = L.llama_vocab_n_tokens(vocab)
bos = L.llama_vocab_bos(vocab) if L.llama_vocab_get_add_bos(vocab) else None
rng = np.random.default_rng(0)
batch = L.llama_batch_init(512, 0, 1)

def decode(ids, pos0):
    for k, t in enumerate(ids):
        batch.token[k] = int(t); batch.pos[k] = pos0 + k; batch.n_seq_id[k] = 1; batch.seq_id[k][0] = 0
        batch.logits[k] = k == len(ids) - 1
    batch.n_tokens = len(ids)
    assert L.llama_decode(ctx, batch) == 0
    L.llama_synchronize(ctx)

def pp(n):
    ids = rng.integers(0, n_vocab, n)
    if bos is not None:
        ids[0] = bos
    decode(ids, 0)

def tg(n):
    tok = bos if bos is not None else int(rng.integers(0, n_vocab))
    for p in range(n):
        decode([tok], p)
        tok = int(rng.integers(0, n_vocab))

out = {}
for name, fn, n in (("pp512", pp, 512), ("tg128", tg, 128)):
    L.llama_memory_clear(L.llama_get_memory(ctx), False)
    fn(n if name == "pp512" else 1)
    ts = []
    for _ in range(reps):
        L.llama_memory_clear(L.llama_get_memory(ctx), False)
        t0 = time.perf_counter_ns()
        fn(n)
        ts.append(1e9 * n / (time.perf_counter_ns() - t0))
    out[name] = sum(ts) / len(ts)
print(json.dumps(out))
"""


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT / "src"))


def ours_ppl(model: str, chunks: int, threads: int) -> dict:
    r = subprocess.run([sys.executable, "-m", "llamapy.cli.cmd_perplexity", "-m", model, "-f", str(TEXT),
                        "--chunks", str(chunks), "-t", str(threads)], capture_output=True, text=True, env=_env())
    if r.returncode:
        sys.exit(f"llamapy-perplexity failed: {r.stderr.strip().splitlines()[-1:]}")
    ms = float(re.search(r"eval time =\s+([0-9.]+) ms", r.stderr).group(1))
    ppl = float(re.search(r"Final estimate: PPL = ([0-9.]+)", r.stderr).group(1))
    return {"seconds": ms / 1e3, "ppl": ppl}


def peer_ppl(python: str, model: str, chunks: int, threads: int) -> dict:
    r = subprocess.run([python, "-c", PEER_PPL, model, str(TEXT), str(chunks), str(threads)], capture_output=True,
                       text=True)
    if r.returncode:
        sys.exit(f"peer perplexity failed: {r.stderr.strip().splitlines()[-3:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def ours_bench(model: str, reps: int, threads: int) -> dict:
    r = subprocess.run([sys.executable, "-m", "llamapy.cli.cmd_bench", "-m", model, "-p", "512", "-n", "128",
                        "-r", str(reps), "-t", str(threads), "-o", "json"], capture_output=True, text=True, env=_env())
    if r.returncode:
        sys.exit(f"llamapy-bench failed: {r.stderr.strip().splitlines()[-1:]}")
    tests = json.loads(r.stdout)
    return {("pp512" if t["n_prompt"] else "tg128"): t["avg_ts"] for t in tests}


def peer_bench(python: str, model: str, reps: int, threads: int) -> dict:
    r = subprocess.run([python, "-c", PEER_BENCH, model, str(reps), str(threads)], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"peer bench failed: {r.stderr.strip().splitlines()[-3:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer-python", required=True)
    ap.add_argument("--what", default="perplexity,bench")
    ap.add_argument("--models", default="smollm2,gemma3")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("-t", "--threads", type=int, default=2)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from llamapy.models import model_path
    for name in args.models.split(","):
        model = str(model_path(name))
        if "perplexity" in args.what:
            ours, theirs = [], []
            for _ in range(args.rounds):
                ours.append(ours_ppl(model, args.chunks, args.threads))
                theirs.append(peer_ppl(args.peer_python, model, args.chunks, args.threads))
            mo = statistics.median(r["seconds"] for r in ours)
            mt = statistics.median(r["seconds"] for r in theirs)
            print(f"| {name} | perplexity, {args.chunks} chunks of 512 | {mo:.1f} s | {mt:.1f} s | {mt / mo:.2f}x | "
                  f"PPL {ours[0]['ppl']:.4f} vs {theirs[0]['ppl']:.4f} |")
            print("  rounds (s): llamapy " + ", ".join(f"{r['seconds']:.1f}" for r in ours)
                  + "; llama.cpp " + ", ".join(f"{r['seconds']:.1f}" for r in theirs), flush=True)
        if "bench" in args.what:
            ours, theirs = [], []
            for _ in range(args.rounds):
                ours.append(ours_bench(model, args.reps, args.threads))
                theirs.append(peer_bench(args.peer_python, model, args.reps, args.threads))
            for test in ("pp512", "tg128"):
                mo = statistics.median(r[test] for r in ours)
                mt = statistics.median(r[test] for r in theirs)
                print(f"| {name} | {test} | {mo:.1f} t/s | {mt:.1f} t/s | {mo / mt:.2f}x |")
                print("  rounds (t/s): llamapy " + ", ".join(f"{r[test]:.1f}" for r in ours)
                      + "; llama.cpp " + ", ".join(f"{r[test]:.1f}" for r in theirs), flush=True)


if __name__ == "__main__":
    main()
