"""`bot eval chat`: multi-turn conversations through the service, checked and scored (bot_dev.chat_eval)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bot.cli.common import Commands, positive, setup_logging
from bot.config import Settings

__all__ = ["ORDER", "register", "run"]

ORDER = 75


def register(commands: Commands) -> argparse.ArgumentParser:
    evaluate = commands.add_parser("eval", help="evaluate answer quality")
    evals = evaluate.add_subparsers(dest="eval_command", required=True, metavar="EVAL_COMMAND")
    chat = evals.add_parser("chat", help="run multi-turn conversations through the service; score them")
    chat.add_argument("conversations", type=Path, help="JSONL conversations (tests/data/chat_README.md)")
    chat.add_argument("--json", type=Path, metavar="OUT", help="write every reply and its checks here")
    chat.add_argument(
        "--concurrency", type=positive(int), default=12, help="conversations at once (default: 12)"
    )
    return evaluate


def run(settings: Settings, args: argparse.Namespace) -> int:
    from bot_dev.chat_eval import eval_chat

    setup_logging(settings)
    return asyncio.run(eval_chat(settings, args.conversations, args.json, concurrency=args.concurrency))
