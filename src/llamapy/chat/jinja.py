"""The Jinja2 environment Hugging Face renders ``tokenizer.chat_template`` with, rebuilt.

Sandboxed (``ImmutableSandboxedEnvironment``: templates cannot reach Python internals or mutate their
inputs), ``trim_blocks``/``lstrip_blocks`` on, loop controls (``{% break %}``/``{% continue %}``), and the
helpers templates call: ``raise_exception``, ``strftime_now``, ``tojson`` with Python json's semantics
(non-ASCII kept, ``indent``/``separators``/``sort_keys``), ``namespace`` (a Jinja global), and the
``{% generation %}`` block (rendered as its body), so SmolLM3-style templates load.
"""
from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["ChatTemplateError", "compile_template"]


class ChatTemplateError(ValueError):
    """A template that does not parse, or that refused the conversation (raise_exception)."""


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _strftime_now(fmt):
    return datetime.now().strftime(fmt)


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # Jinja's own tojson escapes <, >, & and ' for HTML; chat templates need the plain json.dumps text.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


class _GenerationBlock(Extension):
    """``{% generation %}...{% endgeneration %}`` marks assistant text for training masks; render the body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                       extensions=[loopcontrols, _GenerationBlock])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


@lru_cache(maxsize=32)
def compile_template(source: str) -> jinja2.Template:
    """The compiled template (cached by source); ChatTemplateError with the line when it does not parse."""
    try:
        return _environment().from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise ChatTemplateError(f"chat template syntax error at line {e.lineno}: {e.message}") from None
