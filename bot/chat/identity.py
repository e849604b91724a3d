"""Who the bot says it is: a virtual assistant, never a person, never the customer, never "[Your Name]".

A 135M model echoes greetings ("Hi, I'm Anna" to Anna), gives itself a human name ("I'm Emily. How can I
assist you today?"), answers "Are you a real person or a bot?" with "I'm a real person", and signs chat
replies like letters ("Best regards, [Your Name]"). A customer must never be told a bot is a person, and
a placeholder signature reads as broken. So:

- sentences in which the bot names itself or says it is human are dropped (`without_false_identity`), and
  a reply that was nothing else is generated again (`claims_identity` makes it unfit);
- a customer who asks whether they talk to a bot gets `BOT_DISCLOSURE` first (`disclosure`, used like a
  recalled fact by the ranking);
- a letter-style sign-off with a placeholder or a made-up name is removed (`unsigned`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from bot.chat.facts import Recall
from bot.chat.sentences import sentences, without_sentences
from bot.core.texts import BOT_DISCLOSURE

__all__ = ["claims_identity", "disclosure", "unsigned", "without_false_identity"]

_SELF = r"\b(?i:i['\u2019]m|i am|my name is|my name's|this is)\s+"
# a capitalised word after "I'm" that is not a name ("I'm Sorry", "I'm Here to help")
_NOT_NAMES = frozenset(
    {
        "sorry", "glad", "happy", "here", "not", "so", "just", "really", "afraid", "unable", "able",
        "available", "an", "a", "the", "always", "still", "very", "excited", "thrilled", "delighted",
        "pleased", "ready", "sure",
    }
)  # fmt: skip
_SELF_NAMED = re.compile(_SELF + r"(?P<name>[A-Z][a-z]+)\b(?=\s*(?:[.,!]|$|and\b|from\b|here\b))")
_HUMAN = re.compile(
    r"\b(?:i['\u2019]m|i am)\s+(?:(?:a|an)\s+)?(?:real|actual|live)\s+(?:person|human|agent|people)\b"
    r"|\b(?:i['\u2019]m|i am)\s+(?:a\s+)?human(?:\s+being)?\b"
    r"|\b(?:i['\u2019]m|i am)\s+not\s+(?:a\s+|an\s+)?(?:bot|robot|ai|machine|computer|chatbot|program)\b"
    # a person of some age, sex or role: "I'm a little girl", "I'm your son's teacher"
    r"|\b(?:i['\u2019]m|i am)\s+(?:a|an|your)\s+(?:[\w'\u2019-]+\s+){0,2}(?:girl|boy|woman|man|lady|guy|"
    r"mom|mum|mother|dad|father|wife|husband|sister|brother|son|daughter|kid|child|teenager|student|teacher|"
    r"nurse|doctor|neighbou?r|friend)\b",
    re.IGNORECASE,
)
_ASKS_IF_BOT = re.compile(
    r"\b(?:are|r)\s+(?:you|u)\s+(?:(?:a|an)\s+)?(?:real|human|person|bot|robot|ai|machine|computer|chatbot|"
    r"automated|actual|live)\b"
    r"|\b(?:talking|speaking|chatting|writing)\s+(?:to|with)\s+(?:(?:a|an)\s+)?(?:bot|robot|ai|machine|"
    r"computer|human|real|person|chatbot)\b"
    r"|\bis\s+this\s+(?:(?:a|an)\s+)?(?:bot|robot|ai|human|real person|chatbot|automated)\b",
    re.IGNORECASE,
)
# what a reply that already discloses the bot says
_DISCLOSED = ("virtual assistant", "chatbot", "i'm a bot", "i am a bot", "an ai", "automated assistant")
_CLOSING = (
    r"(?:(?:best|kind|warm|warmest|many)\s+(?:regards|wishes)|regards|sincerely|yours(?:\s+truly)?|cheers|"
    r"best|all the best|thanks|many thanks|thank you|warmly)"
)
# a signature's name: "Pete", "Alex Brown", "Aaron's Mom"
_NAME = r"[A-Z][a-z]+(?:['\u2019]s)?(?:[ \t]+[A-Z][a-z]+){0,2}"
_SIGN_OFF = re.compile(
    rf"(?:(?<=[.!?])\s+|\s*\n\s*|^)\s*{_CLOSING}[,!.]?"
    # a placeholder ("[Your Name]"), or a name on its own line
    r"(?:\s*(?:to\s+[^\n\[]{0,40}[,!.]?\s*)?\n?\s*\[?(?:your|my)\s+(?:(?:full|first|last)\s+)?name\]?"
    r"|[ \t]*\n\s*(?P<who>(?-i:" + _NAME + r")))"
    r"[.!]?\s*$"
    # any short closing line over a bracketed placeholder ("Wishing you the best,\n[Your Name]")
    r"|\n[^\n]{1,60},[ \t]*\n\s*\[(?:your|my)\s+(?:(?:full|first|last)\s+)?name\][.!]?\s*$",
    re.IGNORECASE,
)

# "Thanks again for your kindness,\n\nAlex", "Love,\nPriita", "Yours in particular,\nAlex": a closing line of
# the model's own over a made-up name on the last line (a closing when it has a closing word or 3+ words:
# "Red,\nBlue" ends a list)
_SIGNED = re.compile(
    r"(?:(?<=[.!?])[ \t]+|\n\s*)(?P<line>[^\n,.!?]{1,60}),[ \t]*\n\s*"
    r"(?P<who>" + _NAME + r")[.!]?\s*$"
)
# a closing line of its own with the name after the comma: "...well!\nBest wishes, Aronys Mom" (on the line
# of a sentence, "Glad it worked. Thanks, Alex!" addresses someone)
_SIGNED_LINE = re.compile(rf"\n[ \t]*{_CLOSING},[ \t]+(?P<who>(?-i:{_NAME}))[.!]?\s*$", re.IGNORECASE)
# placeholders to the end, perhaps under a closing line of any words: "...again! Thanks for your
# kindness,\n\n[Your Name]", "Ladies and gentlemen,\n[Your Name]\n[Your Position]"
_PLACEHOLDER = r"\[(?:your|my)\s+[^\]\n]{1,30}\]"
_PLACEHOLDERS = re.compile(
    rf"(?:(?<=[.!?])[ \t]+|\n\s*)(?:[^\n\[.!?]{{1,60}},[ \t]*)?(?:\n\s*)?"
    rf"{_PLACEHOLDER}(?:\s*\n\s*{_PLACEHOLDER})*[.!]?\s*$",
    re.IGNORECASE,
)
_CLOSING_WORD = re.compile(
    r"\b(?:love|care|hugs|cheers|best|regards|wishes|thanks|thank|yours|sincerely|warmly)\b", re.IGNORECASE
)


def claims_identity(reply: str, facts: Mapping[str, str]) -> bool:
    """Whether `reply` names the bot (the customer's name or any other) or says it is human: never shown as
    it is."""
    return any(_false_identity(sentence, facts) for sentence in sentences(reply))


def without_false_identity(reply: str, facts: Mapping[str, str]) -> str:
    """`reply` without its sentences that name the bot or say it is a person (unchanged if that would leave
    nothing)."""
    return without_sentences(reply, lambda sentence: _false_identity(sentence, facts))


def disclosure(question: str) -> Recall | None:
    """The honest answer that opens the reply when the customer asks whether they are talking to a bot."""
    return Recall(BOT_DISCLOSURE, _DISCLOSED) if _ASKS_IF_BOT.search(question) else None


def unsigned(reply: str, facts: Mapping[str, str]) -> str:
    """`reply` without a closing "Best regards, [Your Name]" or a signature with a made-up name ("Best,
    Alex"): a chat reply is not a letter, and a drafted message is the customer's to sign (with their own
    name, which is kept)."""
    match = _SIGN_OFF.search(reply) or _SIGNED_LINE.search(reply) or _PLACEHOLDERS.search(reply)
    if match is None:
        match = _SIGNED.search(reply)
        if match is not None and not (_CLOSING_WORD.search(match["line"]) or len(match["line"].split()) >= 3):
            match = None
    if match is None or match.start() == 0 or match.groupdict().get("who") == facts.get("name", "").strip():
        return reply
    return reply[: match.start()].rstrip()


def _false_identity(sentence: str, facts: Mapping[str, str]) -> bool:
    if _HUMAN.search(sentence):
        return True
    customer = facts.get("name", "").strip()
    if customer and re.search(_SELF + re.escape(customer) + r"\b(?!['\u2019]s)", sentence, re.IGNORECASE):
        return True
    return any(match.group("name").lower() not in _NOT_NAMES for match in _SELF_NAMED.finditer(sentence))
