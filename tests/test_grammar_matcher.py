"""Grammar matching: strings against the shipped grammars, UTF-8 carried across tokens, and the vectorised
allowed-token mask against the one-token check on SmolLM2's real 49k vocabulary."""
from pathlib import Path

import numpy as np
import pytest

from llamapy.grammar import CompiledGrammar, GrammarMatcher, GrammarStateError, TokenTable
from llamapy.grammar.matcher import decode_utf8
from llamapy.models import model_path
from llamapy.tokenizer import Tokenizer

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"


def grammar(name: str) -> CompiledGrammar:
    return CompiledGrammar((GRAMMARS / f"{name}.gbnf").read_text())


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.from_gguf(model_path("smollm2", fetch=False))


# -- strings ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, yes, no", [
    ("json", ['{}', '{"a": 1}', '{"a": [1, -2.5e3, "x\\n\\u00e9", true, null, {}]}', '{\n  "k": "v",\n  "n": 0\n}'],
     ['[]', '{"a": 01}', '{"a": 1,}', '{"a" 1}', '{"a": "\n"}', '{} ', 'null']),
    ("json_arr", ['[\n]', '[\n  {"a": 1},\n  "x",\n  2\n]'], ['[1, 2]', '[\n  1,\n]']),
    ("list", ["- milk\n", "- eggs\n- bread\n"], ["milk\n", "- \n", "- a"]),
    ("arithmetic", ["1 + 2 = 3\n", "12 * (3 + 4) = 84\nx / 2 - 1 = y\n", "(a)=-1.5\n"],
     ["1 + = 3\n", "1 + 2 = 3", "= 3\n"]),
    ("chess", ["1. e4 e5", "1. e4 e5\n2. Nf3 Nc6\n3. Bb5 a6\n", "1. O-O O-O-O+\n2. exd5 Qxd5#"],
     ["1. e9 e5", "e4 e5", "1. e4"]),
    ("english", ["Hello there.", "It works, mostly! Does it?\nYes."], ["hello", "Hi  there.", "Ça va."]),
    ("japanese", ["こんにちは", "日本語のテキスト。\nカタカナ！"], ["abc", "こんにちは world"]),
    ("c", ["int main(void) {\n    return 0;\n}\n",
           "#include <stdio.h>\n\nint add(int a, int b) {\n    int c = a + b;\n    printf(\"%d\\n\", c);\n"
           "    if (c > 0) {\n        return c;\n    }\n    return 0;\n}\n"],
     ["int main() { return 0; }", "main(void) {\n}\n"]),
])
def test_shipped_grammar_languages(name, yes, no):
    g = grammar(name)
    for text in yes:
        assert g.match_string(text), text
    for text in no:
        assert not g.match_string(text), text


def test_prefixes():
    g = grammar("json")
    assert g.match_prefix('{"a": [1, ') and not g.match_prefix('{"a": ]')


# -- UTF-8 as llama.cpp decodes it -----------------------------------------------------------------

def test_decode_utf8():
    assert decode_utf8("aé".encode()) == ([97, 0xE9], (0xE9, 0))
    assert decode_utf8(b"a\xe6\x97") == ([97], (0x6 << 6 | 0x17, 1))     # unfinished 3-byte character
    assert decode_utf8(b"\xa5x", (0x6 << 6 | 0x17, 1)) == ([0x65E5, 120], (120, 0))   # finished next token
    assert decode_utf8(b"\x97") == ([], (0, -1))            # stray continuation byte: invalid
    assert decode_utf8(b"x", (3, 1)) == ([], (0, -1))        # continuation expected, none came
    assert decode_utf8(b"ab\x00cd") == ([97, 98], (98, 0))   # stops at NUL like a C string


def test_partial_character_across_tokens(tok):
    """A character split over tokens: the first half is allowed only where the whole could match."""
    table = TokenTable.of(tok)
    first = next(t for t in table.text_ids if table.pieces[t] == b"\xe6")     # lead byte of 日 (E6 97 A5)
    m = GrammarMatcher('root ::= "日" "!"', tok)
    assert m.accepts(first)
    assert not GrammarMatcher('root ::= "é"', tok).accepts(first)           # é is 2 bytes: C3 A9
    m.accept(first)
    assert m.partial[1] == 2
    mask = m.allowed_mask()
    for t in np.flatnonzero(mask):
        assert table.pieces[t][:1] in (b"\x97",) or table.pieces[t][0] >> 6 == 2


# -- the mask against the one-token check ------------------------------------------------------------

@pytest.mark.parametrize("name", ["json", "arithmetic", "chess", "c", "english", "japanese", "list"])
def test_mask_agrees_with_single_token_check(tok, name):
    """Walk the grammar with random allowed tokens; at every step the vectorised mask equals accepts()
    on a sample of the vocabulary (allowed and not)."""
    m = GrammarMatcher((GRAMMARS / f"{name}.gbnf").read_text(), tok)
    rng = np.random.default_rng(7)
    for _ in range(10):
        mask = m.allowed_mask()
        allowed = np.flatnonzero(mask)
        sample = np.concatenate([rng.choice(tok.n_vocab, 400, replace=False), rng.choice(allowed, 100)])
        got = [m.accepts(int(t)) for t in sample]
        assert got == list(mask[sample]), name
        if m.can_end and rng.random() < 0.2:
            break
        choices = [t for t in allowed if not TokenTable.of(tok).eog[t]]
        m.accept(int(rng.choice(choices)))


def test_eog_only_when_the_grammar_can_end(tok):
    eos = sorted(tok.vocab.eog_ids)[0]
    m = GrammarMatcher('root ::= "a"+', tok)
    assert not m.accepts(eos)
    with pytest.raises(GrammarStateError):
        m.accept(eos)
    m.accept(tok.encode("a", add_special=False)[0])
    assert m.can_end and m.accepts(eos) and m.allowed_mask()[eos]


def test_accepting_a_forbidden_token_raises(tok):
    m = GrammarMatcher('root ::= "yes" | "no"', tok)
    bad = tok.encode("maybe", add_special=False)[0]
    assert not m.accepts(bad)
    with pytest.raises(GrammarStateError, match="not allowed"):
        m.accept(bad)


def test_token_references(tok):
    im_end = tok.encode("<|im_end|>", add_special=False, parse_special=True)
    assert len(im_end) == 1
    m = GrammarMatcher('root ::= "x" <|im_start|> !<[5]>', tok)
    m.accept(tok.encode("x", add_special=False)[0])
    im_start = tok.encode("<|im_start|>", add_special=False, parse_special=True)[0]
    assert np.flatnonzero(m.allowed_mask()).tolist() == [im_start]
    m.accept(im_start)
    assert m.accepts(6) and not m.accepts(5)


def test_unknown_token_text_is_an_error(tok):
    from llamapy.grammar import GrammarError
    with pytest.raises(GrammarError, match="not a single token"):
        GrammarMatcher("root ::= <definitely not one token>", tok)


def test_reset_restarts(tok):
    m = GrammarMatcher('root ::= "ab"', tok)
    start = m.stacks
    m.accept(tok.encode("a", add_special=False)[0])
    m.reset()
    assert m.stacks == start and m.partial == (0, 0)
