"""The terminal side of llamapy-cli's interactive modes: coloured output and line input, as llama.cpp's
console does it in its simple-io mode (the terminal's own line editing; no history).

Colours (``--color``): the prompt in yellow, the user's input in bold green, generated text in the default
colour; a code is written only when the kind of text changes.
"""
from __future__ import annotations

import os
import sys

PROMPT, USER_INPUT, RESET, ERROR = "prompt", "user_input", "reset", "error"
_ANSI = {RESET: "\x1b[0m", PROMPT: "\x1b[33m", USER_INPUT: "\x1b[1m\x1b[32m", ERROR: "\x1b[1m\x1b[31m"}


def tty_can_use_colors() -> bool:
    """llama.cpp's rule for --color auto: NO_COLOR unset or empty, TERM not 'dumb', stdout or stderr a terminal."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    return sys.stdout.isatty() or sys.stderr.isatty()


class Console:
    def __init__(self, color: bool = False, out=None, inp=None):
        self.color = color
        self.out = out or sys.stdout.buffer
        self.inp = inp or sys.stdin.buffer
        self.display = RESET

    def write(self, text: str) -> None:
        """Text for stdout (the prompt, the generation, llama.cpp's LOG() lines), right away."""
        self.out.write(text.encode("utf-8", errors="replace"))
        self.out.flush()

    def info(self, line: str = "") -> None:
        """A diagnostic line for stderr."""
        print(line, file=sys.stderr, flush=True)

    def set_display(self, kind: str) -> None:
        if self.color and kind != self.display:
            self.write(_ANSI[kind])
        self.display = kind

    def readline(self, multiline: bool) -> tuple[str, bool]:
        """One line of input -> (text, whether another line follows). The line keeps a "\\n" unless it ended
        the input. A trailing '\\' swaps the default (a new line follows, or with -mli: the input ends); a
        trailing '/' ends the input without a newline. End of file gives ("", False)."""
        raw = self.inp.readline()
        if not raw:
            return "", False
        line = raw.decode("utf-8", errors="replace")
        line = line[:-1] if line.endswith("\n") else line
        if line.endswith("/"):
            return line[:-1] + "\n", False
        if line.endswith("\\"):
            line, multiline = line[:-1], not multiline
        return line + "\n", multiline

    def cleanup(self) -> None:
        self.set_display(RESET)
