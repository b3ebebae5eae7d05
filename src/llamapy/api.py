"""``Llama``: the Python API, shaped like llama-cpp-python's ``llama_cpp.Llama``.

    from llamapy import Llama
    llm = Llama("model.gguf", n_ctx=2048, n_threads=4, verbose=False)
    out = llm("Once upon a time", max_tokens=32, temperature=0.0, stop=["\\n\\n"])
    out["choices"][0]["text"], out["choices"][0]["finish_reason"], out["usage"]
    for chunk in llm("Once upon a time", max_tokens=32, stream=True):
        print(chunk["choices"][0]["text"], end="")

Completions return the OpenAI-shaped dicts llama-cpp-python returns; stop strings are cut from the text.
Sampling is llama.cpp's chain (``llamapy.sampling``) with the same defaults and the same seeded RNG.
"""
from __future__ import annotations

import os
import sys
import time
import uuid
from typing import Iterator

from llamapy.chat import ChatTemplate
from llamapy.generate import Generation, GenStats, format_perf
from llamapy.grammar import response_format_grammar
from llamapy.logprobs import chat_logprobs, chat_n_probs, completion_logprobs, completion_n_probs
from llamapy.sampling import DEFAULT_SEED, Sampler, SamplingParams

__all__ = ["Llama"]


class Llama:
    """A loaded model, its tokenizer and a KV cache of ``n_ctx`` tokens.

    ``n_ctx=0`` uses the context the model was trained for. ``type_k``/``type_v``: KV cache types as ggml type
    ids (llama-cpp-python's convention: 0 f32, 1 f16, 8 q8_0) or names; None is f16. A quantized V cache is
    refused (llama.cpp needs flash attention for it). ``seed`` is the default sampling seed for
    every completion (``-1`` / 0xFFFFFFFF: random each time); ``verbose=False`` writes nothing to stderr.
    ``chat_format``: a built-in chat template name (``llamapy.chat.BUILTIN_NAMES``) for
    ``create_chat_completion``; None uses the model's own template.
    Other llama-cpp-python keyword arguments (``n_gpu_layers``, ``use_mmap``, ...) are accepted and ignored.
    """

    def __init__(self, model_path: str | os.PathLike, *, n_ctx: int = 512, n_batch: int = 512,
                 n_ubatch: int = 512, n_threads: int | None = None, n_threads_batch: int | None = None,
                 type_k: int | str | None = None, type_v: int | str | None = None,
                 seed: int = DEFAULT_SEED, last_n_tokens_size: int = 64, chat_format: str | None = None,
                 verbose: bool = True, **kwargs):
        from llamapy.gguf import GGUFReader
        from llamapy.model import Model, ModelConfig
        from llamapy.tokenizer import Tokenizer

        self.model_path = os.fspath(model_path)
        self.verbose = verbose
        if not os.path.isfile(self.model_path):
            raise ValueError(f"Model path does not exist: {self.model_path}")
        for name, value in (("n_ctx", n_ctx), ("n_batch", n_batch), ("n_ubatch", n_ubatch)):
            if int(value) != value or value < 0 or (value == 0 and name != "n_ctx"):
                raise ValueError(f"{name} must be a positive integer (got {value!r})")
        if last_n_tokens_size < 0:
            raise ValueError(f"last_n_tokens_size must be >= 0 (got {last_n_tokens_size!r})")
        t0 = time.perf_counter()
        reader = GGUFReader(self.model_path)
        if n_ctx == 0:
            n_ctx = ModelConfig.from_gguf(reader).n_ctx_train
        self._model = Model(reader, n_ctx=int(n_ctx), n_batch=min(int(n_batch), int(n_ubatch)),
                            n_threads=n_threads, type_k="f16" if type_k is None else type_k,
                            type_v="f16" if type_v is None else type_v)
        self.tokenizer_ = Tokenizer.from_gguf(reader)
        self.load_ms = (time.perf_counter() - t0) * 1e3
        self._n_ctx = int(n_ctx)
        self.n_batch = int(n_batch)
        self.n_threads = self._model.n_threads
        self._seed = int(seed)
        self.last_n_tokens_size = int(last_n_tokens_size)
        self._first_call = True
        # None: the GGUF's tokenizer.chat_template (chatml without one); else a built-in name (llamapy.chat)
        self.chat_format = chat_format
        self._chat_template = ChatTemplate.builtin(chat_format) if chat_format is not None else None
        if verbose:
            cfg = self._model.config
            print(f"llama_model_load: loaded {self.model_path} (arch = {cfg.arch}, n_layer = {cfg.n_layer}, "
                  f"n_embd = {cfg.n_embd}, n_vocab = {cfg.n_vocab}, n_ctx_train = {cfg.n_ctx_train})",
                  file=sys.stderr)
            print(f"llama_context: n_ctx = {self._n_ctx}, n_batch = {self._model.n_batch}, "
                  f"n_threads = {self.n_threads}, type_k = {self._model.type_k}, type_v = {self._model.type_v}",
                  file=sys.stderr)

    # -- model facts ---------------------------------------------------------------------------

    def n_ctx(self) -> int:
        return self._n_ctx

    def n_vocab(self) -> int:
        return self._model.n_vocab

    def n_embd(self) -> int:
        return self._model.config.n_embd

    def token_bos(self) -> int:
        bos = self.tokenizer_.bos_id
        return -1 if bos is None else bos

    def token_eos(self) -> int:
        eos = self.tokenizer_.eos_id
        return -1 if eos is None else eos

    @property
    def metadata(self) -> dict:
        out = {}
        for key in self._model.reader.fields:
            value = self._model.reader.get(key)
            if isinstance(value, (str, int, float, bool)):
                out[key] = str(value)
        return out

    # -- tokens --------------------------------------------------------------------------------

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        """Token ids of UTF-8 ``text`` (BOS/EOS added as the vocabulary asks when ``add_bos``;
        control-token texts parsed when ``special``)."""
        if isinstance(text, str):
            raise TypeError("tokenize() takes bytes; encode the text first (text.encode('utf-8'))")
        return self.tokenizer_.encode(bytes(text).decode("utf-8", errors="replace"),
                                      add_special=add_bos, parse_special=special)

    def detokenize(self, tokens, prev_tokens=None, special: bool = False) -> bytes:
        """The bytes the tokens stand for (control tokens rendered only when ``special``)."""
        return self.tokenizer_.detokenize([int(t) for t in tokens], unparse_special=special)

    # -- completion ----------------------------------------------------------------------------

    def create_completion(self, prompt: str | list[int] = "", suffix: str | None = None,
                          max_tokens: int | None = 16, temperature: float = 0.8, top_p: float = 0.95,
                          min_p: float = 0.05, typical_p: float = 1.0, logprobs: int | None = None,
                          echo: bool = False, stop: str | list[str] | None = None,
                          frequency_penalty: float = 0.0, presence_penalty: float = 0.0,
                          repeat_penalty: float = 1.0, top_k: int = 40, stream: bool = False,
                          seed: int | None = None, mirostat_mode: int = 0, mirostat_tau: float = 5.0,
                          mirostat_eta: float = 0.1, model: str | None = None, logit_bias: dict | None = None,
                          dry_multiplier: float = 0.0, dry_base: float = 1.75, dry_allowed_length: int = 2,
                          dry_penalty_last_n: int = 64, dry_sequence_breakers: list[str] | None = None,
                          grammar=None, **kwargs):
        """Complete ``prompt`` (text, tokenized with special tokens parsed, or token ids).

        DRY ("don't repeat yourself", off unless ``dry_multiplier`` != 0) takes llama.cpp server's names:
        ``dry_base`` below 1 means the default, ``dry_sequence_breakers`` None the default breakers
        ("\\n", ":", "\"", "*"), else a non-empty list of strings. ``grammar``: a ``LlamaGrammar`` (or GBNF
        text) the completion must follow. ``logprobs=N``: each token's log probability and the N most likely
        tokens' (log-softmax of the raw logits; llamapy.logprobs), in ``choices[0]["logprobs"]`` (not with echo).

        Returns ``{"id", "object": "text_completion", "created", "model", "choices": [{"text", "index",
        "logprobs", "finish_reason"}], "usage": {...}}``, or with ``stream=True`` an iterator of chunks
        of the same shape (without usage; the last chunk has empty text and the finish_reason).
        ``max_tokens`` None or <= 0: until end of generation or the context is full.
        """
        if suffix is not None:
            raise ValueError("suffix (infill) is not supported yet")
        n_probs = completion_n_probs(logprobs, echo)
        for name in ("logits_processor", "stopping_criteria"):
            if kwargs.get(name) is not None:
                raise ValueError(f"{name} is not supported yet")
        dry = self._dry_params(dry_multiplier, dry_base, dry_allowed_length, dry_penalty_last_n,
                               dry_sequence_breakers)
        gen, prompt_ids = self._start(prompt, max_tokens, temperature, top_p, min_p, typical_p, stop,
                                      frequency_penalty, presence_penalty, repeat_penalty, top_k, seed,
                                      mirostat_mode, mirostat_tau, mirostat_eta, logit_bias, dry, grammar,
                                      n_probs=n_probs)
        head = {"id": f"cmpl-{uuid.uuid4()}", "object": "text_completion", "created": int(time.time()),
                "model": model or self.model_path}
        prompt_text = self.tokenizer_.decode(prompt_ids) if echo else ""
        # text offsets count from the prompt's start, as in llama-cpp-python and OpenAI
        base = len(prompt) if isinstance(prompt, str) else len(self.tokenizer_.decode(prompt_ids))
        if stream:
            return self._stream(gen, head, prompt_text, base)
        gen.run()
        self._report(gen)
        n_completion = self._n_completion(gen)
        logprobs_out = None if n_probs is None else completion_logprobs(gen.logprobs, self.tokenizer_, base)
        return {**head, "choices": [{"text": prompt_text + gen.text, "index": 0, "logprobs": logprobs_out,
                                     "finish_reason": self._finish(gen)}],
                "usage": {"prompt_tokens": gen.n_prompt, "completion_tokens": n_completion,
                          "total_tokens": gen.n_prompt + n_completion}}

    __call__ = create_completion

    # -- chat ----------------------------------------------------------------------------------

    def create_chat_completion(self, messages: list[dict], functions=None, function_call=None, tools=None,
                               tool_choice=None, temperature: float = 0.2, top_p: float = 0.95, top_k: int = 40,
                               min_p: float = 0.05, typical_p: float = 1.0, stream: bool = False,
                               stop: str | list[str] | None = None, seed: int | None = None,
                               response_format=None, max_tokens: int | None = None,
                               presence_penalty: float = 0.0, frequency_penalty: float = 0.0,
                               repeat_penalty: float = 1.0, tfs_z: float = 1.0, mirostat_mode: int = 0,
                               mirostat_tau: float = 5.0, mirostat_eta: float = 0.1, model: str | None = None,
                               logits_processor=None, grammar=None, logit_bias: dict | None = None,
                               logprobs: bool | None = None, top_logprobs: int | None = None, **kwargs):
        """Answer a conversation (``[{"role": "system"|"user"|"assistant", "content": ...}, ...]``) with the
        chat template (``chat_format``, else the model's own), llama-cpp-python's defaults and dict shapes.

        Returns ``{"id": "chatcmpl-...", "object": "chat.completion", "created", "model", "choices": [{"index",
        "message": {"role": "assistant", "content"}, "logprobs", "finish_reason"}], "usage"}``; with
        ``stream=True`` an iterator of "chat.completion.chunk" dicts: a first ``delta`` ``{"role":
        "assistant"}``, then ``{"content": ...}`` deltas, then ``{}`` with the finish_reason. Generation ends
        at the template's end-of-turn token (an end-of-generation token of the vocabulary) or a stop string.
        ``response_format`` ``{"type": "json_object"}`` (any JSON object), ``{"type": "json_object", "schema":
        S}`` or ``{"type": "json_schema", "json_schema": {"schema": S}}`` constrains the reply to JSON (that
        fits S); it takes precedence over ``grammar`` (a ``LlamaGrammar``), as in llama-cpp-python.
        ``logprobs=True``: OpenAI's ``choices[0]["logprobs"]["content"]`` (each token's log probability, bytes
        and the ``top_logprobs`` most likely tokens', default 0), in every streamed chunk too.
        """
        for name, value in (("functions", functions), ("function_call", function_call), ("tools", tools),
                            ("tool_choice", tool_choice), ("logits_processor", logits_processor)):
            if value is not None:
                raise ValueError(f"{name} is not supported yet")
        n_probs = chat_n_probs(logprobs, top_logprobs)
        gen, head = self._start_chat(messages, stop=stop, max_tokens=max_tokens, temperature=temperature,
                                     top_p=top_p, min_p=min_p, typical_p=typical_p,
                                     frequency_penalty=frequency_penalty, presence_penalty=presence_penalty,
                                     repeat_penalty=repeat_penalty, top_k=top_k, seed=seed,
                                     mirostat_mode=mirostat_mode, mirostat_tau=mirostat_tau,
                                     mirostat_eta=mirostat_eta, logit_bias=logit_bias, model=model,
                                     stream=stream, grammar=response_format_grammar(response_format) or grammar,
                                     n_probs=n_probs)
        if stream:
            return self._chat_stream(gen, head)
        gen.run()
        self._report(gen)
        n_completion = self._n_completion(gen)
        logprobs_out = None if n_probs is None else {"content": chat_logprobs(gen.logprobs, self.tokenizer_)}
        return {**head,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": gen.text},
                             "logprobs": logprobs_out, "finish_reason": self._finish(gen)}],
                "usage": {"prompt_tokens": gen.n_prompt, "completion_tokens": n_completion,
                          "total_tokens": gen.n_prompt + n_completion}}

    def chat_template(self) -> ChatTemplate:
        """The template ``create_chat_completion`` renders with (built once, on first use)."""
        if self._chat_template is None:
            self._chat_template = ChatTemplate.for_model(self._model.reader, tokenizer=self.tokenizer_)
        return self._chat_template

    def _start_chat(self, messages, *, stop, max_tokens, model, stream, **sampling) -> tuple[Generation, dict]:
        """The one place a chat turn becomes a prompt and a generation: render the conversation with the
        generation prompt, tokenize it (BOS as the vocabulary asks; control-token texts parsed), start."""
        template = self.chat_template()
        prompt = template.render(messages, add_generation_prompt=True)
        prompt_ids = self.tokenizer_.encode(prompt, add_special=True, parse_special=True)
        stop = [stop] if isinstance(stop, str) else list(stop or [])
        gen, _ = self._start(prompt_ids, max_tokens, stop=stop + list(template.stop), **sampling,
                             dry=self._dry_params(0.0, 1.75, 2, 64, None))
        head = {"id": f"chatcmpl-{uuid.uuid4()}", "object": "chat.completion.chunk" if stream else "chat.completion",
                "created": int(time.time()), "model": model or self.model_path}
        return gen, head

    def _chat_stream(self, gen: Generation, head: dict) -> Iterator[dict]:
        def chunk(delta, reason=None, probs=None):
            logprobs = None if probs is None else {"content": chat_logprobs(probs, self.tokenizer_)}
            return {**head, "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": reason}]}

        yield chunk({"role": "assistant"})
        for step in gen:
            if step.text or step.probs:
                yield chunk({"content": step.text}, probs=step.probs if gen.n_probs is not None else None)
        self._report(gen)
        yield chunk({}, self._finish(gen))

    @staticmethod
    def _dry_params(multiplier, base, allowed_length, penalty_last_n, breakers) -> dict:
        """The server's rules: base < 1 -> default; lengths >= 0; breakers a non-empty list of strings."""
        for name, v in (("dry_allowed_length", allowed_length), ("dry_penalty_last_n", penalty_last_n)):
            if isinstance(v, bool) or int(v) != v or v < 0:
                raise ValueError(f"{name} must be an integer >= 0 (got {v!r})")
        out = dict(dry_multiplier=float(multiplier), dry_base=float(base) if base >= 1 else 1.75,
                   dry_allowed_length=int(allowed_length), dry_penalty_last_n=int(penalty_last_n))
        if breakers is not None:
            if isinstance(breakers, str) or not breakers or not all(isinstance(b, str) for b in breakers):
                raise ValueError("dry_sequence_breakers must be a non-empty list of strings")
            out["dry_sequence_breakers"] = tuple(breakers)
        return out

    def _start(self, prompt, max_tokens, temperature, top_p, min_p, typical_p, stop, frequency_penalty,
               presence_penalty, repeat_penalty, top_k, seed, mirostat_mode, mirostat_tau, mirostat_eta,
               logit_bias, dry, grammar=None, n_probs=None):
        tok = self.tokenizer_
        if isinstance(prompt, str):
            if prompt == "":
                if tok.bos_id is None:
                    raise ValueError("input is empty")
                prompt_ids = [tok.bos_id]
            else:
                prompt_ids = tok.encode(prompt, add_special=True, parse_special=True)
        else:
            prompt_ids = [int(t) for t in prompt]
        n_prompt = len(prompt_ids)
        if n_prompt >= self._n_ctx:
            raise ValueError(f"Requested tokens ({n_prompt}) exceed context window of {self._n_ctx}")
        room = self._n_ctx - n_prompt
        max_tokens = room if max_tokens is None or max_tokens <= 0 else min(int(max_tokens), room)
        params = SamplingParams(
            temp=max(float(temperature), 0.0), top_k=int(top_k), top_p=float(top_p), min_p=float(min_p),
            typical=float(typical_p), repeat_last_n=self.last_n_tokens_size, repeat_penalty=float(repeat_penalty),
            presence_penalty=float(presence_penalty), frequency_penalty=float(frequency_penalty),
            mirostat=int(mirostat_mode), mirostat_ent=float(mirostat_tau), mirostat_lr=float(mirostat_eta),
            seed=self._seed if seed is None else int(seed),
            logit_bias={int(k): float(v) for k, v in (logit_bias or {}).items()}, **dry)
        sampler = Sampler(params, self._model.n_vocab, tok.vocab.eog_ids, tokenizer=tok, grammar=grammar)
        stats = GenStats(load_ms=self.load_ms if self._first_call else 0.0)
        self._first_call = False
        return Generation(self._model, tok, sampler, prompt_ids, max_tokens=max_tokens, stop=stop or (),
                          stats=stats, n_probs=n_probs), prompt_ids

    @staticmethod
    def _finish(gen: Generation) -> str:
        return "stop" if gen.finish_reason == "stop" else "length"

    def _n_completion(self, gen: Generation) -> int:
        n = len(gen.tokens)
        if gen.tokens and gen.finish_reason == "stop" and gen.tokens[-1] in self.tokenizer_.vocab.eog_ids:
            n -= 1  # the end-of-generation token is not part of the completion
        return n

    def _stream(self, gen: Generation, head: dict, prompt_text: str, base: int) -> Iterator[dict]:
        def chunk(text, reason=None, logprobs=None):
            return {**head, "choices": [{"text": text, "index": 0, "logprobs": logprobs, "finish_reason": reason}]}

        if prompt_text:
            yield chunk(prompt_text)
        for step in gen:
            logprobs = None
            if gen.n_probs is not None:
                logprobs = completion_logprobs(step.probs, self.tokenizer_, base)
            yield chunk(step.text, logprobs=logprobs)
        self._report(gen)
        yield chunk("", self._finish(gen))

    def _report(self, gen: Generation):
        if self.verbose:
            for line in format_perf(gen.stats, "llama_perf_context_print"):
                print(line, file=sys.stderr)

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the model (its memory map and KV cache)."""
        self._model = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
