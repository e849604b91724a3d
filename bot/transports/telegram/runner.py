"""`bot run`: the bot's lifecycle on Telegram, by long polling or webhook, with graceful shutdown.

Polling goes through the update inbox (`inbox.py`): an update is stored before Telegram is told it was
received, so one that is not answered before a stop or a crash is answered by the next process. Webhook
mode needs no inbox (Telegram keeps an update until its request is answered), but runs the same loop,
so whatever a polling run left behind is still answered after a switch to webhooks.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from telegram import BotCommand
from telegram.error import InvalidToken, TelegramError
from telegram.ext import Application, Updater

from bot.chat.gate import Gate
from bot.chat.service import ChatService
from bot.config import TelegramSettings
from bot.core.errors import ConfigError
from bot.metrics import Metrics
from bot.storage.inbox import InboxFactory
from bot.transports.health import HealthServer
from bot.transports.telegram.application import ALLOWED_UPDATES, build_application
from bot.transports.telegram.handlers import COMMANDS, Handlers
from bot.transports.telegram.inbox import UpdateInbox
from bot.transports.telegram.webhook import WebhookServer

__all__ = ["serve"]

log = logging.getLogger(__name__)


@dataclass
class _Run:
    """What one `serve` call started, so shutdown can stop exactly that, in reverse order."""

    settings: TelegramSettings
    application: Application  # type: ignore[type-arg]
    handlers: Handlers
    inbox: UpdateInbox | None = None
    updater: Updater | None = None
    webhook: WebhookServer | None = None
    health: HealthServer | None = None
    fatal: list[str] = field(default_factory=list)


async def serve(
    settings: TelegramSettings,
    service: ChatService,
    gate: Gate,
    *,
    stop: asyncio.Event | None = None,
    metrics: Metrics | None = None,
    health: HealthServer | None = None,
    inboxes: InboxFactory | None = None,
    lease_seconds: float = 15.0,
) -> int:
    """Run until SIGTERM/SIGINT (or `stop`), then finish replies in progress within the grace period.

    `inboxes` gives the bot's update inbox (without one, updates are answered from memory and those
    not answered before a stop or crash are lost). Returns the exit code: 0 after a requested stop,
    1 after a fatal error such as a Conflict.
    """
    if settings.bot_token is None:
        raise ConfigError(
            "invalid setting TELEGRAM_BOT_TOKEN: required by `bot run` (create a bot with @BotFather)"
        )
    stop = stop or asyncio.Event()
    run = _prepare(settings, service, gate, stop, metrics, health)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await _connect(run.application)
        await _start(run, inboxes, lease_seconds)
        await stop.wait()
        await _stop(run)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        try:
            await run.application.shutdown()
        except (TelegramError, RuntimeError) as exc:
            log.debug("shutdown: %s", exc)
    return 1 if run.fatal else 0


def _prepare(
    settings: TelegramSettings,
    service: ChatService,
    gate: Gate,
    stop: asyncio.Event,
    metrics: Metrics | None,
    health: HealthServer | None,
) -> _Run:
    fatal: list[str] = []

    def on_fatal(reason: str) -> None:
        if not fatal:
            log.error("%s", reason)
        fatal.append(reason)
        stop.set()

    assert settings.bot_token is not None
    handlers = Handlers(service, settings, gate, on_fatal=on_fatal, metrics=metrics)
    application = build_application(settings, handlers, token=settings.bot_token.get_secret_value())
    return _Run(settings, application, handlers, health=health, fatal=fatal)


async def _connect(application: Application) -> None:  # type: ignore[type-arg]
    try:
        await application.initialize()  # getMe: proves the token and learns the bot's username
    except InvalidToken as exc:
        raise ConfigError(
            "invalid setting TELEGRAM_BOT_TOKEN: Telegram rejected the token (check it with @BotFather)"
        ) from exc
    log.info("connected to Telegram as @%s", application.bot.username)
    await application.bot.set_my_commands([BotCommand(name, text) for name, text in COMMANDS])


async def _start(run: _Run, inboxes: InboxFactory | None, lease_seconds: float) -> None:
    application, settings = run.application, run.settings
    await application.start()
    if run.handlers.support is not None:
        run.handlers.support.start_sweeper(application.bot)  # hands timed-out handoffs back to the bot
    if run.health is not None:
        run.health.start()
    run.inbox = UpdateInbox(
        inboxes(application.bot.id) if inboxes is not None else None,
        application,
        concurrency=settings.max_concurrent_updates,
        lease_seconds=lease_seconds,
    )
    run.inbox.start()
    if settings.webhook_url:
        run.webhook = await _start_webhook(settings, application)
        return
    run.updater = Updater(application.bot, update_queue=run.inbox)  # type: ignore[arg-type]
    await run.updater.initialize()
    await run.updater.start_polling(
        allowed_updates=ALLOWED_UPDATES, error_callback=run.handlers.polling_error
    )
    log.info("receiving updates by long polling")


async def _stop(run: _Run) -> None:
    grace = run.settings.shutdown_grace_seconds
    log.info("stopping: no new updates; waiting up to %.0f s for replies in progress", grace)
    if run.webhook is not None:
        await run.webhook.stop()
    if run.updater is not None and run.updater.running:
        await run.updater.stop()  # its last getUpdates confirms only updates already in the inbox
        # (no updater.shutdown(): it would close the bot the replies in hand still send with)
    if run.inbox is not None:
        await run.inbox.stop(grace)
    await _drain(run.handlers, grace)
    if run.handlers.support is not None:
        await run.handlers.support.stop_sweeper()
    if run.health is not None:
        await run.health.stop()
    if run.application.running:
        await run.application.stop()


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
    """Replies the webhook server no longer waits for (it stops at its own grace period)."""
    pending = {task for task in handlers.in_flight if not task.done()}
    if not pending:
        return
    _done, late = await asyncio.wait(pending, timeout=grace)
    for task in late:  # abandoned replies store nothing: the service writes history only when complete
        task.cancel()
    if late:
        log.warning("%d replies did not finish within the grace period and were abandoned", len(late))
        await asyncio.wait(late, timeout=5)
