"""Grammar-constrained generation: llama.cpp's GBNF grammars and JSON schemas.

    from llamapy import LlamaGrammar
    g = LlamaGrammar.from_string('root ::= "yes" | "no"')
    llm("Answer:", grammar=g)

:mod:`.gbnf` parses GBNF, :mod:`.matcher` tracks the grammar while tokens are generated (the sampler
consults it, see ``llamapy.sampling.Sampler``), :mod:`.json_schema` turns a JSON schema into GBNF.
"""
from __future__ import annotations

from .gbnf import Grammar, GrammarError, parse_gbnf
from .json_schema import SchemaError, json_schema_to_gbnf
from .llama_grammar import LlamaGrammar, response_format_grammar
from .matcher import CompiledGrammar, GrammarMatcher, GrammarStateError, TokenTable

__all__ = ["LlamaGrammar", "Grammar", "GrammarError", "GrammarStateError", "GrammarMatcher", "CompiledGrammar",
           "SchemaError", "TokenTable", "json_schema_to_gbnf", "parse_gbnf", "response_format_grammar"]
