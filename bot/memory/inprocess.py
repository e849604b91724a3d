"""An in-process store with the Redis store's behaviour, for single-process use (`REDIS_URL=memory://`)."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bot.domain import Turn

__all__ = ["InProcessStore"]


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
