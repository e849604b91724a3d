"""Grounding with plain strings: figures checked against passages, the extractive fallback, citations."""

from __future__ import annotations

import pytest

from bot.core.domain import Role, Turn
from bot.knowledge.base import Hit, Passage, Retrieval
from bot.knowledge.grounding import (
    NOT_FOUND_TEXT,
    cite,
    extractive_answer,
    facts,
    ground,
    unsupported_facts,
    verify,
)
from bot.prompt.builder import KNOWLEDGE_INSTRUCTIONS, ChatFormat, PromptBuilder

DEPOSIT = Passage(
    "Bike rental guide",
    "Deposit",
    "We hold a deposit of €100 on your card when you pick up the bike. We release it within 3 days of "
    "the bike's return. Lost locks are charged at €25. Questions go to help@pedalo.example or "
    "+1 415 555 0134. Bikes returned late are charged by the hour.",
    "guide.md",
)
HOURS = Passage("Opening hours", "", "We are open daily from 9:00 to 18:30.", "hours.txt")


def found(*passages: Passage, confident: bool = True) -> Retrieval:
    hits = tuple(Hit(p, score=1.0 / (n + 1), coverage=0.9) for n, p in enumerate(passages))
    return Retrieval(hits, confidence=0.9 if confident else 0.1, confident=confident)


def test_facts_are_normalised_for_comparison() -> None:
    assert facts("It costs €4.90, or 4,9 EUR") == {"num:4.9"}
    assert facts("Call +44 20 7946 0321 or mail Help@Shop.example.") == {
        "phone:442079460321",
        "email:help@shop.example",
    }
    assert facts("See https://shop.example/returns.\n1. First step") == {"url:https://shop.example/returns"}


def test_figures_missing_from_the_passages_are_reported() -> None:
    sources = [DEPOSIT.text]
    assert unsupported_facts("The deposit is €100 and is released within 3 days.", sources) == []
    assert unsupported_facts("The deposit is €150.", sources) == ["150"]
    assert unsupported_facts("Call 415 555 0134.", sources) == []  # the number without its country code
    assert unsupported_facts("Write to sales@pedalo.example", sources) == ["sales@pedalo.example"]
    assert unsupported_facts("Open until 19:00", [HOURS.text]) == ["19"]


def test_verify_accepts_a_faithful_paraphrase_and_rejects_inventions() -> None:
    hits = found(DEPOSIT).hits
    question = "How much is the deposit and when is it released?"
    assert verify(question, "We hold a €100 deposit on your card and release it within 3 days.", hits) == []
    assert verify(question, "We hold a €100 deposit; a lost lock costs €25.", hits) == ["out_of_context:25"]
    assert verify(question, "We hold a €100 deposit. We hold a €100 deposit.", hits) == ["repetitive"]
    looping = "We hold a €100 deposit on card card card card card card card card card card."
    assert verify(question, looping, hits) == ["repetitive"]
    assert verify(question, "The deposit is €80 and is released within 3 days.", hits) == ["invented:80"]
    assert "unsupported_words" in verify(question, "Sunny weather makes cycling lovely in Amsterdam.", hits)
    assert verify(question, "We hold a deposit on your card.", hits) == ["missing_key_fact"]
    assert verify(question, "", hits) == ["empty"]


def test_a_reply_without_the_kind_of_figure_asked_for_is_not_used() -> None:
    """Some of the answer's figures are not enough: "when?" needs the hours, not only the e-mail address."""
    mail = Passage(
        "Contact", "", "Write to help@pedalo.example; we answer from 9:00 to 17:00.", "contact.txt"
    )
    hits, question = found(mail).hits, "When do you answer e-mails?"
    assert verify(question, "Write to help@pedalo.example.", hits) == ["missing_asked_figure"]
    assert verify(question, "We answer e-mails from 9:00 to 17:00.", hits) == []


def test_the_question_may_supply_figures() -> None:
    hits = found(DEPOSIT).hits
    assert (
        verify(
            "My order 88123: when is my €100 deposit released?",
            "Order 88123: your €100 deposit is released within 3 days of the bike's return.",
            hits,
        )
        == []
    )


def test_extractive_answer_quotes_the_best_matching_sentences() -> None:
    answer = extractive_answer("When is my deposit released?", DEPOSIT)
    assert answer == (
        "We hold a deposit of €100 on your card when you pick up the bike. "
        "We release it within 3 days of the bike's return."
    )
    assert extractive_answer("lost lock fee", DEPOSIT) == "Lost locks are charged at €25."
    assert extractive_answer("anything", HOURS) == HOURS.text  # short passages are quoted whole


def test_a_quoted_yes_or_no_is_dropped_it_answered_the_faq_entry_not_the_customer() -> None:
    faq = Passage("FAQ", "Do you rent outside the city?", "No. We rent in Lisbon and Porto only.", "faq.csv")
    assert extractive_answer("Can I rent a bike in Porto?", faq) == "We rent in Lisbon and Porto only."
    yes = Passage("FAQ", "Can I pay cash?", "Yes, cash and cards are both fine.", "faq.csv")
    assert extractive_answer("payment methods", yes) == "Cash and cards are both fine."
    assert extractive_answer("north?", Passage("FAQ", "", "Norway too.", "f.csv")) == "Norway too."
    no_cap = Passage("FAQ", "Is data limited?", "No data cap applies to any plan.", "faq.csv")
    assert extractive_answer("data limit", no_cap) == no_cap.text  # a "no" that is part of the fact stays


def test_cite_names_each_source_once() -> None:
    assert cite("Yes.", ["FAQ"]) == "Yes.\n\nSource: FAQ"
    assert cite("Yes.", ["A", "B", "A"]) == "Yes.\n\nSources: A; B"


def test_ground_uses_the_model_answer_when_verified() -> None:
    reply = "We are open every day from 9:00 to 18:30."
    result = ground("When are you open?", reply, found(HOURS, DEPOSIT))
    assert result.verified and result.text == f"{reply}\n\nSource: Opening hours"
    assert result.sources == ("Opening hours",)


def test_ground_falls_back_to_the_passage_when_the_model_invents() -> None:
    result = ground("How much is the deposit?", "The deposit is €250, call 0800 123 4567.", found(DEPOSIT))
    assert not result.verified and result.answered
    assert "€100" in result.text and "250" not in result.text
    assert result.text.endswith("Source: Bike rental guide")
    assert {"invented:250", "invented:08001234567"} <= set(result.problems)


def test_ground_says_so_when_retrieval_is_not_confident() -> None:
    result = ground("Who won the match?", "Team A won 3-1.", found(HOURS, confident=False))
    assert result.text == NOT_FOUND_TEXT and not result.answered and "/operator" in result.text


class _Words:
    """A whitespace tokenizer without a chat template: one token per word, so budgets are easy to read."""

    chat_template = None

    def apply_chat_template(self, conversation: object, **kwargs: object) -> object:
        raise AssertionError("no template")

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(range(len(text.split())))


def _builder(context: int) -> PromptBuilder:
    return PromptBuilder(ChatFormat(_Words()), system_prompt="Be kind.", context_tokens=context)


def test_the_prompt_carries_the_passages_after_the_instructions() -> None:
    prompt = _builder(1000).build(
        [], Turn(Role.USER, "deposit?"), max_new_tokens=10, knowledge=["[A]\nx", "[B]\ny"]
    )
    system = prompt.messages[0][1]
    assert system.startswith("Be kind.\n\n" + KNOWLEDGE_INSTRUCTIONS) and system.endswith("[A]\nx\n\n[B]\ny")


@pytest.mark.parametrize(
    ("context", "passages", "history"),
    [(200, 2, 2), (130, 1, 2), (100, 1, 0), (50, 0, 0)],
)
def test_passages_beyond_the_best_go_before_history_and_the_best_goes_last(
    context: int, passages: int, history: int
) -> None:
    blocks = ["[Best]\n" + "best " * 30, "[Second]\n" + "second " * 30]
    old = [Turn(Role.USER, "old question " * 5), Turn(Role.ASSISTANT, "old answer " * 5)]
    prompt = _builder(context).build(old, Turn(Role.USER, "deposit?"), max_new_tokens=10, knowledge=blocks)
    system = prompt.messages[0][1]
    assert (system.count("[Best]") + system.count("[Second]"), prompt.history_used) == (passages, history)
    assert passages == 0 or "[Best]" in system
