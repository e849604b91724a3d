"""Support analytics: what to count for each event, and how to read the counters back.

Events become per-UTC-hour counters, so "the last 24 hours" is 24 small hashes and "the last 7 days" 168,
whatever the traffic. Reply times go into a fixed histogram (as Prometheus does) from which the median is
interpolated. Questions are ranked per day as they were stored, after the safety step's PII redaction.
Recording never fails a reply: a store outage is logged and the event is lost.
"""

from __future__ import annotations

import bisect
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from bot.core.errors import StoreUnavailable
from bot.storage.desk_base import AnalyticsStore

__all__ = [
    "LATENCY_BOUNDS",
    "Analytics",
    "Day",
    "Window",
    "latency_bucket",
    "median_seconds",
    "normalize_question",
    "render_stats",
]

log = logging.getLogger(__name__)

HOUR, DAY = 3600, 86_400
# Upper bounds (seconds) of the reply-time histogram's buckets; the last bucket holds everything slower.
LATENCY_BOUNDS: tuple[float, ...] = (0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 45, 60, 90, 120)
MAX_QUESTION_CHARS = 200
ASKED, UNANSWERED = "asked", "unanswered"


def latency_bucket(seconds: float) -> int:
    """Index of the histogram bucket holding `seconds` (bucket i covers (bound[i-1], bound[i]])."""
    return bisect.bisect_left(LATENCY_BOUNDS, seconds)


def median_seconds(histogram: Mapping[int, int]) -> float | None:
    """The median of a reply-time histogram, interpolated linearly within its bucket."""
    total = sum(count for count in histogram.values() if count > 0)
    if total == 0:
        return None
    half, seen = total / 2, 0
    for index in range(len(LATENCY_BOUNDS) + 1):
        count = max(histogram.get(index, 0), 0)
        if count and seen + count >= half:
            low = LATENCY_BOUNDS[index - 1] if index > 0 else 0.0
            high = LATENCY_BOUNDS[index] if index < len(LATENCY_BOUNDS) else low * 2
            return low + (high - low) * (half - seen) / count
        seen += count
    return None


def normalize_question(text: str) -> str:
    """One line, collapsed whitespace, at most MAX_QUESTION_CHARS: so that equal questions rank together."""
    line = re.sub(r"\s+", " ", text).strip()
    return line if len(line) <= MAX_QUESTION_CHARS else line[: MAX_QUESTION_CHARS - 1] + "…"


@dataclass(slots=True)
class Window:
    """Totals over a span of hours."""

    conversations: int = 0
    messages: int = 0
    replies: int = 0
    handoffs: int = 0
    up: int = 0
    down: int = 0
    unanswered: int = 0
    blocked: int = 0
    latency: dict[int, int] = field(default_factory=dict)

    def add(self, counters: Mapping[str, int]) -> None:
        for name in ("messages", "replies", "handoffs", "up", "down", "unanswered", "blocked"):
            setattr(self, name, getattr(self, name) + counters.get(name, 0))
        for key, count in counters.items():
            if key.startswith("lat:"):
                index = int(key[4:])
                self.latency[index] = self.latency.get(index, 0) + count

    @property
    def median_reply_seconds(self) -> float | None:
        return median_seconds(self.latency)

    @property
    def satisfaction(self) -> float | None:
        """Share of 👍 among the votes (None without votes). A changed vote counts once, as it is now."""
        up, down = max(self.up, 0), max(self.down, 0)
        return up / (up + down) if up + down else None


@dataclass(slots=True)
class Day:
    date: str
    window: Window


class Analytics:
    """Records support events and answers the questions `/stats` and `bot report` ask."""

    def __init__(
        self, store: AnalyticsStore, *, retention_days: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._ttl = retention_days * DAY + DAY
        self._clock = clock

    # -- recording --------------------------------------------------------------------------------
    async def message(self, chat_id: int | str) -> None:
        await self._record({"messages": 1}, chat=str(chat_id))

    async def reply(self, chat_id: int | str, seconds: float, question: str, *, answered: bool) -> None:
        counts = {"replies": 1, f"lat:{latency_bucket(seconds)}": 1}
        ranked = {ASKED: normalize_question(question)} if question.strip() else {}
        if not answered:
            counts["unanswered"] = 1
            if question.strip():
                ranked[UNANSWERED] = ranked[ASKED]
        await self._record(counts, ranked=ranked)

    async def handoff(self, chat_id: int | str) -> None:
        await self._record({"handoffs": 1})

    async def blocked(self, chat_id: int | str) -> None:
        await self._record({"blocked": 1})

    async def vote(self, value: str, previous: str, previous_at: float | None) -> None:
        """Count a vote; a changed vote is taken back from the hour it was first counted in."""
        if value == previous:
            return
        if previous in ("up", "down") and previous_at is not None:
            await self._record({previous: -1}, at=previous_at)
        await self._record({value: 1})

    async def _record(
        self,
        counts: Mapping[str, int],
        *,
        chat: str | None = None,
        ranked: Mapping[str, str] | None = None,
        at: float | None = None,
    ) -> None:
        now = self._clock() if at is None else at
        try:
            await self._store.record(
                hour=int(now // HOUR),
                day=_day(now),
                counts=counts,
                chat=chat,
                ranked=ranked or {},
                ttl_seconds=self._ttl,
            )
        except StoreUnavailable as exc:
            log.warning("analytics event %s not recorded: %s", ",".join(counts), exc)

    # -- reading ----------------------------------------------------------------------------------
    async def window(self, hours: int) -> Window:
        """Totals over the last `hours` hours (the current hour included)."""
        span = self._hours(hours)
        total = Window()
        for counters in await self._store.counters(span):
            total.add(counters)
        total.conversations = await self._store.conversations(span)
        return total

    async def days(self, count: int) -> list[Day]:
        """One Window per UTC day, oldest first, the last `count` days (today included)."""
        today = int(self._clock() // DAY)
        result = []
        for day in range(today - count + 1, today + 1):
            hours = [day * 24 + h for h in range(24)]
            window = Window()
            for counters in await self._store.counters(hours):
                window.add(counters)
            window.conversations = await self._store.conversations(hours)
            result.append(Day(_day(day * DAY), window))
        return result

    async def top_questions(self, days: int, count: int = 10) -> list[tuple[str, int]]:
        return await self._store.top(ASKED, self._dates(days), count)

    async def unanswered_questions(self, days: int, count: int = 10) -> list[tuple[str, int]]:
        return await self._store.top(UNANSWERED, self._dates(days), count)

    def _hours(self, count: int) -> list[int]:
        now = int(self._clock() // HOUR)
        return list(range(now - count + 1, now + 1))

    def _dates(self, count: int) -> list[str]:
        today = int(self._clock() // DAY)
        return [_day(day * DAY) for day in range(today - count + 1, today + 1)]


def _day(epoch: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))


def render_stats(periods: Sequence[tuple[str, Window]], unanswered: Sequence[tuple[str, int]] = ()) -> str:
    """The `/stats` text: one block per period, then the questions the bot could not answer."""
    lines: list[str] = []
    for title, window in periods:
        median = window.median_reply_seconds
        ratio = window.satisfaction
        lines += [
            f"📊 {title}",
            f"Conversations: {window.conversations}",
            f"Messages: {window.messages}",
            f"Median reply time: {f'{median:.1f} s' if median is not None else 'n/a'}",
            f"👍 ratio: {f'{ratio:.0%}' if ratio is not None else 'n/a'} "
            f"({max(window.up, 0)} 👍 / {max(window.down, 0)} 👎)",
            f"Handoffs: {window.handoffs}",
            f"Unanswered questions: {window.unanswered}",
            f"Safety blocks: {window.blocked}",
            "",
        ]
    if unanswered:
        lines.append("Could not answer (7 days):")
        lines += [f"{count} x {text}" for text, count in unanswered]
    return "\n".join(lines).strip()
