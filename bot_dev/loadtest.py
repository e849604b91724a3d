"""`bot loadtest`: many simulated users against the real bot on loopback, to prove exactly-once replies.

Everything runs in this process and stops by itself: the fake Bot API of `bot_dev.fakes`, the bot exactly as
`bot run` starts it (PTB long polling, the service, Redis, the model) and N users who each write, wait for
the reply, pause and write again. Because a user waits for the reply before writing again, every bot
message that arrives between two of a user's messages answers the first of them: a second one is a
duplicate, none at all is a lost message. No per-message ids are needed, so nothing in the bot is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bot.app import DEFAULT_REDIS_URL, build_app
from bot.config import Settings
from bot.transports.telegram.handlers import Texts
from bot.transports.telegram.runner import serve
from bot_dev.fakes.bot_api import FakeBotApi

__all__ = ["FIRST_USER_ID", "QUESTIONS", "LoadReport", "loadtest_settings", "run_loadtest"]

log = logging.getLogger(__name__)

FIRST_USER_ID = 10_000  # user i writes from private chat FIRST_USER_ID + i
POLL_SECONDS = 0.05
FAKE_TOKEN = "123456:LOADTEST-token-abcdefghijklmnopqrstuvwxyz"
# The apologies the Telegram handlers send when the engine timed out, was busy or failed.
ERROR_TEXTS = {Texts.TIMEOUT: "timeout", Texts.BUSY: "busy", Texts.FAILED: "failed"}

# Benign, varied support questions: no personal data, no insults, nothing a safety check should stop,
# so that every message reaches the model and the load is the real one.
QUESTIONS = (
    "Hi, where is my order? It was supposed to arrive yesterday.",
    "How long does standard delivery usually take?",
    "Can I change the delivery address after placing an order?",
    "How do I return a pair of shoes that do not fit?",
    "When will I get my refund after sending an item back?",
    "I forgot my password. How can I reset it?",
    "Where can I download the invoice for my last purchase?",
    "Do you ship to other countries?",
    "Is express delivery available on weekends?",
    "The parcel arrived damaged. What should I do?",
    "Can I cancel an order that has not shipped yet?",
    "Which payment methods do you accept?",
    "How do I update the billing address on my account?",
    "My discount code is not working at checkout. Can you help?",
    "Can I exchange a jacket for a different size?",
    "How can I track my package?",
    "I was charged twice for the same order. What happens now?",
    "Do you offer gift wrapping?",
    "How do I unsubscribe from your newsletter?",
    "Is there a warranty on your headphones?",
    "What are your customer service opening hours?",
    "Can I pick up my order in a store instead of having it delivered?",
    "An item is missing from my package. What should I do?",
    "How do I delete my account?",
    "Can I add an item to an order I placed this morning?",
    "Why was my payment declined?",
    "Do I need an account to place an order?",
    "How much does shipping cost for small orders?",
    "Can I get a copy of my receipt by mail?",
    "Thanks for your help earlier! One more question: how do returns work for sale items?",
)


@dataclass(frozen=True)
class LoadReport:
    """Every figure of one run; `ok` is the exactly-once verdict the exit code reflects."""

    users: int
    minutes: float
    think: float
    reply_timeout: float
    model: str
    sent: int
    received: int
    duplicates: int
    lost: int
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    replies_per_minute: float
    engine_errors: int
    engine_errors_by_kind: dict[str, int]
    redis_errors: int
    bot_warnings: int
    seconds: float
    bot_stopped_early: bool  # by Ctrl-C or a fatal error: messages it never fetched count as lost
    redis_key_prefix: str
    redis_keys_deleted: int

    @property
    def ok(self) -> bool:
        return self.sent > 0 and self.lost == 0 and self.duplicates == 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def table(self) -> Table:
        """Every figure, one per row; latencies and durations in seconds."""
        table = Table("measure", "value", title="bot loadtest")
        for name, value in self.as_dict().items():
            shown = "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)
            if name == "ok":
                shown = "[green]yes[/]" if value else "[red]NO[/]"
            elif isinstance(value, bool):
                shown = "yes" if value else "no"
            table.add_row(name.replace("_", " "), shown)
        return table


def _percentile(values: list[float], p: float) -> float | None:
    """Nearest rank: a latency some request really had, also for a handful of samples."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


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


@dataclass
class _Chat:
    """One user's chat: how many bot messages had arrived when each user message was sent, and all of them."""

    marks: list[int] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)


class _Users:
    """The simulated users and what they saw; only they read the fake, polling it every POLL_SECONDS."""

    def __init__(self, fake: FakeBotApi, users: int, *, think: float, reply_timeout: float) -> None:
        self.fake, self.think, self.reply_timeout = fake, think, reply_timeout
        self.chats = {FIRST_USER_ID + i: _Chat() for i in range(users)}
        self.latencies: list[float] = []
        self._seen = 0

    def collect(self) -> None:
        """File the fake's new sendMessage results under their chats (a list slice: safe across threads)."""
        new = self.fake.sent_messages[self._seen :]
        self._seen += len(new)
        for message in new:
            if (chat := self.chats.get(message["chat"]["id"])) is not None:
                chat.replies.append(str(message.get("text", "")))

    def counts(self) -> tuple[int, int]:
        chats = self.chats.values()
        return sum(len(c.marks) for c in chats), sum(len(c.replies) for c in chats)

    async def user(self, user_id: int, rng: random.Random, deadline: float, bot: asyncio.Task[int]) -> None:
        chat = self.chats[user_id]
        while time.monotonic() < deadline and not bot.done():
            self.collect()
            chat.marks.append(len(chat.replies))
            started = time.monotonic()
            self.fake.send_text(user_id, user_id, rng.choice(QUESTIONS), first_name=f"User{user_id}")
            while len(chat.replies) == chat.marks[-1]:
                if time.monotonic() - started > self.reply_timeout or bot.done():
                    return  # counted as lost; a user left without an answer writes no more
                await asyncio.sleep(POLL_SECONDS)
                self.collect()
            self.latencies.append(time.monotonic() - started)
            pause = rng.expovariate(1 / self.think) if self.think > 0 else 0.0
            await asyncio.sleep(max(0.0, min(pause, deadline - time.monotonic())))

    def tally(self) -> dict[str, Any]:
        """The exactly-once figures, counted message by message, and the latency percentiles."""
        self.collect()
        figures = dict.fromkeys(("sent", "received", "duplicates", "lost"), 0)
        errors: dict[str, int] = {}
        for chat in self.chats.values():
            for start, end in zip(chat.marks, [*chat.marks[1:], len(chat.replies)], strict=True):
                figures["sent"] += 1
                figures["received"] += end > start
                figures["duplicates"] += max(0, end - start - 1)
                figures["lost"] += end == start
            for text in chat.replies:
                if kind := ERROR_TEXTS.get(text):
                    errors[kind] = errors.get(kind, 0) + 1
        latencies = {f"latency_p{p}": _percentile(self.latencies, p) for p in (50, 95, 99)}
        figures["engine_errors"] = sum(errors.values())
        return {**figures, **latencies, "engine_errors_by_kind": errors}


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
    async with contextlib.AsyncExitStack() as stack:
        logging.getLogger("bot").addHandler(counter)
        stack.callback(logging.getLogger("bot").removeHandler, counter)
        fake = FakeBotApi(token=FAKE_TOKEN).start()
        stack.callback(fake.stop)
        settings = loadtest_settings(settings, base_url=fake.base_url, key_prefix=prefix)
        app = await build_app(settings, default_redis_url=DEFAULT_REDIS_URL)
        deleted: list[int] = []  # filled by _delete_keys as the stack unwinds
        stack.push_async_callback(_delete_keys, settings.redis.url or DEFAULT_REDIS_URL, prefix, deleted)
        stack.push_async_callback(app.aclose)
        stop = asyncio.Event()
        bot = asyncio.create_task(serve(settings.telegram, app.service, app.gate, stop=stop))
        stack.push_async_callback(_stop, stop, bot)
        sim = _Users(fake, users, think=think, reply_timeout=reply_timeout)
        # The model is loaded by now; the clock starts once the bot polls (or has stopped: a bad setting).
        await fake.wait_for(lambda: bool(fake.calls_of("getUpdates")) or bot.done(), timeout=60)
        started = time.monotonic()
        deadline = started + minutes * 60
        tasks = [
            asyncio.create_task(sim.user(uid, random.Random(seed * 1_000_003 + uid), deadline, bot))
            for uid in sim.chats
        ]
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
        ) as progress:
            bar = progress.add_task("starting", total=minutes * 60)
            while not all(task.done() for task in tasks):
                sent, seen = sim.counts()
                elapsed = time.monotonic() - started
                phase = "sending" if elapsed < minutes * 60 else "waiting for the last replies"
                progress.update(bar, completed=elapsed, description=f"{phase}: sent {sent}, received {seen}")
                await asyncio.wait(tasks, timeout=0.25)
        await asyncio.gather(*tasks)  # surfaces a user's unexpected error
        seconds, stopped_early = time.monotonic() - started, bot.done()
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
