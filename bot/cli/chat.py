"""`bot chat`: talk to the assistant in this terminal, interactively or one message per piped line."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.cli.common import Commands, setup_logging
from bot.config import Settings

__all__ = ["ORDER", "register", "run"]

ORDER = 10


def register(commands: Commands) -> argparse.ArgumentParser:
    chat = commands.add_parser("chat", help="talk to the assistant in this terminal (offline)")
    chat.add_argument(
        "--chat-id", default="terminal", help="conversation id in the store (default: terminal)"
    )
    chat.add_argument(
        "-v", "--verbose", action="store_true", help="log prompt sizes and timings to stderr (DEBUG)"
    )
    chat.add_argument(
        "--jsonl",
        action="store_true",
        help='piped: one JSON object per reply on stdout ({"text", "outcome", "sources"})',
    )
    return chat


def run(settings: Settings, args: argparse.Namespace) -> int:
    setup_logging(settings, verbose=args.verbose, quiet=True)
    return asyncio.run(_chat(settings, args.chat_id, jsonl=args.jsonl))


async def _chat(settings: Settings, chat_id: str, *, jsonl: bool = False) -> int:
    from bot.app import open_runtime
    from bot.transports.terminal import TerminalChat

    interactive = sys.stdin.isatty() and not jsonl
    if interactive:
        import readline  # noqa: F401  (line editing and history for input())

        print("Loading the model…", file=sys.stderr, flush=True)
    async with open_runtime(settings, default_redis_url="memory://", show_progress=True) as runtime:
        chat = TerminalChat(
            runtime.service,
            chat_id=chat_id,
            out=sys.stdout,
            read_line=input,
            interactive=interactive,
            jsonl=jsonl,
        )
        await chat.run()
    return 0
