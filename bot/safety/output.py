"""Checks that only replies need: a leaked canary, verbatim system-prompt passages, degenerate text."""

from __future__ import annotations

import itertools
import re
import secrets
import zlib

__all__ = ["PromptLeakDetector", "babble_start", "is_degenerate", "new_canary"]

_WORD = re.compile(r"\w+")
_LETTER_RUN = re.compile(r"([^\W\d_])\1{9,}")  # ten of the same letter in a row: no word in any language
# a block of up to _MAX_PERIOD words repeated back to back, _MIN_REPEATS times and _MIN_LOOP_WORDS words in
# all
_MAX_PERIOD, _MIN_REPEATS, _MIN_LOOP_WORDS = 12, 4, 8

# a tail of short lines without sentence ends, most of them variants of the one before ("Premium Service",
# "Premiumservice", "Premisesite", "PremiseSites", ...): a small model that lost its way near its token limit
_MIN_BABBLE_LINES, _SHORT_LINE_WORDS = 8, 5
_SENTENCE_END = re.compile(r"[.!?]$")
_DIGITS = re.compile(r"\d+")


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
    """Empty, broken or stuck in a loop: nothing alphanumeric; U+FFFD (bytes the detokeniser could not
    decode); a letter repeated many times ("aaaaaaaaaaaa", in any script); a word or phrase said over and
    over ("I'm sorry. I'm sorry. ..."); long text that compresses extremely well; or one line over and
    over."""
    stripped = text.strip()
    if not any(c.isalnum() for c in stripped) or "\ufffd" in stripped:
        return True
    if _LETTER_RUN.search(stripped) or _loops(_words(stripped)):
        return True
    if len(stripped) >= 200 and len(zlib.compress(stripped.encode())) / len(stripped.encode()) < 0.15:
        return True
    lines = [line.strip() for line in stripped.splitlines() if line.strip()]
    return len(lines) >= 4 and len(set(lines)) <= len(lines) // 3


def babble_start(text: str) -> int | None:
    """Where a babbled tail of `text` begins, or None: its last lines (at least _MIN_BABBLE_LINES of
    them, to the very end but for one closing sentence) are short, end no sentence, and most are
    variants of the line before (the same first four letters, not the same words: "Size 38", "Size 39" is
    a list, not babble). "1. Screenshot Capture / 2. Screencasto / ... / 20. Screel-a-laser" and then
    "You can find these apps at any electronics store." was one reply: the babble and what follows go."""
    lines = [(m.start(), m.group().strip()) for m in re.finditer(r"[^\n]+", text) if m.group().strip()]
    end = len(lines) - (1 if lines and not _short(lines[-1][1]) else 0)
    run = 0
    while run < end and _short(lines[end - 1 - run][1]):
        run += 1
    if run < _MIN_BABBLE_LINES:
        return None
    tail = [line for _start, line in lines[end - run : end]]
    variants = sum(_variant(a, b) for a, b in itertools.pairwise(tail))
    return lines[end - run][0] if 2 * variants >= len(tail) - 1 else None


def _short(line: str) -> bool:
    return len(line.split()) <= _SHORT_LINE_WORDS and not _SENTENCE_END.search(line)


def _variant(a: str, b: str) -> bool:
    a, b = _DIGITS.sub("", a).casefold(), _DIGITS.sub("", b).casefold()
    letters_a, letters_b = [c for c in a if c.isalpha()][:4], [c for c in b if c.isalpha()][:4]
    return a != b and len(letters_a) == 4 and letters_a == letters_b


def _loops(words: list[str]) -> bool:
    """A phrase loop: words[i:i+p] == words[i+p:i+2p] == ... for at least _MIN_REPEATS blocks in a row.

    Lists ("1. Open Settings. 2. Open Account.") and emphasis ("very, very") do not repeat whole blocks
    that often; a model stuck in a loop does.
    """
    for period in range(1, _MAX_PERIOD + 1):
        needed = max(
            period * (_MIN_REPEATS - 1), _MIN_LOOP_WORDS - period
        )  # equal pairs after the first block
        run = 0
        for i in range(len(words) - period):
            run = run + 1 if words[i] == words[i + period] else 0
            if run >= needed:
                return True
    return False


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())
