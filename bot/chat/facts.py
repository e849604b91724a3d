"""Facts the customer stated (name, references, product, colour, size, quantity, place, date, time), by rules.

A 135M model does not reliably look back through the transcript for "my order number is A-1234"; a short
"What the customer told you" line in the system prompt, and a recall sentence when the customer asks for a
fact back, make the memory usable. Facts are extracted from the message *after* the safety layer has
redacted it, and any value holding a redaction marker ("[email]") is dropped, so nothing the safety layer
hides is ever stored. Later statements of the same kind replace earlier ones ("actually my order is B-7").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_FACTS",
    "Recall",
    "extract_facts",
    "facts_of_turns",
    "mentions",
    "merge_facts",
    "recall",
]

MAX_FACTS = 12
_MAX_VALUE = 60

_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|a dozen|dozen"
)
_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday|tomorrow|today|tonight"
_COLOURS = (
    "black|white|grey|gray|red|blue|green|yellow|orange|purple|pink|brown|beige|navy|teal|olive|mustard|"
    "silver|gold|cream|burgundy|maroon|turquoise|ivory|charcoal|khaki|lilac|lavender|mint|coral|tan"
)
_REF_WORDS = (
    "order|booking|ticket|reference|ref|confirmation|tracking|case|invoice|account|membership|voucher|"
    "reservation|policy|serial|model|username|user name|customer|parcel|claim|code|member|loyalty|gift card"
)
_NOT_NAMES = {
    "here", "back", "sorry", "looking", "trying", "having", "not", "just", "from", "in", "at", "on", "a",
    "the", "very", "so", "still", "moving", "going", "writing", "calling", "interested", "new", "fine",
    "good", "ok", "okay", "well", "glad", "happy", "sure", "afraid", "buying", "ordering", "sending",
}  # fmt: skip
_STOP_AFTER = (
    r"(?=\s*(?:[,.;:!?)]|\s(?:and|but|which|that|because|for|from|with|since|last|so|to|in|on|at)\b|$))"
)

# (label, pattern with one group `v`): first match of a label wins within one message
_RULES: list[tuple[str, re.Pattern[str]]] = [
    (
        "name",
        re.compile(
            r"\b(?i:my name is|my name's|call me|i am|i'm|i\u2019m|im|it's|this is|name's)\s+"
            r"(?P<v>[A-Z][a-z'\u2019-]+(?:\s+[A-Z][a-z'\u2019-]+)?)\b(?!\s+(?:Street|Road|Avenue|Lane))"
        ),
    ),
    (
        "reference",
        re.compile(
            rf"\b(?P<k>(?:{_REF_WORDS})(?:\s+(?:number|no\.?|code|id|reference|ref|name))?)"
            r"\s*(?:is|was|:|#|=)?\s*(?:number\s+)?#?(?P<v>[A-Za-z0-9][A-Za-z0-9_-]*\d[A-Za-z0-9_-]*"
            r"|[A-Za-z0-9_-]*\d[A-Za-z0-9_-]*|[a-z]+_[a-z0-9_]+)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "seat",
        re.compile(
            r"\b(?P<k>row|seat|table|room|gate|platform|locker|pitch|cabin|berth|bay)\s+(?:number\s+|no\.?\s*)?"
            r"(?P<v>[A-Z]?\d{1,4}[A-Z]?|[A-Z])\b",
            re.IGNORECASE,
        ),
    ),
    ("code", re.compile(r"\b(?P<v>[A-Z]{1,4}-?\d{2,6}[A-Z]?|[A-Z0-9]*\d[A-Z0-9]*[A-Z][A-Z0-9]{3,})\b")),
    ("size", re.compile(r"\bsize\s+(?P<v>\d{1,3}(?:\.5)?|XXS|XS|S|M|L|XL|XXL|small|medium|large)\b", re.I)),
    (
        "size",
        re.compile(r"\b(?:in|a|size)\s+(?P<v>small|medium|large|extra large|XS|XL|XXL)\b(?!\s+\w+s\b)", re.I),
    ),
    (
        "colour",
        re.compile(
            rf"\b(?P<v>(?:(?:light|dark|pale|bright|deep)\s+)?(?:{_COLOURS})(?:\s+(?:{_COLOURS}))?)\b", re.I
        ),
    ),
    (
        "quantity",
        re.compile(
            rf"\b(?P<v>(?:\d{{1,3}}|{_NUMBER_WORDS})\s+(?!(?:days?|weeks?|hours?|minutes?|years?|months?|"
            r"pm|am|o'clock|times?|percent|cm|mm|kg|km|euros?|pounds?|dollars?|p\.m\.|a\.m\.)\b)"
            r"(?:[a-z-]+\s+){0,2}?(?:[a-z-]+s|people|bags? of [a-z ]+?))" + _STOP_AFTER,
            re.I,
        ),
    ),
    (
        "address",
        re.compile(
            r"\b(?P<v>\d{1,4}\s+[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?\s+(?:Street|St|Road|Rd|Avenue|Ave|Lane|Way|Close|Drive|Square))\b"
        ),
    ),
    ("destination", re.compile(r"\b(?i:to|moving to|going to)\s+(?P<v>[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)\b")),
    (
        "place",
        re.compile(
            r"\b(?i:in|from|near|at|live in|based in)\s+(?P<v>[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)\b",
        ),
    ),
    (
        "date",
        re.compile(
            rf"\b(?P<v>(?:the\s+)?\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTHS})\b|(?:{_MONTHS})\s+\d{{1,2}}"
            rf"(?:st|nd|rd|th)?\b|\d{{4}}-\d{{2}}-\d{{2}}|\d{{1,2}}/\d{{1,2}}(?:/\d{{2,4}})?)",
            re.I,
        ),
    ),
    ("day", re.compile(rf"\b(?:on|for|to|until|by|next|this)\s+(?P<v>{_DAYS})\b", re.I)),
    ("time", re.compile(r"\b(?P<v>\d{1,2}:\d{2}(?:\s*[ap]\.?m\.?)?|\d{1,2}\s*[ap]\.?m\.?)(?![\w])", re.I)),
    (
        "product",
        re.compile(
            r"\b(?:ordered|bought|purchased|buying|return|returning|order|exchange|sending back|about)\s+"
            r"(?:a|an|the|my|some|this|that)\s+(?P<v>(?:pair of\s+)?[A-Za-z0-9'\u2019 -]{3,40}?)"
            + _STOP_AFTER,
        ),
    ),
    ("plan", re.compile(r"\bon the\s+(?P<v>[A-Z][A-Za-z]+(?:\s+[A-Z][A-Za-z]+)?)\s+(?:plan|tier|package)\b")),
    (
        "person",
        re.compile(
            r"\b(?:my|for my|his|her)\s+"
            r"(?P<k>sister|brother|mother|mum|mom|father|dad|daughter|son|wife|husband|friend|partner|dog|cat)"
            r"(?:'s)?"
            r"(?:,)?\s+(?:(?:his|her|its|their)\s+)?(?:name is\s+|is called\s+|called\s+)?"
            r"(?P<v>[A-Z][a-z]+)\b"
        ),
    ),
    ("person", re.compile(r"\b(?:his|her|its) name is\s+(?P<v>[A-Z][a-z]+)\b")),
]
_PLACE_NOT = set(_MONTHS.split("|")) | set(_DAYS.split("|")) | {"i", "the", "my", "paypal", "store"}
_REDACTED = re.compile(r"\[[a-z_]+\]")


def _normal_label(label: str, match: re.Match[str]) -> str:
    groups = match.groupdict()
    if label == "reference" and groups.get("k"):
        words = groups["k"].lower().split()
        return " ".join(words) if len(words) > 1 or words[0] in ("username", "code") else f"{words[0]} number"
    if label == "seat" and groups.get("k"):
        return groups["k"].lower()
    if label == "person" and groups.get("k"):
        return f"{groups['k'].lower()}'s name"
    return label


def _acceptable(label: str, value: str) -> bool:
    lowered = value.lower()
    if _REDACTED.search(value) or len(value) > _MAX_VALUE or not value.strip():
        return False
    if label == "reference" and value.isdigit() and len(value) < 3:  # "order 6 chairs" is a quantity
        return False
    if label == "name":
        return lowered.split()[0] not in _NOT_NAMES and lowered not in _PLACE_NOT
    if label in ("place", "destination"):
        return lowered.split()[0] not in _PLACE_NOT
    return True


def extract_facts(text: str) -> dict[str, str]:
    """label -> value for what `text` (an already redacted customer message) states; first match wins."""
    found: dict[str, str] = {}
    taken: list[tuple[int, int]] = []
    for label, pattern in _RULES:
        for match in pattern.finditer(text):
            value = match.group("v").strip(" ,.'\u2019")
            start, end = match.span("v")
            name = _normal_label(label, match)
            if name in found or any(s < end and start < e for s, e in taken):
                continue
            if name == "code" and any(value in v for v in found.values()):
                continue
            if _acceptable(label, value):
                found[name] = value
                taken.append((start, end))
    return found


def merge_facts(old: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str]:
    """The chat's facts after a message: new values replace old ones; at most MAX_FACTS, newest kept."""
    merged = {label: value for label, value in old.items() if label not in new}
    merged.update(new)
    return dict(list(merged.items())[-MAX_FACTS:])


# -- asking a fact back ----------------------------------------------------------------------------------
_RECALL = re.compile(
    r"\b(?:remind me|repeat|read .{0,30}back|again\b|i gave you|i told you|i sent you|confirm|"
    r"you (?:have|got)|did i (?:say|tell|give|mention|order|ask|send|write|type|quote|book|choose|pick|"
    r"reserve)|what (?:\w+ ){1,2}did i|have i (?:said|told|given)|do you (?:remember|know|have)|"
    r"what(?:'s| is| was) my|"
    r"which .{0,30}\b(?:i|my)\b|who did i|what did i|how many did i|when did i|where did i|"
    r"you (?:have )?noted|what i (?:asked|said|told|ordered|wanted)|what did i (?:ask|say|want)|"
    r"remember my|my name\?|whats my|what's my|which one did i)",
    re.I,
)
_KIND_WORDS: dict[str, tuple[str, ...]] = {
    "name": ("name", "who am i", "called"),
    "size": ("size",),
    "colour": ("colour", "color", "shade"),
    "quantity": ("how many", "how much", "number of", "quantity", "amount"),
    "address": ("street", "address", "deliver to", "where"),
    "place": ("city", "town", "where", "place", "country", "location", "in?"),
    "destination": ("moving to", "going", "to?", "destination", "city", "where", "heading"),
    "date": ("date", "when", "day", "due"),
    "day": ("day", "when", "date", "changing it to"),
    "time": ("time", "when", "what time", "o'clock"),
    "product": ("product", "item", "which one", "what i asked", "what i ordered", "about"),
    "plan": ("plan", "tier", "package"),
    "code": ("code", "reference", "number", "ref", "model", "order", "ticket", "booking"),
}


def _kind_of(label: str) -> str:
    if label.endswith("'s name"):
        return "person"
    return label if label in _KIND_WORDS else "code"


def _score(label: str, question: str) -> int:
    """How strongly the question asks for the fact `label` (0: not at all)."""
    kind = _kind_of(label)
    score = sum(2 for word in label.split() if re.search(rf"\b{re.escape(word)}", question))
    if kind == "person":
        relation = label.split("'")[0]
        score += 3 if relation in question or ("who" in question and "for" in question) else 0
        return score
    if kind == "name" and re.search(r"\b(?:dog|cat|sister|brother|daughter|son|friend)s?\b", question):
        return 0
    score += sum(1 for word in _KIND_WORDS[kind] if word in question)
    return score


@dataclass(frozen=True, slots=True)
class Recall:
    """The answer to "what is my name?": a sentence, and the values a good reply must contain."""

    sentence: str
    values: tuple[str, ...]


def recall(question: str, facts: Mapping[str, str]) -> Recall | None:
    """When the customer asks for something they said ("what is my name?"), the sentence that answers it."""
    lowered = question.lower()
    if not facts or not _RECALL.search(lowered):
        return None
    ranked = sorted(facts.items(), key=lambda item: _score(item[0], lowered), reverse=True)
    label, value = ranked[0]
    if _score(label, lowered) == 0:  # "what did I ask for?": everything they told
        listed = "; ".join(f"{label} {value}" for label, value in facts.items())
        return Recall(f"You told me: {listed}.", tuple(facts.values()))
    kind = _kind_of(label)
    if kind in ("name", "code", "person", "size"):
        return Recall(f"Your {label} is {value}.", (value,))
    if kind == "quantity":
        return Recall(f"You said {value}.", (value,))
    return Recall(f"You told me the {label}: {value}.", (value,))


def facts_of_turns(texts: Iterable[str]) -> dict[str, str]:
    """The facts of several messages, oldest first (later ones win)."""
    facts: dict[str, str] = {}
    for text in texts:
        facts = merge_facts(facts, extract_facts(text))
    return facts


def mentions(reply: str, values: Sequence[str]) -> int:
    """How many of `values` the reply contains (case-insensitive), for ranking candidates."""
    lowered = reply.lower()
    return sum(1 for value in values if value.lower() in lowered)
