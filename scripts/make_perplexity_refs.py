"""Make tests/data/perplexity/refs.json: llama.cpp's perplexity (via llama-cpp-python) on the test text.

Run with a Python that has llama-cpp-python 0.3.36:

    PEER_VENV/bin/python scripts/make_perplexity_refs.py [--kld-base FILE --kld-model smollm2 --kld-chunks N]

llama-cpp-python has no perplexity tool, so this script runs llama-perplexity's algorithm around llama.cpp's
logits. The text is tests/data/perplexity/hamlet.txt less one trailing newline (as `-f` reads it), tokenized
once with the vocabulary's special tokens added (BOS for Gemma 3, nothing for SmolLM2) and no special-token
parsing. Chunk i is tokens[512 i, 512 (i + 1)); where the vocabulary adds BOS, the chunk's first token is
replaced by BOS. Each chunk is evaluated alone from position 0 (n_ctx 512, one 512-token batch, every logit
kept, flash attention off, 2 threads), and the logits at positions 256..510 score the tokens at 257..511:
nll = max + log(sum exp(l - max)) - l[token] with float logits and a double sum. The running perplexity
after each chunk is exp(mean nll); the final estimate's error is sqrt((E[nll^2] - E[nll]^2) / (N - 1)) * PPL.
(llama-perplexity packs 4 chunks into one 2048-token batch as separate sequences; each sequence only sees its
own chunk, so the numbers are the same up to rounding in the kernels.)

--kld-base FILE also writes llama.cpp's logits file (`--kl-divergence-base` format) for the first
--kld-chunks chunks of one model: `llamapy-perplexity --kl-divergence --kl-divergence-base FILE` then
measures how far llamapy's distributions are from llama.cpp's on the same weights.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import struct
import time
from pathlib import Path

import numpy as np

import llama_cpp

ROOT = Path(__file__).resolve().parent.parent
TEXT = ROOT / "tests" / "data" / "perplexity" / "hamlet.txt"
OUT = ROOT / "tests" / "data" / "perplexity" / "refs.json"
CACHE = Path(os.environ.get("LLAMAPY_CACHE", Path.home() / ".cache" / "llamapy")) / "models"
MODELS = {"smollm2": CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": CACHE / "gemma-3-270m-q4_k_m.gguf"}
N_CTX = 512


def read_text() -> str:
    text = TEXT.read_text(encoding="utf-8")
    return text[:-1] if text.endswith("\n") else text


def nll_rows(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """-log softmax(logits)[target] per row, as llama-perplexity computes it (float32 exp, double sum)."""
    m = logits.max(axis=1)
    sums = np.exp(logits - m[:, None]).sum(axis=1, dtype=np.float64)
    picked = logits[np.arange(len(targets)), targets]
    return -((picked - m).astype(np.float64) - np.log(sums))


def kld_record(row: np.ndarray) -> bytes:
    """One scored position in llama.cpp's logits-file format: (scale, min_log_prob) as two floats, then the
    logits quantized to uint16 over [max(min, max - 16), max], padded to an even count."""
    n_vocab = row.shape[0]
    mx, mn = np.float32(row.max()), np.float32(row.min())
    mn = max(mn, np.float32(mx - np.float32(16)))
    log_sum_exp = np.float32(math.log(np.exp(row - mx).sum(dtype=np.float64)))
    min_log_prob = np.float32(mn - mx - log_sum_exp)
    scale = np.float32((mx - mn) / np.float32(65535))
    q = np.zeros(2 * ((n_vocab + 1) // 2), dtype=np.uint16)
    if scale:
        inv = np.float32(1) / scale
        v = np.rint(inv * (row - mn)).astype(np.int64)
        q[:n_vocab] = np.where(row > mn, v, 0).astype(np.uint16)
    return struct.pack("<ff", scale, min_log_prob) + q.tobytes()


def run_model(name: str, path: Path, text: str, threads: int, kld_out: Path | None = None, kld_chunks: int = 0):
    llm = llama_cpp.Llama(str(path), n_ctx=N_CTX, n_batch=N_CTX, n_ubatch=N_CTX, n_threads=threads,
                          n_threads_batch=threads, logits_all=True, flash_attn=False, verbose=False)
    vocab = llm._model.vocab
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
    bos = int(llama_cpp.llama_vocab_bos(vocab))
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    n_chunk = len(tokens) // N_CTX
    if kld_out is not None:
        n_chunk = min(n_chunk, kld_chunks)
    first = N_CTX // 2
    nll_sum = nll2_sum = 0.0
    count = 0
    running = []
    out = None
    if kld_out is not None:
        out = open(kld_out, "wb")
        out.write(b"_logits_" + struct.pack("<iii", N_CTX, llm.n_vocab(), n_chunk))
        out.write(np.asarray(tokens[:n_chunk * N_CTX], dtype=np.int32).tobytes())
    t0 = time.perf_counter()
    for i in range(n_chunk):
        chunk = list(tokens[i * N_CTX:(i + 1) * N_CTX])
        if add_bos:
            chunk[0] = bos
        llm.reset()
        llm.eval(chunk)
        logits = np.array(llm.scores[first:N_CTX - 1], dtype=np.float32)
        targets = np.asarray(chunk[first + 1:N_CTX])
        nll = nll_rows(logits, targets)
        nll_sum += float(nll.sum())
        nll2_sum += float((nll * nll).sum())
        count += len(nll)
        running.append(math.exp(nll_sum / count))
        if out is not None:
            for row in logits:
                out.write(kld_record(row))
    seconds = time.perf_counter() - t0
    if out is not None:
        out.close()
    mean = nll_sum / count
    var = nll2_sum / count - mean * mean
    ppl = math.exp(mean)
    return {
        "model": path.name, "add_bos": add_bos, "n_tokens": len(tokens),
        "tokens_sha256": hashlib.sha256(np.asarray(tokens, dtype=np.int32).tobytes()).hexdigest(),
        "n_ctx": N_CTX, "n_chunk": n_chunk, "scored_per_chunk": N_CTX - 1 - first,
        "running_ppl": running, "ppl": ppl, "ppl_err": math.sqrt(var / (count - 1)) * ppl,
        "seconds": round(seconds, 2), "threads": threads,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="smollm2,gemma3")
    ap.add_argument("--kld-base", type=Path, help="write llama.cpp's logits file here instead of refs.json")
    ap.add_argument("--kld-model", default="smollm2")
    ap.add_argument("--kld-chunks", type=int, default=4)
    args = ap.parse_args()
    text = read_text()
    if args.kld_base:
        r = run_model(args.kld_model, MODELS[args.kld_model], text, args.threads, args.kld_base, args.kld_chunks)
        print(f"wrote {args.kld_base}: {r['n_chunk']} chunks of {r['model']}, PPL {r['ppl']:.4f}")
        return
    results = {}
    for name in args.models.split(","):
        r = run_model(name, MODELS[name], text, args.threads)
        results[name] = r
        print(f"{name}: {r['n_chunk']} chunks, PPL = {r['ppl']:.4f} +/- {r['ppl_err']:.5f} ({r['seconds']} s)")
    OUT.write_text(json.dumps({
        "llama_cpp_python": llama_cpp.__version__,
        "text": TEXT.name,
        "text_sha256": hashlib.sha256(TEXT.read_bytes()).hexdigest(),
        "how": "llama-perplexity's chunking, BOS replacement and scoring over llama.cpp's logits "
               "(llama-cpp-python, n_ctx 512, flash attention off); see scripts/make_perplexity_refs.py",
        "models": results,
    }, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
