"""Split long replies into Telegram-sized messages.

Telegram counts a message's length in UTF-16 code units (an emoji outside the BMP counts two) and refuses
more than 4096. Splits prefer a paragraph break, then a line break, then a sentence end, then a space,
and never cut a surrogate pair or a grapheme's combining marks off their base character.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["TELEGRAM_MAX_CHARS", "split_text", "utf16_len"]

TELEGRAM_MAX_CHARS = 4096

# paragraph, line, sentence end (Latin and CJK full stops/marks), any space
_SENTENCE_END = "[.!?\u2026\u3002\uff01\uff1f]"
_BREAKS = (
    re.compile(r"\n\s*\n"),
    re.compile(r"\n"),
    re.compile(_SENTENCE_END + r"(?=\s)"),
    re.compile(r"\s"),
)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = TELEGRAM_MAX_CHARS) -> list[str]:
    """Parts of at most `limit` UTF-16 units each, in order, whose concatenation (modulo the whitespace
    at the cuts) is `text`. Empty text gives no parts."""
    parts: list[str] = []
    rest = text.strip()
    while rest:
        if utf16_len(rest) <= limit:
            parts.append(rest)
            break
        window = _prefix_within(rest, limit)
        cut = _best_cut(window)
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    return [part for part in parts if part]


def _prefix_within(text: str, limit: int) -> str:
    """The longest prefix of `text` within `limit` UTF-16 units that does not split a character cluster."""
    units, end = 0, 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            break
        end = index + 1
    # keep combining marks, variation selectors and zero-width joiners with what they modify
    while 0 < end < len(text) and _continues_cluster(text[end]):
        end -= 1
    while end > 0 and text[end - 1] == "\u200d":
        end -= 1
    return text[: max(end, 1)]


def _continues_cluster(char: str) -> bool:
    return unicodedata.combining(char) > 0 or char in "\u200d\ufe0e\ufe0f" or 0x1F3FB <= ord(char) <= 0x1F3FF


def _best_cut(window: str) -> int:
    """Where to end this part: the last good break in the second half of the window, else its end."""
    floor = len(window) // 2
    for pattern in _BREAKS:
        ends = [m.end() for m in pattern.finditer(window) if m.end() > floor]
        if ends:
            return ends[-1]
    return len(window)
