"""The webhook receiver: Telegram POSTs updates here; each is answered before it is acknowledged.

Telegram keeps an update until its webhook request gets a 2xx, retries it with growing pauses when the
request fails (up to a day), and sends a chat's next update only after the previous one was acknowledged.
So this receiver acknowledges an update only once it has been handled, with the reply sent: a replica
killed mid-reply never acknowledged it, and Telegram delivers it again (through the load balancer, to
whichever replica); the delivery lease (`bot/chat/ordering.py`) makes sure it is answered once.
Telegram gives up on a request after about 60 s, so one still in progress after `ack_timeout` is answered
503 while it carries on: the redelivery then finds it done (200) or still held (it waits in turn).

PTB's built-in webhook server compares the secret with `!=`; this one uses a constant-time comparison,
answers 403 without reading the body when the secret is wrong or missing, and logs no header values.
A body that is not an update object (an array, a number, an object without an integer `update_id`)
is answered 400 (Telegram does not retry a 4xx), and any other method than POST 405: both are the
client's mistake, so they cost a WARNING line at most, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Iterator
from typing import Any

import tornado.httpserver
import tornado.iostream
import tornado.web
from telegram import Update
from telegram.ext import Application

__all__ = ["ACK_TIMEOUT_SECONDS", "SECRET_HEADER", "WebhookServer"]

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# The Bot API server closes a webhook connection after 60 s without an answer; stay well inside that.
ACK_TIMEOUT_SECONDS = 45.0


class _UpdateHandler(tornado.web.RequestHandler):
    def initialize(self, server: WebhookServer, secret: str) -> None:
        self._server, self._secret = server, secret.encode()

    async def post(self) -> None:
        given = self.request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            log.warning("webhook request from %s refused: missing or wrong secret", self.request.remote_ip)
            self.set_status(403)
            return
        update = self._update()
        if update is None:
            self.set_status(400)
            return
        with self._server.answering():
            if await self._server.handle(update):
                self.set_status(200)
            else:
                self.set_status(503)
                self.set_header("Retry-After", "5")
            with contextlib.suppress(tornado.iostream.StreamClosedError):  # Telegram hung up: it retries
                await self.finish()  # flushed before shutdown closes the connection

    def _update(self) -> Update | None:
        """The update in the body, or None (and one WARNING line saying why) if there is none."""
        try:
            data: Any = json.loads(self.request.body)
        except ValueError as exc:
            log.warning("webhook request refused: the body is not JSON (%s)", exc)
            return None
        update_id = data.get("update_id") if isinstance(data, dict) else None
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            log.warning("webhook request refused: the body is not an update object (%s)", _shape(data))
            return None
        try:
            return Update.de_json(data, self._server.bot)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("webhook request refused: update %d is malformed (%s)", update_id, type(exc).__name__)
            return None

    async def get(self) -> None:
        self._not_allowed()

    async def head(self) -> None:
        self._not_allowed()

    def _not_allowed(self) -> None:
        log.debug("webhook: %s refused (only POST)", self.request.method)
        self.set_status(405)
        self.set_header("Allow", "POST")

    def log_exception(self, *args: Any) -> None:  # tornado's default would log request details
        if isinstance(args[1], tornado.web.HTTPError):  # e.g. 405 for PUT: the client's mistake
            log.debug("webhook request refused: %s", args[1])
            return
        log.error("webhook handler failed", exc_info=args)


def _shape(data: object) -> str:
    """What the body was, without its content (which may hold anything)."""
    if isinstance(data, dict):
        return "an object without an integer update_id"
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(data), "null")


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Requests at DEBUG: refusals are logged once by the handler, with the reason, not per request."""
    request = handler.request
    log.debug("webhook %s %d %.0f ms", request.method, handler.get_status(), 1000 * request.request_time())


class WebhookServer:
    """Hands each update to the Application and answers Telegram once it has been handled."""

    def __init__(
        self,
        *,
        application: Application,  # type: ignore[type-arg]
        secret: str,
        path: str,
        ack_timeout: float = ACK_TIMEOUT_SECONDS,
        grace: float = 20.0,
    ) -> None:
        self._application = application
        self.bot = application.bot
        self._ack_timeout = ack_timeout
        self._grace = grace
        self._handling: dict[int, asyncio.Task[None]] = {}
        self._answering = 0
        self._all_answered = asyncio.Event()
        self._all_answered.set()
        app = tornado.web.Application(
            [(path, _UpdateHandler, {"server": self, "secret": secret})], log_function=_log_request
        )
        self._server = tornado.httpserver.HTTPServer(app, xheaders=True)

    async def handle(self, update: Update) -> bool:
        """Process `update` (once, however often it arrives); True when done within the ack timeout."""
        task = self._handling.get(update.update_id)
        if task is None:  # a redelivery to this replica while it still works on the update joins it
            task = asyncio.create_task(self._process(update))
            self._handling[update.update_id] = task
            task.add_done_callback(lambda _: self._handling.pop(update.update_id, None))
        done, _ = await asyncio.wait({task}, timeout=self._ack_timeout)
        if not done:
            log.info("update %s still in progress: asking Telegram to deliver it again", update.update_id)
        return bool(done)

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Count a request whose answer has not gone out yet."""
        self._answering += 1
        self._all_answered.clear()
        try:
            yield
        finally:
            self._answering -= 1
            if not self._answering:
                self._all_answered.set()

    async def _process(self, update: Update) -> None:
        application = self._application
        await application.update_processor.process_update(update, application.process_update(update))

    def start(self, host: str, port: int) -> None:
        self._server.listen(port, address=host)
        log.info("webhook server listening on %s:%d", host, port)

    async def stop(self) -> None:
        """Take no new requests; let the updates in progress finish within the grace period, so their
        acknowledgements go out; then close the connections (Telegram redelivers what was not answered)."""
        self._server.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_answered.wait(), self._grace)
        await self._server.close_all_connections()
