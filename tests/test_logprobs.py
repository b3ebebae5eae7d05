"""Log probabilities (llamapy.logprobs) on the default model (SmolLM2-135M-Instruct Q4_1): Llama's completion and
chat shapes, their values against a numpy log-softmax of the model's own logits, and llamapy-server's three
endpoints read by the real openai client and httpx."""
from __future__ import annotations

import math

import httpx
import numpy as np
import openai
import pytest

from llamapy import Llama
from llamapy.models import model_path
from test_server import start_server, stop_server

PROMPT = "The capital of France is"
CHAT = [{"role": "user", "content": "Say hello in one short sentence."}]


@pytest.fixture(scope="module")
def llm():
    with Llama(str(model_path("smollm2", fetch=False)), n_ctx=512, verbose=False) as llm:
        yield llm


@pytest.fixture(scope="module")
def server():
    proc, url = start_server("-c", "1024", "-np", "2", "-t", "1")
    yield url
    stop_server(proc)


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x - x.max() - np.log(np.exp(x - x.max()).sum())


def test_completion_shape_greedy_token_is_the_top_one(llm):
    out = llm(PROMPT, max_tokens=8, temperature=0, logprobs=5)
    choice = out["choices"][0]
    lp = choice["logprobs"]
    assert set(lp) == {"tokens", "text_offset", "token_logprobs", "top_logprobs"}
    n = out["usage"]["completion_tokens"]
    assert n == 8 and all(len(lp[k]) == n for k in lp)
    assert "".join(lp["tokens"]) == choice["text"]
    # offsets count from the prompt's start: each token starts where the text before it ends
    assert lp["text_offset"] == [len(PROMPT) + len("".join(lp["tokens"][:i])) for i in range(n)]
    for token, logprob, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
        assert len(top) == 5 and top[token] == logprob
        assert logprob == max(top.values()) and logprob <= 0      # greedy picks the most likely token
        assert sum(math.exp(v) for v in top.values()) <= 1 + 1e-9


def test_logprobs_are_the_log_softmax_of_the_models_logits(llm):
    """Sampled (temperature 0.8, a seed): the reported values are the model's distribution before sampling."""
    out = llm(PROMPT, max_tokens=6, temperature=0.8, seed=7, logprobs=4)
    lp = out["choices"][0]["logprobs"]
    tok, model = llm.tokenizer_, llm._model
    ids = tok.encode(PROMPT, add_special=True, parse_special=True)
    logits = model.eval(ids, 0)[0]
    for i, text in enumerate(lp["tokens"]):
        ref = log_softmax(logits)
        top = np.argsort(-ref, kind="stable")[:4]
        assert list(lp["top_logprobs"][i].values())[:4] == pytest.approx(ref[top], abs=1e-5)
        assert [tok.token_to_piece(int(t)).decode("utf-8", "ignore") for t in top] == list(lp["top_logprobs"][i])[:4]
        # the sampled token: the one whose log probability and text were reported
        token = next(t for t in np.argsort(-ref) if tok.token_to_piece(int(t)).decode("utf-8", "ignore") == text)
        assert lp["token_logprobs"][i] == pytest.approx(ref[token], abs=1e-5)
        logits = model.eval([int(token)], len(ids) + i)[0]


def test_completion_stream_carries_the_same_logprobs(llm):
    whole = llm(PROMPT, max_tokens=6, temperature=0, logprobs=2)["choices"][0]["logprobs"]
    joined = {"tokens": [], "text_offset": [], "token_logprobs": [], "top_logprobs": []}
    for chunk in llm(PROMPT, max_tokens=6, temperature=0, logprobs=2, stream=True):
        lp = chunk["choices"][0]["logprobs"]
        if chunk["choices"][0]["finish_reason"] is None:
            for key in joined:
                joined[key] += lp[key]
    assert joined == whole


def test_stop_string_and_end_of_generation_tokens_are_not_reported(llm):
    # greedy: " Paris.\n\nThe ..."; the stop string's tokens go with it
    for stop, text in (("\n", " Paris."), (".", " Paris")):
        choice = llm(PROMPT, max_tokens=8, temperature=0, logprobs=0, stop=[stop])["choices"][0]
        assert choice["text"] == text and "".join(choice["logprobs"]["tokens"]) == text
    out = llm.create_chat_completion(CHAT, max_tokens=64, temperature=0, logprobs=True)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "stop"                       # ended by <|im_end|>, which is not listed
    content = choice["logprobs"]["content"]
    assert len(content) == out["usage"]["completion_tokens"]
    assert b"".join(bytes(e["bytes"]) for e in content).decode() == choice["message"]["content"]


def test_chat_shape_and_stream(llm):
    out = llm.create_chat_completion(CHAT, max_tokens=6, temperature=0, logprobs=True, top_logprobs=3)
    content = out["choices"][0]["logprobs"]["content"]
    assert len(content) == 6
    for e in content:
        assert set(e) == {"token", "logprob", "bytes", "top_logprobs"}
        assert bytes(e["bytes"]).decode("utf-8", "ignore") == e["token"]
        assert [set(t) for t in e["top_logprobs"]] == [{"token", "logprob", "bytes"}] * 3
        assert e["top_logprobs"][0]["token"] == e["token"] and e["top_logprobs"][0]["logprob"] == e["logprob"]
        assert sum(math.exp(t["logprob"]) for t in e["top_logprobs"]) <= 1 + 1e-9
    streamed = []
    for chunk in llm.create_chat_completion(CHAT, max_tokens=6, temperature=0, logprobs=True, top_logprobs=3,
                                            stream=True):
        if chunk["choices"][0]["logprobs"] is not None:
            streamed += chunk["choices"][0]["logprobs"]["content"]
    assert streamed == content
    # logprobs alone: each token's, no alternatives (OpenAI's default top_logprobs is 0)
    alone = llm.create_chat_completion(CHAT, max_tokens=3, temperature=0, logprobs=True)
    assert [e["top_logprobs"] for e in alone["choices"][0]["logprobs"]["content"]] == [[], [], []]


def test_off_by_default_and_bad_counts_are_refused(llm):
    assert llm(PROMPT, max_tokens=2)["choices"][0]["logprobs"] is None
    gen, _ = llm._start(PROMPT, 4, 0.0, 0.95, 0.05, 1.0, [], 0.0, 0.0, 1.0, 40, None, 0, 5.0, 0.1, None,
                        llm._dry_params(0.0, 1.75, 2, 64, None))
    assert all(step.probs == () for step in gen) and gen.logprobs == []   # nothing computed when off
    with pytest.raises(ValueError, match="logprobs must be"):
        llm(PROMPT, max_tokens=2, logprobs=-1)
    with pytest.raises(ValueError, match="echo"):
        llm(PROMPT, max_tokens=2, logprobs=1, echo=True)
    with pytest.raises(ValueError, match="requires logprobs"):
        llm.create_chat_completion(CHAT, max_tokens=2, top_logprobs=2)


def test_server_logprobs_through_the_openai_client(server, llm):
    client = openai.OpenAI(base_url=server + "/v1", api_key="none", max_retries=0, timeout=120)
    # the whole prompt evaluated each time, as Llama does: a slot that reuses the cached prompt evaluates its
    # last token alone, on the one-token kernel path, whose logits differ (up to 0.6 here) enough to swap this
    # prompt's two best first tokens (0.08 apart)
    fresh = {"cache_prompt": False}
    ref = llm(PROMPT, max_tokens=5, temperature=0, logprobs=3)["choices"][0]["logprobs"]
    got = client.completions.create(model="x", prompt=PROMPT, max_tokens=5, temperature=0, logprobs=3,
                                    extra_body=fresh)
    lp = got.choices[0].logprobs
    assert lp.tokens == ref["tokens"] and lp.text_offset == ref["text_offset"]
    assert lp.token_logprobs == pytest.approx(ref["token_logprobs"], abs=1e-5)
    assert [list(t) for t in lp.top_logprobs] == [list(t) for t in ref["top_logprobs"]]

    ref = llm.create_chat_completion(CHAT, max_tokens=5, temperature=0, logprobs=True,
                                     top_logprobs=2)["choices"][0]["logprobs"]["content"]
    got = client.chat.completions.create(model="x", messages=CHAT, max_tokens=5, temperature=0, logprobs=True,
                                         top_logprobs=2, extra_body=fresh)
    content = got.choices[0].logprobs.content
    assert [e.token for e in content] == [e["token"] for e in ref]
    assert [e.logprob for e in content] == pytest.approx([e["logprob"] for e in ref], abs=1e-5)
    assert [[t.token for t in e.top_logprobs] for e in content] == [[t["token"] for t in e["top_logprobs"]]
                                                                   for e in ref]
    streamed = []
    for chunk in client.chat.completions.create(model="x", messages=CHAT, max_tokens=5, temperature=0,
                                                logprobs=True, top_logprobs=2, stream=True, extra_body=fresh):
        if chunk.choices and chunk.choices[0].logprobs is not None:
            streamed += chunk.choices[0].logprobs.content
    assert [e.token for e in streamed] == [e.token for e in content]
    assert [e.bytes for e in streamed] == [e.bytes for e in content]


def test_server_native_n_probs_and_bad_requests(server):
    with httpx.Client(base_url=server, timeout=120) as http:
        out = http.post("/completion", json={"prompt": PROMPT, "n_predict": 4, "temperature": 0,
                                             "n_probs": 3}).json()
        probs = out["completion_probabilities"]
        assert [p["id"] for p in probs] == out["tokens"]
        for p in probs:
            assert set(p) == {"id", "token", "bytes", "logprob", "top_logprobs"}
            assert [set(t) for t in p["top_logprobs"]] == [{"id", "token", "bytes", "logprob"}] * 3
            assert p["top_logprobs"][0]["id"] == p["id"]
            assert p["logprob"] == max(t["logprob"] for t in p["top_logprobs"])
        plain = http.post("/completion", json={"prompt": PROMPT, "n_predict": 2}).json()
        assert "completion_probabilities" not in plain
        for path, body, words in (
                ("/v1/completions", {"prompt": PROMPT, "logprobs": -1}, "logprobs must be"),
                ("/v1/completions", {"prompt": PROMPT, "logprobs": 1, "echo": True}, "echo"),
                ("/v1/chat/completions", {"messages": CHAT, "top_logprobs": 2}, "requires logprobs"),
                ("/v1/chat/completions", {"messages": CHAT, "logprobs": "yes"}, "logprobs"),
                ("/completion", {"prompt": PROMPT, "n_probs": -3}, "n_probs must be")):
            r = http.post(path, json=body)
            assert r.status_code == 400, (path, body, r.text)
            err = r.json()["error"]
            assert err["type"] == "invalid_request_error" and words in err["message"] and err["code"] == 400
        assert http.get("/health").json() == {"status": "ok"}
