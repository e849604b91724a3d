"""Replies that refuse, or copy the chat's previous reply or a worked example, are not sent as they are:
the stream is generated once more, best of n picks another candidate. A FakeEngine, a real PromptBuilder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from bot.chat.likeness import echoes, without_echo
from bot.chat.ranking import Embed
from bot.chat.service import ChatService, Message
from bot.prompt import PromptBuilder
from bot.prompt.examples import DEFAULT_EXAMPLES, WorkedExample
from bot.storage.inprocess.store import InProcessStore
from tests.chat.fakes import FakeEngine, FakeFormat, fake_deps

EXAMPLE = WorkedExample(
    "Write a short note for my neighbour.",
    "Hi! A parcel should arrive for me on Friday while I'm at work. Could you take it in for me? Thanks!",
)
EXAMPLES = (EXAMPLE, *DEFAULT_EXAMPLES)  # the shipped ones with their topics, and one more to copy
PARROT = (
    "Hi! A parcel should arrive for you on Friday while I'm at work. Could you take it in for me? Thanks!"
)
ANSWER = "Restart the router, move closer to it and unplug the devices you are not using."


def service_over(engine: FakeEngine, embed: Embed | None = None, **params: object) -> ChatService:
    prompts = PromptBuilder(FakeFormat(), system_prompt="Be brief.", context_tokens=4096, examples=EXAMPLES)  # type: ignore[arg-type]
    deps = fake_deps(engine, InProcessStore(max_turns=20, ttl_seconds=600), embed=embed)
    return ChatService(replace(deps, prompts=prompts, params=replace(deps.params, **params)))  # type: ignore[arg-type]


async def test_a_streamed_reply_that_parrots_a_worked_example_is_regenerated_unseen() -> None:
    engine = FakeEngine(PARROT, ANSWER)
    reply = service_over(engine).respond(Message(chat_id=1, text="hi, my wifi is slow, what can I try?"))
    shown = "".join([piece async for piece in reply])
    assert shown == (await reply.outcome()).text == ANSWER
    assert len(engine.calls) == 2 and engine.calls[-1][1].do_sample


async def test_a_near_copy_of_the_previous_reply_is_regenerated() -> None:
    first = "I'm so sorry to hear about your trip. I hope you're doing well! How is the holiday coming along?"
    again = (
        "I'm so sorry to hear about your trip, but I hope you're doing well. How is the holiday coming along?"
    )
    engine = FakeEngine(first, again, "Here it is: I'm away until Monday and will reply when I'm back.")
    service = service_over(engine)
    assert await service.respond(Message(chat_id=2, text="My holiday was cancelled.")).text() == first
    second = await service.respond(Message(chat_id=2, text="Draft an out-of-office message?")).text()
    assert second.startswith("Here it is") and "Monday" in second


async def test_best_of_n_passes_over_a_parrot_and_a_refusal_and_ranks_with_the_given_embedder() -> None:
    seen: list[Sequence[str]] = []

    def embed(texts: Sequence[str]) -> list[list[float]]:
        seen.append(texts)
        return [[1.0, 0.0] if "router" in text or "wifi" in text else [0.0, 1.0] for text in texts]

    # the FakeEngine gives the first candidate the highest likelihood: the parrot, then the refusal
    engine = FakeEngine(PARROT, "I'm sorry, but I can't help with that.", ANSWER)
    service = service_over(engine, embed, num_candidates=3)  # `embed`: what the wiring passes (MiniLM)
    text = await service.respond(Message(chat_id=3, text="My wifi is slow, what can I try?")).text()
    assert text == ANSWER
    assert seen and seen[0][0] == "My wifi is slow, what can I try?" and len(seen[0]) == 4


async def test_a_streamed_refusal_is_generated_once_more_and_kept_only_when_the_model_insists() -> None:
    refusal = (
        "I'm sorry for any confusion, but as a text-based AI I don't have the ability to help with orders."
    )
    engine = FakeEngine(refusal, ANSWER)
    reply = service_over(engine).respond(Message(chat_id=4, text="My order has not arrived. What can I do?"))
    assert "".join([piece async for piece in reply]) == (await reply.outcome()).text == ANSWER
    stubborn = FakeEngine(refusal)
    text = await service_over(stubborn).respond(Message(chat_id=5, text="Can you check my order?")).text()
    # one more try, then its own words (not a canned note), less the apology for a confusion nobody had
    own_words = "As a text-based AI I don't have the ability to help with orders."
    assert text == own_words and len(stubborn.calls) == 2


async def test_two_near_copies_send_the_less_alike_not_a_canned_note() -> None:
    first = "Measure your waist with a tape measure, keep it snug but not tight, and read it in centimetres."
    near = (
        "Measure your inside leg with a tape measure, keep it snug but not tight, and read it in centimetres."
    )
    nearer = "Measure your waist with a tape measure, keep it snug but not tight, and read it in inches."
    engine = FakeEngine(first, nearer, near)
    service = service_over(engine)
    assert await service.respond(Message(chat_id=6, text="How do I measure my waist?")).text() == first
    second = await service.respond(Message(chat_id=6, text="And my inside leg?")).text()
    assert second == near and len(engine.calls) == 3


async def test_a_reply_from_two_turns_ago_is_not_sent_again() -> None:
    thanks = "Thank you! I have noted it. Is there anything else I can help you with today?"
    engine = FakeEngine(thanks, "Sorry to hear it is late.", thanks, "It should arrive within two days.")
    service = service_over(engine)
    for n, text in enumerate(["Order B-7790.", "I paid with PayPal.", "It was due yesterday."]):
        reply = await service.respond(Message(chat_id=7, text=text, message_id=n)).text()
    assert reply == "It should arrive within two days." and len(engine.calls) == 4


async def test_advice_wrapped_in_a_refusal_is_sent_unwrapped_without_another_try() -> None:
    wrapped = (
        "I'm sorry for any confusion, but as a text-based AI, I don't have the ability to access your router."
        " However, you can restart it, move closer to it and unplug the devices you are not using."
    )
    engine = FakeEngine(wrapped)
    text = (
        await service_over(engine).respond(Message(chat_id=8, text="My wifi is slow, what can I try?")).text()
    )
    assert text == "You can restart it, move closer to it and unplug the devices you are not using."
    assert len(engine.calls) == 1


async def test_a_fact_asked_back_is_answered_alone_when_the_model_refuses() -> None:
    engine = FakeEngine("Thanks, noted!", "I'm sorry, but as an AI I cannot access your order.")
    service = service_over(engine)
    await service.respond(Message(chat_id=9, text="My order number is A-1234.", message_id=1)).text()
    asked = await service.respond(
        Message(chat_id=9, text="Can you repeat my order number?", message_id=2)
    ).text()
    assert asked == "Your order number is A-1234."


async def test_a_reply_that_takes_the_customers_name_as_its_own_loses_that_sentence_unseen() -> None:
    engine = FakeEngine("Hi, I'm Anna. How can I help you today?")
    reply = service_over(engine).respond(Message(chat_id=9, text="Hi, I am Anna"))
    shown = "".join([piece async for piece in reply])
    assert shown == (await reply.outcome()).text == "How can I help you today?"
    assert len(engine.calls) == 1
    # a reply that is nothing but the claim is generated again
    engine = FakeEngine("Hi, I'm Anna!", "Hi Anna! How can I help you today?")
    assert await service_over(engine).respond(Message(chat_id=8, text="Hi, I am Anna")).text() == (
        "Hi Anna! How can I help you today?"
    )
    # any other name is a person's too: the bot does not pretend to be one (tests/chat/test_identity.py)
    engine = FakeEngine("Hi, I'm Emily from the support team. How can I help?")
    assert await service_over(engine).respond(Message(chat_id=10, text="Hi, I am Anna")).text() == (
        "How can I help?"
    )
    assert len(engine.calls) == 1


async def test_asked_for_their_name_the_customer_never_hears_it_as_the_bots() -> None:
    engine = FakeEngine("Thanks, Anna! How can I help?", "Hello, I'm Anna. How can I assist you today?")
    service = service_over(engine)
    await service.respond(Message(chat_id=12, text="Hi, my name is Anna.")).text()
    text = await service.respond(Message(chat_id=12, text="What is my name?")).text()
    assert text.startswith("Your name is Anna") and "I'm Anna" not in text


async def test_the_engine_is_told_to_avoid_the_chat_replies_so_far_but_not_the_examples() -> None:
    engine = FakeEngine("Restart the router first.", ANSWER)
    service = service_over(engine)
    await service.respond(Message(chat_id=3, text="my wifi is slow")).text()
    await service.respond(Message(chat_id=3, text="and what else can I try?")).text()
    first, second = (params for _, params in engine.calls)
    assert first.avoid == ()  # nothing said yet in this chat (the worked examples' shape is to be followed)
    assert second.avoid == ("Restart the router first.",)


def test_the_customers_own_sentence_said_back_is_left_out() -> None:
    message = "Hi, I'm moving house next week."
    assert without_echo("Hi, I'm moving house next week. How can I help?", message) == "How can I help?"
    assert without_echo("Hi, I'm moving house next week.", message) == "Hi, I'm moving house next week."
    assert without_echo("Hi! How can I help?", "Hi!") == "Hi! How can I help?"  # two words: a greeting back


@pytest.mark.parametrize(
    ("message", "reply", "kept"),
    [
        ("Hi, I'm moving house next week.", "Hi, I'm moving house next week too. Good luck!", "Good luck!"),
        ("We love this shop.", "We love this shop as well! Come again.", "Come again."),
        (  # the opening words of the customer's sentence, in their voice
            "hello, my order number is A-1234 and it hasn't shipped yet",
            "Hello, my order number is A-1234. It ships within two days.",
            "It ships within two days.",
        ),
        (  # the bot's own words in the first person about what the customer said: kept
            "hello, my order number is A-1234 and it hasn't shipped yet",
            "I can check order A-1234 for you.",
            "I can check order A-1234 for you.",
        ),
        (  # the customer's opening words in the second person are an answer, not an echo
            "my order number is A-1234 and it hasn't shipped yet",
            "Your order number is A-1234. It ships within two days.",
            "Your order number is A-1234. It ships within two days.",
        ),
        (
            "I need help please",
            "I need help too? Sure. What happened?",
            "I need help too? Sure. What happened?",
        ),
    ],
    ids=["too", "as-well", "opening-words", "own-words", "second-person", "three-words"],
)
def test_the_customers_sentence_said_back_with_too_or_in_part_is_left_out(
    message: str, reply: str, kept: str
) -> None:
    assert without_echo(reply, message) == kept


async def test_a_streamed_reply_never_shows_the_echo() -> None:
    message = "Hi, I'm doing a Sunday roast for friends this weekend."
    engine = FakeEngine(f"{message} {ANSWER}")
    reply = service_over(engine).respond(Message(chat_id=9, text=message))
    pieces = [piece async for piece in reply]
    assert "".join(pieces) == (await reply.outcome()).text == ANSWER and len(pieces) > 1


def test_a_reply_that_only_says_the_message_back_is_an_echo() -> None:
    message = "Just browsing for now, no problem to solve."
    assert echoes("Just browsing for now, no problem to solve.", message)
    assert echoes("just browsing for now no prob", message)  # still being written: held back
    assert not echoes("Just browsing for now, no problem to solve. Enjoy looking around!", message)
    assert not echoes("Enjoy looking around!", message)
    assert not echoes("Hi!", "Hi!") and not echoes("Thanks a lot", "Thanks!")  # short: a greeting back
    moving = "Hi, I'm moving house next week."
    assert echoes("Hi, I'm moving house next week too.", moving)  # nothing of its own: written again


async def test_a_reply_that_only_echoes_the_customer_is_never_shown_and_is_written_again() -> None:
    message = "Just browsing for now, no problem to solve."
    engine = FakeEngine(message, "Enjoy looking around, and ask me whenever you like.")
    reply = service_over(engine).respond(Message(chat_id=12, text=message))
    pieces = [piece async for piece in reply]
    outcome = await reply.outcome()
    assert outcome.text == "".join(pieces) == "Enjoy looking around, and ask me whenever you like."
    assert len(engine.calls) == 2 and "browsing" not in "".join(pieces)


async def test_a_sentence_about_a_worked_examples_topic_the_customer_never_raised_is_left_out() -> None:
    tracking = "You can track it with the link in your dispatch e-mail."
    leak = "Please find the return label on the box and drop it off at the post office."
    regenerated = f"{ANSWER} Keep the receipt."  # the second try gets the same cut
    engine = FakeEngine(f"{tracking} {leak} Thanks for waiting!", f"{leak} Keep your receipt.", regenerated)
    service = service_over(engine)
    reply = service.respond(Message(chat_id=6, text="I have a tracking number, how do I track my parcel?"))
    shown = "".join([piece async for piece in reply])
    assert shown == (await reply.outcome()).text == f"{tracking} Thanks for waiting!"
    # nothing but the example's topic: not shown, generated once more
    reply = service.respond(Message(chat_id=7, text="Hello, I placed an order two weeks ago."))
    assert "".join([piece async for piece in reply]) == ANSWER and len(engine.calls) == 3
    # a customer who raised it, earlier in the chat, gets it as it is
    returns = FakeEngine("Sure, go ahead.", leak)
    service = service_over(returns)
    await service.respond(Message(chat_id=8, text="I want to send back a jumper.")).text()
    assert await service.respond(Message(chat_id=8, text="What do I do now?")).text() == leak
