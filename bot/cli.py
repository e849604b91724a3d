"""The `bot` command. Reads the settings once and hands each sub-command what it needs."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bot import __version__
from bot.config import Settings, load_settings
from bot.errors import ConfigError, ModelLoadError, StoreUnavailable

__all__ = ["main"]

EXIT_CONFIG = 2
EXIT_RUNTIME = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bot", description="A Telegram customer-support assistant.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--env-file", default=".env", help="read settings from this file too (default: .env)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    chat = commands.add_parser("chat", help="talk to the assistant in this terminal (offline)")
    chat.add_argument(
        "--chat-id", default="terminal", help="conversation id in the store (default: terminal)"
    )
    chat.add_argument(
        "-v", "--verbose", action="store_true", help="log prompt sizes and timings to stderr (DEBUG)"
    )

    commands.add_parser("run", help="run the bot on Telegram (long polling, or webhook if configured)")
    evaluate = commands.add_parser(
        "safety-eval", help="measure the input safety checks on a labelled JSONL corpus"
    )
    evaluate.add_argument(
        "corpus", type=Path, help='JSONL lines of {"text": ..., "label": injection|pii|toxic|benign}'
    )
    evaluate.add_argument("--json", type=Path, metavar="OUT", help="write every verdict and the summary here")

    load = commands.add_parser(
        "loadtest", help="simulate many users against the bot on loopback; prove one reply per message"
    )
    load.add_argument("--users", type=_positive(int), default=50, help="simulated users (default: 50)")
    load.add_argument(
        "--minutes", type=_positive(float), default=5.0, help="how long users keep writing (default: 5)"
    )
    load.add_argument(
        "--think",
        type=_positive(float, zero=True),
        default=2.0,
        metavar="SECONDS",
        help="mean pause between a reply and the user's next message (default: 2.0)",
    )
    load.add_argument(
        "--reply-timeout",
        type=_positive(float),
        default=180.0,
        metavar="SECONDS",
        help="a reply not there after this long is lost (default: 180)",
    )
    load.add_argument("--json", type=Path, metavar="OUT", help="write every figure here as one JSON object")

    config = commands.add_parser("config", help="print the effective settings, secrets masked")
    config.add_argument("--example", action="store_true", help="print a documented .env template instead")
    return parser


def _positive(kind: Callable[[str], float], *, zero: bool = False) -> Callable[[str], Any]:
    """An argparse type: a number above zero (or at least zero), with a one-line error otherwise."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"must be {'at least' if zero else 'more than'} 0")
        return value

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "config" and args.example:
        from bot.config import example_env

        print(example_env(), end="")
        return 0
    try:
        settings = load_settings(args.env_file)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"bot: {line}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "config":
        for name, value in settings.effective():
            print(f"{name}={value}")
        return 0
    if args.command == "safety-eval":
        return _safety_eval(settings, args.corpus, args.json)
    _setup_logging(settings, verbose=getattr(args, "verbose", False), quiet=args.command == "chat")
    try:
        if args.command == "chat":
            return asyncio.run(_chat(settings, args.chat_id))
        if args.command == "run":
            return asyncio.run(_run(settings))
        if args.command == "loadtest":
            return asyncio.run(_loadtest(settings, args))
    except ConfigError as exc:
        print(f"bot: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (ModelLoadError, StoreUnavailable) as exc:
        print(f"bot: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command}")


def _setup_logging(settings: Settings, *, verbose: bool, quiet: bool) -> None:
    """`quiet`: the terminal chat shows INFO lines only with --verbose (they would mix with replies)."""
    from bot.logs import configure_logging

    token = settings.telegram.bot_token
    level = "WARNING" if quiet and settings.log.level == "INFO" and not verbose else settings.log.level
    configure_logging(
        level,
        verbose=verbose,
        secrets=[token.get_secret_value()] if token else [],
        json_format=settings.log.format == "json",
    )


async def _chat(settings: Settings, chat_id: str) -> int:
    from bot.app import build_app
    from bot.terminal import TerminalChat

    interactive = sys.stdin.isatty()
    if interactive:
        import readline  # noqa: F401  (line editing and history for input())

        print("Loading the model…", file=sys.stderr, flush=True)
    app = await build_app(settings, default_redis_url="memory://", show_progress=True)
    try:
        chat = TerminalChat(
            app.service, chat_id=chat_id, out=sys.stdout, read_line=input, interactive=interactive
        )
        await chat.run()
    finally:
        await app.aclose()
    return 0


async def _run(settings: Settings) -> int:
    from bot.app import DEFAULT_REDIS_URL, build_app
    from bot.observability import HealthServer
    from bot.telegram.runner import serve

    if settings.telegram.bot_token is None:
        raise ConfigError(
            "invalid setting TELEGRAM_BOT_TOKEN: required by `bot run` (create a bot with @BotFather)"
        )
    app = await build_app(settings, default_redis_url=DEFAULT_REDIS_URL)
    try:
        return await serve(
            settings.telegram,
            app.service,
            app.gate,
            metrics=app.metrics,
            health=HealthServer(
                app.metrics, app.ready, listen=settings.metrics.listen, port=settings.metrics.port
            )
            if settings.metrics.port
            else None,
        )
    finally:
        await app.aclose()


async def _loadtest(settings: Settings, args: argparse.Namespace) -> int:
    from rich.console import Console

    from bot.loadtest import run_loadtest

    report = await run_loadtest(
        settings, users=args.users, minutes=args.minutes, think=args.think, reply_timeout=args.reply_timeout
    )
    Console().print(report.table())
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_dict(), indent=1))
    return 0 if report.ok else EXIT_RUNTIME


def _safety_eval(settings: Settings, corpus: Path, out: Path | None) -> int:
    from rich.console import Console
    from rich.table import Table

    from bot.app import build_safety
    from bot.safety.evaluation import evaluate, read_corpus

    try:
        rows = read_corpus(corpus)
    except (OSError, ValueError) as exc:
        print(f"bot: cannot read the corpus: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    pipeline, _prompt = build_safety(settings)
    result = evaluate(pipeline, rows)
    summary = result.summary
    table = Table(title=f"Input safety checks on {corpus} ({summary['messages']} messages)")
    for column in ("label", "messages", "detected", "false positives", "p50 ms", "p95 ms"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, figures in summary["labels"].items():
        detected = figures.get("detection_rate")
        false_positives = figures.get("false_positive_rate")
        table.add_row(
            label,
            str(figures["messages"]),
            f"{detected:.1%}" if detected is not None else "",
            f"{false_positives:.1%}" if false_positives is not None else "",
            f"{figures['p50_ms']:.3f}",
            f"{figures['p95_ms']:.3f}",
        )
    table.add_row(
        "all", str(summary["messages"]), "", "", f"{summary['p50_ms']:.3f}", f"{summary['p95_ms']:.3f}"
    )
    console = Console()
    console.print(table)
    if summary["pii_redaction_rate"]:
        rates = ", ".join(f"{kind} {rate:.1%}" for kind, rate in summary["pii_redaction_rate"].items())
        console.print(f"PII redacted by kind: {rates}")
    if out is not None:
        out.write_text(json.dumps({"results": result.rows, "summary": summary}, ensure_ascii=False, indent=1))
        console.print(f"wrote {out}")
    return 0
