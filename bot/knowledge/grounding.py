"""Is the model's answer grounded in the retrieved passages? If not, answer from the passages themselves.

A customer who is told a wrong price, phone number or deadline is worse off than one told nothing, and
small models invent such details readily. So a reply is used only if every figure in it (numbers,
prices, times, dates, e-mail addresses, phone numbers, URLs) appears in the passages or the question,
and among the sentences that best answer the question (a price from the next line is the wrong price),
most of its informative words come from the passages, it gives the figure those sentences give, and it
neither repeats itself nor rambles. Otherwise the answer is those sentences, quoted from the passage.
Either way the reply names its source.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from bot.knowledge.base import Grounded, Hit, Passage, Retrieval
from bot.knowledge.corpus import sentences
from bot.knowledge.retrieval import contact_terms, terms

__all__ = [
    "MIN_SUPPORT",
    "NOT_FOUND_TEXT",
    "RANK_DISCOUNT",
    "asked_figure",
    "cite",
    "extract",
    "extractive_answer",
    "facts",
    "ground",
    "unsupported_facts",
    "verify",
]

NOT_FOUND_TEXT = (
    "I'm sorry, I couldn't find this in our help articles, and I'd rather not guess. "
    "Send /operator and a person from our team will take over."
)
MIN_SUPPORT = 0.6  # share of a reply's informative words that must come from the passages or question
EXTRACT_SENTENCES = 2
MAX_REPLY_CHARS = 400  # the prompt asks for two or three sentences; a longer reply has lost its way
RANK_DISCOUNT = 0.8  # a sentence from the n-th passage counts 0.8**n: retrieval's order still matters

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(
    r"\bhttps?://[^\s<>\"')\]]+|\bwww\.[^\s<>\"')\]]+|\b[\w-]+\.(?:com|org|net|example)/[^\s)\]]*"
)
_PHONE = re.compile(r"(?<![\w.])\+?\(?\d[\d ().-]{6,}\d(?![\w])")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
SECOND_SENTENCE = 0.75  # a second sentence is quoted only when it scores nearly as well as the best
FIGURE_BONUS = 0.5  # a sentence with the kind of figure asked for (a price question wants the price)
COSINE_WEIGHT = 2.0  # meaning counts as much as words: cosines spread over ~0.3, word shares over ~1
# what a question asks for, most specific first, and what such a figure looks like in a sentence
_ASKS = (
    ("percent", re.compile(r"\b(?:percent|percentage|discount|how much off|money off)\b|%")),
    ("clock", re.compile(r"\b(?:what time|until when|how late|how early|opening hours|open|close|closes)\b")),
    (
        "duration",
        re.compile(
            r"\b(?:how long|how soon|how quickly|how fast|how many (?:days|weeks|months|years|hours|minutes)|"
            r"how far in advance|how much notice|when will|by when|within)\b"
        ),
    ),
    ("money", re.compile(r"\b(?:how much|cost|costs|price|prices|fee|fees|charge|charged|surcharge)\b")),
    ("number", re.compile(r"\b(?:how many|how often|when|which day|what day|what date|until)\b")),
)
_UNIT = r"(?:business |working |calendar )?(?:days?|weeks?|months?|years?|hours?|minutes?)"
_FIGURES = {
    "percent": re.compile(r"\d\s?%|\bpercent\b"),
    "clock": re.compile(r"\b\d{1,2}[:.]\d{2}\b|\b\d{1,2}\s?(?:am|pm)\b", re.IGNORECASE),
    "duration": re.compile(rf"\b\d+(?:\s*(?:to|-|\u2013)\s*\d+)?\s*{_UNIT}\b", re.IGNORECASE),
    "money": re.compile(
        r"[€$£¥]\s?\d|\d\s?(?:€|eur|euros?|usd|gbp|dollars?|pounds?)\b|\bfree\b", re.IGNORECASE
    ),
    "number": re.compile(r"\d"),
}
# what the question words for a figure become ("how much" -> cost): a sentence sharing only these with the
# question is about some other price, so its figure earns no bonus
_ASKING_TERMS = frozenset(terms("cost"))
_REFERS_BACK = re.compile(r"(?:it|this|that|these|those|they|such)\b", re.IGNORECASE)
_LIST_MARKER = re.compile(r"^\s*\d{1,2}[.)]\s", re.MULTILINE)


_VERDICT = re.compile(r"^(?:yes|no)[.!,]\s+(?=\S)", re.IGNORECASE)


def facts(text: str) -> set[str]:
    """The checkable details of `text`, normalised: 'email:…', 'url:…', 'phone:<digits>', 'num:<n>'."""
    found: set[str] = set()
    text = _LIST_MARKER.sub(" ", text)
    for pattern, kind in ((_EMAIL, "email"), (_URL, "url")):
        for match in pattern.finditer(text):
            found.add(f"{kind}:{match.group().rstrip('.,;:!?/').lower()}")
        text = pattern.sub(" ", text)
    for match in _PHONE.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if len(digits) >= 7:
            found.add(f"phone:{digits}")
    text = _PHONE.sub(lambda m: " " if len(re.sub(r"\D", "", m.group())) >= 7 else m.group(), text)
    found |= {f"num:{n}" for n in _numbers(text)}  # prices, times and dates are numbers too
    return found


def unsupported_facts(reply: str, sources: Iterable[str]) -> list[str]:
    """Details of `reply` found in none of `sources`, in a readable form ('€12.50', '555 0199')."""
    known = set().union(*(facts(source) for source in sources))
    known_phones = [f.removeprefix("phone:") for f in known if f.startswith("phone:")]
    missing = []
    for fact in sorted(facts(reply)):
        if fact in known:
            continue
        kind, _, value = fact.partition(":")
        if kind == "phone" and any(value in phone or phone in value for phone in known_phones):
            continue
        if kind == "num" and f"phone:{value}" in known:
            continue
        missing.append(value)
    return missing


def verify(
    question: str, reply: str, hits: Sequence[Hit], *, weight: Callable[[str], float] | None = None
) -> list[str]:
    """Why `reply` may not be sent as an answer from `hits` (an empty list: it may)."""
    if not reply.strip():
        return ["empty"]
    sources = [question, *(f"{h.passage.label}\n{h.passage.text}" for h in hits)]
    problems = [f"invented:{value}" for value in unsupported_facts(reply, sources)]
    words = terms(reply)
    known = set().union(*(terms(source) for source in sources))
    if not words or sum(w in known for w in words) / len(words) < MIN_SUPPORT:
        problems.append("unsupported_words")
    said = [s.casefold() for s in sentences(reply)]
    looping = len(words) >= 10 and Counter(words).most_common(1)[0][1] / len(words) >= 0.3
    if len(said) != len(set(said)) or looping:  # a sentence twice, or one word a third of the reply
        problems.append("repetitive")
    if hits:
        answer = extract(question, hits, weight=weight)[0]
        key, given = facts(answer), facts(reply)
        if key and not key & given:
            problems.append("missing_key_fact")
        elif (
            (kind := asked_figure(question))
            and _FIGURES[kind].search(answer)
            and not _FIGURES[kind].search(reply)
        ):
            problems.append("missing_asked_figure")  # "when?" answered with an e-mail address but no hours
        # a figure of the passages, but not of the sentences that answer: likely the wrong one (€49 for €29)
        invented = {p.partition(":")[2] for p in problems}
        out_of_context = {f.partition(":")[2] for f in given - key - facts(question)} - invented
        problems += [f"out_of_context:{value}" for value in sorted(out_of_context)]
        if len(reply) > max(MAX_REPLY_CHARS, 2 * len(answer)):
            problems.append("rambling")
    return problems


def extractive_answer(
    question: str, hit: Hit | Passage, *, weight: Callable[[str], float] | None = None
) -> str:
    """The passage's sentences that best answer the question, in their original order.

    Short passages (an FAQ answer) are quoted whole. Otherwise the best sentence, by words and (with
    embeddings) by meaning; a second one only when it scores nearly as well, or when it completes the
    fact: the best sentence lacks the kind of figure the question asks for (a price, a time, a duration)
    and its neighbour has it, or the best sentence refers back ("It", "This") to the one before.
    """
    passage = hit.passage if isinstance(hit, Hit) else hit
    found = sentences(passage.text)
    if len(passage.text) <= 240 or len(found) <= EXTRACT_SENTENCES:
        return _without_verdict(" ".join(found))
    scores = _sentence_scores(question, hit, weight)
    if max(scores) <= 0:
        return _without_verdict(" ".join(found[:EXTRACT_SENTENCES]))
    best = max(range(len(found)), key=lambda i: (scores[i], -i))
    chosen = {best}
    kind = asked_figure(question)
    if kind is not None and not _FIGURES[kind].search(found[best]):
        near = [i for i in (best + 1, best - 1) if 0 <= i < len(found) and _FIGURES[kind].search(found[i])]
        chosen.update(near[:1])
    if best > 0 and _REFERS_BACK.match(found[best]):
        chosen.add(best - 1)
    if len(chosen) == 1:
        second = max((i for i in range(len(found)) if i != best), key=lambda i: scores[i])
        if scores[second] >= SECOND_SENTENCE * scores[best] or _adds_part(
            question, found[best], found[second]
        ):
            chosen.add(second)
    return _without_verdict(" ".join(found[i] for i in sorted(chosen)))


def _without_verdict(answer: str) -> str:
    """The quote without a leading bare "Yes."/"No.": that answered the passage's own question (an FAQ
    entry's), which may be the opposite of the customer's ("Do you ship outside Europe?" - "No. We ship
    to ... Norway ..." quoted to "Do you deliver to Norway?")."""
    rest = _VERDICT.sub("", answer, count=1)
    return rest[:1].upper() + rest[1:] if rest and rest != answer else answer


def extract(
    question: str, hits: Sequence[Hit], *, weight: Callable[[str], float] | None = None
) -> tuple[str, Passage]:
    """The extractive answer from whichever retrieved passage holds the best-matching sentence.

    Retrieval ranks whole passages; the sentence that answers may sit in the second one, so sentences
    of all hits compete, each discounted by its passage's rank.
    """
    best, chosen = float("-inf"), hits[0]
    for rank, hit in enumerate(hits):
        top = max(_sentence_scores(question, hit, weight), default=0.0) * RANK_DISCOUNT**rank
        if top > best:
            best, chosen = top, hit
    return extractive_answer(question, chosen, weight=weight), chosen.passage


def _adds_part(question: str, best: str, other: str) -> bool:
    """Does `other` cover a part of the question `best` does not ("how much is X and when is it Y")?"""
    wanted = set(terms(question))
    added = (set(terms(other)) & wanted) - set(terms(best))
    return len(wanted) >= 3 and len(added) >= len(wanted) / 3


def asked_figure(question: str) -> str | None:
    """Which kind of figure the question asks for: 'money', 'clock', 'duration', 'percent', 'number'."""
    lowered = question.lower()
    return next((kind for kind, pattern in _ASKS if pattern.search(lowered)), None)


def _sentence_scores(question: str, hit: Hit | Passage, weight: Callable[[str], float] | None) -> list[float]:
    """How well each sentence answers, in [0, ~3]: the share of the question's rarity-weighted words it has
    (words of the passage's heading count half), its cosine with the question when the passage has
    sentence embeddings, and a bonus when it gives the kind of figure the question asks for."""
    passage = hit.passage if isinstance(hit, Hit) else hit
    cosines = hit.sentence_similarity if isinstance(hit, Hit) else ()
    found = sentences(passage.text)
    weigh = weight or (lambda _term: 1.0)
    wanted = set(terms(question))
    if not wanted:
        return [0.0 for _ in found]
    total = sum(weigh(t) for t in wanted) or 1.0
    heading = 0.5 * sum(weigh(t) for t in set(terms(passage.label)) & wanted)
    kind = asked_figure(question)
    scores = []
    for number, sentence in enumerate(found):
        own = set(terms(sentence)) | set(contact_terms(sentence))
        score = (sum(weigh(t) for t in own & wanted) + heading) / total
        if kind is not None and own & wanted - _ASKING_TERMS and _FIGURES[kind].search(sentence):
            score += FIGURE_BONUS
        if len(cosines) == len(found):
            score += COSINE_WEIGHT * max(cosines[number], 0.0)
        scores.append(score)
    return scores


def cite(answer: str, titles: Sequence[str]) -> str:
    """The answer followed by 'Source: <title>' (or 'Sources: a; b')."""
    unique = list(dict.fromkeys(titles))
    if not unique:
        return answer
    label = "Source" if len(unique) == 1 else "Sources"
    return f"{answer.rstrip()}\n\n{label}: {'; '.join(unique)}"


def ground(
    question: str, reply: str, retrieval: Retrieval, *, weight: Callable[[str], float] | None = None
) -> Grounded:
    """The reply to send: the model's (verified), the extractive fallback, or an honest "not found"."""
    if not retrieval.confident or not retrieval.hits:
        return Grounded(NOT_FOUND_TEXT, answered=False, problems=("low_confidence",))
    hits = retrieval.hits
    problems = tuple(verify(question, reply, hits, weight=weight))
    if not problems:
        reply_facts = facts(reply)
        backing = [h.passage.title for h in hits if reply_facts & facts(h.passage.text)]
        titles = tuple(dict.fromkeys(backing or [hits[0].passage.title]))
        return Grounded(cite(reply.strip(), titles), sources=titles, verified=True)
    answer, source = extract(question, hits, weight=weight)
    return Grounded(cite(answer, [source.title]), sources=(source.title,), problems=problems)


def _numbers(text: str) -> set[str]:
    """Numbers with ',' as decimal mark read as '.', trailing zeros of decimals dropped (4.90 == 4.9)."""
    found = set()
    for raw in _NUMBER.findall(text):
        value = raw.replace(",", ".") if re.fullmatch(r"\d+,\d{1,2}", raw) else raw.replace(",", "")
        if "." in value and re.fullmatch(r"\d+\.\d+", value):
            value = value.rstrip("0").rstrip(".")
        found.add(value)
    return found
