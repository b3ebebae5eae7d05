"""std::mt19937 and the libstdc++ distributions llama.cpp's samplers draw from, bit for bit.

llama.cpp (built with GCC/libstdc++ on Linux) gives every RNG-using sampler its own ``std::mt19937`` seeded
with the user seed. To pick the same token for the same logits and seed we must reproduce:

* ``std::mt19937(seed)``: Knuth's ``init_genrand`` (not Python's ``random.seed``, which uses init_by_array);
* ``generate_canonical<double, 53>``: two 32-bit outputs a, b -> ``(a + b * 2**32) / 2**64`` in double
  arithmetic, a result >= 1 becomes ``nextafter(1, 0)``; ``uniform_real_distribution<double>(0, 1)`` is
  exactly that value;
* ``generate_canonical<float, 24>``: one output -> ``float(a) / 2**32`` rounded to float32 (>= 1 becomes
  ``nextafter(1f, 0)``); ``uniform_real_distribution<float>(0, 1)`` is that value;
* ``std::discrete_distribution``: fewer than two weights -> always index 0 **without a draw**; otherwise
  the weights are converted to double, divided by their (sequential) double sum, prefix-summed with the last
  entry forced to 1.0, and the result is the ``lower_bound`` of one canonical double draw;
* ``uniform_int_distribution`` (GCC >= 11, 32-bit engine, range < 2**32): Lemire's nearly-divisionless
  method (not used by the samplers; provided for the benchmarks that shuffle with it).

The Mersenne Twister itself is CPython's (``random.Random``): we compute the ``init_genrand`` state and load
it with ``setstate``, after which ``getrandbits(32)`` returns exactly the next ``std::mt19937`` output.
"""
from __future__ import annotations

import math
import os
import random

import numpy as np

__all__ = ["DEFAULT_SEED", "MT19937", "resolve_seed", "canonical_double", "canonical_float",
           "uniform_real_double", "uniform_real_float", "discrete", "uniform_int"]

DEFAULT_SEED = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: "pick a random seed"

_N = 624
_ONE_BELOW_F64 = math.nextafter(1.0, 0.0)
_ONE_BELOW_F32 = float(np.nextafter(np.float32(1.0), np.float32(0.0)))
_TWO32 = 4294967296.0


def resolve_seed(seed: int) -> int:
    """The seed actually used: ``seed`` itself, or a fresh random 32-bit value for ``DEFAULT_SEED``."""
    seed = int(seed) & 0xFFFFFFFF
    if seed == DEFAULT_SEED:
        return int.from_bytes(os.urandom(4), "little")
    return seed


def _init_genrand(seed: int) -> list[int]:
    """Knuth's MT19937 initialisation (the one ``std::mt19937(seed)`` uses)."""
    mt = [0] * _N
    mt[0] = seed & 0xFFFFFFFF
    for i in range(1, _N):
        prev = mt[i - 1]
        mt[i] = (1812433253 * (prev ^ (prev >> 30)) + i) & 0xFFFFFFFF
    return mt


class MT19937:
    """``std::mt19937``: ``MT19937(seed)`` then ``next_u32()`` gives the same 32-bit stream as C++."""

    __slots__ = ("seed", "_r")

    def __init__(self, seed: int = 5489):
        self._r = random.Random()
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """``engine.seed(seed)``: restart the stream."""
        self.seed = int(seed) & 0xFFFFFFFF
        # version 3 state = 624 words + position; position 624 means "twist before the next output"
        self._r.setstate((3, tuple(_init_genrand(self.seed)) + (_N,), None))

    def next_u32(self) -> int:
        return self._r.getrandbits(32)

    def discard(self, n: int) -> None:
        for _ in range(n):
            self._r.getrandbits(32)


def canonical_double(rng: MT19937) -> float:
    """libstdc++ ``generate_canonical<double, 53>`` on a 32-bit engine: consumes two outputs."""
    a = rng.next_u32()
    b = rng.next_u32()
    r = (float(a) + float(b) * _TWO32) / (_TWO32 * _TWO32)
    return _ONE_BELOW_F64 if r >= 1.0 else r


def canonical_float(rng: MT19937) -> float:
    """libstdc++ ``generate_canonical<float, 24>`` on a 32-bit engine: consumes one output (float32 value)."""
    r = float(np.float32(rng.next_u32()) / np.float32(_TWO32))
    return _ONE_BELOW_F32 if r >= 1.0 else r


def uniform_real_double(rng: MT19937, a: float = 0.0, b: float = 1.0) -> float:
    """``std::uniform_real_distribution<double>(a, b)(rng)``."""
    return canonical_double(rng) * (b - a) + a


def uniform_real_float(rng: MT19937, a: float = 0.0, b: float = 1.0) -> float:
    """``std::uniform_real_distribution<float>(a, b)(rng)`` (float32 arithmetic)."""
    fa, fb = np.float32(a), np.float32(b)
    return float(np.float32(canonical_float(rng)) * (fb - fa) + fa)


def discrete(rng: MT19937, weights: np.ndarray) -> int:
    """``std::discrete_distribution<int>(weights)(rng)`` as libstdc++ implements it."""
    w = np.asarray(weights, dtype=np.float64)
    if w.size < 2:
        return 0  # libstdc++ keeps no table for < 2 weights and returns 0 without drawing
    total = float(np.cumsum(w)[-1])  # std::accumulate: sequential double sum
    cp = np.cumsum(w / total)        # normalise, then std::partial_sum
    cp[-1] = 1.0
    u = canonical_double(rng)
    return int(np.searchsorted(cp, u, side="left"))  # std::lower_bound


def uniform_int(rng: MT19937, a: int, b: int) -> int:
    """``std::uniform_int_distribution<int>(a, b)(rng)``, libstdc++ >= 11 on a 32-bit engine (Lemire)."""
    urange = (b - a) & 0xFFFFFFFFFFFFFFFF
    if urange == 0xFFFFFFFF:
        return a + rng.next_u32()
    if urange > 0xFFFFFFFF:
        raise ValueError("uniform_int: ranges wider than 32 bits are not supported")
    uerange = urange + 1
    prod = rng.next_u32() * uerange
    low = prod & 0xFFFFFFFF
    if low < uerange:
        threshold = (-uerange & 0xFFFFFFFF) % uerange
        while low < threshold:
            prod = rng.next_u32() * uerange
            low = prod & 0xFFFFFFFF
    return a + (prod >> 32)

