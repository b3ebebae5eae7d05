"""Log probabilities of generated tokens, and the three JSON shapes they are reported in.

    tp = token_probs(logits, token, n=5)     # TokenProbs(token, logprob, top=[(id, logprob), ...])
    completion_logprobs(probs, tok, base)    # llama-cpp-python / OpenAI completions: tokens, text_offset, ...
    chat_logprobs(probs, tok)                # OpenAI chat: logprobs.content = [{token, logprob, bytes, top_logprobs}]
    native_probs(probs, tok)                 # llama-server /completion: completion_probabilities

As llama-cpp-python and llama-server (without post_sampling_probs) report them, a log probability is the
log-softmax of the model's raw logits over the whole vocabulary, before any sampler (penalties, logit bias,
temperature, grammar) touches them. Only computed when a request asks (``Generation(n_probs=...)``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TokenProbs", "token_probs", "completion_logprobs", "chat_logprobs", "native_probs", "completion_n_probs",
           "chat_n_probs", "native_n_probs"]


@dataclass
class TokenProbs:
    """One generated token: its log probability, the ``n`` most likely tokens' (best first) and where its
    text starts in the completion's text (characters)."""

    token: int
    logprob: float
    top: list[tuple[int, float]]
    offset: int = 0


def token_probs(logits: np.ndarray, token: int, n: int) -> TokenProbs:
    """Log-softmax of one logits row (n_vocab,), at ``token`` and at the ``n`` largest logits."""
    x = np.asarray(logits, dtype=np.float64)      # float64: the sum over ~50k exps keeps its digits
    m = x.max()
    lse = m + np.log(np.exp(x - m).sum())
    n = min(int(n), x.shape[0])
    top = np.argpartition(-x, n - 1)[:n] if n > 0 else np.empty(0, np.int64)
    top = top[np.argsort(-x[top], kind="stable")]
    return TokenProbs(int(token), float(x[token] - lse), [(int(i), float(x[i] - lse)) for i in top])


def _piece(tokenizer, token: int) -> bytes:
    return tokenizer.token_to_piece(token)


def _text(piece: bytes) -> str:
    # a token may hold part of a UTF-8 character: its text drops the partial bytes (``bytes`` has them)
    return piece.decode("utf-8", errors="ignore")


def completion_logprobs(probs: list[TokenProbs], tokenizer, base: int = 0) -> dict:
    """llama-cpp-python's ``choices[0].logprobs`` (OpenAI completions): ``top_logprobs`` maps token text to
    log probability and always holds the chosen token; ``base`` is added to every text offset."""
    out = {"tokens": [], "text_offset": [], "token_logprobs": [], "top_logprobs": []}
    for p in probs:
        text = _text(_piece(tokenizer, p.token))
        top = {_text(_piece(tokenizer, i)): lp for i, lp in p.top}
        top[text] = p.logprob
        out["tokens"].append(text)
        out["text_offset"].append(base + p.offset)
        out["token_logprobs"].append(p.logprob)
        out["top_logprobs"].append(top)
    return out


def _entry(tokenizer, token: int, logprob: float, with_id: bool) -> dict:
    piece = _piece(tokenizer, token)
    entry = {"id": token} if with_id else {}
    entry.update(token=_text(piece), logprob=logprob, bytes=list(piece))
    return entry


def chat_logprobs(probs: list[TokenProbs], tokenizer) -> list[dict]:
    """OpenAI chat's ``logprobs.content``: ``[{"token", "logprob", "bytes", "top_logprobs": [...]}]``."""
    return [{**_entry(tokenizer, p.token, p.logprob, False),
             "top_logprobs": [_entry(tokenizer, i, lp, False) for i, lp in p.top]} for p in probs]


def native_probs(probs: list[TokenProbs], tokenizer) -> list[dict]:
    """llama-server's ``completion_probabilities``: as chat's, each entry and top entry with its ``id``."""
    return [{**_entry(tokenizer, p.token, p.logprob, True),
             "top_logprobs": [_entry(tokenizer, i, lp, True) for i, lp in p.top]} for p in probs]


def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0 (got {value!r})")
    return value


def completion_n_probs(logprobs, echo: bool = False) -> int | None:
    """A completion's ``logprobs`` (None: off; N: the N most likely tokens too) -> ``Generation``'s n_probs."""
    if logprobs is None:
        return None
    if echo:
        raise ValueError("logprobs with echo (the prompt's log probabilities) are not supported")
    return _count("logprobs", logprobs)


def chat_n_probs(logprobs, top_logprobs) -> int | None:
    """A chat request's ``logprobs`` (bool) and ``top_logprobs`` (N, default 0) -> ``Generation``'s n_probs."""
    if not logprobs:
        if top_logprobs is not None:
            raise ValueError("top_logprobs requires logprobs to be set to true")
        return None
    return 0 if top_logprobs is None else _count("top_logprobs", top_logprobs)


def native_n_probs(n_probs) -> int | None:
    """llama-server's ``n_probs`` (0: off) -> ``Generation``'s n_probs."""
    return None if n_probs == 0 else _count("n_probs", n_probs)
