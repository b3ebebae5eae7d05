"""Reference tokenizations of the two reference models, made with llama.cpp (through llama-cpp-python).

Run with an interpreter that has llama-cpp-python (not a llamapy dependency), e.g.:

    PEER_VENV/bin/python scripts/make_tokenizer_refs.py

Writes tests/data/tokenizer/reference_<model>.json: the vocabulary's special ids and flags, token ids
for every text under each (add_special, parse_special) combination, llama_detokenize output, and
llama_token_to_piece for a sample of ids. Only data is produced; llamapy never imports llama_cpp.
"""
from __future__ import annotations

import ctypes
import json
import random
import sys
from pathlib import Path

from llama_cpp import Llama
from llama_cpp import llama_cpp as C

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "smollm2": Path.home() / ".cache/llamapy/models/SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": Path.home() / ".cache/llamapy/models/gemma-3-270m-q4_k_m.gguf",
}

TEXTS = [
    "",
    " ",
    "  ",
    "Hello",
    " Hello",
    "Hello ",
    "Hello world",
    "Hello, world! How are you today?",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you're right, we've seen they'll say it's fine; don't worry, I'd go.",
    "HELLO'S WORLD'LL BE OK'VE",
    "Hello , world . ' quote ' and ? or !",
    "a  b   c    d",
    "\t\ttabs\tand spaces  \t mixed",
    "\n",
    "\n\n\n",
    "line one\nline two\r\nline three\n\n  indented line",
    "trailing spaces   ",
    "1234567890",
    "3.14159 2.71828 -42 +7 1e-10",
    "1,000,000 and 12/25/2024 at 10:30am",
    "w048 7tuijk dsdfhu",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }",
    '{"key": [1, 2, 3], "nested": {"a": null, "b": true}}',
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}",
    "https://example.com/path/to/page?query=1&x=%20y#frag",
    "user.name+tag@example.org",
    "# Title\n\n- item one\n- **bold** and _italic_ and `code`\n\n> quote",
    "<div class=\"x\"><h1>Title</h1><p>para</p></div>",
    "$E = mc^2$ and \\frac{a}{b} + \\sqrt{x}",
    "🦙🚀✨",
    "👍🏽 👨‍👩‍👧 🏳️‍🌈",
    "你好，世界！这是一个测试。",
    "日本語のテキストとカタカナ",
    "안녕하세요 세계",
    "Café naïve résumé façade Ångström",
    "e\u0301 vs é",
    "Привет, мир! Как дела?",
    "Γειά σου Κόσμε",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "ℌ𝔢𝔩𝔩𝔬 𝕎𝕠𝕣𝕝𝕕",
    "a\u200bb\u00a0c\u2009d\u3000e",
    "ctrl\x00\x01\x1c\x7f chars",
    "supercalifragilisticexpialidocious",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "!!!!????....,,,,;;;;",
    "SGVsbG8gV29ybGQhIFRoaXMgaXMgYmFzZTY0Lg==",
    "\u2581 already \u2581escaped\u2581",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|> spaced <|im_end|> \n",
    "<|endoftext|>",
    "<s>Hello</s>",
    "<bos>Hello<eos>",
    "<start_of_turn>user\nhello<end_of_turn>\n<start_of_turn>model\n",
    "<unk><pad><mask>",
    "<0x41><0x0A>",
    "text<|im_end|>",
    "<end_of_turn><end_of_turn>",
    "Mixed: English, 中文, русский, 🦙, and code `x = 1`.",
]


def tokenize(llm: Llama, text: str, add_special: bool, parse_special: bool) -> list[int]:
    return llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)


def detokenize(vocab, ids: list[int], remove_special: bool, unparse_special: bool) -> str:
    arr = (C.llama_token * max(len(ids), 1))(*ids)
    size = 64 + 32 * len(ids)
    while True:
        buf = ctypes.create_string_buffer(size)
        n = C.llama_detokenize(vocab, arr, len(ids), buf, size, remove_special, unparse_special)
        if n >= 0:
            return buf.raw[:n].hex()
        size = -n + 1


def piece(vocab, token: int, special: bool) -> str:
    buf = ctypes.create_string_buffer(256)
    n = C.llama_token_to_piece(vocab, token, buf, 256, 0, special)
    assert 0 <= n <= 256, n
    return buf.raw[:n].hex()


def make(name: str, path: Path) -> dict:
    llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    vocab = llm._model.vocab
    n_tokens = C.llama_vocab_n_tokens(vocab)

    def special(tid: int):
        return None if tid < 0 else tid

    meta = {
        "n_tokens": n_tokens,
        "bos": special(C.llama_vocab_bos(vocab)),
        "eos": special(C.llama_vocab_eos(vocab)),
        "eot": special(C.llama_vocab_eot(vocab)),
        "add_bos": bool(C.llama_vocab_get_add_bos(vocab)),
        "add_eos": bool(C.llama_vocab_get_add_eos(vocab)),
        "eog": [t for t in range(n_tokens) if C.llama_vocab_is_eog(vocab, t)],
    }
    cases = []
    for text in TEXTS:
        case = {"text": text}
        for add_special in (False, True):
            for parse_special in (False, True):
                case[f"ids_add{int(add_special)}_parse{int(parse_special)}"] = \
                    tokenize(llm, text, add_special, parse_special)
        ids = case["ids_add1_parse1"]
        for remove_special in (False, True):
            for unparse_special in (False, True):
                case[f"detok_rm{int(remove_special)}_unparse{int(unparse_special)}"] = \
                    detokenize(vocab, ids, remove_special, unparse_special)
        cases.append(case)

    # Pieces: every non-normal token (capped) plus a seeded sample of the rest.
    rng = random.Random(1234)
    odd = [t for t in range(n_tokens) if C.llama_vocab_get_attr(vocab, t) != 4][:400]  # 4: NORMAL
    sample = sorted(set(odd) | set(rng.sample(range(n_tokens), 600)))
    pieces = {str(t): [piece(vocab, t, False), piece(vocab, t, True)] for t in sample}
    return {"model": name, "file": path.name, "meta": meta, "cases": cases, "pieces": pieces}


def main() -> int:
    out_dir = ROOT / "tests" / "data" / "tokenizer"
    for name, path in MODELS.items():
        data = make(name, path)
        target = out_dir / f"reference_{name}.json"
        target.write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {target} ({len(data['cases'])} texts, {len(data['pieces'])} pieces)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
