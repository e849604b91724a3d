"""PTB handler callbacks. Each one parses the update, awaits the service, renders the outcome."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from telegram import Message as TgMessage
from telegram import MessageEntity, Update
from telegram.constants import ChatType
from telegram.error import Conflict, Forbidden, NetworkError, TelegramError
from telegram.ext import ContextTypes

from bot.chat.gate import Gate
from bot.chat.service import ChatService, Message
from bot.config import TelegramSettings
from bot.core.domain import ChatKind, ReplyInfo
from bot.core.errors import (
    AccessDenied,
    ConfigError,
    DuplicateDelivery,
    EngineBusy,
    GenerationError,
    GenerationTimeout,
    InputRefused,
    PromptTooLong,
    RateLimited,
    ReplyReplaced,
    StoreUnavailable,
)
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


class Texts:
    HELP = (
        "Just write your question and I will answer. In groups, mention me or reply to one of my "
        "messages.\n\n/reset or /new - start a new conversation\n/operator - talk to a human colleague\n"
        "/help - this message"
    )
    UNKNOWN_COMMAND = "I don't know that command. Send /help to see what I can do."
    UNSUPPORTED = "Sorry, I can only read text messages. Please type your question."
    RESET = "Done: I have forgotten our conversation. What can I help you with?"
    RESET_FAILED = "Sorry, I could not clear our conversation right now. Please try again in a minute."
    NOT_ALLOWED = "Sorry, this assistant is not available to you."
    TIMEOUT = "Sorry, that took me too long. Please try again, perhaps with a shorter question."
    TOO_LONG = "Your message is too long for me to read. Please shorten it and send it again."
    BUSY = "I am helping a lot of people right now. Please try again in a moment."
    FAILED = "Sorry, something went wrong on my side. Please try again."
    ADMINS_ONLY = "Only the bot's admins can reload the knowledge base."
    RELOAD_FAILED = "The knowledge base was not reloaded; the previous version is still in use. Problem: "


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
        desk = service.support
        self.support = SupportHandlers(desk, gate) if desk is not None else None

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
        reply = StreamingReply(
            context.bot, chat_id, reply_to=reply_to, interval=self._settings.stream_interval_seconds
        )
        notice: str | None = None
        info = ReplyInfo()
        try:
            waiting = functools.partial(self._service.queue_position, chat_id)
            async with keep_typing(context.bot, chat_id, waiting=waiting, reply=reply):
                text = await reply.consume(self._service.respond(request, info))
            await self._deliver(context, request, reply, text, info)
        except DuplicateDelivery:
            log.info("update %s was already answered; skipping the redelivery", request.delivery_id)
        except AccessDenied:
            log.info("user %s in chat %s is not allowed", request.user_id, chat_id)
            notice = Texts.NOT_ALLOWED if request.chat_kind is ChatKind.PRIVATE else None
        except RateLimited as exc:
            notice = _rate_limit_text(exc)
        except InputRefused as exc:
            notice = exc.text
        except ReplyReplaced as exc:  # the draft shown so far is overwritten with the replacement
            await reply.finish(exc.text)
        except GenerationTimeout:
            notice = Texts.TIMEOUT
        except PromptTooLong:
            notice = Texts.TOO_LONG
        except EngineBusy:
            notice = Texts.BUSY
        except GenerationError as exc:
            log.error("generation failed in chat %s: %s", chat_id, exc)
            notice = Texts.FAILED
        if notice and reply.message_ids:  # a draft is showing: it becomes the notice, not a leftover
            await reply.finish(notice)
        elif notice:
            await send_text(context.bot, chat_id, notice, reply_to=reply_to)
        if info.handoff_requested and self.support is not None:  # the service handed the chat over
            await self.support.announce_chat(context.bot, chat_id)

    async def _deliver(
        self,
        context: ContextTypes.DEFAULT_TYPE,
        request: Message,
        reply: StreamingReply,
        text: str,
        info: ReplyInfo,
    ) -> None:
        """The final text with feedback buttons; or, while a person owns the chat, a relay to them."""
        support = self.support
        if info.handled_by_human:
            if support is not None:
                await support.relay(context.bot, int(request.chat_id), request.author or "", request.text)
            return
        if not text:  # the service handed the chat over instead of answering
            return
        markup = support.buttons_for(info) if support is not None else None
        await reply.finish(text, markup=markup)
        if support is not None and markup is not None and reply.message_ids:
            await support.remember(int(request.chat_id), reply.message_ids[-1], info)

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


def _rate_limit_text(exc: RateLimited) -> str:
    if exc.daily:
        at = datetime.now(UTC) + timedelta(seconds=exc.retry_after)
        return f"You have reached today's message limit. You can write again after {at:%H:%M} UTC."
    seconds = max(1, round(exc.retry_after))
    return f"You are sending messages a little too fast. Please wait {seconds} seconds and try again."
