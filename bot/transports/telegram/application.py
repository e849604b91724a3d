"""Assemble the python-telegram-bot Application: builder, rate limiter, handlers, error handler."""

from __future__ import annotations

from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.config import TelegramSettings
from bot.transports.telegram.handlers import Handlers

__all__ = ["ALLOWED_UPDATES", "build_application"]

# Only what the bot handles is fetched: edited messages, channel posts and the rest never arrive.
ALLOWED_UPDATES = ["message", "callback_query"]


def build_application(settings: TelegramSettings, handlers: Handlers, *, token: str) -> Application:  # type: ignore[type-arg]
    base_url = settings.api_base_url
    file_url = base_url[: -len("/bot")] + "/file/bot" if base_url.endswith("/bot") else base_url
    builder = (
        ApplicationBuilder()
        .token(token)
        .base_url(base_url)
        .base_file_url(file_url)
        .rate_limiter(AIORateLimiter())  # paces outgoing calls within Telegram's per-chat and global limits
        .concurrent_updates(True)  # chats are served concurrently; the service keeps each chat in order
        .connect_timeout(settings.request_timeout_seconds)
        .read_timeout(settings.request_timeout_seconds)
        .write_timeout(settings.request_timeout_seconds)
    )
    if settings.webhook_url:
        builder = builder.updater(None)
    application = builder.build()
    message = filters.UpdateType.MESSAGE
    application.add_handlers(
        [
            CommandHandler("start", handlers.start, filters=message),
            CommandHandler("help", handlers.help, filters=message),
            CommandHandler(["reset", "new"], handlers.reset, filters=message),
            CommandHandler("reload", handlers.reload, filters=message),  # admins: re-read KB_PATH
            *_support_handlers(handlers),
            MessageHandler(message & filters.COMMAND, handlers.unknown_command),
            MessageHandler(message & filters.TEXT & ~filters.COMMAND, handlers.text),
            MessageHandler(message & filters.ChatType.PRIVATE & ~filters.TEXT, handlers.unsupported),
        ]
    )
    application.add_error_handler(handlers.error)
    return application


def _support_handlers(handlers: Handlers) -> list[BaseHandler]:  # type: ignore[type-arg]
    """/operator, /stats, the feedback buttons, and the operators' group (ahead of the customers' handlers,
    so nothing said there is taken for a question to the bot)."""
    support = handlers.support
    if support is None:
        return []
    message = filters.UpdateType.MESSAGE
    found: list[BaseHandler] = []  # type: ignore[type-arg]
    if support.operator_chat_id is not None:
        operators = message & filters.Chat(chat_id=support.operator_chat_id)
        found += [
            CommandHandler("release", support.release, filters=operators),
            MessageHandler(operators & ~filters.COMMAND, support.operator_message),
        ]
    found += [
        CommandHandler("operator", support.operator, filters=message),
        CommandHandler("stats", support.stats, filters=message),
        CallbackQueryHandler(support.feedback, pattern=r"^fb\d*:"),
    ]
    return found
