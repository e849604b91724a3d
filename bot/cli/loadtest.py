"""`bot loadtest`: many simulated users against the bot on loopback; exit 1 unless every message got
exactly one reply (the tool itself is `bot_dev.loadtest`)."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from bot.cli.common import EXIT_RUNTIME, Commands, positive, setup_logging
from bot.config import Settings

__all__ = ["ORDER", "register", "run"]

ORDER = 50


def register(commands: Commands) -> argparse.ArgumentParser:
    load = commands.add_parser(
        "loadtest", help="simulate many users against the bot on loopback; prove one reply per message"
    )
    load.add_argument("--users", type=positive(int), default=50, help="simulated users (default: 50)")
    load.add_argument(
        "--minutes", type=positive(float), default=5.0, help="how long users keep writing (default: 5)"
    )
    load.add_argument(
        "--think",
        type=positive(float, zero=True),
        default=2.0,
        metavar="SECONDS",
        help="mean pause between a reply and the user's next message (default: 2.0)",
    )
    load.add_argument(
        "--reply-timeout",
        type=positive(float),
        default=180.0,
        metavar="SECONDS",
        help="a reply not there after this long is lost (default: 180)",
    )
    load.add_argument("--json", type=Path, metavar="OUT", help="write every figure here as one JSON object")
    return load


def run(settings: Settings, args: argparse.Namespace) -> int:
    setup_logging(settings)
    return asyncio.run(_loadtest(settings, args))


async def _loadtest(settings: Settings, args: argparse.Namespace) -> int:
    from rich.console import Console

    from bot_dev.loadtest import run_loadtest

    report = await run_loadtest(
        settings, users=args.users, minutes=args.minutes, think=args.think, reply_timeout=args.reply_timeout
    )
    Console().print(report.table())
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_dict(), indent=1))
    return 0 if report.ok else EXIT_RUNTIME
