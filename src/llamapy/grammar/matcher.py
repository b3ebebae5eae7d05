"""Grammar matching with llama.cpp's semantics: a set of pushdown stacks of rule positions.

    cg = CompiledGrammar(parse_gbnf(text))
    cg.match_string("1+2=3\\n")                     # the whole text is in the language
    m = GrammarMatcher(cg, TokenTable.of(tokenizer))
    m.accepts(token) -> bool                         # would this token keep the output in the language?
    m.allowed_mask() -> bool array over the vocab   # every such token at once
    m.accept(token)                                  # advance past the token

A stack is a tuple of element positions (bottom .. top); after advancing, every top is a terminal (a
character class or a token). A token is allowed iff its bytes, decoded as UTF-8 (continuing a character
left unfinished by earlier tokens), can be consumed from at least one stack; a trailing unfinished
character must be able to complete into something the grammar accepts there. End-of-generation tokens are
allowed only when some stack is empty (the grammar can end).

``allowed_mask`` is the fast path for the sampler. It walks the whole vocabulary at once with numpy, one
code-point column at a time: the tokens still alive under a stack are tested against the stack's top class
in one vectorised lookup, and all survivors move on together, because the stacks that follow a matched
class do not depend on which character matched (llama.cpp's reject_candidates idea, over a column-major
code-point table built once per vocabulary instead of a per-token recursion).
"""
from __future__ import annotations

import weakref
from collections import OrderedDict

import numpy as np

from .gbnf import (
    ALT, CHAR, CHAR_ALT, CHAR_ANY, CHAR_NOT, CHAR_RNG_UPPER, END, RULE_REF, TOKEN, TOKEN_NOT, Grammar,
    GrammarError, parse_gbnf,
)

__all__ = ["CompiledGrammar", "TokenTable", "GrammarMatcher", "decode_utf8", "GrammarStateError"]

NO_PARTIAL = (0, 0)          # (value so far, bytes still expected) of an unfinished UTF-8 character
_UTF8_LEN = (1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 3, 4)   # by the lead byte's high nibble; 0 = invalid lead
_MASK_CACHE = 128            # allowed masks remembered per grammar state


class GrammarStateError(RuntimeError):
    """A token was accepted that the grammar does not allow, or the grammar allows nothing more."""


def decode_utf8(data: bytes, partial: tuple[int, int] = NO_PARTIAL) -> tuple[list[int], tuple[int, int]]:
    """Code points of ``data`` continuing ``partial``, and the unfinished character at its end.

    llama.cpp's decoder: bytes after a NUL are ignored; a missing continuation byte or a stray one where a
    character should start makes the whole piece invalid: ``([], (0, -1))``. Continuation bytes of a
    character started inside the piece are not checked (only masked), as in llama.cpp.
    """
    nul = data.find(0)
    if nul >= 0:
        data = data[:nul]
    value, n_remain = partial
    i, n = 0, len(data)
    cps: list[int] = []
    while i < n and n_remain > 0:
        b = data[i]
        if b >> 6 != 2:
            return [], (0, -1)
        value = (value << 6) + (b & 0x3F)
        i += 1
        n_remain -= 1
    if partial[1] > 0 and n_remain == 0:
        cps.append(value)
    while i < n:
        b = data[i]
        n_remain = _UTF8_LEN[b >> 4] - 1
        if n_remain < 0:
            return [], (0, -1)
        value = b & ((1 << (7 - n_remain)) - 1)
        i += 1
        while i < n and n_remain > 0:
            value = (value << 6) + (data[i] & 0x3F)
            i += 1
            n_remain -= 1
        if n_remain == 0:
            cps.append(value)
    return cps, (value, n_remain)


class _CharClass:
    """One character class of the grammar (a literal character is a one-character class)."""

    __slots__ = ("positive", "any", "ranges", "bounds", "end")

    def __init__(self, kinds, values, start: int):
        self.positive = kinds[start] in (CHAR, CHAR_ANY)
        self.any = False
        ranges = []
        p = start
        while True:
            if kinds[p] == CHAR_ANY:
                self.any = True
                p += 1
            elif kinds[p + 1] == CHAR_RNG_UPPER:
                ranges.append((values[p], values[p + 1]))
                p += 2
            else:
                ranges.append((values[p], values[p]))
                p += 1
            if kinds[p] != CHAR_ALT:
                break
        self.ranges = ranges
        self.end = p   # the element after the class
        merged: list[list[int]] = []
        for lo, hi in sorted(ranges):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        # [lo0, hi0 + 1, lo1, hi1 + 1, ...]: a code point is inside iff searchsorted(right) is odd
        self.bounds = np.array([x for lo, hi in merged for x in (lo, hi + 1)], np.int64)

    def match(self, c: int) -> bool:
        found = self.any or any(lo <= c <= hi for lo, hi in self.ranges)
        return found == self.positive

    def match_many(self, cps: np.ndarray) -> np.ndarray:
        if self.any:
            return np.ones(cps.shape, bool)
        inside = (np.searchsorted(self.bounds, cps, side="right") & 1).astype(bool)
        return inside if self.positive else ~inside

    def match_partial(self, value: int, n_remain: int) -> bool:
        """Whether some completion of an unfinished character could match (llama.cpp's test, which is
        conservative for negated classes)."""
        if n_remain < 0 or (n_remain == 1 and value < 2):  # invalid, or an overlong 2-byte form
            return False
        low = value << (6 * n_remain)
        high = low | ((1 << (6 * n_remain)) - 1)
        if low == 0:
            low = {2: 1 << 11, 3: 1 << 16}.get(n_remain, low)
        if self.any:
            return True
        for lo, hi in self.ranges:
            if lo <= high and low <= hi:
                return self.positive
        return not self.positive


class CompiledGrammar:
    """A parsed grammar flattened into one element array, with cached stack transitions.

    ``token_ids``: the ids of the grammar's ``<text>`` token references, looked up in a vocabulary
    (see :meth:`TokenTable.resolve`); without them such references match nothing.
    """

    def __init__(self, grammar: Grammar | str, token_ids: list[int] | None = None):
        if isinstance(grammar, str):
            grammar = parse_gbnf(grammar)
        self.grammar = grammar
        kinds, values, starts = [], [], []
        for rule in grammar.rules:
            starts.append(len(kinds))
            for kind, value in rule:
                if kind in (TOKEN, TOKEN_NOT) and value < 0:
                    value = token_ids[-value - 1] if token_ids else -1
                kinds.append(kind)
                values.append(value)
        self.kinds, self.values = kinds, values
        # the start of every alternative of every rule
        self.alternatives = []
        for rid, rule in enumerate(grammar.rules):
            alts, p = [starts[rid]], starts[rid]
            while kinds[p] != END:
                if kinds[p] == ALT:
                    alts.append(p + 1)
                p += 1
            self.alternatives.append(alts)
        self.classes = {p: _CharClass(kinds, values, p) for p, k in enumerate(kinds)
                        if k in (CHAR, CHAR_NOT, CHAR_ANY)}
        self._advanced: dict[tuple, tuple] = {}
        self._after: dict[tuple, tuple] = {}
        self._steps: dict[tuple, tuple] = {}
        self.initial_stacks = self._advance_all([(p,) if not self._eos(p) else ()
                                                 for p in self.alternatives[grammar.root]])

    def _eos(self, p: int) -> bool:
        return self.kinds[p] in (END, ALT)

    def is_token(self, p: int) -> bool:
        return self.kinds[p] in (TOKEN, TOKEN_NOT)

    def match_token(self, p: int, token: int) -> bool:
        return (self.values[p] == token) == (self.kinds[p] == TOKEN)

    # -- stack transitions (cached) ---------------------------------------------------------------

    def advance(self, stack: tuple) -> tuple:
        """Expand rule references on top until every stack ends in a terminal (or is empty)."""
        done = self._advanced.get(stack)
        if done is not None:
            return done
        kinds, values = self.kinds, self.values
        out: dict[tuple, None] = {}
        todo, seen = [stack], set()
        while todo:
            st = todo.pop()
            if st in seen:
                continue
            seen.add(st)
            if not st or kinds[st[-1]] != RULE_REF:
                out[st] = None
                continue
            p = st[-1]
            base = st[:-1] if self._eos(p + 1) else st[:-1] + (p + 1,)
            for sub in self.alternatives[values[p]]:
                todo.append(base if self._eos(sub) else base + (sub,))
        done = self._advanced[stack] = tuple(out)
        return done

    def _advance_all(self, stacks) -> tuple:
        out: dict[tuple, None] = {}
        for st in stacks:
            out.update(dict.fromkeys(self.advance(st)))
        return tuple(out)

    def after(self, stack: tuple) -> tuple:
        """The stacks that follow once the character class on top has matched (whichever character)."""
        done = self._after.get(stack)
        if done is None:
            end = self.classes[stack[-1]].end
            done = self._after[stack] = self.advance(stack[:-1] if self._eos(end) else stack[:-1] + (end,))
        return done

    def after_token(self, stack: tuple) -> tuple:
        p = stack[-1]
        return self.advance(stack[:-1] if self._eos(p + 1) else stack[:-1] + (p + 1,))

    def step(self, stack: tuple, c: int) -> tuple:
        """Stacks after consuming code point ``c`` from ``stack`` (none if it does not match)."""
        key = (stack, c)
        done = self._steps.get(key)
        if done is None:
            if not stack or self.is_token(stack[-1]) or not self.classes[stack[-1]].match(c):
                done = ()
            else:
                done = self.after(stack)
            if len(self._steps) > 200_000:
                self._steps.clear()
            self._steps[key] = done
        return done

    def consume(self, stacks, cps) -> tuple:
        for c in cps:
            nxt: dict[tuple, None] = {}
            for st in stacks:
                nxt.update(dict.fromkeys(self.step(st, c)))
            stacks = tuple(nxt)
            if not stacks:
                break
        return tuple(stacks)

    def match_string(self, text: str) -> bool:
        """Whether the whole ``text`` is in the grammar's language."""
        return any(not st for st in self.consume(self.initial_stacks, map(ord, text)))

    def match_prefix(self, text: str) -> bool:
        """Whether ``text`` can be continued into something in the language."""
        return bool(self.consume(self.initial_stacks, map(ord, text)))


class _Decoded:
    """Tokens decoded under one UTF-8 carry-in state, laid out for column-wise matching.

    ``ids[r]`` is row r's token; ``n_cp[r]`` its number of complete code points; ``cid_t[d, r]`` the index
    in ``chars`` (the distinct code points) of its d-th code point (0 past the end, a slot no class
    matches); ``rem``/``val``: the unfinished character at its end (rem -1: invalid piece).
    """

    def __init__(self, ids: list[int], decoded: list[tuple[list[int], tuple[int, int]]]):
        n = len(ids)
        self.ids = np.asarray(ids, np.int64)
        self.n_cp = np.array([len(c) for c, _ in decoded], np.int32)
        self.val = np.array([p[0] for _, p in decoded], np.int64)
        self.rem = np.array([p[1] for _, p in decoded], np.int8)
        width = int(self.n_cp.max()) + 1 if n else 1
        slot = {-1: 0}                                    # code point -> index in chars; 0: the padding
        cid_t = np.zeros((width, n), np.int32)
        for r, (c, _) in enumerate(decoded):
            if c:
                cid_t[:len(c), r] = [slot.setdefault(x, len(slot)) for x in c]
        self.chars = np.fromiter(slot, np.int64, len(slot))
        self.cid_t = cid_t.astype(np.uint16) if len(slot) <= 1 << 16 else cid_t
        self.started = np.flatnonzero(self.n_cp > 0)                      # rows with a first code point
        self.unfinished = np.flatnonzero((self.n_cp == 0) & (self.rem > 0))  # only an unfinished character

    def lookup(self, classes) -> np.ndarray:
        """Bool table over ``chars``: matched by any of the classes (the padding slot never matches)."""
        hit = np.zeros(self.chars.size, bool)
        for cls in classes:
            hit |= cls.match_many(self.chars)
        hit[self.chars < 0] = False
        return hit


class TokenTable:
    """Per-vocabulary data for grammar matching, built once per tokenizer (``TokenTable.of``).

    Pieces are the tokens' bytes with special tokens rendered as text, as llama.cpp's token_to_piece
    cache. Tokens with an empty piece or a leading NUL byte are never allowed; end-of-generation tokens
    are decided by the grammar's ability to end, not by their text.
    """

    _cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, tokenizer) -> "TokenTable":
        table = cls._cache.get(tokenizer)
        if table is None:
            table = cls._cache[tokenizer] = cls(tokenizer)
        return table

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        n = self.n_vocab = tokenizer.n_vocab
        self.pieces = [tokenizer.token_to_piece(t, special=True) for t in range(n)]
        self.eog = np.zeros(n, bool)
        self.eog_ids = sorted(tokenizer.vocab.eog_ids)
        self.eog[self.eog_ids] = True
        text_ids = [t for t in range(n) if not self.eog[t] and self.pieces[t][:1] not in (b"", b"\0")]
        self.text_ids = text_ids
        self.base = _Decoded(text_ids, [decode_utf8(self.pieces[t]) for t in text_ids])
        # leading continuation bytes (capped at 3): who can finish a character left open by the last token
        self._lead_cont = np.array([_count_continuation(self.pieces[t]) for t in text_ids], np.int8)
        self._carry: OrderedDict = OrderedDict()

    def decoded(self, partial: tuple[int, int]) -> _Decoded:
        """The table for a carry-in state; with a character left open only tokens that continue it can
        be valid, so only those are decoded (a few hundred, cached per state)."""
        if partial[1] <= 0:
            return self.base
        table = self._carry.get(partial)
        if table is None:
            need = partial[1]
            ids = [t for t, lead, piece in zip(self.text_ids, self._lead_cont, self._text_pieces())
                   if lead >= min(need, len(piece))]
            table = _Decoded(ids, [decode_utf8(self.pieces[t], partial) for t in ids])
            self._carry[partial] = table
            if len(self._carry) > 64:
                self._carry.popitem(last=False)
        else:
            self._carry.move_to_end(partial)
        return table

    def _text_pieces(self):
        return (self.pieces[t] for t in self.text_ids)

    def resolve(self, grammar: Grammar) -> list[int]:
        """Ids of the grammar's ``<text>`` token references: each must be exactly one token."""
        ids = []
        for text in grammar.token_texts:
            found = self.tokenizer.encode(text, add_special=False, parse_special=True)
            if len(found) != 1:
                raise GrammarError(f"token reference {text} is not a single token in this vocabulary")
            ids.append(found[0])
        return ids


def _count_continuation(piece: bytes) -> int:
    k = 0
    for b in piece[:3]:
        if b >> 6 != 2:
            break
        k += 1
    return k


class GrammarMatcher:
    """A grammar's state while generating with one vocabulary (llama.cpp's llama_grammar)."""

    def __init__(self, grammar: Grammar | str, tokenizer=None, table: TokenTable | None = None):
        if isinstance(grammar, str):
            grammar = parse_gbnf(grammar)
        self.table = table or TokenTable.of(tokenizer)
        self.compiled = CompiledGrammar(grammar, self.table.resolve(grammar))
        self._luts: dict = {}                    # (carry-in state, class positions) -> lookup table
        self._masks: OrderedDict = OrderedDict()  # (stacks, carry-in) -> allowed mask
        self.reset()

    def reset(self) -> None:
        self.stacks = self.compiled.initial_stacks
        self.partial = NO_PARTIAL

    @property
    def can_end(self) -> bool:
        return any(not st for st in self.stacks)

    # -- one token --------------------------------------------------------------------------------

    def accepts(self, token: int) -> bool:
        """Whether ``token`` may come next (the single-candidate check done before any full mask)."""
        table, cg = self.table, self.compiled
        if table.eog[token]:
            return self.can_end
        piece = table.pieces[token]
        if piece[:1] in (b"", b"\0"):
            return False
        cps, partial = decode_utf8(piece, self.partial)
        if partial[1] < 0:
            return False
        stacks = self.stacks
        if cps:
            for st in stacks:  # a token element on top matches the whole token by id
                if st and cg.is_token(st[-1]) and cg.match_token(st[-1], token):
                    return True
            stacks = cg.consume(stacks, cps)
            if not stacks:
                return False
        if partial[1] == 0:
            return True
        return any(st and not cg.is_token(st[-1]) and cg.classes[st[-1]].match_partial(*partial)
                   for st in stacks)

    def accept(self, token: int) -> None:
        """Advance past ``token``; raises :class:`GrammarStateError` if the grammar does not allow it."""
        table, cg = self.table, self.compiled
        if table.eog[token]:
            if not self.can_end:
                raise GrammarStateError(f"end of generation (token {token}) before the grammar is complete")
            return
        cps, partial = decode_utf8(table.pieces[token], self.partial)
        out: dict[tuple, None] = {}
        for st in self.stacks:
            if not st:
                continue
            if cg.is_token(st[-1]):
                if cg.match_token(st[-1], token):
                    out.update(dict.fromkeys(cg.after_token(st)))
            else:
                out.update(dict.fromkeys(cg.consume((st,), cps)))
        if not out:
            piece = table.pieces[token].decode("utf-8", errors="replace")
            raise GrammarStateError(f"token {token} ({piece!r}) is not allowed by the grammar here")
        self.stacks, self.partial = tuple(out), partial

    # -- every token ------------------------------------------------------------------------------

    def allowed_mask(self) -> np.ndarray:
        """Bool mask over the vocabulary: the tokens that may come next. Do not modify it (it is cached)."""
        key = (self.stacks, self.partial)
        mask = self._masks.get(key)
        if mask is not None:
            self._masks.move_to_end(key)
            return mask
        table = self.table
        dec = table.decoded(self.partial)
        rows = self._allowed_rows(dec, self.partial)
        mask = np.zeros(table.n_vocab, bool)
        mask[dec.ids[rows]] = True
        if self.can_end:
            mask[table.eog_ids] = True
        mask.flags.writeable = False
        self._masks[key] = mask
        if len(self._masks) > _MASK_CACHE:
            self._masks.popitem(last=False)
        return mask

    def _lookup(self, dec: _Decoded, partial, positions: frozenset) -> np.ndarray:
        key = (partial, positions)
        lut = self._luts.get(key)
        if lut is None:
            lut = self._luts[key] = dec.lookup([self.compiled.classes[p] for p in positions])
        return lut

    def _allowed_rows(self, dec: _Decoded, partial) -> np.ndarray:
        """Rows of ``dec`` that may come next. Stacks sharing a row set and a continuation are tested
        together, with one lookup table for the union of their classes."""
        cg = self.compiled
        ok = np.zeros(dec.ids.size, bool)
        first = []
        for st in self.stacks:
            if not st:
                continue                   # nothing but end of generation fits an empty stack
            p = st[-1]
            if cg.is_token(p):             # a token element matches whole tokens by id
                same = dec.ids == cg.values[p]
                ok |= (same if cg.kinds[p] == TOKEN else ~same) & (dec.n_cp > 0)
                continue
            first.append(st)
            cls = cg.classes[p]
            for r in dec.unfinished:       # tokens that are only the start of a character
                if not ok[r] and cls.match_partial(int(dec.val[r]), int(dec.rem[r])):
                    ok[r] = True
        groups = [(dec.started, first)] if first else []
        depth = 0
        while groups:
            following: dict[tuple, list] = {}
            for rows, stacks in groups:
                if depth:
                    ended = dec.n_cp[rows] == depth
                    if ended.any():
                        done, rows = rows[ended], rows[~ended]
                        rem = dec.rem[done]
                        ok[done[rem == 0]] = True       # fully consumed: fine under any stack
                        for r in done[rem > 0]:         # ends inside a character: can it complete?
                            ok[r] = ok[r] or any(st and not cg.is_token(st[-1]) and
                                                 cg.classes[st[-1]].match_partial(int(dec.val[r]), int(dec.rem[r]))
                                                 for st in stacks)
                if not rows.size:
                    continue
                by_next: dict[tuple, set] = {}
                for st in stacks:
                    if st and not cg.is_token(st[-1]):  # a token element cannot match mid-token
                        by_next.setdefault(cg.after(st), set()).add(st[-1])
                if not by_next:
                    continue
                cids = dec.cid_t[depth, rows]
                for nexts, positions in by_next.items():
                    keep = rows[self._lookup(dec, partial, frozenset(positions))[cids]]
                    if keep.size:
                        for nxt in nexts:
                            following.setdefault(nxt, []).append(keep)
            groups = self._regroup(following, dec.ids.size)
            depth += 1
        return np.flatnonzero(ok)

    @staticmethod
    def _regroup(following: dict, n: int) -> list:
        """Merge each stack's row sets, then gather the stacks that ended up with the same rows (stacks fed
        by the same sets share one merged array)."""
        by_parts: dict[tuple, tuple] = {}
        for st, parts in following.items():
            key = tuple(id(part) for part in parts)
            entry = by_parts.get(key)
            if entry is None:
                if len(parts) == 1:
                    rows = parts[0]
                else:
                    seen = np.zeros(n, bool)
                    for part in parts:
                        seen[part] = True
                    rows = np.flatnonzero(seen)
                by_parts[key] = (rows, [st])
            else:
                entry[1].append(st)
        return list(by_parts.values())
