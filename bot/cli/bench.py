"""`bot bench`: the engine against naive `generate` and llama.cpp on scripted support chats (the tool
itself is `bot_dev.bench`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bot.cli.common import Commands, positive, setup_logging
from bot.config import Settings

__all__ = ["ORDER", "RUNNERS", "register", "run"]

ORDER = 80
RUNNERS = ("engine", "naive", "llama.cpp", "llama-server")


def register(commands: Commands) -> argparse.ArgumentParser:
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
        "--turns", type=positive(int), default=20, help="turns of the long conversation (default: 20)"
    )
    bench.add_argument(
        "--max-new-tokens", type=positive(int), default=48, help="tokens per reply (default: 48)"
    )
    bench.add_argument(
        "--runners",
        type=_names,
        default=RUNNERS,
        metavar="NAME,...",
        help="engine, naive, llama.cpp, llama-server (default: all; llama.cpp needs the bench extra, "
        "llama-server a build on PATH)",
    )
    return bench


def run(settings: Settings, args: argparse.Namespace) -> int:
    from bot_dev.bench.command import bench
    from bot_dev.bench.run import BenchOptions

    setup_logging(settings)
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
        lean_forward=settings.engine.lean_forward,
        json_path=args.json,
        plot_path=args.plot,
    )


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
    """An argparse type: runner names from RUNNERS, comma-separated."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(set(names) - set(RUNNERS))
    if unknown or not names:
        wrong = ", ".join(unknown) or repr(text)
        raise argparse.ArgumentTypeError(f"unknown runner {wrong}: choose from {', '.join(RUNNERS)}")
    return names
