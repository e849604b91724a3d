"""Shared fixtures: a real Redis (own key prefix, own keys cleaned up) and tiny real models."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.app import Runtime, open_runtime
from bot.config import env_prefixes, load_settings
from bot.llm.local.loader import LoadedModel, load_model
from bot.transports.telegram.runner import serve
from bot_dev.fakes.bot_api import FakeBotApi
from tests.helpers import HANG_SECONDS
from tests.tiny_models import build_tiny_gpt2, build_tiny_llama

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parent.parent
BOT_SETTING_PREFIXES = env_prefixes()  # every section's prefix, derived: a new section cannot leak in


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"tests need a Redis server at {REDIS_URL} (`make test` starts one): {exc}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys, and only its keys, are deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_llama(tiny_llama_dir: Path) -> LoadedModel:
    return load_model(str(tiny_llama_dir), dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def tiny_gpt2(tiny_gpt2_dir: Path) -> LoadedModel:
    return load_model(str(tiny_gpt2_dir), dtype="float32", device="cpu")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No bot settings leak in from the developer's environment; returns an empty work directory."""
    for name in list(os.environ):
        if name.startswith(BOT_SETTING_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


async def _aclose(obj: object) -> None:
    close = getattr(obj, "aclose", None)
    if close is not None:
        await close()


@pytest.fixture
async def closer() -> AsyncIterator[list[object]]:
    """Append async resources here; they are closed after the test."""
    items: list[object] = []
    yield items
    for item in reversed(items):
        await _aclose(item)


# --- the bot as `bot run` starts it, in-process, against the fake Bot API ---------------------------

TOKEN = "123456:TEST-token-abcdefghijklmnopqrstuvwxyz"


@dataclass
class RunningBot:
    app: Runtime
    task: asyncio.Task[int]
    stop: asyncio.Event

    async def shutdown(self) -> int:
        """Stop it as SIGTERM does (replies in progress finish first); its exit code."""
        self.stop.set()
        return await asyncio.wait_for(self.task, HANG_SECONDS)


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
        "MODEL_DTYPE": "float32",  # the same numbers as the tests' own float32 reference runs
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
    """Call `await start_bot(SETTING="value", ...)` to start the bot as `bot run` does (the same runtime,
    health server included when METRICS_PORT is set); it is stopped after the test."""
    running: list[RunningBot] = []
    async with contextlib.AsyncExitStack() as runtimes:

        async def start(**overrides: str) -> RunningBot:
            for name, value in overrides.items():
                monkeypatch.setenv(name, value)
            settings = load_settings(None)
            runtime = await runtimes.enter_async_context(
                open_runtime(settings, default_redis_url="memory://", health=True)
            )
            stop = asyncio.Event()
            task = asyncio.create_task(
                serve(
                    settings.telegram,
                    runtime.service,
                    runtime.gate,
                    stop=stop,
                    metrics=runtime.metrics,
                    inboxes=runtime.inboxes,
                    lease_seconds=settings.redis.lease_seconds,
                )
            )
            bot = RunningBot(runtime, task, stop)
            running.append(bot)
            return bot

        yield start
        for bot in running:  # the bots stop first; the runtimes close as the stack unwinds
            if not bot.task.done():
                bot.stop.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(bot.task, 30)


def env_without_bot_settings() -> dict[str, str]:
    """This process's environment without any bot setting (for subprocesses)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(BOT_SETTING_PREFIXES)}
