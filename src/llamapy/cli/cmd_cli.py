"""`llamapy-cli`: text completion from the command line, as llama-completion does it with -no-cnv.

    llamapy-cli -m model.gguf -p "Once upon a time" -n 128 --temp 0

The prompt is echoed, then the completion streams to stdout; ` [end of text]` follows when the model ends
it. Sampler settings, timings and errors go to stderr. Without -m the default model (SmolLM2-135M-Instruct)
is used. Conversation mode (chat templates) is not implemented: -p is a raw completion prompt.
"""
from __future__ import annotations

import math
import re
import sys
import time

import click

from llamapy.cli.common import fail, import_kernels, one_line, resolve_model, run_command, version_option

CTX_DEFAULT_CAP = 4096      # -c 0 means the training context; capped here to keep the KV cache modest
KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "'": "'", '"': '"', "\\": "\\"}
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")

# GGUF general.sampling.* keys that override the defaults of flags the user did not set.
_MODEL_SAMPLING = {"top_k": ("top_k", int), "top_p": ("top_p", float), "min_p": ("min_p", float),
                   "temp": ("temp", float), "penalty_last_n": ("repeat_last_n", int),
                   "penalty_repeat": ("repeat_penalty", float), "mirostat": ("mirostat", int),
                   "mirostat_tau": ("mirostat_ent", float), "mirostat_eta": ("mirostat_lr", float),
                   "xtc_probability": ("xtc_probability", float), "xtc_threshold": ("xtc_threshold", float)}


def process_escapes(text: str) -> str:
    """llama.cpp's string_process_escapes: \\n \\r \\t \\' \\" \\\\ and \\xHH; other escapes stay as typed."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            nxt = text[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            if nxt == "x" and _HEX2.fullmatch(text[i + 2:i + 4]):
                out.append(chr(int(text[i + 2:i + 4], 16)))
                i += 4
                continue
            out.append("\\" + nxt)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def parse_logit_bias(values) -> dict[int, float]:
    """`-l TOKEN(+/-)BIAS`, e.g. `15043+1`, `15043-inf`."""
    out: dict[int, float] = {}
    for raw in values:
        m = re.fullmatch(r"\s*(\d+)\s*([+-])\s*(\S+)\s*", raw)
        if not m:
            fail(f"--logit-bias: invalid input format {raw!r} (expected TOKEN_ID(+/-)BIAS, e.g. 15043+1)")
        try:
            bias = float(m.group(3))
        except ValueError:
            fail(f"--logit-bias: invalid bias {m.group(3)!r} in {raw!r}")
        if math.isnan(bias):
            fail(f"--logit-bias: bias is NaN in {raw!r}")
        out[int(m.group(1))] = -bias if m.group(2) == "-" else bias
    return out


def load_grammar(grammar, grammar_file, json_schema, json_schema_file):
    """--grammar / --grammar-file / -j / -jf -> a checked LlamaGrammar (or None); bad input is one line."""
    given = [(f, v) for f, v in (("--grammar", grammar), ("--grammar-file", grammar_file),
                                  ("--json-schema", json_schema), ("--json-schema-file", json_schema_file))
             if v is not None]
    if not given:
        return None
    if len(given) > 1:
        fail(f"{given[0][0]} and {given[1][0]} both give a grammar; use one")
    flag, value = given[0]
    from llamapy.grammar import GrammarError, LlamaGrammar, SchemaError
    if flag.endswith("-file"):
        try:
            with open(value, encoding="utf-8") as fh:
                value = fh.read()
        except (OSError, UnicodeDecodeError) as e:
            fail(f"{flag}: failed to open file '{value}': {getattr(e, 'strerror', None) or e}")
    try:
        if flag.startswith("--json"):
            return LlamaGrammar.from_json_schema(value)
        return LlamaGrammar.from_string(value)
    except (GrammarError, SchemaError) as e:
        fail(f"{flag}: {e}" if flag == "--grammar" or flag.startswith("--json") else f"{given[0][1]}: {e}")


def dry_sequence_breakers(values, escape: bool = True) -> tuple[str, ...]:
    """--dry-sequence-breaker, as llama.cpp's: the first use drops the defaults, 'none' empties the list
    (so far); escapes are processed (with -e, the default) after parsing."""
    from llamapy.sampling.dry import DEFAULT_SEQUENCE_BREAKERS
    if not values:
        out = list(DEFAULT_SEQUENCE_BREAKERS)
    else:
        out = []
        for v in values:
            if v == "none":
                out.clear()
            else:
                out.append(v)
    return tuple(process_escapes(b) if escape else b for b in out)


def _out(text: str):
    """Write completion text to stdout as UTF-8 bytes, right away."""
    sys.stdout.buffer.write(text.encode("utf-8", errors="replace"))
    sys.stdout.buffer.flush()


def _err(line: str = ""):
    print(line, file=sys.stderr, flush=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("-m", "--model", "model", metavar="FNAME", envvar="LLAMA_ARG_MODEL",
              help="Model path (default: the cached SmolLM2-135M-Instruct Q4_1).")
@click.option("-p", "--prompt", default=None, help="Prompt to complete.")
@click.option("-f", "--file", "prompt_file", metavar="FNAME", default=None,
              help="Read the prompt from a file (one trailing newline is dropped).")
@click.option("-n", "--predict", "--n-predict", "n_predict", type=int, default=-1, show_default=True,
              help="Tokens to predict (-1 = until end of text or the context is full, -2 = until the context is full).")
@click.option("-c", "--ctx-size", "n_ctx", type=int, default=0, show_default=True,
              help=f"Context size (0 = the model's training context, capped at {CTX_DEFAULT_CAP}).")
@click.option("-b", "--batch-size", "n_batch", type=int, default=2048, show_default=True, help="Logical batch size.")
@click.option("-ub", "--ubatch-size", "n_ubatch", type=int, default=512, show_default=True, help="Physical batch size.")
@click.option("-t", "--threads", "n_threads", type=int, default=-1, show_default=True,
              help="Threads (-1 = every core this process may use).")
@click.option("-s", "--seed", type=int, default=-1, show_default=True, help="RNG seed (-1 = random).")
@click.option("-e", "--escape/--no-escape", "escape", default=True, show_default=True,
              help="Process escapes (\\n, \\t, \\xHH, ...) in the prompt.")
@click.option("--temp", "--temperature", "temp", type=float, default=0.8, show_default=True,
              help="Temperature (<= 0: greedy).")
@click.option("--top-k", type=int, default=40, show_default=True, help="Top-k (<= 0 disables).")
@click.option("--top-p", type=float, default=0.95, show_default=True, help="Top-p (>= 1 disables).")
@click.option("--min-p", type=float, default=0.05, show_default=True, help="Min-p (<= 0 disables).")
@click.option("--typical", "--typical-p", "typical", type=float, default=1.0, show_default=True,
              help="Locally typical sampling p (>= 1 disables).")
@click.option("--repeat-last-n", type=int, default=64, show_default=True, help="Penalty window (0 disables).")
@click.option("--repeat-penalty", type=float, default=1.0, show_default=True, help="Repeat penalty (1 disables).")
@click.option("--presence-penalty", type=float, default=0.0, show_default=True, help="Presence penalty.")
@click.option("--frequency-penalty", type=float, default=0.0, show_default=True, help="Frequency penalty.")
@click.option("--dry-multiplier", type=float, default=0.0, show_default=True, help="DRY multiplier (0 disables).")
@click.option("--dry-base", type=float, default=1.75, show_default=True,
              help="DRY base (values below 1 are ignored).")
@click.option("--dry-allowed-length", type=int, default=2, show_default=True,
              help="DRY: repeats longer than this are penalised.")
@click.option("--dry-penalty-last-n", type=int, default=64, show_default=True,
              help="DRY: tokens scanned for repeats (0 disables).")
@click.option("--dry-sequence-breaker", "dry_breakers", multiple=True, metavar="STRING",
              help="DRY sequence breaker; the first one replaces the defaults ('\\n', ':', '\"', '*'), "
                   "'none' clears them (repeatable).")
@click.option("--mirostat", type=int, default=0, show_default=True, help="Mirostat (0 off, 1 v1, 2 v2).")
@click.option("--mirostat-lr", type=float, default=0.1, show_default=True, help="Mirostat learning rate (eta).")
@click.option("--mirostat-ent", type=float, default=5.0, show_default=True, help="Mirostat target entropy (tau).")
@click.option("-l", "--logit-bias", "logit_bias", multiple=True, metavar="TOKEN(+/-)BIAS",
              help="Add a bias to a token's logit, e.g. 15043+1 or 15043-inf (repeatable).")
@click.option("--ignore-eos", is_flag=True, help="Never end at end-of-generation tokens.")
@click.option("--grammar", "grammar", metavar="GRAMMAR", default=None,
              help="BNF-like grammar to constrain generations (see samples in grammars/ dir).")
@click.option("--grammar-file", "grammar_file", metavar="FNAME", default=None, help="File to read grammar from.")
@click.option("-j", "--json-schema", "json_schema", metavar="SCHEMA", default=None,
              help='JSON schema to constrain generations (https://json-schema.org/), e.g. `{"type": "object"}` '
                   "for any JSON object.")
@click.option("-jf", "--json-schema-file", "json_schema_file", metavar="FILE", default=None,
              help="File containing a JSON schema to constrain generations.")
@click.option("-ctk", "--cache-type-k", "cache_type_k", default="f16", show_default=True,
              help="KV cache type for K (f32, f16, q8_0).")
@click.option("-ctv", "--cache-type-v", "cache_type_v", default="f16", show_default=True,
              help="KV cache type for V (f32, f16; quantized V needs flash attention, which llamapy lacks).")
@click.option("--verbose-prompt", is_flag=True, help="Print the prompt's tokens before generating.")
@click.option("-sp", "--special", is_flag=True, help="Show special tokens in the output.")
@click.option("--display-prompt/--no-display-prompt", default=True, show_default=True,
              help="Echo the prompt before the completion.")
@click.option("-no-cnv", "--no-conversation", "no_cnv", is_flag=True,
              help="Raw completion (the only mode for now; accepted for llama.cpp compatibility).")
@click.option("--perf/--no-perf", "perf", default=True, show_default=True, help="Print timings at the end.")
@version_option()
@click.pass_context
def cli(ctx, model, prompt, prompt_file, n_predict, n_ctx, n_batch, n_ubatch, n_threads, seed, escape, temp,
        top_k, top_p, min_p, typical, repeat_last_n, repeat_penalty, presence_penalty, frequency_penalty,
        dry_multiplier, dry_base, dry_allowed_length, dry_penalty_last_n, dry_breakers, mirostat, mirostat_lr,
        mirostat_ent, logit_bias, ignore_eos, grammar, grammar_file, json_schema,
        json_schema_file, cache_type_k, cache_type_v,
        verbose_prompt, special, display_prompt, no_cnv, perf):
    """Complete a prompt with a GGUF model (llama-completion without conversation mode).

    \b
    Example:
      llamapy-cli -m model.gguf -p "I believe the meaning of life is" -n 128 --temp 0
    """
    # -- flag values (before any loading) -------------------------------------------------------
    for name, value, lo in (("-c", n_ctx, 0), ("-b", n_batch, 1), ("-ub", n_ubatch, 1)):
        if value < lo:
            fail(f"{name} must be >= {lo} (got {value})")
    if n_threads == 0 or n_threads < -1:
        fail(f"-t must be a positive number of threads or -1 (got {n_threads})")
    from llamapy.model.kvcache import kv_cache_type
    for flag, kv, which in (("-ctk", cache_type_k, "K"), ("-ctv", cache_type_v, "V")):
        if kv not in KV_TYPES:
            fail(f"{flag}: unsupported cache type {kv!r} (allowed: {', '.join(KV_TYPES)})")
        try:
            kv_cache_type(kv, which)
        except ValueError as e:
            fail(f"{flag} {kv}: {e}")
    if not -(2**31) <= seed <= 0xFFFFFFFF:
        fail(f"--seed must be a 32-bit integer or -1 (got {seed})")
    if dry_penalty_last_n < 0:
        fail(f"invalid dry-penalty-last-n = {dry_penalty_last_n}")
    bias = parse_logit_bias(logit_bias)
    grammar = load_grammar(grammar, grammar_file, json_schema, json_schema_file)
    breakers = dry_sequence_breakers(dry_breakers, escape)

    if prompt_file is not None:
        try:
            with open(prompt_file, encoding="utf-8", errors="replace", newline="") as fh:
                prompt = fh.read()
        except OSError as e:
            fail(f"failed to open file '{prompt_file}': {e.strerror or e}")
        if prompt.endswith("\n"):
            prompt = prompt[:-1]
    prompt = prompt or ""
    if escape:
        prompt = process_escapes(prompt)

    import numpy as np

    from llamapy.sampling import Sampler, SamplingParams
    params = SamplingParams(
        temp=max(temp, 0.0), top_k=top_k, top_p=top_p, min_p=min_p, typical=typical, repeat_last_n=repeat_last_n,
        repeat_penalty=repeat_penalty, presence_penalty=presence_penalty, frequency_penalty=frequency_penalty,
        dry_multiplier=dry_multiplier, dry_base=dry_base if np.float32(dry_base) >= 1 else 1.75,  # < 1: ignored
        dry_allowed_length=dry_allowed_length, dry_penalty_last_n=dry_penalty_last_n, dry_sequence_breakers=breakers,
        mirostat=mirostat, mirostat_lr=mirostat_lr, mirostat_ent=mirostat_ent,
        seed=seed & 0xFFFFFFFF if seed < 0 else seed, ignore_eos=ignore_eos, logit_bias=bias)
    try:
        params.validate()
    except ValueError as e:
        fail(str(e))

    # -- model ----------------------------------------------------------------------------------
    import_kernels()
    t_load = time.perf_counter()
    model = resolve_model(model)

    from llamapy.gguf import GGUFReader
    from llamapy.model import Model, ModelConfig
    from llamapy.tokenizer import Tokenizer
    try:
        reader = GGUFReader(model)
        cfg = ModelConfig.from_gguf(reader)
        tok = Tokenizer.from_gguf(reader)
    except Exception as e:  # noqa: BLE001 - any malformed file is a one-line error
        fail(f"failed to load model '{model}': {one_line(e)}")
    if n_ctx == 0:
        n_ctx = min(cfg.n_ctx_train, CTX_DEFAULT_CAP)
    n_ctx = max(n_ctx, 8)

    _apply_model_sampling(ctx, reader, params)
    try:
        params.validate()
    except ValueError as e:
        fail(f"model-provided sampling default: {e}")
    bad = [t for t in params.logit_bias if not 0 <= t < cfg.n_vocab]
    if bad:
        fail(f"--logit-bias: token id {bad[0]} out of range [0, {cfg.n_vocab})")

    # -- prompt ---------------------------------------------------------------------------------
    ids = tok.encode(prompt, add_special=True, parse_special=True)
    if not ids:
        if tok.bos_id is not None and tok.add_bos:
            ids = [tok.bos_id]
        else:
            fail("input is empty")
    if len(ids) > n_ctx - 4:
        fail(f"prompt is too long ({len(ids)} tokens, max {n_ctx - 4})")

    try:
        mdl = Model(reader, n_ctx=n_ctx, n_batch=min(n_batch, n_ubatch),
                    n_threads=None if n_threads < 0 else n_threads, type_k=cache_type_k, type_v=cache_type_v)
    except (ValueError, MemoryError, OSError) as e:
        fail(f"failed to load model '{model}': {one_line(e)}")
    load_ms = (time.perf_counter() - t_load) * 1e3

    from llamapy.runtime import system_info
    _err(f"system_info: n_threads = {mdl.n_threads} | {system_info()}")
    if verbose_prompt:
        _err(f"main: prompt: '{prompt}'")
        _err(f"main: number of tokens in prompt = {len(ids)}")
        for t in ids:
            _err(f"{t:6d} -> '{tok.token_to_piece(t, special=True).decode('utf-8', errors='replace')}'")
        _err()

    try:
        sampler = Sampler(params, cfg.n_vocab, tok.vocab.eog_ids, tokenizer=tok, grammar=grammar)
    except ValueError as e:  # a <token> reference this vocabulary lacks
        fail(str(e))
    _print_sampler(sampler, params, n_ctx, mdl.n_batch, n_predict)

    # -- generate -------------------------------------------------------------------------------
    from llamapy.generate import Generation, GenStats, format_perf
    stats = GenStats(load_ms=load_ms)
    if display_prompt:
        dec = tok.stream(special=special)
        _out("".join(dec.feed(t) for t in ids) + dec.flush())
    gen = Generation(mdl, tok, sampler, ids, max_tokens=n_predict if n_predict >= 0 else -1, special=special,
                     stats=stats, n_ctx=n_ctx)
    try:
        for step in gen:
            _out(step.text)
    except KeyboardInterrupt:
        _err()
        if perf:
            for line in format_perf(stats.finish()):
                _err(line)
        _err("Interrupted by user")
        sys.exit(130)
    if gen.finish_reason == "stop":
        _out(" [end of text]\n")
    elif gen.finish_reason == "context":
        _err("\n\nmain: context full and context shift is disabled => stopping")
    if perf:
        _err("\n")
        for line in format_perf(stats):
            _err(line)


def _apply_model_sampling(ctx, reader, params):
    """GGUF general.sampling.* values replace the defaults of flags not given on the command line."""
    flag_of = {"top_k": "top_k", "top_p": "top_p", "min_p": "min_p", "temp": "temp", "repeat_last_n": "repeat_last_n",
               "repeat_penalty": "repeat_penalty", "mirostat": "mirostat", "mirostat_ent": "mirostat_ent",
               "mirostat_lr": "mirostat_lr"}
    for key, (field, conv) in _MODEL_SAMPLING.items():
        value = reader.get(f"general.sampling.{key}")
        if value is None:
            continue
        param = flag_of.get(field)
        if param is not None and ctx.get_parameter_source(param) not in (click.core.ParameterSource.DEFAULT, None):
            continue
        try:
            setattr(params, field, conv(value))
        except (TypeError, ValueError):
            pass


def _print_sampler(sampler, p, n_ctx, n_batch, n_predict):
    _err(f"sampler seed: {sampler.seed}")
    _err("sampler params: \n"
         f"\trepeat_last_n = {p.repeat_last_n}, repeat_penalty = {p.repeat_penalty:.3f}, "
         f"frequency_penalty = {p.frequency_penalty:.3f}, presence_penalty = {p.presence_penalty:.3f}\n"
         f"\tdry_multiplier = {p.dry_multiplier:.3f}, dry_base = {p.dry_base:.3f}, "
         f"dry_allowed_length = {p.dry_allowed_length}, dry_penalty_last_n = {p.dry_penalty_last_n}\n"
         f"\ttop_k = {p.top_k}, top_p = {p.top_p:.3f}, min_p = {p.min_p:.3f}, "
         f"xtc_probability = {p.xtc_probability:.3f}, xtc_threshold = {p.xtc_threshold:.3f}, "
         f"typical_p = {p.typical:.3f}, top_n_sigma = {p.top_n_sigma:.3f}, temp = {p.temp:.3f}\n"
         f"\tmirostat = {p.mirostat}, mirostat_lr = {p.mirostat_lr:.3f}, mirostat_ent = {p.mirostat_ent:.3f}")
    _err(f"sampler chain: {' -> '.join(s.name for s in sampler.chain)}")
    _err(f"generate: n_ctx = {n_ctx}, n_batch = {n_batch}, n_predict = {n_predict}, n_keep = 0")
    _err()


def main(argv=None):
    run_command(cli, "llamapy-cli", argv)


if __name__ == "__main__":
    main()
