"""`bot run`: the bot's lifecycle on Telegram, by long polling or webhook, with graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from urllib.parse import urlsplit

from telegram import BotCommand
from telegram.error import InvalidToken, TelegramError
from telegram.ext import Application

from bot.chat.gate import Gate
from bot.chat.service import ChatService
from bot.config import TelegramSettings
from bot.core.errors import ConfigError
from bot.metrics import Metrics
from bot.transports.health import HealthServer
from bot.transports.telegram.application import ALLOWED_UPDATES, build_application
from bot.transports.telegram.handlers import COMMANDS, Handlers
from bot.transports.telegram.webhook import WebhookServer

__all__ = ["serve"]

log = logging.getLogger(__name__)


async def serve(
    settings: TelegramSettings,
    service: ChatService,
    gate: Gate,
    *,
    stop: asyncio.Event | None = None,
    metrics: Metrics | None = None,
    health: HealthServer | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (or `stop`), then finish replies in progress within the grace period.

    Returns the process exit code: 0 after a requested stop, 1 after a fatal error such as a Conflict.
    """
    if settings.bot_token is None:
        raise ConfigError(
            "invalid setting TELEGRAM_BOT_TOKEN: required by `bot run` (create a bot with @BotFather)"
        )
    stop = stop or asyncio.Event()
    fatal: list[str] = []

    def on_fatal(reason: str) -> None:
        if not fatal:
            log.error("%s", reason)
        fatal.append(reason)
        stop.set()

    handlers = Handlers(service, settings, gate, on_fatal=on_fatal, metrics=metrics)
    application = build_application(settings, handlers, token=settings.bot_token.get_secret_value())
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    webhook: WebhookServer | None = None
    try:
        try:
            await application.initialize()  # getMe: proves the token and learns the bot's username
        except InvalidToken as exc:
            raise ConfigError(
                "invalid setting TELEGRAM_BOT_TOKEN: Telegram rejected the token (check it with @BotFather)"
            ) from exc
        log.info("connected to Telegram as @%s", application.bot.username)
        await application.bot.set_my_commands([BotCommand(name, text) for name, text in COMMANDS])
        await application.start()
        if handlers.support is not None:
            handlers.support.start_sweeper(application.bot)  # hands timed-out handoffs back to the bot
        if health is not None:
            health.start()
        if settings.webhook_url:
            webhook = await _start_webhook(settings, application)
        else:
            assert application.updater is not None
            await application.updater.start_polling(
                allowed_updates=ALLOWED_UPDATES, error_callback=handlers.polling_error
            )
            log.info("receiving updates by long polling")
        await stop.wait()
        log.info(
            "stopping: no new updates; waiting up to %.0f s for replies in progress",
            settings.shutdown_grace_seconds,
        )
        if webhook is not None:
            await webhook.stop()
        elif application.updater is not None and application.updater.running:
            await application.updater.stop()
        await _drain(handlers, settings.shutdown_grace_seconds)
        if handlers.support is not None:
            await handlers.support.stop_sweeper()
        if health is not None:
            await health.stop()
        if application.running:
            await application.stop()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        try:
            await application.shutdown()
        except (TelegramError, RuntimeError) as exc:
            log.debug("shutdown: %s", exc)
    return 1 if fatal else 0


async def _start_webhook(settings: TelegramSettings, application: Application) -> WebhookServer:  # type: ignore[type-arg]
    assert settings.webhook_url is not None and settings.webhook_secret is not None
    secret = settings.webhook_secret.get_secret_value()
    server = WebhookServer(
        application=application,
        secret=secret,
        path=urlsplit(settings.webhook_url).path or "/",
        grace=settings.shutdown_grace_seconds,
    )
    server.start(settings.webhook_listen, settings.webhook_port)
    bot = application.bot
    await bot.set_webhook(settings.webhook_url, secret_token=secret, allowed_updates=ALLOWED_UPDATES)
    log.info("receiving updates by webhook")
    return server


async def _drain(handlers: Handlers, grace: float) -> None:
    pending = {task for task in handlers.in_flight if not task.done()}
    if not pending:
        return
    _done, late = await asyncio.wait(pending, timeout=grace)
    for task in late:  # abandoned replies store nothing: the service writes history only when complete
        task.cancel()
    if late:
        log.warning("%d replies did not finish within the grace period and were abandoned", len(late))
        await asyncio.wait(late, timeout=5)
