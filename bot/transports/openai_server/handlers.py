"""The tornado handlers of `bot serve-model`: authentication, errors in OpenAI's format, completions.

A completion's first piece is awaited before the response starts, so a busy engine is still a proper
429 and a missed deadline a proper 503, both with Retry-After; later failures of a streamed reply
arrive as an `error` event in the stream.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import tornado.iostream
import tornado.web
from pydantic import ValidationError

from bot.core.errors import EngineBusy, GenerationError, GenerationTimeout
from bot.transports.openai_server.chat_request import BadRequest, ChatRequest, Job
from bot.transports.openai_server.render import Rendering, error_body

if TYPE_CHECKING:
    from bot.transports.openai_server.server import ModelServer

__all__ = ["BUSY_RETRY_AFTER_SECONDS", "CLIENT_CLOSED", "Completions", "Health", "Models", "NotFound"]

log = logging.getLogger(__name__)

BUSY_RETRY_AFTER_SECONDS = 1
CLIENT_CLOSED = 499  # nginx's status for a request whose client went away before the answer


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


class NotFound(_Handler):
    def prepare(self) -> None:
        self.fail(
            404, f"no such endpoint: {self.request.method} {self.request.path}", "invalid_request_error"
        )


class Health(_Handler):
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


class Models(_Authorised):
    def get(self) -> None:
        model = {"id": self.server.model_id, "object": "model", "created": 0, "owned_by": "tg-support-bot"}
        self.finish({"object": "list", "data": [model]})


class Completions(_Authorised):
    _task: asyncio.Future[None] | None = None
    _gone = False

    async def post(self) -> None:
        job = self._read_job()
        if job is None:
            return
        self.server.enter()
        deadline = asyncio.get_running_loop().time() + self.server.deadline_seconds
        reply = self._candidates(job, deadline) if job.params.num_candidates > 1 else self._one(job, deadline)
        self._task = asyncio.ensure_future(reply)
        try:
            await self._task
        except asyncio.CancelledError:
            if not self._gone:
                raise
        except tornado.iostream.StreamClosedError:
            self._gone = True
        finally:
            self.server.leave()
            if self._gone:  # the access log shows what happened, not the 200 nobody received
                self.set_status(CLIENT_CLOSED, "Client Closed Request")

    def _read_job(self) -> Job | None:
        try:
            return self.server.job(ChatRequest.model_validate_json(self.request.body))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            self.fail(400, f"{where}: {first['msg']}" if where else first["msg"], "invalid_request_error")
        except BadRequest as exc:
            self.fail(exc.status, str(exc), "invalid_request_error", exc.code)
        return None

    def on_connection_close(self) -> None:
        self._gone = True
        if self._task is not None:
            self._task.cancel()  # closes the engine's stream: the generation stops, its place is freed

    async def _one(self, job: Job, deadline: float) -> None:
        out = Rendering(self, job, self.server.model_id, self.server.count_tokens)
        async with aclosing(self.server.engine.stream(job.prompt, job.params)) as stream:
            try:
                async with asyncio.timeout_at(deadline):  # a streamed reply: until it starts
                    first = await anext(stream, None)
                    pieces = [first] if first is not None else []
                    if not job.stream:  # a whole reply: until it is complete
                        pieces += [piece async for piece in stream]
            except GenerationError as exc:
                return self._generation_failed(exc)
            except TimeoutError:
                return self._overloaded()
            if not job.stream:
                return out.complete([("".join(pieces), None)])
            await out.start_stream(pieces)
            try:
                async for piece in stream:
                    pieces.append(piece)
                    await out.chunk({"content": piece})
            except GenerationError as exc:
                return out.abort(error_body(exc))
        await out.end_stream(["".join(pieces)])

    async def _candidates(self, job: Job, deadline: float) -> None:
        out = Rendering(self, job, self.server.model_id, self.server.count_tokens)
        try:
            async with asyncio.timeout_at(deadline):
                found = await self.server.engine.candidates(job.prompt, job.params)
        except GenerationError as exc:
            return self._generation_failed(exc)
        except TimeoutError:
            return self._overloaded()
        if not job.stream:
            return out.complete([(c.text, c.mean_logprob) for c in found])
        out.stream_headers()
        for index, candidate in enumerate(found):
            await out.chunk({"role": "assistant", "content": candidate.text}, index=index)
        await out.end_stream([c.text for c in found])

    def _overloaded(self) -> None:
        seconds = f"{self.server.deadline_seconds:g}"
        self.fail(
            503,
            f"the model is too busy to answer within {seconds} s; retry later",
            "server_error",
            "overloaded",
            Retry_After=str(BUSY_RETRY_AFTER_SECONDS),
        )

    def _generation_failed(self, exc: GenerationError) -> None:
        if isinstance(exc, EngineBusy):
            retry = str(BUSY_RETRY_AFTER_SECONDS)
            return self.fail(429, str(exc), "rate_limit_error", "engine_busy", Retry_After=retry)
        if isinstance(exc, GenerationTimeout):
            return self.fail(504, str(exc), "server_error", "timeout")
        return self.fail(500, str(exc), "server_error", "generation_failed")
