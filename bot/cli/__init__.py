"""The `bot` command. Reads the settings once and hands each sub-command what it needs.

Each sub-command is one module of this package with two functions: `register(commands)` adds its
parser (name, help, arguments) and `run(settings, args) -> int` does the work and returns the exit code.
A module found here with a `register` function is a command: adding one touches no other file. Errors
become exit codes in one place: invalid settings 2, a model or store that cannot be used 1, Ctrl-C 130.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

from bot import __version__
from bot.cli.common import EXIT_CONFIG, EXIT_RUNTIME, fail
from bot.config import load_settings
from bot.core.errors import ConfigError, ModelLoadError, StoreUnavailable

__all__ = ["EXIT_CONFIG", "EXIT_RUNTIME", "command_modules", "main", "parser"]

EXIT_INTERRUPTED = 130


def command_modules() -> list[ModuleType]:
    """Every module of this package that defines a command, in the order `bot --help` lists them."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if not callable(getattr(module, "register", None)):
            continue  # a helper module (common)
        if not callable(getattr(module, "run", None)):
            raise TypeError(f"{module.__name__} registers a command but has no run(settings, args)")
        found.append(module)
    return sorted(found, key=lambda module: (getattr(module, "ORDER", 100), module.__name__))


def parser() -> argparse.ArgumentParser:
    """The whole command line: global options, then one sub-parser per command module."""
    root = argparse.ArgumentParser(prog="bot", description="A Telegram customer-support assistant.")
    root.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    root.add_argument("--env-file", default=".env", help="read settings from this file too (default: .env)")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in command_modules():
        module.register(commands).set_defaults(command_run=module.run)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    early = getattr(args, "before_settings", None)  # `bot config --example` needs no valid settings
    if early is not None and (code := early(args)) is not None:
        return int(code)
    try:
        settings = load_settings(args.env_file)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"bot: {line}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return int(args.command_run(settings, args))
    except ConfigError as exc:
        return fail(str(exc), code=EXIT_CONFIG)
    except (ModelLoadError, StoreUnavailable) as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
