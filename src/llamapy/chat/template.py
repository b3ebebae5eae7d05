"""``ChatTemplate``: a conversation -> prompt text, through a llama.cpp built-in or a Jinja template.

    tmpl = ChatTemplate.for_model(reader)               # the GGUF's tokenizer.chat_template (or chatml)
    tmpl = ChatTemplate.builtin("llama3")               # llama.cpp's built-in renderer by name
    tmpl = ChatTemplate.from_file("template.jinja")
    prompt = tmpl.render([{"role": "user", "content": "Hi"}])                 # + generation prompt
    suffix = tmpl.format_single(history, {"role": "user", "content": "Next"})  # only the new text

Jinja templates render as llama.cpp's ``--jinja`` path renders them: ``bos_token``/``eos_token`` are the
vocabulary's texts, a leading BOS (trailing EOS) is cut when tokenizing adds it anyway, and a template
that has no system role gets the system text merged into the first user message.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

import jinja2

from .builtin import BUILTIN_NAMES, END_OF_TURN, RENDERERS, detect_template
from .jinja import ChatTemplateError, compile_template

__all__ = ["ChatTemplate", "ChatTemplateError", "message_text"]

_SYSTEM_PROBE = "\x01llamapy system probe\x01"


def message_text(message: Mapping) -> str:
    """A message's content as text: a string, None (""), or OpenAI content parts (text parts joined by "\\n",
    as llama.cpp's legacy templates join them)."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        return "\n".join(part.get("text", "") for part in content
                         if isinstance(part, Mapping) and part.get("type") == "text")
    raise ChatTemplateError(f"message content must be a string or a list of parts (got {type(content).__name__})")


def _check_messages(messages) -> list[dict]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Iterable):
        raise ChatTemplateError("messages must be a list of {'role': ..., 'content': ...} dicts")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
            raise ChatTemplateError(f"message {i} must be a dict with a string 'role'")
        out.append(dict(m))
    return out


class ChatTemplate:
    """Renders conversations. ``name``: the built-in's name, or "jinja" for a Jinja template;
    ``source``: the Jinja text (None for built-ins); ``stop``: end-of-turn texts worth stopping on."""

    def __init__(self, *, name: str, source: str | None = None, bos_token: str = "", eos_token: str = "",
                 add_bos: bool = False, add_eos: bool = False):
        self.name = name
        self.source = source
        self.bos_token, self.eos_token = bos_token, eos_token
        self.add_bos, self.add_eos = add_bos, add_eos
        self.stop: tuple[str, ...] = END_OF_TURN.get(name, ())
        self._template = compile_template(source) if source is not None else None
        self._system_role = self._template is None or self._supports_system_role()

    def __repr__(self) -> str:
        return f"ChatTemplate({self.name!r})"

    # -- constructors --------------------------------------------------------------------------

    @classmethod
    def builtin(cls, name: str) -> "ChatTemplate":
        if name not in RENDERERS or name not in BUILTIN_NAMES:
            raise ValueError(f"unknown chat template {name!r}; built-in templates: {', '.join(BUILTIN_NAMES)}")
        return cls(name=name)

    @classmethod
    def from_source(cls, src: str, bos_token: str = "", eos_token: str = "", *, add_bos: bool = False,
                    add_eos: bool = False) -> "ChatTemplate":
        """A Jinja template (``add_bos``/``add_eos``: the tokenizer adds BOS/EOS, so a rendered leading BOS
        or trailing EOS text is cut)."""
        return cls(name="jinja", source=src, bos_token=bos_token, eos_token=eos_token, add_bos=add_bos,
                   add_eos=add_eos)

    @classmethod
    def from_file(cls, path: str | os.PathLike, bos_token: str = "", eos_token: str = "", **kw) -> "ChatTemplate":
        try:
            with open(path, encoding="utf-8") as f:
                src = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise ChatTemplateError(f"cannot read chat template file {os.fspath(path)!r}: "
                                    f"{getattr(e, 'strerror', None) or e}") from None
        return cls.from_source(src, bos_token, eos_token, **kw)

    @classmethod
    def for_model(cls, reader_or_metadata, name: str | None = None, file: str | os.PathLike | None = None,
                  *, tokenizer=None) -> "ChatTemplate":
        """The template a model chats with: ``name`` (a built-in) or ``file`` (Jinja) if given, else the
        GGUF's ``tokenizer.chat_template``, else chatml (llama.cpp's default). ``reader_or_metadata``: a
        GGUFReader or a dict of GGUF metadata; ``tokenizer``: an already built llamapy Tokenizer, to skip
        building the vocabulary again for the BOS/EOS texts."""
        if name is not None:
            return cls.builtin(name)
        bos, eos, add_bos, add_eos = _special_texts(reader_or_metadata, tokenizer)
        if file is not None:
            return cls.from_file(file, bos, eos, add_bos=add_bos, add_eos=add_eos)
        src = reader_or_metadata.get("tokenizer.chat_template")
        if not src or src == "chatml":
            return cls.builtin("chatml")
        return cls.from_source(str(src), bos, eos, add_bos=add_bos, add_eos=add_eos)

    # -- rendering -----------------------------------------------------------------------------

    def render(self, messages, add_generation_prompt: bool = True, **context: Any) -> str:
        """The prompt text for ``messages`` (dicts with "role" and "content"). ``context``: extra Jinja
        variables (``tools``, ``enable_thinking``, ...; ignored by built-ins)."""
        messages = _check_messages(messages)
        if self._template is None:
            return RENDERERS[self.name]([(m["role"], message_text(m)) for m in messages], add_generation_prompt)
        if not self._system_role:
            messages = _merge_system(messages)
        text = self._render_jinja(messages, add_generation_prompt, context)
        if self.add_bos and self.bos_token and text.startswith(self.bos_token):
            text = text[len(self.bos_token):]
        if self.add_eos and self.eos_token and text.endswith(self.eos_token):
            text = text[:-len(self.eos_token)]
        return text

    def format_single(self, history, new_message, add_generation_prompt: bool = True, **context: Any) -> str:
        """Only the text ``new_message`` adds after ``history`` (llama.cpp's common_chat_format_single):
        render(history + [new]) minus render(history); when the history's text ends in "\\n" and a
        generation prompt is added, the suffix gets a leading "\\n" (what llama.cpp's conversation mode
        feeds after the model's reply)."""
        history = _check_messages(history)
        past = self.render(history, add_generation_prompt=False, **context) if history else ""
        full = self.render(history + _check_messages([new_message]), add_generation_prompt, **context)
        lead = "\n" if add_generation_prompt and past.endswith("\n") else ""
        return lead + full[len(past):]

    def _render_jinja(self, messages, add_generation_prompt, context) -> str:
        variables = {"messages": messages, "add_generation_prompt": add_generation_prompt,
                     "bos_token": self.bos_token, "eos_token": self.eos_token}
        variables.update(context)
        try:
            return self._template.render(**variables)
        except jinja2.TemplateError as e:
            raise ChatTemplateError(f"chat template error: {e.message or e}") from None
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
            raise ChatTemplateError(f"chat template error: {type(e).__name__}: {e}") from None

    def _supports_system_role(self) -> bool:
        """llama.cpp's probe: does a system message's text reach the output?"""
        probe = [{"role": "system", "content": _SYSTEM_PROBE}, {"role": "user", "content": "User message"}]
        try:
            return _SYSTEM_PROBE in self._render_jinja(probe, False, {})
        except ChatTemplateError:
            return False


def _merge_system(messages: list[dict]) -> list[dict]:
    """A leading system message goes in front of the next message's text ("\\n" between), or is dropped
    when it is alone (llama.cpp's workaround for templates without a system role)."""
    if not messages or messages[0]["role"] != "system":
        return messages
    if len(messages) == 1:
        return []
    merged = dict(messages[1], content=message_text(messages[0]) + "\n" + message_text(messages[1]))
    return [merged] + messages[2:]


def _special_texts(source, tokenizer) -> tuple[str, str, bool, bool]:
    """(bos text, eos text, add_bos, add_eos) of a model's vocabulary; empty texts when it has none."""
    if tokenizer is None:
        if source.get("tokenizer.ggml.tokens") is None:
            return "", "", False, False
        from llamapy.tokenizer import Tokenizer, Vocab
        tokenizer = Tokenizer(Vocab(source))

    def text(token_id):
        if token_id is None:
            return ""
        return tokenizer.detokenize([token_id], unparse_special=True).decode("utf-8", errors="replace")

    return text(tokenizer.bos_id), text(tokenizer.eos_id), tokenizer.add_bos, tokenizer.add_eos
