"""Splitting replies for Telegram's 4096 UTF-16 code unit limit."""

from __future__ import annotations

import pytest

from bot.transports.telegram.split import split_text, utf16_len


def joined(parts: list[str]) -> str:
    return "".join(parts).replace(" ", "").replace("\n", "")


def test_short_text_is_one_part() -> None:
    assert split_text("  Hello!  ") == ["Hello!"]
    assert split_text("   ") == []


def test_emoji_heavy_text_stays_within_the_limit_in_order() -> None:
    text = " ".join(f"{n} 👩‍👩‍👧‍👦🇩🇪👍🏽" for n in range(1200))
    assert len(text) > 10_000
    parts = split_text(text)
    assert len(parts) > 2
    assert all(utf16_len(part) <= 4096 for part in parts)
    assert joined(parts) == joined([text])
    for part in parts:  # no part starts with a joiner, modifier or half of a flag
        assert part[0] not in "\u200d\ufe0f" and not 0x1F3FB <= ord(part[0]) <= 0x1F3FF


def test_paragraphs_are_preferred_over_sentences() -> None:
    first = "First paragraph sentence. " * 100
    text = first.strip() + "\n\n" + "Second paragraph sentence. " * 100
    parts = split_text(text, limit=3000)
    assert parts[0] == first.strip()


def test_sentences_are_preferred_over_words() -> None:
    text = "This is one sentence that goes on. " * 20
    parts = split_text(text, limit=100)
    assert all(part.endswith(".") for part in parts)


def test_a_word_longer_than_the_limit_is_cut() -> None:
    parts = split_text("x" * 250, limit=100)
    assert [len(p) for p in parts] == [100, 100, 50]


@pytest.mark.parametrize("text", ["e\u0301" * 3000, "\u05e9\u05dc\u05d5\u05dd " * 1500])
def test_combining_marks_and_rtl_survive(text: str) -> None:
    parts = split_text(text)
    assert all(utf16_len(p) <= 4096 for p in parts)
    assert joined(parts) == joined([text])
    assert all(not p.startswith("\u0301") for p in parts)
