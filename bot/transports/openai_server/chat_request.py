"""OpenAI's chat-completion request, as `bot serve-model` reads it and turns it into engine input.

Validation is pydantic's, so a malformed request gets a message naming the field; what cannot be served
(another model, a prompt over the context) is a BadRequest carrying its HTTP status and OpenAI error code.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Sequence
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from bot.core.domain import GenerationParams, Prompt, Role

__all__ = ["BadRequest", "ChatRequest", "Job", "Renderer", "to_job"]


class Renderer(Protocol):
    """Turns a system prompt and messages into the model's token ids (bot.prompt.builder.ChatFormat)."""

    @property
    def stop_strings(self) -> tuple[str, ...]: ...

    def render(self, system: str, messages: Sequence[tuple[Role, str]]) -> list[int]: ...


class _Part(BaseModel):
    type: Literal["text"]
    text: str


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[_Part] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The fields of OpenAI's chat-completion request this server honours; others are ignored."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())
    model: str = ""
    messages: list[_Message] = Field(min_length=1)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    n: int = Field(1, ge=1, le=16)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=-1)
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0)
    seed: int | None = None
    stop: str | list[str] | None = None


class BadRequest(Exception):
    """A request this server cannot honour: its HTTP status, OpenAI error code and message."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """What one request asks of the engine, and how to answer it."""

    prompt: Prompt
    params: GenerationParams
    stream: bool
    usage: bool
    id: str = dataclasses.field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = dataclasses.field(default_factory=lambda: int(time.time()))


def to_job(
    request: ChatRequest,
    renderer: Renderer,
    *,
    model_id: str,
    context_tokens: int,
    defaults: GenerationParams,
) -> Job:
    """The prompt and sampling parameters of a request; BadRequest says what is wrong with it."""
    if request.model and request.model != model_id:
        raise BadRequest(
            404,
            f"the model {request.model!r} is not served here; this one is {model_id!r}",
            "model_not_found",
        )
    system = "\n\n".join(m.text() for m in request.messages if m.role in ("system", "developer"))
    messages = [(Role(m.role), m.text()) for m in request.messages if m.role in ("user", "assistant")]
    if not messages:
        raise BadRequest(400, "messages: at least one user or assistant message is required")
    ids = renderer.render(system, messages)
    room = context_tokens - len(ids)
    if room < 1:
        raise BadRequest(
            400,
            f"This model's maximum context length is {context_tokens} tokens; "
            f"the messages take {len(ids)} tokens",
            "context_length_exceeded",
        )
    stops = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    wanted = request.max_completion_tokens or request.max_tokens or defaults.max_new_tokens
    params = dataclasses.replace(
        defaults,
        max_new_tokens=min(wanted, room),
        do_sample=request.temperature > 0,
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=max(request.top_k, 0),
        repetition_penalty=request.repetition_penalty,
        seed=request.seed,
        num_candidates=request.n,
    )
    prompt = Prompt(tuple(ids), (*renderer.stop_strings, *stops), messages=tuple(messages))
    include = request.stream_options.include_usage if request.stream_options else False
    return Job(prompt, params, request.stream, include)
