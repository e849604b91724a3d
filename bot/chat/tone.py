"""Condolences where nobody died, apologies for a confusion nobody had.

SmolLM2-135M opens about one reply in twenty with "I'm so sorry for your loss" (a late parcel, a wrong
size, "hi, bit of a problem": 9 to 13 of the 208 replies of every development run). A customer told that
about a kettle reads a bot that did not understand them. Such a sentence is dropped unless the customer's
message speaks of a death or a loss of that kind; a reply that was nothing else is generated again.

It apologises "for the confusion" or "for any misunderstanding" even more often (53 of 208 development
replies on an AVX2 run, 30 of them as the opening words: "I'm sorry for the confusion, but yes, I can
book that"), which reads as if the customer had been muddled. That apology is cut out, sentence or
clause, unless the customer's message speaks of a confusion or corrects the bot; nothing is generated
again, and the cut keeps the rest of the reply word for word, so it can be applied while streaming.

And it is "so sorry to hear that" when nothing is wrong: 15 of 208 development replies on an AVX-512
EPYC, to "Hi, we are 4 people and would like a table tonight", "I'm shopping for a new laptop", "I
finally found the parcel, it was behind the bins!". Such a sentence is cut out the same way when the
customer's message gives no sign of trouble (a problem, something late, broken or missing, a negation,
a worry, a loss); a reply that was nothing else is generated again. A message that asks for something
written (an apology to a customer, say) keeps it: the sympathy may be what was asked for.

It also talks about itself instead of answering: "As a customer support assistant, I specialize in
providing assistance to customers." (9 of 208 development replies, to "My booking is for the 14th of
March", "Do you usually deliver on weekends?"), or narrows what it does to nothing in particular ("As a
customer support assistant, I can only assist with digital products."). Such a sentence is cut out; when
the role only opens a sentence that goes on to say something ("As a customer support assistant, your
order is available on the 14th of March"), only those opening words go. A reply that was nothing else
is generated again.

And it thanks the customer as a customer would thank it: "I hope you're well. Thanks for your help!" to
"Hello, I placed an order two weeks ago.", "Thanks again for everything!" after an offer of help (7 of
208 development replies). The bot is the one helping, so such a sentence is cut out unless the customer
asked for something written (a thank-you note may be what was asked for); a reply that was nothing else
is generated again.
"""

from __future__ import annotations

import re

from bot.chat.sentences import sentences, without_sentences

__all__ = [
    "misplaced_condolence",
    "misplaced_sympathy",
    "misplaced_thanks",
    "only_role_talk",
    "without_condolence",
    "without_needless_apology",
    "without_role_talk",
    "without_sympathy",
    "without_thanks",
]

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

# "I'm so sorry to hear that." / "I'm really sorry to hear about your move."
_SYMPATHY = re.compile(r"\bsorry\s+to\s+hear\b", re.IGNORECASE)
# any sign that something is wrong or weighs on the customer; with none, sympathy answers nothing
_TROUBLE = re.compile(
    r"\b(?:problems?|issues?|trouble|wrong|broke\w*|damaged?|faulty|defect\w*|late|delay\w*|missing|"
    r"lost|stolen|never|not|no|nothing|\w+n['\u2019]t|cannot|cant|dont|doesnt|didnt|wont|fail\w*|errors?|stuck|"
    r"complain\w*|refund\w*|cancel\w*|return\w*|awful|terrible|horrible|bad|worse|worst|sad|upset|angry|"
    r"annoy\w*|frustrat\w*|disappoint\w*|nervous|worr\w+|anxious|stress\w*|sick|ill|hurt|injur\w*|pain|"
    r"miss(?:ed)?|sorry|unfortunately|died|dead|death|funeral|grie\w+)\b",
    re.IGNORECASE,
)
# "Thanks for your help!", "Thank you again for all your assistance.", "Thanks for everything!"
_THANKS_FOR_HELP = re.compile(
    r"\bthank(?:s|\s+you)(?:\s+(?:again|so\s+much|very\s+much))?\s+for\s+(?:"
    r"(?:all\s+)?(?:your|the)\s+(?:kind\s+)?(?:help|assistance|support)\b|everything\b|helping\s+me\b)",
    re.IGNORECASE,
)
_WRITING = re.compile(r"\b(?:write|draft|compose|rewrite|reword)\b", re.IGNORECASE)

# "As a customer support assistant, " opening a sentence
_ROLE = re.compile(
    r"^\s*as (?:a|an|your) (?:[\w-]+\s+){0,3}(?:assistant|agent|bot|representative|AI)\s*,\s*", re.IGNORECASE
)
# ... going on about itself: "I specialize in", "my primary role is", "I can only assist with"
_ABOUT_ITSELF = re.compile(
    r"(?:I(?:'m| am)?\s+(?:specialized|specialised|specializ\w*|specialis\w*|only|here to|designed|trained|"
    r"programmed)|I\s+can\s+only|my\s+(?:\w+\s+)?(?:role|job|goal|purpose|task|focus)\b)",
    re.IGNORECASE,
)

# "I'm sorry for any confusion." / "I apologize for the misunderstanding, but " / "Sorry for the mix-up and"
_APOLOGY = re.compile(
    r"(?:(?:I'?m|I am|we'?re|we are)\s+)?(?:so\s+|very\s+|really\s+|truly\s+)?"
    r"(?:sorry|apologi[sz]e)\s+for\s+(?:the|any|this|that)\s+(?:confusion|misunderstanding|mix-?up)"
    r"(?:\s*[.!]+\s*|,?\s+(?:but|and)\s+|,\s*)",
    re.IGNORECASE,
)
_CONFUSED = re.compile(
    r"\b(?:confus\w*|misunderst\w*|mix-?up|mixed up|not what I (?:said|asked|meant)|I (?:said|meant)|"
    r"that'?s (?:wrong|not right|incorrect)|you(?:'ve| have)? got it wrong)\b",
    re.IGNORECASE,
)


def without_needless_apology(reply: str, question: str) -> str:
    """`reply` without apologies for a confusion the customer's `question` gives no sign of; a word that
    now opens a sentence gets its capital. Unchanged if nothing else would be left."""
    if _CONFUSED.search(question):
        return reply
    kept, last, opens = "", 0, False
    for match in _APOLOGY.finditer(reply):
        kept += _capitalised(reply[last : match.start()]) if opens else reply[last : match.start()]
        opens = not kept.rstrip() or kept.rstrip()[-1] in ".!?"
        last = match.end()
    if not last:
        return reply
    kept += _capitalised(reply[last:]) if opens else reply[last:]
    return kept if kept.strip() else reply


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def misplaced_condolence(reply: str, question: str) -> bool:
    """Whether `reply` offers condolences that the customer's `question` gives no reason for."""
    return _CONDOLENCE.search(reply) is not None and _BEREAVED.search(question) is None


def without_condolence(reply: str, question: str) -> str:
    """`reply` without its misplaced condolence sentences (unchanged if that would leave nothing)."""
    return _without(reply, _CONDOLENCE, misplaced_condolence(reply, question))


def misplaced_sympathy(reply: str, question: str) -> bool:
    """Whether `reply` is sorry to hear of a trouble the customer's `question` gives no sign of."""
    return (
        _SYMPATHY.search(reply) is not None
        and _TROUBLE.search(question) is None
        and _WRITING.search(question) is None
    )


def without_sympathy(reply: str, question: str) -> str:
    """`reply` without its misplaced "sorry to hear that" sentences (unchanged if nothing else is left)."""
    return _without(reply, _SYMPATHY, misplaced_sympathy(reply, question))


def misplaced_thanks(reply: str, question: str) -> bool:
    """Whether `reply` thanks the customer for their help, unasked for in the customer's `question`."""
    return _THANKS_FOR_HELP.search(reply) is not None and _WRITING.search(question) is None


def without_thanks(reply: str, question: str) -> str:
    """`reply` without its sentences thanking the customer for help (unchanged if nothing else is left)."""
    return _without(reply, _THANKS_FOR_HELP, misplaced_thanks(reply, question))


def _without(reply: str, pattern: re.Pattern[str], misplaced: bool) -> str:
    """`reply` without the sentences `pattern` finds when they are `misplaced` (see `without_sentences`)."""
    return (
        without_sentences(reply, lambda sentence: pattern.search(sentence) is not None)
        if misplaced
        else reply
    )


def _about_itself(sentence: str) -> bool:
    role = _ROLE.match(sentence)
    return role is not None and _ABOUT_ITSELF.match(sentence, role.end()) is not None


def only_role_talk(reply: str) -> bool:
    """Whether every sentence of `reply` is the bot describing its role (nothing else would be left)."""
    parts = [part for part in sentences(reply) if part]
    return bool(parts) and all(map(_about_itself, parts))


def without_role_talk(reply: str) -> str:
    """`reply` without sentences in which it describes its role, and without "As a customer support
    assistant, " before a sentence that says something else (unchanged if nothing else is left)."""
    kept = without_sentences(reply, _about_itself)
    parts = sentences(kept)
    if not any(_ROLE.match(part) and not _about_itself(part) for part in parts):
        return kept
    return " ".join(map(_without_role, parts))


def _without_role(sentence: str) -> str:
    """ "As a customer support assistant, your order ..." -> "Your order ..."."""
    role = _ROLE.match(sentence)
    if role is None or _about_itself(sentence) or not sentence[role.end() :]:
        return sentence
    return _capitalised(sentence[role.end() :])
