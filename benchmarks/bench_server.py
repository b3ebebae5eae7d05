"""Aggregate generation speed of llamapy-server with 1, 2 and 4 parallel clients (issue 7).

    .venv/bin/python benchmarks/bench_server.py [-m model.gguf] [--clients 1,2,4] [-n 64] [--requests 3]

Starts `llamapy-server -np 4` on a free loopback port; for each client count, that many threads each send
--requests native /completion requests (greedy, n_predict -n, a different prompt per client) at once.
Aggregate t/s = all generated tokens / wall time of the round (prompt processing included).
"""
from __future__ import annotations

import argparse
import os
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
                out = c.post("/completion", json={"prompt": PROMPTS[i % len(PROMPTS)], "n_predict": n_predict,
                                                  "temperature": 0, "cache_prompt": False}).json()
                with lock:
                    tokens[0] += out["tokens_predicted"]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tokens[0], time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", default=None)
    ap.add_argument("--clients", default="1,2,4")
    ap.add_argument("-n", "--n-predict", type=int, default=64)
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("-t", "--threads", default="-1")
    args = ap.parse_args()
    extra = ["-m", args.model] if args.model else []
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
