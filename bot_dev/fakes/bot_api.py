"""A small, honest fake of the Telegram Bot API HTTP server for end-to-end tests.

The real python-telegram-bot ``Application`` talks plain HTTP to it, so the whole stack (request
encoding, error mapping, polling, retries) is exercised.  It runs on a stdlib
``ThreadingHTTPServer`` in a background thread, so a blocked long poll never blocks the event loop
under test.

By concern: `wire` (encoding, the HTTP server), `world` (chats, messages, queued updates, calls),
`methods` (what the bot calls), `users` (what people do); this module puts them together with the
lifecycle, request dispatch, failure injection and the waits tests use.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from bot_dev.fakes.methods import BotMethods
from bot_dev.fakes.users import UserActions
from bot_dev.fakes.wire import JSON, ApiCall, ApiError, Handler, Server, parse_params

__all__ = ["JSON", "ApiCall", "FakeBotApi"]


class FakeBotApi(BotMethods, UserActions):
    """In-process Telegram Bot API: records calls, models chats, queues updates, injects failures."""

    def __init__(
        self,
        token: str = "123456:TEST-token-abcdefghijklmnopqrstuvwxyz",
        bot_username: str = "support_test_bot",
        bot_id: int = 777,
    ) -> None:
        super().__init__(token, bot_username, bot_id)
        self._failures: dict[str, list[ApiError]] = {}
        self._delays: dict[str, list[float]] = {}
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._methods = self.method_table()

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Self:
        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-bot-api",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True  # release long pollers so the server can shut down promptly
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "FakeBotApi.start() was not called"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # --- failure injection ---------------------------------------------------------------------------
    def fail_next(self, method: str, count: int, retry_after: int = 1) -> None:
        """Answer the next ``count`` calls of ``method`` with flood control (HTTP 429)."""
        error = ApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})
        with self._cond:
            self._failures.setdefault(method.lower(), []).extend([error] * count)

    def fail_next_with(self, method: str, count: int, status: int, description: str) -> None:
        """Answer the next ``count`` calls of ``method`` with an arbitrary error (409, 500, ...)."""
        with self._cond:
            self._failures.setdefault(method.lower(), []).extend([ApiError(status, description)] * count)

    def delay_next(self, method: str, count: int, seconds: float) -> None:
        """Apply the next ``count`` calls of ``method`` normally but answer only after ``seconds``
        (longer than the client's timeout, it simulates a reply lost in the network)."""
        with self._cond:
            self._delays.setdefault(method.lower(), []).extend([seconds] * count)

    # --- HTTP dispatch -----------------------------------------------------------------------------
    def handle(self, path: str, query: str, content_type: str, body: bytes) -> tuple[int, JSON]:
        """Serve one request (called on a server thread); returns (HTTP status, JSON body)."""
        received, params = time.monotonic(), dict[str, Any]()
        match = re.fullmatch(r"/bot([^/]+)/([A-Za-z]+)", path)
        method = match.group(2) if match else path
        try:
            if match is None:
                raise ApiError(404, "Not Found")
            params = parse_params(query, content_type, body)
            if match.group(1) != self.token:
                raise ApiError(401, "Unauthorized")
            with self._cond:
                pending = self._failures.get(method.lower())
                if pending:
                    raise pending.pop(0)
            handler = self._methods.get(method.lower())
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            status, payload = 200, {"ok": True, "result": handler(params)}
        except ApiError as err:
            status, payload = err.status, err.payload()
        except (ValueError, TypeError, KeyError) as err:
            status, payload = 400, ApiError(400, f"Bad Request: {err}").payload()
        with self._cond:
            self.calls.append(ApiCall(method, params, received, status))
            delays = self._delays.get(method.lower())
            delay = delays.pop(0) if delays else 0.0
        if delay:
            time.sleep(delay)  # on this request's server thread only
        return status, payload

    # --- test helpers --------------------------------------------------------------------------------
    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Poll ``predicate`` without blocking the loop the bot runs on. ``timeout`` only bounds a hang: a
        busy machine makes the wait longer, so it must not be a measure of speed."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                with self._cond:
                    recent = [f"{c.method}->{c.status}" for c in self.calls[-15:]]
                    shown = {chat: self.messages_in(chat) for chat in self.sent}
                name = getattr(predicate, "__qualname__", repr(predicate))
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {name}; "
                    f"recent calls: {recent}; chats show: {shown}"
                )
            await asyncio.sleep(0.02)

    async def wait_for_messages(self, chat_id: int, count: int, timeout: float = 60) -> list[str]:  # noqa: ASYNC109
        """Wait until the bot has at least ``count`` messages in ``chat_id``; return their texts."""
        await self.wait_for(lambda: len(self.messages_in(chat_id)) >= count, timeout)
        return self.messages_in(chat_id)
