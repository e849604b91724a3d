"""Every sentence the bot says to a person on its own (not the model's words), in one place.

Transports and the service import texts from here, so wording is reviewed, translated or tested in one
module. Safety refusals are the exception: their wording is configurable (SAFETY_*_TEXT settings).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = [
    "BOT_DISCLOSURE",
    "EMPTY_INPUT",
    "EMPTY_REPLY_FALLBACK",
    "QUEUE_FULL",
    "QUEUE_STATUS",
    "REPEATED_REPLY",
    "HandoffTexts",
    "SupportTexts",
    "TerminalTexts",
    "Texts",
    "rate_limit_text",
]

EMPTY_REPLY_FALLBACK = "Sorry, I could not put an answer together. Could you rephrase your question?"
EMPTY_INPUT = "Your message looks empty to me. Please write your question in words."
QUEUE_FULL = (
    "I am still answering your earlier messages. Please wait for those answers, then send this one again."
)
REPEATED_REPLY = (
    "I'm afraid I have nothing to add to my last answer. Could you ask in other words, or send /operator "
    "to reach a person?"
)
BOT_DISCLOSURE = "I'm a virtual assistant, not a person."
QUEUE_STATUS = (
    "Many customers are writing right now: you are number {place} in line. Your answer follows here."
)


class Texts:
    """The Telegram transport's own messages."""

    HELP = (
        "Just write your question and I will answer. In groups, mention me or reply to one of my "
        "messages.\n\n/reset or /new - start a new conversation\n/operator - talk to a human colleague\n"
        "/help - this message"
    )
    UNKNOWN_COMMAND = "I don't know that command. Send /help to see what I can do."
    UNSUPPORTED = "Sorry, I can only read text messages. Please type your question."
    RESET = "Done: I have forgotten our conversation. What can I help you with?"
    RESET_FAILED = "Sorry, I could not clear our conversation right now. Please try again in a minute."
    NOT_ALLOWED = "Sorry, this assistant is not available to you."
    TIMEOUT = "Sorry, that took me too long. Please try again, perhaps with a shorter question."
    TOO_LONG = "Your message is too long for me to read. Please shorten it and send it again."
    BUSY = "I am helping a lot of people right now. Please try again in a moment."
    FAILED = "Sorry, something went wrong on my side. Please try again."
    ADMINS_ONLY = "Only the bot's admins can reload the knowledge base."
    RELOAD_FAILED = "The knowledge base was not reloaded; the previous version is still in use. Problem: "


class TerminalTexts:
    HELP = "Commands: /reset (or /new) forgets this conversation, /help shows this, /exit (or Ctrl-D) quits."
    CLEARED = "(history cleared: this is a new conversation)"
    NOT_CLEARED = "(could not clear the history: {error})"


class HandoffTexts:
    CONNECTING = (
        "I'm passing our conversation to a colleague. A person will reply here as soon as possible; "
        "everything you write now goes to them."
    )
    ALREADY = "A colleague already has our conversation and will reply here."
    UNAVAILABLE = "Sorry, no human colleague is available here. I'll do my best to help you myself."
    RELEASED = "Our colleague has handed the conversation back to me. How else can I help?"
    TIMED_OUT = (
        "Our colleagues could not reply in time, so I'm back to help. Send /operator to ask for a "
        "person again."
    )
    FAILED = "Sorry, I could not reach my colleagues right now. Please try /operator again in a minute."


class SupportTexts:
    THANKS = "Thanks for your feedback!"
    VOTE_EXPIRED = "Sorry, this answer is too old to rate."
    VOTE_FAILED = "Sorry, I could not save that. Please try again in a minute."
    STALE_BUTTON = "This button no longer works."
    ADMINS_ONLY = "Sorry, /stats is for administrators only."
    NOT_YOUR_ANSWER = "Only the person who asked can rate this answer."
    STATS_PRIVATE = "The statistics quote customers' questions: ask me for /stats in a private chat."
    STATS_FAILED = "Sorry, the statistics are not available right now (the store is unreachable)."
    RELEASE_USAGE = "Reply /release to a relayed message, or send /release <chat id>."
    NOT_HANDED_OFF = "Chat {chat} is not with a person."
    RELEASED = "✅ Chat {chat} ({name}) is back with the bot."
    TIMED_OUT = "⏱ Chat {chat} ({name}) went back to the bot: no operator reply for {minutes:g} minutes."
    UNDELIVERED = "⚠️ Could not deliver that to chat {chat}: {error}"


def rate_limit_text(retry_after: float, *, daily: bool, now: datetime | None = None) -> str:
    """The notice for a user over a limit: when they may write again."""
    if daily:
        at = (now or datetime.now(UTC)) + timedelta(seconds=retry_after)
        return f"You have reached today's message limit. You can write again after {at:%H:%M} UTC."
    seconds = max(1, round(retry_after))
    return f"You are sending messages a little too fast. Please wait {seconds} seconds and try again."
