"""Logging set-up: one handler on stderr, levels from settings, and a filter that masks secrets."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

__all__ = ["RedactingFilter", "configure_logging"]

# Telegram bot tokens look like 123456789:AA...; they also appear inside Bot API URLs.
_TOKEN_RE = re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{30,}\b")


class RedactingFilter(logging.Filter):
    """Replaces known secrets and anything shaped like a bot token in every record, at every level."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _TOKEN_RE.sub("<redacted-token>", message)
        for secret in self._secrets:
            masked = masked.replace(secret, "<redacted>")
        if masked != message:
            record.msg, record.args = masked, None
        return True


def configure_logging(level: str, *, verbose: bool = False, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if verbose:
        logging.getLogger("bot").setLevel(logging.DEBUG)
    # Libraries stay at WARNING unless asked: httpx logs every request URL, and Bot API URLs hold the token.
    for noisy in ("httpx", "httpcore", "transformers", "urllib3", "filelock", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
