"""Tokenizer throughput on English prose: vocabulary load time, then encode and decode MB/s.

    python benchmarks/bench_tokenizer.py [--model smollm2|gemma3] [--mb 1.0] [FILE]

Without FILE the text is the docstrings of the Python standard library (English prose, some code).
"""
from __future__ import annotations

import argparse
import ast
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from llamapy.models import model_path  # noqa: E402
from llamapy.tokenizer import Tokenizer  # noqa: E402


def stdlib_docstrings(limit: int) -> str:
    parts, size = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    parts.append(doc)
                    size += len(doc.encode())
                    if size >= limit:
                        return "\n\n".join(parts)
    return "\n\n".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--mb", type=float, default=1.0, help="megabytes of text to encode")
    args = ap.parse_args()

    limit = int(args.mb * 1e6)
    text = Path(args.file).read_text(encoding="utf-8")[:limit] if args.file else stdlib_docstrings(limit)
    size = len(text.encode())

    t0 = time.perf_counter()
    tok = Tokenizer.from_gguf(model_path(args.model))
    t1 = time.perf_counter()
    ids = tok.encode(text, add_special=False)
    t2 = time.perf_counter()
    again = tok.encode(text, add_special=False)  # warm per-word cache (BPE)
    t3 = time.perf_counter()
    out = tok.decode(ids)
    t4 = time.perf_counter()

    assert again == ids
    print(f"model {args.model}: {tok.n_vocab} tokens, vocabulary loaded in {t1 - t0:.3f} s")
    print(f"text: {size / 1e6:.2f} MB -> {len(ids)} tokens ({size / len(ids):.2f} bytes/token)")
    print(f"encode (cold): {size / 1e6 / (t2 - t1):.2f} MB/s")
    print(f"encode (warm): {size / 1e6 / (t3 - t2):.2f} MB/s")
    print(f"decode:        {size / 1e6 / (t4 - t3):.2f} MB/s (round trip {'ok' if out == text else 'DIFFERS'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
