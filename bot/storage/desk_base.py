"""What the support desk (handoff, feedback, analytics) needs from storage, and its Redis key layout.

The stores are deliberately dumb (records, counters, rankings); what the numbers mean lives in
`bot.knowledge`. Keys (`{support}` is a Redis Cluster hash tag: the handoff scripts touch several keys):

- `<prefix>:{support}:handoffs`            HASH chat id -> JSON of the handoff (who, why, since when)
- `<prefix>:{support}:handoff-expiry`      ZSET chat id scored by the time the chat returns to the bot
- `<prefix>:{support}:relay:<message_id>`  STRING customer chat id of a message in the operators' chat
- `<prefix>:{support}:unanswered:<chat>`   STRING count of ungrounded answers in a row
- `<prefix>:feedback:<chat>:<message_id>`  HASH question, answer, sources, model, params, vote, voted_at
- `<prefix>:{stats}:h:<hour>`              HASH counters of one UTC hour (messages, replies, up, down, ...)
- `<prefix>:{stats}:chats:<hour>`          HyperLogLog of the chats active in that hour
- `<prefix>:{stats}:<board>:<day>`         ZSET question -> times asked (board `asked` or `unanswered`)

`{stats}` is a hash tag too: a 24 h or 7 d query reads many hourly or daily keys in one command.

Hourly and daily keys and feedback records expire after SUPPORT_ANALYTICS_RETENTION_DAYS.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

__all__ = [
    "AnalyticsStore",
    "FeedbackStore",
    "Handoff",
    "HandoffStore",
    "SupportStores",
    "Vote",
]


@dataclass(frozen=True, slots=True)
class Handoff:
    """A chat a person owns: the customer, why it was handed over, and when (epoch seconds)."""

    chat_id: int
    user_id: int | None
    name: str
    reason: str
    started: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> Handoff:
        data = json.loads(raw)
        return cls(
            chat_id=int(data["chat_id"]),
            user_id=None if data.get("user_id") is None else int(data["user_id"]),
            name=str(data.get("name") or ""),
            reason=str(data.get("reason") or ""),
            started=float(data["started"]),
        )


@dataclass(frozen=True, slots=True)
class Vote:
    """The vote a feedback record held before this one (`value` is "" when it had none)."""

    value: str
    at: float | None


class HandoffStore(Protocol):
    """Which chats a person owns. Every method raises `StoreUnavailable` when the backend is down."""

    async def begin(self, handoff: Handoff, expires_at: float) -> bool:
        """Record the handoff unless the chat is already handed off; True when this call started it."""
        ...

    async def get(self, chat_id: int) -> tuple[Handoff, float] | None:
        """The chat's handoff and when it expires, or None."""
        ...

    async def extend(self, chat_id: int, expires_at: float) -> bool:
        """Move an active handoff's expiry; False when the chat is not handed off."""
        ...

    async def end(self, chat_id: int) -> Handoff | None:
        """End the handoff; only the caller that actually ended it gets it back."""
        ...

    async def end_due(self, now: float, limit: int = 100) -> list[Handoff]:
        """End and return the handoffs that expired at or before `now` (each is returned once)."""
        ...

    async def link(self, message_id: int, chat_id: int, ttl_seconds: int) -> None:
        """Remember that a message in the operators' chat belongs to the customer chat `chat_id`."""
        ...

    async def linked(self, message_id: int) -> int | None: ...

    async def streak(self, chat_id: int, *, grounded: bool, ttl_seconds: int) -> int:
        """Count an ungrounded answer (or reset the count after a grounded one); the count now."""
        ...


class FeedbackStore(Protocol):
    """Answers that carry feedback buttons, and the votes on them."""

    async def save(self, key: str, fields: Mapping[str, str], ttl_seconds: int) -> None: ...

    async def vote(self, key: str, value: str, user_id: int | None, at: float) -> Vote | None:
        """Set the vote; the previous one, or None when the answer is unknown (never saved, or expired)."""
        ...

    async def get(self, key: str) -> dict[str, str] | None: ...


class AnalyticsStore(Protocol):
    """Hourly counters, active chats per hour, and per-day rankings of questions."""

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
        """Add `counts` to the hour's counters, the chat to its active set, each ranked text to its board."""
        ...

    async def counters(self, hours: Sequence[int]) -> list[dict[str, int]]:
        """One dict of counters per hour, in the order asked (empty for hours without data)."""
        ...

    async def conversations(self, hours: Sequence[int]) -> int:
        """How many distinct chats were active in any of these hours."""
        ...

    async def top(self, board: str, days: Sequence[str], count: int) -> list[tuple[str, int]]:
        """The `count` texts most often ranked on `board` over these days, most frequent first."""
        ...


@dataclass(frozen=True, slots=True)
class SupportStores:
    handoffs: HandoffStore
    feedback: FeedbackStore
    analytics: AnalyticsStore
