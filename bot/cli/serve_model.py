"""`bot serve-model`: the local model behind an OpenAI-compatible API (replicas: LLM_BACKEND=openai)."""

from __future__ import annotations

import argparse
import asyncio
import signal

from bot.cli.common import Commands, positive, setup_logging
from bot.config import Settings
from bot.core.errors import ConfigError

__all__ = ["ORDER", "register", "run"]

ORDER = 30


def register(commands: Commands) -> argparse.ArgumentParser:
    serve_model = commands.add_parser(
        "serve-model", help="serve the local model over an OpenAI-compatible API (SERVE_HOST:SERVE_PORT)"
    )
    serve_model.add_argument(
        "--grace",
        type=positive(float, zero=True),
        default=20.0,
        metavar="SECONDS",
        help="on SIGTERM, let replies in progress finish this long (default: 20)",
    )
    return serve_model


def run(settings: Settings, args: argparse.Namespace) -> int:
    setup_logging(settings)
    return asyncio.run(_serve_model(settings, grace=args.grace))


async def _serve_model(settings: Settings, *, grace: float) -> int:
    from bot.app import open_model_server

    serve = settings.serve
    async with open_model_server(settings, show_progress=True) as server:
        stop = (
            asyncio.Event()
        )  # signals stop the server once the model is loaded; before, they end the process
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            server.start(serve.host, serve.port)
        except OSError as exc:
            raise ConfigError(
                f"invalid setting SERVE_PORT={serve.port}: cannot listen on "
                f"{serve.host}:{serve.port}: {exc.strerror or exc}"
            ) from exc
        try:
            await stop.wait()
        finally:
            await server.stop(grace)
    return 0
