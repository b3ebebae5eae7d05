"""The individual samplers of llama.cpp's chain, on a numpy candidate array, with llama.cpp's float semantics.

Each sampler works on a :class:`Candidates` (the ``llama_token_data_array``: token ids, logits and
probabilities in the *current order*, a ``sorted`` flag and the selected index). Order matters: the ``dist``
sampler walks the candidates in array order, so every sampler reorders exactly as llama.cpp's does
(top-k/top-p/typical/min-p sort descending by logit; penalties, bias, temperature and the unsorted min-p path
keep the order). Arithmetic follows the C code's types: logits, probabilities and their running sums are
float32 and summed sequentially (``np.cumsum`` is sequential, ``np.sum`` is not); ``dist`` sums in double;
``expf``/``logf`` are evaluated in double and rounded to float32 (glibc's float functions are correctly
rounded in all but rare cases).

Ties between equal logits are ordered stably here (lower array position first); libstdc++'s partial_sort does
not promise any order, so with exactly equal logits the token picked may differ from llama.cpp's.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np

from .rng import MT19937, canonical_double, discrete, resolve_seed, uniform_real_float

__all__ = [
    "Candidates", "Sampler_", "Greedy", "Dist", "TopK", "TopP", "MinP", "Typical", "Temp", "TempExt",
    "TopNSigma", "XTC", "Penalties", "LogitBias", "Mirostat", "MirostatV2",
]

F32 = np.float32
_PARTIAL_FIRST = 256  # top-p looks at the best 256 candidates first before sorting everything (as llama.cpp)


def _expf(x: np.ndarray) -> np.ndarray:
    """float32 ``expf`` of a float32 array (double exp, rounded once)."""
    return np.exp(x, dtype=np.float64).astype(np.float32)


def _logf(x) -> np.ndarray:
    """float32 ``logf`` (double log, rounded once); log(0) = -inf without a warning."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.asarray(x, dtype=np.float64)).astype(np.float32)


def _logf1(x: float) -> np.float32:
    return F32(math.log(float(F32(x)))) if x > 0 else F32(-np.inf)


def _log2f1(x: float) -> np.float32:
    x = float(F32(x))
    if x > 0:
        return F32(math.log2(x))
    return F32(-np.inf) if x == 0 else F32(np.nan)


def _sum_f32(x: np.ndarray) -> np.float32:
    """Sequential float32 sum (a C ``float s = 0; for (...) s += x[i];``)."""
    return np.cumsum(x, dtype=np.float32)[-1] if x.size else F32(0.0)


def top_sorted(logits: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest logits, best first (equal logits in position order)."""
    n = logits.size
    if k >= n:
        return np.argsort(-logits, kind="stable")
    part = np.argpartition(logits, n - k)[n - k:]
    part.sort()
    return part[np.argsort(-logits[part], kind="stable")]


def _sum_sorted_f32(e: np.ndarray) -> np.float32:
    """Sequential float32 sum in descending order (what a sorted softmax sums) without an argsort."""
    return np.cumsum(np.sort(e)[::-1], dtype=np.float32)[-1]


class Candidates:
    """``llama_token_data_array``: ``ids`` (int32), ``logits``/``p`` (float32) in current order."""

    __slots__ = ("ids", "logits", "p", "sorted", "selected", "identity")

    def __init__(self, ids: np.ndarray, logits: np.ndarray, p: np.ndarray | None = None,
                 sorted: bool = False, identity: bool = False):
        self.ids = ids
        self.logits = logits
        self.p = np.zeros(logits.shape, np.float32) if p is None else p
        self.sorted = sorted
        self.selected = -1
        self.identity = identity  # ids[i] == i for every i (straight from the logits vector)

    @classmethod
    def from_logits(cls, logits) -> "Candidates":
        logits = np.array(logits, dtype=np.float32)
        return cls(np.arange(logits.size, dtype=np.int32), logits, identity=True)

    @property
    def size(self) -> int:
        return int(self.logits.size)

    def take(self, idx) -> None:
        """Keep (and reorder to) the positions ``idx`` (a slice or an index array)."""
        self.ids = self.ids[idx]
        self.logits = self.logits[idx]
        self.p = self.p[idx]
        self.identity = False

    def truncate(self, n: int) -> None:
        if n < self.size:
            self.take(slice(0, n))

    def sort_desc(self, keep: int | None = None) -> None:
        """Sort descending by logit (``partial_sort``); with ``keep``, only the best ``keep`` remain."""
        self.take(top_sorted(self.logits, self.size if keep is None else keep))
        self.sorted = True

    def max_logit(self) -> np.float32:
        return self.logits[0] if self.sorted else self.logits.max()


def softmax_(cur: Candidates, do_sort: bool) -> None:
    """``llama_sampler_softmax_impl``: float exps, float sequential sum, float division."""
    if do_sort and not cur.sorted:
        cur.sort_desc()
    e = _expf(cur.logits - cur.max_logit())
    cur.p = e / _sum_f32(e)


class Sampler_:
    """Base: ``apply`` edits the candidates in place; ``accept`` sees each accepted token; ``reset``."""

    name = "base"

    def apply(self, cur: Candidates) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def accept(self, token: int) -> None:
        pass

    def reset(self) -> None:
        pass

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class _Seeded(Sampler_):
    """A sampler that owns a ``std::mt19937`` seeded with ``seed`` (re-seeded on reset)."""

    def __init__(self, seed: int):
        self.seed = int(seed) & 0xFFFFFFFF
        self.seed_cur = resolve_seed(self.seed)
        self._rng = MT19937(self.seed_cur)

    def reset(self) -> None:
        self.seed_cur = resolve_seed(self.seed)
        self._rng.reseed(self.seed_cur)


class Greedy(Sampler_):
    """Select the first maximum logit (no draw)."""

    name = "greedy"

    def apply(self, cur):
        cur.selected = int(np.argmax(cur.logits)) if cur.size else -1


class Dist(_Seeded):
    """Softmax (float exps, double sum) and one ``uniform_real<double>`` draw, even for a single candidate."""

    name = "dist"

    def apply(self, cur):
        if cur.size == 0:
            cur.selected = -1
            return
        e = _expf(cur.logits - cur.max_logit())
        run = np.cumsum(e, dtype=np.float64)  # sequential double running sum of the float exps
        total = run[-1]
        target = total * canonical_double(self._rng)
        sel = int(np.searchsorted(run, target, side="left"))  # first i with running sum >= target
        cur.selected = sel if sel < cur.size else cur.size - 1
        cur.p = (e / total).astype(np.float32)


class TopK(Sampler_):
    name = "top-k"

    def __init__(self, k: int):
        self.k = int(k)

    def apply(self, cur):
        top_k_(cur, self.k)


def top_k_(cur: Candidates, k: int) -> None:
    if k <= 0:
        return
    k = min(k, cur.size)
    if not cur.sorted:
        cur.sort_desc(k)
    else:
        cur.truncate(k)


class _Cutoff(Sampler_):
    """A sampler that cuts the candidates at probability parameter p, keeping at least min_keep."""

    def __init__(self, p: float, min_keep: int = 0):
        self.p = float(p)
        self.min_keep = int(min_keep)


class TopP(_Cutoff):
    """Nucleus: softmax over the current candidates, keep the shortest sorted prefix with float cum >= p."""

    name = "top-p"

    def apply(self, cur):
        if self.p >= 1.0 or cur.size == 0:
            return
        softmax_(cur, False)
        p = F32(self.p)
        n = cur.size
        if not cur.sorted:
            # llama.cpp sorts the best 256 first and everything only if they do not reach p; the prefix
            # is the same either way, so widen the partial sort step by step
            k = _PARTIAL_FIRST if n > 1024 else n
            while True:
                top = top_sorted(cur.logits, k)
                cum = np.cumsum(cur.p[top], dtype=np.float32)
                hit = np.flatnonzero((cum >= p) & (np.arange(1, k + 1) >= self.min_keep))
                if hit.size or k >= n:
                    cur.take(top[: int(hit[0]) + 1] if hit.size else top)
                    cur.sorted = True
                    return
                k = min(k * 8, n)
        cum = np.cumsum(cur.p, dtype=np.float32)
        hit = np.flatnonzero((cum >= p) & (np.arange(1, n + 1) >= self.min_keep))
        if hit.size:
            cur.truncate(int(hit[0]) + 1)


class MinP(_Cutoff):
    """Keep candidates with ``logit >= max_logit + logf(p)`` (order kept when unsorted)."""

    name = "min-p"

    def apply(self, cur):
        if self.p <= 0.0 or cur.size == 0:
            return
        logp = _logf1(self.p)
        if not cur.sorted:
            min_logit = F32(max(cur.logits.max(), F32(-np.finfo(np.float32).max)) + logp)
            keep = np.flatnonzero(cur.logits >= min_logit)
            if keep.size and keep.size >= self.min_keep:
                if keep.size < cur.size:
                    cur.take(keep)
                return
            cur.sort_desc()
        min_logit = F32(cur.logits[0] + logp)
        below = (cur.logits[1:] < min_logit) & (np.arange(1, cur.size) >= self.min_keep)
        hit = np.flatnonzero(below)
        cur.truncate(int(hit[0]) + 1 if hit.size else cur.size)


class Typical(_Cutoff):
    """Locally typical sampling; leaves the array unsorted (ordered by |-log p - H|)."""

    name = "typical"

    def apply(self, cur):
        if self.p >= 1.0 or cur.size == 0:
            return
        softmax_(cur, True)
        logp = _logf(cur.p)
        with np.errstate(invalid="ignore"):
            entropy = _sum_f32(-cur.p * logp)
            shifted = np.abs(-logp - entropy)
        order = np.argsort(shifted, kind="stable")
        cum = np.cumsum(cur.p[order], dtype=np.float32)
        i = np.arange(cum.size)
        ok = (cum > F32(self.p)) & ((self.min_keep == 0) | (i >= self.min_keep - 1))
        hit = np.flatnonzero(ok)
        last = int(hit[0]) + 1 if hit.size else cum.size
        cur.take(order[:last])
        cur.sorted = False


def temp_(cur: Candidates, temp) -> None:
    """``llama_sampler_temp_impl``: t <= 0 keeps only the first maximum (others -inf), else logits /= t."""
    temp = F32(temp)
    if temp <= 0:
        if cur.size:
            m = int(np.argmax(cur.logits))
            best = cur.logits[m]
            cur.logits.fill(-np.inf)
            cur.logits[m] = best
        return
    np.divide(cur.logits, temp, out=cur.logits)


class Temp(Sampler_):
    name = "temp"

    def __init__(self, t: float):
        self.t = float(t)

    def apply(self, cur):
        temp_(cur, self.t)


class TempExt(Sampler_):
    """Temperature with optional entropy-based dynamic range (``delta`` > 0; sorts the candidates)."""

    name = "temp-ext"

    def __init__(self, t: float, delta: float = 0.0, exponent: float = 1.0):
        self.t, self.delta, self.exponent = float(t), float(delta), float(exponent)

    def apply(self, cur):
        if self.delta <= 0:
            temp_(cur, self.t)
            return
        t, d = F32(self.t), F32(self.delta)
        min_temp = max(F32(0.0), F32(t - d))
        max_temp = F32(t + d)
        if cur.size <= 1:
            return
        max_entropy = -_logf1(float(F32(1.0) / F32(cur.size)))
        softmax_(cur, True)
        pos = cur.p[cur.p > 0]
        entropy = -_sum_f32(pos * _logf(pos)) if pos.size else F32(0.0)
        # (the C loop does entropy -= p*logf(p); a sequential sum of the negated terms is the same)
        norm = F32(entropy / max_entropy)
        powv = F32(math.pow(float(norm), float(F32(self.exponent)))) if norm > 0 else F32(
            0.0 if self.exponent > 0 else (1.0 if self.exponent == 0 else np.inf))
        dyn = F32(min_temp + F32((max_temp - min_temp) * powv))
        temp_(cur, dyn)
        lg = cur.logits.astype(np.float64)
        e = np.exp(lg - lg[0])
        p = e.astype(np.float32)
        cur.p = (p / np.cumsum(e)[-1]).astype(np.float32)


class TopNSigma(Sampler_):
    """Mask logits below ``max - n * std`` (population std over the finite logits); keeps order."""

    name = "top-n-sigma"

    def __init__(self, n: float):
        self.n = float(n)

    def apply(self, cur):
        if self.n <= 0.0 or cur.size <= 1:
            return
        lg = cur.logits
        valid = lg != -np.inf
        nv = int(valid.sum())
        vals = lg[valid]
        mx = max(lg[0], vals.max()) if nv else lg[0]  # the C loop starts from data[0]
        mean = F32(_sum_f32(vals) / F32(nv)) if nv else F32(0.0)
        d = (vals - mean).astype(np.float64)
        acc = F32(np.cumsum(d * d)[-1]) if nv else F32(0.0)
        std = F32(math.sqrt(float(acc / F32(nv)))) if nv else F32(0.0)
        thr = F32(mx - F32(F32(self.n) * std))
        lg[lg < thr] = -np.inf


class XTC(_Seeded):
    """Exclude top choices: with probability ``p`` drop all leading tokens with prob >= t except the last."""

    name = "xtc"

    def __init__(self, p: float, t: float, min_keep: int = 0, seed: int = 0xFFFFFFFF):
        super().__init__(seed)
        self.p, self.t, self.min_keep = float(p), float(t), int(min_keep)

    def apply(self, cur):
        if self.p <= 0.0 or self.t > 0.5 or cur.size < 2:
            return
        chance = uniform_real_float(self._rng)
        if chance > float(F32(self.p)):
            return
        softmax_(cur, True)
        above = cur.p >= F32(self.t)
        pos_last = int(np.argmin(above)) - 1 if not above.all() else cur.size - 1
        pos_last = max(pos_last, 0)
        if cur.size - pos_last >= self.min_keep and pos_last > 0:
            cur.take(slice(pos_last, None))
            cur.sorted = True


class Penalties(Sampler_):
    """Repeat/frequency/presence penalties over the last ``last_n`` accepted tokens."""

    name = "penalties"

    def __init__(self, last_n: int, repeat: float = 1.0, freq: float = 0.0, present: float = 0.0):
        self.last_n = max(int(last_n), 0)
        self.repeat, self.freq, self.present = float(repeat), float(freq), float(present)
        self._prev: deque[int] = deque()
        self._count: dict[int, int] = {}

    def accept(self, token):
        if self.last_n == 0:
            return
        token = int(token)
        self._count[token] = self._count.get(token, 0) + 1
        if len(self._prev) >= self.last_n:
            old = self._prev.popleft()
            c = self._count[old] - 1
            if c:
                self._count[old] = c
            else:
                del self._count[old]
        self._prev.append(token)

    def reset(self):
        self._prev.clear()
        self._count.clear()

    def history(self) -> list[int]:
        return list(self._prev)

    def apply(self, cur):
        if self.last_n == 0 or (self.repeat == 1.0 and self.freq == 0.0 and self.present == 0.0):
            return
        if not self._count:
            cur.sorted = False
            return
        toks = np.fromiter(self._count.keys(), np.int64, len(self._count))
        cnts = np.fromiter(self._count.values(), np.int64, len(self._count))
        if cur.identity:
            ok = (toks >= 0) & (toks < cur.size)
            pos, cnt = toks[ok], cnts[ok]
        else:
            order = np.argsort(toks)
            st, sc = toks[order], cnts[order]
            j = np.searchsorted(st, cur.ids)
            j[j >= st.size] = 0
            hit = st[j] == cur.ids
            pos = np.flatnonzero(hit)
            cnt = sc[j[hit]]
        x = cur.logits[pos]
        rp = F32(self.repeat)
        x = np.where(x <= 0, x * rp, x / rp).astype(np.float32)
        x = x - (cnt.astype(np.float32) * F32(self.freq) + F32(self.present))
        cur.logits[pos] = x
        cur.sorted = False


class LogitBias(Sampler_):
    """Add per-token biases (``(token, bias)`` pairs, applied in order; out-of-range tokens ignored)."""

    name = "logit-bias"

    def __init__(self, n_vocab: int, biases):
        self.n_vocab = int(n_vocab)
        pairs = list(biases.items()) if isinstance(biases, dict) else list(biases)
        self.biases = [(int(t), float(b)) for t, b in pairs]
        self._tok = np.array([t for t, _ in self.biases], np.int64)
        self._val = np.array([b for _, b in self.biases], np.float32)

    def apply(self, cur):
        if not self.biases:
            return
        if cur.identity:
            ok = (self._tok >= 0) & (self._tok < cur.size)
            np.add.at(cur.logits, self._tok[ok], self._val[ok])
            return
        pos_of = {int(t): i for i, t in enumerate(cur.ids)} if cur.size <= 4096 else None
        for t, b in zip(self._tok, self._val):
            if pos_of is not None:
                i = pos_of.get(int(t))
            else:
                w = np.flatnonzero(cur.ids == t)
                i = int(w[0]) if w.size else None
            if i is not None:
                cur.logits[i] += b


class Mirostat(_Seeded):
    """Mirostat 1.0 (``m`` = 100 in llama.cpp's chain); ``mu`` starts at ``2 * tau``."""

    name = "mirostat"

    def __init__(self, n_vocab: int, seed: int, tau: float, eta: float, m: int = 100):
        super().__init__(seed)
        self.n_vocab, self.tau, self.eta, self.m = int(n_vocab), float(tau), float(eta), int(m)
        self.mu = F32(F32(2.0) * F32(self.tau))

    def reset(self):
        super().reset()
        self.mu = F32(F32(2.0) * F32(self.tau))

    def apply(self, cur):
        # softmax over everything (summed in sorted order), then only the best max(m, k) need sorting
        p_all = _softmax_sorted_sum(cur)
        m_top = top_sorted(cur.logits, min(max(self.m, 1), cur.size)) if not cur.sorted else None
        p_top = cur.p if m_top is None else p_all[m_top]
        n = max(min(self.m - 1, cur.size - 1), 0)
        i = np.arange(n, dtype=np.float32)
        t = _logf((i + F32(2)) / (i + F32(1)))
        with np.errstate(divide="ignore", invalid="ignore"):
            b = _logf(p_top[:n] / p_top[1 : n + 1])
        s_tb = _sum_f32(t * b)
        s_tt = _sum_f32(t * t)
        with np.errstate(divide="ignore", invalid="ignore"):
            s_hat = F32(s_tb / s_tt)
            eps = F32(s_hat - F32(1))
            num = F32(eps * _powf(2.0, self.mu))
            den = F32(F32(1) - _powf(float(F32(self.n_vocab)), -eps))
            k = _powf(float(F32(num / den)), float(F32(F32(1) / s_hat)))
        k = min(max(_c_int(k), 1), cur.size)
        if cur.sorted:
            cur.truncate(k)
        else:
            cur.take(m_top[:k] if k <= m_top.size else top_sorted(cur.logits, k))
            cur.sorted = True
        softmax_(cur, True)
        idx = discrete(self._rng, cur.p)
        cur.selected = idx
        self.mu = _mirostat_update(self.mu, cur.p[idx], self.tau, self.eta)


class MirostatV2(_Seeded):
    """Mirostat 2.0: keep the sorted prefix with surprise ``-log2 p <= mu`` (at least one), sample."""

    name = "mirostat-v2"

    def __init__(self, seed: int, tau: float, eta: float):
        super().__init__(seed)
        self.tau, self.eta = float(tau), float(eta)
        self.mu = F32(F32(2.0) * F32(self.tau))

    def reset(self):
        super().reset()
        self.mu = F32(F32(2.0) * F32(self.tau))

    def apply(self, cur):
        p_all = _softmax_sorted_sum(cur)
        with np.errstate(divide="ignore"):
            surprise = -np.log2(p_all.astype(np.float64)).astype(np.float32)
        if cur.sorted:
            over = np.flatnonzero(surprise > self.mu)
            cur.truncate(max(int(over[0]) if over.size else cur.size, 1))
        else:
            # surprise grows as p falls, so "the sorted prefix before the first surprise > mu" is this set
            keep = np.flatnonzero(surprise <= self.mu)
            if keep.size == 0:
                keep = top_sorted(cur.logits, 1)
            cur.take(keep[np.argsort(-cur.logits[keep], kind="stable")])
            cur.sorted = True
        softmax_(cur, True)
        idx = discrete(self._rng, cur.p)
        cur.selected = idx
        self.mu = _mirostat_update(self.mu, cur.p[idx], self.tau, self.eta)


def _softmax_sorted_sum(cur: Candidates) -> np.ndarray:
    """``softmax_impl(cur, sort=true)`` probabilities without moving the candidates: the float sum runs in
    descending order as after the sort (equal values commute). Sets and returns ``cur.p``."""
    if cur.sorted:
        softmax_(cur, True)
        return cur.p
    e = _expf(cur.logits - cur.max_logit())
    cur.p = e / _sum_sorted_f32(e)
    return cur.p


def _mirostat_update(mu, p, tau, eta) -> np.float32:
    surprise = F32(-_log2f1(float(p)))
    e = F32(surprise - F32(tau))
    return F32(mu - F32(F32(eta) * e))


def _powf(x: float, y: float) -> np.float32:
    """float32 ``powf`` (double pow rounded once); NaN/inf as C gives them."""
    try:
        return F32(math.pow(float(x), float(y)))
    except (OverflowError, ValueError):
        with np.errstate(all="ignore"):
            return F32(np.power(np.float64(x), np.float64(y)))


def _c_int(x) -> int:
    """``int(float)`` as x86 ``cvttss2si`` does it: truncation, and INT_MIN for NaN/out-of-range."""
    x = float(x)
    if math.isnan(x) or not (-2147483648.0 <= x < 2147483648.0):
        return -2147483648
    return int(x)
