"""The decode loop of the Python API (:class:`llamapy.Llama`).

    gen = Generation(model, tokenizer, sampler, prompt_ids, max_tokens=128, stop=["\\n\\n"])
    for step in gen:                 # prefill, then forward -> sample -> accept -> detokenize -> stop checks
        print(step.text, end="")     # UTF-8-safe text released by this token (stop strings held back)
    gen.finish_reason                # "stop" (end-of-generation token or stop string), "length", "context"
    gen.stats                        # timings, llama_perf_context_print-style

It works like llama-completion without context shift: the prompt fills positions 0..n-1 (its tokens are
also accepted into the sampler's penalty history), every generated token is evaluated at the next position,
and generation stops before an evaluation would reach the end of the context (``n_past + 1 >= n_ctx``).
llamapy-cli runs llama-completion's whole loop instead (llamapy.cli.session: interactive and conversation
modes, context shift, prompt cache); both produce the same tokens for a plain completion.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from llamapy.logprobs import TokenProbs, token_probs

__all__ = ["Generation", "GenStats", "Step", "StopMatcher", "PromptTooLong", "format_perf"]


class PromptTooLong(ValueError):
    """The prompt does not leave room in the context."""


@dataclass
class GenStats:
    """Wall-clock timings of one generation, in milliseconds (load_ms is filled in by the caller)."""

    load_ms: float = 0.0
    prompt_ms: float = 0.0
    n_prompt: int = 0          # prompt tokens evaluated
    eval_ms: float = 0.0
    n_eval: int = 0            # single-token evaluations after the prompt
    sample_ms: float = 0.0
    n_sample: int = 0
    total_ms: float = 0.0
    t_start: float = field(default_factory=time.perf_counter)

    def finish(self) -> "GenStats":
        self.total_ms = (time.perf_counter() - self.t_start) * 1e3 + self.load_ms
        return self


def _rate(ms: float, n: int) -> tuple[float, float]:
    per = ms / n if n else float("nan")
    return per, (1e3 * n / ms if ms > 0 else float("inf") if n else float("nan"))


def format_perf(stats: GenStats, prefix: str = "common_perf_print") -> list[str]:
    """llama.cpp's end-of-run timing lines (common_perf_print / llama_perf_context_print layout)."""
    p = f"{prefix}: "
    pp_per, pp_tps = _rate(stats.prompt_ms, stats.n_prompt)
    ev_per, ev_tps = _rate(stats.eval_ms, stats.n_eval)
    sm_per, sm_tps = _rate(stats.sample_ms, stats.n_sample)
    total = stats.total_ms
    unaccounted = total - stats.sample_ms - stats.prompt_ms - stats.eval_ms - stats.load_ms
    return [
        f"{p}   sampling time = {stats.sample_ms:10.2f} ms / {stats.n_sample:5d} runs   "
        f"({sm_per:8.2f} ms per token, {sm_tps:8.2f} tokens per second)",
        f"{p}       load time = {stats.load_ms:10.2f} ms",
        f"{p}prompt eval time = {stats.prompt_ms:10.2f} ms / {stats.n_prompt:5d} tokens "
        f"({pp_per:8.2f} ms per token, {pp_tps:8.2f} tokens per second)",
        f"{p}       eval time = {stats.eval_ms:10.2f} ms / {stats.n_eval:5d} runs   "
        f"({ev_per:8.2f} ms per token, {ev_tps:8.2f} tokens per second)",
        f"{p}      total time = {total:10.2f} ms / {stats.n_prompt + stats.n_eval:5d} tokens",
        f"{p}unaccounted time = {unaccounted:10.2f} ms / {100 * unaccounted / total if total else 0:5.1f} %"
        "      (total - sampling - prompt eval - eval - load) / (total)",
    ]


class StopMatcher:
    """Finds stop strings in streamed text, holding back a tail that could still become one.

    ``push(text) -> (releasable, stopped)``: text safe to show now, and whether a stop string was found
    (everything from it on is dropped). ``flush()`` returns what was held back when the stream ends.
    """

    def __init__(self, stop=()):
        if isinstance(stop, str):
            stop = [stop]
        self.stop = [s for s in (stop or ()) if s]
        self._pending = ""

    def push(self, text: str) -> tuple[str, bool]:
        if not self.stop:
            return text, False
        buf = self._pending + text
        first = min((i for i in (buf.find(s) for s in self.stop) if i >= 0), default=-1)
        if first >= 0:
            self._pending = ""
            return buf[:first], True
        hold = 0
        for s in self.stop:  # longest suffix of buf that is a proper prefix of a stop string
            for n in range(min(len(s) - 1, len(buf)), hold, -1):
                if buf.endswith(s[:n]):
                    hold = n
                    break
        self._pending = buf[len(buf) - hold:] if hold else ""
        return buf[:len(buf) - hold], False

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out


@dataclass
class Step:
    """One generated token (``token`` None for the final flush), the text it releases and, with ``n_probs``,
    the log probabilities of the tokens whose text starts in it."""

    token: int | None
    text: str
    probs: tuple | list = ()


class Generation:
    """Iterate to generate. Attributes after (or during) iteration: ``tokens`` (generated ids, the
    end-of-generation token included when one ended it), ``text`` (released text), ``finish_reason``,
    ``stats``, ``n_prompt``.

    max_tokens < 0: until an end-of-generation token or the context is full. ``stop_on_eog`` False keeps
    going past EOS (``--ignore-eos`` normally makes EOS unsamplable instead). ``special``: render control
    tokens in the text. ``n_probs`` (None: off, no cost): record every completion token's log probability
    and the ``n_probs`` most likely tokens' (``logprobs``; llamapy.logprobs), released with its text: the
    end-of-generation token and the tokens of a stop string are not part of the completion.
    """

    def __init__(self, model, tokenizer, sampler, prompt_ids, *, max_tokens: int = -1, stop=(),
                 accept_prompt: bool = True, special: bool = False, stats: GenStats | None = None,
                 n_ctx: int | None = None, stop_on_eog: bool = True, n_probs: int | None = None):
        self.model, self.tokenizer, self.sampler = model, tokenizer, sampler
        self.prompt = [int(t) for t in prompt_ids]
        self.n_ctx = int(n_ctx or model.n_ctx)
        if not self.prompt:
            raise ValueError("input is empty")
        n_vocab = model.n_vocab
        bad = [t for t in self.prompt if not 0 <= t < n_vocab]
        if bad:
            raise ValueError(f"prompt token id {bad[0]} out of range [0, {n_vocab})")
        if len(self.prompt) >= self.n_ctx:
            raise PromptTooLong(f"Requested tokens ({len(self.prompt)}) exceed context window of {self.n_ctx}")
        self.max_tokens = int(max_tokens)
        self.accept_prompt = accept_prompt
        self.stop_on_eog = stop_on_eog
        self.matcher = StopMatcher(stop)
        self.decoder = tokenizer.stream(special=special)
        self.n_probs = None if n_probs is None else int(n_probs)
        self.logprobs: list[TokenProbs] = []      # released with their text
        self._held: list[TokenProbs] = []         # sampled, text not released yet
        self.stats = stats or GenStats()
        self.tokens: list[int] = []
        self.text = ""
        self.finish_reason: str | None = None
        self._iter = self._run()

    @property
    def n_prompt(self) -> int:
        return len(self.prompt)

    def __iter__(self):
        return self._iter

    def __next__(self) -> Step:
        return next(self._iter)

    def run(self) -> str:
        """Generate to the end; returns the text."""
        for _ in self._iter:
            pass
        return self.text

    def _emit(self, token, text) -> Step:
        self.text += text
        return Step(token, text, self._release(len(self.text)) if self._held else ())

    def _release(self, end: int) -> list[TokenProbs]:
        """The held tokens whose text starts before ``end``."""
        n = 0
        while n < len(self._held) and self._held[n].offset < end:
            n += 1
        out, self._held = self._held[:n], self._held[n:]
        self.logprobs += out
        return out

    def _run(self):
        model, sampler, st, clock = self.model, self.sampler, self.stats, time.perf_counter
        if self.accept_prompt:
            for t in self.prompt:
                sampler.accept(t, is_generated=False)
        # one token and one logits row, reused for every step: nothing vocabulary-sized is allocated per token
        step_token = np.empty(1, np.int32)
        step_logits = np.empty((1, model.n_vocab), np.float32)
        t0 = clock()
        logits = model.eval(self.prompt, 0)
        st.prompt_ms += (clock() - t0) * 1e3
        st.n_prompt += len(self.prompt)
        n_past = len(self.prompt)
        eog = self.tokenizer.vocab.eog_ids
        reason = None
        n_chars = 0            # characters decoded so far (released or held by the stop matcher)
        cut = False            # a stop string cut the text
        while True:
            if 0 <= self.max_tokens <= len(self.tokens):
                reason = "length"
                break
            t0 = clock()
            tok = sampler.sample(logits[0])
            sampler.accept(tok)
            st.sample_ms += (clock() - t0) * 1e3
            st.n_sample += 1
            self.tokens.append(tok)
            if tok in eog and self.stop_on_eog:
                reason = "stop"
                break
            piece = self.decoder.feed(tok)
            if self.n_probs is not None:
                tp = token_probs(logits[0], tok, self.n_probs)
                tp.offset = n_chars
                self._held.append(tp)
                n_chars += len(piece)
            text, stopped = self.matcher.push(piece)
            if text:
                yield self._emit(tok, text)
            if stopped:
                reason = "stop"
                self.decoder = None
                cut = True
                break
            if 0 <= self.max_tokens <= len(self.tokens):
                reason = "length"
                break
            if n_past + 1 >= self.n_ctx:   # no room to evaluate it: llama-completion stops here
                reason = "context"
                break
            t0 = clock()
            step_token[0] = tok
            logits = model.eval(step_token, n_past, out=step_logits)
            st.eval_ms += (clock() - t0) * 1e3
            st.n_eval += 1
            n_past += 1
        self.finish_reason = reason
        if self.decoder is not None:
            tail, stopped = self.matcher.push(self.decoder.flush())
            tail += "" if stopped else self.matcher.flush()
            if stopped:
                self.finish_reason = "stop"
                cut = True
            if tail:
                yield self._emit(None, tail)
        if self._held:      # tokens whose text was never released (none, or held back); a stop string's are dropped
            probs = self._release(len(self.text)) if cut else self._release(n_chars + 1)
            self._held = []
            if probs:
                yield Step(None, "", probs)
        st.finish()
