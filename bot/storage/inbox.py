"""The update inbox: what a bot has accepted from Telegram and not yet answered, kept outside the process.

In long-polling mode Telegram forgets an update once the next `getUpdates` asks for a later offset, so
every update is written here before that happens; a process answers it from here and removes it only
when it has been handled. An entry a process took but never finished (SIGTERM past the grace period,
SIGKILL, a crash) is taken again by the next process once its lease lapses, oldest first. The chat's
delivery lease (`bot/chat/ordering.py`) then makes sure a message answered just before the crash is not
answered twice. Keys (one Redis Cluster hash slot per bot):

- `<prefix>:{inbox:<bot_id>}:pending`  ZSET of the update ids not yet handled, scored by update id
- `<prefix>:{inbox:<bot_id>}:updates`  HASH update id -> the update's JSON, as Telegram sent it
- `<prefix>:{inbox:<bot_id>}:chats`    HASH update id -> the chat it belongs to ("" if none)
- `<prefix>:{inbox:<bot_id>}:leases`   HASH update id -> `<owner> <take token> <expiry ms>` while taken
- `<prefix>:{inbox:<bot_id>}:attempts` HASH update id -> how often it was taken (a poison update that
  keeps killing the process is dropped after `MAX_ATTEMPTS`)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["MAX_ATTEMPTS", "Inbox", "InboxEntry", "InboxFactory", "inbox_keys"]

MAX_ATTEMPTS = 5


def inbox_keys(prefix: str, bot_id: int) -> tuple[str, str, str, str, str]:
    """The pending set, updates, chats, leases and attempts keys of one bot's inbox (one hash slot)."""
    tag = f"{prefix}:{{inbox:{bot_id}}}"
    return f"{tag}:pending", f"{tag}:updates", f"{tag}:chats", f"{tag}:leases", f"{tag}:attempts"


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """One taken update: its id and the JSON Telegram sent."""

    update_id: int
    payload: str


class Inbox(Protocol):
    """A bot's accepted, unanswered updates. Every method is safe to retry after a lost reply."""

    async def add(self, update_id: int, chat: str, payload: str) -> None:
        """Keep an update (a second add of the same id changes nothing)."""
        ...

    async def take(self, owner: str, limit: int, lease_seconds: float) -> list[InboxEntry]:
        """Lease up to `limit` entries to `owner`, oldest first.

        Skips entries leased by anyone (until the lease lapses) and, so a chat's messages keep their
        order across a crash, every entry of a chat that has an entry leased by another owner.
        """
        ...

    async def renew(self, owner: str, update_ids: Sequence[int], lease_seconds: float) -> int:
        """Extend `owner`'s leases on these entries; how many it still held."""
        ...

    async def release(self, owner: str, update_ids: Sequence[int]) -> None:
        """Give entries back untouched (shutdown): the next `take` may have them at once."""
        ...

    async def done(self, update_id: int) -> None:
        """The update was handled: forget it."""
        ...

    async def pending(self) -> int:
        """How many updates are waiting or being handled."""
        ...


InboxFactory = Callable[[int], Inbox]  # the inbox of the bot with this Telegram id
