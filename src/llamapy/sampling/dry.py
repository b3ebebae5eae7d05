"""DRY ("don't repeat yourself"), as llama.cpp's ``llama_sampler_init_dry`` does it.

A token that would extend a sequence already seen in the last ``penalty_last_n`` tokens by one more token gets
``multiplier * base ** (L - allowed_length)`` subtracted from its logit, where L is the length of the longest
such repeat (L >= allowed_length). Sequence breakers (strings such as "\\n" or ":") stop a repeat from reaching
back past them. Each breaker string is turned into token sequences once, per vocabulary:

* every token whose text contains the whole string is a one-token breaker (never penalised itself, and it
  cuts repeats);
* every token whose text *ends* with a proper prefix of the string is the head of a multi-token breaker whose
  tail is the tokenization of the rest of the string (at most 20 tokens; strings are cut to 40 bytes).

Repeats are found with the Z-algorithm run backwards over the history (llama.cpp's code, ported from
koboldcpp). Arithmetic follows the C code: ``penalty = float(multiplier * pow(base, exponent))`` in double,
subtracted in float; the exponent is clamped to ``int(88.7228391f / logf(base))``.
"""
from __future__ import annotations

import math
import weakref
from collections import deque

import numpy as np

from .samplers import Candidates, Sampler_

__all__ = ["Dry", "DEFAULT_SEQUENCE_BREAKERS", "dry_enabled", "process_breakers"]

F32 = np.float32
DEFAULT_SEQUENCE_BREAKERS = ("\n", ":", '"', "*")
MAX_CHAR_LEN = 40     # breaker strings are cut to this many bytes
MAX_SEQ_LEN = 20      # tails are cut to this many tokens
_FLOAT_MAX_LOG = F32(88.7228391)


def dry_enabled(multiplier: float, base: float, penalty_last_n: int) -> bool:
    """llama.cpp builds an empty placeholder instead of DRY unless this holds."""
    return F32(multiplier) != 0 and F32(base) >= 1 and max(int(penalty_last_n), 0) != 0


# ----------------------------------------------------------------------------- sequence breakers

# per tokenizer: the text of every token (vocab.detokenize({id}, special=true)), and processed breaker sets
_PIECES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_PROCESSED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _token_texts(tokenizer) -> list[bytes]:
    pieces = _PIECES.get(tokenizer)
    if pieces is None:
        pieces = [tokenizer.detokenize([t], unparse_special=True) for t in range(tokenizer.n_vocab)]
        _PIECES[tokenizer] = pieces
    return pieces


def _overlapping_sequences(tokenizer, pieces: list[bytes], s: bytes, out: dict[int, list[tuple]]) -> None:
    """``get_overlapping_token_sequences``: add (head token -> tail) entries for breaker bytes ``s``."""
    first = s[:1]
    for tid, word in enumerate(pieces):
        if s in word:
            out.setdefault(tid, []).append(())
            continue
        if first not in word:
            continue
        # every position where the word's remainder is a (proper) prefix of s: the rest of s is the tail
        pos = word.find(first)
        while pos >= 0:
            rest = word[pos:]
            if s.startswith(rest):
                tail = tuple(tokenizer.encode(s[len(rest):].decode("utf-8", errors="replace"),
                                              add_special=False, parse_special=False)[:MAX_SEQ_LEN])
                seqs = out.setdefault(tid, [])
                if tail not in seqs:
                    seqs.append(tail)
            pos = word.find(first, pos + 1)


def process_breakers(tokenizer, breakers) -> dict[int, tuple[tuple[int, ...], ...]]:
    """Head token -> tails (``()`` for a one-token breaker) for the breaker strings, over the whole
    vocabulary. Empty strings are skipped; strings are cut to 40 bytes. Cached per tokenizer."""
    key = tuple(breakers)
    strings = [b.encode("utf-8")[:MAX_CHAR_LEN] for b in key if b]
    if not strings:
        return {}
    cache = _PROCESSED.setdefault(tokenizer, {})
    if key in cache:
        return cache[key]
    out: dict[int, list[tuple]] = {}
    if strings:
        pieces = _token_texts(tokenizer)
        for s in strings:
            _overlapping_sequences(tokenizer, pieces, s, out)
    result = {t: tuple(v) for t, v in out.items()}
    cache[key] = result
    return result


# ----------------------------------------------------------------------------- the sampler

class Dry(Sampler_):
    """``Dry(multiplier, base, allowed_length, penalty_last_n, breakers)``; ``breakers`` maps head tokens to
    tails, as :func:`process_breakers` returns (or :meth:`from_strings` builds it from a tokenizer)."""

    name = "dry"

    def __init__(self, multiplier: float, base: float, allowed_length: int, penalty_last_n: int,
                 breakers: dict | None = None):
        self.multiplier = F32(multiplier)
        self.base = F32(base)
        self.allowed_length = int(allowed_length)
        self.penalty_last_n = max(int(penalty_last_n), 0)
        self.breakers = {int(k): tuple(tuple(int(t) for t in tail) for tail in v)
                         for k, v in (breakers or {}).items()}
        self._single = frozenset(t for t, tails in self.breakers.items() if () in tails)
        self._last: deque[int] = deque(maxlen=self.penalty_last_n or None)
        max_exp = 0
        if self.base > F32(1.000001):
            log_base = F32(math.log(float(self.base)))
            max_exp = int(F32(_FLOAT_MAX_LOG / log_base))
        self._max_exponent = max_exp

    @classmethod
    def from_strings(cls, multiplier, base, allowed_length, penalty_last_n, breakers, tokenizer) -> "Dry":
        table = process_breakers(tokenizer, breakers) if dry_enabled(multiplier, base, penalty_last_n) else {}
        return cls(multiplier, base, allowed_length, penalty_last_n, table)

    @property
    def enabled(self) -> bool:
        return self.multiplier != 0 and self.base >= 1 and self.penalty_last_n != 0

    def accept(self, token):
        if self.enabled:
            self._last.append(int(token))

    def reset(self):
        self._last.clear()

    def history(self) -> list[int]:
        return list(self._last)

    def max_repeats(self) -> dict[int, int] | None:
        """Token -> length of the longest repeat it would extend (only lengths >= allowed_length); None where
        llama.cpp returns early (history too short, or a breaker closer than allowed_length)."""
        hist = self._last
        n = min(len(hist), self.penalty_last_n)
        allowed = self.allowed_length
        if n <= allowed:
            return None
        # rat(i) = i-th token from the end
        rev = [hist[-1 - i] for i in range(n)]

        # 1. the closest complete sequence breaker limits how far back a repeat may reach
        rep_limit = n
        for i in range(n):
            tails = self.breakers.get(rev[i])
            if tails is None:
                continue
            longest = -1
            for tail in tails:
                m = len(tail)
                if longest < m <= i and all(tail[o] == rev[i - o - 1] for o in range(m)):
                    longest = m
            if longest >= 0:
                rep_limit = i - longest
                break
        if rep_limit < allowed:
            return None

        # 2. Z-algorithm over the reversed history: count[last - k] = length of the match of the most
        # recent tokens with the tokens ending k positions back, capped at rep_limit
        count = [0] * n
        last = n - 1
        lt = rt = 0
        for k in range(1, n):
            if k > rt:
                m = 0
                while m + k < n and rev[m] == rev[m + k]:
                    m += 1
                count[last - k] = min(m, rep_limit)
                if m > 0:
                    lt, rt = k, k + m - 1
            else:
                p = k - lt
                right_len = rt - k + 1
                if count[last - p] < right_len:
                    count[last - k] = min(count[last - p], rep_limit)
                else:
                    i = rt + 1
                    while i < n and rev[i] == rev[i - k]:
                        i += 1
                    count[last - k] = min(i - k, rep_limit)
                    lt, rt = k, i - 1

        # 3. the token after each repeat would extend it
        best: dict[int, int] = {}
        for i in range(n - 1):
            length = count[i]
            if length >= allowed:
                tok = rev[n - 2 - i]
                if best.get(tok, -1) < length:
                    best[tok] = length
        return best

    def penalty(self, length: int) -> np.float32:
        """float(multiplier * pow(base, exponent)) in double, as the C++ (float * std::pow(float, int))."""
        exp = length - self.allowed_length
        if self._max_exponent > 0 and exp > self._max_exponent:
            exp = self._max_exponent
        return F32(float(self.multiplier) * math.pow(float(self.base), exp))

    def apply(self, cur: Candidates) -> None:
        if not self.enabled:
            return
        best = self.max_repeats()
        if best is None:
            return  # llama.cpp returns before touching the array (its sorted flag stays)
        toks = [t for t in best if t not in self._single]  # one-token breakers are never penalised
        if toks:
            if cur.identity:
                pos = [t for t in toks if 0 <= t < cur.size]
            else:
                pos = np.flatnonzero(np.isin(cur.ids, np.array(toks, np.int64))).tolist()
            for i in pos:
                cur.logits[i] = F32(cur.logits[i] - self.penalty(best[int(cur.ids[i])]))
        cur.sorted = False
