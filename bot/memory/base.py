"""What the service needs from a conversation store, and the documented Redis key layout.

Keys (the `{...}` part is a Redis Cluster hash tag, so a chat's keys live on one shard):

- `<prefix>:{chat:<chat_id>}:history`  LIST of JSON turns, oldest first, at most HISTORY_MAX_TURNS long
- `<prefix>:{chat:<chat_id>}:appends`  ZSET of the ids of appends already applied (makes retries and
  Telegram redeliveries idempotent), trimmed alongside the history

Both keys expire HISTORY_TTL_SECONDS after the chat's last append. Limits (see `Limits`):

- `<prefix>:delivery:<id>`             STRING set with NX and a TTL: this delivery was already handled
- `<prefix>:{<scope>}:<bucket>`        STRING counter with a TTL, e.g. `bot:{user:42}:min:29212345`
- `<prefix>:safety:audit`              STREAM of safety events (reason codes, never message text), capped
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.domain import Turn

__all__ = ["AuditLog", "Bucket", "ConversationStore", "Limits", "history_key", "ids_key"]


def history_key(prefix: str, chat_id: int | str) -> str:
    return f"{prefix}:{{chat:{chat_id}}}:history"


def ids_key(prefix: str, chat_id: int | str) -> str:
    return f"{prefix}:{{chat:{chat_id}}}:appends"


class ConversationStore(Protocol):
    """Per-chat history. Every method raises `StoreUnavailable` when the backend cannot be used."""

    async def load(self, chat_id: int | str) -> list[Turn]:
        """The chat's turns, oldest first."""
        ...

    async def append(self, chat_id: int | str, turns: Sequence[Turn], append_id: str) -> bool:
        """Atomically add `turns`, trim to the cap and refresh the TTL.

        Returns False (and changes nothing) when an append with the same `append_id` was already applied.
        """
        ...

    async def clear(self, chat_id: int | str) -> None: ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Bucket:
    """A counter that admits at most `limit` hits until it expires `ttl_seconds` after its first hit."""

    name: str
    limit: int
    ttl_seconds: int


class Limits(Protocol):
    """Shared counters for deduplication and rate limits, so they hold across restarts and replicas."""

    async def claim(self, key: str, ttl_seconds: int) -> bool:
        """True the first time `key` is claimed within `ttl_seconds`, False afterwards."""
        ...

    async def consume(self, scope: str, buckets: Sequence[Bucket]) -> int:
        """Count one hit in every bucket if none is full and return -1; else the index of the first full one.

        A refused hit counts nowhere, so a user who waits for the window to pass is admitted again.
        """
        ...


class AuditLog(Protocol):
    """An append-only, length-capped record of safety events for admins to review."""

    async def record(self, event: Mapping[str, str]) -> None: ...

    async def recent(self, count: int) -> list[dict[str, str]]:
        """The newest `count` events, newest first."""
        ...
