"""Whether a reply copies a text it must not repeat: the chat's previous reply, or a worked example's answer.

A 135M model often says nearly what it said one turn earlier ("I'm sorry to hear about your trip..."
again, with a word changed), or copies the few-shot example's answer into a chat it does not fit ("I'm
sorry, your package is running a little late. It is on its way..."). Word-for-word equality misses both.
A reply counts as a copy when 70 % of its word trigrams occur in the other text: a near copy shares
80-90 %, while two honest answers to different questions of one kind ("What is store credit?" after "What
is a refund?") can share half of theirs, and must both be sent.

It also says the customer's own sentence back as if it were its own ("Hi, I'm moving house next week."
to "Hi, I'm moving house next week.": 1 to 6 of 208 development replies), with "too" added ("Hi, I'm
moving house next week too."), or the opening words of it in the customer's voice ("Hello, my order
number is A-1234." to "hello, my order number is A-1234 and it hasn't shipped yet"): such a sentence is
left out.
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
_ADDED = (("too",), ("as", "well"), ("also",))  # what turns the customer's sentence into a reply's "me too"
_OPENING = 4  # the opening words of a customer's sentence said back: at least this many, in the first person
_FIRST_PERSON = frozenset(("i", "i'm", "i've", "i'd", "i'll", "me", "my", "mine", "we", "we're", "our", "us"))


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


def _said_back(sentence: str, said: set[tuple[str, ...]]) -> bool:
    """Whether `sentence` says one of the customer's sentences back: word for word, with "too" added, or
    its first words (four or more) in the first person."""
    words = _words(sentence)
    for added in _ADDED:
        if words[-len(added) :] == added and len(words) - len(added) >= 3:
            words = words[: -len(added)]
            break
    if words in said:
        return True
    voiced = any(word.replace("\u2019", "'") in _FIRST_PERSON for word in words)
    return len(words) >= _OPENING and voiced and any(told[: len(words)] == words for told in said)


def without_echo(reply: str, message: str) -> str:
    """`reply` without the sentences that say one of the customer's `message` sentences (three words or
    more) back (`_said_back`); unchanged if that would leave nothing (see `echoes`)."""
    said = _said(message)
    if not said:
        return reply
    return without_sentences(reply, lambda sentence: _said_back(sentence, said))


def echoes(reply: str, message: str) -> bool:
    """Whether `reply` says nothing but the customer's `message` back: each of its sentences says one of
    the message's back (`_said_back`), or it is the message's opening words, the last one perhaps
    still being written. Such a reply is not sent, and one being streamed is held back meanwhile."""
    said, parts = _said(message), sentences(reply)
    if said and parts and all(_said_back(sentence, said) for sentence in parts):
        return True
    words, whole = _words(reply), _words(message)
    if len(whole) < 3 or not words or len(words) > len(whole):
        return False
    return whole[: len(words) - 1] == words[:-1] and whole[len(words) - 1].startswith(words[-1])
