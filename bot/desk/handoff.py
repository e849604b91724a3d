"""Human handoff: when a person takes over a chat, what operators are shown, and when the bot takes back.

A handoff lasts until an operator releases the chat or until SUPPORT_HANDOFF_TIMEOUT_MINUTES pass without
an operator reply (customer messages do not extend it: a customer nobody answers gets the bot back).
The state lives in a `HandoffStore` (Redis in production) so every replica agrees who owns a chat.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence

from bot.core.domain import Role, Turn
from bot.core.errors import StoreUnavailable
from bot.core.texts import HandoffTexts
from bot.desk.analytics import Analytics
from bot.storage.base import ConversationStore
from bot.storage.desk_base import Handoff, HandoffStore

__all__ = ["HandoffTexts", "Handoffs", "relay_text", "summary_text", "wants_human"]

log = logging.getLogger(__name__)

RELAY_TTL_SECONDS = 7 * 86_400  # an operator may reply to a relayed message this long afterwards
SUMMARY_TURNS = 6
SUMMARY_CHARS = 300

_PERSON = r"(?:human|person|people|operator|agent|representative|somebody|someone|colleague|staff|manager)"
_WANTS_HUMAN = re.compile(
    rf"""(?ix)
    \b(?:talk|speak|chat|connect|transfer|put\s+me\s+through)\w*\s+(?:me\s+)?(?:to|with)\s+
        (?:a\s+|an\s+|the\s+|your\s+|some\s+)?(?:real\s+|live\s+|actual\s+)?{_PERSON}\b
    | \b(?:real|live|actual)\s+{_PERSON}\b
    | \b(?:want|need|get)\s+(?:me\s+)?(?:a\s+|an\s+|the\s+)?(?:real\s+|live\s+)?
        (?:human|person|operator|agent|representative)\b
    | ^\s*(?:human|operator|agent|representative)(?:\s+please)?\s*[.!]*\s*$
    """
)


def wants_human(text: str) -> bool:
    """True when a message asks, in plain words, for a person ("talk to a human", "real person")."""
    return bool(_WANTS_HUMAN.search(text))


def summary_text(handoff: Handoff, history: Sequence[Turn], *, username: str | None = None) -> str:
    """What operators see first: who, which chat, why, and the last messages of the conversation."""
    who = handoff.name or "A customer"
    if handoff.user_id is not None:
        who += f" (user {handoff.user_id})"
    if username:
        who += f" (@{username})"
    lines = [
        f"🙋 {who} needs a person — chat {handoff.chat_id}",
        f"Reason: {handoff.reason}",
    ]
    recent = list(history)[-SUMMARY_TURNS:]
    if recent:
        lines.append("")
        lines.append("Last messages:")
        for turn in recent:
            speaker = (turn.author or handoff.name or "Customer") if turn.role is Role.USER else "Bot"
            if turn.role is Role.ASSISTANT and turn.author:
                speaker = turn.author
            lines.append(f"{speaker}: {_clip(turn.content)}")
    lines += [
        "",
        "Reply to this message or to any relayed one to answer. Reply /release (or send "
        f"/release {handoff.chat_id}) to hand the chat back to the bot.",
    ]
    return "\n".join(lines)


def relay_text(name: str, chat_id: int, text: str) -> str:
    return f"💬 {name or 'Customer'} (chat {chat_id}):\n{text}"


def _chat_number(chat_id: int | str) -> int | None:
    """Telegram chats have numeric ids; others (the terminal's "terminal") are never handed off."""
    try:
        return int(chat_id)
    except ValueError:
        return None


def _clip(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= SUMMARY_CHARS else line[: SUMMARY_CHARS - 1] + "…"


class Handoffs:
    """Who owns which chat. Without an operator chat nothing can be handed off (`available` is False)."""

    def __init__(
        self,
        store: HandoffStore,
        history: ConversationStore,
        *,
        available: bool,
        timeout_seconds: float,
        escalate_after: int,
        analytics: Analytics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._history = history
        self.available = available
        self.timeout_seconds = timeout_seconds
        self._escalate_after = escalate_after
        self._analytics = analytics
        self._clock = clock

    async def owned(self, chat_id: int | str) -> bool:
        """Whether a person owns the chat now (the bot keeps silent); with the store down, the bot answers."""
        if not self.available or (chat := _chat_number(chat_id)) is None:
            return False
        try:
            found = await self._store.get(chat)
        except StoreUnavailable as exc:
            log.warning("cannot tell whether chat %s is handed off; the bot answers: %s", chat_id, exc)
            return False
        return found is not None and found[1] > self._clock()

    async def begin(self, chat_id: int, user_id: int | None, name: str, reason: str) -> Handoff | None:
        """Hand the chat to a person; None when it already was. Raises StoreUnavailable."""
        handoff = Handoff(chat_id, user_id, name, reason, self._clock())
        if not await self._store.begin(handoff, handoff.started + self.timeout_seconds):
            current = await self._store.get(chat_id)
            if current is not None and current[1] > self._clock():
                return None
            # an expired handoff nobody swept yet: end it and start afresh
            await self._store.end(chat_id)
            if not await self._store.begin(handoff, handoff.started + self.timeout_seconds):
                return None
        if self._analytics is not None:
            await self._analytics.handoff(chat_id)
        log.info("chat %s handed to a person (%s)", chat_id, reason)
        return handoff

    async def current(self, chat_id: int) -> Handoff | None:
        found = await self._store.get(chat_id)
        return found[0] if found is not None else None

    async def operator_replied(self, chat_id: int) -> bool:
        """An operator answered: the handoff lasts another timeout. False when the chat was not handed off."""
        return await self._store.extend(chat_id, self._clock() + self.timeout_seconds)

    async def release(self, chat_id: int) -> Handoff | None:
        return await self._store.end(chat_id)

    async def expired(self) -> list[Handoff]:
        """End and return the handoffs whose time is up (each one to exactly one caller)."""
        return await self._store.end_due(self._clock())

    async def history(self, chat_id: int) -> list[Turn]:
        try:
            return await self._history.load(chat_id)
        except StoreUnavailable as exc:
            log.warning("handoff summary of chat %s without history: %s", chat_id, exc)
            return []

    async def store_turn(self, chat_id: int | str, turn: Turn, append_id: str) -> None:
        """Keep a message of the handed-off conversation in the chat's history (both ways)."""
        try:
            await self._history.append(chat_id, [turn], append_id)
        except StoreUnavailable as exc:
            log.warning("chat %s: a handed-off message was not saved to history: %s", chat_id, exc)

    async def link(self, message_id: int, chat_id: int) -> None:
        await self._store.link(message_id, chat_id, RELAY_TTL_SECONDS)

    async def linked(self, message_id: int) -> int | None:
        return await self._store.linked(message_id)

    async def should_escalate(self, chat_id: int | str, *, grounded: bool) -> bool:
        """Count an answer the bot could (or could not) ground; True when the streak reaches the limit."""
        if not self.available or self._escalate_after <= 0 or (chat := _chat_number(chat_id)) is None:
            return False
        try:
            streak = await self._store.streak(chat, grounded=grounded, ttl_seconds=86_400)
        except StoreUnavailable as exc:
            log.warning("unanswered streak of chat %s not counted: %s", chat_id, exc)
            return False
        if streak >= self._escalate_after:
            await self._store.streak(chat, grounded=True, ttl_seconds=86_400)
            return True
        return False
