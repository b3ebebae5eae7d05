"""``LlamaGrammar``: a grammar for ``Llama.create_completion(grammar=...)``, shaped like llama-cpp-python's."""
from __future__ import annotations

import os

from .gbnf import parse_gbnf
from .json_schema import json_schema_to_gbnf
from .matcher import GrammarMatcher, TokenTable

__all__ = ["LlamaGrammar"]


class LlamaGrammar:
    """A parsed GBNF grammar (checked when made: a bad one raises ``GrammarError`` with line and column).

    ``LlamaGrammar.from_string(text)``, ``.from_file(path)``, ``.from_json_schema(schema_json)``. It holds no
    generation state: every completion starts the grammar afresh.
    """

    def __init__(self, *, _grammar: str, root: str = "root"):
        self._grammar = _grammar
        self._root = root
        self.grammar = parse_gbnf(_grammar, root)

    @classmethod
    def from_string(cls, grammar: str, verbose: bool = True) -> "LlamaGrammar":
        return cls(_grammar=grammar)

    @classmethod
    def from_file(cls, file: str | os.PathLike, verbose: bool = True) -> "LlamaGrammar":
        try:
            with open(file, encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read grammar file '{os.fspath(file)}': {getattr(e, 'strerror', None) or e}") \
                from None
        if not text.strip():
            raise ValueError(f"grammar file '{os.fspath(file)}' is empty")
        return cls.from_string(text, verbose)

    @classmethod
    def from_json_schema(cls, json_schema: str | dict, verbose: bool = True) -> "LlamaGrammar":
        return cls.from_string(json_schema_to_gbnf(json_schema), verbose)

    def matcher(self, tokenizer) -> GrammarMatcher:
        """A fresh grammar state over ``tokenizer``'s vocabulary."""
        return GrammarMatcher(self.grammar, table=TokenTable.of(tokenizer))

    def __str__(self) -> str:
        return self._grammar

    def __repr__(self) -> str:
        return f"LlamaGrammar({len(self.grammar.rules)} rules)"


def response_format_grammar(response_format) -> LlamaGrammar | None:
    """The grammar an OpenAI-style ``response_format`` asks for, as llama-cpp-python reads it:
    ``{"type": "json_object"}`` any JSON object, ``{"type": "json_object", "schema": S}`` or
    ``{"type": "json_schema", "json_schema": {"schema": S}}`` JSON that fits S, ``{"type": "text"}`` none."""
    if response_format is None:
        return None
    if not isinstance(response_format, dict) or "type" not in response_format:
        raise ValueError('response_format must be a dict with a "type"')
    kind = response_format["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        schema = response_format.get("schema")
    elif kind == "json_schema":
        inner = response_format.get("json_schema")
        if not isinstance(inner, dict) or "schema" not in inner:
            raise ValueError('response_format of type "json_schema" needs {"json_schema": {"schema": ...}}')
        schema = inner["schema"]
    else:
        raise ValueError(f"response_format type {kind!r} is not one of 'text', 'json_object', 'json_schema'")
    return LlamaGrammar.from_json_schema({"type": "object"} if schema is None else schema)
