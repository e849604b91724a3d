"""Writing a chat completion in OpenAI's wire format: one JSON body, or server-sent events in chunks."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import tornado.web

from bot.core.errors import GenerationError, GenerationTimeout
from bot.transports.openai_server.chat_request import Job

__all__ = ["Rendering", "error_body"]


class Rendering:
    """One request's answer: its id and model in every chunk, usage counted with the model's tokenizer."""

    def __init__(
        self, handler: tornado.web.RequestHandler, job: Job, model_id: str, count: Callable[[str], int]
    ) -> None:
        self._handler, self._job, self._model_id, self._count = handler, job, model_id, count

    def _usage(self, texts: Sequence[str]) -> tuple[dict[str, int], list[str]]:
        counts = [self._count(text) for text in texts]
        done = ["length" if count >= self._job.params.max_new_tokens else "stop" for count in counts]
        used = self._job.prompt.token_count
        return {
            "prompt_tokens": used,
            "completion_tokens": sum(counts),
            "total_tokens": used + sum(counts),
        }, done

    def _head(self, kind: str) -> dict[str, Any]:
        job = self._job
        return {"id": job.id, "object": kind, "created": job.created, "model": self._model_id}

    def complete(self, replies: Sequence[tuple[str, float | None]]) -> None:
        usage, finish = self._usage([text for text, _ in replies])
        choices = []
        for index, ((text, mean), reason) in enumerate(zip(replies, finish, strict=True)):
            choice: dict[str, Any] = {
                "index": index,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": reason,
            }
            if mean is not None:
                choice["mean_logprob"] = mean  # an extension: how the engine ranked the candidates
            choices.append(choice)
        self._handler.finish({**self._head("chat.completion"), "choices": choices, "usage": usage})

    def stream_headers(self) -> None:
        handler = self._handler
        handler.set_header("Content-Type", "text/event-stream; charset=utf-8")
        handler.set_header("Cache-Control", "no-cache")
        handler.set_header("X-Accel-Buffering", "no")  # nginx: pass events on as they come

    async def start_stream(self, first: Sequence[str]) -> None:
        """Headers, the assistant role, and the pieces that arrived before the response started."""
        self.stream_headers()
        await self.chunk({"role": "assistant", "content": ""})
        for piece in first:
            await self.chunk({"content": piece})

    def _event(self, data: object) -> None:
        self._handler.write(f"data: {json.dumps(data, ensure_ascii=False)}\n\n")

    async def chunk(self, delta: dict[str, str], *, index: int = 0, reason: str | None = None) -> None:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}
        self._event({**self._head("chat.completion.chunk"), "choices": [choice]})
        await self._handler.flush()  # raises StreamClosedError once the client has gone

    def abort(self, error: dict[str, Any]) -> None:
        """A failure after the stream started: an `error` event, then the end."""
        self._event({"error": error})
        self._handler.finish()

    async def end_stream(self, texts: Sequence[str]) -> None:
        usage, finish = self._usage(texts)
        for index, reason in enumerate(finish):
            await self.chunk({}, index=index, reason=reason)
        if self._job.usage:
            self._event({**self._head("chat.completion.chunk"), "choices": [], "usage": usage})
        self._handler.write("data: [DONE]\n\n")
        self._handler.finish()


def error_body(exc: GenerationError) -> dict[str, Any]:
    code = "timeout" if isinstance(exc, GenerationTimeout) else "generation_failed"
    return {"message": str(exc), "type": "server_error", "param": None, "code": code}
