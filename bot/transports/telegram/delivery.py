"""Showing a reply in Telegram while it is generated: typing action, throttled edits, final text.

Intermediate edits are best effort: a `RetryAfter` only postpones the next edit (generation never waits
for Telegram). The final text is delivered with retries: after a `RetryAfter` nothing is sent before the
time Telegram asked for. Replies are plain text, so model output can never cause a parse error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from telegram import Bot, InlineKeyboardMarkup, ReplyParameters
from telegram.constants import ChatAction
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError

from bot.core.texts import QUEUE_STATUS
from bot.transports.telegram.split import split_text

__all__ = ["QUEUE_STATUS", "StreamingReply", "keep_typing", "send_text"]

log = logging.getLogger(__name__)

CURSOR = " …"
FINAL_ATTEMPTS = 6
T = TypeVar("T")


@dataclass(slots=True)
class _Shown:
    message_id: int
    text: str
    markup: InlineKeyboardMarkup | None = None


def _retry_seconds(exc: RetryAfter) -> float:
    value: Any = exc._retry_after  # a timedelta in PTB 22; the public property warns about its type
    return float(value.total_seconds() if hasattr(value, "total_seconds") else value)


async def _with_retries(call: Callable[[], Awaitable[T]], what: str) -> T:
    """Retry flood control (after the time Telegram asks) and transient network errors."""
    for attempt in range(1, FINAL_ATTEMPTS + 1):
        try:
            return await call()
        except BadRequest:  # a NetworkError subclass in PTB, but retrying cannot help
            raise
        except RetryAfter as exc:
            if attempt == FINAL_ATTEMPTS:
                raise
            wait = _retry_seconds(exc)
            log.info("%s: flood control, retrying in %.1f s", what, wait)
            await asyncio.sleep(wait)
        except NetworkError as exc:  # TimedOut included: the message may have arrived, so retry only once
            if attempt >= 2:
                raise
            log.warning("%s: %s; retrying once", what, exc)
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def send_text(bot: Bot, chat_id: int, text: str, *, reply_to: int | None = None) -> list[int]:
    """Send a fixed text (split if long), with the final-delivery retries; the ids of the messages sent."""
    sent = []
    for part in split_text(text):
        message = await _with_retries(
            lambda part=part: bot.send_message(chat_id, part, **_reply(reply_to)),  # type: ignore[misc]
            "send",
        )
        sent.append(message.message_id)
    return sent


def _reply(reply_to: int | None) -> dict[str, Any]:
    if reply_to is None:
        return {}
    return {"reply_parameters": ReplyParameters(message_id=reply_to, allow_sending_without_reply=True)}


@contextlib.asynccontextmanager
async def keep_typing(
    bot: Bot,
    chat_id: int,
    every: float = 4.5,
    *,
    waiting: Callable[[], int | None] | None = None,
    reply: StreamingReply | None = None,
) -> AsyncIterator[None]:
    """Show "typing…" until the block ends (Telegram shows it for about five seconds per call).

    With `waiting` (the reply's place in line for the model) and `reply`, a reply still waiting after the
    first interval says so where it will appear: "you are number 3 in line", updated as the line moves.
    """

    async def loop() -> None:
        shown: int | None = None
        while True:
            try:
                await bot.send_chat_action(chat_id, ChatAction.TYPING)
            except TelegramError as exc:  # purely cosmetic: never let it fail a reply
                log.debug("typing action failed: %s", exc)
            await asyncio.sleep(every)
            place = waiting() if waiting is not None else None
            if reply is not None and place is not None and place != shown:
                await reply.show_status(QUEUE_STATUS.format(place=place))
                shown = place

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class StreamingReply:
    """One reply, shown in as many messages as its length needs, edited as the text grows."""

    def __init__(
        self,
        bot: Bot,
        chat_id: int,
        *,
        reply_to: int | None = None,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bot = bot
        self._chat_id = chat_id
        self._reply_to = reply_to
        self._interval = interval
        self._clock = clock
        self._shown: list[_Shown] = []
        self._blocked_until = 0.0
        self._started = False  # the reply's first text has arrived
        self._putting = asyncio.Lock()  # a status and the first draft must not both send message one

    @property
    def message_ids(self) -> list[int]:
        return [shown.message_id for shown in self._shown]

    async def consume(self, pieces: AsyncIterator[str]) -> str:
        """Read the whole reply, showing it at most every `interval` seconds; return its text."""
        text, last = "", float("-inf")
        async for piece in pieces:
            self._started = True
            text += piece
            now = self._clock()
            if (
                self._interval > 0
                and now - last >= self._interval
                and now >= self._blocked_until
                and text.strip()
            ):
                last = now
                await self._show_draft(text)
        return text

    async def finish(self, text: str, *, markup: InlineKeyboardMarkup | None = None) -> None:
        """Make the chat show exactly `text` (split into parts), retrying until it does.

        `markup` (inline buttons, e.g. feedback) goes on the last part. Draft messages beyond the final
        parts (a replaced reply is shorter) are deleted.
        """
        parts = split_text(text)
        wait = self._blocked_until - self._clock()
        if wait > 0:  # a draft met flood control: nothing goes out before the time Telegram asked for
            await asyncio.sleep(wait)
        last = len(parts) - 1
        for index, part in enumerate(parts):
            buttons = markup if index == last else None
            await _with_retries(lambda i=index, p=part, b=buttons: self._put(i, p, b), "reply")  # type: ignore[misc]
        while len(self._shown) > len(parts):
            extra = self._shown.pop()
            try:
                await self._bot.delete_message(self._chat_id, extra.message_id)
            except TelegramError as exc:
                log.warning("could not delete a superseded draft message: %s", exc)

    async def show_status(self, status: str) -> None:
        """Show `status` where the reply will appear, unless the reply has begun (it then overwrites it)."""
        if self._started or self._clock() < self._blocked_until:
            return
        try:
            await self._put(0, status)
        except TelegramError as exc:  # cosmetic: the reply itself is what matters
            log.debug("status not shown: %s", exc)

    async def _show_draft(self, text: str) -> None:
        parts = split_text(text)
        last = len(parts) - 1
        try:
            for index, part in enumerate(parts):
                draft = part + CURSOR if index == last and len(part) + len(CURSOR) <= 4096 else part
                await self._put(index, draft)
        except RetryAfter as exc:
            self._blocked_until = self._clock() + _retry_seconds(exc)
            log.info("streaming paused for %.1f s by flood control", _retry_seconds(exc))
        except TelegramError as exc:
            log.debug("draft update skipped: %s", exc)

    async def _put(self, index: int, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
        async with self._putting:
            await self._put_now(index, text, markup)

    async def _put_now(self, index: int, text: str, markup: InlineKeyboardMarkup | None) -> None:
        if index < len(self._shown):
            shown = self._shown[index]
            if shown.text == text and shown.markup == markup:
                return
            try:
                await self._bot.edit_message_text(
                    text, chat_id=self._chat_id, message_id=shown.message_id, reply_markup=markup
                )
            except BadRequest as exc:
                if "not modified" not in str(exc).lower():
                    raise
            shown.text, shown.markup = text, markup
            return
        reply_to = self._reply_to if index == 0 else self._shown[-1].message_id
        message = await self._bot.send_message(self._chat_id, text, reply_markup=markup, **_reply(reply_to))
        self._shown.append(_Shown(message.message_id, text, markup))
