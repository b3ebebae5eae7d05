"""Reference data for tests/test_forward_{llama,gemma3}.py, produced by llama.cpp (llama-cpp-python) as the peer.

Run with the peer's interpreter (it needs llama_cpp; llamapy is not imported):
    PEER_VENV/bin/python scripts/make_forward_refs.py [smollm2|gemma3] [MODEL.gguf] [OUT.npz]

For each prompt (tokenized by llama.cpp's own tokenizer, ids stored in the file) it records:
  - the logits of the prompt's last position after evaluating the whole prompt in one batch,
  - the greedy continuation (argmax, one token per eval) for N_STEPS steps, with the margin between the
    best and second-best logit at each step (a tiny margin means the argmax could flip on rounding noise),
  - gemma3 also: llama.cpp's disagreement with itself (relative error of the last-position logits when the
    prompt goes in token by token instead of in one batch), and prompt 0's argmax at every position.
Classic attention path (flash attention off), f16 KV cache, 2 threads.
"""
import os
import sys

import numpy as np
from llama_cpp import Llama

HERE = os.path.dirname(os.path.abspath(__file__))
SETS = {
    "smollm2": dict(
        model="SmolLM2-135M-Instruct.Q4_1.gguf", out="smollm2_q4_1.npz", add_bos=False, n_ctx=512,
        self_check=False,
        prompts=[
            "The capital of France is",
            "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
            "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
        ]),
    "gemma3": dict(
        model="gemma-3-270m-q4_k_m.gguf", out="gemma3_270m_q4_k_m.npz", add_bos=True, n_ctx=1024,
        self_check=True,
        prompts=[
            "The capital of France is",
            "<start_of_turn>user\nWrite a haiku about the sea.<end_of_turn>\n<start_of_turn>model\n",
            "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
            # past the 512-token sliding window of the local layers
            "Here is a list of numbers: " + ", ".join(str(i * 7 % 101) for i in range(200))
            + ". The list above has exactly",
        ]),
}
N_STEPS = 24


def top2(logits):
    i = np.argpartition(logits, -2)[-2:]
    i = i[np.argsort(logits[i])]
    return int(i[1]), float(logits[i[1]] - logits[i[0]])


def rel_err(a, ref):
    return float(np.abs(a - ref).max() / np.abs(ref).max())


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else "smollm2"
    s = SETS[which]
    model = sys.argv[2] if len(sys.argv) > 2 else os.path.expanduser(f"~/.cache/llamapy/models/{s['model']}")
    out = sys.argv[3] if len(sys.argv) > 3 else os.path.join(HERE, "..", "tests", "data", "forward", s["out"])
    llm = Llama(model_path=model, n_ctx=s["n_ctx"], n_batch=s["n_ctx"], n_threads=2, logits_all=True,
                verbose=False, flash_attn=False)
    arrays = {}
    for i, text in enumerate(s["prompts"]):
        ids = llm.tokenize(text.encode(), add_bos=s["add_bos"], special=True)
        llm.reset()
        llm.eval(ids)
        scores = np.array(llm.scores[:llm.n_tokens], dtype=np.float32)
        first = scores[-1].copy()
        greedy, margins = [], []
        logits = first
        for _ in range(N_STEPS):
            tok, margin = top2(logits)
            greedy.append(tok)
            margins.append(margin)
            llm.eval([tok])
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        arrays[f"p{i}_tokens"] = np.array(ids, dtype=np.int32)
        arrays[f"p{i}_logits_last"] = first
        arrays[f"p{i}_greedy"] = np.array(greedy, dtype=np.int32)
        arrays[f"p{i}_margins"] = np.array(margins, dtype=np.float32)
        msg = ""
        if which == "smollm2":
            arrays[f"p{i}_logits_all"] = scores if i == 0 else np.zeros((0, first.size), np.float32)
        else:
            if i == 0:
                arrays["p0_argmax_all"] = scores.argmax(-1).astype(np.int32)
                arrays["p0_margin_all"] = np.array([top2(r)[1] for r in scores], np.float32)
        if s["self_check"]:
            llm.reset()
            for t in ids:
                llm.eval([t])
            incr = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            arrays[f"p{i}_peer_self_err"] = np.array(rel_err(incr, first))
            msg = f", llama.cpp batch vs token-by-token {rel_err(incr, first):.4f}"
        print(f"prompt {i}: {len(ids)} tokens, greedy {greedy[:8]}..., min margin {min(margins):.4f}{msg}")
    arrays["n_prompts"] = np.array(len(s["prompts"]))
    np.savez_compressed(out, **arrays)
    print("wrote", os.path.abspath(out), os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main()
