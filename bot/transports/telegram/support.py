"""The support desk on Telegram: /operator, the operators' group, 👍/👎 buttons, /stats, handoff timeouts.

Operators work in one group (SUPPORT_OPERATOR_CHAT_ID): each handed-off chat starts there with a summary,
then every customer message is relayed; a Telegram reply to any of those messages goes to the customer.
Membership of that group is what makes someone an operator. Whether the bot stays silent is decided by
the service (it asks `Handoffs`), never here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatType
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from bot.chat.gate import Gate
from bot.core.domain import Role, Turn
from bot.core.errors import StoreUnavailable
from bot.core.outcome import Outcome, OutcomeKind
from bot.core.texts import HandoffTexts, SupportTexts, Texts
from bot.desk.analytics import render_stats
from bot.desk.desk import SupportDesk
from bot.desk.feedback import VoteOutcome, buttons, parse_callback
from bot.desk.handoff import relay_text, summary_text
from bot.storage.desk_base import Handoff
from bot.transports.telegram.delivery import send_text

__all__ = ["SupportHandlers", "SupportTexts"]

log = logging.getLogger(__name__)


def keyboard(chosen: str | None = None) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=data) for label, data in buttons(chosen)]]
    )


class SupportHandlers:
    def __init__(self, desk: SupportDesk, gate: Gate) -> None:
        self.desk = desk
        self._gate = gate
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def operator_chat_id(self) -> int | None:
        return self.desk.operator_chat_id

    # -- customer side ----------------------------------------------------------------------------
    async def operator(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/operator: hand this chat to a person, or say plainly that nobody is available."""
        chat, user = update.effective_chat, update.effective_user
        if chat is None or user is None or not self._gate.allows(user.id, chat.id):
            return
        if chat.id == self.operator_chat_id:
            return
        if self.operator_chat_id is None:
            await send_text(context.bot, chat.id, HandoffTexts.UNAVAILABLE)
            return
        try:
            handoff = await self.desk.hand_over(chat.id, user.id, user.full_name, "asked with /operator")
        except StoreUnavailable as exc:
            log.warning("handoff of chat %s failed: %s", chat.id, exc)
            await send_text(context.bot, chat.id, HandoffTexts.FAILED)
            return
        if handoff is None:
            await send_text(context.bot, chat.id, HandoffTexts.ALREADY)
            return
        await self.announce(context.bot, handoff, username=user.username)

    async def announce_chat(self, bot: Bot, chat_id: int) -> None:
        """The service handed this chat over (asked in plain words, or too many unanswered questions)."""
        try:
            handoff = await self.desk.handoff(chat_id)
        except StoreUnavailable as exc:
            log.warning("handoff of chat %s not announced: %s", chat_id, exc)
            return
        if handoff is not None:
            await self.announce(bot, handoff)

    async def announce(self, bot: Bot, handoff: Handoff, *, username: str | None = None) -> None:
        """A chat was just handed over: brief the operators, then tell the customer."""
        assert self.operator_chat_id is not None
        history = await self.desk.history(handoff.chat_id)
        try:
            sent = await send_text(
                bot, self.operator_chat_id, summary_text(handoff, history, username=username)
            )
            for message_id in sent:
                await self.desk.relayed(message_id, handoff.chat_id)
        except (TelegramError, StoreUnavailable) as exc:
            log.error("could not brief the operators' chat about chat %s: %s", handoff.chat_id, exc)
            with contextlib.suppress(StoreUnavailable):
                await self.desk.release(handoff.chat_id)
            await send_text(bot, handoff.chat_id, HandoffTexts.FAILED)
            return
        await send_text(bot, handoff.chat_id, HandoffTexts.CONNECTING)

    async def relay(self, bot: Bot, chat_id: int, name: str, text: str) -> None:
        """A customer wrote while a person owns the chat: pass it on to the operators."""
        if self.operator_chat_id is None:
            return
        try:
            for message_id in await send_text(bot, self.operator_chat_id, relay_text(name, chat_id, text)):
                await self.desk.relayed(message_id, chat_id)
        except (TelegramError, StoreUnavailable) as exc:
            log.error("could not relay a message of chat %s to the operators: %s", chat_id, exc)

    def buttons_for(self, outcome: Outcome) -> InlineKeyboardMarkup | None:
        """👍/👎 under an answer (not under a replacement or a notice)."""
        answered = outcome.kind is OutcomeKind.ANSWERED and outcome.reply
        return keyboard() if self.desk.feedback_buttons and answered else None

    async def remember(self, chat_id: int, message_id: int, outcome: Outcome) -> None:
        await self.desk.feedback.remember(chat_id, message_id, outcome)

    async def feedback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A 👍/👎 press: store it, acknowledge it, and mark the chosen button."""
        query = update.callback_query
        if query is None:
            return
        vote = parse_callback(query.data or "")
        message = query.message
        if vote is None or message is None:
            await query.answer(SupportTexts.STALE_BUTTON)
            return
        try:
            outcome = await self.desk.feedback.vote(
                message.chat.id, message.message_id, vote, query.from_user.id
            )
        except StoreUnavailable as exc:
            log.warning("feedback not stored: %s", exc)
            await query.answer(SupportTexts.VOTE_FAILED)
            return
        if outcome is VoteOutcome.UNKNOWN:
            await query.answer(SupportTexts.VOTE_EXPIRED)
            return
        if outcome is VoteOutcome.NOT_YOURS:
            await query.answer(SupportTexts.NOT_YOUR_ANSWER)
            return
        await query.answer(SupportTexts.THANKS)
        if outcome is VoteOutcome.RECORDED:
            try:
                await query.edit_message_reply_markup(keyboard(vote))
            except TelegramError as exc:
                log.info("feedback buttons not updated: %s", exc)

    async def stats(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/stats: the last 24 hours and 7 days; admins only, in private or in the operators' group."""
        chat, user = update.effective_chat, update.effective_user
        if chat is None or user is None:
            return
        if chat.type != ChatType.PRIVATE and chat.id != self.operator_chat_id:
            # the figures quote customers' questions: never into a group of customers
            if self._gate.is_admin(user.id):
                await send_text(context.bot, chat.id, SupportTexts.STATS_PRIVATE)
            return
        if not self._gate.is_admin(user.id):  # to anyone else it is a command like any unknown one
            if chat.type == ChatType.PRIVATE and self._gate.allows(user.id, chat.id):
                await send_text(context.bot, chat.id, Texts.UNKNOWN_COMMAND)
            return
        analytics = self.desk.analytics
        try:
            day, week = await analytics.window(24), await analytics.window(24 * 7)
            unanswered = await analytics.unanswered_questions(7, count=5)
        except StoreUnavailable as exc:
            log.warning("/stats failed: %s", exc)
            await send_text(context.bot, chat.id, SupportTexts.STATS_FAILED)
            return
        text = render_stats([("Last 24 hours", day), ("Last 7 days", week)], unanswered)
        await send_text(context.bot, chat.id, text)

    # -- operators' side --------------------------------------------------------------------------
    async def operator_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Anything said in the operators' group: a reply to a relayed message goes to its customer."""
        message, user = update.effective_message, update.effective_user
        replied = message.reply_to_message if message is not None else None
        if message is None or user is None or replied is None or not message.text:
            return  # operators talking among themselves
        try:
            chat_id = await self.desk.chat_of(replied.message_id)
            if chat_id is None:
                return
            await self.desk.operator_replying(chat_id, user.full_name)  # may take a released chat back
        except StoreUnavailable as exc:
            await self._tell_operators(context.bot, SupportTexts.UNDELIVERED.format(chat="?", error=exc))
            return
        try:
            await send_text(context.bot, chat_id, f"👤 {user.first_name}: {message.text}")
        except TelegramError as exc:
            await self._tell_operators(context.bot, SupportTexts.UNDELIVERED.format(chat=chat_id, error=exc))
            return
        turn = Turn(Role.ASSISTANT, message.text, user_id=user.id, author=f"{user.first_name} (operator)")
        try:
            await self.desk.operator_replied(chat_id, turn, message.message_id)
        except StoreUnavailable as exc:
            log.warning("the operator's reply to chat %s was sent but not linked: %s", chat_id, exc)

    async def release(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/release replying to a relayed message, or /release <chat id>: the bot answers that chat again."""
        message = update.effective_message
        if message is None:
            return
        try:
            chat_id = await self._release_target(message.reply_to_message, context.args or [])
            if chat_id is None:
                await self._tell_operators(context.bot, SupportTexts.RELEASE_USAGE)
                return
            ended = await self.desk.release(chat_id)
        except StoreUnavailable as exc:
            await self._tell_operators(context.bot, f"⚠️ The handoff store is unreachable: {exc}")
            return
        if ended is None:
            await self._tell_operators(context.bot, SupportTexts.NOT_HANDED_OFF.format(chat=chat_id))
            return
        await self._tell_operators(context.bot, SupportTexts.RELEASED.format(chat=chat_id, name=ended.name))
        with contextlib.suppress(TelegramError):
            await send_text(context.bot, chat_id, HandoffTexts.RELEASED)

    async def _release_target(self, replied: object, args: list[str]) -> int | None:
        if args:
            try:
                return int(args[0])
            except ValueError:
                return None
        message_id = getattr(replied, "message_id", None)
        return await self.desk.chat_of(message_id) if isinstance(message_id, int) else None

    async def _tell_operators(self, bot: Bot, text: str) -> None:
        if self.operator_chat_id is not None:
            try:
                await send_text(bot, self.operator_chat_id, text)
            except TelegramError as exc:
                log.warning("could not write to the operators' chat: %s", exc)

    # -- timeouts ---------------------------------------------------------------------------------
    def start_sweeper(self, bot: Bot) -> None:
        """Hand timed-out chats back to the bot, checking about ten times per timeout (at most every 30 s)."""
        if self.operator_chat_id is None or self._sweeper is not None:
            return
        every = min(30.0, max(0.1, self.desk.timeout_seconds / 10))
        self._sweeper = asyncio.create_task(self._sweep_forever(bot, every), name="handoff-timeouts")

    async def stop_sweeper(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep_forever(self, bot: Bot, every: float) -> None:
        while True:
            try:
                await self.sweep(bot)
            except Exception:  # one bad record or a Telegram hiccup must not end the timeouts for good
                log.exception("handoff timeout sweep failed; trying again in %.0f s", every)
            await asyncio.sleep(every)

    async def sweep(self, bot: Bot) -> None:
        try:
            expired = await self.desk.expired()
        except StoreUnavailable as exc:
            log.warning("handoff timeouts not checked: %s", exc)
            return
        minutes = self.desk.timeout_seconds / 60
        for handoff in expired:
            log.info("chat %s returns to the bot: no operator reply in time", handoff.chat_id)
            name = handoff.name or "customer"
            await self._tell_operators(
                bot, SupportTexts.TIMED_OUT.format(chat=handoff.chat_id, name=name, minutes=round(minutes, 2))
            )
            try:
                await send_text(bot, handoff.chat_id, HandoffTexts.TIMED_OUT)
            except TelegramError as exc:
                log.info("could not tell chat %s it is back with the bot: %s", handoff.chat_id, exc)
