"""`bot run` as a process: answers over the fake Bot API, stops cleanly on SIGTERM, never logs the token."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

from bot_dev.fakes.bot_api import FakeBotApi
from tests.conftest import TOKEN, env_without_bot_settings
from tests.helpers import HANG_SECONDS


async def test_bot_run_answers_and_stops_on_sigterm_without_leaking_the_token(
    fake_api: FakeBotApi, tiny_llama_dir: Path, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    env = {
        **env_without_bot_settings(),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE_URL": fake_api.base_url,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": key_prefix,
        "MODEL_NAME": str(tiny_llama_dir),
        "GENERATION_MAX_NEW_TOKENS": "8",
        "LOG_LEVEL": "DEBUG",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "run"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        fake_api.send_text(7, 7, "hello bot")
        await fake_api.wait_for(lambda: len(fake_api.messages_in(7)) == 1, timeout=HANG_SECONDS)
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.to_thread(process.communicate, timeout=HANG_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert TOKEN not in out + err
    assert TOKEN.split(":")[1] not in out + err
    assert "connected to Telegram as @support_test_bot" in err
    assert "DEBUG" in err, "the run was at DEBUG level, so the check above covered debug lines"
    called = {call.method for call in fake_api.calls}
    documented = {
        "getMe",
        "setMyCommands",
        "deleteWebhook",
        "getUpdates",
        "sendChatAction",
        "sendMessage",
        "editMessageText",
        "deleteMessage",
        "setWebhook",
        "close",
        "logOut",
        "answerCallbackQuery",
    }
    assert called <= documented, f"undocumented Bot API calls: {called - documented}"


def test_bot_run_without_a_token_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot", "run"],
        env=env_without_bot_settings(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "TELEGRAM_BOT_TOKEN" in done.stderr and "Traceback" not in done.stderr
