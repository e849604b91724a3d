"""The simulated users: each writes, waits for the reply, pauses and writes again; and the tally of what
they saw, message by message (a second bot message between two of a user's messages is a duplicate, none
is a lost message)."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from bot.transports.telegram.handlers import Texts
from bot_dev.fakes.bot_api import FakeBotApi
from bot_dev.loadtest.report import percentile

__all__ = ["ERROR_TEXTS", "FIRST_USER_ID", "POLL_SECONDS", "QUESTIONS", "Users"]

FIRST_USER_ID = 10_000  # user i writes from private chat FIRST_USER_ID + i
POLL_SECONDS = 0.05
# The apologies the Telegram handlers send when the engine timed out, was busy or failed.
ERROR_TEXTS = {Texts.TIMEOUT: "timeout", Texts.BUSY: "busy", Texts.FAILED: "failed"}

# Benign, varied support questions: no personal data, no insults, nothing a safety check should stop,
# so that every message reaches the model and the load is the real one.
QUESTIONS = (
    "Hi, where is my order? It was supposed to arrive yesterday.",
    "How long does standard delivery usually take?",
    "Can I change the delivery address after placing an order?",
    "How do I return a pair of shoes that do not fit?",
    "When will I get my refund after sending an item back?",
    "I forgot my password. How can I reset it?",
    "Where can I download the invoice for my last purchase?",
    "Do you ship to other countries?",
    "Is express delivery available on weekends?",
    "The parcel arrived damaged. What should I do?",
    "Can I cancel an order that has not shipped yet?",
    "Which payment methods do you accept?",
    "How do I update the billing address on my account?",
    "My discount code is not working at checkout. Can you help?",
    "Can I exchange a jacket for a different size?",
    "How can I track my package?",
    "I was charged twice for the same order. What happens now?",
    "Do you offer gift wrapping?",
    "How do I unsubscribe from your newsletter?",
    "Is there a warranty on your headphones?",
    "What are your customer service opening hours?",
    "Can I pick up my order in a store instead of having it delivered?",
    "An item is missing from my package. What should I do?",
    "How do I delete my account?",
    "Can I add an item to an order I placed this morning?",
    "Why was my payment declined?",
    "Do I need an account to place an order?",
    "How much does shipping cost for small orders?",
    "Can I get a copy of my receipt by mail?",
    "Thanks for your help earlier! One more question: how do returns work for sale items?",
)


@dataclass
class _Chat:
    """One user's chat: how many bot messages had arrived when each user message was sent, and all of them."""

    marks: list[int] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)


class Users:
    """The simulated users and what they saw; only they read the fake, polling it every POLL_SECONDS."""

    def __init__(self, fake: FakeBotApi, users: int, *, think: float, reply_timeout: float) -> None:
        self.fake, self.think, self.reply_timeout = fake, think, reply_timeout
        self.chats = {FIRST_USER_ID + i: _Chat() for i in range(users)}
        self.latencies: list[float] = []
        self._seen = 0

    def collect(self) -> None:
        """File the fake's new sendMessage results under their chats (a list slice: safe across threads)."""
        new = self.fake.sent_messages[self._seen :]
        self._seen += len(new)
        for message in new:
            if (chat := self.chats.get(message["chat"]["id"])) is not None:
                chat.replies.append(str(message.get("text", "")))

    def counts(self) -> tuple[int, int]:
        chats = self.chats.values()
        return sum(len(c.marks) for c in chats), sum(len(c.replies) for c in chats)

    async def user(self, user_id: int, rng: random.Random, deadline: float, bot: asyncio.Task[int]) -> None:
        chat = self.chats[user_id]
        while time.monotonic() < deadline and not bot.done():
            self.collect()
            chat.marks.append(len(chat.replies))
            started = time.monotonic()
            self.fake.send_text(user_id, user_id, rng.choice(QUESTIONS), first_name=f"User{user_id}")
            while len(chat.replies) == chat.marks[-1]:
                if time.monotonic() - started > self.reply_timeout or bot.done():
                    return  # counted as lost; a user left without an answer writes no more
                await asyncio.sleep(POLL_SECONDS)
                self.collect()
            self.latencies.append(time.monotonic() - started)
            pause = rng.expovariate(1 / self.think) if self.think > 0 else 0.0
            await asyncio.sleep(max(0.0, min(pause, deadline - time.monotonic())))

    def tally(self) -> dict[str, Any]:
        """The exactly-once figures, counted message by message, and the latency percentiles."""
        self.collect()
        figures = dict.fromkeys(("sent", "received", "duplicates", "lost"), 0)
        errors: dict[str, int] = {}
        for chat in self.chats.values():
            for start, end in zip(chat.marks, [*chat.marks[1:], len(chat.replies)], strict=True):
                figures["sent"] += 1
                figures["received"] += end > start
                figures["duplicates"] += max(0, end - start - 1)
                figures["lost"] += end == start
            for text in chat.replies:
                if kind := ERROR_TEXTS.get(text):
                    errors[kind] = errors.get(kind, 0) + 1
        latencies = {f"latency_p{p}": percentile(self.latencies, p) for p in (50, 95, 99)}
        figures["engine_errors"] = sum(errors.values())
        return {**figures, **latencies, "engine_errors_by_kind": errors}
