"""Request bodies of the server's endpoints (pydantic): the OpenAI names for /v1/*, llama-server's for the
native endpoints. Unknown fields are accepted and ignored (clients send more than we use); a known field of
the wrong type is a 400. Sampling defaults are llama-server's (temperature 0.8, top_k 40, top_p 0.95,
min_p 0.05, a random seed); a missing max_tokens / n_predict means the server's -n."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field



class _Request(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class SamplingFields(_Request):
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    seed: int | None = None
    stop: str | list[str] | None = None
    logit_bias: dict[str, float] | None = None
    grammar: str | None = None
    stream: bool = False
    cache_prompt: bool = True
    id_slot: int = -1


class CompletionRequest(SamplingFields):
    """POST /v1/completions."""
    prompt: str | list[int] = ""
    max_tokens: int | None = None
    echo: bool = False
    logprobs: int | None = None
    n: int = 1
    stream_options: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None


class ChatMessage(_Request):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(SamplingFields):
    """POST /v1/chat/completions."""
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    n: int = 1
    stream_options: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None


class NativeCompletionRequest(SamplingFields):
    """POST /completion (llama-server's own names)."""
    prompt: str | list[int] = ""
    n_predict: int | None = None
    n_probs: int = 0
    json_schema: dict[str, Any] | None = None
    ignore_eos: bool = False


class TokenizeRequest(_Request):
    content: str
    add_special: bool = False
    parse_special: bool = True
    with_pieces: bool = False


class DetokenizeRequest(_Request):
    tokens: list[int]
