"""The webhook receiver and bodies or methods Telegram never sends (issue #14, item 7).

Telegram retries a 5xx answer for up to a day, so a body that can never be an update must get a 4xx;
and scanners probing the URL with GET must not fill the log with tracebacks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from typing import Any

import pytest

from bot.transports.telegram.webhook import SECRET_HEADER
from bot_dev.fakes.bot_api import FakeBotApi
from tests.conftest import free_port

SECRET = "s3cret"
NOT_UPDATES = [
    b"[]",
    b'[{"update_id": 1}]',
    b"42",
    b'"card 4111 1111 1111 1111"',
    b"null",
    b"true",
    b"{}",
    b'{"message": {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"}, "text": "hi"}}',
    b'{"update_id": "7"}',
    b'{"update_id": true}',
    b'{"update_id": 8, "message": 3}',
    b"{not json",
]


def request(url: str, method: str, body: bytes | None = None) -> int:
    headers = {"Content-Type": "application/json", SECRET_HEADER: SECRET}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, body, headers, method=method), timeout=10
        ) as r:
            return int(r.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


async def test_bodies_that_are_no_update_get_400_and_other_methods_405_without_a_traceback(
    fake_api: FakeBotApi, start_bot: Any, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram"
    await start_bot(
        TELEGRAM_WEBHOOK_URL=url,
        TELEGRAM_WEBHOOK_SECRET=SECRET,
        TELEGRAM_WEBHOOK_LISTEN="127.0.0.1",
        TELEGRAM_WEBHOOK_PORT=str(port),
    )
    await fake_api.wait_for(lambda: bool(fake_api.calls_of("setWebhook")))
    caplog.set_level(logging.DEBUG)
    caplog.clear()

    for body in NOT_UPDATES:
        assert await asyncio.to_thread(request, url, "POST", body) == 400, body
    for method in ("GET", "HEAD"):
        assert await asyncio.to_thread(request, url, method) == 405, method

    assert not [r for r in caplog.records if r.exc_info], "no traceback for a client's mistake"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text
    about_methods = [r for r in caplog.records if "GET" in r.getMessage() or "HEAD" in r.getMessage()]
    assert about_methods and all(r.levelno <= logging.DEBUG for r in about_methods)
    refusals = [r for r in caplog.records if "webhook request refused" in r.getMessage()]
    assert len(refusals) == len(NOT_UPDATES), "one line per refused body, saying why"
    assert all("4111" not in r.getMessage() for r in refusals), "the body's content is not logged"

    # and a real update still goes through
    update_id = fake_api.send_text(5, 5, "hello over webhook")
    (update,) = [u for u in fake_api.pending_updates() if u["update_id"] == update_id]
    assert await asyncio.to_thread(request, url, "POST", json.dumps(update).encode()) == 200
    await fake_api.wait_for(lambda: len(fake_api.messages_in(5)) >= 1, timeout=60)
