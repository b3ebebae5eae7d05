"""Chat templates: conversations rendered as llama.cpp renders them (built-ins by name, or the model's Jinja
``tokenizer.chat_template`` in a Hugging Face-compatible sandbox).

    from llamapy.chat import ChatTemplate, BUILTIN_NAMES, detect_template
"""
from .builtin import BUILTIN_NAMES, detect_template
from .jinja import ChatTemplateError
from .template import ChatTemplate, message_text

__all__ = ["BUILTIN_NAMES", "ChatTemplate", "ChatTemplateError", "detect_template", "message_text"]
