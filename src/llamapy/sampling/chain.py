"""The command-line tools' sampling chain (llama.cpp ``common_sampler_init``): parameters, order, validation.

Chain, as llama.cpp builds it:

1. ``logit-bias`` (user biases, then -inf on every end-of-generation token with ``ignore_eos``), if any;
2. ``mirostat == 0``: the configured samplers in order (default penalties, dry (when on), top-n-sigma, top-k,
   typical, top-p, min-p, xtc, temperature), then ``dist`` (seeded ``std::mt19937``, one draw per token, also at
   temperature <= 0 where only the best token survives);
3. ``mirostat == 1``: plain temperature then mirostat v1 (m = 100); ``mirostat == 2``: temperature then
   mirostat v2. Everything else, penalties included, is skipped.

So top-k, top-p and min-p see un-tempered logits; temperature comes last.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np

from .dry import DEFAULT_SEQUENCE_BREAKERS, Dry, dry_enabled
from .rng import DEFAULT_SEED
from .samplers import (
    XTC, Candidates, Dist, LogitBias, MinP, Mirostat, MirostatV2, Penalties, Sampler_, Temp, TempExt, TopK,
    TopNSigma, TopP, Typical,
)

__all__ = ["SamplingParams", "Sampler", "DEFAULT_SAMPLERS", "parse_sampler_names", "parse_sampler_seq"]

DEFAULT_SAMPLERS = ("penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature")

_SEQ_LETTERS = {"e": "penalties", "d": "dry", "s": "top_n_sigma", "k": "top_k", "y": "typ_p", "p": "top_p",
                "m": "min_p", "x": "xtc", "t": "temperature", "a": "adaptive_p", "i": "infill"}
_CANONICAL = ("penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature",
              "adaptive_p", "infill")
_ALIASES = {**{n: n for n in _CANONICAL}, **{n.replace("_", "-"): n for n in _CANONICAL},
            **{n.replace("_", ""): n for n in _CANONICAL},
            "nucleus": "top_p", "temp": "temperature", "typ": "typ_p", "typical": "typ_p", "typical_p": "typ_p",
            "typical-p": "typ_p", "min-p": "min_p", "top-k": "top_k", "top-p": "top_p", "top-n-sigma": "top_n_sigma"}


def parse_sampler_names(text: str) -> tuple[list[str], list[str]]:
    """``--samplers a;b;c`` -> (canonical names, unknown names); names are case-insensitive."""
    known, unknown = [], []
    for raw in text.split(";"):
        name = raw.strip().lower()
        if not name:
            continue
        (known if name in _ALIASES else unknown).append(_ALIASES.get(name, raw))
    return known, unknown


def parse_sampler_seq(text: str) -> tuple[list[str], list[str]]:
    """``--sampler-seq edskypmxt`` -> (canonical names, unknown letters)."""
    known, unknown = [], []
    for ch in text:
        (known if ch in _SEQ_LETTERS else unknown).append(_SEQ_LETTERS.get(ch, ch))
    return known, unknown


@dataclass
class SamplingParams:
    """Sampling settings with llama.cpp's defaults (``common_params_sampling``)."""

    temp: float = 0.80                 # --temp; <= 0 -> greedy (the CLI clamps it to >= 0)
    top_k: int = 40                    # <= 0 disables
    top_p: float = 0.95                # >= 1 disables
    min_p: float = 0.05                # <= 0 disables
    typical: float = 1.00              # --typical / typ_p; >= 1 disables
    top_n_sigma: float = -1.00         # <= 0 disables
    xtc_probability: float = 0.00      # <= 0 disables
    xtc_threshold: float = 0.10        # > 0.5 disables
    repeat_last_n: int = 64            # penalty window; 0 disables
    repeat_penalty: float = 1.00       # 1 disables
    presence_penalty: float = 0.00
    frequency_penalty: float = 0.00
    dry_multiplier: float = 0.00       # DRY: 0 disables
    dry_base: float = 1.75             # < 1 disables (the command line ignores such values)
    dry_allowed_length: int = 2        # repeats longer than this are penalised
    dry_penalty_last_n: int = 64       # DRY window; 0 disables
    dry_sequence_breakers: tuple = DEFAULT_SEQUENCE_BREAKERS
    dynatemp_range: float = 0.00
    dynatemp_exp: float = 1.00
    mirostat: int = 0                  # 0 off, 1 = v1, 2 = v2
    mirostat_lr: float = 0.10          # eta
    mirostat_ent: float = 5.00         # tau
    seed: int = DEFAULT_SEED           # 0xFFFFFFFF (-1 on the command line) = random
    min_keep: int = 0
    ignore_eos: bool = False
    logit_bias: dict = field(default_factory=dict)   # token -> bias (or a list of (token, bias) pairs)
    samplers: tuple = DEFAULT_SAMPLERS

    def validate(self) -> "SamplingParams":
        """Raise ``ValueError`` with a one-line message for values llama.cpp rejects; returns self."""
        def finite(name, flag):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{flag} must be a finite number (got {v!r})")

        for name in ("temp", "top_p", "min_p", "typical", "top_n_sigma", "xtc_probability", "xtc_threshold",
                     "dynatemp_range", "dynatemp_exp", "mirostat_lr", "mirostat_ent", "dry_base"):
            finite(name, "--" + name.replace("_", "-"))
        finite("repeat_penalty", "--repeat-penalty")
        finite("presence_penalty", "--presence-penalty")
        finite("frequency_penalty", "--frequency-penalty")
        if self.repeat_penalty <= 0:
            raise ValueError(f"--repeat-penalty must be > 0 (got {self.repeat_penalty!r})")
        if int(self.repeat_last_n) != self.repeat_last_n or self.repeat_last_n < 0:
            raise ValueError(f"--repeat-last-n must be an integer >= 0 (got {self.repeat_last_n!r})")
        finite("dry_multiplier", "--dry-multiplier")
        for name in ("dry_allowed_length", "dry_penalty_last_n"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or not -(2**31) <= v < 2**31:
                raise ValueError(f"--{name.replace('_', '-')} must be a 32-bit integer (got {v!r})")
        if self.dry_penalty_last_n < 0:
            raise ValueError(f"--dry-penalty-last-n must be >= 0 (got {self.dry_penalty_last_n!r})")
        if isinstance(self.dry_sequence_breakers, str) or not all(
                isinstance(b, str) for b in self.dry_sequence_breakers):
            raise ValueError("--dry-sequence-breaker: breakers must be a list of strings")
        if int(self.top_k) != self.top_k:
            raise ValueError(f"--top-k must be an integer (got {self.top_k!r})")
        if self.mirostat not in (0, 1, 2):
            raise ValueError(f"--mirostat must be 0, 1 or 2 (got {self.mirostat!r})")
        if self.min_keep < 0:
            raise ValueError(f"min_keep must be >= 0 (got {self.min_keep!r})")
        if int(self.seed) != self.seed or not -(2**31) <= self.seed <= 0xFFFFFFFF:
            raise ValueError(f"--seed must be a 32-bit integer, -1 for random (got {self.seed!r})")
        for name in self.samplers:
            if name not in _CANONICAL:
                raise ValueError(f"--samplers: unknown sampler {name!r}")
            if name in ("adaptive_p", "infill"):
                raise ValueError(f"--samplers: sampler {name!r} is not supported")
        for tok, bias in _bias_pairs(self.logit_bias):
            if int(tok) != tok:
                raise ValueError(f"--logit-bias: token id must be an integer (got {tok!r})")
            if isinstance(bias, float) and math.isnan(bias):
                raise ValueError(f"--logit-bias: bias for token {tok} is NaN")
        return self

    @property
    def seed_u32(self) -> int:
        return int(self.seed) & 0xFFFFFFFF

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _bias_pairs(bias) -> list[tuple[int, float]]:
    return list(bias.items()) if isinstance(bias, dict) else [tuple(x) for x in bias]


class Sampler:
    """The sampling chain for one sequence: ``sample(logits) -> token``, then ``accept(token)``.

    ``accept`` feeds the penalty and DRY histories (call it for prompt tokens too, as llama.cpp does, with
    ``is_generated=False``); ``sample`` does not accept by itself. ``eos_ids``: the end-of-generation
    tokens, biased to -inf with ``ignore_eos``. ``tokenizer``: needed with DRY on, to turn its sequence
    breakers into tokens, and with a grammar.

    ``grammar`` (GBNF text, a ``LlamaGrammar`` or a ``GrammarMatcher``) constrains the output as llama.cpp's
    common sampler does: the chain picks a token; only if the grammar rejects it are the logits masked to
    what the grammar allows and the chain run again. Generated tokens advance the grammar, prompt tokens
    do not.
    """

    def __init__(self, params: SamplingParams | None = None, n_vocab: int = 0, eos_ids=(), tokenizer=None,
                 grammar=None):
        self.params = params = (params or SamplingParams()).validate()
        if n_vocab <= 0:
            raise ValueError(f"n_vocab must be > 0 (got {n_vocab})")
        self.n_vocab = int(n_vocab)
        self.eos_ids = tuple(int(t) for t in eos_ids)
        self.chain: list[Sampler_] = build_chain(params, self.n_vocab, self.eos_ids, tokenizer)
        self._ids = np.arange(self.n_vocab, dtype=np.int32)
        self._ids.flags.writeable = False
        self._logits = np.empty(self.n_vocab, np.float32)
        self._p = np.zeros(self.n_vocab, np.float32)
        self._p.flags.writeable = False
        self.grammar = None
        if grammar is not None:
            from llamapy.grammar import GrammarMatcher, LlamaGrammar
            if isinstance(grammar, LlamaGrammar):
                grammar = grammar.matcher(tokenizer)
            self.grammar = grammar if isinstance(grammar, GrammarMatcher) else GrammarMatcher(grammar, tokenizer)
            if self.grammar.table.n_vocab != self.n_vocab:
                raise ValueError(f"the grammar's vocabulary has {self.grammar.table.n_vocab} tokens, "
                                 f"the model {self.n_vocab}")

    @property
    def seed(self) -> int:
        """The seed in use (the random one drawn for seed -1), as ``llama_sampler_get_seed``."""
        for s in reversed(self.chain):
            if hasattr(s, "seed_cur"):
                return s.seed_cur
        return DEFAULT_SEED

    def apply(self, logits: np.ndarray) -> Candidates:
        """Run the chain on one logits vector; returns the candidates (``.selected`` indexes them)."""
        logits = np.asarray(logits)
        if logits.shape != (self.n_vocab,):
            raise ValueError(f"expected logits of shape ({self.n_vocab},), got {logits.shape}")
        np.copyto(self._logits, logits, casting="same_kind")
        cur = Candidates(self._ids, self._logits, self._p, identity=True)
        for s in self.chain:
            s.apply(cur)
        return cur

    def sample(self, logits: np.ndarray) -> int:
        token = self._pick(self.apply(logits))
        grammar = self.grammar
        if grammar is None or grammar.accepts(token):
            return token
        # rejected: mask everything the grammar forbids and run the whole chain again (as llama.cpp)
        allowed = grammar.allowed_mask()
        if not allowed.any():
            from llamapy.grammar import GrammarStateError
            raise GrammarStateError("the grammar allows no token of this vocabulary here")
        return self._pick(self.apply(np.where(allowed, logits, np.float32(-np.inf))))

    @staticmethod
    def _pick(cur: Candidates) -> int:
        if not 0 <= cur.selected < cur.size:
            raise RuntimeError("sampling chain selected no token")
        return int(cur.ids[cur.selected])

    def accept(self, token: int, is_generated: bool = True) -> None:
        """Record ``token`` in the penalty/DRY histories; a generated one also advances the grammar."""
        if is_generated and self.grammar is not None:
            self.grammar.accept(token)
        for s in self.chain:
            s.accept(token)

    def reset(self) -> None:
        """Forget the history and restart the RNG streams (a fresh random seed for seed -1) and the grammar."""
        for s in self.chain:
            s.reset()
        if self.grammar is not None:
            self.grammar.reset()

    def __repr__(self) -> str:
        return "Sampler(" + " -> ".join(s.name for s in self.chain) + ")"


def build_chain(p: SamplingParams, n_vocab: int, eos_ids=(), tokenizer=None) -> list[Sampler_]:
    seed = p.seed_u32
    temp = max(float(p.temp), 0.0)  # the command line clamps --temp to >= 0
    chain: list[Sampler_] = []
    biases = _bias_pairs(p.logit_bias)
    if p.ignore_eos:
        biases += [(t, -math.inf) for t in eos_ids]
    if biases:
        chain.append(LogitBias(n_vocab, biases))
    if p.mirostat == 1:
        return chain + [Temp(temp), Mirostat(n_vocab, seed, p.mirostat_ent, p.mirostat_lr, 100)]
    if p.mirostat == 2:
        return chain + [Temp(temp), MirostatV2(seed, p.mirostat_ent, p.mirostat_lr)]
    for name in p.samplers:
        if name == "penalties":
            chain.append(Penalties(p.repeat_last_n, p.repeat_penalty, p.frequency_penalty, p.presence_penalty))
        elif name == "dry":
            if not dry_enabled(p.dry_multiplier, p.dry_base, p.dry_penalty_last_n):
                continue  # llama.cpp puts an empty placeholder here
            if tokenizer is None and any(p.dry_sequence_breakers):
                raise ValueError("DRY sequence breakers need the model's tokenizer")
            chain.append(Dry.from_strings(p.dry_multiplier, p.dry_base, p.dry_allowed_length,
                                          p.dry_penalty_last_n, p.dry_sequence_breakers, tokenizer))
        elif name == "top_n_sigma":
            chain.append(TopNSigma(p.top_n_sigma))
        elif name == "top_k":
            chain.append(TopK(p.top_k))
        elif name == "typ_p":
            chain.append(Typical(p.typical, p.min_keep))
        elif name == "top_p":
            chain.append(TopP(p.top_p, p.min_keep))
        elif name == "min_p":
            chain.append(MinP(p.min_p, p.min_keep))
        elif name == "xtc":
            chain.append(XTC(p.xtc_probability, p.xtc_threshold, p.min_keep, seed))
        elif name == "temperature":
            chain.append(TempExt(temp, p.dynatemp_range, p.dynatemp_exp))
    chain.append(Dist(seed))
    return chain
