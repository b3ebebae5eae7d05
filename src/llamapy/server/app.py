"""The HTTP side of llamapy-server: llama-server's endpoints and JSON shapes on FastAPI.

    app = create_app(engine, ServerOptions(alias="model.gguf", api_keys=["secret"], metrics=True))
    uvicorn.run(app, host="127.0.0.1", port=8080)

OpenAI endpoints (/v1/completions, /v1/chat/completions, /v1/models) answer in OpenAI's shapes, streamed as
server-sent events (``data: {...}`` chunks, then ``data: [DONE]``); llama-server's own (/completion,
/tokenize, /detokenize, /props, /health, /metrics) in its shapes. Every error is OpenAI's
``{"error": {"code", "message", "type"}}``. Requests build their prompt, sampler and stops with ``Llama``
(its ``_start`` / ``_start_chat``) and run on the engine's slots (llamapy.server.engine).
"""
from __future__ import annotations

import hmac
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from llamapy.generate import PromptTooLong
from llamapy.logprobs import (chat_logprobs, chat_n_probs, completion_logprobs, completion_n_probs, native_n_probs,
                              native_probs)
from llamapy.sampling import DEFAULT_SEED
from llamapy.server.engine import Engine, Plan, Result
from llamapy.server.schemas import (ChatRequest, CompletionRequest, DetokenizeRequest, NativeCompletionRequest,
                                    TokenizeRequest)

MAX_BODY_BYTES = 4 << 20          # a request body beyond this is refused (413) before it is parsed
_VOCAB_TYPES = {"llama": 1, "gpt2": 2, "t5": 4}   # llama_vocab_type numbers, as /v1/models gives them
PUBLIC_PATHS = {"/health", "/v1/health", "/", "/index.html"}   # no API key needed (the page holds no data)
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                405: "invalid_request_error", 413: "invalid_request_error", 500: "server_error",
                501: "not_supported_error", 503: "unavailable_error"}


@dataclass
class ServerOptions:
    alias: str = "model"
    api_keys: list[str] = field(default_factory=list)
    n_predict: int = -1                 # -n: max tokens when a request names none (-1: until the end)
    grammar: object = None              # --grammar-file: the default grammar (a LlamaGrammar)
    metrics: bool = False               # --metrics: serve /metrics


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind or _ERROR_TYPES.get(status, "server_error")


def error_body(status: int, message: str, kind: str | None = None) -> dict:
    return {"error": {"code": status, "message": message, "type": kind or _ERROR_TYPES.get(status, "server_error")}}


def error_response(status: int, message: str, kind: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, kind), status_code=status)


def client_error(e: Exception) -> ApiError:
    """A ValueError from planning a request -> 400 (a prompt too long for the context has its own type)."""
    message = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, PromptTooLong) or "exceed context window" in message:
        return ApiError(400, message, "exceed_context_size_error")
    if isinstance(e, ValueError):
        return ApiError(400, message)
    return ApiError(500, f"{type(e).__name__}: {message}")


async def parse_body(request: Request, schema):
    """The body as JSON (whatever the Content-Type says, as llama-server reads it), checked by ``schema``."""
    raw = await request.body()
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"Invalid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "Invalid request: the body must be a JSON object")
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            where = ".".join(str(p) for p in err.get("loc", ()))
            problems.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        raise ApiError(400, "Invalid request: " + "; ".join(problems)) from None


def sse(obj) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes gets 413 (by Content-Length, or while it arrives)."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        too_big = length is not None and length.isdigit() and int(length) > self.limit
        if not too_big and scope["method"] in ("POST", "PUT", "PATCH"):
            chunks, size, more = [], 0, True
            while more:                      # read the body here, so it is bounded before anyone parses it
                message = await receive()
                if message["type"] != "http.request":
                    break
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                more = message.get("more_body", False)
                too_big = size > self.limit
                if too_big:
                    break
            if not too_big:
                body, replayed = b"".join(chunks), False

                async def replay():
                    nonlocal replayed
                    if not replayed:
                        replayed = True
                        return {"type": "http.request", "body": body, "more_body": False}
                    return await receive()   # then the client's disconnect, as usual
                return await self.app(scope, replay, send)
        if too_big:
            response = error_response(413, f"request body larger than {self.limit} bytes")
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def create_app(engine: Engine, options: ServerOptions) -> FastAPI:
    llm = engine.llm
    tok = llm.tokenizer_
    app = FastAPI(title="llamapy-server", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit)
    started = int(time.time())

    # -- errors and the API key ---------------------------------------------------------------------------

    @app.exception_handler(ApiError)
    async def _api_error(_request, e: ApiError):
        return error_response(e.status, e.message, e.kind)


    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request, e: StarletteHTTPException):
        message = "File Not Found" if e.status_code == 404 else str(e.detail)
        return error_response(e.status_code, message)

    @app.middleware("http")
    async def _check_api_key(request: Request, call_next):
        if options.api_keys and request.url.path not in PUBLIC_PATHS:
            auth = request.headers.get("authorization", "")
            given = auth[7:] if auth.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
            if not any(hmac.compare_digest(given.encode(), k.encode()) for k in options.api_keys):
                return error_response(401, "Invalid API Key")
        return await call_next(request)

    # -- running a request ------------------------------------------------------------------------------

    async def start(make_plan):
        """Submit a request; returns (job, plan) once it is planned, or raises the 4xx its plan raised."""
        job = engine.submit(make_plan)
        kind, value = await job.next()
        if kind == "error":
            raise client_error(value)
        return job, value

    async def events(job):
        """('step', Step) events, then ('done', Result); a generation error raises ApiError."""
        try:
            while True:
                kind, value = await job.next()
                if kind == "error":
                    raise client_error(value)
                yield kind, value
                if kind == "done":
                    return
        finally:
            job.cancel()          # the client left (or we are done): the slot is freed after this step

    async def collect(job) -> Result:
        async for kind, value in events(job):
            if kind == "done":
                return value

    def stream(job, render_step, render_done, done_marker: bool, first=None):
        async def body():
            if first is not None:
                yield sse(first)
            try:
                async for kind, value in events(job):
                    chunks = [render_step(value)] if kind == "step" else render_done(value)
                    for chunk in chunks:
                        if chunk is not None:
                            yield sse(chunk)
            except ApiError as e:
                yield sse(error_body(e.status, e.message, e.kind))
            if done_marker:
                yield "data: [DONE]\n\n"
        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # -- planning: the request's fields -> Llama's prompt, sampler and limits -----------------------------

    def grammar_for(req, json_schema=None):
        from llamapy.grammar import LlamaGrammar, response_format_grammar
        response_format = getattr(req, "response_format", None)
        if response_format is not None:
            found = response_format_grammar(response_format)
            if found is not None or response_format.get("type") == "text":
                return found
        if json_schema is not None:
            return LlamaGrammar.from_json_schema(json_schema)
        if req.grammar:
            return LlamaGrammar.from_string(req.grammar)
        return options.grammar

    def sampling_for(req) -> dict:
        bias = {}
        for key, value in (req.logit_bias or {}).items():
            if not key.lstrip("-").isdigit() or not 0 <= int(key) < llm.n_vocab():
                raise ValueError(f"logit_bias: {key!r} is not a token id of this model")
            bias[int(key)] = value
        return dict(temperature=req.temperature, top_p=req.top_p, min_p=req.min_p, typical_p=req.typical_p,
                    frequency_penalty=req.frequency_penalty, presence_penalty=req.presence_penalty,
                    repeat_penalty=req.repeat_penalty, top_k=req.top_k,
                    seed=DEFAULT_SEED if req.seed is None or req.seed < 0 else req.seed,
                    mirostat_mode=req.mirostat, mirostat_tau=req.mirostat_tau, mirostat_eta=req.mirostat_eta,
                    logit_bias=bias)

    def limit_tokens(max_tokens: int | None) -> int:
        n = options.n_predict if max_tokens is None else max_tokens
        return -1 if n < 0 else n

    def check_room(gen, max_tokens: int, name: str):
        if max_tokens > 0 and gen.n_prompt + max_tokens > engine.slot_ctx:
            raise ValueError(f"{name} ({max_tokens}) plus the prompt ({gen.n_prompt} tokens) exceed the "
                             f"context of {engine.slot_ctx} tokens per slot")

    def check_common(req):
        if getattr(req, "n", 1) != 1:
            raise ValueError("only n = 1 is supported")
        if req.id_slot >= len(engine.pool.slots):
            raise ValueError(f"id_slot {req.id_slot} out of range (the server has {len(engine.pool.slots)} slots)")

    def plan_completion(req, max_tokens, n_probs, grammar_kwargs=None):
        check_common(req)
        n = limit_tokens(max_tokens)
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        gen, prompt_ids = llm._start(prompt=req.prompt, max_tokens=n, stop=stop, **sampling_for(req),
                                     dry=llm._dry_params(0.0, 1.75, 2, 64, None),
                                     grammar=grammar_for(req, **(grammar_kwargs or {})), n_probs=n_probs)
        check_room(gen, n, "n_predict" if isinstance(req, NativeCompletionRequest) else "max_tokens")
        return Plan(gen, reuse_prefix=req.cache_prompt, id_slot=req.id_slot, info={"prompt_ids": prompt_ids})

    def plan_chat(req: ChatRequest):
        check_common(req)
        n = limit_tokens(req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens)
        messages = [m.model_dump(exclude_none=True) for m in req.messages]
        gen, _ = llm._start_chat(messages, stop=req.stop, max_tokens=n, model=options.alias, stream=req.stream,
                                 grammar=grammar_for(req), n_probs=chat_n_probs(req.logprobs, req.top_logprobs),
                                 **sampling_for(req))
        check_room(gen, n, "max_tokens")
        return Plan(gen, reuse_prefix=req.cache_prompt, id_slot=req.id_slot)

    # -- response pieces ---------------------------------------------------------------------------------

    def finish_reason(gen) -> str:
        return "stop" if gen.finish_reason == "stop" else "length"

    def usage(gen) -> dict:
        n = n_completion(gen)
        return {"prompt_tokens": gen.n_prompt, "completion_tokens": n, "total_tokens": gen.n_prompt + n}

    def n_completion(gen) -> int:
        return llm._n_completion(gen)

    def stop_info(gen) -> tuple[str, str]:
        """llama-server's stop_type (eos, word, limit) and the stop string that ended the text."""
        if gen.finish_reason != "stop":
            return "limit", ""
        if gen.tokens and gen.tokens[-1] in tok.vocab.eog_ids:
            return "eos", ""
        tail = tok.decode(gen.tokens)[len(gen.text):]
        word = min((s for s in gen.matcher.stop if s in tail), key=tail.find, default="")
        return "word", word

    # -- endpoints ---------------------------------------------------------------------------------------

    @app.get("/health")
    @app.get("/v1/health")
    async def health():
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    @app.get("/index.html", response_class=HTMLResponse)
    async def index():
        return resources.files("llamapy.server").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/models")
    @app.get("/v1/models")
    async def models():
        cfg = llm._model.config
        reader = llm._model.reader
        meta = {"vocab_type": _VOCAB_TYPES.get(tok.vocab.model, 0), "n_vocab": llm.n_vocab(),
                "n_ctx": engine.slot_ctx, "n_ctx_train": cfg.n_ctx_train, "n_embd": cfg.n_embd,
                "n_params": sum(t.n_elements for t in reader.tensors),
                "size": sum(t.n_bytes for t in reader.tensors)}
        return {"object": "list", "data": [{"id": options.alias, "object": "model", "created": started,
                                            "owned_by": "llamacpp", "meta": meta}]}

    @app.get("/props")
    async def props():
        template = llm.chat_template()
        return {"default_generation_settings": {"params": {**NativeCompletionRequest().model_dump(
                    exclude={"prompt", "stream", "id_slot", "json_schema"}), "n_predict": options.n_predict},
                    "n_ctx": engine.slot_ctx},
                "total_slots": len(engine.pool.slots), "model_alias": options.alias,
                "model_path": llm.model_path, "modalities": {"vision": False, "audio": False},
                "endpoint_slots": False, "endpoint_props": False, "endpoint_metrics": options.metrics,
                "chat_template": template.source or template.name,
                "bos_token": tok.decode([llm.token_bos()], special=True) if llm.token_bos() >= 0 else "",
                "eos_token": tok.decode([llm.token_eos()], special=True) if llm.token_eos() >= 0 else "",
                "build_info": f"llamapy {_version()}"}

    @app.get("/metrics")
    async def metrics():
        if not options.metrics:
            raise ApiError(501, "This server does not support metrics endpoint. Start it with `--metrics`")
        return PlainTextResponse(prometheus_text(engine), media_type="text/plain; version=0.0.4")

    @app.post("/tokenize")
    async def tokenize(request: Request):
        req = await parse_body(request, TokenizeRequest)
        ids = tok.encode(req.content, add_special=req.add_special, parse_special=req.parse_special)
        if not req.with_pieces:
            return {"tokens": ids}
        out = []
        for t in ids:
            piece = tok.token_to_piece(t, special=True)
            try:
                out.append({"id": t, "piece": piece.decode("utf-8")})
            except UnicodeDecodeError:       # part of a UTF-8 sequence: its bytes, as llama-server gives them
                out.append({"id": t, "piece": list(piece)})
        return {"tokens": out}

    @app.post("/detokenize")
    async def detokenize(request: Request):
        req = await parse_body(request, DetokenizeRequest)
        bad = [t for t in req.tokens if not 0 <= t < llm.n_vocab()]
        if bad:
            raise ApiError(400, f"token id {bad[0]} out of range [0, {llm.n_vocab()})")
        return {"content": tok.detokenize(req.tokens).decode("utf-8", errors="replace")}

    @app.post("/v1/completions")
    async def completions(request: Request):
        req = await parse_body(request, CompletionRequest)
        job, plan = await start(lambda: plan_completion(req, req.max_tokens,
                                                        completion_n_probs(req.logprobs, req.echo)))
        gen = plan.generation
        head = {"id": f"cmpl-{uuid.uuid4()}", "object": "text_completion", "created": int(time.time()),
                "model": options.alias}
        echo = tok.decode(plan.info["prompt_ids"]) if req.echo else ""
        # text offsets count from the prompt's start, as in OpenAI's and llama-cpp-python's answers
        base = len(req.prompt) if isinstance(req.prompt, str) else len(tok.decode(plan.info["prompt_ids"]))

        def choice(text, reason=None, probs=None):
            logprobs = None if probs is None else completion_logprobs(probs, tok, base)
            return {"text": text, "index": 0, "logprobs": logprobs, "finish_reason": reason}

        if req.stream:
            include_usage = bool((req.stream_options or {}).get("include_usage"))
            first = [True]

            def step(s):
                text = (echo if first[0] else "") + s.text
                first[0] = False
                return {**head, "choices": [choice(text, probs=s.probs if gen.n_probs is not None else None)]}

            def done(r: Result):
                g = r.generation
                yield {**head, "choices": [choice(echo if first[0] else "", finish_reason(g))],
                       "timings": r.timings}
                if include_usage:
                    yield {**head, "choices": [], "usage": usage(g)}
            return stream(job, step, done, done_marker=True)
        r = await collect(job)
        g = r.generation
        probs = g.logprobs if g.n_probs is not None else None
        return {**head, "choices": [choice(echo + g.text, finish_reason(g), probs)], "usage": usage(g),
                "timings": r.timings}

    @app.post("/chat/completions")
    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        req = await parse_body(request, ChatRequest)
        job, plan = await start(lambda: plan_chat(req))
        head = {"id": f"chatcmpl-{uuid.uuid4()}", "created": int(time.time()), "model": options.alias}
        with_probs = plan.generation.n_probs is not None

        def logprobs(probs):
            return {"content": chat_logprobs(probs, tok)} if with_probs else None

        if req.stream:
            include_usage = bool((req.stream_options or {}).get("include_usage"))

            def chunk(delta, reason=None, probs=None):
                return {**head, "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": delta, "logprobs": None if probs is None else logprobs(probs),
                                     "finish_reason": reason}]}

            def step(s):
                return chunk({"content": s.text}, probs=s.probs)

            def done(r: Result):
                yield {**chunk({}, finish_reason(r.generation)), "timings": r.timings}
                if include_usage:
                    yield {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage(r.generation)}
            # the role comes first, as OpenAI sends it, before any token is generated
            return stream(job, step, done, done_marker=True, first=chunk({"role": "assistant", "content": None}))
        r = await collect(job)
        g = r.generation
        return {**head, "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": g.text},
                             "logprobs": logprobs(g.logprobs), "finish_reason": finish_reason(g)}],
                "usage": usage(g), "timings": r.timings}

    @app.post("/completion")
    @app.post("/completions")
    async def native_completion(request: Request):
        req = await parse_body(request, NativeCompletionRequest)
        if req.ignore_eos:
            raise ApiError(400, "ignore_eos is not supported yet")
        job, plan = await start(lambda: plan_completion(req, req.n_predict, native_n_probs(req.n_probs),
                                                        {"json_schema": req.json_schema}))
        gen = plan.generation
        settings = {**req.model_dump(exclude={"prompt", "json_schema"}),
                    "n_predict": limit_tokens(req.n_predict), "seed": gen.sampler.seed}
        n_steps = [0]

        def step(s):
            n_steps[0] += 1
            out = {"index": 0, "content": s.text, "tokens": [] if s.token is None else [s.token], "stop": False,
                   "id_slot": job.slot_id, "tokens_predicted": n_steps[0], "tokens_evaluated": gen.n_prompt}
            if s.probs:
                out["completion_probabilities"] = native_probs(s.probs, tok)
            return out

        def final(r: Result, content: str) -> dict:
            g = r.generation
            stop_type, word = stop_info(g)
            return {"index": 0, "content": content, "tokens": [], "id_slot": r.slot_id, "stop": True,
                    "model": options.alias, "tokens_predicted": len(g.tokens), "tokens_evaluated": g.n_prompt,
                    "generation_settings": settings, "prompt": tok.decode(g.prompt, special=True),
                    "has_new_line": "\n" in g.text, "truncated": False, "stop_type": stop_type,
                    "stopping_word": word, "tokens_cached": g.n_prompt + len(g.tokens), "timings": r.timings}

        if req.stream:
            return stream(job, step, lambda r: [final(r, "")], done_marker=False)
        r = await collect(job)
        out = {**final(r, r.generation.text), "tokens": list(r.generation.tokens)}
        if r.generation.logprobs:
            out["completion_probabilities"] = native_probs(r.generation.logprobs, tok)
        return out

    return app


def _version() -> str:
    from llamapy import __version__
    return __version__


def prometheus_text(engine: Engine) -> str:
    """llama-server's /metrics (llamacpp:* counters and gauges), plus llamapy's request counters."""
    m = engine.metrics
    with m.lock:
        counters = [
            ("prompt_tokens_total", "Number of prompt tokens processed, excluding cached tokens", m.n_prompt),
            ("prompt_tokens_cached_total", "Number of prompt tokens reused from the cache", m.n_prompt_cached),
            ("prompt_seconds_total", "Total time spent processing prompts", m.prompt_seconds),
            ("tokens_predicted_total", "Number of generation tokens processed", m.n_predicted),
            ("tokens_predicted_seconds_total", "Total time spent generating tokens", m.predicted_seconds),
            ("n_decode_total", "Total number of decode_step() calls", m.n_decode),
            ("n_tokens_max", "Largest observed sequence length (prompt + generation)", m.n_tokens_max),
            ("requests_total", "Number of requests finished or abandoned", m.requests_total),
            ("requests_failed_total", "Number of requests that failed or whose client left", m.requests_failed),
        ]
        gauges = [
            ("prompt_tokens_seconds", "Average prompt throughput in tokens/s",
             m.n_prompt / m.prompt_seconds if m.prompt_seconds else 0.0),
            ("predicted_tokens_seconds", "Average generation throughput in tokens/s",
             m.n_predicted / m.predicted_seconds if m.predicted_seconds else 0.0),
            ("requests_processing", "Number of requests processing", engine.pool.n_busy),
            ("requests_deferred", "Number of requests deferred", engine.pool.n_waiting),
            ("n_busy_slots_per_decode", "Average number of busy slots per decode_step() call",
             m.n_busy_slots / max(m.n_decode, 1)),
        ]
    lines = []
    for kind, items in (("counter", counters), ("gauge", gauges)):
        for name, help_text, value in items:
            lines += [f"# HELP llamacpp:{name} {help_text}", f"# TYPE llamacpp:{name} {kind}",
                      f"llamacpp:{name} {value}"]
    return "\n".join(lines) + "\n"


def model_alias(path: str) -> str:
    return os.path.basename(path)
