"""GBNF parsing: every syntax element, llama.cpp's rule encoding, and every error with its line and column."""
from pathlib import Path

import pytest

from llamapy.grammar import CompiledGrammar, GrammarError, parse_gbnf
from llamapy.grammar.gbnf import (
    ALT, CHAR, CHAR_ALT, CHAR_ANY, CHAR_NOT, CHAR_RNG_UPPER, END, RULE_REF, TOKEN, TOKEN_NOT,
)

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"


def matches(gbnf: str, text: str) -> bool:
    return CompiledGrammar(gbnf).match_string(text)


# -- rule encoding (as llama.cpp's parser builds it) -------------------------------------------------

def test_literal_and_alternatives():
    g = parse_gbnf('root ::= "ab" | "c"')
    assert g.names == ["root"]
    assert g.rules[0] == [(CHAR, ord("a")), (CHAR, ord("b")), (ALT, 0), (CHAR, ord("c")), (END, 0)]


def test_char_class_ranges_negation_and_any():
    g = parse_gbnf("root ::= [a-z_0-9] [^\\n] .")
    assert g.rules[0] == [(CHAR, ord("a")), (CHAR_RNG_UPPER, ord("z")), (CHAR_ALT, ord("_")),
                          (CHAR_ALT, ord("0")), (CHAR_RNG_UPPER, ord("9")),
                          (CHAR_NOT, ord("\n")), (CHAR_ANY, 0), (END, 0)]


def test_rule_references_resolve_in_order_of_first_use():
    g = parse_gbnf('root ::= a b\na ::= "x"\nb ::= a')
    assert g.names == ["root", "a", "b"]
    assert g.rules[0] == [(RULE_REF, 1), (RULE_REF, 2), (END, 0)]


def test_repetition_rewrites_like_llama_cpp():
    g = parse_gbnf('root ::= "a"{2,4}')
    # S{2,4} -> S S root_2 ; root_1 ::= S | ; root_2 ::= S root_1 |
    assert g.rules[0] == [(CHAR, 97), (CHAR, 97), (RULE_REF, 2), (END, 0)]
    assert g.rules[1] == [(CHAR, 97), (ALT, 0), (END, 0)]
    assert g.rules[2] == [(CHAR, 97), (RULE_REF, 1), (ALT, 0), (END, 0)]
    star = parse_gbnf('root ::= "a"*')
    assert star.rules[1] == [(CHAR, 97), (RULE_REF, 1), (ALT, 0), (END, 0)]   # S' ::= S S' |


def test_group_becomes_generated_rule():
    g = parse_gbnf('root ::= ("a" | "b") "c"')
    assert g.names[1] == "root_1"
    assert g.rules[0] == [(RULE_REF, 1), (CHAR, 99), (END, 0)]


def test_tokens_by_id_and_text_and_negated():
    g = parse_gbnf("root ::= <[12]> !<[7]> <think>")
    assert g.rules[0][:2] == [(TOKEN, 12), (TOKEN_NOT, 7)]
    assert g.rules[0][2] == (TOKEN, -1) and g.token_texts == ["<think>"]


@pytest.mark.parametrize("gbnf, yes, no", [
    ('root ::= "a" | "b"', ["a", "b"], ["", "ab", "c"]),
    ('root ::= ("a" "b")+', ["ab", "abab"], ["", "a", "aba"]),
    ('root ::= "x"*', ["", "x", "xxxx"], ["y"]),
    ('root ::= "x"?', ["", "x"], ["xx"]),
    ('root ::= "x"{3}', ["xxx"], ["xx", "xxxx"]),
    ('root ::= "x"{2,}', ["xx", "xxxxx"], ["x"]),
    ('root ::= "x"{1,3}', ["x", "xxx"], ["", "xxxx"]),
    ('root ::= "x"{0,2}', ["", "xx"], ["xxx"]),
    ("root ::= [a-c]+", ["abcab"], ["abd"]),
    ("root ::= [^a-c]", ["d", "é", "\n"], ["a", "c"]),
    ("root ::= . .", ["ab", "日本"], ["a"]),
    ('root ::= "\\x41\\u00e9\\U0001F600\\t\\r\\n\\\\\\"\\[\\]\\-"', ["Aé😀\t\r\n\\\"[]-"], []),
    ("root ::= [\\[\\]\\-]+", ["[-]"], ["a"]),
    ("root ::= [ぁ-ゟ]+", ["ひらがな"], ["カ"]),
    ('root ::= "é日"', ["é日"], ["e"]),
    ('root ::= a\na ::= "1" a | "2"', ["2", "112"], ["1"]),
])
def test_language(gbnf, yes, no):
    for text in yes:
        assert matches(gbnf, text), text
    for text in no:
        assert not matches(gbnf, text), text


def test_comments_and_newlines():
    gbnf = """
# leading comment
root ::= item ( # a comment inside a group
    "," item
  )*   # trailing comment
item ::= "a" |
         "b"
"""
    assert matches(gbnf, "a,b,a") and not matches(gbnf, "a,")


def test_crlf_line_ends():
    assert matches('root ::= a\r\na ::= "z"\r\n', "z")


def test_left_recursion_through_empty_rule():
    with pytest.raises(GrammarError, match="left recursion in rule 'a'"):
        parse_gbnf('root ::= a\na ::= e a "x" | "y"\ne ::= "q" |')


# -- errors: one message, line and column ------------------------------------------------------------

@pytest.mark.parametrize("gbnf, line, column, message", [
    ('root = "a"', 1, 6, "expected '::='"),
    ('root ::= "a"\nx ::= y', 2, 7, "undefined rule 'y'"),
    ('root ::= "a\n', 1, 10, "unterminated string literal"),
    ("root ::= [a-", 1, 10, "unterminated character class"),
    ("root ::= []", 1, 10, "empty character class"),
    ("root ::= [z-a]", 1, 10, "character range is out of order"),
    ('root ::= "\\q"', 1, 11, "unknown escape '\\q'"),
    ('root ::= "\\x4"', 1, 11, "expected 2 hex digits after '\\x'"),
    ('root ::= "\\u12G4"', 1, 11, "expected 4 hex digits after '\\u'"),
    ('root ::= root "a"', 1, 1, "left recursion in rule 'root'"),
    ('root ::= x\nx ::= "b" | x "a"', 2, 1, "left recursion in rule 'x'"),
    ('root ::= ("a"', 1, 14, "expected ')' to close the group opened at line 1, column 10"),
    ('root ::= "a"{3,2}', 1, 13, "repetition maximum 2 is below the minimum 3"),
    ('root ::= "a"{x}', 1, 14, "expected an integer after '{'"),
    ('root ::= "a"{2,3', 1, 17, "expected '}'"),
    ('root ::= "a"{2;}', 1, 15, "expected ',' or '}'"),
    ('root ::= "a"{2001}', 1, 13, "repetition count 2001 is over the limit of 2000"),
    ("root ::= *", 1, 10, "a repetition operator needs an item before it"),
    ('root ::= "a"\n  | "b"', 2, 3, "expected a rule name, got '|'"),
    ('root ::= "a" )', 1, 14, "expected newline or end of rule, got ')'"),
    ('root ::= "a"\nroot ::= "b"', 2, 1, "rule 'root' is defined twice"),
    ("root ::= !x", 1, 11, "expected '<' after '!'"),
    ("root ::= <[12>", 1, 14, "expected ']>' after the token id"),
    ("root ::= <abc", 1, 10, "unterminated token reference"),
    ("\n\n  root ::= foo", 3, 12, "undefined rule 'foo'"),
])
def test_errors_name_line_and_column(gbnf, line, column, message):
    with pytest.raises(GrammarError) as e:
        parse_gbnf(gbnf)
    assert (e.value.line, e.value.column) == (line, column), str(e.value)
    assert message in str(e.value)
    assert str(e.value).startswith(f"grammar error at line {line}, column {column}: ")
    assert "\n" not in str(e.value)


def test_errors_without_a_place():
    with pytest.raises(GrammarError, match="^grammar error: the grammar has no 'root' rule$"):
        parse_gbnf('a ::= "x"')
    with pytest.raises(GrammarError, match="no rules"):
        parse_gbnf("# only a comment\n")


def test_nested_repetition_guard():
    with pytest.raises(GrammarError, match="exceed 2000"):
        parse_gbnf('root ::= ("a"{0,50}){0,50}')


def test_format_lists_every_rule():
    g = parse_gbnf('root ::= ("a" | [^b-d]) . item*\nitem ::= !<[3]> "\\n"')
    assert str(g).splitlines() == ["root ::= root_1 . root_3", "root_1 ::= [a] | [^b-d]", "item ::= !<[3]> [\\n]",
                                   "root_3 ::= item root_3 |"]


@pytest.mark.parametrize("name", ["json", "json_arr", "list", "arithmetic", "chess", "c", "english", "japanese"])
def test_shipped_grammars_parse(name):
    g = parse_gbnf((GRAMMARS / f"{name}.gbnf").read_text())
    assert g.names[g.root] == "root"
