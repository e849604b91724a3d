"""👍/👎 feedback on the bot's answers: the buttons' data, and what a vote is stored with.

The buttons carry only `fb1:up` / `fb1:down` (Telegram allows 64 bytes; the version lets a later format
coexist with old messages). The answer's context - question (as stored, PII redacted), answer, sources,
model and sampling settings - is saved when the answer is sent, keyed by chat and message id, so a vote
needs nothing else. A second vote on the same answer replaces the first.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from enum import StrEnum

from bot.core.domain import GenerationParams
from bot.core.errors import StoreUnavailable
from bot.core.outcome import Outcome
from bot.desk.analytics import DAY, Analytics
from bot.storage.desk_base import FeedbackStore

__all__ = ["CALLBACK_VERSION", "Feedback", "VoteOutcome", "buttons", "callback_data", "parse_callback"]

log = logging.getLogger(__name__)

CALLBACK_VERSION = "fb1"
VOTES = ("up", "down")
_LABELS = {"up": "👍", "down": "👎"}
THANKS_MARK = " ✓ Thanks!"


class VoteOutcome(StrEnum):
    RECORDED = "recorded"  # a first vote, or a changed one
    UNCHANGED = "unchanged"  # the same vote again
    UNKNOWN = "unknown"  # the answer's record expired (or was never saved)
    NOT_YOURS = "not_yours"  # someone else's answer (a group): only the person who asked rates it


def callback_data(vote: str) -> str:
    if vote not in VOTES:
        raise ValueError(f"a vote is one of {VOTES}, not {vote!r}")
    return f"{CALLBACK_VERSION}:{vote}"


def parse_callback(data: str) -> str | None:
    """The vote a button press carries, or None when the data is not a feedback button of this version."""
    version, _, vote = data.partition(":")
    return vote if version == CALLBACK_VERSION and vote in VOTES else None


def buttons(chosen: str | None = None) -> list[tuple[str, str]]:
    """(label, callback data) of the buttons under an answer; the chosen vote carries a thank-you mark."""
    return [(_LABELS[vote] + (THANKS_MARK if vote == chosen else ""), callback_data(vote)) for vote in VOTES]


def _key(chat_id: int | str, message_id: int) -> str:
    return f"{chat_id}:{message_id}"


class Feedback:
    def __init__(
        self,
        store: FeedbackStore,
        *,
        model: str,
        params: GenerationParams,
        retention_days: int,
        analytics: Analytics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._model = model
        self._params = json.dumps(dataclasses.asdict(params), sort_keys=True)
        self._ttl = retention_days * DAY
        self._analytics = analytics
        self._clock = clock

    async def remember(self, chat_id: int | str, message_id: int, info: Outcome) -> None:
        """Save what a vote on this answer will be stored with. An outage only costs this answer's vote."""
        fields = {
            "chat": str(chat_id),
            "message_id": str(message_id),
            "question": info.question,
            "answer": info.reply,
            "sources": json.dumps(list(info.sources), ensure_ascii=False),
            "confidence": "" if info.confidence is None else f"{info.confidence:.4f}",
            "answered": "0" if info.declined else "1",
            "model": self._model,
            "params": self._params,
            "answered_at": f"{self._clock():.3f}",
            "asker": "" if info.asker_id is None else str(info.asker_id),
        }
        try:
            await self._store.save(_key(chat_id, message_id), fields, self._ttl)
        except StoreUnavailable as exc:
            log.warning("feedback context of chat %s not saved: %s", chat_id, exc)

    async def vote(self, chat_id: int | str, message_id: int, vote: str, user_id: int | None) -> VoteOutcome:
        """Store a vote (raises StoreUnavailable, so the person can be told to try again)."""
        if vote not in VOTES:
            raise ValueError(f"a vote is one of {VOTES}, not {vote!r}")
        record = await self._store.get(_key(chat_id, message_id))
        if record is None:
            return VoteOutcome.UNKNOWN
        if record.get("asker") and user_id is not None and record["asker"] != str(user_id):
            return VoteOutcome.NOT_YOURS
        previous = await self._store.vote(_key(chat_id, message_id), vote, user_id, self._clock())
        if previous is None:
            return VoteOutcome.UNKNOWN
        if previous.value == vote:
            return VoteOutcome.UNCHANGED
        if self._analytics is not None:
            await self._analytics.vote(vote, previous.value, previous.at)
        return VoteOutcome.RECORDED

    async def record(self, chat_id: int | str, message_id: int) -> dict[str, str] | None:
        return await self._store.get(_key(chat_id, message_id))
