"""An OpenAI-compatible HTTP server over any Engine: what `bot serve-model` runs for many bot replicas.

`POST /v1/chat/completions` (JSON or SSE streaming, n > 1 through `engine.candidates`), `GET /v1/models`
and `GET /healthz`, on tornado. Messages are rendered to token ids by an injected Renderer (the bot's
ChatFormat over the local tokenizer), so this module needs nothing outside `bot.llm`: it is a transport
for an Engine, not for the chat service. The first piece of a reply is awaited before the response
starts, so a busy engine is still a proper 429 with Retry-After; later failures arrive as an `error`
event in the stream. A client that disconnects cancels its generation. With an API key set, every /v1
request needs it (constant-time comparison).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import socket
from collections.abc import Callable, Sequence
from contextlib import aclosing
from typing import Any

import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web
from pydantic import ValidationError

from bot.core.domain import GenerationParams
from bot.core.errors import EngineBusy, GenerationError, GenerationTimeout
from bot.llm.base import Engine
from bot.transports.openai_server.chat_request import BadRequest, ChatRequest, Job, Renderer, to_job

__all__ = ["ModelServer"]

log = logging.getLogger(__name__)

BUSY_RETRY_AFTER_SECONDS = 1


class ModelServer:
    def __init__(
        self,
        engine: Engine,
        renderer: Renderer,
        count_tokens: Callable[[str], int],
        *,
        model_id: str,
        context_tokens: int,
        defaults: GenerationParams,
        api_key: str | None = None,
    ) -> None:
        """`defaults` gives max_tokens when a request names none, and the server's own time limit."""
        self.engine, self.renderer, self.count_tokens = engine, renderer, count_tokens
        self.model_id, self.context_tokens, self.defaults = model_id, context_tokens, defaults
        self.api_key = api_key.encode() if api_key else None
        self.draining = False
        self.active = 0  # requests being answered
        self._idle = asyncio.Event()
        self._idle.set()
        app = tornado.web.Application(
            [
                ("/healthz", _Health, {"server": self}),
                ("/v1/models", _Models, {"server": self}),
                ("/v1/chat/completions", _Completions, {"server": self}),
            ],
            default_handler_class=_NotFound,
            default_handler_args={"server": self},
            log_function=_log_request,
        )
        self._http = tornado.httpserver.HTTPServer(app)

    def start(self, host: str, port: int) -> int:
        """Listen (port 0: any free port) and return the port."""
        sockets = tornado.netutil.bind_sockets(port, address=host, family=socket.AF_INET)
        self._http.add_sockets(sockets)
        bound = int(sockets[0].getsockname()[1])
        log.info("serving %s on http://%s:%d/v1 (OpenAI-compatible)", self.model_id, host, bound)
        return bound

    async def stop(self, grace_seconds: float = 0.0) -> None:
        """Stop listening; answer 503 to new requests on open connections; let replies in progress finish."""
        self.draining = True
        self._http.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace_seconds)
        await self._http.close_all_connections()

    def enter(self) -> None:
        self.active += 1
        self._idle.clear()

    def leave(self) -> None:
        self.active -= 1
        if not self.active:
            self._idle.set()

    def job(self, request: ChatRequest) -> Job:
        """The prompt and sampling parameters of a request; BadRequest says what is wrong with it."""
        return to_job(
            request,
            self.renderer,
            model_id=self.model_id,
            context_tokens=self.context_tokens,
            defaults=self.defaults,
        )


def _log_request(handler: tornado.web.RequestHandler) -> None:
    request = handler.request
    log.info(
        "%s %s %d %.0f ms", request.method, request.path, handler.get_status(), 1000 * request.request_time()
    )


class _Handler(tornado.web.RequestHandler):
    def initialize(self, server: ModelServer) -> None:
        self.server = server

    def fail(self, status: int, message: str, kind: str, code: str | None = None, **headers: str) -> None:
        """An error in OpenAI's format, with `headers` (Retry_After="1" -> Retry-After: 1)."""
        self.clear()
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        for name, value in headers.items():
            self.set_header(name.replace("_", "-"), value)
        self.finish({"error": {"message": message, "type": kind, "param": None, "code": code}})

    def write_error(self, status_code: int, **kwargs: Any) -> None:  # never a traceback to clients
        self.fail(status_code, self._reason, "server_error")

    def log_exception(self, *args: Any) -> None:  # tornado's default would log request headers
        if not isinstance(args[1], tornado.web.HTTPError):
            log.error("request to %s failed", self.request.path, exc_info=args)


class _NotFound(_Handler):
    def prepare(self) -> None:
        self.fail(
            404, f"no such endpoint: {self.request.method} {self.request.path}", "invalid_request_error"
        )


class _Health(_Handler):
    def get(self) -> None:
        self.write("ok\n")


class _Authorised(_Handler):
    def prepare(self) -> None:
        if self.server.api_key is not None:
            given = self.request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, b"Bearer " + self.server.api_key):
                self.fail(
                    401,
                    "invalid or missing API key",
                    "invalid_request_error",
                    "invalid_api_key",
                    WWW_Authenticate="Bearer",
                )
                return
        if self.server.draining:
            self.fail(
                503,
                "the server is shutting down",
                "server_error",
                "unavailable",
                Retry_After=str(BUSY_RETRY_AFTER_SECONDS),
            )


class _Models(_Authorised):
    def get(self) -> None:
        model = {"id": self.server.model_id, "object": "model", "created": 0, "owned_by": "tg-support-bot"}
        self.finish({"object": "list", "data": [model]})


class _Completions(_Authorised):
    _task: asyncio.Future[None] | None = None
    _gone = False

    async def post(self) -> None:
        try:
            job = self.server.job(ChatRequest.model_validate_json(self.request.body))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            return self.fail(
                400, f"{where}: {first['msg']}" if where else first["msg"], "invalid_request_error"
            )
        except BadRequest as exc:
            return self.fail(exc.status, str(exc), "invalid_request_error", exc.code)
        self.server.enter()
        self._task = asyncio.ensure_future(
            self._candidates(job) if job.params.num_candidates > 1 else self._one(job)
        )
        try:
            await self._task
        except asyncio.CancelledError:
            if not self._gone:
                raise
        except tornado.iostream.StreamClosedError:
            pass
        finally:
            self.server.leave()

    def on_connection_close(self) -> None:
        self._gone = True
        if self._task is not None:
            self._task.cancel()  # closes the engine's stream: the generation stops

    async def _one(self, job: Job) -> None:
        pieces: list[str] = []
        async with aclosing(self.server.engine.stream(job.prompt, job.params)) as stream:
            try:
                first = await anext(stream, None)
            except GenerationError as exc:
                return self._generation_failed(exc)
            if first is not None:
                pieces.append(first)
            if not job.stream:
                try:
                    pieces += [piece async for piece in stream]
                except GenerationError as exc:
                    return self._generation_failed(exc)
                return self._complete(job, [("".join(pieces), None)])
            self._start_stream()
            await self._chunk(job, {"role": "assistant", "content": ""})
            if first is not None:
                await self._chunk(job, {"content": first})
            try:
                async for piece in stream:
                    pieces.append(piece)
                    await self._chunk(job, {"content": piece})
            except GenerationError as exc:
                self._event({"error": _error_body(exc)})
                self.finish()
                return
        await self._end_stream(job, ["".join(pieces)])

    async def _candidates(self, job: Job) -> None:
        try:
            found = await self.server.engine.candidates(job.prompt, job.params)
        except GenerationError as exc:
            return self._generation_failed(exc)
        if not job.stream:
            return self._complete(job, [(c.text, c.mean_logprob) for c in found])
        self._start_stream()
        for index, candidate in enumerate(found):
            await self._chunk(job, {"role": "assistant", "content": candidate.text}, index=index)
        await self._end_stream(job, [c.text for c in found])

    def _generation_failed(self, exc: GenerationError) -> None:
        if isinstance(exc, EngineBusy):
            retry = str(BUSY_RETRY_AFTER_SECONDS)
            return self.fail(429, str(exc), "rate_limit_error", "engine_busy", Retry_After=retry)
        if isinstance(exc, GenerationTimeout):
            return self.fail(504, str(exc), "server_error", "timeout")
        return self.fail(500, str(exc), "server_error", "generation_failed")

    def _usage(self, job: Job, texts: Sequence[str]) -> tuple[dict[str, int], list[str]]:
        counts = [self.server.count_tokens(text) for text in texts]
        done = ["length" if count >= job.params.max_new_tokens else "stop" for count in counts]
        used = job.prompt.token_count
        return {
            "prompt_tokens": used,
            "completion_tokens": sum(counts),
            "total_tokens": used + sum(counts),
        }, done

    def _complete(self, job: Job, replies: Sequence[tuple[str, float | None]]) -> None:
        usage, finish = self._usage(job, [text for text, _ in replies])
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
        self.finish({**self._head(job, "chat.completion"), "choices": choices, "usage": usage})

    def _head(self, job: Job, kind: str) -> dict[str, Any]:
        return {"id": job.id, "object": kind, "created": job.created, "model": self.server.model_id}

    def _start_stream(self) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # nginx: pass events on as they come

    def _event(self, data: object) -> None:
        self.write(f"data: {json.dumps(data, ensure_ascii=False)}\n\n")

    async def _chunk(
        self, job: Job, delta: dict[str, str], *, index: int = 0, reason: str | None = None
    ) -> None:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}
        self._event({**self._head(job, "chat.completion.chunk"), "choices": [choice]})
        await self.flush()  # raises StreamClosedError once the client has gone

    async def _end_stream(self, job: Job, texts: Sequence[str]) -> None:
        usage, finish = self._usage(job, texts)
        for index, reason in enumerate(finish):
            await self._chunk(job, {}, index=index, reason=reason)
        if job.usage:
            self._event({**self._head(job, "chat.completion.chunk"), "choices": [], "usage": usage})
        self.write("data: [DONE]\n\n")
        self.finish()


def _error_body(exc: GenerationError) -> dict[str, Any]:
    code = "timeout" if isinstance(exc, GenerationTimeout) else "generation_failed"
    return {"message": str(exc), "type": "server_error", "param": None, "code": code}
