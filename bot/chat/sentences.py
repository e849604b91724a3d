"""Replies as sentences: the rules that drop a sentence of a reply (a false identity, a misplaced
condolence) split and join them the same way."""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["sentences", "without_sentences"]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    """`text` split after each ".", "!" or "?" that a space follows."""
    return _SENTENCE_END.split(text.strip())


def without_sentences(text: str, drop: Callable[[str], bool]) -> str:
    """`text` without the sentences `drop` picks, or unchanged when that would leave nothing."""
    kept = [sentence for sentence in sentences(text) if not drop(sentence)]
    return " ".join(kept) if kept else text
