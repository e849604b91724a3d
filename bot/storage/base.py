"""What the service needs from a conversation store, and the documented Redis key layout.

Keys (the `{...}` part is a Redis Cluster hash tag, so a chat's keys live on one shard):

- `<prefix>:{chat:<chat_id>}:history`  LIST of JSON turns, oldest first, at most HISTORY_MAX_TURNS long
- `<prefix>:{chat:<chat_id>}:appends`  ZSET of the ids of appends already applied (makes retries and
  Telegram redeliveries idempotent), trimmed alongside the history

- `<prefix>:{chat:<chat_id>}:facts`    HASH label -> value of facts the customer stated (`FactStore`)

All three expire HISTORY_TTL_SECONDS after the chat's last append; `clear` (/reset) deletes all three.
Limits (see `Limits`):

- `<prefix>:delivery:<id>`             STRING: `lease:<token>` while a replica answers the delivery (expires
  after LEASE seconds unless renewed), then `done:<token>` for a day: a redelivery is dropped
- `<prefix>:{<scope>}:<bucket>`        STRING counter with a TTL, e.g. `bot:{user:42}:min:29212345`
- `<prefix>:safety:audit`              STREAM of safety events (reason codes, never message text), capped

Chat locks (see `ChatLocks`), all three in the chat's hash slot so one script can touch them together:

- `<prefix>:{chat:<chat_id>}:lock`     STRING: the token of the replica answering the chat, with a lease TTL
- `<prefix>:{chat:<chat_id>}:queue`    ZSET of waiting tokens scored by ticket (the Telegram message_id)
- `<prefix>:{chat:<chat_id>}:waiters`  ZSET of the same tokens scored by when they stop counting (ms):
  a waiter of a replica that died drops out of the queue once it stops refreshing its place
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from bot.core.domain import Turn

__all__ = [
    "AuditLog",
    "Bucket",
    "ChatLocks",
    "ConversationStore",
    "FactStore",
    "LeaseState",
    "Limits",
    "chat_lock_keys",
    "facts_key",
    "history_key",
    "ids_key",
]


def history_key(prefix: str, chat_id: int | str) -> str:
    return f"{prefix}:{{chat:{chat_id}}}:history"


def ids_key(prefix: str, chat_id: int | str) -> str:
    return f"{prefix}:{{chat:{chat_id}}}:appends"


def facts_key(prefix: str, chat_id: int | str) -> str:
    return f"{prefix}:{{chat:{chat_id}}}:facts"


def chat_lock_keys(prefix: str, chat_id: int | str) -> tuple[str, str, str]:
    """The chat lock's holder, queue and waiter-liveness keys (one hash slot)."""
    tag = f"{prefix}:{{chat:{chat_id}}}"
    return f"{tag}:lock", f"{tag}:queue", f"{tag}:waiters"


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


@runtime_checkable
class FactStore(Protocol):
    """Facts a customer stated in a chat (name, order number...), kept beside its history.

    A store that keeps history implements this too, so the facts share the history's TTL and go with its
    `clear`. Every method raises `StoreUnavailable` when the backend cannot be used.
    """

    async def load_facts(self, chat_id: int | str) -> dict[str, str]:
        """label -> value; empty when none are known or they expired."""
        ...

    async def save_facts(self, chat_id: int | str, facts: Mapping[str, str]) -> None:
        """Replace the chat's facts with `facts` and give them the history's TTL afresh."""
        ...


@dataclass(frozen=True, slots=True)
class Bucket:
    """A counter that admits at most `limit` hits until it expires `ttl_seconds` after its first hit."""

    name: str
    limit: int
    ttl_seconds: int


class LeaseState(StrEnum):
    """What `Limits.lease` found: the delivery is now ours, was already answered, or is being answered."""

    MINE = "mine"
    DONE = "done"
    HELD = "held"


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

    async def lease(self, key: str, token: str, lease_seconds: float) -> LeaseState:
        """Try to take delivery `key` for `token` for `lease_seconds`.

        MINE when it was free (or `token` already holds it: a retried call is safe), DONE when a reply was
        already delivered, HELD while another live lease has it. A lease that is not renewed expires, so
        the delivery of a replica that died is answered by whoever gets the redelivery.
        """
        ...

    async def renew_lease(self, key: str, token: str, lease_seconds: float) -> bool:
        """Extend `token`'s lease; False if it has lapsed (another replica may have taken over)."""
        ...

    async def settle(self, key: str, token: str, done_ttl_seconds: int) -> bool:
        """Turn `token`'s lease into a done mark kept `done_ttl_seconds`; False if another holder took it."""
        ...

    async def release_lease(self, key: str, token: str) -> None:
        """Give the delivery back unanswered (if `token` still holds it): a redelivery will be answered."""
        ...


class ChatLocks(Protocol):
    """One reply at a time per chat across every replica, in ticket (message_id) order.

    The lock is a lease: its holder renews it while it answers; if the holder dies the lease expires and
    the next waiter goes on. Waiters queue by ticket, so of the messages waiting for a chat the oldest is
    answered first, whichever replica each arrived at. Every method raises `StoreUnavailable` when the
    backend cannot be used, and is safe to retry with the same token.
    """

    async def try_acquire(self, chat_id: int | str, token: str, ticket: float, lease_seconds: float) -> bool:
        """Take the lock if it is free and no live waiter has a lower ticket; else join (or stay in) the
        queue for `lease_seconds` more and return False."""
        ...

    async def renew(self, chat_id: int | str, token: str, lease_seconds: float) -> bool:
        """Extend the lock held by `token`; False if it has lapsed."""
        ...

    async def release(self, chat_id: int | str, token: str) -> None:
        """Free the lock if `token` holds it, and leave the queue either way."""
        ...


class AuditLog(Protocol):
    """An append-only, length-capped record of safety events for admins to review."""

    async def record(self, event: Mapping[str, str]) -> None: ...

    async def recent(self, count: int) -> list[dict[str, str]]:
        """The newest `count` events, newest first."""
        ...
