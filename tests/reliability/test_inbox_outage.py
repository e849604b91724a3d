"""Polling through the update inbox while its Redis is down: replies go on, from memory (issue #14 #9).

The inbox must never cost a reply: an update it cannot store is answered at once from memory (as before
the inbox existed), and once Redis is back updates go through the inbox again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from bot.app import build_app
from bot.config import load_settings
from bot.storage.inbox import inbox_keys
from bot.transports.telegram.runner import serve
from bot_dev.fakes.bot_api import FakeBotApi
from tests.reliability.conftest import RedisProcess

ANNA = 1001


@pytest.fixture
async def polling_bot(
    bot_env: dict[str, str], redis_process: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[asyncio.Event]:
    """`bot run` in this process, as the CLI wires it (the Redis inbox), on the test's own Redis."""
    monkeypatch.setenv("REDIS_URL", redis_process.url)
    monkeypatch.setenv("TELEGRAM_STREAM_INTERVAL_SECONDS", "0")
    settings = load_settings(None)
    app = await build_app(settings, default_redis_url="memory://")
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(
            settings.telegram,
            app.service,
            app.gate,
            stop=stop,
            inboxes=app.inboxes,
            lease_seconds=settings.redis.lease_seconds,
        )
    )
    yield stop
    stop.set()
    assert await asyncio.wait_for(task, 60) == 0
    await app.aclose()


async def test_an_update_the_inbox_cannot_store_is_answered_from_memory(
    fake_api: FakeBotApi,
    polling_bot: asyncio.Event,
    redis_process: RedisProcess,
    key_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.transports.telegram.inbox")
    pending = inbox_keys(key_prefix, fake_api.bot_id)[0]
    fake_api.send_text(ANNA, ANNA, "my parcel is late")
    await fake_api.wait_for_messages(ANNA, 1, timeout=60)
    client = redis_process.client()
    await fake_api.wait_for(lambda: client.exists(pending) == 0, timeout=30)  # handled: removed
    assert "unavailable" not in caplog.text, "it went through the inbox"

    redis_process.kill()
    fake_api.send_text(ANNA, ANNA, "still late, while Redis is down")
    await fake_api.wait_for_messages(ANNA, 2, timeout=120)
    assert "the inbox is unavailable; updates are answered from memory" in caplog.text

    redis_process.start()
    fake_api.send_text(ANNA, ANNA, "and now?")
    await fake_api.wait_for_messages(ANNA, 3, timeout=120)
    await fake_api.wait_for(lambda: "the inbox is reachable again" in caplog.text, timeout=30)
    assert len(fake_api.messages_in(ANNA)) == 3, "each message answered once"
