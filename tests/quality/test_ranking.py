"""Best-of-n ranking: an answer beats a refusal, a loop and a copy of the previous reply."""

from __future__ import annotations

from bot.chat.ranking import rank, relevance, repetition, with_recall
from bot.chat.refusals import looks_like_deflection, looks_like_refusal, without_refusal

QUESTION = "How do I clear my browser cache?"
ANSWER = "Open your browser settings, go to Privacy, choose Clear browsing data and tick Cached images."
REFUSAL = "I'm sorry, but I can't help with that."


def test_a_candidate_that_refuses_loses_to_one_that_answers() -> None:
    # the refusal is the model's most likely candidate: likelihood alone would pick it
    ranked = rank([(REFUSAL, -0.2), (ANSWER, -1.1)], question=QUESTION)
    assert ranked[0].text == ANSWER
    assert "refusal" in ranked[1].reasons


def test_a_looping_candidate_and_a_copy_of_the_previous_reply_lose() -> None:
    loop = "Clear the cache. " * 12
    ranked = rank([(loop, -0.1), (ANSWER, -1.0)], question=QUESTION)
    assert ranked[0].text == ANSWER and repetition(loop) > 0.5
    ranked = rank(
        [(ANSWER, -0.1), ("Press Ctrl+Shift+Delete and clear the cache.", -1.5)],
        question=QUESTION,
        previous_replies=("Hello!", ANSWER.upper()),
    )
    assert ranked[0].text.startswith("Press")


def test_the_candidate_with_the_fact_asked_for_wins() -> None:
    ranked = rank(
        [("Thanks for your message! How can I help?", -0.3), ("Your name is Anna.", -1.2)],
        question="What is my name?",
        facts={"name": "Anna"},
        asked_values=("Anna",),
    )
    assert ranked[0].text == "Your name is Anna."


def test_without_the_fact_the_reply_is_opened_with_it() -> None:
    assert (
        with_recall("How can I help?", "Your name is Anna.", ("Anna",))
        == "Your name is Anna. How can I help?"
    )
    assert with_recall("Sure, Anna!", "Your name is Anna.", ("Anna",)) == "Sure, Anna!"
    assert with_recall("", "Your name is Anna.", ("Anna",)) == "Your name is Anna."


def test_relevance_counts_the_question_words_the_reply_takes_up() -> None:
    assert relevance(QUESTION, ANSWER) > relevance(QUESTION, "We are open from nine to five.")


def test_the_refusal_detector() -> None:
    refusals = [
        REFUSAL,
        "I\u2019m unable to provide information about your order.",
        "As an AI language model, I do not have access to your account.",
        "Unfortunately I am not equipped to answer questions about orders.",
        "I don't have access to personal data.",
        "I'm sorry for any confusion, but as a text-based AI, I can only offer general advice.",
        "Sorry, we are unable to help with that.",
        "I'm afraid I wasn't designed to answer questions about orders.",
    ]
    answers = [
        ANSWER,
        "I can't wait for your parcel to arrive either!",
        "You cannot return opened items after 30 days.",
        "I can help you with that: here are the steps.",
        "Pack it as a gift with tissue paper and a card.",
        "Out of stock means the store is unable to fulfil orders for it until new stock arrives.",
        "The warehouse is not authorised to open parcels, so the courier hands it to you sealed.",
    ]
    assert all(looks_like_refusal(text) for text in refusals)
    assert not any(looks_like_refusal(text) for text in answers)
    assert looks_like_deflection("Please contact customer support for help.")
    assert not looks_like_deflection(ANSWER)


def test_a_refusal_around_an_answer_is_taken_off_and_a_bare_refusal_left_alone() -> None:
    wrapped = (
        "Your ticket number is TK-4471. I'm sorry, but as a customer support assistant, I don't have the "
        "ability to access your account. However, you can check its status in the app under Orders."
    )
    assert without_refusal(wrapped) == (
        "Your ticket number is TK-4471. You can check its status in the app under Orders."
    )
    assert without_refusal(REFUSAL) == REFUSAL
    assert without_refusal(f"{REFUSAL} Have a nice day!") == f"{REFUSAL} Have a nice day!"  # nothing left
    assert without_refusal(ANSWER) == ANSWER
