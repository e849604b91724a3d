"""An in-process store with the Redis store's behaviour, for single-process use (`REDIS_URL=memory://`)."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from bot.core.domain import Turn
from bot.storage.base import Bucket, LeaseState

__all__ = ["InProcessAudit", "InProcessChatLocks", "InProcessLimits", "InProcessStore"]


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
        self._facts: dict[str, tuple[dict[str, str], float]] = {}  # chat -> (facts, expires_at)

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
        self._facts.pop(str(chat_id), None)

    async def load_facts(self, chat_id: int | str) -> dict[str, str]:
        facts, expires_at = self._facts.get(str(chat_id), ({}, 0.0))
        return dict(facts) if expires_at > self._clock() else {}

    async def save_facts(self, chat_id: int | str, facts: Mapping[str, str]) -> None:
        """Like Redis: the facts get the history's TTL from now."""
        if facts:
            self._facts[str(chat_id)] = (dict(facts), self._clock() + self._ttl)
        else:
            self._facts.pop(str(chat_id), None)

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        self._chats.clear()
        self._facts.clear()


class InProcessLimits:
    """`RedisLimits` for a single process: claims and counters with expiry, lost on exit."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._values: dict[str, tuple[int, float]] = {}  # key -> (count, expires_at)
        self._leases: dict[
            str, tuple[str, float]
        ] = {}  # key -> ("lease:<token>" | "done:<token>", expires_at)

    def _get(self, key: str) -> int:
        count, expires_at = self._values.get(key, (0, 0.0))
        return count if expires_at > self._clock() else 0

    async def claim(self, key: str, ttl_seconds: int) -> bool:
        if self._get(f"delivery:{key}"):
            return False
        self._values[f"delivery:{key}"] = (1, self._clock() + ttl_seconds)
        return True

    async def lease(self, key: str, token: str, lease_seconds: float) -> LeaseState:
        now = self._clock()
        value, expires_at = self._leases.get(key, ("", 0.0))
        if expires_at > now and value != f"lease:{token}":
            return LeaseState.HELD if value.startswith("lease:") else LeaseState.DONE
        self._leases[key] = (f"lease:{token}", now + lease_seconds)
        if len(self._leases) > 100_000:  # drop expired entries now and then
            self._leases = {k: v for k, v in self._leases.items() if v[1] > now}
        return LeaseState.MINE

    def _holds(self, key: str, token: str) -> bool:
        value, expires_at = self._leases.get(key, ("", 0.0))
        return value == f"lease:{token}" and expires_at > self._clock()

    async def renew_lease(self, key: str, token: str, lease_seconds: float) -> bool:
        if not self._holds(key, token):
            return False
        self._leases[key] = (f"lease:{token}", self._clock() + lease_seconds)
        return True

    async def settle(self, key: str, token: str, done_ttl_seconds: int) -> bool:
        value, expires_at = self._leases.get(key, ("", 0.0))
        if expires_at > self._clock() and value not in (f"lease:{token}", f"done:{token}"):
            return False
        self._leases[key] = (f"done:{token}", self._clock() + done_ttl_seconds)
        return True

    async def release_lease(self, key: str, token: str) -> None:
        if self._holds(key, token):
            del self._leases[key]

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


@dataclass
class _ChatLock:
    holder: str = ""
    expires_at: float = 0.0
    waiters: dict[str, tuple[float, float]] = field(default_factory=dict)  # token -> (ticket, alive until)


class InProcessChatLocks:
    """`RedisChatLocks` for a single process: the same leases, queue order and expiry, on a clock."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._chats: dict[str, _ChatLock] = {}

    async def try_acquire(self, chat_id: int | str, token: str, ticket: float, lease_seconds: float) -> bool:
        now = self._clock()
        chat = self._chats.setdefault(str(chat_id), _ChatLock())
        if chat.holder == token and chat.expires_at > now:
            chat.expires_at = now + lease_seconds
            return True
        chat.waiters = {t: w for t, w in chat.waiters.items() if w[1] > now}
        ticket = chat.waiters.get(token, (ticket, 0.0))[0]  # a waiter keeps its first place
        chat.waiters[token] = (ticket, now + lease_seconds)
        if chat.expires_at > now or min(chat.waiters.items(), key=lambda w: (w[1][0], w[0]))[0] != token:
            return False
        del chat.waiters[token]
        chat.holder, chat.expires_at = token, now + lease_seconds
        return True

    async def renew(self, chat_id: int | str, token: str, lease_seconds: float) -> bool:
        chat = self._chats.get(str(chat_id))
        if chat is None or chat.holder != token or chat.expires_at <= self._clock():
            return False
        chat.expires_at = self._clock() + lease_seconds
        return True

    async def release(self, chat_id: int | str, token: str) -> None:
        chat = self._chats.get(str(chat_id))
        if chat is None:
            return
        chat.waiters.pop(token, None)
        if chat.holder == token:
            chat.holder, chat.expires_at = "", 0.0
        if not chat.waiters and chat.expires_at <= self._clock():
            del self._chats[str(chat_id)]


class InProcessAudit:
    """`RedisAudit` for a single process: the newest `max_entries` events."""

    def __init__(self, *, max_entries: int) -> None:
        self._events: deque[dict[str, str]] = deque(maxlen=max_entries)

    async def record(self, event: Mapping[str, str]) -> None:
        self._events.append(dict(event))

    async def recent(self, count: int) -> list[dict[str, str]]:
        return list(reversed(self._events))[:count]
