"""Few-shot examples for small models: one how-to answer with steps, one requested text written out.

SmolLM2-135M, asked a how-to question, tends to say "contact customer support"; asked to write a message,
it describes one. Two short worked examples before the conversation show the expected shape better than
any instruction. They are generic on purpose (no prices, policies or names a model could copy as facts),
and neither opens with an apology: the model copied "I'm sorry, your parcel is running a little late"
into chats where nothing was late. A reply that copies an example anyway is regenerated
(`bot.chat.likeness`).
Turn them off with FEW_SHOT=false, e.g. for a larger model that does not need them.
"""

from __future__ import annotations

__all__ = ["DEFAULT_EXAMPLES"]

DEFAULT_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "How do I send back something I bought online?",
        "Here is how: 1. Find the return option in your account or the confirmation e-mail. 2. Pack the item "
        "with its receipt. 3. Print the return label, stick it on the parcel and drop it at the post office. "
        "Keep the receipt until the refund arrives.",
    ),
    (
        "Write a short note asking my neighbour to take in a parcel for me.",
        "Hi! A parcel should arrive for me on Friday while I'm at work. Could you take it in for me? Thanks "
        "so much!",
    ),
)
