"""`bot run`: the bot on Telegram (long polling, or a webhook when TELEGRAM_WEBHOOK_URL is set)."""

from __future__ import annotations

import argparse
import asyncio

from bot.cli.common import Commands, setup_logging
from bot.config import Settings
from bot.core.errors import ConfigError

__all__ = ["ORDER", "register", "run"]

ORDER = 20


def register(commands: Commands) -> argparse.ArgumentParser:
    return commands.add_parser("run", help="run the bot on Telegram (long polling, or webhook if configured)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    setup_logging(settings)
    return asyncio.run(_run(settings))


async def _run(settings: Settings) -> int:
    from bot.app import open_runtime
    from bot.transports.telegram.runner import serve

    if settings.telegram.bot_token is None:  # before the model loads, which takes a while
        raise ConfigError(
            "invalid setting TELEGRAM_BOT_TOKEN: required by `bot run` (create a bot with @BotFather)"
        )
    async with open_runtime(settings, health=True) as runtime:
        return await serve(
            settings.telegram,
            runtime.service,
            runtime.gate,
            metrics=runtime.metrics,
            inboxes=runtime.state.inboxes,
            lease_seconds=settings.redis.lease_seconds,
        )
