"""Llama.create_chat_completion on the default model (SmolLM2-135M-Instruct, ChatML template in its GGUF):
llama-cpp-python's dict shapes, greedy chat == greedy completion of the rendered prompt, streaming ==
non-streaming, a stop at the template's end-of-turn token."""
from __future__ import annotations

import pytest

from llamapy import Llama
from llamapy.chat import ChatTemplate
from llamapy.models import model_path

SEA = [{"role": "user", "content": "Write one sentence about the sea."}]
FRANCE = [{"role": "system", "content": "You are a helpful assistant."},
          {"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def llm():
    return Llama(model_path("smollm2", fetch=False), n_ctx=256, n_threads=2, verbose=False)


@pytest.fixture(scope="module")
def sea(llm):
    return llm.create_chat_completion(SEA, temperature=0, max_tokens=80)


def test_chat_completion_dict_shape(llm, sea):
    assert list(sea) == ["id", "object", "created", "model", "choices", "usage"]
    assert sea["id"].startswith("chatcmpl-") and sea["object"] == "chat.completion"
    assert isinstance(sea["created"], int) and sea["model"] == str(model_path("smollm2", fetch=False))
    (choice,) = sea["choices"]
    assert set(choice) == {"index", "message", "logprobs", "finish_reason"}
    assert choice["index"] == 0 and choice["logprobs"] is None
    assert choice["message"] == {"role": "assistant", "content": choice["message"]["content"]}
    usage = sea["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_stops_at_the_end_of_turn_token(llm, sea):
    choice = sea["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert sea["usage"]["completion_tokens"] < 80
    text = choice["message"]["content"]
    assert "sea" in text.lower() and "<|im_end|>" not in text and "<|im_start|>" not in text


def test_greedy_chat_equals_greedy_completion_of_the_rendered_prompt(llm, sea):
    prompt = llm.chat_template().render(SEA, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    completion = llm(prompt, temperature=0, max_tokens=80)
    assert completion["choices"][0]["text"] == sea["choices"][0]["message"]["content"]
    assert completion["usage"]["prompt_tokens"] == sea["usage"]["prompt_tokens"]
    assert completion["choices"][0]["finish_reason"] == sea["choices"][0]["finish_reason"]


def test_streaming_equals_non_streaming(llm):
    full = llm.create_chat_completion(FRANCE, temperature=0, max_tokens=24, seed=7)
    chunks = list(llm.create_chat_completion(FRANCE, temperature=0, max_tokens=24, seed=7, stream=True))
    for c in chunks:
        assert list(c) == ["id", "object", "created", "model", "choices"]
        assert c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"]
        assert c["id"].startswith("chatcmpl-")
    first, *middle, last = [c["choices"][0] for c in chunks]
    assert first == {"index": 0, "delta": {"role": "assistant"}, "logprobs": None, "finish_reason": None}
    assert all(set(c["delta"]) == {"content"} and c["finish_reason"] is None for c in middle)
    assert last["delta"] == {} and last["finish_reason"] == full["choices"][0]["finish_reason"]
    assert "".join(c["delta"]["content"] for c in middle) == full["choices"][0]["message"]["content"]


def test_sampled_chat_is_reproducible_with_a_seed(llm):
    a = llm.create_chat_completion(SEA, max_tokens=16, seed=42)
    b = llm.create_chat_completion(SEA, max_tokens=16, seed=42)
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]


def test_stop_strings(llm, sea):
    text = sea["choices"][0]["message"]["content"]
    word = text.split()[2]
    out = llm.create_chat_completion(SEA, temperature=0, max_tokens=80, stop=[word])
    assert out["choices"][0]["message"]["content"] == text[:text.index(word)]
    assert out["choices"][0]["finish_reason"] == "stop"


def test_chat_format_picks_a_builtin():
    llm = Llama(model_path("smollm2", fetch=False), n_ctx=128, n_threads=2, verbose=False, chat_format="zephyr")
    assert llm.chat_template().name == "zephyr"
    out = llm.create_chat_completion(SEA, temperature=0, max_tokens=4)
    prompt = ChatTemplate.builtin("zephyr").render(SEA)
    assert out["choices"][0]["message"]["content"] == llm(prompt, temperature=0, max_tokens=4)["choices"][0]["text"]
    with pytest.raises(ValueError, match="unknown chat template 'nope'"):
        Llama(model_path("smollm2", fetch=False), n_ctx=128, verbose=False, chat_format="nope")


def test_bad_requests(llm):
    with pytest.raises(ValueError, match="tools is not supported"):
        llm.create_chat_completion(SEA, tools=[{"type": "function"}])
    with pytest.raises(ValueError, match="message 0"):
        llm.create_chat_completion([{"content": "no role"}])
