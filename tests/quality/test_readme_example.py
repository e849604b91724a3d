"""The README's example through the real bundled model: the bot answers with the name it was told."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cli import run_bot

pytestmark = pytest.mark.slow


def test_the_readme_example_answers_with_the_name(tmp_path: Path) -> None:
    done = run_bot(["chat"], {}, "Hi, I am Anna\nWhat is my name?\n", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    replies = done.stdout.strip().splitlines()
    assert len(replies) >= 2 and "Anna" in "\n".join(replies[1:])  # the second reply (may span lines)
