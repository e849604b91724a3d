"""doc2query: questions the model writes per passage, checked, saved in the index, matched by retrieval."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path

import numpy as np
import pytest

from bot.config import load_settings
from bot.core.domain import Role
from bot.knowledge.base import Passage
from bot.knowledge.doc2query import parse_questions, write_questions
from bot.knowledge.index import KnowledgeBase
from bot.llm.local.engine import TransformersEngine
from bot.llm.local.loader import LoadedModel
from bot.wiring.knowledge import add_questions, build_knowledge, question_writer

GUIDE = """# Broadband guide

## Contract

Every plan runs for 18 months. After that it continues month by month and you can leave with 30 days' notice.

## Engineer visits

An engineer visit costs £60 when nobody is at home at the booked time.
"""
CONTRACT = Passage("Broadband guide", "Contract", "Every plan runs for 18 months.", "guide.md")


class ScriptedModel:
    """Answers each instruction with the questions written for the passage it names; counts the calls."""

    def __init__(self, replies: dict[str, str]) -> None:
        self.replies = replies
        self.calls: list[str] = []

    async def __call__(self, system: str, messages: Sequence[tuple[Role, str]]) -> AsyncGenerator[str, None]:
        instruction = messages[-1][1]
        self.calls.append(instruction)
        reply = next((text for section, text in self.replies.items() if f"- {section}\n" in instruction), "")
        for line in reply.splitlines(keepends=True):
            yield line


WRITTEN = {
    "Contract": (
        "1. How long am I tied in to my plan?\n2. Can I cancel my plan?\n3. What's the minimum plan term?"
    ),
    "Engineer visits": (
        "1. What if I miss the engineer or technician?\n2. Do I pay for a missed visit?\n3. Is there a fee?"
    ),
}


class WordEmbedder:
    """A bag-of-words embedding over a fixed vocabulary: enough to tell passages and questions apart."""

    name = "test-words"
    VOCABULARY = ("tied", "term", "cancel", "plan", "months", "engineer", "technician", "fee", "miss", "home")

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        rows = []
        for text in texts:
            row = np.array([text.lower().count(word) for word in self.VOCABULARY], dtype=np.float32) + 0.01
            rows.append((row / np.linalg.norm(row)).tolist())
        return rows


def make_kb(tmp_path: Path, embedder: WordEmbedder | None = None) -> KnowledgeBase:
    docs = tmp_path / "kb"
    docs.mkdir(exist_ok=True)
    if not (docs / "guide.md").exists():
        (docs / "guide.md").write_text(GUIDE)
    base = KnowledgeBase(
        docs, index_dir=tmp_path / "index", embedder=embedder, questions=3, question_model="m"
    )
    base.build()
    return base


def test_the_models_lines_become_checked_questions() -> None:
    reply = (
        "Here are 3 questions:\n"
        "1. How long does the contract run?\n"
        '2) "Is the plan 24 months long?"\n'  # a figure the passage does not give
        "- How long does the contract run?\n"  # the same question again
        "3. Why?\n"  # too short
        "I'm ready to help. What's your next question?\n"  # nothing of the passage in it
        "Q: Can I leave the plan early? Answer: no, it runs for 18 months.\n"
        "What happens after 18 months?\n"
    )
    questions = parse_questions(reply, CONTRACT, 3)
    assert questions == [
        "How long does the contract run?",
        "Can I leave the plan early?",
        "What happens after 18 months?",
    ]
    assert parse_questions(reply, CONTRACT, 1) == ["How long does the contract run?"]


async def test_writing_stops_once_enough_questions_are_complete() -> None:
    produced: list[str] = []

    async def endless(system: str, messages: Sequence[tuple[Role, str]]) -> AsyncGenerator[str, None]:
        for word in ("first", "second", "third", "fourth"):
            produced.append(word)
            yield f"- What is the {word} plan?\n"

    lists = await write_questions(endless, [CONTRACT], 2, progress=None)
    assert lists == [["What is the first plan?", "What is the second plan?"]]
    assert len(produced) == 2, "the generation is closed once two complete lines are usable"


async def test_questions_are_written_saved_and_reused_and_rewritten_when_a_document_changes(
    tmp_path: Path,
) -> None:
    model = ScriptedModel(WRITTEN)
    base = make_kb(tmp_path)
    assert not base.has_questions
    question = "Am I tied in?"
    before = base.search(question)
    assert not before.hits, "nothing in the documents says 'tied in'"
    progress: list[tuple[int, int]] = []
    await base.add_questions(model, progress=lambda done, total: progress.append((done, total)))
    assert len(model.calls) == 2 and progress[-1] == (2, 2)
    found = base.search(question)
    assert found.hits[0].passage.section == "Contract", "its questions say 'tied in'"
    assert found.confidence == before.confidence == 0, "confidence is the documents' own"
    saved = json.loads(next((tmp_path / "index").glob("kb-*.json")).read_text())
    contract = ["How long am I tied in to my plan?", "Can I cancel my plan?", "What's the minimum plan term?"]
    assert saved["questions"]["lists"][0] == contract

    restarted = make_kb(tmp_path)  # the next start: read back, the model is not asked again
    assert restarted.has_questions and "+ questions" in restarted.summary
    await restarted.add_questions(model)
    assert len(model.calls) == 2
    assert restarted.search(question).hits[0].passage.section == "Contract"

    (tmp_path / "kb" / "guide.md").write_text(GUIDE.replace("£60", "£65"))
    await restarted.reload()  # a changed document: its index and questions are built again
    assert len(model.calls) == 4 and restarted.has_questions
    assert len(list((tmp_path / "index").glob("kb-*.json"))) == 1


async def test_another_model_or_number_of_questions_writes_them_again(tmp_path: Path) -> None:
    model = ScriptedModel(WRITTEN)
    await make_kb(tmp_path).add_questions(model)
    docs = tmp_path / "kb"
    other = KnowledgeBase(docs, index_dir=tmp_path / "index", questions=3, question_model="bigger")
    other.build()
    assert not other.has_questions
    off = KnowledgeBase(docs, index_dir=tmp_path / "index")
    off.build()
    assert not off.has_questions and "questions" not in off.summary


async def test_question_vectors_find_a_passage_by_a_question_only_wording(tmp_path: Path) -> None:
    base = make_kb(tmp_path, WordEmbedder())
    await base.add_questions(ScriptedModel(WRITTEN))
    found = base.search("technician miss")
    assert found.hits[0].passage.section == "Engineer visits"
    assert (found.hits[0].similarity or 0) < 0.1, "found by its question's words and vector, not its own text"
    restarted = make_kb(tmp_path, WordEmbedder())
    assert restarted.has_questions
    assert restarted.search("technician miss").hits[0].passage.section == "Engineer visits"


async def test_questions_never_appear_in_answers_or_citations(tmp_path: Path) -> None:
    base = make_kb(tmp_path)
    await base.add_questions(ScriptedModel(WRITTEN))
    question = "How long am I tied in to the plan?"
    grounded = base.ground(question, "", base.search(question))
    assert "18 months" in grounded.text and grounded.sources == ("Broadband guide",)
    for written in WRITTEN.values():
        for line in written.splitlines():
            assert line[3:] not in grounded.text
    assert "tied" not in base.public_text


async def test_the_tiny_model_writes_through_the_engine_and_the_result_is_saved(
    tmp_path: Path, tiny_llama: LoadedModel
) -> None:
    base = make_kb(tmp_path)
    engine = TransformersEngine(tiny_llama)
    try:
        write = question_writer(engine, tiny_llama.tokenizer)
        pieces = [piece async for piece in write("Be brief.", ((Role.USER, "Write 3 short questions."),))]
        assert pieces, "the engine streams a reply to the instruction"
        await add_questions(base, engine, tiny_llama.tokenizer)
    finally:
        await engine.aclose()
    assert base.has_questions  # whatever the random model wrote passed the checks or was dropped
    assert make_kb(tmp_path).has_questions


async def test_a_failing_model_leaves_retrieval_without_questions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def stream(self, prompt: object, params: object) -> AsyncGenerator[str, None]:
            raise RuntimeError("model gone")

    class Tokenizer:
        chat_template = None

        def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
            return [1, 2, 3]

    base = make_kb(tmp_path)
    await add_questions(base, Broken(), Tokenizer())  # type: ignore[arg-type]
    assert not base.has_questions and "could not write the passages' questions" in caplog.text
    assert not make_kb(tmp_path).has_questions, "nothing was saved: the next start tries again"


@pytest.mark.parametrize(
    ("env", "questions"),
    [
        ({}, 0),  # off by default
        ({"KB_DOC2QUERY": "on", "KB_DOC2QUERY_QUESTIONS": "2"}, 2),
        ({"KB_DOC2QUERY": "auto"}, 3),
        ({"KB_DOC2QUERY": "auto", "LLM_BACKEND": "openai", "LLM_BASE_URL": "http://127.0.0.1:9/v1"}, 0),
    ],
)
async def test_the_settings_decide_whether_questions_are_written(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], questions: int
) -> None:
    (clean_env / "kb").mkdir()
    (clean_env / "kb" / "guide.md").write_text(GUIDE)
    settings = {"KB_PATH": "kb", "KB_INDEX_DIR": str(clean_env / "index"), "KB_EMBEDDINGS": "off", **env}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    base = await build_knowledge(load_settings(None))
    assert base is not None and base.questions == questions
