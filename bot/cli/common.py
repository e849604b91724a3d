"""What several commands share: exit codes, argument types, logging set-up, error lines."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TypeAlias

from bot.config import Settings

__all__ = ["EXIT_CONFIG", "EXIT_RUNTIME", "Commands", "fail", "positive", "setup_logging"]

EXIT_CONFIG = 2
EXIT_RUNTIME = 1

# what `register(commands)` receives: the root parser's sub-parsers
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def fail(message: str, *, code: int = EXIT_RUNTIME) -> int:
    """Print `bot: <message>` on stderr and return the exit code, for `return fail(...)`."""
    print(f"bot: {message}", file=sys.stderr)
    return code


def positive(kind: Callable[[str], float], *, zero: bool = False) -> Callable[[str], Any]:
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


def setup_logging(settings: Settings, *, verbose: bool = False, quiet: bool = False) -> None:
    """`quiet`: the terminal chat shows INFO lines only with --verbose (they would mix with replies)."""
    from bot.logs import configure_logging
    from bot.safety.pii import PiiRedactor

    telegram = settings.telegram
    regions = [r.strip().upper() for r in settings.safety.phone_regions.split(",") if r.strip()]
    level = "WARNING" if quiet and settings.log.level == "INFO" and not verbose else settings.log.level
    configure_logging(
        level,
        verbose=verbose,
        secrets=[
            secret.get_secret_value()
            for secret in (
                telegram.bot_token,
                telegram.webhook_secret,
                settings.llm.api_key,
                settings.serve.api_key,
            )
            if secret is not None
        ],
        json_format=settings.log.format == "json",
        mask_pii=PiiRedactor(regions).mask_log_line,
    )
