"""Whether a reply copies a text it must not repeat: the chat's previous reply, or a worked example's answer.

A 135M model often says nearly what it said one turn earlier ("I'm sorry to hear about your trip..."
again, with a word changed), or copies the few-shot example's answer into a chat it does not fit ("I'm
sorry, your package is running a little late. It is on its way..."). Word-for-word equality misses both.
A reply counts as a copy when 70 % of its word trigrams occur in the other text: a near copy shares
80-90 %, while two honest answers to different questions of one kind ("What is store credit?" after "What
is a refund?") can share half of theirs, and must both be sent.

It also says the customer's own sentence back as if it were its own ("Hi, I'm moving house next week."
to "Hi, I'm moving house next week.": 1 to 6 of 208 development replies): such a sentence is left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bot.chat.sentences import sentences, without_sentences

__all__ = ["COPY_SHARE", "HOLD_SHARE", "copied_share", "copies", "echoes", "without_echo"]

COPY_SHARE = 0.7  # at least this share of the reply's word trigrams found in the other text: a copy
HOLD_SHARE = 0.5  # a streamed beginning this close to a copy is held back until the rest shows what it is
_MIN_GRAMS = 3  # shorter texts are compared word for word
_WORD = re.compile(r"[a-z0-9]+(?:['\u2019-][a-z0-9]+)*")


def _words(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(text.casefold()))


def _grams(text: str) -> list[tuple[str, ...]]:
    words = _words(text)
    return [tuple(words[i : i + 3]) for i in range(max(0, len(words) - 2))]


def copied_share(text: str, other: str) -> float:
    """The share (0..1) of `text`'s word trigrams that also occur in `other`."""
    grams = _grams(text)
    if len(grams) < _MIN_GRAMS:
        return 1.0 if _words(text) == _words(other) != () else 0.0
    theirs = set(_grams(other))
    return sum(gram in theirs for gram in grams) / len(grams)


def copies(text: str, others: Iterable[str], *, share: float = COPY_SHARE) -> bool:
    """`text` is (nearly) one of `others`: at least `share` of its trigrams found in one of them."""
    return any(other and copied_share(text, other) >= share for other in others)


def _said(message: str) -> set[tuple[str, ...]]:
    """The words of each of the customer's sentences long enough to tell an echo from a greeting back."""
    return {words for sentence in sentences(message) if len(words := _words(sentence)) >= 3}


def without_echo(reply: str, message: str) -> str:
    """`reply` without the sentences that say one of the customer's `message` sentences (three words or
    more) back word for word; unchanged if that would leave nothing (see `echoes`)."""
    said = _said(message)
    if not said:
        return reply
    return without_sentences(reply, lambda sentence: _words(sentence) in said)


def echoes(reply: str, message: str) -> bool:
    """Whether `reply` says nothing but the customer's `message` back: each of its sentences is one of
    the message's (three words or more), or it is the message's opening words, the last one perhaps
    still being written. Such a reply is not sent, and one being streamed is held back meanwhile."""
    said, parts = _said(message), sentences(reply)
    if said and parts and all(_words(sentence) in said for sentence in parts):
        return True
    words, whole = _words(reply), _words(message)
    if len(whole) < 3 or not words or len(words) > len(whole):
        return False
    return whole[: len(words) - 1] == words[:-1] and whole[len(words) - 1].startswith(words[-1])
