"""An in-process store with the Redis store's behaviour, for single-process use (`REDIS_URL=memory://`)."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from bot.domain import Turn
from bot.memory.base import Bucket

__all__ = ["InProcessAudit", "InProcessLimits", "InProcessStore"]


@dataclass
class _Chat:
    turns: deque[Turn]
    appends: OrderedDict[str, None] = field(default_factory=OrderedDict)
    expires_at: float = 0.0


class InProcessStore:
    """Same cap, TTL and idempotent appends as `RedisStore`; lost when the process exits."""

    def __init__(
        self, *, max_turns: int, ttl_seconds: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_turns = max_turns
        self._ttl = ttl_seconds
        self._clock = clock
        self._chats: dict[str, _Chat] = {}

    def _live(self, chat_id: int | str) -> _Chat | None:
        chat = self._chats.get(str(chat_id))
        if chat is not None and chat.expires_at <= self._clock():
            del self._chats[str(chat_id)]
            return None
        return chat

    async def load(self, chat_id: int | str) -> list[Turn]:
        chat = self._live(chat_id)
        return list(chat.turns) if chat else []

    async def append(self, chat_id: int | str, turns: Sequence[Turn], append_id: str) -> bool:
        if not turns:
            return False
        chat = self._live(chat_id)
        if chat is None:
            chat = self._chats[str(chat_id)] = _Chat(turns=deque(maxlen=self._max_turns))
        if append_id in chat.appends:
            return False
        chat.appends[append_id] = None
        while len(chat.appends) > self._max_turns:
            chat.appends.popitem(last=False)
        chat.turns.extend(turns)
        chat.expires_at = self._clock() + self._ttl
        return True

    async def clear(self, chat_id: int | str) -> None:
        self._chats.pop(str(chat_id), None)

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        self._chats.clear()


class InProcessLimits:
    """`RedisLimits` for a single process: claims and counters with expiry, lost on exit."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._values: dict[str, tuple[int, float]] = {}  # key -> (count, expires_at)

    def _get(self, key: str) -> int:
        count, expires_at = self._values.get(key, (0, 0.0))
        return count if expires_at > self._clock() else 0

    async def claim(self, key: str, ttl_seconds: int) -> bool:
        if self._get(f"delivery:{key}"):
            return False
        self._values[f"delivery:{key}"] = (1, self._clock() + ttl_seconds)
        return True

    async def consume(self, scope: str, buckets: Sequence[Bucket]) -> int:
        keys = [f"{scope}:{bucket.name}" for bucket in buckets]
        for index, (key, bucket) in enumerate(zip(keys, buckets, strict=True)):
            if self._get(key) >= bucket.limit:
                return index
        now = self._clock()
        for key, bucket in zip(keys, buckets, strict=True):
            count = self._get(key)
            expires_at = self._values[key][1] if count else now + bucket.ttl_seconds
            self._values[key] = (count + 1, expires_at)
        if len(self._values) > 100_000:  # drop expired entries now and then
            self._values = {k: v for k, v in self._values.items() if v[1] > now}
        return -1


class InProcessAudit:
    """`RedisAudit` for a single process: the newest `max_entries` events."""

    def __init__(self, *, max_entries: int) -> None:
        self._events: deque[dict[str, str]] = deque(maxlen=max_entries)

    async def record(self, event: Mapping[str, str]) -> None:
        self._events.append(dict(event))

    async def recent(self, count: int) -> list[dict[str, str]]:
        return list(reversed(self._events))[:count]
