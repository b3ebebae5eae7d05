"""The command-line chain: defaults, order, mirostat replacing the chain, greedy, seeds, validation."""
from __future__ import annotations

import math

import numpy as np
import pytest

from llamapy.sampling import DEFAULT_SEED, Sampler, SamplingParams, parse_sampler_names, parse_sampler_seq
from llamapy.sampling.rng import MT19937

N = 1000


def logits(seed=0, n=N, scale=3.0):
    return (np.random.RandomState(seed).standard_normal(n) * scale).astype(np.float32)


def test_defaults_are_llama_cpp_defaults():
    p = SamplingParams()
    assert (p.temp, p.top_k, p.top_p, p.min_p, p.typical) == (0.8, 40, 0.95, 0.05, 1.0)
    assert (p.top_n_sigma, p.xtc_probability, p.xtc_threshold) == (-1.0, 0.0, 0.1)
    assert (p.repeat_last_n, p.repeat_penalty, p.presence_penalty, p.frequency_penalty) == (64, 1.0, 0.0, 0.0)
    assert (p.dynatemp_range, p.dynatemp_exp) == (0.0, 1.0)
    assert (p.mirostat, p.mirostat_lr, p.mirostat_ent) == (0, 0.1, 5.0)
    assert (p.dry_multiplier, p.dry_base, p.dry_allowed_length, p.dry_penalty_last_n) == (0.0, 1.75, 2, 64)
    assert p.seed == DEFAULT_SEED == 0xFFFFFFFF and p.min_keep == 0 and not p.ignore_eos
    assert p.samplers == ("penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc",
                          "temperature")


def names(s: Sampler) -> list[str]:
    return [x.name for x in s.chain]


def test_default_chain_order():
    s = Sampler(SamplingParams(seed=1), N)
    assert names(s) == ["penalties", "top-n-sigma", "top-k", "typical", "top-p", "min-p", "xtc", "temp-ext",
                        "dist"]


def test_logit_bias_first_and_ignore_eos():
    s = Sampler(SamplingParams(seed=1, logit_bias={5: 2.0}, ignore_eos=True), N, eos_ids=[2, 7])
    assert names(s)[0] == "logit-bias" and s.chain[0].biases == [(5, 2.0), (2, -math.inf), (7, -math.inf)]
    x = np.full(N, -5.0, np.float32)
    x[2] = x[7] = 50.0
    assert s.sample(x) not in (2, 7)
    assert Sampler(SamplingParams(seed=1), N, eos_ids=[2]).sample(x) in (2, 7)  # no ignore_eos: no bias


@pytest.mark.parametrize("version", [1, 2])
def test_mirostat_replaces_the_chain(version):
    s = Sampler(SamplingParams(seed=1, mirostat=version, repeat_penalty=1.5, top_k=3), N)
    assert names(s) == ["temp", "mirostat" if version == 1 else "mirostat-v2"]
    s = Sampler(SamplingParams(seed=1, mirostat=version, logit_bias={1: 1.0}), N)
    assert names(s)[0] == "logit-bias"


def test_custom_sampler_order_and_parsing():
    assert parse_sampler_names("Top_K;nucleus;TEMP;bogus;min-p") == (["top_k", "top_p", "temperature",
                                                                        "min_p"], ["bogus"])
    assert parse_sampler_seq("kpt?") == (["top_k", "top_p", "temperature"], ["?"])
    s = Sampler(SamplingParams(seed=1, samplers=("temperature", "top_k")), N)
    assert names(s) == ["temp-ext", "top-k", "dist"]


def test_temperature_is_applied_after_the_filters():
    # top-k/top-p/min-p see the raw logits: at temp 5 the same candidate set survives, only flatter
    x = logits(3)
    hot = Sampler(SamplingParams(seed=1, temp=5.0), N).apply(x)
    cold = Sampler(SamplingParams(seed=1, temp=0.5), N).apply(x)
    assert set(hot.ids.tolist()) == set(cold.ids.tolist())


@pytest.mark.parametrize("temp", [0.0, -1.0])
def test_greedy_at_temp_le_0_still_draws(temp):
    x = logits(4)
    s = Sampler(SamplingParams(seed=77, temp=temp), N)
    assert s.sample(x) == int(np.argmax(x))
    rng = MT19937(77)
    rng.discard(2)  # one uniform_real<double> = two 32-bit outputs
    assert s.chain[-1]._rng.next_u32() == rng.next_u32()


def test_greedy_picks_first_of_equal_maxima():
    x = np.zeros(N, np.float32)
    x[[10, 20]] = 3.0
    assert Sampler(SamplingParams(seed=1, temp=0.0), N).sample(x) == 10


def run(s: Sampler, steps=30):
    out = []
    for i in range(steps):
        t = s.sample(logits(100 + i, scale=1.0))
        s.accept(t)
        out.append(t)
    return out


def test_same_seed_same_tokens_and_reset():
    p = SamplingParams(seed=1234, repeat_penalty=1.2, top_k=0, top_p=0.9, min_p=0.0, temp=1.0)
    a, b = Sampler(p, N), Sampler(p, N)
    seq = run(a)
    assert run(b) == seq
    a.reset()
    assert run(a) == seq
    assert run(Sampler(SamplingParams(seed=1235, top_k=0, top_p=0.9, min_p=0.0, temp=1.0), N)) != seq


def test_random_seed():
    p = dict(top_k=0, top_p=1.0, min_p=0.0, temp=1.5)
    a = Sampler(SamplingParams(seed=-1, **p), N)   # -1 on the command line = 0xFFFFFFFF = random
    assert 0 <= a.seed < 2**32
    seq = run(a)
    assert run(Sampler(SamplingParams(seed=a.seed, **p), N)) == seq  # the drawn seed reproduces the run


def test_penalty_window_and_prompt_tokens():
    s = Sampler(SamplingParams(seed=1, repeat_last_n=3, repeat_penalty=2.0, temp=0.0), N)
    pen = s.chain[0]
    for t in (1, 2, 3, 4, 4):
        s.accept(t)
    assert pen.history() == [3, 4, 4] and pen._count == {3: 1, 4: 2}
    x = np.zeros(N, np.float32)
    x[[1, 3, 4]] = [1.0, 2.0, -1.0]
    cur = s.apply(x)
    assert int(cur.ids[cur.selected]) == 1  # 3 halved to 1.0 ties 1 (earlier wins), 4 doubled to -2


def test_logits_shape_checked():
    with pytest.raises(ValueError, match="shape"):
        Sampler(SamplingParams(seed=1), N).sample(np.zeros(N + 1, np.float32))


@pytest.mark.parametrize("kw, msg", [
    (dict(repeat_penalty=0.0), "--repeat-penalty"), (dict(repeat_penalty=float("inf")), "--repeat-penalty"),
    (dict(repeat_last_n=-1), "--repeat-last-n"), (dict(presence_penalty=float("nan")), "--presence-penalty"),
    (dict(frequency_penalty=float("inf")), "--frequency-penalty"), (dict(mirostat=3), "--mirostat"),
    (dict(dry_multiplier=float("nan")), "--dry-multiplier"), (dict(dry_penalty_last_n=-1), "--dry-penalty-last-n"),
    (dict(dry_allowed_length=2.5), "--dry-allowed-length"), (dict(dry_sequence_breakers="\n"), "breaker"),
    (dict(seed=2**32), "--seed"), (dict(top_p=float("nan")), "--top-p"), (dict(top_k=1.5), "--top-k"),
    (dict(samplers=("top_k", "nope")), "unknown sampler"), (dict(logit_bias={1: float("nan")}), "logit-bias"),
])
def test_validate_one_line_errors(kw, msg):
    with pytest.raises(ValueError, match=msg) as e:
        SamplingParams(**kw).validate()
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kw", [
    dict(top_k=-5), dict(top_p=1.5), dict(top_p=-0.1), dict(min_p=2.0), dict(min_p=-1.0), dict(typical=0.0),
    dict(temp=-3.0), dict(xtc_threshold=0.9), dict(seed=-1), dict(repeat_last_n=0),
])
def test_values_llama_cpp_accepts(kw):
    s = Sampler(SamplingParams(**kw, **({} if "seed" in kw else {"seed": 3})), N)
    t = s.sample(logits(9))
    assert 0 <= t < N


def test_out_of_range_values_behave_like_disabled_or_extreme():
    x = logits(11)
    base = dict(seed=5, temp=1.0, top_p=1.0, min_p=0.0)
    off = Sampler(SamplingParams(**base, top_k=0), N).apply(x).size
    assert Sampler(SamplingParams(**base, top_k=-5), N).apply(x).size == off == N
    assert Sampler(SamplingParams(seed=5, top_k=0, min_p=0.0, top_p=1.5), N).apply(x).size == N
    assert Sampler(SamplingParams(seed=5, top_k=0, min_p=0.0, top_p=-0.1), N).apply(x).size == 1
    assert Sampler(SamplingParams(seed=5, top_k=0, top_p=1.0, min_p=2.0), N).apply(x).size == 1
    # temp is clamped to 0 (greedy) like the command line does
    assert Sampler(SamplingParams(seed=5, temp=-3.0), N).sample(x) == int(np.argmax(x))


def test_big_vocab_speed():
    import time
    n = 151936
    s = Sampler(SamplingParams(seed=1, repeat_penalty=1.1), n)
    x = logits(1, n=n)
    s.sample(x)
    t0 = time.perf_counter()
    for _ in range(20):
        s.accept(s.sample(x))
    assert (time.perf_counter() - t0) / 20 < 0.05
