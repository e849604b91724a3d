"""The service's handoff step: silence while a person owns the chat, and handing over on request.

Both go through the support desk's API (`bot/desk/desk.py`), the same one the Telegram transport uses.
"""

from __future__ import annotations

import uuid

from bot.chat.screening import InputCheck
from bot.core.domain import Turn
from bot.core.outcome import Outcome, OutcomeKind
from bot.desk.desk import Desk

__all__ = ["HandoffStep", "append_id"]


def append_id(message_id: int | None) -> str:
    """The id an append to the history is made idempotent with: a redelivered message is stored once."""
    return f"m{message_id}" if message_id is not None else uuid.uuid4().hex


class HandoffStep:
    def __init__(self, desk: Desk, check: InputCheck) -> None:
        self._desk = desk
        self._check = check

    async def person_owns(self, chat_id: int | str, question: Turn) -> Outcome | None:
        """A person owns the chat: keep the message in history, redacted as usual (a blocked one withheld),
        and say nothing; the transport relays it to the person. None when the bot answers."""
        if not await self._desk.owned(chat_id):
            return None
        screened = await self._check(chat_id, question.content)
        kept = Turn(
            question.role,
            screened.text,
            message_id=question.message_id,
            user_id=question.user_id,
            author=question.author,
        )
        await self._desk.keep(chat_id, kept, append_id(question.message_id))
        return Outcome(OutcomeKind.HANDED_OFF, question=screened.text, asker_id=question.user_id)

    async def person_asked(self, chat_id: int | str, question: Turn) -> Outcome | None:
        """The message asks for a person in plain words: the chat is handed over, the model skipped."""
        name = question.author or ""
        if not await self._desk.person_requested(chat_id, question.content, question.user_id, name):
            return None
        await self._desk.keep(chat_id, question, append_id(question.message_id))
        return Outcome(OutcomeKind.HANDOFF_REQUESTED, question=question.content, asker_id=question.user_id)
