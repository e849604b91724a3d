"""A worked example's topic is left out of replies in chats whose customer never raised it (topics.py)."""

from __future__ import annotations

from bot.chat.topics import Topics
from bot.prompt.examples import DEFAULT_EXAMPLES

TOPICS = [topic for example in DEFAULT_EXAMPLES for topic in example.topics]


def test_a_sentence_about_an_examples_topic_goes_when_the_customer_never_raised_it() -> None:
    topics = Topics(TOPICS, ["I'm on the Family plan."])
    reply = (
        "As a family plan, I can't take in a parcel. You can change plans in your account. Keep the receipt."
    )
    assert topics.without_foreign(reply) == "You can change plans in your account."
    assert not topics.only_foreign(reply) and topics.only_foreign("Ask your neighbour. Keep the receipt!")
    greeted = Topics(TOPICS, ["Hi, I am Anna"])
    assert greeted.without_foreign("Hi Anna! Thanks for sending me a parcel. How can I help?") == (
        "Hi Anna! How can I help?"
    )
    assert Topics(TOPICS, ["Where is my order?"]).without_foreign("Your parcel is on its way.") == (
        "Your parcel is on its way."
    )
    found = Topics(TOPICS, ["I finally found the parcel, it was behind the bins!"])  # parcels, not neighbours
    assert found.without_foreign("Great news! Thanks, your neighbour.") == "Great news!"


def test_it_stays_when_the_customer_raised_the_topic_in_any_message() -> None:
    reply = "Print the return label and keep the receipt."
    assert Topics(TOPICS, ["Can I send back a jumper?", "ok, what now?"]).without_foreign(reply) == reply
    assert Topics(TOPICS, ["I need a refund"]).without_foreign(reply) == reply
    note = "Could your neighbour take it in?"
    assert Topics(TOPICS, ["I'm away on Friday, who could take the parcel in?"]).without_foreign(note) == note


def test_a_reply_without_such_a_sentence_is_left_exactly_as_it_is() -> None:
    reply = "Here is how:\n1. Open the app.\n2. Tap Track.  Thanks!"
    assert Topics(TOPICS, ["How do I track my parcel?"]).without_foreign(reply) == reply
    assert Topics([], ["hi"]).without_foreign("Keep the receipt.") == "Keep the receipt."
