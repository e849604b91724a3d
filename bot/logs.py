"""Logging set-up: one handler on stderr, levels from settings, and a filter that masks secrets and PII.

The filter sits on the handlers, not on loggers: a record from any logger (python-telegram-bot, httpx,
httpcore, redis, tornado, asyncio, ours) reaches the output only through a handler, so nothing bypasses
it. It masks the configured secrets (bot token, webhook secret, API keys), anything shaped like a bot token
or a secret header or parameter, and, through a function the caller passes in (the safety layer's PII
redactor), the personal data customers write: library debug lines dump whole updates, text included.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable

__all__ = ["JsonFormatter", "RedactingFilter", "configure_logging"]

# Telegram bot tokens look like 123456789:AA...; they also appear inside Bot API URLs.
_TOKEN_RE = re.compile(r"(?<!\d)\d{5,}:[A-Za-z0-9_-]{30,}")
# secret-looking parameters and headers, whatever their value: secret_token='...', "api_key": "...",
# X-Telegram-Bot-Api-Secret-Token: ..., Authorization: Bearer ...
_SECRET_FIELD_RE = re.compile(
    r"""(?P<key>(?:secret[_-]?token|api[_-]?key|password|passwd|x-telegram-bot-api-secret-token)['"]?\s*[:=]\s*['"]?"""
    r"""|authorization['"]?\s*[:=]\s*['"]?(?:bearer|basic)\s+)(?P<value>[^\s'",}&)]+)""",
    re.IGNORECASE,
)
# libraries whose DEBUG lines are request-by-request noise (and carry URLs with the token): WARNING unless
# LOG_LEVEL asks for less
_NOISY = ("httpx", "httpcore", "transformers", "urllib3", "filelock", "asyncio", "hpack")


class RedactingFilter(logging.Filter):
    """Masks secrets and personal data in every record, at every level: message, arguments, traceback."""

    def __init__(self, secrets: Iterable[str] = (), *, mask_pii: Callable[[str], str] | None = None) -> None:
        super().__init__()
        # longest first, so a secret containing another is replaced whole
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._mask_pii = mask_pii

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self.mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:  # tracebacks quote URLs and arguments too
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        return True

    def mask(self, text: str) -> str:
        text = _TOKEN_RE.sub("<redacted-token>", text)
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        text = _SECRET_FIELD_RE.sub(lambda m: f"{m.group('key')}<redacted>", text)
        if self._mask_pii is not None:
            text = self._mask_pii(text)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and, when there is one, the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["traceback"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(
    level: str,
    *,
    verbose: bool = False,
    secrets: Iterable[str] = (),
    json_format: bool = False,
    mask_pii: Callable[[str], str] | None = None,
) -> None:
    """One stderr handler on the root logger, with the redacting filter; the same filter is added to any
    handler a library attached to its own logger, so even a non-propagating logger is masked."""
    redacting = RedactingFilter(secrets, mask_pii=mask_pii)
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if json_format
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    handler.addFilter(redacting)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        for other in getattr(logger, "handlers", []):
            other.filters[:] = [f for f in other.filters if not isinstance(f, RedactingFilter)]
            other.addFilter(redacting)
    if verbose:
        logging.getLogger("bot").setLevel(logging.DEBUG)
    # Libraries stay at WARNING unless asked: httpx logs every request URL, and Bot API URLs hold the token.
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
