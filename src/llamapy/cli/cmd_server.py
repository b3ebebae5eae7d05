"""`llamapy-server`: llama-server's OpenAI-compatible HTTP server, with parallel slots and a web chat page.

    llamapy-server                                  # the default model on http://127.0.0.1:8080
    llamapy-server -m model.gguf -c 4096 -np 2 --port 8081 --api-key secret --metrics

Endpoints: / (chat page), /health, /v1/models, /v1/completions, /v1/chat/completions, /completion,
/tokenize, /detokenize, /props, /metrics (with --metrics). See llamapy.server.
"""
from __future__ import annotations

import socket
import sys

import click

from llamapy.cli.common import fail, import_kernels, one_line, resolve_model, run_command, version_option

CTX_DEFAULT_CAP = 4096     # -c 0: the model's training context, capped to keep the KV caches modest
AUTO_SLOTS = 4             # -np -1, as llama-server: 4 slots, each allowed the whole context


def log(line: str) -> None:
    click.echo(line, err=True)


def bind_socket(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port in use is one clear line before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        fail(f"couldn't bind HTTP server socket, hostname: {host}, port: {port}: {e.strerror or e}")
    sock.listen(2048)
    return sock


def read_api_keys(api_key: str | None, api_key_file: str | None) -> list[str]:
    keys = [k for k in (api_key or "").split(",") if k]
    if api_key_file:
        try:
            with open(api_key_file, encoding="utf-8") as fh:
                keys += [line.strip() for line in fh if line.strip()]
        except OSError as e:
            fail(f"--api-key-file: failed to open file '{api_key_file}': {e.strerror or e}")
    return keys


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("-m", "--model", "model", metavar="FNAME", envvar="LLAMA_ARG_MODEL",
              help="Model path (default: the cached SmolLM2-135M-Instruct Q4_1).")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="LLAMA_ARG_HOST",
              help="Address to listen on (0.0.0.0: every interface; think before exposing it).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, envvar="LLAMA_ARG_PORT",
              help="Port to listen on (0: any free port).")
@click.option("-c", "--ctx-size", "n_ctx", type=click.IntRange(0), default=0, show_default=True,
              help=f"Context size (0 = the model's training context, capped at {CTX_DEFAULT_CAP}); "
                   "split between the slots when -np is given.")
@click.option("-np", "--parallel", "n_parallel", type=int, default=-1, show_default=True,
              help=f"Slots: requests served at once (-1 = auto: {AUTO_SLOTS}, each with the whole context).")
@click.option("-t", "--threads", "n_threads", type=int, default=-1, show_default=True,
              help="Threads (-1 = every core this process may use).")
@click.option("-n", "--predict", "--n-predict", "n_predict", type=int, default=-1, show_default=True,
              help="Tokens to predict when a request names no max_tokens / n_predict (-1 = until the end).")
@click.option("--api-key", default=None, envvar="LLAMA_API_KEY",
              help="API key(s), comma separated: required as 'Authorization: Bearer KEY' except on /health.")
@click.option("--api-key-file", default=None, metavar="FNAME", help="A file of API keys, one per line.")
@click.option("--chat-template", "chat_template", metavar="NAME", default=None,
              help="A built-in chat template by name (default: the model's own).")
@click.option("--grammar-file", metavar="FNAME", default=None,
              help="GBNF grammar every request follows unless it gives its own grammar or response_format.")
@click.option("-a", "--alias", default=None, help="Model name shown by /v1/models (default: the file name).")
@click.option("--metrics", is_flag=True, default=False, help="Serve Prometheus metrics at /metrics.")
@version_option()
def cli(model, host, port, n_ctx, n_parallel, n_threads, n_predict, api_key, api_key_file, chat_template,
        grammar_file, alias, metrics):
    """llama-server's HTTP API (OpenAI-compatible) on llamapy's engine."""
    import_kernels()
    model = resolve_model(model)
    if n_parallel == 0 or n_parallel < -1:
        fail(f"-np must be -1 (auto) or at least 1 (got {n_parallel})")
    keys = read_api_keys(api_key, api_key_file)
    grammar = None
    if grammar_file is not None:
        from llamapy.cli.cmd_cli import load_grammar
        grammar = load_grammar(None, grammar_file, None, None)
    if chat_template is not None:
        from llamapy.chat import BUILTIN_NAMES
        if chat_template not in BUILTIN_NAMES:
            fail(f"--chat-template: unknown template '{chat_template}' (built-ins: {', '.join(BUILTIN_NAMES)})")
    sock = bind_socket(host, port)        # before the model loads: a taken port fails at once

    from llamapy import Llama
    from llamapy.model import ModelConfig
    from llamapy.runtime import system_info
    from llamapy.gguf import GGUFReader
    if n_parallel == -1:
        n_slots, unified = AUTO_SLOTS, True
        log(f"main: n_parallel is set to auto, using n_parallel = {n_slots} and kv_unified = true")
    else:
        n_slots, unified = n_parallel, False
    log(f"build: llamapy {_version()}")
    log(f"system info: n_threads = {n_threads} | {system_info()}")
    log(f"srv    load_model: loading model '{model}'")
    try:
        if n_ctx == 0:
            n_ctx = min(ModelConfig.from_gguf(GGUFReader(model)).n_ctx_train, CTX_DEFAULT_CAP)
        slot_ctx = n_ctx if unified else n_ctx // n_slots
        if slot_ctx < 8:
            fail(f"context per slot too small: -c {n_ctx} split into {n_slots} slots")
        llm = Llama(model, n_ctx=slot_ctx, n_threads=None if n_threads < 0 else n_threads,
                    chat_format=chat_template, verbose=False)
        llm.chat_template()               # a broken template fails now, not on the first chat request
        from llamapy.server.engine import Engine
        engine = Engine(llm, n_slots, slot_ctx)
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - any malformed file is a one-line error
        fail(f"failed to load model '{model}': {one_line(e)}")
    log(f"srv          init: initializing slots, n_slots = {n_slots}")
    for i in range(n_slots):
        log(f"slot         init: id  {i} | task -1 | new slot, n_ctx = {slot_ctx}")
    log("main: model loaded")
    log(f"main: chat template, built-in: {llm.chat_template().name}")

    import uvicorn
    from llamapy.server.app import ServerOptions, create_app, model_alias
    app = create_app(engine, ServerOptions(alias=alias or model_alias(model), api_keys=keys, n_predict=n_predict,
                                           grammar=grammar, metrics=metrics))
    bound_host, bound_port = sock.getsockname()[:2]
    log(f"main: server is listening on http://{bound_host}:{bound_port} - starting the main loop")
    log("srv  update_slots: all slots are idle")
    sys.stderr.flush()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=1))
    server.run(sockets=[sock])


def _version() -> str:
    from llamapy import __version__
    return __version__


def main(argv=None):
    run_command(cli, "llamapy-server", argv)


if __name__ == "__main__":
    main()
