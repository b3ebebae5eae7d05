"""GBNF text -> rules, with llama.cpp's syntax and its rule encoding (src/llama-grammar.cpp).

    g = parse_gbnf('root ::= ("- " item)+\\nitem ::= [^\\n]+ "\\n"')
    g.rules[g.root]        # [(CHAR, ord('-')), (CHAR, ord(' ')), (RULE_REF, 3), ...,(END, 0)]

A rule is a flat list of ``(type, value)`` elements: alternatives separated by ALT, closed by END; a
character class is a CHAR / CHAR_NOT / CHAR_ANY element followed by CHAR_ALT and CHAR_RNG_UPPER elements.
Groups and repetitions become generated rules named ``<rule>_<n>``, exactly as llama.cpp rewrites them
(``S{m,n}`` -> m copies of S, then n-m nested optional rules), so the matcher sees the same stacks.

Errors are :class:`GrammarError` with the line and column of the problem:
``grammar error at line 3, column 7: expected '::='``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["GrammarError", "Grammar", "parse_gbnf", "END", "ALT", "RULE_REF", "CHAR", "CHAR_NOT",
           "CHAR_RNG_UPPER", "CHAR_ALT", "CHAR_ANY", "TOKEN", "TOKEN_NOT"]

# Element types, numbered as llama.cpp's llama_gretype.
END, ALT, RULE_REF, CHAR, CHAR_NOT, CHAR_RNG_UPPER, CHAR_ALT, CHAR_ANY, TOKEN, TOKEN_NOT = range(10)

MAX_REPETITION = 2000        # llama.cpp's MAX_REPETITION_THRESHOLD
_SIMPLE_ESCAPES = {"t": "\t", "r": "\r", "n": "\n", "\\": "\\", '"': '"', "[": "[", "]": "]", "-": "-"}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


class GrammarError(ValueError):
    """A grammar that cannot be used; ``line``/``column`` are 1-based (None when no place applies)."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        self.message, self.line, self.column = message, line, column
        where = f" at line {line}, column {column}" if line is not None else ""
        super().__init__(f"grammar error{where}: {message}")


@dataclass
class Grammar:
    """Parsed rules. ``names[i]`` is rule i's name. A TOKEN / TOKEN_NOT element holds a token id, or for a
    ``<text>`` reference still to be looked up in a vocabulary ``-(k + 1)``: the text is ``token_texts[k]``."""

    rules: list[list[tuple[int, int]]]
    names: list[str]
    root: int
    source: str = ""
    token_texts: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return format_rules(self)


def _is_word_char(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c == "-")


class _Parser:
    def __init__(self, text: str):
        self.src = text
        self.pos = 0
        self.ids: dict[str, int] = {}        # symbol name -> rule id, in order of first appearance
        self.base: list[str] = []            # rule id -> the user rule it belongs to (for messages)
        self.rules: dict[int, list] = {}
        self.first_use: dict[int, int] = {}  # rule id -> offset of its first reference
        self.defined_at: dict[int, int] = {}
        self.token_texts: list[str] = []

    # -- positions and errors ------------------------------------------------------------------

    def error(self, message: str, at: int | None = None) -> GrammarError:
        at = self.pos if at is None else at
        line = self.src.count("\n", 0, at) + 1
        column = at - (self.src.rfind("\n", 0, at) + 1) + 1
        return GrammarError(message, line, column)

    def peek(self, k: int = 0) -> str:
        i = self.pos + k
        return self.src[i] if i < len(self.src) else ""

    def describe(self) -> str:
        c = self.peek()
        if not c:
            return "end of input"
        return "newline" if c in "\r\n" else repr(c)

    def skip_space(self, newline_ok: bool):
        """Blanks and comments; newlines too when inside parentheses or right after '|' or '::='."""
        src, n = self.src, len(self.src)
        while self.pos < n:
            c = src[self.pos]
            if c == "#":
                while self.pos < n and src[self.pos] not in "\r\n":
                    self.pos += 1
            elif c in " \t" or (newline_ok and c in "\r\n"):
                self.pos += 1
            else:
                break

    # -- symbols -------------------------------------------------------------------------------

    def symbol(self, name: str, base: str | None = None) -> int:
        if name not in self.ids:
            self.ids[name] = len(self.ids)
            self.base.append(base or name)
        return self.ids[name]

    def new_symbol(self, base: str) -> int:
        """A generated rule for a group or repetition inside rule `base` (llama.cpp: base_<id>)."""
        rid = len(self.ids)
        self.ids[f"{base}_{rid}"] = rid
        self.base.append(base)
        return rid

    def name(self) -> str:
        start = self.pos
        while _is_word_char(self.peek()):
            self.pos += 1
        if self.pos == start:
            hint = (" (an alternative on a new line needs the '|' at the end of the line before, or "
                    "parentheses around the alternatives)") if self.peek() == "|" else ""
            raise self.error(f"expected a rule name, got {self.describe()}{hint}")
        return self.src[start:self.pos]

    def integer(self) -> int:
        start = self.pos
        while self.peek().isascii() and self.peek().isdigit():
            self.pos += 1
        if self.pos == start:
            raise self.error(f"expected an integer, got {self.describe()}")
        return int(self.src[start:self.pos])

    def char(self) -> int:
        """One character of a literal or class: itself, or an escape."""
        start = self.pos
        c = self.peek()
        if not c:
            raise self.error("unexpected end of input")
        if c != "\\":
            self.pos += 1
            return ord(c)
        e = self.peek(1)
        if e in _SIMPLE_ESCAPES:
            self.pos += 2
            return ord(_SIMPLE_ESCAPES[e])
        if e in _HEX_ESCAPES:
            size = _HEX_ESCAPES[e]
            digits = self.src[self.pos + 2:self.pos + 2 + size]
            if len(digits) != size or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise self.error(f"expected {size} hex digits after '\\{e}'", start)
            self.pos += 2 + size
            return int(digits, 16)
        raise self.error(f"unknown escape '\\{e}'" if e else "unexpected end of input after '\\'", start)

    # -- rules ---------------------------------------------------------------------------------

    def parse(self) -> None:
        self.skip_space(True)
        while self.pos < len(self.src):
            self.rule()

    def rule(self) -> None:
        start = self.pos
        name = self.name()
        self.skip_space(False)
        if not self.src.startswith("::=", self.pos):
            raise self.error(f"expected '::=' after rule name '{name}', got {self.describe()}")
        rid = self.symbol(name)
        if rid in self.defined_at:
            raise self.error(f"rule '{name}' is defined twice", start)
        self.defined_at[rid] = start
        self.pos += 3
        self.skip_space(True)
        self.alternates(name, rid, nested=False)
        c = self.peek()
        if c == "\r":
            self.pos += 2 if self.peek(1) == "\n" else 1
        elif c == "\n":
            self.pos += 1
        elif c:
            raise self.error(f"expected newline or end of rule, got {self.describe()}")
        self.skip_space(True)

    def alternates(self, name: str, rid: int, nested: bool) -> None:
        rule: list[tuple[int, int]] = []
        self.sequence(name, rule, nested)
        while self.peek() == "|":
            rule.append((ALT, 0))
            self.pos += 1
            self.skip_space(True)
            self.sequence(name, rule, nested)
        rule.append((END, 0))
        self.rules[rid] = rule

    def sequence(self, name: str, rule: list, nested: bool) -> None:
        last_start = len(rule)   # where the last symbol starts (what a repetition applies to)
        n_prev_rules = 1         # rules that symbol stands for, to bound nested repetitions
        while True:
            c = self.peek()
            start = self.pos
            if c == '"':
                self.pos += 1
                last_start, n_prev_rules = len(rule), 1
                while self.peek() != '"':
                    if not self.peek():
                        raise self.error("unterminated string literal", start)
                    rule.append((CHAR, self.char()))
                self.pos += 1
            elif c == "[":
                self.pos += 1
                first = CHAR
                if self.peek() == "^":
                    self.pos += 1
                    first = CHAR_NOT
                last_start, n_prev_rules = len(rule), 1
                if self.peek() == "]":
                    raise self.error("empty character class", start)
                while self.peek() != "]":
                    if not self.peek():
                        raise self.error("unterminated character class", start)
                    rule.append((first if len(rule) == last_start else CHAR_ALT, self.char()))
                    if self.peek() == "-" and self.peek(1) != "]":
                        self.pos += 1
                        if not self.peek():
                            raise self.error("unterminated character class", start)
                        lo, hi = rule[-1][1], self.char()
                        if hi < lo:
                            raise self.error("character range is out of order", start)
                        rule.append((CHAR_RNG_UPPER, hi))
                self.pos += 1
            elif c in ("<", "!"):
                kind = TOKEN
                if c == "!":
                    kind = TOKEN_NOT
                    self.pos += 1
                    if self.peek() != "<":
                        raise self.error(f"expected '<' after '!', got {self.describe()}")
                last_start, n_prev_rules = len(rule), 1
                rule.append((kind, self.token(start)))
            elif c and _is_word_char(c):
                ref = self.symbol(self.name())
                self.first_use.setdefault(ref, start)
                last_start, n_prev_rules = len(rule), 1
                rule.append((RULE_REF, ref))
            elif c == "(":
                self.pos += 1
                self.skip_space(True)
                n_before = len(self.ids)
                sub = self.new_symbol(name)
                self.alternates(name, sub, nested=True)
                n_prev_rules = max(1, len(self.ids) - n_before)
                last_start = len(rule)
                rule.append((RULE_REF, sub))
                if self.peek() != ")":
                    opened = self.error("", start)
                    raise self.error(f"expected ')' to close the group opened at line {opened.line}, column "
                                     f"{opened.column}, got {self.describe()}")
                self.pos += 1
            elif c == ".":
                self.pos += 1
                last_start, n_prev_rules = len(rule), 1
                rule.append((CHAR_ANY, 0))
            elif c in ("*", "+", "?"):
                self.pos += 1
                lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
                n_prev_rules = self.repeat(name, rule, last_start, n_prev_rules, lo, hi, start)
            elif c == "{":
                self.pos += 1
                self.skip_space(nested)
                if not (self.peek().isascii() and self.peek().isdigit()):
                    raise self.error(f"expected an integer after '{{', got {self.describe()}")
                lo = self.integer()
                self.skip_space(nested)
                hi: int | None
                if self.peek() == "}":
                    hi = lo
                elif self.peek() == ",":
                    self.pos += 1
                    self.skip_space(nested)
                    hi = self.integer() if self.peek().isascii() and self.peek().isdigit() else None
                    self.skip_space(nested)
                    if self.peek() != "}":
                        raise self.error(f"expected '}}', got {self.describe()}")
                else:
                    raise self.error(f"expected ',' or '}}', got {self.describe()}")
                self.pos += 1
                if lo > MAX_REPETITION:
                    raise self.error(f"repetition count {lo} is over the limit of {MAX_REPETITION}", start)
                if hi is not None and hi > MAX_REPETITION:
                    hi = None       # llama.cpp: a huge maximum means no maximum
                if hi is not None and hi < lo:
                    raise self.error(f"repetition maximum {hi} is below the minimum {lo}", start)
                n_prev_rules = self.repeat(name, rule, last_start, n_prev_rules, lo, hi, start)
            else:
                return
            self.skip_space(nested)

    def token(self, start: int) -> int:
        """``<[id]>`` -> id; ``<text>`` -> -(k + 1), the text kept as token_texts[k] for the vocabulary."""
        self.pos += 1  # '<'
        if self.peek() == "[":
            self.pos += 1
            tid = self.integer()
            if self.peek() != "]" or self.peek(1) != ">":
                raise self.error(f"expected ']>' after the token id, got {self.describe()}")
            self.pos += 2
            if tid > 0xFFFFFFFF:
                raise self.error(f"token id {tid} is too big", start)
            return tid
        end = self.src.find(">", self.pos)
        if end < 0:
            raise self.error("unterminated token reference", start)
        text = "<" + self.src[self.pos:end + 1]
        self.pos = end + 1
        self.token_texts.append(text)
        return -len(self.token_texts)

    def repeat(self, name, rule, last_start, n_prev_rules, lo, hi, at) -> int:
        """Rewrite the last symbol S as llama.cpp does: S{m,n} -> S x m, then n-m nested optional rules;
        S{m,} -> S x m, then S' ::= S S' | (empty)."""
        if last_start == len(rule):
            raise self.error("a repetition operator needs an item before it", at)
        prev = rule[last_start:]
        total = hi if hi else (lo if lo > 0 else 1)
        if n_prev_rules * total > MAX_REPETITION:
            raise self.error("repetitions nest too deep: the rules they expand to would exceed "
                             f"{MAX_REPETITION}", at)
        if lo == 0:
            del rule[last_start:]
        else:
            for _ in range(lo - 1):
                rule.extend(prev)
        n_opt = 1 if hi is None else hi - lo
        last_rec = -1
        for i in range(n_opt):
            rec = self.new_symbol(name)
            body = list(prev)
            if i > 0 or hi is None:
                body.append((RULE_REF, rec if hi is None else last_rec))
            self.rules[rec] = body + [(ALT, 0), (END, 0)]
            last_rec = rec
        if n_opt > 0:
            rule.append((RULE_REF, last_rec))
        return n_prev_rules * total


def parse_gbnf(text: str, root: str = "root") -> Grammar:
    """Parse GBNF text; raises :class:`GrammarError` (undefined rules and left recursion included)."""
    if not isinstance(text, str):
        raise TypeError(f"grammar text must be str, not {type(text).__name__}")
    p = _Parser(text)
    p.parse()
    if not p.rules:
        raise GrammarError("the grammar has no rules")
    for name, rid in p.ids.items():
        if rid not in p.rules:
            raise p.error(f"undefined rule '{name}'", p.first_use.get(rid, 0))
    if root not in p.ids:
        raise GrammarError(f"the grammar has no '{root}' rule")
    rules = [p.rules[i] for i in range(len(p.ids))]
    names = [""] * len(p.ids)
    for name, rid in p.ids.items():
        names[rid] = name
    g = Grammar(rules, names, p.ids[root], text, p.token_texts)
    bad = _left_recursive_rule(rules)
    if bad is not None:
        base = p.base[bad]
        at = p.defined_at.get(p.ids.get(base, bad), 0)
        raise p.error(f"left recursion in rule '{base}'", at)
    return g


def _left_recursive_rule(rules) -> int | None:
    """A rule reachable from itself without consuming input (llama.cpp's test: a rule counts as possibly
    empty when one of its alternatives is empty); None if there is none."""
    n = len(rules)
    visited, in_progress, may_be_empty = [False] * n, [False] * n, [False] * n

    def visit(i: int) -> int | None:   # the rule that closes a left-recursive cycle, if any
        if in_progress[i]:
            return i
        in_progress[i] = True
        rule = rules[i]
        at_start = True
        for kind, _ in rule:
            if kind in (END, ALT):
                if at_start:
                    may_be_empty[i] = True
                    break
                at_start = True
            else:
                at_start = False
        leftmost = True
        for kind, value in rule:
            if kind == RULE_REF and leftmost:
                found = visit(value)
                if found is not None:
                    return found
                if not may_be_empty[value]:
                    leftmost = False
            elif kind in (END, ALT):
                leftmost = True
            else:
                leftmost = False
        in_progress[i] = False
        visited[i] = True
        return None

    for i in range(n):
        if not visited[i]:
            found = visit(i)
            if found is not None:
                return found
    return None


def _char_text(c: int, in_class: bool) -> str:
    special = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r", 0x5C: "\\\\", 0x22: '\\"'}
    if in_class:
        special.update({0x5B: "\\[", 0x5D: "\\]", 0x2D: "\\-", 0x5E: "\\^"})
    if c in special:
        return special[c]
    if c < 0x20 or c == 0x7F:
        return f"\\x{c:02X}"
    if 0xD800 <= c <= 0xDFFF or c > 0x10FFFF:
        return f"\\U{c:08X}"
    return chr(c)


def format_rules(g: Grammar) -> str:
    """The rules back as GBNF text, one line per rule (generated rules included), like llama.cpp's print."""
    lines = []
    for rid, rule in enumerate(g.rules):
        parts, i = [], 0
        while i < len(rule) - 1:
            kind, value = rule[i]
            if kind == ALT:
                parts.append("|")
            elif kind == RULE_REF:
                parts.append(g.names[value])
            elif kind in (TOKEN, TOKEN_NOT):
                ref = g.token_texts[-value - 1] if value < 0 else f"<[{value}]>"
                parts.append(("!" if kind == TOKEN_NOT else "") + ref)
            elif kind == CHAR_ANY:
                parts.append(".")
            else:  # a character class: CHAR / CHAR_NOT then CHAR_ALT / CHAR_RNG_UPPER elements
                out = "[^" if kind == CHAR_NOT else "["
                out += _char_text(value, True)
                while rule[i + 1][0] in (CHAR_ALT, CHAR_RNG_UPPER):
                    i += 1
                    k2, v2 = rule[i]
                    out += ("-" if k2 == CHAR_RNG_UPPER else "") + _char_text(v2, True)
                parts.append(out + "]")
            i += 1
        lines.append(f"{g.names[rid]} ::= {' '.join(parts)}".rstrip())
    return "\n".join(lines) + "\n"
