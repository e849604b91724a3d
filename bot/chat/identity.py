"""A reply that gives the customer's name as the bot's own.

Told "Hi, I am Anna", a 135M model often answers "Hi, I'm Anna. How can I help you today?": it echoes the
greeting instead of answering it. The customer's name comes from the facts they stated
(`bot.chat.facts`); that sentence is dropped, and a reply that was nothing else is generated again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["claims_name", "without_name_claim"]


def claims_name(reply: str, facts: Mapping[str, str]) -> bool:
    """Whether `reply` gives the customer's own name as the bot's ("Hi, I'm Anna" to Anna): a small model
    echoing a greeting. Such a reply is never shown as it is."""
    name = facts.get("name", "").strip()
    if not name:
        return False
    return re.search(_claim(name), reply, re.IGNORECASE) is not None


def without_name_claim(reply: str, facts: Mapping[str, str]) -> str:
    """`reply` without its sentences that give the customer's name as the bot's (unchanged if that would
    leave nothing)."""
    name = facts.get("name", "").strip()
    if not name:
        return reply
    sentences = re.split(r"(?<=[.!?])\s+", reply.strip())
    kept = [s for s in sentences if not re.search(_claim(name), s, re.IGNORECASE)]
    return " ".join(kept) if kept else reply


def _claim(name: str) -> str:
    return rf"\b(?:i['\u2019]m|i am|my name is|this is|it's|it is)\s+{re.escape(name)}\b"
