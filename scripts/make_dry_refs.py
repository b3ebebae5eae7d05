"""Make tests/data/sampling/dry.json: llama.cpp's DRY sampler (via llama-cpp-python) on real vocabularies.

Run with a Python that has llama-cpp-python 0.3.36 (its low-level ctypes bindings):

    PEER_VENV/bin/python scripts/make_dry_refs.py

The vocabulary comes from the reference models (loaded vocab-only): SmolLM2 (byte-level BPE) always,
Gemma 3 (SentencePiece) when it is cached. Each case builds ``llama_sampler_init_dry(vocab, multiplier,
base, allowed_length, penalty_last_n, breakers)``, accepts a token history (tokenized text, or ids chosen
here), and applies the sampler to seeded random logits over the whole vocabulary, where the history's tokens
get a boost so that DRY's choices matter. We record every logit DRY changed (token id and new value), the
sorted flag and the best token after DRY. Then the next token is accepted and the next step runs: the case's
scripted continuation (the rest of a repetitive text, so repeats grow and cross sequence breakers), or, past
its end, the best token (as greedy generation would).

A second block runs the command-line chain with DRY on (``common_sampler_init`` order: penalties, dry,
top-n-sigma, top-k, typical, top-p, min-p, xtc, temp-ext, dist), recording the tokens the seeded chain picks.
A third runs that chain at temperature 0 on SmolLM2's own logits (flash attention off, as
llama-cpp-python's default): llama.cpp's greedy text with DRY on, and without it for comparison.
"""
from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path

import numpy as np

import llama_cpp as L

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_sampling_refs as msr  # noqa: E402  (same logits generator and chain helpers)

OUT = HERE.parent / "tests" / "data" / "sampling" / "dry.json"
CACHE = Path(os.environ.get("LLAMAPY_CACHE", Path.home() / ".cache" / "llamapy")) / "models"
MODELS = {"smollm2": CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": CACHE / "gemma-3-270m-q4_k_m.gguf"}
DEFAULT_BREAKERS = ["\n", ":", '"', "*"]


def load_vocab(path: Path):
    mp = L.llama_model_default_params()
    mp.vocab_only = True
    model = L.llama_model_load_from_file(str(path).encode(), mp)
    if not model:
        raise SystemExit(f"cannot load {path}")
    return model, L.llama_model_get_vocab(model)


def tokenize(vocab, text: str) -> list[int]:
    raw = text.encode("utf-8")
    buf = (L.llama_token * (len(raw) + 8))()
    n = L.llama_tokenize(vocab, raw, len(raw), buf, len(buf), False, False)
    assert n >= 0
    return list(buf[:n])


def make_logits(spec: dict) -> np.ndarray:
    """msr.make_logits plus a boost on chosen tokens (the history's, so that DRY decides between them)."""
    x = msr.make_logits(spec)
    if spec.get("boost_ids"):
        x[np.array(spec["boost_ids"])] += np.float32(spec["boost"])
    return x


def dry_sampler(vocab, d: dict):
    brk = [b.encode("utf-8") for b in d["breakers"]]
    arr = (ctypes.c_char_p * max(len(brk), 1))(*brk)
    return L.llama_sampler_init_dry(vocab, d["multiplier"], d["base"], d["allowed_length"], d["last_n"],
                                    arr, len(brk))


def run_dry_case(vocab, n_vocab: int, case: dict) -> list[dict]:
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    L.llama_sampler_chain_add(chain, dry_sampler(vocab, case["dry"]))
    for t in case["history"]:
        L.llama_sampler_accept(chain, t)
    results = []
    cont = case["continuation"]
    for step in range(case["steps"]):
        logits = make_logits(dict(case["logits"], n=n_vocab, seed=case["logits"]["seed"] + step))
        rec, _, _, is_sorted = msr.run_chain(chain, logits)
        assert rec.size == n_vocab and np.array_equal(rec["id"], np.arange(n_vocab))
        out = rec["logit"]
        changed = np.flatnonzero(out.view(np.uint32) != logits.view(np.uint32))
        best = int(np.argmax(out))
        results.append({"logits_sha": msr.checksum(logits), "changed": changed.tolist(),
                        "values": [float(v) for v in out[changed]], "sorted": is_sorted, "best": best})
        L.llama_sampler_accept(chain, cont[step] if step < len(cont) else best)
    L.llama_sampler_free(chain)
    return results


def common_chain(vocab, n_vocab: int, p: dict, seed: int):
    """``common_sampler_init``'s chain for parameters ``p`` (DRY right after the penalties)."""
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    for name, a in msr.common_chain_spec(p, seed):
        L.llama_sampler_chain_add(chain, msr.peer_sampler(name, a, n_vocab))
        if name == "penalties":
            L.llama_sampler_chain_add(chain, dry_sampler(vocab, {
                "multiplier": p["dry_multiplier"], "base": p.get("dry_base", 1.75),
                "allowed_length": p.get("dry_allowed_length", 2), "last_n": p.get("dry_penalty_last_n", 64),
                "breakers": p.get("dry_sequence_breakers", DEFAULT_BREAKERS)}))
    return chain


def run_common_case(vocab, n_vocab: int, case: dict) -> list[int]:
    chain = common_chain(vocab, n_vocab, case["params"], case["seed"])
    for t in case["history"]:
        L.llama_sampler_accept(chain, t)
    tokens = []
    for step in range(case["steps"]):
        logits = make_logits(dict(case["logits"], n=n_vocab, seed=case["logits"]["seed"] + step))
        _, _, token, _ = msr.run_chain(chain, logits)
        tokens.append(token)
        L.llama_sampler_accept(chain, token)
    L.llama_sampler_free(chain)
    return tokens


GEN_PROMPTS = ["The capital of France is", "I like red apples. I like red apples. I like red apples. I like",
               "Monday: rain\nTuesday: rain\nWednesday: rain\nThursday:", "def add(a, b):\n    return a + b\n\ndef"]
GEN_PARAMS = [{"dry_multiplier": 0.8}, {"dry_multiplier": 2.0, "dry_allowed_length": 1, "dry_base": 1.5},
              {"dry_multiplier": 0.8, "dry_sequence_breakers": []}]
GEN_TOKENS = 48


def generation_cases(path: Path) -> list[dict]:
    """Greedy generation (--temp 0) by llama.cpp with DRY on, from the model's own logits."""
    llm = L.Llama(str(path), n_ctx=512, n_batch=512, n_threads=2, seed=0, verbose=False)
    vocab, n_vocab = llm._model.vocab, llm.n_vocab()
    out = []
    for prompt in GEN_PROMPTS:
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        for p in GEN_PARAMS + [{"dry_multiplier": 0.0}]:
            p = dict(p, temp=0.0)
            chain = common_chain(vocab, n_vocab, p, 1234)
            for t in ids:
                L.llama_sampler_accept(chain, t)
            llm.reset()
            llm.eval(ids)
            toks = []
            while len(toks) < GEN_TOKENS:
                ptr = L.llama_get_logits_ith(llm._ctx.ctx, -1)
                logits = np.ctypeslib.as_array(ptr, shape=(n_vocab,)).astype(np.float32)
                _, _, tok, _ = msr.run_chain(chain, logits)
                L.llama_sampler_accept(chain, tok)
                if L.llama_vocab_is_eog(vocab, tok):
                    break
                toks.append(tok)
                llm.eval([tok])
            L.llama_sampler_free(chain)
            text = llm.detokenize(toks, prev_tokens=ids).decode("utf-8", errors="replace")
            out.append({"prompt": prompt, "params": p, "prompt_ids": list(ids), "tokens": toks, "text": text})
    return out


def dry_cases(vocab, model: str) -> list[dict]:
    cases = []
    tk = lambda s: tokenize(vocab, s)  # noqa: E731

    def add(name, tokens, cont=0, steps=1, boost=4.0, seed=1, scale=1.0, **dry):
        """The last ``cont`` of ``tokens`` are the scripted continuation; ``steps`` at least cont + 1."""
        d = {"multiplier": 0.8, "base": 1.75, "allowed_length": 2, "last_n": 64, "breakers": DEFAULT_BREAKERS}
        d.update(dry)
        tokens = list(tokens)
        history, continuation = tokens[:len(tokens) - cont], tokens[len(tokens) - cont:]
        cases.append({"name": f"{model}/{name}", "model": model, "dry": d, "history": history,
                      "continuation": continuation, "steps": max(steps, cont + 1),
                      "logits": {"seed": seed, "scale": scale, "boost": boost, "boost_ids": sorted(set(tokens))}})

    cat_text = "The cat sat on the mat and looked at the dog. "
    cat = tk(cat_text * 4)
    n_cat = len(tk(cat_text))
    # history: two and a bit copies; the rest of the text is accepted step by step, so the repeat grows
    add("text_repeat", cat, cont=n_cat + 4)
    for al in (-1, 0, 1, 3, 5):
        add(f"text_repeat_allowed_{al}", cat, cont=8, allowed_length=al)
    for base in (1.0, 1.0000005, 1.2, 3.0, 0.5):
        add(f"text_repeat_base_{base}", cat, cont=6, base=base)
    for mult in (2.5, -0.5, 0.0):
        add(f"text_repeat_mult_{mult}", cat, cont=4, multiplier=mult)
    for ln in (0, 5, 9, 10, 17, 1000, -3):
        add(f"text_repeat_last_n_{ln}", cat, cont=8, last_n=ln)
    add("text_repeat_greedy", cat[:len(cat) - n_cat - 3], steps=12)   # no script: best token each step

    # the Z-algorithm example from llama.cpp's comments: a b c c b c y a b c
    a, b, c, y = tk(" apple")[0], tk(" banana")[0], tk(" cherry")[0], tk(" yellow")[0]
    add("z_example", [a, b, c, c, b, c, y, a, b, c, c, b, c, y], cont=4)
    add("z_example_allowed_1", [a, b, c, c, b, c, y, a, b, c, c, b], cont=2, allowed_length=1)
    # history exactly allowed_length long (no-op), one longer, and growing from nothing
    add("short_history_eq", [a, a], allowed_length=2)
    add("short_history_plus_one", [a, a, a], allowed_length=2)
    add("short_history_grow", [a, b, a, b, a, b, a, b], cont=7, allowed_length=1)
    add("short_history_one_token", [a], allowed_length=0)
    # periodic histories longer than the window
    period = tk(" one two three")
    add("periodic_window", period * 40, cont=6, last_n=64)
    add("periodic_small_window", period * 40, cont=6, last_n=8)
    # long exact repeats: the exponent clamp (base 1.75 -> 158) and a penalty that overflows to inf
    rs = np.random.RandomState(7)
    block = [int(t) for t in rs.randint(1000, 40000, size=190)]
    add("clamp_exponent", block + block[:170], cont=10, last_n=600, multiplier=0.8)
    add("clamp_overflow", block + block[:170], cont=10, last_n=600, multiplier=4.0)
    add("clamp_base_3", block + block[:90], cont=6, last_n=600, base=3.0)

    # one-character breakers: newline and colon cut repeats; breaker tokens are never penalised
    form_text = "Name: Alice Smith from Paris in France\nAge: thirty two years old today\n"
    form = tk(form_text * 3)
    n_form = len(tk(form_text))
    add("form_default_breakers", form, cont=n_form)
    add("form_no_breakers", form, cont=n_form, breakers=[])
    add("form_newline_only", form, cont=n_form, breakers=["\n"])
    add("form_allowed_0", form, cont=12, allowed_length=0)
    add("form_allowed_1_last_n_12", form, cont=12, allowed_length=1, last_n=12)
    quotes = tk('He said "yes I will go" and she said "yes I will go" and he said "yes I will go"')
    add("quotes", quotes, cont=8)
    add("quotes_empty_breaker", quotes, cont=8, breakers=["", '"'])
    # multi-token breakers: the breaker's text spans several tokens of the history
    qa = tk("Question: what is it called? Answer: a small cat. " * 3)
    add("qa_multi_token", qa, cont=14, breakers=["Question:", "Answer:"])
    add("qa_multi_token_allowed_1", qa, cont=14, breakers=["Question:", "Answer:"], allowed_length=1)
    add("qa_one_multi", qa, cont=14, breakers=["Answer: a"])
    add("qa_suffix_prefix", qa, cont=14, breakers=["it called? Ans", "cat. Quest"])
    code = tk("def fibonacci(n): return fibonacci(n - 1) + fibonacci(n - 2)\n" * 3)
    add("code_default", code, cont=16)
    add("code_multi_token", code, cont=16, breakers=["fibonacci(", "return f"])
    add("code_breaker_in_word", code, cont=16, breakers=["nacci", "ret"])
    # a breaker longer than 40 bytes (cut), whose digit tail is longer than 20 tokens (cut)
    digits = "1234567890" * 5
    dig = tk((" x " + digits + " y") * 3)
    add("long_breaker", dig, cont=30, breakers=[digits], last_n=400)
    add("long_breaker_45", dig, cont=30, breakers=[digits[:45]], last_n=400)
    # non-ASCII breakers (tokens may hold part of a character)
    dash = tk("wait — what is that — wait — what is that — wait — what is that")
    add("em_dash", dash, cont=8, breakers=["—"])
    add("em_dash_pair", dash, cont=8, breakers=["— w"])
    add("accents", tk("café crème brûlée, café crème brûlée, café crème brûlée"), cont=8, breakers=["è", "é"])
    return cases


def common_cases(vocab, model: str) -> list[dict]:
    """The chain's picks with DRY on: the logits favour the few tokens of a repeated sentence, so that the
    tokens DRY penalises are the likely ones."""
    tk = lambda s: tokenize(vocab, s)  # noqa: E731
    text = tk("Name: Alice\nAge: 30\nName: Alice\nAge: 30\nThe cat sat on the mat. The cat sat on the mat. The")
    favoured = sorted(set(tk(" The cat sat on the mat.")))
    out = []
    for i, p in enumerate([
        {"dry_multiplier": 0.8},
        {"dry_multiplier": 1.5, "dry_base": 2.0, "dry_allowed_length": 1},
        {"dry_multiplier": 0.8, "dry_sequence_breakers": []},
        {"dry_multiplier": 0.8, "repeat_penalty": 1.2, "top_k": 10, "temp": 1.5},
        {"dry_multiplier": 3.0, "dry_penalty_last_n": 16, "dry_sequence_breakers": ["cat sat", "\n"]},
        {"dry_multiplier": 0.8, "temp": 0.0},
        {"dry_multiplier": 2.0, "dry_allowed_length": 3, "dry_penalty_last_n": 200, "top_k": 0, "min_p": 0.1},
    ]):
        out.append({"name": f"{model}/common_{i}", "model": model, "params": p, "seed": 1000 + i,
                    "history": text, "steps": 24,
                    "logits": {"seed": 500 + 10 * i, "scale": 0.5, "boost": 6.0, "boost_ids": favoured}})
    return out


def main() -> int:
    L.llama_backend_init()
    data = {"generator": "scripts/make_dry_refs.py", "llama_cpp_python": L.__version__, "models": {},
            "cases": [], "common_cases": []}
    for name, path in MODELS.items():
        if not path.exists():
            print(f"{path} not found: no {name} cases", file=sys.stderr)
            continue
        model, vocab = load_vocab(path)
        n_vocab = L.llama_vocab_n_tokens(vocab)
        data["models"][name] = {"file": path.name, "n_vocab": n_vocab}
        cases = dry_cases(vocab, name) if name == "smollm2" else [
            c for c in dry_cases(vocab, name) if c["name"].split("/")[1] in (
                "text_repeat", "form_default_breakers", "qa_multi_token", "qa_suffix_prefix", "code_multi_token",
                "em_dash", "accents")]
        for c in cases:
            c["results"] = run_dry_case(vocab, n_vocab, c)
        commons = common_cases(vocab, name)[:3 if name != "smollm2" else None]
        for c in commons:
            c["tokens"] = run_common_case(vocab, n_vocab, c)
        data["cases"] += cases
        data["common_cases"] += commons
        L.llama_model_free(model)
        if name == "smollm2":
            data["generation"] = generation_cases(path)
    OUT.write_text(json.dumps(data, indent=None, separators=(",", ":"), allow_nan=True) + "\n")
    n_changed = sum(len(r["changed"]) for c in data["cases"] for r in c["results"])
    print(f"{len(data['cases'])} DRY cases ({n_changed} penalised logits), {len(data['common_cases'])} chain cases, "
          f"{OUT.stat().st_size / 1e3:.0f} kB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
