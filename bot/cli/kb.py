"""`bot kb index` builds (or checks) the knowledge base's saved index, with the questions the model
writes for its passages (KB_DOC2QUERY); `bot kb eval` scores answers to a
JSONL of questions through retrieval, the model and verification."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from bot.cli.common import Commands, fail, setup_logging
from bot.config import Settings
from bot.core.errors import ConfigError

__all__ = ["ORDER", "register", "run"]

ORDER = 70


def register(commands: Commands) -> argparse.ArgumentParser:
    kb = commands.add_parser("kb", help="the knowledge base (KB_PATH): build its index, evaluate answers")
    kb_commands = kb.add_subparsers(dest="kb_command", required=True, metavar="KB_COMMAND")
    kb_commands.add_parser("index", help="read KB_PATH and build its saved index (or check it is current)")
    kb_eval = kb_commands.add_parser(
        "eval", help="answer a JSONL of questions through retrieval, the model and verification; score it"
    )
    kb_eval.add_argument("questions", type=Path, help='JSONL lines of {"question": ..., "expected": [...]}')
    kb_eval.add_argument("--json", type=Path, metavar="OUT", help="write every answer and the summary here")
    return kb


def run(settings: Settings, args: argparse.Namespace) -> int:
    setup_logging(settings)
    if settings.kb.path is None:
        raise ConfigError("invalid setting KB_PATH: `bot kb` needs it (for example KB_PATH=examples/kb)")
    if args.kb_command == "index":
        return asyncio.run(_index(settings))
    from bot_dev.kb_eval import read_questions

    try:
        questions = read_questions(args.questions)
    except (OSError, ValueError) as exc:
        return fail(f"cannot read the questions: {exc}")
    report = asyncio.run(_evaluate(settings, questions))
    for name, value in report.summary().items():
        print(f"{name}: {value}")
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_dict(), ensure_ascii=False, indent=1))
        print(f"wrote {args.json}")
    return 0


async def _index(settings: Settings) -> int:
    from bot.app import add_questions, build_engine, build_knowledge
    from bot.metrics import Metrics

    knowledge = await build_knowledge(settings)
    assert knowledge is not None  # KB_PATH is set
    if knowledge.questions and not knowledge.has_questions:  # KB_DOC2QUERY: the model writes them once
        engine, tokenizer, _ = await build_engine(settings, Metrics(), show_progress=True)
        try:
            await add_questions(knowledge, engine, tokenizer, show_progress=True)
        finally:
            await engine.aclose()
    print(knowledge.summary)
    return 0


async def _evaluate(settings: Settings, questions: list[Any]) -> Any:
    from bot.app import open_runtime
    from bot.chat.service import Message
    from bot_dev.kb_eval import DRAFT_RESULTS, evaluate

    # history and counters of the evaluation's chats stay in this process, never in a production Redis
    local = settings.model_copy(update={"redis": settings.redis.model_copy(update={"url": "memory://"})})
    async with open_runtime(local, show_progress=True) as runtime:
        assert runtime.knowledge is not None

        async def answer(number: int, question: str) -> Any:
            return await runtime.service.respond(
                Message(chat_id=f"kb-eval-{number}", text=question)
            ).outcome()

        registry = runtime.metrics.registry

        def drafts() -> dict[str, float]:
            return {
                result: registry.get_sample_value("bot_kb_drafts_total", {"result": result}) or 0.0
                for result in DRAFT_RESULTS
            }

        return await evaluate(runtime.knowledge, questions, answer, drafts)
