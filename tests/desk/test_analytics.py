"""Analytics: events become hourly counters; windows, medians, rankings read back (Redis, in-process)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.core.errors import StoreUnavailable
from bot.desk.analytics import (
    LATENCY_BOUNDS,
    Analytics,
    Window,
    latency_bucket,
    median_seconds,
    normalize_question,
    render_stats,
)
from bot.storage.inprocess.desk import InProcessAnalytics
from bot.storage.redis.desk import RedisAnalytics
from bot.storage.redis.store import connect

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["redis", "inprocess"])
async def store(request: Any, redis_url: str, key_prefix: str) -> AsyncIterator[Any]:
    if request.param == "inprocess":
        yield InProcessAnalytics()
        return
    client = connect(redis_url)
    yield RedisAnalytics(client, prefix=key_prefix)
    await client.aclose()


def test_latency_buckets_and_the_interpolated_median() -> None:
    assert latency_bucket(0.1) == 0 and latency_bucket(0.25) == 0 and latency_bucket(0.3) == 1
    assert latency_bucket(1000) == len(LATENCY_BOUNDS)
    assert median_seconds({}) is None
    assert median_seconds({latency_bucket(1.5): 4}) == pytest.approx(1.5)  # the middle of (1, 2]
    # 3 fast, 1 slow: the median lies in the fast bucket
    assert 2 < median_seconds({latency_bucket(2.5): 3, latency_bucket(50): 1}) <= 3  # type: ignore[operator]


def test_questions_are_normalised_for_ranking() -> None:
    assert normalize_question("  Where   is\nmy parcel? ") == "Where is my parcel?"
    assert len(normalize_question("x" * 500)) == 200


async def test_windows_count_events_of_their_hours_only(store: Any) -> None:
    clock = Clock()
    analytics = Analytics(store, retention_days=7, clock=clock)
    clock.now = T0 - 2 * 86_400  # two days ago: in the 7-day window, not in the 24-hour one
    await analytics.message(1)
    await analytics.reply(1, 4.0, "old question", answered=True)
    clock.now = T0
    for chat in (1, 2, 2):
        await analytics.message(chat)
    await analytics.reply(1, 1.5, "Where is my parcel?", answered=True)
    await analytics.reply(2, 1.6, "Where   is my parcel?", answered=False)
    await analytics.blocked(2)
    await analytics.handoff(2)
    await analytics.vote("up", "", None)
    await analytics.vote("down", "", None)
    await analytics.vote("up", "down", T0)  # a changed vote moves, it does not add

    day, week = await analytics.window(24), await analytics.window(24 * 7)
    assert (day.conversations, day.messages, day.replies) == (2, 3, 2)
    assert (day.up, day.down, day.satisfaction) == (2, 0, 1.0)
    assert (day.unanswered, day.blocked, day.handoffs) == (1, 1, 1)
    assert day.median_reply_seconds == pytest.approx(1.5)
    assert (week.conversations, week.messages, week.replies) == (2, 4, 3)
    assert await analytics.top_questions(7) == [("Where is my parcel?", 2), ("old question", 1)]
    assert await analytics.unanswered_questions(1) == [("Where is my parcel?", 1)]
    days = await analytics.days(3)
    assert [d.window.messages for d in days] == [1, 0, 3]
    assert days[-1].date == "2023-11-14"


def test_stats_text() -> None:
    window = Window(conversations=2, messages=5, up=3, down=1, blocked=1)
    window.latency = {latency_bucket(1.5): 2}
    text = render_stats([("Last 24 hours", window)], [("refund policy?", 2)])
    assert "Conversations: 2" in text and "Messages: 5" in text and "Safety blocks: 1" in text
    assert "👍 ratio: 75% (3 👍 / 1 👎)" in text and "Median reply time: 1.5 s" in text
    assert text.endswith("2 x refund policy?")
    assert "Median reply time: n/a" in render_stats([("empty", Window())])


async def test_recording_survives_a_store_outage(caplog: pytest.LogCaptureFixture) -> None:
    class Flaky(InProcessAnalytics):
        """Refuses every write while `down`; then records as usual."""

        down, attempts = True, 0

        async def record(self, **kwargs: Any) -> None:
            self.attempts += 1
            if self.down:
                raise StoreUnavailable("Redis: connection refused")
            await super().record(**kwargs)

    store = Flaky()
    analytics = Analytics(store, retention_days=1, clock=Clock())
    with caplog.at_level(logging.WARNING, logger="bot.desk.analytics"):
        await analytics.message(1)  # logged, not raised
    assert store.attempts == 1
    assert "analytics event messages not recorded: Redis: connection refused" in caplog.messages
    store.down = False
    await analytics.message(1)
    assert (await analytics.window(1)).messages == 1, "the outage lost its event, and only that one"
