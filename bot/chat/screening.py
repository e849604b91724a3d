"""The message before it may reach the model: something visible in it, then the input safety checks.

A message of only whitespace, zero-width or control characters gets a short prompt to write a question
and never reaches the model or the history. NUL and the other C0 controls (but tab and line breaks) are
stripped from every message before anything stores it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from bot.chat.audit import SafetyAudit
from bot.chat.deps import Safety
from bot.core.outcome import Outcome, OutcomeKind
from bot.core.texts import EMPTY_INPUT

__all__ = ["InputCheck", "Screened", "has_visible_content", "strip_controls"]

_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"})
_BLANK_LOOKALIKES = frozenset("\u2800\u3164\u115f\u1160\uffa0")  # braille blank, Hangul fillers


def strip_controls(text: str) -> str:
    """`text` without NUL and the other C0 control characters (tab, line feed and return are kept)."""
    return _CONTROLS.sub("", text)


def has_visible_content(text: str) -> bool:
    """Whether any character of `text` would show as something (a letter, digit, symbol, emoji)."""
    return any(
        unicodedata.category(char) not in _INVISIBLE_CATEGORIES and char not in _BLANK_LOOKALIKES
        for char in text
    )


@dataclass(frozen=True, slots=True)
class Screened:
    """The message as it goes on: cleaned and redacted (`text`), or blocked (`refusal` says why)."""

    text: str
    refusal: Outcome | None = None


class InputCheck:
    """Empty messages are turned away; the safety checks redact or refuse the rest (and are audited)."""

    def __init__(self, safety: Safety, audit: SafetyAudit) -> None:
        self._safety = safety
        self._audit = audit

    @staticmethod
    def empty(text: str) -> Outcome | None:
        """The prompt to write a question, for a message with nothing visible in it."""
        return None if has_visible_content(text) else Outcome(OutcomeKind.EMPTY_INPUT, EMPTY_INPUT)

    async def __call__(self, chat_id: int | str, text: str) -> Screened:
        verdict = self._safety.check_input(strip_controls(text))
        await self._audit(chat_id, "in", verdict)
        if not verdict.blocked:
            return Screened(verdict.text)
        refusal = Outcome(OutcomeKind.REFUSED, self._safety.message_for(verdict))
        return Screened(f"[withheld: {','.join(verdict.reasons)}]", refusal)
