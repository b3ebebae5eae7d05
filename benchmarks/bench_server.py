"""Aggregate generation speed of llamapy-server with 1, 2 and 4 parallel clients (issue 7).

    .venv/bin/python benchmarks/bench_server.py [-m model.gguf] [--clients 1,2,4] [-n 64] [--requests 3]
        [--peer-python /path/to/venv-with-llama-cpp-python/bin/python]

Starts `llamapy-server -np 4` on a free loopback port; for each client count, that many threads each send
--requests greedy completions of -n tokens (a different prompt per client) at once, all through the OpenAI
/v1/completions endpoint. Aggregate t/s = all generated tokens / wall time of the round (prompt processing
included). With --peer-python the same runs against llama-cpp-python's server (`python -m llama_cpp.server`,
which needs its server extras in that environment) instead: llama.cpp's engine, one request at a time.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time

import httpx

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from test_server import start_server, stop_server  # noqa: E402 - the tests' way of starting a live server

PROMPTS = ["Tell me about the history of Rome.", "Explain how a rainbow forms.", "Describe a day at the beach.",
           "Write about the life of bees."]


def round_trip(url: str, n_clients: int, n_predict: int, n_requests: int) -> tuple[int, float]:
    tokens, lock = [0], threading.Lock()

    def client(i):
        with httpx.Client(base_url=url, timeout=300) as c:
            for _ in range(n_requests):
                out = c.post("/v1/completions", json={"prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": n_predict,
                                                      "temperature": 0}).json()
                with lock:
                    tokens[0] += out["usage"]["completion_tokens"]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tokens[0], time.perf_counter() - t0


def start_peer(python: str, model: str, threads: str):
    """llama-cpp-python's OpenAI server on a free loopback port, once it answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    n_threads = os.cpu_count() if threads == "-1" else int(threads)
    proc = subprocess.Popen([python, "-m", "llama_cpp.server", "--model", model, "--n_ctx", "4096", "--n_threads",
                             str(n_threads), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("llama-cpp-python's server did not start")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", default=None)
    ap.add_argument("--clients", default="1,2,4")
    ap.add_argument("-n", "--n-predict", type=int, default=64)
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("-t", "--threads", default="-1")
    ap.add_argument("--peer-python", default=None, help="run against llama-cpp-python's server instead")
    args = ap.parse_args()
    extra = ["-m", args.model] if args.model else []
    if args.peer_python:
        from llamapy.models import model_path
        proc, url = start_peer(args.peer_python, args.model or str(model_path("smollm2")), args.threads)
    else:
        proc, url = start_server("-np", "4", "-c", "4096", "-t", args.threads, *extra)
    try:
        round_trip(url, 1, 8, 1)                                       # warm up
        print("| clients | requests | tokens | seconds | aggregate t/s |")
        print("|--:|--:|--:|--:|--:|")
        for n in (int(x) for x in args.clients.split(",")):
            tokens, seconds = round_trip(url, n, args.n_predict, args.requests)
            print(f"| {n} | {n * args.requests} | {tokens} | {seconds:.2f} | {tokens / seconds:.1f} |", flush=True)
    finally:
        stop_server(proc)


if __name__ == "__main__":
    main()
