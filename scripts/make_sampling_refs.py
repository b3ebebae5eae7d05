"""Make the sampling reference data in tests/data/sampling/ from llama.cpp itself (via llama-cpp-python).

Run with a Python that has llama-cpp-python 0.3.36 (its low-level ctypes bindings):

    PEER_VENV/bin/python scripts/make_sampling_refs.py

Every case is a sampler chain (a list of ``[name, params]``) applied to seeded random logits with
``llama_sampler_apply`` on a ``llama_token_data_array`` built here; after each step the selected token is
``llama_sampler_accept``-ed into the chain (penalties history, mirostat mu and the RNG streams carry over).
We record the candidates left (ids, logits, p in array order) and the selected index. Logits are not stored:
``np.random.RandomState(seed).standard_normal(n) * scale`` (legacy RandomState is stream-stable across NumPy
versions) rounded to float32; a checksum of them is stored to catch drift.

A second block runs the command-line tools' chain (``common_sampler_init`` order: logit-bias, penalties,
top-n-sigma, top-k, typical, top-p, min-p, xtc, temp-ext, dist; mirostat replaces everything after the bias
with temp + mirostat) for many parameter sets, logit vectors and seeds, recording the picked tokens.

Outputs: tests/data/sampling/refs.json (cases and small results), refs.npz (candidate arrays).
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

import llama_cpp as L

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "sampling"
SEED_NONE = 0xFFFFFFFF


def make_logits(spec: dict) -> np.ndarray:
    x = np.random.RandomState(spec["seed"]).standard_normal(spec["n"]) * spec.get("scale", 1.0)
    x = x.astype(np.float32)
    if spec.get("quantize"):  # coarse values: many exact ties
        x = np.round(x * spec["quantize"]).astype(np.float32) / np.float32(spec["quantize"])
    if spec.get("one_hot"):   # only the best token finite: the dist sampler still draws
        x = np.where(np.arange(x.size) == np.argmax(x), x, np.float32(-np.inf)).astype(np.float32)
    return x


def checksum(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()[:16]


# ----------------------------------------------------------------------------- peer chains

def peer_sampler(name: str, a: dict, n_vocab: int):
    if name == "greedy":
        return L.llama_sampler_init_greedy()
    if name == "dist":
        return L.llama_sampler_init_dist(a["seed"])
    if name == "top_k":
        return L.llama_sampler_init_top_k(a["k"])
    if name == "top_p":
        return L.llama_sampler_init_top_p(a["p"], a.get("min_keep", 0))
    if name == "min_p":
        return L.llama_sampler_init_min_p(a["p"], a.get("min_keep", 0))
    if name == "typical":
        return L.llama_sampler_init_typical(a["p"], a.get("min_keep", 0))
    if name == "temp":
        return L.llama_sampler_init_temp(a["t"])
    if name == "temp_ext":
        return L.llama_sampler_init_temp_ext(a["t"], a["delta"], a["exponent"])
    if name == "top_n_sigma":
        return L.llama_sampler_init_top_n_sigma(a["n"])
    if name == "xtc":
        return L.llama_sampler_init_xtc(a["p"], a["t"], a.get("min_keep", 0), a["seed"])
    if name == "penalties":
        # the binding still declares a leading n_vocab that the C function (4 arguments) no longer has; the
        # integer arguments travel in integer registers, so passing last_n twice is right either way
        return L.llama_sampler_init_penalties(a["last_n"], a["last_n"], a["repeat"], a["freq"], a["present"])
    if name == "logit_bias":
        arr = (L.llama_logit_bias * len(a["biases"]))()
        for i, (t, b) in enumerate(a["biases"]):
            arr[i].token = t
            arr[i].bias = b
        return L.llama_sampler_init_logit_bias(n_vocab, len(a["biases"]), arr)
    if name == "mirostat":
        return L.llama_sampler_init_mirostat(n_vocab, a["seed"], a["tau"], a["eta"], a.get("m", 100))
    if name == "mirostat_v2":
        return L.llama_sampler_init_mirostat_v2(a["seed"], a["tau"], a["eta"])
    raise KeyError(name)


def peer_chain(spec: list, n_vocab: int):
    c = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    for name, a in spec:
        L.llama_sampler_chain_add(c, peer_sampler(name, a, n_vocab))
    return c


def run_chain(chain, logits: np.ndarray):
    n = logits.size
    buf = (L.llama_token_data * n)()
    view = np.ctypeslib.as_array(ctypes.cast(buf, ctypes.POINTER(ctypes.c_uint8)), shape=(n * 12,))
    rec = view.view(np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")]))
    rec["id"] = np.arange(n, dtype=np.int32)
    rec["logit"] = logits
    rec["p"] = 0.0
    arr = L.llama_token_data_array(data=buf, size=n, selected=-1, sorted=False)
    L.llama_sampler_apply(chain, ctypes.byref(arr))
    size = arr.size
    # the samplers may move the data pointer (xtc): read through it
    out = np.ctypeslib.as_array(ctypes.cast(arr.data, ctypes.POINTER(ctypes.c_uint8)), shape=(size * 12,))
    out = out.view(rec.dtype).copy()
    sel = arr.selected
    token = int(out["id"][sel]) if 0 <= sel < size else -1
    return out, int(sel), token, bool(arr.sorted)


# ----------------------------------------------------------------------------- the command-line chain

DEFAULTS = dict(temp=0.8, top_k=40, top_p=0.95, min_p=0.05, typical=1.0, top_n_sigma=-1.0,
                xtc_probability=0.0, xtc_threshold=0.1, repeat_last_n=64, repeat_penalty=1.0,
                presence_penalty=0.0, frequency_penalty=0.0, dynatemp_range=0.0, dynatemp_exp=1.0,
                mirostat=0, mirostat_lr=0.1, mirostat_ent=5.0, min_keep=0, logit_bias=[])


def common_chain_spec(p: dict, seed: int) -> list:
    """``common_sampler_init`` for the default sampler order (as documented in FEATURES.md section 2)."""
    q = dict(DEFAULTS, **p)
    spec = []
    if q["logit_bias"]:
        spec.append(["logit_bias", {"biases": q["logit_bias"]}])
    if q["mirostat"] == 0:
        spec += [
            ["penalties", {"last_n": q["repeat_last_n"], "repeat": q["repeat_penalty"],
                           "freq": q["frequency_penalty"], "present": q["presence_penalty"]}],
            ["top_n_sigma", {"n": q["top_n_sigma"]}],
            ["top_k", {"k": q["top_k"]}],
            ["typical", {"p": q["typical"], "min_keep": q["min_keep"]}],
            ["top_p", {"p": q["top_p"], "min_keep": q["min_keep"]}],
            ["min_p", {"p": q["min_p"], "min_keep": q["min_keep"]}],
            ["xtc", {"p": q["xtc_probability"], "t": q["xtc_threshold"], "min_keep": q["min_keep"],
                     "seed": seed}],
            ["temp_ext", {"t": q["temp"], "delta": q["dynatemp_range"], "exponent": q["dynatemp_exp"]}],
            ["dist", {"seed": seed}],
        ]
    elif q["mirostat"] == 1:
        spec += [["temp", {"t": q["temp"]}],
                 ["mirostat", {"seed": seed, "tau": q["mirostat_ent"], "eta": q["mirostat_lr"], "m": 100}]]
    else:
        spec += [["temp", {"t": q["temp"]}],
                 ["mirostat_v2", {"seed": seed, "tau": q["mirostat_ent"], "eta": q["mirostat_lr"]}]]
    return spec


# ----------------------------------------------------------------------------- cases

def chain_cases() -> list[dict]:
    """Per-sampler and small-chain cases whose full candidate arrays are recorded."""
    cases = []

    def add(name, spec, n=2000, scale=3.0, seed=1, steps=1, history=(), quantize=None, one_hot_steps=()):
        lg = {"n": n, "seed": seed, "scale": scale}
        if quantize:
            lg["quantize"] = quantize
        if one_hot_steps:
            lg["one_hot_steps"] = list(one_hot_steps)
        cases.append({"name": name, "chain": spec, "logits": lg, "steps": steps, "history": list(history)})

    d = lambda s=1234: ["dist", {"seed": s}]  # noqa: E731
    for k in (1, 5, 40, 129, 300, 0, -3, 5000):
        add(f"top_k_{k}", [["top_k", {"k": k}], d()], seed=10 + abs(k))
    for p, mk in ((0.5, 0), (0.9, 0), (0.95, 0), (0.95, 50), (0.0, 0), (1.0, 0), (0.999, 0)):
        add(f"top_p_{p}_{mk}", [["top_p", {"p": p, "min_keep": mk}], d()], seed=20)
    add("top_p_bigvocab", [["top_p", {"p": 0.9, "min_keep": 0}], d()], n=49152, scale=4.0, seed=21)
    add("top_p_bigvocab_wide", [["top_p", {"p": 0.5, "min_keep": 0}], d()], n=49152, scale=1.0, seed=22)
    add("top_p_after_top_k", [["top_k", {"k": 40}], ["top_p", {"p": 0.8}], d()], seed=23)
    for p, mk in ((0.05, 0), (0.2, 0), (0.5, 3), (1.0, 0), (0.0, 0)):
        add(f"min_p_{p}_{mk}", [["min_p", {"p": p, "min_keep": mk}], d()], seed=30)
        add(f"min_p_sorted_{p}_{mk}", [["top_k", {"k": 100}], ["min_p", {"p": p, "min_keep": mk}], d()],
            seed=31)
    for p, mk in ((0.5, 0), (0.9, 0), (0.2, 5), (1.0, 0)):
        add(f"typical_{p}_{mk}", [["top_k", {"k": 200}], ["typical", {"p": p, "min_keep": mk}], d()], seed=40)
    for t in (0.5, 0.8, 1.5, 0.0, -1.0):
        add(f"temp_{t}", [["top_k", {"k": 50}], ["temp", {"t": t}], d()], seed=50)
    add("temp_0_full", [["temp", {"t": 0.0}], d()], seed=51)
    for t, r, e in ((0.8, 0.5, 1.0), (1.0, 0.9, 2.0), (0.3, 0.5, 0.5), (0.8, 0.0, 1.0)):
        add(f"temp_ext_{t}_{r}_{e}", [["top_k", {"k": 60}], ["temp_ext", {"t": t, "delta": r, "exponent": e}],
                                       d()], seed=55)
    for n_s in (1.0, 2.0, 0.0):
        add(f"top_n_sigma_{n_s}", [["top_n_sigma", {"n": n_s}], ["top_k", {"k": 80}], d()], seed=60)
    for p, t in ((1.0, 0.1), (0.5, 0.05), (1.0, 0.6)):
        add(f"xtc_{p}_{t}", [["top_k", {"k": 30}], ["xtc", {"p": p, "t": t, "seed": 77}], d()],
            scale=2.0, seed=65, steps=6)
    hist = [5, 17, 17, 3, 1999, 5, 5, 42, 0, 17]
    for rp, fr, pr, ln in ((1.3, 0.0, 0.0, 64), (1.1, 0.5, 0.3, 64), (0.8, 0.0, 0.0, 64), (1.5, 0.2, 0.0, 4),
                           (1.3, 0.0, 0.0, 0)):
        add(f"penalties_{rp}_{fr}_{pr}_{ln}",
            [["penalties", {"last_n": ln, "repeat": rp, "freq": fr, "present": pr}], d()],
            seed=70, history=hist, scale=1.0, n=2000)
    add("penalties_seq", [["penalties", {"last_n": 8, "repeat": 1.5, "freq": 0.3, "present": 0.2}],
                          ["top_k", {"k": 10}], d(99)], scale=1.0, n=64, seed=71, steps=30)
    add("logit_bias", [["logit_bias", {"biases": [[3, 5.0], [10, -math.inf], [3, 1.5], [1999, 2.0],
                                                   [-1, 3.0], [5000, 1.0]]}], ["top_k", {"k": 20}], d()],
        seed=80)
    for seed in (0, 1, 42, 123456789, 0xFFFFFFFE):
        add(f"dist_seed_{seed}", [d(seed)], n=500, seed=90, steps=5)
    add("dist_single", [["top_k", {"k": 1}], d(7)], n=100, seed=91, steps=4)
    # greedy steps still consume a draw: the picks after them depend on it
    add("dist_after_greedy_steps", [d(8)], n=50, scale=0.5, seed=94, steps=8, one_hot_steps=(0, 2, 3, 6))
    add("temp0_then_sampling", [["temp", {"t": 0.0}], ["top_k", {"k": 1}], d(9)], n=50, seed=95, steps=3)
    add("greedy", [["greedy", {}]], seed=92)
    add("ties_top_k", [["top_k", {"k": 10}], d(3)], n=300, seed=93, quantize=2)
    for tau, eta in ((5.0, 0.1), (3.0, 0.5)):
        add(f"mirostat_{tau}_{eta}", [["temp", {"t": 0.8}],
                                      ["mirostat", {"seed": 11, "tau": tau, "eta": eta, "m": 100}]],
            n=3000, seed=100, steps=25, scale=2.5)
        add(f"mirostat_v2_{tau}_{eta}", [["temp", {"t": 0.8}],
                                         ["mirostat_v2", {"seed": 12, "tau": tau, "eta": eta}]],
            n=3000, seed=110, steps=25, scale=2.5)
    add("default_chain_seq", common_chain_spec({"repeat_penalty": 1.1}, 2024), n=4000, seed=120, steps=20,
        scale=3.0, history=[1, 2, 3, 4])
    return cases


def common_cases() -> list[dict]:
    """Many parameter sets x logit vectors x seeds through the command-line chain: picked tokens only."""
    rs = np.random.RandomState(4321)
    params = [
        {}, {"temp": 0.0}, {"temp": -1.0}, {"temp": 1.5}, {"top_k": 0}, {"top_k": 0, "top_p": 1.0},
        {"top_k": 0, "top_p": 1.0, "min_p": 0.0}, {"top_p": 0.5}, {"min_p": 0.2}, {"typical": 0.7},
        {"repeat_penalty": 1.3, "frequency_penalty": 0.1, "presence_penalty": 0.2},
        {"dynatemp_range": 0.5}, {"top_n_sigma": 1.5}, {"xtc_probability": 0.5, "xtc_threshold": 0.05},
        {"mirostat": 1}, {"mirostat": 2}, {"mirostat": 2, "temp": 0.0},
        {"logit_bias": [[0, 4.0], [7, -math.inf]]},
        {"top_k": 0, "top_p": 0.9, "min_p": 0.0, "temp": 1.0},
        {"top_k": 200, "min_p": 0.01, "top_p": 0.99, "temp": 1.2},
    ]
    out = []
    for pi, p in enumerate(params):
        for j in range(12):
            n = int(rs.choice([50, 1000, 5000, 32000]))
            seed = int(rs.randint(0, 2**32 - 1, dtype=np.int64))
            out.append({"params": p, "seed": seed,
                        "logits": {"n": n, "seed": 1000 * pi + j, "scale": float(rs.choice([0.5, 1.0, 3.0, 8.0])),
                                   "one_hot_steps": [1] if j % 4 == 3 else []},
                        "steps": 3, "history": [int(t) for t in rs.randint(0, 50, size=6)]})
    return out


def step_spec(logits_spec: dict, step: int) -> dict:
    """Step ``step`` of a case: the seed advances; steps listed in ``one_hot_steps`` are one-hot."""
    return dict(logits_spec, seed=logits_spec["seed"] + step,
                one_hot=step in logits_spec.get("one_hot_steps", ()))


def run_case(spec, logits_spec, steps, history):
    n = logits_spec["n"]
    chain = peer_chain(spec, n)
    for t in history:
        L.llama_sampler_accept(chain, t)
    results = []
    for s in range(steps):
        ls = step_spec(logits_spec, s)
        logits = make_logits(ls)
        rec, sel, token, is_sorted = run_chain(chain, logits)
        if token >= 0:
            L.llama_sampler_accept(chain, token)
        results.append((logits, rec, sel, token, is_sorted))
    L.llama_sampler_free(chain)
    return results


# libstdc++'s own distributions (std only, no llama.cpp code), compiled with the system g++ when present
RNG_CPP = r"""
#include <cstdio>
#include <random>
#include <vector>
int main() {
  std::mt19937 d; d.discard(9999); unsigned v = d(); std::printf("{\"default_10000th\": %u, \"seeds\": [", v);
  const unsigned seeds[] = {0u, 1u, 42u, 1234u, 4294967294u};
  for (int si = 0; si < 5; ++si) {
    std::mt19937 g(seeds[si]);
    std::printf("%s{\"seed\": %u, \"u32\": [", si ? ", " : "", seeds[si]);
    for (int i = 0; i < 5; ++i) { unsigned x = g(); std::printf("%s%u", i ? ", " : "", x); }
    std::uniform_real_distribution<double> ud(0.0, 1.0);
    std::printf("], \"double\": [");
    for (int i = 0; i < 4; ++i) { double x = ud(g); std::printf("%s%.17g", i ? ", " : "", x); }
    std::uniform_real_distribution<float> uf(0.0f, 1.0f);
    std::printf("], \"float\": [");
    for (int i = 0; i < 4; ++i) { float x = uf(g); std::printf("%s%.9g", i ? ", " : "", (double)x); }
    std::vector<float> w = {0.1f, 0.2f, 0.3f, 0.4f, 0.25f, 0.0f, 1e-3f};
    std::discrete_distribution<int> dd(w.begin(), w.end());
    std::printf("], \"discrete\": [");
    for (int i = 0; i < 12; ++i) { int x = dd(g); std::printf("%s%d", i ? ", " : "", x); }
    std::discrete_distribution<int> d1({1.0});
    int one = d1(g); unsigned after = g();
    std::printf("], \"discrete_single\": %d, \"u32_after_single\": %u", one, after);
    std::uniform_int_distribution<int> ui(0, 9), ui2(3, 1000003);
    std::printf(", \"uniform_int_0_9\": [");
    for (int i = 0; i < 10; ++i) { int x = ui(g); std::printf("%s%d", i ? ", " : "", x); }
    std::printf("], \"uniform_int_3_1000003\": [");
    for (int i = 0; i < 6; ++i) { int x = ui2(g); std::printf("%s%d", i ? ", " : "", x); }
    std::printf("]}");
  }
  std::printf("]}\n");
}
"""


def make_rng_refs() -> None:
    import shutil
    import subprocess
    import tempfile
    if not shutil.which("g++"):
        print("g++ not found: libstdcxx_rng.json not regenerated", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "rng.cpp", Path(tmp) / "rng"
        src.write_text(RNG_CPP)
        subprocess.run(["g++", "-O2", "-o", str(exe), str(src)], check=True)
        data = json.loads(subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout)
    cxx = subprocess.run(["g++", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    data["compiler"] = cxx
    (OUT / "libstdcxx_rng.json").write_text(json.dumps(data, indent=1) + "\n")


def main() -> int:
    L.llama_backend_init()
    OUT.mkdir(parents=True, exist_ok=True)
    make_rng_refs()
    OUT.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    cases = chain_cases()
    for c in cases:
        res = run_case(c["chain"], c["logits"], c["steps"], c["history"])
        c["results"] = []
        for s, (logits, rec, sel, token, is_sorted) in enumerate(res):
            key = f"{c['name']}/{s}"
            arrays[key + "/ids"] = rec["id"]
            arrays[key + "/logits"] = rec["logit"]
            arrays[key + "/p"] = rec["p"]
            c["results"].append({"selected": sel, "token": token, "size": int(rec.size), "sorted": is_sorted,
                                 "logits_sha": checksum(logits)})
    commons = common_cases()
    for c in commons:
        spec = common_chain_spec(c["params"], c["seed"])
        res = run_case(spec, c["logits"], c["steps"], c["history"])
        c["tokens"] = [r[3] for r in res]
        c["sizes"] = [int(r[1].size) for r in res]
        c["logits_sha"] = [checksum(r[0]) for r in res]
    meta = {"generator": "scripts/make_sampling_refs.py", "llama_cpp_python": L.__version__,
            "defaults": DEFAULTS, "chain_cases": cases, "common_cases": commons}
    (OUT / "refs.json").write_text(json.dumps(meta, indent=1, allow_nan=True) + "\n")
    np.savez_compressed(OUT / "refs.npz", **arrays)
    n_bytes = os.path.getsize(OUT / "refs.npz") + os.path.getsize(OUT / "refs.json")
    print(f"{len(cases)} chain cases, {len(commons)} command-line cases, {n_bytes / 1e6:.2f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
