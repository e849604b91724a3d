"""`bot eval chat` as the CLI runs it (in this process): a tiny real model, a two-conversation file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main
from bot_dev.chat_eval import check_reply, read_conversations

CONVERSATIONS = [
    {
        "id": "t-mem",
        "category": "memory",
        "turns": [
            {"user": "Hi, my name is Anna."},
            {"user": "What is my name?", "expect": {"any": ["(?i)\\bAnna\\b"]}},
        ],
    },
    {
        "id": "t-howto",
        "category": "howto",
        "turns": [{"user": "How do I reset my password?", "expect": {"any": ["(?i)zebra-unicorn"]}}],
    },
]


def test_eval_chat_runs_every_conversation_and_writes_every_reply(
    tiny_llama_dir: Path, clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = clean_env / "two.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in CONVERSATIONS), encoding="utf-8")
    out = clean_env / "out.json"
    env = {
        "MODEL_NAME": str(tiny_llama_dir),
        "GENERATION_MAX_NEW_TOKENS": "6",
        "GENERATION_DO_SAMPLE": "false",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["eval", "chat", str(data), "--json", str(out), "--concurrency", "2"]) == 0
    done = capsys.readouterr()
    assert "memory" in done.out and "howto" in done.out and "pass rate" in done.out
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["summary"]["conversations"] == 2
    by_id = {c["id"]: c for c in result["conversations"]}
    # the fact is recalled whatever the random model says; no real answer mentions the made-up word
    assert by_id["t-mem"]["passed"] is True and "Anna" in by_id["t-mem"]["turns"][1]["reply"]
    assert by_id["t-howto"]["passed"] is False and by_id["t-howto"]["turns"][0]["failures"] == ["any"]
    assert result["summary"]["by_category"]["memory"]["pass_rate"] == 1.0


def test_a_broken_file_is_named_with_its_line(tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"id": "a", "category": "memory", "turns": [{"user": "hi", "expect": {"anyy": []}}]}\n')
    try:
        read_conversations(data)
    except ValueError as exc:
        assert "bad.jsonl:1" in str(exc) and "anyy" in str(exc)
    else:
        raise AssertionError("a misspelt expect key must be refused")


def test_the_checks() -> None:
    assert check_reply("", None, []) == ["empty"]
    assert check_reply("Hello  there", None, ["hello there"]) == ["repeated"]
    assert check_reply("I'm sorry, but I can't help with that.", {"no_refusal": True}, []) == ["refusal"]
    assert check_reply("Contact customer support.", {"none": ["(?i)customer support"]}, []) == [
        "none:(?i)customer support"
    ]
    assert check_reply("Your name is Anna.", {"any": ["Anna"], "no_refusal": True}, ["Hi"]) == []
