"""The benchmark's scripted support conversations: one fixed system prompt, short customer turns.

Deterministic (no randomness), so two runs ask exactly the same things in the same order.
"""

from __future__ import annotations

__all__ = ["LONG_OPENING", "SYSTEM_PROMPT", "TTFT_PROBES", "USER_TURNS", "user_turn"]

SYSTEM_PROMPT = (
    "You are the customer-support assistant of Northwind Outdoor, an online shop for hiking and camping "
    "gear. Answer in two or three short sentences, politely and precisely. Orders ship within 2 business "
    "days; returns are free within 30 days; support is reachable on weekdays from 9:00 to 18:00."
)

# 10 to 40 tokens each, the kind of thing customers write
USER_TURNS = (
    "Hi, where is my order? I placed it on Monday and have not received any tracking e-mail yet.",
    "Can I return a tent that I have already set up once in my garden?",
    "How long does a refund take after you receive the returned parcel?",
    "Do you ship to Norway, and are there customs fees I should expect?",
    "My sleeping bag zipper broke after two weeks. Is that covered by the warranty?",
    "Can I change the delivery address of an order that has not shipped yet?",
    "Which payment methods do you accept? Is PayPal possible?",
    "I received the wrong size of hiking boots. What should I do now?",
    "Is there a discount for ordering several backpacks for a school group?",
    "How do I reset the password of my customer account?",
    "The parcel arrived damaged. Do I need to send photos somewhere?",
    "Can I pick up my order in a store instead of having it delivered?",
    "Do your rain jackets come with a lifetime guarantee?",
    "What is the difference between the two camping stoves on your website?",
    "I want to cancel my order, please. It is number 48213.",
    "Can I pay by invoice, and how many days do I have to pay it?",
    "Are gift cards available, and do they expire?",
    "The tracking link says delivered, but nothing is at my door. Can you help?",
    "Do you repair trekking poles, or do I have to buy new ones?",
    "Thanks! One last thing: are you open on Saturdays?",
)


# The long conversation's first message: one no other chat of the run sends. Its turn 1 then computes its
# new tokens as every chat's first turn does (only the system prompt is shared), instead of finding the
# whole prompt cached from an earlier phase's chat that opened the same way (that made turn 1 a cache hit
# and the turn 20 / turn 1 ratio a measure of the cache, not of the history's length).
LONG_OPENING = "Hello! I have a few questions about my account and an order I placed last week."

# Time to first token at turn 1 vs turn N: each of these asked once at turn 1 (after the system prompt only)
# and once at turn N (after the long conversation's history), as a branch that does not join the history.
# The same new tokens at both points, so the ratio of the two medians measures the history's cost alone;
# one reply at each point (tens of milliseconds) moved the ratio by half from run to run.
TTFT_PROBES = (
    "Quick question: do you sell replacement tent pegs separately?",
    "Could you tell me whether the headlamps take normal AA batteries?",
    "Is it possible to add a second item to an order I placed today?",
    "Do you offer student discounts on hiking gear at the moment?",
    "How heavy is the two-person tent, roughly, with its poles?",
)


def user_turn(chat: int, turn: int) -> str:
    """The customer's message for `turn` of conversation `chat`: chats start at different questions."""
    return USER_TURNS[(chat * 7 + turn) % len(USER_TURNS)]
