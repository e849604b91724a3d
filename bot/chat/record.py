"""After a reply: both turns into the history, the desk's analytics, and escalation to a person."""

from __future__ import annotations

import logging
from dataclasses import replace

from bot.chat.handoff import append_id
from bot.core.domain import Role, Turn
from bot.core.errors import StoreUnavailable
from bot.core.outcome import Outcome, OutcomeKind
from bot.desk.desk import Desk
from bot.metrics import Metrics
from bot.storage.base import ConversationStore

__all__ = ["Recorder"]

log = logging.getLogger("bot.chat.service")


class Recorder:
    def __init__(self, store: ConversationStore, desk: Desk, metrics: Metrics) -> None:
        self._store = store
        self._desk = desk
        self._metrics = metrics

    async def persist(self, chat_id: int | str, question: Turn, reply: str) -> None:
        """Store the exchange (once, however often the message is delivered); an outage is logged."""
        try:
            await self._store.append(
                chat_id, [question, Turn(Role.ASSISTANT, reply)], append_id(question.message_id)
            )
        except StoreUnavailable as exc:
            self._metrics.redis_errors.labels("append").inc()
            log.warning("chat %s: this exchange was not saved to history: %s", chat_id, exc)

    async def analytics(
        self, chat_id: int | str, question: Turn, outcome: Outcome, seconds: float
    ) -> Outcome:
        """Count the reply; after too many unanswered questions in a row the chat goes to a person, and
        the outcome says so (the answer is still shown)."""
        if outcome.kind is OutcomeKind.REPLACED:
            await self._desk.blocked(chat_id)
        handed = await self._desk.answered(
            chat_id,
            question.user_id,
            question.author or "",
            found=not outcome.declined,
            question=outcome.question,
            seconds=seconds,
        )
        return replace(outcome, handoff=True) if handed else outcome
