"""A load test run: the fake Bot API, the bot exactly as `bot run` starts it, the users; all cleaned up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time

from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from bot.app import DEFAULT_REDIS_URL, open_runtime
from bot.config import Settings
from bot.transports.telegram.runner import serve
from bot_dev.fakes.bot_api import FakeBotApi
from bot_dev.loadtest.report import LoadReport
from bot_dev.loadtest.users import Users

__all__ = ["FAKE_TOKEN", "loadtest_settings", "run_loadtest"]

log = logging.getLogger(__name__)

FAKE_TOKEN = "123456:LOADTEST-token-abcdefghijklmnopqrstuvwxyz"


def loadtest_settings(settings: Settings, *, base_url: str, key_prefix: str) -> Settings:
    """The configured settings, pointed at the fake API and a throw-away key prefix, unthrottled.

    Streaming is off so that a reply is exactly one sendMessage; allow-lists and the webhook are off
    because simulated users are strangers and the fake is polled.
    """
    telegram = settings.telegram.model_copy(
        update={
            "bot_token": SecretStr(FAKE_TOKEN),
            "api_base_url": base_url,
            "stream_interval_seconds": 0.0,
            "webhook_url": None,
            "webhook_secret": None,
            "allowed_user_ids": frozenset(),
            "allowed_chat_ids": frozenset(),
        }
    )
    return settings.model_copy(
        update={
            "telegram": telegram,
            "rate_limit": settings.rate_limit.model_copy(update={"per_minute": 0, "per_day": 0}),
            "redis": settings.redis.model_copy(update={"key_prefix": key_prefix}),
        }
    )


class _LogCounter(logging.Handler):
    """Counts the bot's warnings and errors during the run; those that mention Redis on their own."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.warnings = self.redis = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.warnings += 1
        self.redis += "redis" in record.getMessage().lower()


async def run_loadtest(
    settings: Settings,
    *,
    users: int = 50,
    minutes: float = 5.0,
    think: float = 2.0,
    reply_timeout: float = 180.0,
    seed: int = 0,
    console: Console | None = None,
) -> LoadReport:
    """Start the fake API and the bot, let the users write until `minutes` are up, wait, clean up."""
    counter = _LogCounter()
    prefix = f"loadtest-{secrets.token_hex(6)}"
    deleted: list[int] = []  # filled by _delete_keys as the stack unwinds
    async with contextlib.AsyncExitStack() as stack:
        logging.getLogger("bot").addHandler(counter)
        stack.callback(logging.getLogger("bot").removeHandler, counter)
        fake = FakeBotApi(token=FAKE_TOKEN).start()
        stack.callback(fake.stop)
        settings = loadtest_settings(settings, base_url=fake.base_url, key_prefix=prefix)
        runtime = await stack.enter_async_context(open_runtime(settings))
        # unwinding: the bot stops, then this run's keys go, then the runtime closes
        stack.push_async_callback(_delete_keys, settings.redis.url or DEFAULT_REDIS_URL, prefix, deleted)
        stop = asyncio.Event()
        bot = asyncio.create_task(serve(settings.telegram, runtime.service, runtime.gate, stop=stop))
        stack.push_async_callback(_stop, stop, bot)
        sim = Users(fake, users, think=think, reply_timeout=reply_timeout)
        # The model is loaded by now; the clock starts once the bot polls (or has stopped: a bad setting).
        await fake.wait_for(lambda: bool(fake.calls_of("getUpdates")) or bot.done(), timeout=60)
        seconds = await _drive(sim, bot, minutes=minutes, seed=seed, console=console or Console(stderr=True))
        stopped_early = bot.done()
        await _stop(stop, bot)  # replies still in progress finish (or are abandoned) before counting
        bot.result()  # re-raises what stopped the bot early (a bad setting, say)
        figures = sim.tally()
    return LoadReport(
        users=users,
        minutes=minutes,
        think=think,
        reply_timeout=reply_timeout,
        model=settings.model.name,
        **figures,
        replies_per_minute=figures["received"] / (seconds / 60) if seconds > 0 else 0.0,
        redis_errors=counter.redis,
        bot_warnings=counter.warnings,
        seconds=round(seconds, 3),
        bot_stopped_early=stopped_early,
        redis_key_prefix=prefix,
        redis_keys_deleted=sum(deleted),
    )


async def _drive(sim: Users, bot: asyncio.Task[int], *, minutes: float, seed: int, console: Console) -> float:
    """Every user writes until `minutes` are up and has their last reply (or gave up); a progress bar
    shows it. Returns the seconds it took."""
    started = time.monotonic()
    deadline = started + minutes * 60
    tasks = [
        asyncio.create_task(sim.user(uid, random.Random(seed * 1_000_003 + uid), deadline, bot))
        for uid in sim.chats
    ]
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("starting", total=minutes * 60)
        while not all(task.done() for task in tasks):
            sent, seen = sim.counts()
            elapsed = time.monotonic() - started
            phase = "sending" if elapsed < minutes * 60 else "waiting for the last replies"
            progress.update(bar, completed=elapsed, description=f"{phase}: sent {sent}, received {seen}")
            await asyncio.wait(tasks, timeout=0.25)
    await asyncio.gather(*tasks)  # surfaces a user's unexpected error
    return time.monotonic() - started


async def _stop(stop: asyncio.Event, bot: asyncio.Task[int]) -> None:
    """Stop the bot as SIGTERM would; idempotent and silent, so the exit stack may call it again."""
    stop.set()
    await asyncio.wait([bot])


async def _delete_keys(url: str, prefix: str, deleted: list[int]) -> None:
    """Delete this run's keys, and only them (`<prefix>:*`, found with SCAN)."""
    if url.startswith("memory://"):
        return
    from bot.storage.redis.store import connect  # the one module allowed to import redis

    client = connect(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            deleted.append(await client.delete(*keys))
    except Exception as exc:  # redis's own errors: only bot.storage.redis.store may import their types
        log.warning("load test keys %s:* were not deleted: %s", prefix, exc)
    finally:
        await client.aclose()
