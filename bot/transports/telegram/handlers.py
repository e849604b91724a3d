"""PTB handler callbacks. Each one parses the update, awaits the service, renders the outcome."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Callable

from telegram import Message as TgMessage
from telegram import MessageEntity, Update
from telegram.constants import ChatType
from telegram.error import Conflict, Forbidden, NetworkError, TelegramError
from telegram.ext import ContextTypes

from bot.chat.gate import Gate
from bot.chat.service import ChatService, Message
from bot.config import TelegramSettings
from bot.core.domain import ChatKind
from bot.core.errors import ConfigError, StoreUnavailable
from bot.core.outcome import Outcome, OutcomeKind
from bot.core.texts import Texts
from bot.desk.desk import SupportDesk
from bot.metrics import Metrics
from bot.transports.telegram.delivery import StreamingReply, keep_typing, send_text
from bot.transports.telegram.support import SupportHandlers

__all__ = ["COMMANDS", "Handlers", "Texts"]

log = logging.getLogger(__name__)

COMMANDS = [
    ("start", "Say hello and see what I can do"),
    ("help", "How to talk to me"),
    ("reset", "Forget this conversation and start a new one"),
    ("new", "Same as /reset"),
    ("operator", "Talk to a human colleague"),
]
GROUP_TYPES = (ChatType.GROUP, ChatType.SUPERGROUP)
CONFLICT = (
    "Telegram answered 409 Conflict: another process is receiving updates for this bot token. "
    "Run one poller per token (or use webhook mode for several replicas). Stopping."
)


class Handlers:
    """Callbacks bound to one service; `in_flight` lets shutdown wait for replies in progress."""

    def __init__(
        self,
        service: ChatService,
        settings: TelegramSettings,
        gate: Gate,
        *,
        on_fatal: Callable[[str], None],
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._service = service
        self._settings = settings
        self._gate = gate
        self._on_fatal = on_fatal
        self.in_flight: set[asyncio.Task[object]] = set()
        desk = service.desk
        self.support = SupportHandlers(desk, gate) if isinstance(desk, SupportDesk) else None

    # -- commands ---------------------------------------------------------------------------------
    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if chat_user := self._allowed(update):
            await send_text(context.bot, chat_user[0], self._settings.start_message)

    async def help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if chat_user := self._allowed(update):
            await send_text(context.bot, chat_user[0], Texts.HELP)

    async def reset(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not (chat_user := self._allowed(update)):
            return
        try:
            await self._service.reset(chat_user[0])
        except StoreUnavailable as exc:
            log.warning("reset of chat %s failed: %s", chat_user[0], exc)
            await send_text(context.bot, chat_user[0], Texts.RESET_FAILED)
            return
        await send_text(context.bot, chat_user[0], Texts.RESET)

    async def reload(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/reload (admins): re-read the knowledge base after its documents were edited."""
        if not (chat_user := self._allowed(update)):
            return
        if not self._gate.is_admin(chat_user[1]):
            await send_text(context.bot, chat_user[0], Texts.ADMINS_ONLY)
            return
        try:
            summary = await self._service.reload_knowledge()
        except ConfigError as exc:
            log.warning("knowledge base reload failed: %s", exc)
            await send_text(context.bot, chat_user[0], Texts.RELOAD_FAILED + str(exc))
            return
        await send_text(context.bot, chat_user[0], f"Reloaded the {summary}.")

    async def unknown_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if not (chat_user := self._allowed(update)) or message is None or message.text is None:
            return
        command = message.text.split()[0]
        is_private = message.chat.type == ChatType.PRIVATE
        if is_private or command.lower().endswith(f"@{context.bot.username}".lower()):
            await send_text(context.bot, chat_user[0], Texts.UNKNOWN_COMMAND)

    async def unsupported(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Stickers, photos, voice... in a private chat get one polite answer."""
        if chat_user := self._allowed(update):
            await send_text(context.bot, chat_user[0], Texts.UNSUPPORTED)

    # -- messages ---------------------------------------------------------------------------------
    async def text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self._count("text")
        message, chat, user = update.effective_message, update.effective_chat, update.effective_user
        if message is None or chat is None or user is None or not message.text:
            return
        group = chat.type in GROUP_TYPES
        text = message.text
        if group:
            if not self._addressed(message, context):
                return
            text = _without_mention(text, context.bot.username)
            if not text:
                return
        request = Message(
            chat_id=chat.id,
            text=text,
            user_id=user.id,
            author=user.full_name,
            message_id=message.message_id,
            chat_kind=ChatKind.GROUP if group else ChatKind.PRIVATE,
            delivery_id=f"tg:{context.bot.id}:{update.update_id}",
        )
        task = asyncio.current_task()
        if task is not None:
            self.in_flight.add(task)
        try:
            await self._answer(context, request, reply_to=message.message_id if group else None)
        finally:
            if task is not None:
                self.in_flight.discard(task)

    async def _answer(
        self, context: ContextTypes.DEFAULT_TYPE, request: Message, *, reply_to: int | None
    ) -> None:
        chat_id = int(request.chat_id)
        shown = StreamingReply(
            context.bot, chat_id, reply_to=reply_to, interval=self._settings.stream_interval_seconds
        )
        reply = self._service.respond(request)
        waiting = functools.partial(self._service.queue_position, chat_id)
        async with keep_typing(context.bot, chat_id, waiting=waiting, reply=shown):
            await shown.consume(reply)
            outcome = await reply.outcome()
        await self._render(context, request, shown, outcome, reply_to=reply_to)
        if outcome.handed_over and self.support is not None:  # the service handed the chat over
            await self.support.announce_chat(context.bot, chat_id)

    async def _render(
        self,
        context: ContextTypes.DEFAULT_TYPE,
        request: Message,
        shown: StreamingReply,
        outcome: Outcome,
        *,
        reply_to: int | None,
    ) -> None:
        """The answer with feedback buttons, a notice, or (while a person owns the chat) a relay to them."""
        support, chat_id = self.support, int(request.chat_id)
        if outcome.kind is OutcomeKind.HANDED_OFF:
            if support is not None:
                await support.relay(context.bot, chat_id, request.author or "", request.text)
            return
        if outcome.kind is OutcomeKind.DENIED and request.chat_kind is not ChatKind.PRIVATE:
            return  # in a group, a stranger's message is simply not for the bot
        if not outcome.text:  # a duplicate delivery, or the chat was handed over instead of answered
            return
        if not outcome.streamed and not shown.message_ids:
            await send_text(context.bot, chat_id, outcome.text, reply_to=reply_to)
            return
        # the answer; or a draft is showing and the replacement or notice takes its place
        markup = support.buttons_for(outcome) if support is not None else None
        await shown.finish(outcome.text, markup=markup)
        if support is not None and markup is not None and shown.message_ids:
            await support.remember(chat_id, shown.message_ids[-1], outcome)

    # -- errors -----------------------------------------------------------------------------------
    async def error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        error = context.error
        if self._metrics is not None and isinstance(error, TelegramError):
            self._metrics.telegram_errors.labels(type(error).__name__).inc()
        if isinstance(error, Conflict):
            self._on_fatal(CONFLICT)
        elif isinstance(error, Forbidden):
            log.info("Telegram refused a call (the user blocked the bot or removed it): %s", error)
        elif isinstance(error, NetworkError):
            log.warning("Telegram API unreachable or failing: %s: %s", type(error).__name__, error)
        elif isinstance(error, TelegramError):
            log.warning("Telegram API error: %s: %s", type(error).__name__, error)
        else:
            log.error("unexpected error while handling an update", exc_info=error)

    def polling_error(self, error: TelegramError) -> None:
        """getUpdates failures: PTB retries with backoff (up to 30 s); a Conflict is fatal."""
        if self._metrics is not None:
            self._metrics.telegram_errors.labels(type(error).__name__).inc()
        if isinstance(error, Conflict):
            self._on_fatal(CONFLICT)
        else:
            log.warning(
                "polling for updates failed (%s: %s); retrying with backoff", type(error).__name__, error
            )

    # -- helpers ----------------------------------------------------------------------------------
    def _count(self, kind: str) -> None:
        if self._metrics is not None:
            self._metrics.updates.labels(kind).inc()

    def _allowed(self, update: Update) -> tuple[int, int] | None:
        self._count("command" if update.effective_message and update.effective_message.text else "other")
        chat, user = update.effective_chat, update.effective_user
        if chat is None or user is None or not self._gate.allows(user.id, chat.id):
            return None
        return chat.id, user.id

    def _addressed(self, message: TgMessage, context: ContextTypes.DEFAULT_TYPE) -> bool:
        trigger = self._settings.group_trigger
        if trigger == "always":
            return True
        bot_user = context.bot
        for entity, value in message.parse_entities(
            [MessageEntity.MENTION, MessageEntity.TEXT_MENTION]
        ).items():
            if entity.type == MessageEntity.TEXT_MENTION and entity.user and entity.user.id == bot_user.id:
                return True
            if entity.type == MessageEntity.MENTION and value.lower() == f"@{bot_user.username}".lower():
                return True
        replied = message.reply_to_message
        return (
            trigger == "mention_or_reply"
            and replied is not None
            and replied.from_user is not None
            and replied.from_user.id == bot_user.id
        )


def _without_mention(text: str, username: str) -> str:
    return re.sub(rf"@{re.escape(username)}\b", "", text, flags=re.IGNORECASE).strip()
