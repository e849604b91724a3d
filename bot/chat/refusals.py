"""Recognise a reply that refuses or deflects an ordinary request.

Small models often answer a plain support question with "I'm sorry, but I can't help with that" or "please
contact customer support". Best-of-n ranking (`bot.chat.ranking`) uses this to prefer a candidate that
answers, and `bot eval chat` uses the same detector to count refusals, so the figure the eval reports is
the one the ranking optimises. Patterns are anchored on a first-person subject plus a verb of helping, so
"I can't wait to see you", "you cannot return opened items" or a definition such as "out of stock means
the store is unable to fulfil orders" are not refusals.
"""

from __future__ import annotations

import re

from bot.chat.sentences import without_sentences

MIN_KEPT_WORDS = 8  # what is left after the refusal must be an answer, not a closing line

__all__ = ["looks_like_deflection", "looks_like_refusal", "without_refusal"]

_HELP_VERBS = (
    r"(?:help|assist|answer|provide|give|access|see|check|look|share|write|do|fulfil|fulfill|comply|"
    r"process|handle|discuss|offer|generate|create|complete|support|tell|view|retrieve|track|find|"
    r"confirm|remember|recall|store|browse|make|perform|respond)"
)
# "am not", "'m sadly not", "wasn't", "aren't"
_NEGATED = (
    r"(?:(?:am|['\u2019]m|are|['\u2019]re|was|were)\s+(?:\w+\s+){0,2}?not|(?:wasn|weren|aren)['\u2019]?t)"
)
_REFUSALS = [
    # "I can't help", "I'm unable to provide", "I am not able to access", "I won't be able to assist"
    rf"\bI\s*(?:can\s*not|cannot|can['\u2019]?t|could\s*not|couldn['\u2019]?t|am\s+unable\s+to|['\u2019]m\s+unable\s+to|"
    rf"am\s+not\s+able\s+to|['\u2019]m\s+not\s+able\s+to|won['\u2019]?t\s+be\s+able\s+to|will\s+not\s+be\s+able\s+to|"
    rf"am\s+not\s+allowed\s+to|['\u2019]m\s+not\s+allowed\s+to)\s+(?:\w+\s+){{0,2}}?{_HELP_VERBS}\b",
    # "I don't have access to your order", "I do not have the ability to..."
    r"\bI\s*(?:do\s*not|don['\u2019]?t)\s+have\s+(?:access|the\s+(?:ability|capability|means|information)|"
    r"any\s+(?:information|access|way)|personal|real[- ]time)",
    r"\bas\s+an?\s+(?:AI|artificial|language\s+model|virtual|digital)\b",
    # "as a text-based AI", "as an AI-powered assistant"
    r"\bas\s+an?\s+(?:[\w-]+\s+){0,2}(?:AI|chatbot|language\s+model)\b",
    r"\bI\s*(?:am|['\u2019]m)\s+(?:just\s+|only\s+)?an?\s+(?:AI|language\s+model|computer\s+program)\b",
    # "I'm not equipped to", "we are unable to help": said of the bot itself, not of a shop or a courier
    rf"\b(?:I|we)\s*{_NEGATED}\s+(?:equipped|designed|programmed|authori[sz]ed|permitted)\s+to\b",
    r"\b(?:I|we)\s*(?:am|['\u2019]m|are|['\u2019]re)\s+(?:\w+\s+){0,2}?unable\s+to\s+"
    r"(?:help|assist|provide|access|answer|fulfil|fulfill|comply)\b",
    r"\bI\s*(?:must|have\s+to)\s+(?:decline|refuse)\b",
    r"\b(?:beyond|outside)\s+(?:my|the\s+scope\s+of\s+my)\s+(?:capabilities|abilities|scope)\b",
    r"\bI\s*(?:can['\u2019]?t|cannot|can\s*not)\s+(?:fulfil|fulfill|comply\s+with)\b",
]
_DEFLECTIONS = [
    r"\b(?:contact|reach\s+out\s+to|get\s+in\s+touch\s+with|call|email)\s+(?:our|the|your)?\s*"
    r"(?:customer\s+)?(?:support|service|care)(?:\s+team)?\b",
    r"\bcustomer\s+(?:support|service)\s+(?:team|representative|department)\b",
]
_REFUSAL = re.compile("|".join(f"(?:{pattern})" for pattern in _REFUSALS), re.IGNORECASE)
_DEFLECTION = re.compile("|".join(f"(?:{pattern})" for pattern in _DEFLECTIONS), re.IGNORECASE)


def looks_like_refusal(text: str) -> bool:
    """The reply declines to do what was asked ("I'm sorry, I can't help with that", "as an AI...")."""
    return _REFUSAL.search(text) is not None


def looks_like_deflection(text: str) -> bool:
    """The reply sends the customer elsewhere ("please contact customer support") instead of answering."""
    return _DEFLECTION.search(text) is not None


def without_refusal(text: str) -> str:
    """The reply without its refusing sentences, when what is left is an answer of its own ("I'm sorry, as a
    text-based AI I can't access your router. However, you can restart it..." -> "You can restart it...");
    otherwise `text` unchanged. A small model often wraps useful advice in a needless refusal."""
    kept = without_sentences(text, looks_like_refusal)
    if kept == text or len(kept.split()) < MIN_KEPT_WORDS:
        return text
    return kept
