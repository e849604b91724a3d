"""A reply that copies the previous reply or a worked example, word for word or nearly, is recognised."""

from __future__ import annotations

from bot.chat.likeness import copied_share, copies

EXAMPLE = (
    "Hi! I'm sorry, your parcel is running a little late. It is on its way and should reach you within two "
    "days. Thank you for your patience!"
)


def test_a_near_copy_of_the_previous_reply_is_a_copy() -> None:
    previous = (
        "I'm so sorry to hear about your trip. I hope you're doing well! How's the holiday coming along?"
    )
    again = (
        "I'm so sorry to hear about your trip, but I hope you're doing well. How's the holiday coming along?"
    )
    assert copies(again, [previous])
    assert copies(previous.upper(), [previous])  # case and punctuation aside


def test_an_example_pasted_into_another_chat_is_a_copy_but_its_shape_is_not() -> None:
    pasted = (
        "I'm sorry, your package is running a little late. It is on its way and should reach you within two "
        "days. Thank you for your patience!"
    )
    assert copies(pasted, ["", EXAMPLE])
    steps = "Here is how: 1. Restart your router. 2. Move closer to it. 3. Unplug devices you do not use."
    assert not copies(steps, [EXAMPLE, "Here is how: 1. Find the return option in your account."])
    assert copied_share(steps, EXAMPLE) == 0.0


def test_short_replies_are_compared_word_for_word() -> None:
    assert copies("You're welcome!", ["you're welcome"])
    assert not copies("You're welcome, Anna!", ["You're welcome!"])
    assert not copies("", ["You're welcome!"])
