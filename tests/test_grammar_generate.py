"""Grammar-constrained generation for real on SmolLM2: many seeds at temperature 1, the output always fits
(json.loads, jsonschema, regexes), through the Python API and through `llamapy-cli`."""
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from llamapy import Llama, LlamaGrammar
from llamapy.grammar import CompiledGrammar
from llamapy.models import model_path

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
SEEDS = range(20)
PERSON = {"type": "object",
          "properties": {"name": {"type": "string", "maxLength": 20},
                         "age": {"type": "integer", "minimum": 0, "maximum": 120},
                         "city": {"type": "string", "maxLength": 20},
                         "pets": {"type": "array", "items": {"enum": ["cat", "dog", "fish"]}, "maxItems": 3}},
          "required": ["name", "age"]}


@pytest.fixture(scope="module")
def llm():
    return Llama(model_path("smollm2", fetch=False), n_ctx=512, n_threads=2, verbose=False)


def complete(llm, prompt, grammar, seed, max_tokens=48):
    out = llm(prompt, grammar=grammar, max_tokens=max_tokens, temperature=1.0, seed=seed)
    return out["choices"][0]["text"], out["choices"][0]["finish_reason"]


def test_json_grammar_output_always_parses(llm):
    g = LlamaGrammar.from_file(GRAMMARS / "json.gbnf")
    finished = 0
    for seed in SEEDS:
        text, reason = complete(llm, "Describe a book as JSON:\n", g, seed, max_tokens=96)
        if reason == "stop":
            assert isinstance(json.loads(text), dict), text
            finished += 1
        else:   # cut by max_tokens: still a prefix of valid JSON
            assert CompiledGrammar((GRAMMARS / "json.gbnf").read_text()).match_prefix(text), text
    assert finished >= len(SEEDS) // 4


def test_schema_output_validates(llm):
    g = LlamaGrammar.from_json_schema(json.dumps(PERSON))
    for seed in SEEDS:
        text, reason = complete(llm, "A person as JSON:\n", g, seed, max_tokens=80)
        assert reason == "stop", text
        jsonschema.validate(json.loads(text), PERSON)


def test_arithmetic_and_list_outputs_match(llm):
    line = r"[-+*/() .a-z0-9_]+ ?= ?-?([0-9]+(\.[0-9]+)?|[a-z][a-z0-9_]*)\n"
    for seed in range(10):
        text, _ = complete(llm, "Some sums:\n", LlamaGrammar.from_file(GRAMMARS / "arithmetic.gbnf"), seed, 24)
        full = re.fullmatch(f"({line})+", text)
        assert full or re.fullmatch(f"({line})*[^\n]*", text), text
        text, reason = complete(llm, "Shopping list:\n", LlamaGrammar.from_file(GRAMMARS / "list.gbnf"), seed, 24)
        assert re.fullmatch(r"(- [^\r\n]+\n)*(-( [^\r\n]*)?)?", text), text
        assert text.startswith("- ")


@pytest.mark.parametrize("name, prompt", [("chess", "A chess game:\n"), ("c", "A C program:\n"),
                                          ("english", "A story:\n"), ("japanese", "日本語で:\n"),
                                          ("json_arr", "A JSON list:\n")])
def test_every_shipped_grammar_constrains(llm, name, prompt):
    gbnf = (GRAMMARS / f"{name}.gbnf").read_text()
    cg = CompiledGrammar(gbnf)
    for seed in range(3):
        text, reason = complete(llm, prompt, LlamaGrammar.from_string(gbnf), seed, 24)
        assert text and (cg.match_string(text) if reason == "stop" else cg.match_prefix(text)), text


def test_greedy_grammar_is_deterministic(llm):
    g = LlamaGrammar.from_string('root ::= "yes" | "no"')
    outs = {llm("Is water wet? Answer:", grammar=g, temperature=0, max_tokens=8)["choices"][0]["text"]
            for _ in range(2)}
    assert len(outs) == 1 and outs <= {"yes", "no"}


def test_chat_completion_response_formats(llm):
    messages = [{"role": "user", "content": "Give me a person with a name and an age."}]
    for fmt in ({"type": "json_object", "schema": PERSON},
                {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}):
        for seed in range(5):
            out = llm.create_chat_completion(messages, response_format=fmt, seed=seed, temperature=1.0,
                                             max_tokens=80)
            jsonschema.validate(json.loads(out["choices"][0]["message"]["content"]), PERSON)
    out = llm.create_chat_completion(messages, response_format={"type": "json_object"}, seed=0, max_tokens=200)
    if out["choices"][0]["finish_reason"] == "stop":
        assert isinstance(json.loads(out["choices"][0]["message"]["content"]), dict)
    g = LlamaGrammar.from_string('root ::= "Yes." | "No."')
    out = llm.create_chat_completion(messages, grammar=g, seed=0)
    assert out["choices"][0]["message"]["content"] in ("Yes.", "No.")
    with pytest.raises(ValueError, match="response_format type"):
        llm.create_chat_completion(messages, response_format={"type": "xml"})


def test_streaming_with_grammar(llm):
    g = LlamaGrammar.from_string('root ::= "a" [0-9]{3} "z"')
    text = "".join(c["choices"][0]["text"] for c in llm("Code:", grammar=g, stream=True, seed=1, max_tokens=20))
    assert re.fullmatch(r"a[0-9]{3}z", text)


# -- llamapy-cli ---------------------------------------------------------------------------------

def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "llamapy.cli.cmd_cli", "-no-cnv", "-t", "2", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_cli_grammar_file_and_json_schema():
    r = cli("--grammar-file", str(GRAMMARS / "json.gbnf"), "-p", "A JSON object:", "-n", "64", "-s", "3",
            "--temp", "1")
    assert r.returncode == 0, r.stderr
    body = r.stdout.split("A JSON object:", 1)[1]
    body = body.removesuffix(" [end of text]\n")
    assert CompiledGrammar((GRAMMARS / "json.gbnf").read_text()).match_prefix(body), body
    r = cli("-j", json.dumps(PERSON), "-p", "A person:", "-n", "80", "-s", "5", "--temp", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith(" [end of text]\n")
    jsonschema.validate(json.loads(r.stdout.split("A person:", 1)[1].removesuffix(" [end of text]\n")), PERSON)
    r = cli("--grammar", 'root ::= "yes" | "no"', "-p", "Answer:", "-n", "8", "--temp", "0")
    assert r.returncode == 0 and r.stdout in ("Answer:yes [end of text]\n", "Answer:no [end of text]\n"), r.stdout


def test_cli_schema_file(tmp_path):
    f = tmp_path / "schema.json"
    f.write_text(json.dumps({"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 4}))
    r = cli("-jf", str(f), "-p", "Numbers:", "-n", "40", "-s", "2")
    assert r.returncode == 0, r.stderr
    assert 1 <= len(json.loads(r.stdout.split("Numbers:", 1)[1].removesuffix(" [end of text]\n"))) <= 4


@pytest.mark.parametrize("args, message", [
    (["--grammar", 'root ::= "a" | b'], "error: --grammar: grammar error at line 1, column 16: undefined rule 'b'"),
    (["--grammar", "root ::= [a-"], "error: --grammar: grammar error at line 1, column 10: unterminated character class"),
    (["-j", '{"type": "tuple"}'], "error: --json-schema: JSON schema error: unknown type 'tuple' at 'root'"),
    (["-j", "{oops"], "error: --json-schema: JSON schema error: not valid JSON"),
    (["--grammar-file", "/nonexistent/g.gbnf"], "error: --grammar-file: failed to open file '/nonexistent/g.gbnf'"),
    (["--grammar", 'root ::= "a"', "-j", "{}"], "error: --grammar and --json-schema both give a grammar; use one"),
])
def test_cli_bad_grammar_is_one_line(args, message):
    r = cli(*args, "-p", "x", "-n", "4", timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith(message), r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_cli_bad_grammar_file_names_file_line_and_column(tmp_path):
    f = tmp_path / "bad.gbnf"
    f.write_text('root ::= item+\n\nitem ::= "a" |\n   "b" ) \n')
    r = cli("--grammar-file", str(f), "-p", "x", "-n", "4", timeout=60)
    assert r.returncode == 1
    assert r.stderr == (f"error: {f}: grammar error at line 4, column 8: expected newline or end of rule, "
                        "got ')'\n")
