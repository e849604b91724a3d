"""An OpenAI-compatible HTTP server over any Engine: what `bot serve-model` runs for many bot replicas.

`POST /v1/chat/completions` (JSON or SSE streaming, n > 1 through `engine.candidates`), `GET /v1/models`
and `GET /healthz`, on tornado (the handlers are in `handlers.py`). Messages are rendered to token ids by
an injected Renderer (the bot's ChatFormat over the local tokenizer), so this package needs nothing
outside `bot.llm`: it is a transport for an Engine, not for the chat service.

Under load it sheds rather than hangs: the engine's bounded queue answers 429 with Retry-After at once
when full, and every request has a deadline (the generation timeout, GENERATION_TIMEOUT_SECONDS): one
that has not been answered by then (a non-streamed reply) or has not started (a streamed one) is
answered 503 with Retry-After and its generation cancelled, so no request waits longer than that. A
client that disconnects cancels its generation and frees its place in the queue; the access log shows
such a request as 499 (nginx's "client closed request") with the time it really took.
With an API key set, every /v1 request needs it (constant-time comparison).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

import tornado.httpserver
import tornado.netutil
import tornado.web

from bot.core.domain import GenerationParams
from bot.llm.base import Engine
from bot.transports.openai_server.chat_request import ChatRequest, Job, Renderer, to_job
from bot.transports.openai_server.handlers import Completions, Health, Models, NotFound

__all__ = ["ModelServer"]

log = logging.getLogger(__name__)


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
        """`defaults` gives max_tokens when a request names none, and every request's deadline."""
        self.engine, self.renderer, self.count_tokens = engine, renderer, count_tokens
        self.model_id, self.context_tokens, self.defaults = model_id, context_tokens, defaults
        self.deadline_seconds = defaults.timeout_seconds
        self.api_key = api_key.encode() if api_key else None
        self.draining = False
        self.active = 0  # requests being answered
        self._idle = asyncio.Event()
        self._idle.set()
        app = tornado.web.Application(
            [
                ("/healthz", Health, {"server": self}),
                ("/v1/models", Models, {"server": self}),
                ("/v1/chat/completions", Completions, {"server": self}),
            ],
            default_handler_class=NotFound,
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
    # "status in N ms": two short numbers, never one digit run the log's PII mask could take for a phone
    status, took = handler.get_status(), 1000 * request.request_time()
    log.info("%s %s %d in %.0f ms", request.method, request.path, status, took)
