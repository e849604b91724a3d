"""Who the bot says it is: never a person, never the customer, never "[Your Name]"; asked, it says it is a
virtual assistant. Rules on their own, then through ChatService with a FakeEngine."""

from __future__ import annotations

import pytest

from bot.chat.identity import claims_identity, disclosure, unsigned, without_false_identity
from bot.chat.service import Message
from bot.core.texts import BOT_DISCLOSURE
from tests.chat.fakes import FakeEngine
from tests.chat.test_copies import service_over

ANNA = {"name": "Anna"}


@pytest.mark.parametrize(
    ("reply", "kept"),
    [
        (
            "Your name is Anna. I'm Emily. How can I assist you today?",
            "Your name is Anna. How can I assist you today?",
        ),
        ("Hi, I'm Anna. How can I help?", "How can I help?"),
        ("I'm a real person. I can help with any request.", "I can help with any request."),
        ("I am not a bot, promise. Ask away!", "Ask away!"),
        (
            "I'm a virtual assistant. I'm a little girl with a special kind of magic.",
            "I'm a virtual assistant.",
        ),
        ("I'm your son's teacher. Blue is a fine colour.", "Blue is a fine colour."),
        (
            "My name is Tom, and I can help with that.",
            "My name is Tom, and I can help with that.",
        ),  # all of it
    ],
)
def test_sentences_that_make_the_bot_a_person_are_dropped(reply: str, kept: str) -> None:
    assert claims_identity(reply, ANNA)
    assert without_false_identity(reply, ANNA) == kept


@pytest.mark.parametrize(
    "reply",
    [
        "I'm sorry, I can't open the parcel. I'm Here to help with the rest.",
        "I'm happy to help, Anna. Restart the router first.",
        "Tell them: this is Anna's order and it is late.",
        "I'm a virtual assistant, but I can explain how returns usually work.",
    ],
)
def test_ordinary_replies_are_not_identity_claims(reply: str) -> None:
    assert not claims_identity(reply, ANNA)
    assert without_false_identity(reply, ANNA) == reply


@pytest.mark.parametrize(
    ("question", "asks"),
    [
        ("Are you a real person or a bot?", True),
        ("am I talking to a human?", True),
        ("is this a bot", True),
        ("r u a robot", True),
        ("Are you open on Sundays?", False),
        ("Are you able to change my address?", False),
        ("I'm talking to my landlord tomorrow", False),
    ],
)
def test_the_question_whether_the_customer_talks_to_a_bot(question: str, asks: bool) -> None:
    assert (disclosure(question) is not None) is asks


@pytest.mark.parametrize(
    ("reply", "sent"),
    [
        ("Hello! I'm here to help.\n\nBest regards,\n[Your Name]", "Hello! I'm here to help."),
        ("Thanks!\n\nBest regards to your business,\nYour Name", "Thanks!"),
        ("I'm away until Monday.\nWarm regards, [Your Last Name]", "I'm away until Monday."),
        (
            "You're welcome. I hope you have a wonderful day!\n\nBest,\nAlex",
            "You're welcome. I hope you have a wonderful day!",
        ),
        (
            "I'm away until Monday.\n\nBest regards,\nAnna",
            "I'm away until Monday.\n\nBest regards,\nAnna",
        ),  # the customer's
        ("Glad it worked. Thanks, Alex!", "Glad it worked. Thanks, Alex!"),  # addressed, not signed
        ("Have a good trip!\n\nWishing you the best of your holiday,\n\n[Your Name]", "Have a good trip!"),
        ("Best regards, [Your Name]", "Best regards, [Your Name]"),  # nothing else: kept
        # closings of the model's own over a made-up name (seen in the eval's replies)
        ("It is safe now. Thanks again for your kindness,\n\nAlex", "It is safe now."),
        ("Hope you enjoy it! Love,\nPriita", "Hope you enjoy it!"),
        ("Enjoy your weekend. Yours in particular,\nAlex", "Enjoy your weekend."),
        ("We can fix it soon. I hope all is well with you,\n\nAlex", "We can fix it soon."),
        ("Let me know.\n\nTake care,\n\nPete", "Let me know."),
        ("We stock these colours:\nNavy,\nRed", "We stock these colours:\nNavy,\nRed"),  # a list
        ("See you soon. Take care,\nAnna", "See you soon. Take care,\nAnna"),  # the customer's
        (
            "Happy to help find it again! Thanks for your kindness,\n\n[Your Name]",
            "Happy to help find it again!",
        ),
        (
            "Best wishes for your future!\n\nLadies and gentlemen,\n[Your Name]\n[Your Position]",
            "Best wishes for your future!",
        ),
        (
            "Write to us at [your email] and we reply.",
            "Write to us at [your email] and we reply.",
        ),  # mid-sentence
        (
            "I hope all is well.\n\nThank you again.\nBest regards,\nAaron's Dad",
            "I hope all is well.\n\nThank you again.",
        ),
        ("I wish you well!\nBest wishes, Aronys Mom", "I wish you well!"),
        (
            "Sure, here it is:\n\nHi all, I'm away.\nBest wishes, Anna",
            "Sure, here it is:\n\nHi all, I'm away.\nBest wishes, Anna",
        ),
    ],
)
def test_a_placeholder_or_made_up_signature_is_left_out(reply: str, sent: str) -> None:
    assert unsigned(reply, ANNA) == sent


async def test_asked_whether_it_is_a_bot_the_reply_says_so_whatever_the_model_claims() -> None:
    engine = FakeEngine("I'm a real person. I can help with orders, returns and delivery questions.")
    text = (
        await service_over(engine).respond(Message(chat_id=1, text="Are you a real person or a bot?")).text()
    )
    assert text == f"{BOT_DISCLOSURE} I can help with orders, returns and delivery questions."
    honest = FakeEngine("I'm a virtual assistant, so ask me anything about your order.")
    text = await service_over(honest).respond(Message(chat_id=2, text="is this a bot?")).text()
    assert text == "I'm a virtual assistant, so ask me anything about your order."  # said once, not twice


async def test_a_streamed_reply_is_sent_without_its_placeholder_signature() -> None:
    engine = FakeEngine("Hello! Tell me what you need and I will help.\n\nBest regards,\n[Your Name]")
    reply = service_over(engine).respond(Message(chat_id=3, text="hello"))
    shown = "".join([piece async for piece in reply])
    assert shown == (await reply.outcome()).text == "Hello! Tell me what you need and I will help."


@pytest.mark.parametrize(
    "closing", ["Best regards,\n[Your Name]", "Best regards,\nAlex", "Take care,\n\nPete"]
)
async def test_a_regenerated_reply_loses_its_sign_off_too(closing: str) -> None:
    """The first reply refused, so another was written: that one reached customers signed "[Your Name]"."""
    answer = "It ships today, and we hope this is just what you needed!"
    engine = FakeEngine("I'm sorry, I'm not able to help with that.", f"{answer}\n\n{closing}", piece_chars=3)
    reply = service_over(engine).respond(Message(chat_id=32, text="when does my order ship?"))
    shown = "".join([piece async for piece in reply])
    assert shown == (await reply.outcome()).text == answer
    assert len(engine.calls) == 2
