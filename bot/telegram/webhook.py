"""The webhook receiver: Telegram POSTs updates here; each is checked and queued for the Application.

PTB's built-in webhook server compares the secret with `!=`; this one uses a constant-time comparison,
answers 403 without reading the body when the secret is wrong or missing, and logs no header values.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import Any

import tornado.httpserver
import tornado.web
from telegram import Bot, Update

__all__ = ["SECRET_HEADER", "WebhookServer"]

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class _UpdateHandler(tornado.web.RequestHandler):
    def initialize(self, bot: Bot, queue: asyncio.Queue[object], secret: str) -> None:
        self._bot, self._queue, self._secret = bot, queue, secret.encode()

    async def post(self) -> None:
        given = self.request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            log.warning("webhook request from %s refused: missing or wrong secret", self.request.remote_ip)
            self.set_status(403)
            return
        try:
            data: Any = json.loads(self.request.body)
            update = Update.de_json(data, self._bot)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("webhook request with an unreadable update refused: %s", exc)
            self.set_status(400)
            return
        await self._queue.put(update)
        self.set_status(200)

    def log_exception(self, *args: Any) -> None:  # tornado's default would log request details
        log.error("webhook handler failed", exc_info=args)


class WebhookServer:
    def __init__(self, *, bot: Bot, queue: asyncio.Queue[object], secret: str, path: str) -> None:
        app = tornado.web.Application(
            [(path, _UpdateHandler, {"bot": bot, "queue": queue, "secret": secret})]
        )
        self._server = tornado.httpserver.HTTPServer(app, xheaders=True)

    def start(self, host: str, port: int) -> None:
        self._server.listen(port, address=host)
        log.info("webhook server listening on %s:%d", host, port)

    async def stop(self) -> None:
        self._server.stop()
        await self._server.close_all_connections()
