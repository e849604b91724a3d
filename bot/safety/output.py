"""Checks that only replies need: a leaked canary, verbatim system-prompt passages, degenerate text."""

from __future__ import annotations

import re
import secrets
import zlib

__all__ = ["PromptLeakDetector", "is_degenerate", "new_canary"]

_WORD = re.compile(r"\w+")


def new_canary() -> str:
    """A token that never occurs naturally; seeing it in a reply proves the system prompt leaked."""
    return f"cnry-{secrets.token_hex(6)}"


class PromptLeakDetector:
    """Finds the canary, or a run of `min_words` consecutive words of the system prompt, in a reply."""

    def __init__(self, system_prompt: str, *, canary: str | None, min_words: int) -> None:
        self._canary = canary
        self._n = min_words
        words = _words(system_prompt)
        self._grams = (
            {tuple(words[i : i + min_words]) for i in range(len(words) - min_words + 1)}
            if min_words
            else set()
        )

    def detect(self, reply: str) -> list[str]:
        reasons = []
        if self._canary and self._canary.casefold() in reply.casefold():
            reasons.append("canary")
        if self._grams:
            words = _words(reply)
            if any(tuple(words[i : i + self._n]) in self._grams for i in range(len(words) - self._n + 1)):
                reasons.append("prompt_overlap")
        return reasons


def is_degenerate(text: str) -> bool:
    """Empty, or stuck in a loop: long text that compresses extremely well, or one line over and over."""
    stripped = text.strip()
    if not any(c.isalnum() for c in stripped):
        return True
    if len(stripped) >= 200 and len(zlib.compress(stripped.encode())) / len(stripped.encode()) < 0.15:
        return True
    lines = [line.strip() for line in stripped.splitlines() if line.strip()]
    return len(lines) >= 4 and len(set(lines)) <= len(lines) // 3


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())
