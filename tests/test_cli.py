"""The `bot` command as a user runs it: a subprocess, real Redis, a real (tiny) model."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from bot.storage import history_key
from tests.conftest import env_without_bot_settings


def run_bot(
    args: list[str], env: dict[str, str], stdin: str = "", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = env_without_bot_settings()  # a developer's own settings must not change what the test sees
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**base, **env},
        cwd=cwd,
        timeout=120,
    )


@pytest.fixture
def chat_env(tiny_llama_dir: Path, redis_url: str, key_prefix: str) -> dict[str, str]:
    return {
        "MODEL_NAME": str(tiny_llama_dir),
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": key_prefix,
        "GENERATION_MAX_NEW_TOKENS": "6",
        "GENERATION_DO_SAMPLE": "false",
    }


def test_piped_chat_answers_each_line_and_remembers(chat_env: dict[str, str], tmp_path: Path) -> None:
    done = run_bot(["chat", "--verbose"], chat_env, "Hi, I am Anna\n\nWhat is my name?\n", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "with 0 history turns" in done.stderr and "with 2 history turns" in done.stderr
    assert done.stdout.strip()
    assert "Traceback" not in done.stderr


def test_history_survives_a_restart_and_reset_clears_it(
    chat_env: dict[str, str], redis_client: redis.Redis, key_prefix: str, tmp_path: Path
) -> None:
    key = history_key(key_prefix, "terminal")
    assert run_bot(["chat"], chat_env, "first\n", cwd=tmp_path).returncode == 0
    assert redis_client.llen(key) == 2
    second = run_bot(["chat", "--verbose"], chat_env, "second\n", cwd=tmp_path)
    assert "with 2 history turns" in second.stderr
    assert redis_client.llen(key) == 4 and redis_client.ttl(key) > 0
    cleared = run_bot(["chat"], chat_env, "/reset\n", cwd=tmp_path)
    assert "history cleared" in cleared.stdout
    assert redis_client.exists(key) == 0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GENERATION_TEMPERATURE", "-1"),
        ("GENERATION_TOP_P", "2"),
        ("REDIS_URL", "localhost"),
        ("MODEL_DTYPE", "int3"),
    ],
)
def test_invalid_settings_exit_2_with_one_line(variable: str, value: str, tmp_path: Path) -> None:
    token = "123456789:AAH-super-secret-token-value-1234567890"
    done = run_bot(["chat"], {variable: value, "TELEGRAM_BOT_TOKEN": token}, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0]
    assert token not in done.stderr + done.stdout and "Traceback" not in done.stderr


def test_config_prints_settings_with_secrets_masked(tmp_path: Path) -> None:
    token = "123456789:AAH-super-secret-token-value-1234567890"
    (tmp_path / ".env").write_text(f"TELEGRAM_BOT_TOKEN={token}\nGENERATION_TOP_K=5\n")
    done = run_bot(["config"], {}, cwd=tmp_path)
    assert done.returncode == 0
    assert "GENERATION_TOP_K=5" in done.stdout and "TELEGRAM_BOT_TOKEN=********" in done.stdout
    assert token not in done.stdout


def test_a_missing_model_names_model_name(tmp_path: Path) -> None:
    done = run_bot(["chat"], {"MODEL_NAME": str(tmp_path / "nowhere.gguf")}, "hi\n", cwd=tmp_path)
    assert done.returncode == 1
    assert "MODEL_NAME" in done.stderr and "Traceback" not in done.stderr


def test_a_corrupt_model_names_model_name(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    done = run_bot(["chat"], {"MODEL_NAME": str(broken)}, "hi\n", cwd=tmp_path)
    assert done.returncode == 1
    assert "MODEL_NAME" in done.stderr and "Traceback" not in done.stderr


def test_unreachable_redis_says_how_to_start_one(tiny_llama_dir: Path, tmp_path: Path) -> None:
    done = run_bot(
        ["chat"],
        {"MODEL_NAME": str(tiny_llama_dir), "REDIS_URL": "redis://127.0.0.1:1/0"},
        "hi\n",
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "redis-server" in done.stderr and "Traceback" not in done.stderr


def test_a_metrics_port_in_use_is_a_setting_error(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """`bot run` opens the health server with the runtime, before Telegram: a taken port is exit 2."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "MODEL_NAME": str(tiny_llama_dir),
            "REDIS_URL": "memory://",
            "TELEGRAM_BOT_TOKEN": "123456:TEST-token-abcdefghijklmnopqrstuvwxyz",
            "TELEGRAM_API_BASE_URL": "http://127.0.0.1:1/bot",  # never reached
            "METRICS_PORT": str(port),
            "METRICS_LISTEN": "127.0.0.1",
        }
        done = run_bot(["run"], env, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"invalid setting METRICS_PORT={port}: cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_each_command_is_one_module_with_its_own_arguments() -> None:
    from bot.cli import command_modules, parser

    names = [module.__name__.rsplit(".", 1)[1] for module in command_modules()]
    assert names == [
        "chat",
        "run",
        "serve_model",
        "safety_eval",
        "loadtest",
        "report",
        "kb",
        "eval",
        "bench",
        "config",
    ], "the order `bot --help` lists them in"
    args = parser().parse_args(["bench", "--concurrency", "2,8", "--runners", "engine"])
    assert args.concurrency == (2, 8) and args.runners == ("engine",)
    assert args.command_run.__module__ == "bot.cli.bench"
    args = parser().parse_args(["kb", "eval", "questions.jsonl"])
    assert args.command_run.__module__ == "bot.cli.kb" and args.kb_command == "eval"
