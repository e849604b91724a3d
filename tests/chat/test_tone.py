"""Condolences where nobody died, apologies for a confusion nobody had, sympathy for a trouble nobody
mentioned and thanks for the customer's help are not sent: the rules on their own, then through
ChatService."""

from __future__ import annotations

import pytest

from bot.chat.sentences import without_sentences
from bot.chat.service import Message
from bot.chat.tone import (
    misplaced_condolence,
    misplaced_sympathy,
    misplaced_thanks,
    only_role_talk,
    without_condolence,
    without_needless_apology,
    without_role_talk,
    without_sympathy,
    without_thanks,
)
from tests.chat.fakes import FakeEngine
from tests.chat.test_copies import ANSWER, service_over


@pytest.mark.parametrize(
    ("reply", "question", "misplaced"),
    [
        ("I'm so sorry for your loss. Restart the router.", "my wifi keeps dropping", True),
        ("Sorry to hear about your loss! Let's find the parcel.", "hi, bit of a problem", True),
        (
            "I'm so sorry for your loss. I can close the account for you.",
            "My dad passed away last month",
            False,
        ),
        ("I'm sorry for the delay. It ships tomorrow.", "where is my order?", False),
        ("A total loss is when the repair costs more than the car.", "what is a total loss?", False),
    ],
)
def test_condolences_are_misplaced_unless_the_customer_speaks_of_a_death(
    reply: str, question: str, misplaced: bool
) -> None:
    assert misplaced_condolence(reply, question) is misplaced


def test_only_the_condolence_sentence_goes() -> None:
    assert (
        without_condolence("I'm so sorry for your loss. Restart the router.", "wifi?")
        == "Restart the router."
    )
    assert without_condolence("Sorry for your loss.", "wifi?") == "Sorry for your loss."  # nothing else: kept


async def test_a_streamed_reply_loses_a_misplaced_condolence_unseen_or_is_generated_again() -> None:
    engine = FakeEngine(f"I'm so sorry for your loss. {ANSWER}")
    reply = service_over(engine).respond(Message(chat_id=1, text="my wifi is slow, what can I try?"))
    shown = "".join([piece async for piece in reply])
    assert shown == (await reply.outcome()).text == ANSWER
    engine = FakeEngine("I'm so sorry for your loss.", ANSWER)
    assert (
        await service_over(engine).respond(Message(chat_id=2, text="hi, bit of a problem")).text() == ANSWER
    )
    assert len(engine.calls) == 2
    engine = FakeEngine("I'm so sorry for your loss. I can close the account for you.")
    text = (
        await service_over(engine).respond(Message(chat_id=3, text="My mum died, close her account")).text()
    )
    assert text.startswith("I'm so sorry for your loss.")


@pytest.mark.parametrize(
    ("reply", "kept"),
    [
        ("I'm sorry for the confusion, but yes, I can book you in.", "Yes, I can book you in."),
        (
            "I'm sorry for any misunderstanding. Hold the button for 10 seconds.",
            "Hold the button for 10 seconds.",
        ),
        ("Thanks! Sorry for any confusion. It takes 2 days.", "Thanks! It takes 2 days."),
        ("Sure, sorry for the confusion, it opens at 9.", "Sure, it opens at 9."),
        ("I'm sorry for the delay. It ships tomorrow.", "I'm sorry for the delay. It ships tomorrow."),
        ("I'm sorry for any confusion.", "I'm sorry for any confusion."),  # nothing else: kept
    ],
)
def test_an_apology_for_a_confusion_nobody_had_is_cut_out(reply: str, kept: str) -> None:
    assert without_needless_apology(reply, "how do I reset my router?") == kept


def test_the_apology_stays_when_the_customer_was_confused_or_corrects_the_bot() -> None:
    for question in ("I'm confused, which one?", "no, I said green, not blue", "you misunderstood me"):
        reply = "I'm sorry for the confusion, the coat is green."
        assert without_needless_apology(reply, question) == reply


async def test_a_streamed_reply_never_shows_the_apology() -> None:
    engine = FakeEngine(f"I'm sorry for the confusion, but {ANSWER[0].lower()}{ANSWER[1:]}", piece_chars=2)
    reply = service_over(engine).respond(Message(chat_id=3, text="my wifi is slow, what can I try?"))
    pieces = [piece async for piece in reply]
    assert "".join(pieces) == (await reply.outcome()).text == ANSWER
    assert len(pieces) > 1, "still streamed, not held back to the end"
    assert len(engine.calls) == 1, "cut out, not generated again"


@pytest.mark.parametrize(
    ("question", "misplaced"),
    [
        ("Hi, we are 4 people and would like a table tonight.", True),
        ("I'm shopping for a new laptop.", True),
        ("I finally found the parcel, it was behind the bins!", True),
        ("My parcel never arrived.", False),
        ("The kettle doesn't switch on", False),
        ("The kettle doesn\u2019t switch on", False),  # a phone's apostrophe
        ("I have a job interview tomorrow and I'm nervous.", False),
        ("I missed my friend's party last night, I feel awful.", False),
        ("hi, bit of a problem", False),
        ("Can you write a short note to a customer whose order was delayed?", False),  # asked-for text
        ("Draft a message to a client who waited a week", False),
    ],
)
def test_sympathy_is_misplaced_when_the_message_gives_no_sign_of_trouble(
    question: str, misplaced: bool
) -> None:
    assert misplaced_sympathy("I'm so sorry to hear that. Here you go.", question) is misplaced


def test_only_the_sympathy_sentence_goes() -> None:
    question = "Hi, we are 4 people and would like a table tonight."
    reply = "I'm so sorry to hear that. I can book a table for four at 8 pm."
    assert without_sympathy(reply, question) == "I can book a table for four at 8 pm."
    assert without_sympathy("I'm so sorry to hear that.", question) == "I'm so sorry to hear that."
    # what turned from the cut sentence goes with it; a reply with nothing cut keeps its line breaks
    assert (
        without_sympathy("I'm so sorry to hear that. However, I can book it.", question) == "I can book it."
    )
    listed = "Sure.\n\n1. Book.\n2. Come."
    assert without_sentences(listed, lambda sentence: "Sorry" in sentence) == listed
    assert without_sympathy("Sorry to hear that. It ships today.", "it arrived broken") == (
        "Sorry to hear that. It ships today."
    )


async def test_a_streamed_reply_loses_misplaced_sympathy_unseen_or_is_generated_again() -> None:
    question = "I'm moving from Bristol to Glasgow next month."
    engine = FakeEngine(f"I'm so sorry to hear that. {ANSWER}", piece_chars=2)
    reply = service_over(engine).respond(Message(chat_id=1, text=question))
    shown = "".join([piece async for piece in reply])
    assert shown == (await reply.outcome()).text == ANSWER
    engine = FakeEngine("I'm so sorry to hear that.", ANSWER)
    assert await service_over(engine).respond(Message(chat_id=2, text=question)).text() == ANSWER
    assert len(engine.calls) == 2
    engine = FakeEngine(f"I'm so sorry to hear that. {ANSWER}")
    text = await service_over(engine).respond(Message(chat_id=3, text="My order arrived damaged")).text()
    assert text == f"I'm so sorry to hear that. {ANSWER}"


@pytest.mark.parametrize(
    ("reply", "kept"),
    [
        (
            "As a customer support assistant, I specialize in providing assistance to customers. "
            "Your booking is on the 14th of March.",
            "Your booking is on the 14th of March.",
        ),
        (
            "As a customer support assistant, my primary role is to assist customers. "
            "We deliver on Saturdays.",
            "We deliver on Saturdays.",
        ),
        (
            "Thanks! As a customer service assistant, I can only assist with digital products. Ask away.",
            "Thanks! Ask away.",
        ),
        (
            "As a customer support assistant, your order is available on the 14th of March.",
            "Your order is available on the 14th of March.",
        ),
        (
            "As a support assistant, I can only assist with orders. However, a kettle is a fine gift.",
            "A kettle is a fine gift.",
        ),
        ("As a gift, a candle is a good choice.", "As a gift, a candle is a good choice."),
        (
            "As a customer support assistant, I specialize in providing assistance to customers.",
            "As a customer support assistant, I specialize in providing assistance to customers.",
        ),  # nothing else: kept (and generated again, below)
    ],
)
def test_talk_about_its_own_role_is_cut_out(reply: str, kept: str) -> None:
    assert without_role_talk(reply) == kept
    assert only_role_talk(reply) is (kept == reply and reply.startswith("As a customer support"))


async def test_a_reply_that_only_describes_its_role_is_generated_again_and_never_shown() -> None:
    role = "As a support assistant, my role is to assist customers."
    engine = FakeEngine(role, ANSWER, piece_chars=2)
    reply = service_over(engine).respond(Message(chat_id=4, text="Do you usually deliver on weekends?"))
    shown = "".join([piece async for piece in reply])
    assert shown == (await reply.outcome()).text == ANSWER
    assert len(engine.calls) == 2
    engine = FakeEngine(f"{role} {ANSWER}")  # in pieces of three characters, within the token budget
    reply = service_over(engine).respond(Message(chat_id=5, text="Do you usually deliver on weekends?"))
    shown = "".join([piece async for piece in reply])
    assert shown == (await reply.outcome()).text == ANSWER
    assert len(engine.calls) == 1


@pytest.mark.parametrize(
    ("reply", "kept"),
    [
        ("I hope you're well. Thanks for your help!", "I hope you're well."),
        ("Just let me know! Thanks again for everything!", "Just let me know!"),
        ("It ships today. Thank you so much for all your assistance.", "It ships today."),
        ("Thanks for your help!", "Thanks for your help!"),  # nothing else: kept (and generated again)
        ("Thanks for your patience. It ships today.", None),
        ("Thanks for helping us improve the shop!", None),  # thanks for feedback
    ],
)
def test_the_bot_thanking_the_customer_for_their_help_is_cut_out(reply: str, kept: str | None) -> None:
    question = "Hello, I placed an order two weeks ago."
    assert without_thanks(reply, question) == (kept or reply)
    assert misplaced_thanks(reply, question) is (kept is not None)
    note = "Write a two-line thank-you note to our courier."  # asked-for text keeps it
    assert without_thanks(reply, note) == reply and not misplaced_thanks(reply, note)


async def test_a_reply_that_only_thanks_the_customer_for_their_help_is_generated_again() -> None:
    question = "Hello, I placed an order two weeks ago."
    engine = FakeEngine("Thanks for your help!", ANSWER, piece_chars=2)
    reply = service_over(engine).respond(Message(chat_id=6, text=question))
    shown = "".join([piece async for piece in reply])
    assert shown == (await reply.outcome()).text == ANSWER
    assert len(engine.calls) == 2
    engine = FakeEngine(f"{ANSWER} Thanks again for everything!", piece_chars=2)
    reply = service_over(engine).respond(Message(chat_id=7, text=question))
    shown = "".join([piece async for piece in reply])
    assert shown == (await reply.outcome()).text == ANSWER
    assert len(engine.calls) == 1
