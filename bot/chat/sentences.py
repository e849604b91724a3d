"""Replies as sentences: the rules that drop a sentence of a reply (a false identity, a misplaced
condolence) split and join them the same way."""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["after_cut", "sentences", "without_sentences"]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# words by which a sentence turns from the one before it: left dangling once that one is cut
_TURN_WORDS = re.compile(r"^(?:however|but|still|instead|that said)\s*,?\s*", re.IGNORECASE)


def sentences(text: str) -> list[str]:
    """`text` split after each ".", "!" or "?" that a space follows."""
    return _SENTENCE_END.split(text.strip())


def after_cut(sentence: str) -> str:
    """A sentence whose predecessor was cut out: without the word that turned from it ("However, you
    can..." -> "You can...")."""
    sentence = _TURN_WORDS.sub("", sentence, count=1)
    return sentence[:1].upper() + sentence[1:]


def without_sentences(text: str, drop: Callable[[str], bool]) -> str:
    """`text` without the sentences `drop` picks, or unchanged when that drops none or would leave nothing.
    A sentence right after a dropped one loses the word that turned from it (`after_cut`)."""
    kept: list[str] = []
    cut = dropped = False
    for sentence in sentences(text):
        if drop(sentence):
            cut = dropped = True
            continue
        kept.append(after_cut(sentence) if cut else sentence)
        cut = False
    return " ".join(kept) if kept and dropped else text
