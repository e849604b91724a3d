"""`bot bench` end to end on a tiny model: every phase runs, the JSON has the promised figures and ratios,
the chart is drawn. (The figures themselves are meaningful only on the real model: docs/benchmarks.md.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from bot.core.domain import Prompt, Role
from bot.llm.local.loader import resolve_source
from bot_dev.bench.llama_server import LlamaServerRunner, llama_server_binary
from bot_dev.bench.workload import LONG_OPENING, TTFT_PROBES, USER_TURNS, user_turn
from tests.conftest import env_without_bot_settings


def test_bench_writes_figures_ratios_and_a_chart(tiny_llama_dir: Path, tmp_path: Path) -> None:
    env = {**env_without_bot_settings(), "MODEL_NAME": str(tiny_llama_dir), "MODEL_DTYPE": "float32"}
    out, chart = tmp_path / "out.json", tmp_path / "out.png"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "bench",
            "--max-new-tokens",
            "6",
            "--json",
            str(out),
            "--plot",
            str(chart),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    assert set(figures["runners"]) == {"engine", "naive"}
    assert "llama.cpp" in figures["skipped"]  # a model directory is not a GGUF file
    assert "not a GGUF file" in figures["skipped"]["llama-server"]
    for runner in figures["runners"].values():
        assert set(runner["aggregate_tokens_per_second"]) == {"1", "4", "16"}
        assert all(rate > 0 for rate in runner["aggregate_tokens_per_second"].values())
        assert len(runner["ttft_by_turn"]) == 20
        assert runner["prompt_tokens_by_turn"][-1] > runner["prompt_tokens_by_turn"][0]
        assert len(runner["ttft_probes_turn1"]) == len(runner["ttft_probes_last_turn"]) == len(TTFT_PROBES)
    ratios = figures["ratios"]
    assert ratios["aggregate16_vs_naive"] > 0 and ratios["ttft_turn20_vs_turn1"] > 0
    assert ratios["aggregate16_vs_llamacpp"] is None and ratios["single_vs_llamacpp"] is None
    assert ratios["aggregate16_vs_llamaserver"] is None and ratios["single_vs_llamaserver"] is None
    assert figures["cold_start_seconds"] > 0 and figures["peak_rss_mb"] > 0
    assert chart.read_bytes().startswith(b"\x89PNG")
    assert "aggregate tokens/s, 16 chats" in done.stdout and "ratios:" in done.stdout
    assert "TTFT probes, last turn (median s)" in done.stdout
    assert figures["format"] == "float32" and figures["format_calibration"] == "explicit MODEL_DTYPE"
    forward = "the engine's own Llama forward, attention: kernel in float32; steps: "
    assert figures["engine_forward_pass"].startswith(forward)
    assert f"engine: {figures['engine_forward_pass']}" in " ".join(done.stdout.split())
    assert figures["cpu"] and f"CPU: {figures['cpu']}" in done.stdout
    shown = " ".join((done.stdout + done.stderr).split())  # rich wraps long lines
    assert f"llama.cpp skipped: {figures['skipped']['llama.cpp']}" in shown  # printed verbatim, [..] too
    assert os.path.getsize(chart) > 10_000


@pytest.mark.slow
@pytest.mark.skipif(llama_server_binary() is None, reason="llama-server is not on PATH (docs/benchmarks.md)")
async def test_the_llama_server_peer_starts_answers_from_the_gguf_and_stops(tiny_llama_dir: Path) -> None:
    gguf = resolve_source("bundled:smollm2-135m-instruct").location
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    binary = llama_server_binary()
    assert binary is not None
    runner = LlamaServerRunner(binary, gguf, tokenizer, slots=2, context=512, threads=1)
    try:
        await runner.start()
        prompt = Prompt((), messages=((Role.SYSTEM, "You are a shop assistant."), (Role.USER, "Say hello.")))
        timing = await runner.reply(prompt, 8)
    finally:
        await runner.aclose()
    assert timing.text and timing.tokens > 0 and 0 < timing.ttft <= timing.total
    assert not runner.running  # the server process is gone


def test_the_long_conversation_opens_with_a_message_no_other_chat_sends() -> None:
    """Its turn 1 must compute its prompt like any first turn, not find it cached from an earlier phase."""
    openings = {user_turn(chat, 0) for chat in [*range(64), *range(1000, 1010)]}
    assert LONG_OPENING not in openings and len(openings) > 1
    # the probes of time to first token, likewise: no chat asks them, so turn 1 computes them
    assert not set(TTFT_PROBES) & (openings | set(USER_TURNS) | {LONG_OPENING})
