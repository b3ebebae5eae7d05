"""Make tests/data/generate/refs.json: llama.cpp's greedy continuations (via llama-cpp-python) of fixed prompts.

Run with a Python that has llama-cpp-python 0.3.36:

    PEER_VENV/bin/python scripts/make_generate_refs.py [MODEL.gguf]

For each prompt we record the prompt's token ids (tokenized with BOS as the vocabulary asks and special tokens
parsed, as llama-completion does) and the first N tokens llama.cpp picks greedily (temperature 0), with their
text. Default model: the cached SmolLM2-135M-Instruct Q4_1 (~/.cache/llamapy/models).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import llama_cpp

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "generate" / "refs.json"
PROMPTS = ["The capital of France is", "Here is a simple recipe for pancakes:", "def fibonacci(n):", "Once upon a time, in a small village,"]
N_TOKENS = 24


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else str(
        Path(os.environ.get("LLAMAPY_CACHE", Path.home() / ".cache" / "llamapy")) / "models"
        / "SmolLM2-135M-Instruct.Q4_1.gguf")
    llm = llama_cpp.Llama(model, n_ctx=512, n_batch=512, n_threads=2, seed=0, verbose=False)
    cases = []
    for prompt in PROMPTS:
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        llm.reset()
        out = []
        for tok in llm.generate(ids, temp=0.0, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0, reset=True):
            if llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok) or len(out) >= N_TOKENS:
                break
            out.append(int(tok))
        text = llm.detokenize(out, prev_tokens=ids).decode("utf-8", errors="replace")
        cases.append({"prompt": prompt, "prompt_ids": [int(t) for t in ids], "greedy_ids": out, "greedy_text": text})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"model": Path(model).name, "llama_cpp_python": llama_cpp.__version__,
                               "n_tokens": N_TOKENS, "cases": cases}, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
