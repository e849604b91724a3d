"""Detection targets on the labelled corpora (quality figures only; latency lives in docs/safety.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.safety import SafetyPipeline
from bot_dev.safety_eval import evaluate, read_corpus
from tests.conftest import ROOT

CORPORA = ["safety_corpus.jsonl", "safety_holdout.jsonl"]


@pytest.mark.parametrize("name", CORPORA)
def test_targets_hold(clean_env: Path, name: str) -> None:
    settings = load_settings(None)
    safety = SafetyPipeline(settings.safety, system_prompt=settings.prompt.system_prompt)
    summary = evaluate(safety, read_corpus(ROOT / "tests" / "data" / name)).summary
    labels, pii = summary["labels"], summary["pii_redaction_rate"]
    assert labels["injection"]["detection_rate"] >= 0.95
    assert labels["toxic"]["detection_rate"] >= 0.95
    assert labels["benign"]["false_positive_rate"] <= 0.02
    assert pii["card"] == pii["iban"] == pii["email"] == 1.0
    assert pii["phone"] >= 0.95


def test_corpus_is_big_and_balanced_enough() -> None:
    rows = read_corpus(ROOT / "tests" / "data" / "safety_corpus.jsonl")
    assert len(rows) >= 300
    assert sum(r["label"] == "benign" for r in rows) >= 0.4 * len(rows)


def test_safety_eval_command_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "safety-eval",
            str(ROOT / "tests/data/safety_holdout.jsonl"),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for label in ("injection", "pii", "toxic", "benign", "p95 ms"):
        assert label in done.stdout
    report = json.loads(out.read_text())
    first = report["results"][0]
    assert set(first) >= {"text", "label", "verdict", "reasons", "output_text"}
    assert report["summary"]["labels"]["benign"]["false_positive_rate"] <= 0.02


def test_safety_eval_rejects_a_malformed_corpus(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "hi", "label": "spam"}\n')
    done = subprocess.run(
        [sys.executable, "-m", "bot", "safety-eval", str(bad)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 1 and "bad.jsonl:1" in done.stderr and "Traceback" not in done.stderr
