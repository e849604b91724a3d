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
from bot.core.errors import ConfigError, ModelLoadError, StoreUnavailable

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
    serve_model = commands.add_parser(
        "serve-model", help="serve the local model over an OpenAI-compatible API (SERVE_HOST:SERVE_PORT)"
    )
    serve_model.add_argument(
        "--grace",
        type=_positive(float, zero=True),
        default=20.0,
        metavar="SECONDS",
        help="on SIGTERM, let replies in progress finish this long (default: 20)",
    )
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

    report = commands.add_parser(
        "report", help="write an HTML report of support analytics (messages, reply time, feedback, questions)"
    )
    report.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    report.add_argument(
        "--days", type=_positive(int), default=7, help="how many days back, today included (default: 7)"
    )

    kb = commands.add_parser("kb", help="the knowledge base (KB_PATH): build its index, evaluate answers")
    kb_commands = kb.add_subparsers(dest="kb_command", required=True, metavar="KB_COMMAND")
    kb_commands.add_parser("index", help="read KB_PATH and build its saved index (or check it is current)")
    kb_eval = kb_commands.add_parser(
        "eval", help="answer a JSONL of questions through retrieval, the model and verification; score it"
    )
    kb_eval.add_argument("questions", type=Path, help='JSONL lines of {"question": ..., "expected": [...]}')
    kb_eval.add_argument("--json", type=Path, metavar="OUT", help="write every answer and the summary here")

    evals = commands.add_parser("eval", help="evaluate answer quality").add_subparsers(
        dest="eval_command", required=True, metavar="EVAL_COMMAND"
    )
    chat_eval = evals.add_parser("chat", help="run multi-turn conversations through the service; score them")
    chat_eval.add_argument("conversations", type=Path, help="JSONL conversations (tests/data/chat_README.md)")
    chat_eval.add_argument("--json", type=Path, metavar="OUT", help="write every reply and its checks here")
    chat_eval.add_argument(
        "--concurrency", type=_positive(int), default=12, help="conversations at once (default: 12)"
    )

    bench = commands.add_parser(
        "bench", help="benchmark the engine against naive generate and llama.cpp on scripted support chats"
    )
    bench.add_argument("--json", type=Path, metavar="PATH", help="write every figure here as JSON")
    bench.add_argument("--plot", type=Path, metavar="PATH", help="draw the charts into this PNG file")
    bench.add_argument(
        "--concurrency",
        type=_counts,
        default=(1, 4, 16),
        metavar="N,N,...",
        help="concurrent chats to measure (default: 1,4,16)",
    )
    bench.add_argument(
        "--turns", type=_positive(int), default=20, help="turns of the long conversation (default: 20)"
    )
    bench.add_argument(
        "--max-new-tokens", type=_positive(int), default=48, help="tokens per reply (default: 48)"
    )
    bench.add_argument(
        "--runners",
        type=_names,
        default=("engine", "naive", "llama.cpp"),
        metavar="NAME,...",
        help="engine, naive, llama.cpp (default: all three; llama.cpp needs the bench extra)",
    )

    config = commands.add_parser("config", help="print the effective settings, secrets masked")
    config.add_argument("--example", action="store_true", help="print a documented .env template instead")
    return parser


def _counts(text: str) -> tuple[int, ...]:
    """An argparse type: a comma-separated list of positive integers."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of numbers like 1,4,16") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("every count must be at least 1")
    return counts


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(set(names) - {"engine", "naive", "llama.cpp"})
    if unknown or not names:
        wrong = ", ".join(unknown) or repr(text)
        raise argparse.ArgumentTypeError(f"unknown runner {wrong}: choose from engine, naive, llama.cpp")
    return names


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
        if args.command == "serve-model":
            return asyncio.run(_serve_model(settings, grace=args.grace))
        if args.command == "bench":
            from bot_dev.bench.command import bench
            from bot_dev.bench.run import BenchOptions

            options = BenchOptions(
                concurrency=args.concurrency,
                long_turns=args.turns,
                max_new_tokens=args.max_new_tokens,
                runners=args.runners,
            )
            return bench(
                settings.model,
                options,
                cache_mb=settings.engine.cache_max_mb,
                json_path=args.json,
                plot_path=args.plot,
            )
        if args.command == "loadtest":
            return asyncio.run(_loadtest(settings, args))
        if args.command == "report":
            return _report(settings, args.out, args.days)
        if args.command == "kb":
            return asyncio.run(_kb(settings, args))
        if args.command == "eval":
            from bot_dev.chat_eval import eval_chat

            return asyncio.run(
                eval_chat(settings, args.conversations, args.json, concurrency=args.concurrency)
            )
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
        secrets=[
            secret.get_secret_value()
            for secret in (token, settings.llm.api_key, settings.serve.api_key)
            if secret is not None
        ],
        json_format=settings.log.format == "json",
    )


async def _chat(settings: Settings, chat_id: str) -> int:
    from bot.app import build_app
    from bot.transports.terminal import TerminalChat

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
    from bot.transports.health import HealthServer
    from bot.transports.telegram.runner import serve

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


async def _serve_model(settings: Settings, *, grace: float) -> int:
    import signal

    from bot.app import build_model_server

    server = await build_model_server(settings, show_progress=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        server.start(settings.serve.host, settings.serve.port)
    except OSError as exc:
        await server.engine.aclose()
        raise ConfigError(
            f"invalid setting SERVE_PORT={settings.serve.port}: cannot listen on "
            f"{settings.serve.host}:{settings.serve.port}: {exc.strerror or exc}"
        ) from exc
    try:
        await stop.wait()
    finally:
        await server.stop(grace)
        await server.engine.aclose()
    return 0


def _report(settings: Settings, out: Path, days: int) -> int:
    from bot.desk.report import render_html

    data = asyncio.run(_report_data(settings, days))
    try:
        out.write_text(render_html(data), encoding="utf-8")
    except OSError as exc:
        print(f"bot: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"wrote {out} ({days} days, {sum(day.window.messages for day in data.days)} messages)")
    return 0


async def _report_data(settings: Settings, days: int) -> Any:
    from bot.app import DEFAULT_REDIS_URL, open_state
    from bot.desk.analytics import Analytics
    from bot.desk.report import collect

    state = await open_state(settings, default_url=DEFAULT_REDIS_URL)
    try:
        assert state.support is not None
        retention = settings.support.analytics_retention_days
        return await collect(Analytics(state.support.analytics, retention_days=retention), days)
    finally:
        await state.store.aclose()


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


async def _kb(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import build_app, build_knowledge

    if settings.kb.path is None:
        raise ConfigError("invalid setting KB_PATH: `bot kb` needs it (for example KB_PATH=examples/kb)")
    if args.kb_command == "index":
        knowledge = await build_knowledge(settings)
        assert knowledge is not None
        print(knowledge.summary)
        return 0
    from bot.chat.service import Message
    from bot.core.errors import InputRefused, ReplyReplaced
    from bot_dev.kb_eval import evaluate, read_questions

    try:
        questions = read_questions(args.questions)
    except (OSError, ValueError) as exc:
        print(f"bot: cannot read the questions: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    # history and counters of the evaluation's chats stay in this process, never in a production Redis
    local = settings.model_copy(update={"redis": settings.redis.model_copy(update={"url": "memory://"})})
    app = await build_app(local, default_redis_url="memory://", show_progress=True)
    assert app.knowledge is not None

    async def answer(number: int, question: str, info: Any) -> str:
        try:
            stream = app.service.respond(Message(chat_id=f"kb-eval-{number}", text=question), info)
            return "".join([piece async for piece in stream])
        except (InputRefused, ReplyReplaced) as exc:
            return exc.text

    try:
        report = await evaluate(app.knowledge, questions, answer)
    finally:
        await app.aclose()
    for name, value in report.summary().items():
        print(f"{name}: {value}")
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_dict(), ensure_ascii=False, indent=1))
        print(f"wrote {args.json}")
    return 0


def _safety_eval(settings: Settings, corpus: Path, out: Path | None) -> int:
    from rich.console import Console
    from rich.table import Table

    from bot.app import build_safety
    from bot_dev.safety_eval import evaluate, read_corpus

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
