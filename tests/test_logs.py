"""Secrets never reach a log line: messages, arguments and tracebacks are masked."""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from bot.logs import RedactingFilter
from bot.safety.pii import PiiRedactor
from bot_dev.fakes.bot_api import FakeBotApi
from bot_dev.fakes.webhooks import WebhookDelivery
from tests.conftest import TOKEN as BOT_TOKEN
from tests.conftest import env_without_bot_settings, free_port

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


SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def test_secret_parameters_and_headers_are_masked_whatever_their_value() -> None:
    out = render(
        [],
        lambda log: log.warning(
            "setWebhook %s | %s | %s",
            {"url": "https://bot.example/telegram", "secret_token": "s3cr3t-value"},
            f"{SECRET_HEADER}: hdr-value",
            "Authorization: Bearer sk-live-abc123",
        ),
    )
    assert "s3cr3t-value" not in out and "hdr-value" not in out and "sk-live-abc123" not in out
    assert "https://bot.example/telegram" in out


def test_personal_data_is_masked_but_ids_stay_readable() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter([], mask_pii=PiiRedactor().mask_log_line))
    logger = logging.getLogger(f"test.redaction.{uuid.uuid4().hex}")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    update = {
        "update_id": 5125550123,
        "message": {"chat": {"id": 5125550124}, "text": "card 4111.1111.1111.1111, call +44 20 7946 0958"},
    }
    logger.debug("Processing update %s", update)
    out = stream.getvalue()
    assert "4111.1111.1111.1111" not in out and "7946 0958" not in out
    assert "[card]" in out and "[phone]" in out
    assert "5125550123" in out and "5125550124" in out  # ids are not phone numbers


PII = {
    "card": "4111.1111.1111.1111",
    "iban": "DE89 3704 0044 0532 0130 00",
    "email": "anna.smith+bank@example.com",
    "phone": "+44 20 7946 0958",
}


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_a_debug_log_of_bot_run_holds_no_secret_and_no_personal_data(
    mode: str, fake_api: FakeBotApi, tiny_llama_dir: Path, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    """Issue #14 item 4: python-telegram-bot's debug lines dumped the webhook secret and every update."""
    webhook_secret = "wh-" + uuid.uuid4().hex
    port = free_port()
    env = {
        **env_without_bot_settings(),
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "TELEGRAM_API_BASE_URL": fake_api.base_url,
        "TELEGRAM_WEBHOOK_SECRET": webhook_secret,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": key_prefix,
        "MODEL_NAME": str(tiny_llama_dir),
        "GENERATION_MAX_NEW_TOKENS": "4",
        "SAFETY_SEMANTIC": "off",
        "LOG_LEVEL": "DEBUG",
    }
    url = f"http://127.0.0.1:{port}/telegram"
    if mode == "webhook":
        env |= {
            "TELEGRAM_WEBHOOK_URL": url,
            "TELEGRAM_WEBHOOK_LISTEN": "127.0.0.1",
            "TELEGRAM_WEBHOOK_PORT": str(port),
        }
    log_path = tmp_path / "bot.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path, stdout=out, stderr=out
        )
    delivery = WebhookDelivery(fake_api, [url]).start() if mode == "webhook" else None
    try:
        for chat, (kind, value) in enumerate(PII.items(), start=1):
            fake_api.send_text(chat, chat, f"my {kind} is {value}, please check my account")
        await fake_api.wait_for(lambda: all(fake_api.messages_in(c) for c in range(1, 5)), timeout=120)
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 60)
    finally:
        if delivery is not None:
            delivery.stop()
        if process.poll() is None:
            process.kill()
    log = log_path.read_text(errors="replace")
    assert process.returncode == 0, log[-3000:]
    assert "DEBUG" in log and "telegram" in log, "the library's debug lines were part of the check"
    if mode == "webhook":
        assert fake_api.webhook_secret == webhook_secret or "setWebhook" in log
    leaks = [secret for secret in (BOT_TOKEN, BOT_TOKEN.split(":")[1], webhook_secret) if secret in log]
    leaks += [kind for kind, value in PII.items() if value in log or value.replace(" ", "") in log]
    leaks += [
        kind
        for kind, value in PII.items()
        if kind in ("card", "phone") and _digits(value)[-8:] in _digits(log)
    ]
    assert leaks == [], f"found in the DEBUG log: {leaks}"


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())
