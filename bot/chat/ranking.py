"""Best of n that picks the best answer, not only the most likely one.

With batching, n sampled candidates cost little more than one; the model's own likelihood, though, prefers
short safe refusals ("I'm sorry, I can't help with that"). Candidates are ranked instead by, in order of
weight: no refusal or deflection of an ordinary request, use of the facts the customer stated (the one they
are asking for, when they ask one back), relevance to the question (word overlap, or cosine similarity when
an embedder is given), no repetition (of itself, of an earlier reply or of a worked example's answer),
then likelihood as the tie-break.
When the customer asks for a fact back and no candidate states it, the reply is opened with the fact
(`with_recall`): a customer who asks for their order number must get it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bot.chat.facts import mentions
from bot.chat.likeness import copies
from bot.chat.refusals import looks_like_deflection, looks_like_refusal

__all__ = ["Embed", "Scored", "rank", "relevance", "repetition", "with_recall"]

# (texts) -> unit vectors, one per text: the process's MiniLM, passed in by the wiring
Embed = Callable[[Sequence[str]], Sequence[Sequence[float]]]

_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
_STOP_WORDS = (
    "a an the and or but if of to in on at for from with by is are was were be been am i you me my your "
    "we our it its this that these those do does did can could would should will what which who how when "
    "where why please thanks thank hi hello hey there so just about as not no yes"
)
_STOP = frozenset(_STOP_WORDS.split())


@dataclass(frozen=True, slots=True)
class Scored:
    text: str
    score: float
    reasons: tuple[str, ...]


def _words(text: str) -> set[str]:
    return {word for word in _WORD.findall(text.lower()) if word not in _STOP and len(word) > 1}


def relevance(question: str, reply: str) -> float:
    """The share of the question's content words the reply takes up (0..1), prefix-matched (ship~shipping)."""
    asked = _words(question)
    if not asked:
        return 0.0
    said = _words(reply)
    hits = sum(1 for word in asked if any(w.startswith(word[:5]) or word.startswith(w[:5]) for w in said))
    return hits / len(asked)


def repetition(text: str) -> float:
    """The share of the reply's word 4-grams that occur more than once (0: none repeat; loops approach 1)."""
    words = _WORD.findall(text.lower())
    grams = [tuple(words[i : i + 4]) for i in range(max(0, len(words) - 3))]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def rank(
    candidates: Sequence[tuple[str, float]],
    *,
    question: str,
    facts: Mapping[str, str] | None = None,
    asked_values: Sequence[str] = (),
    previous_replies: Sequence[str] = (),
    examples: Sequence[str] = (),
    embed: Embed | None = None,
) -> list[Scored]:
    """(text, mean log-prob) candidates, best first. `asked_values`: the facts the question asks back;
    `examples`: the worked examples' answers (a candidate that copies one does not fit this chat)."""
    similarities = _similarities(question, [text for text, _ in candidates], embed)
    scored = []
    for (text, logprob), similarity in zip(candidates, similarities, strict=True):
        score, reasons = 0.0, []
        if not text.strip():
            score -= 20.0
            reasons.append("empty")
        if looks_like_refusal(text):
            score -= 6.0
            reasons.append("refusal")
        if looks_like_deflection(text):
            score -= 3.0
            reasons.append("deflection")
        if asked_values:
            score += 5.0 * mentions(text, asked_values)
        if facts:
            score += 0.5 * min(2, mentions(text, list(facts.values())))
        score += 3.0 * similarity
        looping = repetition(text)
        score -= 8.0 * looping
        if looping > 0.2:
            reasons.append("repetition")
        if copies(text, previous_replies):
            score -= 10.0
            reasons.append("copies an earlier reply")
        if copies(text, examples):
            score -= 6.0
            reasons.append("copies a worked example")
        score += 0.5 * max(-4.0, logprob)  # likelihood breaks ties; a very unlikely reply is a warning sign
        scored.append(Scored(text, score, tuple(reasons)))
    return sorted(scored, key=lambda item: item.score, reverse=True)


def _similarities(question: str, texts: Sequence[str], embed: Embed | None) -> list[float]:
    if embed is None or not texts:
        return [relevance(question, text) for text in texts]
    vectors = embed([question, *texts])
    asked = vectors[0]
    return [max(0.0, sum(a * b for a, b in zip(asked, vector, strict=True))) for vector in vectors[1:]]


def with_recall(reply: str, recall: str | None, asked_values: Sequence[str]) -> str:
    """Open the reply with the recalled fact when it does not already state it."""
    if recall is None or (asked_values and mentions(reply, asked_values)):
        return reply
    return f"{recall} {reply}".strip() if reply.strip() else recall
