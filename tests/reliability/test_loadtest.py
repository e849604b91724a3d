"""`bot loadtest` as a maintainer runs it: real bot, real Redis, tiny model; every message answered once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import redis

from bot.app import build_safety
from bot.config import load_settings
from bot_dev.loadtest import QUESTIONS
from tests.conftest import env_without_bot_settings


def test_loadtest_gets_exactly_one_reply_per_message_and_leaves_no_keys(
    tiny_llama_dir: Path, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    out = tmp_path / "loadtest.json"
    before = set(redis_client.scan_iter(match="loadtest-*", count=500))  # another run's, if one is going
    env = {
        **env_without_bot_settings(),
        "MODEL_NAME": str(tiny_llama_dir),
        "GENERATION_MAX_NEW_TOKENS": "8",
        "GENERATION_DO_SAMPLE": "false",
        "REDIS_URL": redis_url,
        # the tiny model writes random text: these output checks would replace it, which is not the point
        "SAFETY_OUTPUT_PROFANITY": "false",
        "SAFETY_CHECK_DEGENERATE": "false",
    }
    command = [sys.executable, "-m", "bot", "loadtest", "--users", "4", "--minutes", "0.15"]
    result = subprocess.run(
        [*command, "--think", "0.2", "--json", str(out)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["sent"] > 0
    assert report["received"] == report["sent"]
    assert report["lost"] == 0
    assert report["duplicates"] == 0
    assert report["ok"] is True and report["bot_stopped_early"] is False
    assert report["users"] == 4 and report["model"] == str(tiny_llama_dir)
    assert report["latency_p50"] is not None and report["latency_p50"] <= report["latency_p99"]
    assert "duplicates" in result.stdout and "lost" in result.stdout  # the table
    assert report["redis_keys_deleted"] > 0, "the run kept history and delivery keys in Redis"
    assert not list(redis_client.scan_iter(match=f"{report['redis_key_prefix']}:*"))
    assert set(redis_client.scan_iter(match="loadtest-*", count=500)) <= before


def test_the_questions_pass_the_input_checks(clean_env: Path) -> None:
    """A question the safety filters refused would never reach the model and so would put no load on it."""
    pipeline, _prompt = build_safety(load_settings(None))
    refused = [q for q in QUESTIONS if pipeline.check_input(q).blocked or pipeline.check_input(q).text != q]
    assert not refused
    assert len(set(QUESTIONS)) >= 25
