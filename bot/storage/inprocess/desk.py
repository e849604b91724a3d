"""The support desk's stores in this process (`REDIS_URL=memory://`, `bot chat`): same behaviour as Redis.

Expiry of analytics and feedback is not modelled: an in-process store lives only as long as the process.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from bot.storage.desk_base import Handoff, Vote

__all__ = ["InProcessAnalytics", "InProcessFeedback", "InProcessHandoffs"]


class InProcessHandoffs:
    def __init__(self) -> None:
        self._active: dict[int, tuple[Handoff, float]] = {}
        self._links: dict[int, int] = {}
        self._streaks: Counter[int] = Counter()

    async def begin(self, handoff: Handoff, expires_at: float) -> bool:
        if handoff.chat_id in self._active:
            return False
        self._active[handoff.chat_id] = (handoff, expires_at)
        return True

    async def get(self, chat_id: int) -> tuple[Handoff, float] | None:
        return self._active.get(chat_id)

    async def extend(self, chat_id: int, expires_at: float) -> bool:
        if chat_id not in self._active:
            return False
        self._active[chat_id] = (self._active[chat_id][0], expires_at)
        return True

    async def end(self, chat_id: int) -> Handoff | None:
        ended = self._active.pop(chat_id, None)
        return ended[0] if ended else None

    async def end_due(self, now: float, limit: int = 100) -> list[Handoff]:
        due = sorted((expires, chat) for chat, (_, expires) in self._active.items() if expires <= now)
        return [self._active.pop(chat)[0] for _, chat in due[:limit]]

    async def link(self, message_id: int, chat_id: int, ttl_seconds: int) -> None:
        self._links[message_id] = chat_id

    async def linked(self, message_id: int) -> int | None:
        return self._links.get(message_id)

    async def streak(self, chat_id: int, *, grounded: bool, ttl_seconds: int) -> int:
        if grounded:
            self._streaks.pop(chat_id, None)
            return 0
        self._streaks[chat_id] += 1
        return self._streaks[chat_id]


class InProcessFeedback:
    def __init__(self) -> None:
        self._records: dict[str, dict[str, str]] = {}

    async def save(self, key: str, fields: Mapping[str, str], ttl_seconds: int) -> None:
        self._records.setdefault(key, {}).update(fields)

    async def vote(self, key: str, value: str, user_id: int | None, at: float) -> Vote | None:
        record = self._records.get(key)
        if record is None:
            return None
        old = Vote(record.get("vote", ""), float(record["voted_at"]) if record.get("voted_at") else None)
        if old.value != value:
            record.update(vote=value, voted_at=f"{at:.3f}", voter="" if user_id is None else str(user_id))
        return old

    async def get(self, key: str) -> dict[str, str] | None:
        record = self._records.get(key)
        return dict(record) if record else None


class InProcessAnalytics:
    def __init__(self) -> None:
        self._hours: defaultdict[int, Counter[str]] = defaultdict(Counter)
        self._chats: defaultdict[int, set[str]] = defaultdict(set)
        self._boards: defaultdict[tuple[str, str], Counter[str]] = defaultdict(Counter)

    async def record(
        self,
        *,
        hour: int,
        day: str,
        counts: Mapping[str, int],
        chat: str | None,
        ranked: Mapping[str, str],
        ttl_seconds: int,
    ) -> None:
        self._hours[hour].update(counts)
        if chat is not None:
            self._chats[hour].add(chat)
        for board, text in ranked.items():
            self._boards[board, day][text] += 1

    async def counters(self, hours: Sequence[int]) -> list[dict[str, int]]:
        return [dict(self._hours.get(hour, {})) for hour in hours]

    async def conversations(self, hours: Sequence[int]) -> int:
        return len(set().union(*(self._chats.get(hour, set()) for hour in hours)))

    async def top(self, board: str, days: Sequence[str], count: int) -> list[tuple[str, int]]:
        total: Counter[str] = Counter()
        for day in days:
            total.update(self._boards.get((board, day), Counter()))
        return sorted(total.items(), key=lambda item: (-item[1], item[0]))[:count]
