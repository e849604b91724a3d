"""Secrets never reach a log line: messages, arguments and tracebacks are masked."""

from __future__ import annotations

import io
import logging
import uuid

from bot.logs import RedactingFilter

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


def render(secrets: list[str], emit: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(secrets))
    logger = logging.getLogger(f"test.redaction.{uuid.uuid4().hex}")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        emit(logger)  # type: ignore[operator]
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_tokens_are_masked_in_messages_and_arguments() -> None:
    out = render([], lambda log: log.warning("POST https://api.telegram.org/bot%s/getUpdates", TOKEN))
    assert TOKEN not in out and "<redacted-token>" in out


def test_configured_secrets_are_masked() -> None:
    out = render(["hunter2"], lambda log: log.error("password is %s", "hunter2"))
    assert "hunter2" not in out


def test_tracebacks_are_masked() -> None:
    def emit(log: logging.Logger) -> None:
        try:
            raise RuntimeError(f"failed calling /bot{TOKEN}/sendMessage")
        except RuntimeError:
            log.exception("call failed")

    out = render([], emit)
    assert "RuntimeError" in out and TOKEN not in out
