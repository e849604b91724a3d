"""`bot config`: the effective settings with secrets masked, or (`--example`) the `.env` template."""

from __future__ import annotations

import argparse

from bot.cli.common import Commands
from bot.config import Settings, example_env

__all__ = ["ORDER", "register", "run"]

ORDER = 90


def register(commands: Commands) -> argparse.ArgumentParser:
    config = commands.add_parser("config", help="print the effective settings, secrets masked")
    config.add_argument("--example", action="store_true", help="print a documented .env template instead")
    config.set_defaults(before_settings=_example)
    return config


def _example(args: argparse.Namespace) -> int | None:
    """The template needs no valid settings: it is printed before they are read."""
    if not args.example:
        return None
    print(example_env(), end="")
    return 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    for name, value in settings.effective():
        print(f"{name}={value}")
    if settings.llm.backend == "local":  # what MODEL_DTYPE=auto measured on this machine (a comment line)
        from bot.llm.local.loader import describe_format

        model = settings.model
        print(f"# numeric format: {describe_format(model.name, model.dtype, cache_dir=model.cache_dir)}")
    return 0
