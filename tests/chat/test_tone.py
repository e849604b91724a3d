"""Condolences where nobody died are not sent: the rule on its own, then through ChatService."""

from __future__ import annotations

import pytest

from bot.chat.service import Message
from bot.chat.tone import misplaced_condolence, without_condolence
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
