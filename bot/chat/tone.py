"""Condolences where nobody died.

SmolLM2-135M opens about one reply in twenty with "I'm so sorry for your loss" (a late parcel, a wrong
size, "hi, bit of a problem": 9 to 13 of the 208 replies of every development run). A customer told that
about a kettle reads a bot that did not understand them. Such a sentence is dropped unless the customer's
message speaks of a death or a loss of that kind; a reply that was nothing else is generated again.
"""

from __future__ import annotations

import re

from bot.chat.sentences import without_sentences

__all__ = ["misplaced_condolence", "without_condolence"]

_CONDOLENCE = re.compile(
    r"\b(?:sorry|condolences)\b[^.!?]{0,30}\b(?:for|about|on)\s+(?:your|the)\s+(?:recent\s+)?loss\b",
    re.IGNORECASE,
)
_BEREAVED = re.compile(
    r"\b(?:died|dead|death|passed away|passed on|funeral|bereave\w*|grie\w+|mourn\w*|loss of|"
    r"lost my (?:mum|mom|mother|dad|father|wife|husband|partner|son|daughter|brother|sister|friend|"
    r"grand\w+|aunt|uncle|baby|dog|cat|pet))\b",
    re.IGNORECASE,
)


def misplaced_condolence(reply: str, question: str) -> bool:
    """Whether `reply` offers condolences that the customer's `question` gives no reason for."""
    return _CONDOLENCE.search(reply) is not None and _BEREAVED.search(question) is None


def without_condolence(reply: str, question: str) -> str:
    """`reply` without its misplaced condolence sentences (unchanged if that would leave nothing)."""
    if not misplaced_condolence(reply, question):
        return reply
    return without_sentences(reply, lambda sentence: _CONDOLENCE.search(sentence) is not None)
