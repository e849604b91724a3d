"""The bot as `bot run` starts it (settings -> build_app -> serve), in-process, against the fake Bot API."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.app import App, build_app
from bot.config import load_settings
from bot.telegram.runner import serve
from tests.conftest import BOT_SETTING_PREFIXES
from tests.fakes.bot_api import FakeBotApi

TOKEN = "123456:TEST-token-abcdefghijklmnopqrstuvwxyz"


@dataclass
class RunningBot:
    app: App
    task: asyncio.Task[int]
    stop: asyncio.Event

    async def shutdown(self) -> int:
        self.stop.set()
        return await asyncio.wait_for(self.task, 30)


@pytest.fixture
def fake_api() -> Iterator[FakeBotApi]:
    with FakeBotApi(token=TOKEN) as api:
        yield api


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def bot_env(
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_llama_dir: Path,
    redis_url: str,
    key_prefix: str,
    fake_api: FakeBotApi,
) -> dict[str, str]:
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE_URL": fake_api.base_url,
        "TELEGRAM_STREAM_INTERVAL_SECONDS": "0.05",
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": key_prefix,
        "MODEL_NAME": str(tiny_llama_dir),
        "GENERATION_MAX_NEW_TOKENS": "12",
        "GENERATION_DO_SAMPLE": "false",
        # a fixed prompt keeps the tiny model's greedy text, and so the output checks' verdicts, reproducible
        "SAFETY_CANARY": "false",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
async def start_bot(
    bot_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Any]]:
    """Call `await start_bot(SETTING="value", ...)` to start the bot; it is stopped after the test."""
    running: list[RunningBot] = []

    async def start(**overrides: str) -> RunningBot:
        for name, value in overrides.items():
            monkeypatch.setenv(name, value)
        settings = load_settings(None)
        app = await build_app(settings, default_redis_url="memory://")
        stop = asyncio.Event()
        task = asyncio.create_task(serve(settings.telegram, app.service, app.gate, stop=stop))
        bot = RunningBot(app, task, stop)
        running.append(bot)
        return bot

    yield start
    for bot in running:
        if not bot.task.done():
            bot.stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(bot.task, 30)
        await bot.app.aclose()


def env_without_bot_settings() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(BOT_SETTING_PREFIXES)}
