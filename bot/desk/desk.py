"""The support desk's one API: handoff, feedback and analytics, for the service and the transports alike.

The service asks it whether a person owns a chat, keeps messages for the person, hands a chat over when
the customer asks in plain words or when answers keep failing, and records analytics events. Transports
(the Telegram operators' group) use the same object to hand over with /operator, relay, release and
sweep timeouts. Nobody reaches into `Handoffs` or the stores behind it. `app` builds it; `NoDesk` is the
desk of a bot without one (nothing is handed off, nothing recorded).
"""

from __future__ import annotations

import logging
from typing import Protocol

from bot.core.domain import Role, Turn
from bot.core.errors import StoreUnavailable
from bot.desk.analytics import Analytics
from bot.desk.feedback import Feedback
from bot.desk.handoff import Handoffs, wants_human
from bot.storage.desk_base import Handoff

__all__ = ["Desk", "NoDesk", "SupportDesk"]

log = logging.getLogger(__name__)


class Desk(Protocol):
    """What the chat service needs from the support desk."""

    async def owned(self, chat_id: int | str) -> bool: ...

    async def keep(self, chat_id: int | str, turn: Turn, append_id: str) -> None: ...

    async def person_requested(
        self, chat_id: int | str, text: str, user_id: int | None, name: str
    ) -> bool: ...

    async def answered(
        self,
        chat_id: int | str,
        user_id: int | None,
        name: str,
        *,
        found: bool,
        question: str,
        seconds: float,
    ) -> bool: ...

    async def arrived(self, chat_id: int | str) -> None: ...

    async def blocked(self, chat_id: int | str) -> None: ...


class NoDesk:
    """No support desk: the bot answers everything itself and records nothing."""

    async def owned(self, chat_id: int | str) -> bool:
        return False

    async def keep(self, chat_id: int | str, turn: Turn, append_id: str) -> None:
        return None

    async def person_requested(self, chat_id: int | str, text: str, user_id: int | None, name: str) -> bool:
        return False

    async def answered(
        self,
        chat_id: int | str,
        user_id: int | None,
        name: str,
        *,
        found: bool,
        question: str,
        seconds: float,
    ) -> bool:
        return False

    async def arrived(self, chat_id: int | str) -> None:
        return None

    async def blocked(self, chat_id: int | str) -> None:
        return None


class SupportDesk:
    """Handoffs, feedback and analytics, and the settings transports need (the operators' chat)."""

    def __init__(
        self,
        handoffs: Handoffs,
        feedback: Feedback,
        analytics: Analytics,
        *,
        operator_chat_id: int | None = None,
        feedback_buttons: bool = True,
    ) -> None:
        self._handoffs = handoffs
        self.feedback = feedback
        self.analytics = analytics
        self.operator_chat_id = operator_chat_id
        self.feedback_buttons = feedback_buttons

    @property
    def timeout_seconds(self) -> float:
        return self._handoffs.timeout_seconds

    # -- the service's side -------------------------------------------------------------------------
    async def owned(self, chat_id: int | str) -> bool:
        """A person owns the chat now: the bot keeps silent (with the store down, the bot answers)."""
        return await self._handoffs.owned(chat_id)

    async def keep(self, chat_id: int | str, turn: Turn, append_id: str) -> None:
        """Keep a message of a handed-off conversation in the chat's history (an outage is logged)."""
        await self._handoffs.store_turn(chat_id, turn, append_id)

    async def person_requested(self, chat_id: int | str, text: str, user_id: int | None, name: str) -> bool:
        """`text` asks for a person in plain words and the chat was handed over (True) or could not be."""
        if not self._handoffs.available or not wants_human(text):
            return False
        try:
            await self._handoffs.begin(int(chat_id), user_id, name, "asked")
        except (StoreUnavailable, ValueError) as exc:
            log.warning("chat %s asked for a person but the handoff failed: %s", chat_id, exc)
            return False
        return True

    async def answered(
        self,
        chat_id: int | str,
        user_id: int | None,
        name: str,
        *,
        found: bool,
        question: str,
        seconds: float,
    ) -> bool:
        """Record a finished reply; after too many unanswered questions in a row, hand the chat over
        (True)."""
        await self.analytics.reply(chat_id, seconds, question, answered=found)
        if not await self._handoffs.should_escalate(chat_id, grounded=found):
            return False
        try:
            begun = await self._handoffs.begin(int(chat_id), user_id, name, "unanswered")
        except StoreUnavailable as exc:
            log.warning("chat %s: escalation to a person failed: %s", chat_id, exc)
            return False
        return begun is not None

    async def arrived(self, chat_id: int | str) -> None:
        await self.analytics.message(chat_id)

    async def blocked(self, chat_id: int | str) -> None:
        await self.analytics.blocked(chat_id)

    # -- the transports' side -----------------------------------------------------------------------
    async def hand_over(self, chat_id: int, user_id: int | None, name: str, reason: str) -> Handoff | None:
        """Hand the chat to a person; None when it already was. Raises StoreUnavailable."""
        return await self._handoffs.begin(chat_id, user_id, name, reason)

    async def handoff(self, chat_id: int) -> Handoff | None:
        """The chat's current handoff, if any. Raises StoreUnavailable."""
        return await self._handoffs.current(chat_id)

    async def history(self, chat_id: int) -> list[Turn]:
        """The conversation so far, for the operators' briefing (empty when the store is down)."""
        return await self._handoffs.history(chat_id)

    async def relayed(self, message_id: int, chat_id: int) -> None:
        """A message in the operators' chat belongs to `chat_id`: a reply to it goes there."""
        await self._handoffs.link(message_id, chat_id)

    async def chat_of(self, message_id: int) -> int | None:
        """The customer chat a message in the operators' chat belongs to."""
        return await self._handoffs.linked(message_id)

    async def operator_replying(self, chat_id: int, operator: str) -> None:
        """An operator answers the chat: the handoff lasts longer, or starts again if it had ended."""
        if not await self._handoffs.operator_replied(chat_id):
            await self._handoffs.begin(chat_id, None, "", f"taken back by {operator}")

    async def operator_replied(self, chat_id: int, turn: Turn, message_id: int) -> None:
        """The operator's reply was delivered: keep it in the history and link it for further replies."""
        if turn.role is not Role.ASSISTANT:
            raise ValueError("an operator's reply is stored as the assistant's turn")
        await self._handoffs.store_turn(chat_id, turn, f"op{message_id}")
        await self._handoffs.link(message_id, chat_id)

    async def release(self, chat_id: int) -> Handoff | None:
        """The bot answers the chat again; None when no person had it. Raises StoreUnavailable."""
        return await self._handoffs.release(chat_id)

    async def expired(self) -> list[Handoff]:
        """End and return the handoffs whose time is up (each one to exactly one caller)."""
        return await self._handoffs.expired()
