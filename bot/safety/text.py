"""Unicode hygiene for incoming text, and the folded "skeleton" that detectors match against.

`clean` is what goes on to the model and storage: NFKC, minus bidi overrides, invisible tag characters
and zero-width characters used to hide words, while emoji ZWJ sequences, flag tag sequences, ZWNJ and
right-to-left text are kept. `skeleton` is only for matching: case-folded, leetspeak undone, spaced or
dotted letters joined, long letter runs shortened, so "I g n 0 r e" and "fuuuck" are seen for what they are.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["clean", "skeleton", "skeletons"]

_BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_INVISIBLE = "\u200b\u2060\ufeff\u00ad\u180e"
_FLAG_TAGS = re.compile("\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f")
_TAGS = re.compile("[\U000e0000-\U000e007f]")
_DROP = re.compile(f"[{_BIDI_CONTROLS}{_INVISIBLE}]")
_ZWJ = "\u200d"

_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
)
_DOTTED = re.compile(r"\b(?:\w[.\-_*]){2,}\w\b")  # s.h.i.t, f-u-c-k
_SPACED = re.compile(r"\b(?:\w ){2,}\w\b")  # i g n o r e
_RUNS = re.compile(r"(\w)\1{2,}")  # fuuuuck -> fuck (runs of three or more)
_WHITESPACE = re.compile(r"\s+")


def _is_emoji(char: str) -> bool:
    return unicodedata.category(char) == "So" or 0x1F000 <= ord(char) <= 0x1FAFF or char in "\ufe0f\u20e3"


def clean(text: str) -> str:
    """NFKC-normalised text without hidden controls; legitimate emoji sequences and RTL text survive."""
    flags: dict[str, str] = {}

    def keep_flag(match: re.Match[str]) -> str:
        key = f"\x00{len(flags)}\x00"
        flags[key] = match.group(0)
        return key

    text = _FLAG_TAGS.sub(keep_flag, text)
    text = _TAGS.sub("", _DROP.sub("", text))
    if _ZWJ in text:  # keep a joiner only between emoji (family, profession, flag sequences)
        chars = list(text)
        text = "".join(
            c
            for i, c in enumerate(chars)
            if c != _ZWJ or (0 < i < len(chars) - 1 and _is_emoji_near(chars, i))
        )
    text = unicodedata.normalize("NFKC", text)
    for key, flag in flags.items():
        text = text.replace(key, flag)
    return text


def _is_emoji_near(chars: list[str], index: int) -> bool:
    before = chars[index - 1]
    if 0x1F3FB <= ord(before) <= 0x1F3FF or before == "\ufe0f":  # skin tone or presentation selector
        return True
    return _is_emoji(before) and _is_emoji(chars[index + 1])


def skeleton(text: str) -> str:
    """A folded form for matching only (never shown or stored)."""
    folded = unicodedata.normalize("NFKC", text).casefold().replace(_ZWJ, "").replace("\u200c", "")
    folded = _DOTTED.sub(
        lambda m: re.sub(r"[.\-_*]", "", m.group(0)) if _single_letters(m.group(0)) else m.group(0), folded
    )
    folded = _SPACED.sub(lambda m: m.group(0).replace(" ", ""), folded)
    folded = _WHITESPACE.sub(" ", folded)
    folded = folded.translate(_LEET)
    return _RUNS.sub(r"\1", folded)


def skeletons(text: str) -> tuple[str, ...]:
    """The skeleton, plus a variant reading "1" as "l" (leetspeak uses it for both: "ru13s", "1gn0re")."""
    folded = skeleton(text)
    if "1" not in text:
        return (folded,)
    return folded, skeleton(text.replace("1", "l"))


def _single_letters(chain: str) -> bool:
    """'f.u.c.k' is a hidden word; '2.14.0' and 'e-mail' are not."""
    parts = re.split(r"[.\-_*]", chain)
    return all(len(part) == 1 for part in parts) and any(part.isalpha() for part in parts)
