"""Extract llama.cpp's chat-template reference cases into tests/data/templates/llama_cpp_cases.json.

llama.cpp's tests/test-chat-template.cpp lists, per model, the model's Hugging Face chat template and what
llama.cpp renders for one fixed conversation: with its built-in renderer (found by detection from the
template text) and through its Jinja path. We keep those facts as data (name, template, both expected
outputs, bos/eos texts) and test llamapy's renderers against them.

    .venv/bin/python scripts/make_chat_template_cases.py [path/to/llama.cpp]
    (default: /tmp/llsrc/llama_cpp_python-0.3.36/vendor/llama.cpp, llama.cpp as vendored by
    llama-cpp-python 0.3.36)
"""
from __future__ import annotations

import json
import os
import re
import sys

FIELDS = ("name", "template_str", "expected_output", "expected_output_jinja", "bos_token", "eos_token",
          "supported_with_jinja")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}


def c_string(src: str, i: int) -> tuple[str, int]:
    """The C string literal starting at src[i] == '"' (escapes decoded) and the index after it."""
    assert src[i] == '"'
    out, i = [], i + 1
    while src[i] != '"':
        if src[i] == "\\":
            out.append(_ESCAPES[src[i + 1]])
            i += 2
        else:
            out.append(src[i])
            i += 1
    return "".join(out), i + 1


def parse_conversation(src: str) -> list[list[str]]:
    block = src[src.index("std::vector<llama_chat_message> conversation {"):]
    block = block[:block.index("};")]
    return [[c_string(r, 0)[0], c_string(c, 0)[0]]
            for r, c in re.findall(r'\{("(?:[^"\\]|\\.)*"), ("(?:[^"\\]|\\.)*")\}', block)]


def parse_cases(src: str) -> list[dict]:
    body = src[src.index("std::vector<TestCase> test_cases {"):]
    body = body[:body.index("\n    };\n")]
    cases = []
    for block in re.split(r"\n        \{\n", body)[1:]:
        case = {"bos_token": "", "eos_token": "", "supported_with_jinja": True, "expected_output_jinja": ""}
        for m in re.finditer(r"/\* \.(\w+)=? \*/\s*", block):
            field, i = m.group(1), m.end()
            if field not in FIELDS:
                continue
            if block.startswith("U8C(", i):
                i += 4
            if block[i] == '"':
                case[field], _ = c_string(block, i)
            else:
                case[field] = block[i:].startswith("true")
        extra = re.search(r"/\* \.extra_conversation= \*/ \{(.*)\},\n", block)
        if extra:
            pairs = re.findall(r'\{("(?:[^"\\]|\\.)*"), ("(?:[^"\\]|\\.)*")\}', extra.group(1))
            case["extra_conversation"] = [[c_string(r, 0)[0], c_string(c, 0)[0]] for r, c in pairs]
        cases.append(case)
    return cases


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "/tmp/llsrc/llama_cpp_python-0.3.36/vendor/llama.cpp"
    with open(os.path.join(root, "tests", "test-chat-template.cpp"), encoding="utf-8") as f:
        src = f.read()
    cases = parse_cases(src)
    out = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "templates", "llama_cpp_cases.json")
    data = {"source": "llama.cpp tests/test-chat-template.cpp (vendored in llama-cpp-python 0.3.36)",
            "conversation": parse_conversation(src),
            "cases": cases}
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.replace(tmp, out)
    print(f"{len(cases)} cases -> {os.path.normpath(out)}")


if __name__ == "__main__":
    main()
