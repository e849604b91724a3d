"""Knowledge base: reading and splitting documents, ranking passages, the saved index. No model needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.knowledge.corpus import (
    KnowledgeBaseError,
    SourceFile,
    read_folder,
    sentences,
    split_faq,
    split_markdown,
)
from bot.knowledge.index import KnowledgeBase
from bot.knowledge.retrieval import Bm25, Retriever, is_small_talk, terms

ROOT = Path(__file__).resolve().parents[2]

GUIDE = """# Bike rental guide

Welcome to **Pedalo Rentals**.

## Prices

A city bike costs €15 per day. An e-bike costs €35 per day.

## Deposit

We hold a deposit of €100 on your card and release it within 3 days of the bike's return.
See [our terms](https://pedalo.example/terms).
"""


def test_markdown_is_split_by_heading_and_keeps_the_title() -> None:
    passages = split_markdown(SourceFile("guide.md", GUIDE), max_chars=500)
    assert [(p.title, p.section) for p in passages] == [
        ("Bike rental guide", ""),
        ("Bike rental guide", "Prices"),
        ("Bike rental guide", "Deposit"),
    ]
    assert passages[0].text == "Welcome to Pedalo Rentals."  # emphasis removed
    assert "our terms (https://pedalo.example/terms)" in passages[2].text  # a link keeps its address
    assert passages[1].prompt_block().startswith("[Bike rental guide - Prices]\n")


def test_a_long_section_becomes_several_passages_of_whole_sentences() -> None:
    paragraph = " ".join(f"Rule number {n} says something about bikes." for n in range(40))
    passages = split_markdown(SourceFile("rules.txt", f"Intro.\n\n{paragraph}"), max_chars=300)
    assert len(passages) > 5 and all(len(p.text) <= 300 for p in passages)
    assert all(p.title == "Rules" for p in passages)  # a file without a heading is titled by its name
    assert all(p.text.endswith((".", "bikes.")) for p in passages)


def test_faq_yaml_and_csv_give_one_passage_per_question() -> None:
    yaml_text = "- question: Can kids ride?\n  answer: Yes, from 8 years.\n"
    csv_text = 'Question,Answer\nDo you rent helmets?,"Yes, for €2."\n'
    (from_yaml,) = split_faq(SourceFile("faq.yaml", yaml_text))
    (from_csv,) = split_faq(SourceFile("faq.csv", csv_text))
    assert (from_yaml.title, from_yaml.section, from_yaml.text) == (
        "FAQ",
        "Can kids ride?",
        "Yes, from 8 years.",
    )
    assert (from_csv.section, from_csv.text) == ("Do you rent helmets?", "Yes, for €2.")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("faq.yaml", "- question: a\n  answer: [unclosed\n", "faq.yaml line 3 in KB_PATH is not valid YAML"),
        ("faq.yaml", "question: a\n", "expected a list of entries with 'question' and 'answer'"),
        ("faq.yaml", "- question: Where?\n", "faq.yaml entry 1: 'answer' is missing or empty"),
        ("faq.csv", "q,a\nx,y\n", "must name the columns 'question' and 'answer' (found: q, a)"),
        ("faq.csv", "question,answer\nWhere?,\n", "faq.csv line 2: 'answer' is missing or empty"),
    ],
)
def test_a_broken_faq_names_the_file_and_the_place(name: str, text: str, message: str) -> None:
    with pytest.raises(KnowledgeBaseError, match=re.escape(message)):
        split_faq(SourceFile(name, text))


def test_folder_problems_are_reported_clearly(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeBaseError, match="no such folder"):
        read_folder(tmp_path / "missing")
    with pytest.raises(KnowledgeBaseError, match=r"no documents in it \(expected .md or .txt files"):
        read_folder(tmp_path)
    (tmp_path / "bad.md").write_bytes(b"caf\xe9 au lait")
    with pytest.raises(
        KnowledgeBaseError, match=r"bad.md in KB_PATH is not UTF-8 text \(byte 0xe9 at offset 3\)"
    ):
        read_folder(tmp_path)


def test_unreadable_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "locked.md").write_text("# Locked\n\nText.")

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)  # chmod 000 does not stop root, who runs CI
    with pytest.raises(KnowledgeBaseError, match=r"cannot read locked\.md in KB_PATH: Permission denied"):
        read_folder(tmp_path)


def test_sentences_split_at_sentence_ends_and_list_items() -> None:
    text = "We ship in 2 days. Express costs €9.90.\n- Item one\n- Item two"
    assert sentences(text) == ["We ship in 2 days.", "Express costs €9.90.", "Item one", "Item two"]


def test_terms_stem_and_map_synonyms_both_ways() -> None:
    assert set(terms("How much does shipping cost?")) == set(terms("price of delivery")) == {"cost", "ship"}
    assert terms("Can I send it back?") == ["return"]
    # "package" stems like "packaging" (and means a plan at a service company): not read as "parcel"
    assert not set(terms("in its original packaging")) & set(terms("parcel"))
    assert is_small_talk("Hi there, thanks!") and not is_small_talk("hi, where is my parcel?")


def test_bm25_prefers_the_passage_with_rarer_matching_terms() -> None:
    index = Bm25([["bike", "price"], ["bike", "helmet"], ["bike", "deposit", "card"]])
    scores = index.scores(["deposit", "bike"])
    assert max(scores, key=lambda i: scores[i]) == 2
    assert index.idf("deposit") > index.idf("bike") and index.idf("unknown") > index.idf("deposit")


def test_retrieval_ranks_and_reports_confidence() -> None:
    passages = split_markdown(SourceFile("guide.md", GUIDE), max_chars=500)
    retriever = Retriever(passages)
    found = retriever.search("What does an e-bike cost for a day?", top_k=2, min_score=0.35)
    assert found.hits[0].passage.section == "Prices" and found.confident
    assert found.confidence == pytest.approx(1.0)
    off_topic = retriever.search("Who will win the election?", top_k=2, min_score=0.35)
    assert not off_topic.confident and off_topic.confidence == 0.0
    assert retriever.search("hello!", top_k=2, min_score=0.35).small_talk


def test_the_index_is_saved_and_rebuilt_when_a_document_changes(tmp_path: Path) -> None:
    docs, index_dir = tmp_path / "kb", tmp_path / "index"
    docs.mkdir()
    (docs / "guide.md").write_text(GUIDE)
    base = KnowledgeBase(docs, index_dir=index_dir)
    assert "index built" in base.build()
    assert "index loaded" in KnowledgeBase(docs, index_dir=index_dir).build()
    (docs / "guide.md").write_text(GUIDE.replace("€15", "€17"))
    fresh = KnowledgeBase(docs, index_dir=index_dir)
    assert "index built" in fresh.build()
    assert len(list(index_dir.glob("kb-*.json"))) == 1, "the outdated index is removed"
    assert any("€17" in p.text for p in fresh.passages)


def test_a_broken_reload_keeps_serving_the_previous_version(tmp_path: Path) -> None:
    (tmp_path / "guide.md").write_text(GUIDE)
    base = KnowledgeBase(tmp_path, index_dir=tmp_path / ".index")
    base.build()
    (tmp_path / "faq.yaml").write_text("- question: [\n")
    with pytest.raises(KnowledgeBaseError, match=r"faq\.yaml line 2"):
        base.build()
    assert base.search("e-bike price").confident


def test_the_example_knowledge_base_loads() -> None:
    base = KnowledgeBase(ROOT / "examples" / "kb", index_dir=None)
    base.index_dir = Path("/nonexistent-dir-for-test") / "kb"  # saving fails quietly: still served
    summary = base.build()
    assert "from 11 files" in summary
    titles = {p.title for p in base.passages}
    assert {"Shipping and delivery", "Returns and refunds", "Warranty", "FAQ", "Opening hours"} <= titles
