"""A worked example's topic carried into a chat that never raised it.

The few-shot examples (bot/prompt/examples.py) show a small model the shape of an answer, and it takes
their subject along: a return label, a receipt, a neighbour taking in a parcel, in answers to "Hello, I
placed an order two weeks ago" or "I'm on the Family plan". A sentence that gives an example's topic away
(`Topic.phrases`) in a chat whose customer raised none of it (`Topic.raised_by`, looked for in all their
messages) is left out; a reply that was nothing else is generated again. The cut keeps the other
sentences word for word, so it is applied while the reply streams.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.chat.sentences import sentences, without_sentences
from bot.prompt.examples import Topic

__all__ = ["Topics"]


@dataclass(frozen=True, slots=True)
class _Compiled:
    phrases: re.Pattern[str]
    raised_by: re.Pattern[str]


def _compiled(topic: Topic) -> _Compiled:
    def whole_words(pattern: str) -> re.Pattern[str]:
        return re.compile(rf"\b(?:{pattern})\b", re.IGNORECASE)

    return _Compiled(whole_words(topic.phrases), whole_words(topic.raised_by))


class Topics:
    """The topics of the examples a chat's prompt showed, against what its customer said."""

    def __init__(self, topics: Sequence[Topic], said: Sequence[str]) -> None:
        """`said`: the customer's messages in this chat, the one being answered among them."""
        text = "\n".join(said)
        self._foreign = [c.phrases for c in map(_compiled, topics) if not c.raised_by.search(text)]

    def foreign(self, sentence: str) -> bool:
        """Whether `sentence` gives away a topic this chat's customer never raised."""
        return any(phrases.search(sentence) for phrases in self._foreign)

    def only_foreign(self, reply: str) -> bool:
        """Whether every sentence of `reply` is about such a topic (nothing would be left)."""
        parts = [part for part in sentences(reply) if part]
        return bool(parts) and all(map(self.foreign, parts))

    def without_foreign(self, reply: str) -> str:
        """`reply` without its sentences about such topics (unchanged if that would leave nothing)."""
        if not any(phrases.search(reply) for phrases in self._foreign):
            return reply
        return without_sentences(reply, self.foreign)
