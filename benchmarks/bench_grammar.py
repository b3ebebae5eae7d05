"""Cost of grammar-constrained generation per token, beside unconstrained generation, on the default model.

    python benchmarks/bench_grammar.py [--tokens 64] [--seeds 5] [--rounds 3] [--threads 2]

Every case generates from the same prompt at temperature 1 for the same seeds; the cases alternate within
each round, so machine load hits them alike. Reported per generated token: the decode time (model
evaluation + sampling, prompt evaluation excluded), the sampling time alone (where the grammar work is:
checking the chosen token, and on a rejection the full allowed-token mask and a second pass of the chain),
the share of tokens that needed the mask, and the decode time relative to unconstrained generation.
The per-vocabulary token table is built once, before timing (it is cached per tokenizer).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0},
                                           "city": {"type": "string"}}, "required": ["name", "age"]}


def cases():
    from llamapy.grammar import json_schema_to_gbnf
    read = lambda name: (ROOT / "grammars" / f"{name}.gbnf").read_text()  # noqa: E731
    return {"unconstrained": None, "json.gbnf": read("json"), "schema (-j)": json_schema_to_gbnf(PERSON),
            "arithmetic.gbnf": read("arithmetic"), "english.gbnf": read("english"), "c.gbnf": read("c")}


class CountingMatcher:
    """Wraps a GrammarMatcher to count how often the sampler needed the full mask."""

    def __init__(self, inner):
        self.inner, self.masks = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def allowed_mask(self):
        self.masks += 1
        return self.inner.allowed_mask()


def run_case(mdl, tok, prompt_ids, gbnf, seed, n_tokens):
    from llamapy.generate import Generation
    from llamapy.grammar import GrammarMatcher
    from llamapy.sampling import Sampler, SamplingParams
    sampler = Sampler(SamplingParams(seed=seed, temp=1.0), mdl.n_vocab, tok.vocab.eog_ids, tokenizer=tok)
    counter = None
    if gbnf is not None:
        counter = CountingMatcher(GrammarMatcher(gbnf, tok))
        sampler.grammar = counter
    gen = Generation(mdl, tok, sampler, prompt_ids, max_tokens=n_tokens)
    gen.run()
    st = gen.stats
    return st.eval_ms + st.sample_ms, st.sample_ms, st.n_sample, counter.masks if counter else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()

    from llamapy.gguf import GGUFReader
    from llamapy.grammar import TokenTable
    from llamapy.model import Model
    from llamapy.models import model_path
    from llamapy.tokenizer import Tokenizer
    reader = GGUFReader(model_path("smollm2"))
    tok = Tokenizer.from_gguf(reader)
    mdl = Model(reader, n_ctx=512, n_batch=512, n_threads=args.threads)
    t0 = time.perf_counter()
    TokenTable.of(tok)
    table_ms = (time.perf_counter() - t0) * 1e3
    prompt = tok.encode("Write something useful:\n", add_special=True, parse_special=True)
    all_cases = cases()
    per_round: dict[str, list] = {name: [] for name in all_cases}
    totals = {name: [0.0, 0.0, 0, 0] for name in all_cases}
    run_case(mdl, tok, prompt, None, 0, 8)   # warm-up
    for _ in range(args.rounds):
        for name, gbnf in all_cases.items():
            decode = sample = n = masks = 0
            for seed in range(args.seeds):
                d, s, k, m = run_case(mdl, tok, prompt, gbnf, seed, args.tokens)
                decode, sample, n, masks = decode + d, sample + s, n + k, masks + m
            per_round[name].append(decode / n)
            t = totals[name]
            t[0], t[1], t[2], t[3] = t[0] + decode, t[1] + sample, t[2] + n, t[3] + masks
    base = statistics.median(per_round["unconstrained"])
    rows = []
    for name in all_cases:
        decode_ms, sample_ms, n, masks = totals[name]
        med = statistics.median(per_round[name])
        rows.append({"case": name, "tokens": n, "ms_per_token": round(med, 3),
                     "sample_ms_per_token": round(sample_ms / n, 3), "mask_share": round(masks / n, 3),
                     "vs_unconstrained": round(med / base, 2)})
    if args.json:
        print(json.dumps({"token_table_ms": round(table_ms, 1), "rows": rows}, indent=1))
        return
    print(f"token table (once per vocabulary): {table_ms:.0f} ms")
    print("| case | tokens | decode ms/token | sampling ms/token | tokens needing the mask | vs unconstrained |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['case']} | {r['tokens']} | {r['ms_per_token']:.2f} | {r['sample_ms_per_token']:.2f} | "
              f"{100 * r['mask_share']:.0f}% | {r['vs_unconstrained']:.2f}x |")


if __name__ == "__main__":
    main()
