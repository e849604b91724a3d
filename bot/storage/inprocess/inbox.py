"""The update inbox in this process's memory (`REDIS_URL=memory://`): the same rules as `RedisInbox`,
so one code path serves both; nothing survives the process, as nothing else does with that setting."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.storage.inbox import MAX_ATTEMPTS, InboxEntry

__all__ = ["InProcessInbox"]


@dataclass
class _Entry:
    chat: str
    payload: str
    holder: str | None = None
    expires_at: float = 0.0
    attempts: int = 0


class InProcessInbox:
    """Entries in update-id order in a dict; leases by owner with an expiry on `clock`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[int, _Entry] = {}
        self._clock = clock
        self.dropped = 0

    async def add(self, update_id: int, chat: str, payload: str) -> None:
        self._entries.setdefault(update_id, _Entry(chat, payload))

    async def take(self, owner: str, limit: int, lease_seconds: float) -> list[InboxEntry]:
        now, blocked, out = self._clock(), set[str](), list[InboxEntry]()
        for update_id in sorted(self._entries):
            if len(out) >= limit:
                break
            entry = self._entries[update_id]
            if entry.holder is not None and entry.expires_at > now:
                if entry.holder != owner and entry.chat:
                    blocked.add(entry.chat)
                continue
            if entry.chat and entry.chat in blocked:
                continue
            entry.attempts += 1
            if entry.attempts > MAX_ATTEMPTS:
                del self._entries[update_id]
                self.dropped += 1
                continue
            entry.holder, entry.expires_at = owner, now + lease_seconds
            out.append(InboxEntry(update_id, entry.payload))
        return out

    async def renew(self, owner: str, update_ids: Sequence[int], lease_seconds: float) -> int:
        renewed = 0
        for update_id in update_ids:
            entry = self._entries.get(update_id)
            if entry is not None and entry.holder == owner:
                entry.expires_at = self._clock() + lease_seconds
                renewed += 1
        return renewed

    async def release(self, owner: str, update_ids: Sequence[int]) -> None:
        for update_id in update_ids:
            entry = self._entries.get(update_id)
            if entry is not None and entry.holder == owner:
                entry.holder, entry.attempts = None, max(0, entry.attempts - 1)

    async def done(self, update_id: int) -> None:
        self._entries.pop(update_id, None)

    async def pending(self) -> int:
        return len(self._entries)
