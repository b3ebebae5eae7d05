"""Make tests/data/generate/kvcache.json: llama.cpp's greedy continuations (via llama-cpp-python) with each KV
cache type combination llamapy supports.

Run with a Python that has llama-cpp-python 0.3.36:

    PEER_VENV/bin/python scripts/make_kvcache_refs.py [--tiny-only]

For each model, K/V cache type pair (``type_k``/``type_v`` as ggml type ids: f32 0, f16 1, q8_0 8) and prompt we
record the first N tokens llama.cpp picks greedily (argmax, one token per eval), each with its margin over the
runner-up logit, with flash attention off (llama-cpp-python's default, and llama.cpp's classic attention path
that llamapy follows). We also record what llama.cpp says to a quantized V cache without flash attention (it
refuses to create the context). Models: the cached SmolLM2-135M-Instruct Q4_1 (every pair) and Gemma 3 270M
Q4_K_M (~/.cache/llamapy/models).

On these quantized models the cache type moves llama.cpp's logits by about as much as implementations differ
anyway (activations are quantized to q8 in every matmul: ~3% of the largest logit). So a second file,
tests/data/generate/kvcache_tiny.npz, holds llama.cpp's logits for a tiny synthetic qwen2 with F32 weights
(tests/tiny_models.py, head_dim 32 so that a q8_0 K is possible), evaluated in one batch with each cache
type pair: there the cache type is the only rounding that matters.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import tempfile

import numpy as np

import llama_cpp

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "src"), str(HERE.parent / "tests")]
from tiny_models import QWEN2_TINY, tiny_prompt, write_tiny_qwen2  # noqa: E402

OUT = HERE.parent / "tests" / "data" / "generate" / "kvcache.json"
OUT_TINY = OUT.with_name("kvcache_tiny.npz")
KV_TINY = dict(QWEN2_TINY, seed=20251123, n_embd=128, n_ff=256)    # 4 heads of 32, 2 KV heads
TINY_ROWS = [0, 1, 2, 5, 11, 23, 39]
CACHE = Path(os.environ.get("LLAMAPY_CACHE", Path.home() / ".cache" / "llamapy")) / "models"
MODELS = {"smollm2": CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": CACHE / "gemma-3-270m-q4_k_m.gguf"}
TYPES = {"f32": 0, "f16": 1, "q8_0": 8}
PAIRS = [("f16", "f16"), ("f32", "f16"), ("q8_0", "f16"), ("f16", "f32"), ("f32", "f32"), ("q8_0", "f32")]
GEMMA_PAIRS = [("f16", "f16"), ("q8_0", "f16"), ("f32", "f32")]
PROMPTS = {
    "smollm2": ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,",
                "Here is a simple recipe for pancakes:", "The three primary colors are"],
    "gemma3": ["The capital of France is", "def fibonacci(n):"],
}
N_TOKENS = 48


def greedy(llm, ids: list[int]) -> tuple[list[int], list[float]]:
    """Argmax continuation and, per step, the best logit's lead over the runner-up."""
    out, margins = [], []
    n_vocab = llm.n_vocab()
    llm.reset()
    llm.eval(ids)
    while len(out) < N_TOKENS:
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(n_vocab,))
        top = np.argsort(logits)[-2:]
        tok = int(top[1])
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok):
            break
        out.append(tok)
        margins.append(round(float(logits[top[1]] - logits[top[0]]), 4))
        llm.eval([tok])
    return out, margins


def tiny_refs() -> None:
    ids = tiny_prompt()
    data = {"ids": ids, "rows": np.array(TINY_ROWS, np.int32),
            "params": np.array(sorted(KV_TINY.items()), dtype=object).astype(str)}
    with tempfile.TemporaryDirectory() as tmp:
        path = write_tiny_qwen2(os.path.join(tmp, "qwen2_kv.gguf"), "none", KV_TINY)
        for tk, tv in PAIRS:
            llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, n_batch=128, n_threads=1, logits_all=True,
                                  flash_attn=False, type_k=TYPES[tk], type_v=TYPES[tv], verbose=False)
            llm.eval(ids.tolist())
            data[f"logits_{tk}_{tv}"] = np.array(llm.scores[:len(ids)], np.float32)[TINY_ROWS]
            del llm
    np.savez_compressed(OUT_TINY, **data)
    print(f"wrote {OUT_TINY}", file=sys.stderr)


def main() -> int:
    tiny_refs()
    if "--tiny-only" in sys.argv:
        return 0
    cases, refusal = [], None
    for name, path in MODELS.items():
        if not path.exists():
            print(f"{path} not found: skipped", file=sys.stderr)
            continue
        for tk, tv in PAIRS if name == "smollm2" else GEMMA_PAIRS:
            llm = llama_cpp.Llama(str(path), n_ctx=512, n_batch=512, n_threads=2, seed=0, flash_attn=False,
                                  type_k=TYPES[tk], type_v=TYPES[tv], verbose=False)
            for prompt in PROMPTS[name]:
                ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
                toks, margins = greedy(llm, ids)
                text = llm.detokenize(toks, prev_tokens=ids).decode("utf-8", errors="replace")
                cases.append({"model": name, "type_k": tk, "type_v": tv, "prompt": prompt,
                              "prompt_ids": [int(t) for t in ids], "greedy_ids": toks, "margins": margins,
                              "greedy_text": text})
            del llm
        if refusal is None:
            try:
                llama_cpp.Llama(str(path), n_ctx=512, flash_attn=False, type_k=TYPES["f16"], type_v=TYPES["q8_0"],
                                verbose=False)
                refusal = "accepted"
            except Exception as e:  # noqa: BLE001 - what llama-cpp-python raises is the record
                refusal = f"{type(e).__name__}: {e}"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"generator": "scripts/make_kvcache_refs.py", "llama_cpp_python": llama_cpp.__version__,
                               "flash_attn": False, "n_tokens": N_TOKENS,
                               "quantized_v_without_flash_attn": refusal, "cases": cases}, indent=1) + "\n")
    print(f"wrote {OUT}: {len(cases)} cases; quantized V: {refusal}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
