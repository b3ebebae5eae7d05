"""llamapy-server on the default model (SmolLM2-135M-Instruct Q4_1): a live server in a subprocess on a free
loopback port, spoken to with the real openai client, httpx and (test_server_browser.py) headless chromium."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import httpx
import jsonschema
import openai
import pytest

from llamapy.models import model_path

API_KEY = "test-key"
N_SLOTS = 2
CTX = 2048            # split into 2 slots of 1024 tokens


def _model() -> str:
    return str(model_path("smollm2", fetch=False))


def start_server(*args: str, timeout: float = 60.0):
    """Start `llamapy-server ... --port 0`; returns (process, base url) once it listens."""
    cmd = [sys.executable, "-m", "llamapy.cli.cmd_server", "-m", _model(), "--port", "0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            threading.Thread(target=proc.stdout.read, daemon=True).start()   # keep the pipe drained
            return proc, m.group(1)
    proc.kill()
    raise RuntimeError("server did not start:\n" + "".join(lines))


def stop_server(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def server():
    proc, url = start_server("-c", str(CTX), "-np", str(N_SLOTS), "--api-key", API_KEY, "--metrics", "-t", "2")
    yield url
    stop_server(proc)


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as c:
        yield c


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key=API_KEY, max_retries=0)


def metric(http, name: str) -> float:
    text = http.get("/metrics").text
    return float(re.search(rf"^llamacpp:{name} (\S+)$", text, re.M).group(1))


def assert_error(response, status: int, kind: str, words: str = ""):
    assert response.status_code == status, response.text
    err = response.json()["error"]
    assert set(err) == {"code", "message", "type"} and err["code"] == status and err["type"] == kind
    assert words.lower() in err["message"].lower(), err["message"]


def wait_idle(http, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metric(http, "requests_processing") == 0 and metric(http, "requests_deferred") == 0:
            return True
        time.sleep(0.05)
    return False


# -- endpoints and shapes ---------------------------------------------------------------------------------

def test_health_is_public_and_models_lists_the_model(server, http):
    assert httpx.get(server + "/health").json() == {"status": "ok"}
    models = http.get("/v1/models").json()
    assert models["object"] == "list"
    (entry,) = models["data"]
    assert entry["id"] == os.path.basename(_model()) and entry["object"] == "model"
    assert entry["meta"]["n_ctx"] == CTX // N_SLOTS and entry["meta"]["n_vocab"] == 49152


def test_openai_completion_greedy_and_seeded(client):
    out = client.completions.create(model="x", prompt="The capital of France is", max_tokens=8, temperature=0)
    assert out.object == "text_completion" and len(out.choices) == 1
    assert "Paris" in out.choices[0].text
    assert out.choices[0].finish_reason == "length"
    assert out.usage.completion_tokens == 8 and out.usage.prompt_tokens == 5
    again = client.completions.create(model="x", prompt="The capital of France is", max_tokens=8, temperature=0)
    assert again.choices[0].text == out.choices[0].text
    a, b = (client.completions.create(model="x", prompt="Once upon a time", max_tokens=12, temperature=1.0,
                                      seed=42).choices[0].text for _ in range(2))
    assert a == b


def test_openai_completion_stream_matches_the_whole_answer(client):
    whole = client.completions.create(model="x", prompt="One, two, three,", max_tokens=10, temperature=0)
    chunks = list(client.completions.create(model="x", prompt="One, two, three,", max_tokens=10, temperature=0,
                                            stream=True))
    assert len(chunks) > 2
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_openai_chat_and_stream(client):
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is the capital of France?"}]
    out = client.chat.completions.create(model="x", messages=messages, max_tokens=24, temperature=0)
    text = out.choices[0].message.content
    assert out.object == "chat.completion" and out.choices[0].message.role == "assistant"
    assert "Paris" in text and out.choices[0].finish_reason in ("stop", "length")
    chunks = list(client.chat.completions.create(model="x", messages=messages, max_tokens=24, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == out.usage.completion_tokens


def test_chat_stop_string(client):
    out = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "Count from 1 to 9."}],
                                         max_tokens=40, temperature=0, stop=["4"])
    assert "4" not in out.choices[0].message.content and out.choices[0].finish_reason == "stop"


def test_sse_framing(http):
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, "stream": True, "temperature": 0}
    with http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    for event in events[:-2]:
        assert event.startswith("data: ")
        assert json.loads(event[6:])["object"] == "chat.completion.chunk"


def test_response_format_json_schema(client):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                               "age": {"type": "integer", "minimum": 0, "maximum": 120}},
              "required": ["name", "age"]}
    out = client.chat.completions.create(
        model="x", messages=[{"role": "user", "content": "Describe a person as JSON."}], max_tokens=60,
        temperature=0.7, seed=1, response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}})
    jsonschema.validate(json.loads(out.choices[0].message.content), schema)
    small = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    out = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "A JSON object, please."}],
                                         max_tokens=40, temperature=0,
                                         response_format={"type": "json_object", "schema": small})
    assert isinstance(json.loads(out.choices[0].message.content)["ok"], bool)


def test_native_completion_and_its_stream(http):
    r = http.post("/completion", json={"prompt": "The capital of France is", "n_predict": 6, "temperature": 0})
    out = r.json()
    assert r.status_code == 200 and out["stop"] is True and "Paris" in out["content"]
    assert out["tokens_predicted"] == 6 and out["tokens_evaluated"] == 5 and out["stop_type"] == "limit"
    assert len(out["tokens"]) == 6 and out["generation_settings"]["n_predict"] == 6
    assert set(out["timings"]) >= {"cache_n", "prompt_n", "prompt_ms", "predicted_n", "predicted_per_second"}
    word = http.post("/completion", json={"prompt": "1, 2, 3,", "n_predict": 20, "temperature": 0,
                                          "stop": [" 6"]}).json()
    assert word["stop_type"] == "word" and word["stopping_word"] == " 6"
    with http.stream("POST", "/completion", json={"prompt": "The capital of France is", "n_predict": 6,
                                                  "temperature": 0, "stream": True}) as s:
        events = [e for e in s.read().decode().split("\n\n") if e]
    chunks = [json.loads(e[6:]) for e in events]
    assert "".join(c["content"] for c in chunks) == out["content"]
    assert [c["stop"] for c in chunks][-1] is True and not any(c["stop"] for c in chunks[:-1])
    assert "[DONE]" not in "".join(events)


def test_tokenize_detokenize(http):
    ids = http.post("/tokenize", json={"content": "Hello world"}).json()["tokens"]
    assert ids == [19556, 905]
    assert http.post("/detokenize", json={"tokens": ids}).json() == {"content": "Hello world"}
    pieces = http.post("/tokenize", json={"content": "Hello world", "with_pieces": True}).json()["tokens"]
    assert pieces == [{"id": 19556, "piece": "Hello"}, {"id": 905, "piece": " world"}]
    special = http.post("/tokenize", json={"content": "<|im_start|>", "parse_special": True}).json()["tokens"]
    assert len(special) == 1


def test_props_and_metrics(http):
    props = http.get("/props").json()
    assert props["total_slots"] == N_SLOTS and props["default_generation_settings"]["n_ctx"] == CTX // N_SLOTS
    assert "im_start" in props["chat_template"]
    before = metric(http, "tokens_predicted_total")
    http.post("/completion", json={"prompt": "Hi", "n_predict": 4, "temperature": 0})
    assert metric(http, "tokens_predicted_total") == before + 4
    text = http.get("/metrics").text
    for name in ("prompt_tokens_total", "prompt_seconds_total", "requests_total", "predicted_tokens_seconds",
                 "requests_processing", "n_decode_total"):
        assert f"# TYPE llamacpp:{name} " in text
    assert metric(http, "predicted_tokens_seconds") > 0


# -- slots --------------------------------------------------------------------------------------------------

def test_prompt_prefix_reuse(http):
    prompt = "You are a careful assistant. Answer in one short sentence. Question: why is the sea salty?"
    first = http.post("/completion", json={"prompt": prompt, "n_predict": 2, "temperature": 0, "id_slot": 1}).json()
    same = http.post("/completion", json={"prompt": prompt, "n_predict": 2, "temperature": 0, "id_slot": 1}).json()
    assert first["id_slot"] == same["id_slot"] == 1
    n = first["tokens_evaluated"]
    assert same["timings"]["prompt_n"] == 1 and same["timings"]["cache_n"] == n - 1
    longer = http.post("/completion", json={"prompt": prompt + " And why is the sky blue?", "n_predict": 2,
                                            "temperature": 0, "id_slot": 1}).json()
    assert longer["timings"]["cache_n"] >= n - 1
    assert longer["timings"]["prompt_n"] == longer["tokens_evaluated"] - longer["timings"]["cache_n"]
    assert longer["content"] == http.post("/completion", json={  # the cached prefix gives the same tokens
        "prompt": prompt + " And why is the sky blue?", "n_predict": 2, "temperature": 0, "id_slot": 0,
        "cache_prompt": False}).json()["content"]
    # a free slot is chosen by the longest cached prefix
    again = http.post("/completion", json={"prompt": prompt, "n_predict": 1, "temperature": 0}).json()
    assert again["id_slot"] == 1 and again["timings"]["cache_n"] > 0


def test_disconnect_frees_the_slot(http, server):
    # the grammar keeps it from ending on its own: only max_tokens or the disconnect can stop it
    body = {"prompt": "Write a very long story about a dragon.", "max_tokens": 900, "stream": True,
            "grammar": "root ::= [a-z ]+"}
    with httpx.Client(headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as c:
        with c.stream("POST", server + "/v1/completions", json=body) as r:
            lines = r.iter_lines()
            assert next(lines).startswith("data: ")
            assert metric(http, "requests_processing") == 1
    # the client left after the first token: the slot is free again within a few decode steps
    assert wait_idle(http, timeout=2.0)
    before = metric(http, "tokens_predicted_total")
    time.sleep(0.3)
    assert metric(http, "tokens_predicted_total") == before


def test_eight_streaming_clients_share_the_slots(server, http):
    """The issue's load test, bounded: 8 concurrent streaming clients for 60 s on 2 slots (no request starts
    after the deadline, each has a timeout): every request succeeds, the queue drains and no slot leaks."""
    failures, done = [], []
    load_s, request_timeout_s = 60, 180
    stop_at = time.monotonic() + load_s

    def client_loop(i):
        # a generous timeout: on a loaded 2-core machine a request may wait behind six others
        c = openai.OpenAI(base_url=server + "/v1", api_key=API_KEY, max_retries=0, timeout=request_timeout_s)
        while time.monotonic() < stop_at:
            try:
                chunks = list(c.chat.completions.create(
                    model="x", messages=[{"role": "user", "content": f"Say a word about the number {i}."}],
                    max_tokens=8, stream=True, seed=i))
                assert chunks[-1].choices[0].finish_reason in ("stop", "length")
                done.append(i)
            except Exception as e:  # noqa: BLE001 - collected and reported below
                failures.append(repr(e))

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:       # the last requests started before stop_at end within their timeout
        t.join(max(0.0, stop_at + request_timeout_s + 10 - time.monotonic()))
    assert not any(t.is_alive() for t in threads)
    assert not failures, failures[:3]
    assert len(set(done)) == 8
    assert wait_idle(http)
    assert metric(http, "n_busy_slots_per_decode") > 1.0     # the scheduler stepped slots together


# -- errors, the API key, limits -------------------------------------------------------------------------

def test_api_key_required_except_health(server):
    assert_error(httpx.get(server + "/v1/models"), 401, "authentication_error", "invalid api key")
    assert_error(httpx.post(server + "/v1/completions", json={"prompt": "x"},
                            headers={"Authorization": "Bearer wrong"}), 401, "authentication_error")
    assert_error(httpx.get(server + "/metrics"), 401, "authentication_error")
    bad = openai.OpenAI(base_url=server + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_bad_requests_are_4xx_and_the_server_keeps_serving(http):
    assert_error(http.post("/v1/completions", content=b"{not json"), 400, "invalid_request_error", "invalid json")
    assert_error(http.post("/v1/completions", json={"prompt": "x", "max_tokens": "many"}), 400,
                 "invalid_request_error", "max_tokens")
    assert_error(http.post("/v1/chat/completions", json={"messages": "hello"}), 400, "invalid_request_error",
                 "messages")
    assert_error(http.post("/v1/chat/completions", json={"messages": []}), 400, "invalid_request_error")
    assert_error(http.post("/v1/completions", json={"prompt": "word " * 1100}), 400, "exceed_context_size_error",
                 "exceed context window")
    assert_error(http.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 5000}), 400,
                 "invalid_request_error", "max_tokens (5000)")
    assert_error(http.post("/completion", json={"prompt": "Hi", "n_predict": 2000}), 400, "invalid_request_error",
                 "n_predict")
    assert_error(http.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema"}}), 400,
        "invalid_request_error", "json_schema")
    assert_error(http.post("/completion", json={"prompt": "x", "grammar": "root ::= undefined"}), 400,
                 "invalid_request_error", "undefined")
    assert_error(http.post("/detokenize", json={"tokens": [10 ** 9]}), 400, "invalid_request_error", "out of range")
    assert_error(http.post("/v1/completions", content=b"x" * (5 << 20)), 413, "invalid_request_error")
    assert_error(http.get("/no/such/endpoint"), 404, "not_found_error")
    out = http.post("/v1/completions", json={"prompt": "Hello", "max_tokens": 2, "temperature": 0})
    assert out.status_code == 200 and out.json()["usage"]["completion_tokens"] == 2


def test_metrics_needs_the_flag_and_the_command_line_fails_cleanly(server):
    port = int(server.rsplit(":", 1)[1])
    run = subprocess.run([sys.executable, "-m", "llamapy.cli.cmd_server", "-m", _model(), "--port", str(port)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and run.stderr.strip().count("\n") == 0
    assert run.stderr.startswith("error: couldn't bind HTTP server socket") and str(port) in run.stderr
    run = subprocess.run([sys.executable, "-m", "llamapy.cli.cmd_server", "-m", "/nonexistent.gguf"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and run.stderr == "error: failed to load model '/nonexistent.gguf': file does not exist\n"
    run = subprocess.run([sys.executable, "-m", "llamapy.cli.cmd_server", "-np", "0"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and run.stderr.startswith("error: -np") and run.stderr.count("\n") == 1


def test_defaults_bind_loopback_and_n_predict(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    free = sock.getsockname()[1]
    sock.close()
    grammar = tmp_path / "yesno.gbnf"
    grammar.write_text('root ::= "yes" | "no"\n')
    proc = subprocess.Popen([sys.executable, "-m", "llamapy.cli.cmd_server", "-m", _model(), "--port", str(free),
                             "-np", "1", "-c", "512", "-n", "3", "--grammar-file", str(grammar)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if "listening on" in line:
                assert f"http://127.0.0.1:{free}" in line
                break
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        url = f"http://127.0.0.1:{free}"
        assert httpx.get(url + "/v1/models").status_code == 200          # no --api-key: open
        out = httpx.post(url + "/completion", json={"prompt": "Is water wet?", "temperature": 0}, timeout=60).json()
        assert out["content"] in ("yes", "no")                            # --grammar-file applies by default
        free_text = httpx.post(url + "/completion", json={"prompt": "Is water wet?", "grammar": "root ::= [a-z ]+"},
                               timeout=60).json()
        assert free_text["tokens_predicted"] == 3                         # -n 3 when the request names none
    finally:
        stop_server(proc)
