"""Reference logits of the tiny synthetic qwen2 models (tests/tiny_models.py) from llama.cpp as the peer.

Run with the peer's interpreter (it needs llama_cpp; only llamapy.gguf, pure Python, is imported):
    PEER_VENV/bin/python scripts/make_qwen2_refs.py [OUT.npz]

Writes each RoPE variant (none, linear, yarn) of the model into a temporary folder, evaluates the prompt
tests.tiny_models.tiny_prompt() in one batch with all logits (classic attention, f16 KV cache, 1 thread)
and stores the logits of the rows in ROWS per variant, plus the generator's parameters.
Default output: tests/data/forward/qwen2_tiny.npz.
"""
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "src"), os.path.join(HERE, "..", "tests")]

from llama_cpp import Llama  # noqa: E402
from tiny_models import QWEN2_TINY, ROPE_VARIANTS, tiny_prompt, write_tiny_qwen2  # noqa: E402

ROWS = [0, 1, 2, 5, 11, 23, 39]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "tests", "data", "forward",
                                                             "qwen2_tiny.npz")
    ids = tiny_prompt()
    data = {"ids": ids, "rows": np.array(ROWS, np.int32),
            "params": np.array(sorted(QWEN2_TINY.items()), dtype=object).astype(str)}
    with tempfile.TemporaryDirectory() as tmp:
        for rope in ROPE_VARIANTS:
            path = write_tiny_qwen2(os.path.join(tmp, f"qwen2_{rope}.gguf"), rope)
            llm = Llama(model_path=path, n_ctx=128, n_batch=128, n_threads=1, logits_all=True, flash_attn=False,
                        verbose=False)
            llm.eval(ids.tolist())
            scores = np.array(llm.scores[:len(ids)], np.float32)
            data[f"logits_{rope}"] = scores[ROWS]
            print(rope, "argmax of the last row:", int(scores[-1].argmax()), "max |logit|:", np.abs(scores).max())
            del llm
    np.savez_compressed(out, **data)
    print("wrote", out)


if __name__ == "__main__":
    main()
