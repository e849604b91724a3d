"""Fact extraction by rules: what a customer states is kept; what the safety layer redacted never is."""

from __future__ import annotations

import pytest

from bot.chat.facts import MAX_FACTS, extract_facts, facts_of_turns, merge_facts, recall
from bot.safety.pii import PiiRedactor


@pytest.mark.parametrize(
    ("text", "label", "value"),
    [
        ("Hi, my name is Anna.", "name", "Anna"),
        ("hey im Priya", "name", "Priya"),
        ("hello, my order number is A-1234 and it hasn't shipped yet", "order number", "A-1234"),
        ("Booking reference is KX7P2Q", "booking reference", "KX7P2Q"),
        ("I ordered a pair of running shoes in size 42.", "size", "42"),
        ("it's the mustard yellow one", "colour", "mustard yellow"),
        ("I need to order 6 folding chairs for a party.", "quantity", "6 folding chairs"),
        ("I'm in Leeds. Is picking up in a store an option?", "place", "Leeds"),
        ("My booking is for the 14th of March.", "date", "the 14th of March"),
        ("I'd like the appointment at 3:30 pm on Tuesday please.", "time", "3:30 pm"),
        ("Please deliver to 12 Rose Street, the one with the blue door.", "address", "12 Rose Street"),
        ("I bought the Aurora 2 desk lamp last week and it flickers.", "product", "Aurora 2 desk lamp"),
    ],
)
def test_stated_facts_are_extracted(text: str, label: str, value: str) -> None:
    assert extract_facts(text)[label] == value


def test_small_talk_states_no_facts() -> None:
    assert extract_facts("How do I reset my password in general? I forgot it.") == {}
    assert extract_facts("I'm looking for a gift") == {}


def test_nothing_the_safety_layer_redacts_is_stored() -> None:
    redactor = PiiRedactor()
    text = "I'm Anna, write to anna.smith@example.com or call +44 20 7946 0958, card 4111 1111 1111 1111"
    redacted, kinds = redactor.redact(text)
    assert {"email", "phone", "card"} <= set(kinds)
    facts = extract_facts(redacted)
    assert facts.get("name") == "Anna"
    stored = " ".join(facts.values())
    assert "example.com" not in stored and "7946" not in stored and "1111" not in stored
    assert "[" not in stored


def test_later_statements_replace_earlier_ones_and_the_record_stays_small() -> None:
    facts = facts_of_turns(["my order number is A-1234", "sorry, my order number is B-7790"])
    assert facts["order number"] == "B-7790"
    many = {f"label {n}": str(n) for n in range(30)}
    assert len(merge_facts({}, many)) == MAX_FACTS


@pytest.mark.parametrize(
    ("said", "asked", "value"),
    [
        ("Hi, my name is Anna.", "What is my name?", "Anna"),
        ("my ticket number is TK-4471", "Can you confirm the ticket number I gave you?", "TK-4471"),
        ("I'm moving from Bristol to Glasgow next month.", "Which city am I moving to?", "Glasgow"),
        ("I'm buying a bed for my dog, his name is Biscuit.", "btw whats my dogs name?", "Biscuit"),
    ],
)
def test_a_fact_asked_back_is_recalled(said: str, asked: str, value: str) -> None:
    found = recall(asked, facts_of_turns([said]))
    assert found is not None and value in found.sentence and value in found.values


def test_an_ordinary_question_recalls_nothing() -> None:
    assert recall("How long does shipping usually take?", {"name": "Anna"}) is None
