"""Reference data for tests/test_forward_llama.py, produced by llama.cpp (llama-cpp-python) as the peer.

Run with the peer's interpreter (it needs llama_cpp; llamapy is not imported):
    /work/peer/venv/bin/python scripts/make_forward_refs.py [MODEL.gguf] [OUT.npz]

For each prompt (tokenized by llama.cpp's own tokenizer, ids stored in the file) it records:
  - the logits of the prompt's last position after evaluating the whole prompt in one batch,
  - the greedy continuation (argmax, one token per eval) for N_STEPS steps, with the margin between the
    best and second-best logit at each step (a tiny margin means the argmax could flip on rounding noise).
Classic attention path (flash attention off), f16 KV cache, 2 threads.
"""
import os
import sys

import numpy as np
from llama_cpp import Llama

PROMPTS = [
    "The capital of France is",
    "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
]
N_STEPS = 24


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser(
        "~/.cache/llamapy/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(__file__), "..", "tests", "data", "forward", "smollm2_q4_1.npz")
    llm = Llama(model_path=model, n_ctx=512, n_batch=512, n_threads=2, logits_all=True, verbose=False,
                flash_attn=False)
    arrays = {}
    for i, text in enumerate(PROMPTS):
        ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        scores = np.array(llm.scores[:llm.n_tokens], dtype=np.float32)
        first = scores[-1].copy()
        greedy, margins = [], []
        logits = first
        for _ in range(N_STEPS):
            top2 = np.argsort(logits)[-2:]
            tok = int(top2[1])
            greedy.append(tok)
            margins.append(float(logits[top2[1]] - logits[top2[0]]))
            llm.eval([tok])
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        arrays[f"p{i}_tokens"] = np.array(ids, dtype=np.int32)
        arrays[f"p{i}_logits_last"] = first
        arrays[f"p{i}_logits_all"] = scores if i == 0 else np.zeros((0, first.size), np.float32)
        arrays[f"p{i}_greedy"] = np.array(greedy, dtype=np.int32)
        arrays[f"p{i}_margins"] = np.array(margins, dtype=np.float32)
        print(f"prompt {i}: {len(ids)} tokens, greedy {greedy[:8]}..., min margin {min(margins):.4f}")
    arrays["n_prompts"] = np.array(len(PROMPTS))
    np.savez_compressed(out, **arrays)
    print("wrote", os.path.abspath(out))


if __name__ == "__main__":
    main()
