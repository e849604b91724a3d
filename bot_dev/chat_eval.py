"""`bot eval chat`: multi-turn conversations through the real service, and the checks a customer would make.

Each line of the file is {"id", "category", "turns": [{"user": ..., "expect": {...}}]} (tests/data/
chat_README.md). Every user turn goes through `ChatService.respond` exactly as the terminal transport sends
it, one chat per conversation, several conversations at once so the batching engine is kept busy. A
conversation passes when every check on every reply passes: the turn's `any` / `none` regexes, `no_refusal`
(the same detector best-of-n ranking uses), and on every reply: not empty and different from every earlier
reply of the conversation.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bot.chat.refusals import looks_like_refusal

__all__ = [
    "CATEGORIES",
    "ERROR_MARK",
    "Conversation",
    "EvalTurn",
    "Report",
    "check_reply",
    "read_conversations",
    "run_conversations",
]

ERROR_MARK = "(error: "  # a reply that never came (a timeout under load, a busy engine) starts so
CATEGORIES = ("memory", "howto", "smalltalk", "instructions", "refusal", "repetition")
_EXPECT_KEYS = {"any", "none", "no_refusal", "distinct"}

# (chat id, message) -> the reply's text as the customer would see it
Respond = Callable[[str, str], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class EvalTurn:
    user: str
    expect: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    category: str
    turns: tuple[EvalTurn, ...]


@dataclass(slots=True)
class TurnResult:
    user: str
    reply: str
    seconds: float
    checked: bool
    failures: list[str]


@dataclass(slots=True)
class ConversationResult:
    id: str
    category: str
    turns: list[TurnResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not any(turn.failures for turn in self.turns)


def read_conversations(path: Path) -> list[Conversation]:
    """The conversation file; a bad line raises ValueError naming the line and what is wrong."""
    conversations, seen = [], set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            conversation = _conversation(json.loads(line))
        except (ValueError, TypeError, KeyError, re.error) as exc:
            raise ValueError(f"{path}:{number}: {exc}") from None
        if conversation.id in seen:
            raise ValueError(f"{path}:{number}: duplicate id {conversation.id!r}")
        seen.add(conversation.id)
        conversations.append(conversation)
    if not conversations:
        raise ValueError(f"{path}: no conversations")
    return conversations


def _conversation(data: Any) -> Conversation:
    if not isinstance(data, dict) or not isinstance(data.get("turns"), list) or not data["turns"]:
        raise ValueError('expected {"id": ..., "category": ..., "turns": [{"user": ...}, ...]}')
    turns = []
    for turn in data["turns"]:
        expect = turn.get("expect")
        if expect is not None:
            unknown = set(expect) - _EXPECT_KEYS
            if unknown:
                raise ValueError(f"unknown expect key(s) {sorted(unknown)}; use {sorted(_EXPECT_KEYS)}")
            for pattern in [*expect.get("any", []), *expect.get("none", [])]:
                re.compile(pattern)
        if not isinstance(turn["user"], str) or not turn["user"].strip():
            raise ValueError("every turn needs a non-empty 'user' message")
        turns.append(EvalTurn(turn["user"], expect))
    return Conversation(str(data["id"]), str(data.get("category", "other")), tuple(turns))


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def check_reply(reply: str, expect: dict[str, Any] | None, earlier: Sequence[str]) -> list[str]:
    """What is wrong with `reply` (empty: it passes); `earlier` are the conversation's previous replies."""
    failures = []
    if not reply.strip():
        failures.append("empty")
    elif _normal(reply) in {_normal(previous) for previous in earlier}:
        failures.append("repeated")
    expect = expect or {}
    patterns = expect.get("any", [])
    if patterns and not any(re.search(pattern, reply) for pattern in patterns):
        failures.append("any")
    failures += [f"none:{pattern}" for pattern in expect.get("none", []) if re.search(pattern, reply)]
    if expect.get("no_refusal") and looks_like_refusal(reply):
        failures.append("refusal")
    return failures


async def _run_one(conversation: Conversation, respond: Respond, prefix: str) -> ConversationResult:
    result = ConversationResult(conversation.id, conversation.category)
    replies: list[str] = []
    for turn in conversation.turns:
        started = time.monotonic()
        reply = await respond(f"{prefix}{conversation.id}", turn.user)
        seconds = time.monotonic() - started
        failures = check_reply(reply, turn.expect, replies)
        result.turns.append(TurnResult(turn.user, reply, seconds, turn.expect is not None, failures))
        replies.append(reply)
    return result


async def run_conversations(
    conversations: Sequence[Conversation],
    respond: Respond,
    *,
    concurrency: int = 12,
    prefix: str = "chat-eval-",
    progress: Callable[[ConversationResult], None] | None = None,
) -> Report:
    """Every conversation, `concurrency` at a time; results in file order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(conversation: Conversation) -> ConversationResult:
        async with gate:
            result = await _run_one(conversation, respond, prefix)
        if progress is not None:
            progress(result)
        return result

    return Report(list(await asyncio.gather(*(one(c) for c in conversations))))


@dataclass(slots=True)
class Report:
    results: list[ConversationResult]

    def by_category(self) -> dict[str, tuple[int, int]]:
        """category -> (passed, conversations), in the README's order, then any others."""
        order = [*CATEGORIES, *sorted({r.category for r in self.results} - set(CATEGORIES))]
        table = {}
        for category in order:
            rows = [r for r in self.results if r.category == category]
            if rows:
                table[category] = (sum(r.passed for r in rows), len(rows))
        return table

    def summary(self) -> dict[str, Any]:
        turns = [turn for result in self.results for turn in result.turns]
        checked = [turn for turn in turns if turn.checked]
        seconds = [turn.seconds for turn in turns]
        passed = sum(r.passed for r in self.results)
        return {
            "conversations": len(self.results),
            "passed": passed,
            "pass_rate": _share(passed, len(self.results)),
            "by_category": {
                name: {"passed": ok, "conversations": n, "pass_rate": _share(ok, n)}
                for name, (ok, n) in self.by_category().items()
            },
            "replies": len(turns),
            "checked_replies": len(checked),
            "checked_pass_rate": _share(sum(not t.failures for t in checked), len(checked)),
            "refusals": sum(looks_like_refusal(t.reply) for t in turns),
            "refusal_rate": _share(sum(looks_like_refusal(t.reply) for t in turns), len(turns)),
            "errors": sum(t.reply.startswith(ERROR_MARK) for t in turns),
            "repeated_or_empty": sum(bool({"repeated", "empty"} & set(t.failures)) for t in turns),
            "reply_seconds_p50": round(statistics.median(seconds), 3) if seconds else 0.0,
            "reply_seconds_mean": round(statistics.fmean(seconds), 3) if seconds else 0.0,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "conversations": [{**asdict(r), "passed": r.passed} for r in self.results],
        }


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def print_report(report: Report, title: str) -> None:
    """The pass rate by category, then the figures the targets are stated in."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("category", "passed", "conversations", "pass rate"):
        table.add_column(column, justify="left" if column == "category" else "right")
    for category, (ok, n) in report.by_category().items():
        table.add_row(category, str(ok), str(n), f"{_share(ok, n):.1%}")
    summary = report.summary()
    table.add_row("all", str(summary["passed"]), str(summary["conversations"]), f"{summary['pass_rate']:.1%}")
    console = Console()
    console.print(table)
    console.print(
        f"replies {summary['replies']}, checked replies passing {summary['checked_pass_rate']:.1%}, "
        f"refusals {summary['refusals']} ({summary['refusal_rate']:.1%}), repeated or empty "
        f"{summary['repeated_or_empty']}, errors {summary['errors']}, "
        f"median reply {summary['reply_seconds_p50']:.2f} s"
    )


def _progress(result: ConversationResult) -> None:
    import sys

    failures = [f"turn {n}: {','.join(t.failures)}" for n, t in enumerate(result.turns, 1) if t.failures]
    print(f"{result.id}: {'pass' if result.passed else 'FAIL ' + '; '.join(failures)}", file=sys.stderr)


async def eval_chat(settings: Any, path: Path, out: Path | None, *, concurrency: int) -> int:
    """`bot eval chat`: build the service as `bot chat` does (history in this process), run, report."""
    import sys

    from bot.app import build_app
    from bot.chat.service import Message
    from bot.core.errors import BotError
    from bot.core.outcome import OutcomeKind

    failed = {OutcomeKind.BUSY, OutcomeKind.TIMEOUT, OutcomeKind.TOO_LONG, OutcomeKind.ERROR}

    try:  # a broken file fails before the model loads
        conversations = read_conversations(path)
    except (OSError, ValueError) as exc:
        print(f"bot: cannot read the conversations: {exc}", file=sys.stderr)
        return 1
    local = settings.model_copy(update={"redis": settings.redis.model_copy(update={"url": "memory://"})})
    app = await build_app(local, default_redis_url="memory://", show_progress=True)

    async def respond(chat_id: str, text: str) -> str:
        try:  # what the terminal transport would print
            outcome = await app.service.respond(Message(chat_id, text)).outcome()
        except BotError as exc:
            return f"{ERROR_MARK}{type(exc).__name__}: {exc})"
        if outcome.kind in failed:
            return f"{ERROR_MARK}{outcome.kind.value}: {outcome.text})"
        return outcome.text

    try:
        report = await run_conversations(conversations, respond, concurrency=concurrency, progress=_progress)
    finally:
        await app.aclose()
    print_report(report, f"{path} ({len(conversations)} conversations, {settings.model.name})")
    if out is not None:
        text = json.dumps(report.as_dict(), ensure_ascii=False, indent=1)
        await asyncio.to_thread(out.write_text, text, encoding="utf-8")
        print(f"wrote {out}")
    return 0
