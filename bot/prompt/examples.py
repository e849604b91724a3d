"""Few-shot examples for small models: one how-to answer with steps, one requested text written out.

SmolLM2-135M, asked a how-to question, tends to say "contact customer support"; asked to write a message,
it describes one. Two short worked examples before the conversation show the expected shape better than
any instruction. They are generic on purpose (no prices, policies or names a model could copy as facts),
and neither opens with an apology: the model copied "I'm sorry, your parcel is running a little late"
into chats where nothing was late. A reply that copies an example anyway is regenerated
(`bot.chat.likeness`).

The model also carries an example's topic into chats that never raised it: "Please find the return label
on the item and drop it off at your local post office" to "Hello, I placed an order two weeks ago", "I
don't have the option to take in a parcel" to "I'm on the Family plan" (25 of 208 replies of a
development run), "Thanks for sending me a parcel" to "Hi, I am Anna". Each example names the phrases
that give its topic away (`Topic.phrases`) and the words that mean a customer raised it
(`Topic.raised_by`); a reply sentence with such a phrase in a chat whose customer raised none of it is
left out (`bot.chat.topics`).
Turn them off with FEW_SHOT=false, e.g. for a larger model that does not need them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_EXAMPLES", "Topic", "WorkedExample"]


@dataclass(frozen=True, slots=True)
class Topic:
    """Regular expressions (case-insensitive, matched as whole words): what gives an example's topic away in
    a reply, and what in the customer's messages makes it the chat's topic too."""

    phrases: str
    raised_by: str


@dataclass(frozen=True, slots=True)
class WorkedExample:
    question: str
    answer: str
    topics: tuple[Topic, ...] = ()


DEFAULT_EXAMPLES: tuple[WorkedExample, ...] = (
    WorkedExample(
        "How do I send back something I bought online?",
        "Here is how: 1. Find the return option in your account or the confirmation e-mail. 2. Pack the item "
        "with its receipt. 3. Print the return label, stick it on the parcel and drop it at the post office. "
        "Keep the receipt until the refund arrives.",
        (
            Topic(
                phrases=r"return (?:label|option|address)s?|receipts?",
                raised_by=r"return\w*|send (?:it |them )?back|refund\w*|labels?|receipts?|exchange\w*",
            ),
        ),
    ),
    WorkedExample(
        "Write a short note asking my neighbour to take in a parcel for me.",
        "Hi! A parcel should arrive for me on Friday while I'm at work. Could you take it in for me? Thanks "
        "so much!",
        (
            Topic(
                phrases=r"neighbou?rs?|take (?:in (?:a|the|my|your)|(?:it|them|the \w+) in)",
                raised_by=r"neighbou?rs?|take (?:\w+ )?in|away|at work|not (?:be )?(?:at )?home",
            ),
            Topic(
                phrases=r"parcels?",
                raised_by=r"parcels?|packages?|deliver\w*|orders?|ship\w*|post\w*|courier|tracking|arriv\w*|"
                r"send\w*|sent|return\w*|pick\w* up|collect\w*|neighbou?rs?",
            ),
        ),
    ),
)
