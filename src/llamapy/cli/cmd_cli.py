"""`llamapy-cli`: llama-completion's command line: text completion, interactive mode, conversation mode.

    llamapy-cli -m model.gguf -p "Once upon a time" -n 128 --temp 0 -no-cnv    # plain completion
    llamapy-cli -sys "You are a helpful assistant"                            # chat (default model)
    llamapy-cli -no-cnv -i -r "User:" -f prompts/chat-with-bob.txt             # interactive

The prompt is echoed, then the completion streams to stdout; ` [end of text]` follows when the model ends
it. Sampler settings, timings and errors go to stderr. Without -m the default model (SmolLM2-135M-Instruct)
is used. Conversation mode is on when the model has a chat template (-no-cnv turns it off): -p is the first
user message, -sys the system message, and each turn is rendered with the chat template.
"""
from __future__ import annotations

import math
import re
import sys
import time

import click

from llamapy.cli.common import (fail, import_kernels, one_line, process_escapes, resolve_model, run_command,
                                version_option)

CTX_DEFAULT_CAP = 4096      # -c 0 means the training context; capped here to keep the KV cache modest
KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")

# GGUF general.sampling.* keys that override the defaults of flags the user did not set.
_MODEL_SAMPLING = {"top_k": ("top_k", int), "top_p": ("top_p", float), "min_p": ("min_p", float),
                   "temp": ("temp", float), "penalty_last_n": ("repeat_last_n", int),
                   "penalty_repeat": ("repeat_penalty", float), "mirostat": ("mirostat", int),
                   "mirostat_tau": ("mirostat_ent", float), "mirostat_eta": ("mirostat_lr", float),
                   "xtc_probability": ("xtc_probability", float), "xtc_threshold": ("xtc_threshold", float)}


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


def _err(line: str = ""):
    print(line, file=sys.stderr, flush=True)


def _chat_names() -> tuple[str, ...]:
    from llamapy.chat.builtin import BUILTIN_NAMES
    return BUILTIN_NAMES


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
@click.option("-cnv/-no-cnv", "--conversation/--no-conversation", "conversation", default=None,
              help="Conversation mode: chat through the chat template, interactive (default: on when the "
                   "model has a chat template or one is given).")
@click.option("-st", "--single-turn", is_flag=True,
              help="Conversation mode: answer one turn, then exit (no input is read when -p gives the turn).")
@click.option("-sys", "--system-prompt", "system_prompt", default=None, help="System message (conversation mode).")
@click.option("-sysf", "--system-prompt-file", "system_prompt_file", metavar="FNAME", default=None,
              help="Read the system message from a file (one trailing newline is dropped).")
@click.option("--chat-template", "chat_template", metavar="NAME", default=None,
              help="Use this built-in chat template instead of the model's: "
                   + ", ".join(_chat_names()) + ".")
@click.option("--chat-template-file", "chat_template_file", metavar="JINJA_FILE", default=None,
              help="Use this Jinja chat template instead of the model's.")
@click.option("--jinja/--no-jinja", "jinja", default=False, show_default=True,
              help="Render the model's own Jinja chat template (off: the llama.cpp built-in it is recognised "
                   "as, as llama-completion does; a template no built-in matches is rendered as Jinja).")
@click.option("-i", "--interactive", is_flag=True, help="Interactive mode: the user types after a reverse "
              "prompt, an end of text, -n tokens or Ctrl+C.")
@click.option("-if", "--interactive-first", "interactive_first", is_flag=True,
              help="Interactive mode, waiting for input right away.")
@click.option("-r", "--reverse-prompt", "reverse_prompts", multiple=True, metavar="PROMPT",
              help="Stop generating at PROMPT; in interactive mode hand control to the user (repeatable).")
@click.option("--in-prefix", default="", metavar="STRING",
              help="Text put before each user input (turns the chat template off).")
@click.option("--in-suffix", default="", metavar="STRING",
              help="Text put after each user input (turns the chat template off).")
@click.option("--in-prefix-bos", is_flag=True, help="Put a BOS token before each user input (turns the chat "
              "template off).")
@click.option("-mli", "--multiline-input", "multiline", is_flag=True,
              help="Input goes on over several lines until one ends with '\\' (or '/').")
@click.option("-co", "--color", "color", default="auto", show_default=True, is_flag=False, flag_value="on",
              metavar="[on|off|auto]", help="Colour the prompt and the user's input apart from the generation "
              "(auto: when printing to a terminal).")
@click.option("--simple-io", is_flag=True, help="Accepted for llama.cpp compatibility (input is always "
              "read line by line).")
@click.option("--keep", "n_keep", type=int, default=0, show_default=True,
              help="Tokens of the prompt kept when the context shifts (-1 = all).")
@click.option("--context-shift/--no-context-shift", "context_shift", default=False, show_default=True,
              help="When the context is full, drop half of the tokens after --keep and go on.")
@click.option("--prompt-cache", "prompt_cache", metavar="FNAME", default=None,
              help="File caching the evaluated prompt: a later run with the same prompt start skips evaluating it.")
@click.option("--prompt-cache-all", is_flag=True,
              help="Save the user's input and the generation to the prompt cache too.")
@click.option("--prompt-cache-ro", is_flag=True, help="Use the prompt cache but never update it.")
@click.option("--perf/--no-perf", "perf", default=True, show_default=True, help="Print timings at the end.")
@click.option("--warmup/--no-warmup", "warmup", default=True, show_default=True,
              help="Run the model once on BOS/EOS before the prompt (its weights paged in, out of the timings).")
@version_option()
@click.pass_context
def cli(ctx, model, prompt, prompt_file, n_predict, n_ctx, n_batch, n_ubatch, n_threads, seed, escape, temp,
        top_k, top_p, min_p, typical, repeat_last_n, repeat_penalty, presence_penalty, frequency_penalty,
        dry_multiplier, dry_base, dry_allowed_length, dry_penalty_last_n, dry_breakers, mirostat, mirostat_lr,
        mirostat_ent, logit_bias, ignore_eos, grammar, grammar_file, json_schema,
        json_schema_file, cache_type_k, cache_type_v,
        verbose_prompt, special, display_prompt, conversation, single_turn, system_prompt, system_prompt_file,
        chat_template, chat_template_file, jinja, interactive, interactive_first, reverse_prompts, in_prefix,
        in_suffix, in_prefix_bos, multiline, color, simple_io, n_keep, context_shift, prompt_cache,
        prompt_cache_all, prompt_cache_ro, perf, warmup):
    """Complete a prompt, or chat, with a GGUF model (llama-completion's flags).

    \b
    Examples:
      llamapy-cli -m model.gguf -p "I believe the meaning of life is" -n 128 -no-cnv
      llamapy-cli -m model.gguf -sys "You are a helpful assistant"
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
        prompt = _read_text(prompt_file)
    if system_prompt_file is not None:
        system_prompt = _read_text(system_prompt_file)
    prompt, system_prompt = prompt or "", system_prompt or ""
    if escape:   # as llama.cpp: the prompt, the input prefix/suffix and the reverse prompts (not -sys)
        prompt, in_prefix, in_suffix = process_escapes(prompt), process_escapes(in_prefix), process_escapes(in_suffix)
        reverse_prompts = tuple(process_escapes(r) for r in reverse_prompts)
    color = color.lower()
    if color not in ("on", "off", "auto", "true", "1", "false", "0", "enabled", "disabled"):
        fail(f"unknown value for --color: '{color}'")
    if prompt_cache_all and (interactive or interactive_first):
        fail("--prompt-cache-all not supported in interactive mode yet")

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

    # -- chat template ----------------------------------------------------------------------------
    has_template = bool(chat_template or chat_template_file or reader.get("tokenizer.chat_template"))
    auto_conversation = conversation is None
    if auto_conversation:
        conversation = has_template
    template_off = bool(in_prefix or in_suffix or in_prefix_bos)   # these turn the chat template off
    chat = None
    if (conversation and not template_off) or chat_template or chat_template_file:
        chat = _chat_template(reader, tok, chat_template, chat_template_file, jinja)   # bad flags fail here
    if auto_conversation and conversation:
        _err("main: chat template is available, enabling conversation mode (disable it with -no-cnv)")
    elif conversation and not has_template:
        _err("main: chat template is not available or is not supported. "
             "This may cause the model to output suboptimal responses")
    if not conversation or template_off:
        chat = None
    if conversation:
        if chat is None:
            _err("main: in-suffix/prefix is specified, chat template will be disabled")
        else:
            if prompt and not system_prompt:
                _err("*** User-specified prompt will pre-start conversation, "
                     "did you mean to set --system-prompt (-sys) instead?")
            _err(f"main: chat template example:\n{_chat_example(chat)}\n")

    try:
        mdl = Model(reader, n_ctx=n_ctx, n_batch=min(n_batch, n_ubatch),
                    n_threads=None if n_threads < 0 else n_threads, type_k=cache_type_k, type_v=cache_type_v)
    except (ValueError, MemoryError, OSError) as e:
        fail(f"failed to load model '{model}': {one_line(e)}")
    if warmup:
        # as llama.cpp: one decode of [BOS, EOS] pages every weight in, so the prompt eval time measures the
        # model, not the disk; the prompt then overwrites those cache positions
        ids = [t for t in (tok.bos_id, tok.eos_id) if t is not None] or [0]
        mdl.eval(ids[:mdl.n_batch], 0)
    load_ms = (time.perf_counter() - t_load) * 1e3

    # -- the run --------------------------------------------------------------------------------
    from llamapy.cli.console import Console, tty_can_use_colors
    from llamapy.cli.session import Options, Session, SessionError
    from llamapy.generate import GenStats, format_perf
    use_color = color in ("on", "true", "1", "enabled") or (color == "auto" and tty_can_use_colors())
    opts = Options(n_ctx=n_ctx, n_predict=n_predict, n_batch=n_batch, n_keep=n_keep, context_shift=context_shift,
                   interactive=interactive, interactive_first=interactive_first, conversation=conversation,
                   single_turn=single_turn, reverse_prompts=reverse_prompts, in_prefix=in_prefix,
                   in_suffix=in_suffix, in_prefix_bos=in_prefix_bos, multiline=multiline, escape=escape,
                   special=special, display_prompt=display_prompt, verbose_prompt=verbose_prompt,
                   prompt_cache=prompt_cache, prompt_cache_all=prompt_cache_all, prompt_cache_ro=prompt_cache_ro)
    stats = GenStats(load_ms=load_ms)

    def print_perf():
        if perf:
            for line in format_perf(stats):
                _err(line)

    try:
        sampler = Sampler(params, cfg.n_vocab, tok.vocab.eog_ids, tokenizer=tok, grammar=grammar)
    except ValueError as e:  # a <token> reference this vocabulary lacks
        fail(str(e))
    session = Session(mdl, tok, sampler, opts, Console(color=use_color), chat=chat, stats=stats,
                      print_perf=print_perf)
    try:
        session.prepare(prompt, system_prompt)
    except SessionError as e:
        fail(str(e))
    from llamapy.runtime import system_info
    _err(f"system_info: n_threads = {mdl.n_threads} | {system_info()}")
    session.print_mode()
    _print_sampler(sampler, params, n_ctx, mdl.n_batch, n_predict, session.n_keep)
    session.print_banner()
    session.run()
    try:
        session.finish()
    except OSError as e:
        fail(f"failed to save the prompt cache '{prompt_cache}': {e.strerror or e}")
    _err("\n")
    stats.finish()
    print_perf()


def _read_text(path: str) -> str:
    """-f / -sysf: the file's text, one trailing newline dropped."""
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as fh:
            text = fh.read()
    except OSError as e:
        fail(f"failed to open file '{path}': {e.strerror or e}")
    return text[:-1] if text.endswith("\n") else text


def _chat_template(reader, tok, name, file, jinja):
    from llamapy.chat import ChatTemplate, ChatTemplateError, detect_template
    if name is None and file is None and not jinja:
        # llama-completion without --jinja renders the built-in the model's template is recognised as
        # (chatml when the model has none); the Jinja text is rendered only when nothing matches
        source = reader.get("tokenizer.chat_template")
        name = detect_template(str(source)) if source else "chatml"
    try:
        return ChatTemplate.for_model(reader, name=name, file=file, tokenizer=tok)
    except ChatTemplateError as e:
        fail(f"--chat-template-file: {one_line(e)}")
    except ValueError as e:
        fail(f"--chat-template: {one_line(e)}")


def _chat_example(chat) -> str:
    """The conversation llama.cpp shows to illustrate the template in use."""
    from llamapy.chat import ChatTemplateError
    example = [{"role": "system", "content": "You are a helpful assistant"}, {"role": "user", "content": "Hello"},
               {"role": "assistant", "content": "Hi there"}, {"role": "user", "content": "How are you?"}]
    try:
        return chat.render(example, add_generation_prompt=True)
    except ChatTemplateError as e:
        fail(one_line(e))


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


def _print_sampler(sampler, p, n_ctx, n_batch, n_predict, n_keep):
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
    _err(f"generate: n_ctx = {n_ctx}, n_batch = {n_batch}, n_predict = {n_predict}, n_keep = {n_keep}")
    _err()


def main(argv=None):
    run_command(cli, "llamapy-cli", argv)


if __name__ == "__main__":
    main()
