"""Knowledge-base answers with the example knowledge base and a FakeEngine: a direct answer skips the
model, a draft has its own short budget, and a draft that has already failed stops decoding at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.chat.deps import ChatOptions
from bot.chat.grounded import GroundedAnswers, complete_sentences
from bot.chat.service import ChatService, Message
from bot.core.outcome import OutcomeKind
from bot.knowledge.index import KnowledgeBase
from bot.metrics import Metrics
from bot.storage.inprocess.store import InProcessStore
from tests.chat.fakes import FakeEngine, fake_deps

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "kb"
DIRECT = "What does it cost to have my order shipped?"  # one passage holds every informative word
NOT_DIRECT = "Above which basket value is standard shipping free?"


@pytest.fixture(scope="module")
def knowledge(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    base = KnowledgeBase(EXAMPLES, index_dir=tmp_path_factory.mktemp("index"))
    base.build()
    return base


def service(engine: FakeEngine, knowledge: KnowledgeBase, metrics: Metrics, max_load: int = 2) -> ChatService:
    store = InProcessStore(max_turns=20, ttl_seconds=600)
    options = ChatOptions(kb_max_new_tokens=40, kb_draft_max_load=max_load)
    deps = fake_deps(engine, store, knowledge=knowledge, metrics=metrics, options=options)
    return ChatService(deps)


def test_complete_sentences_stop_at_the_last_finished_one() -> None:
    assert complete_sentences("Standard delivery costs €4") == ""
    assert complete_sentences("It costs €4.90. Orders abo") == "It costs €4.90."
    assert complete_sentences("One. Two! Three") == "One. Two!"


async def test_a_passage_that_answers_directly_is_sent_without_the_model(knowledge: KnowledgeBase) -> None:
    assert GroundedAnswers.direct(knowledge.search(DIRECT))
    engine = FakeEngine("never asked")
    outcome = await service(engine, knowledge, Metrics()).respond(Message(chat_id=1, text=DIRECT)).outcome()
    assert engine.calls == [], "no draft was generated"
    assert "4.90" in outcome.text and outcome.grounded and outcome.sources == ("Shipping and delivery",)


async def test_a_verified_draft_is_used_and_has_its_own_budget(knowledge: KnowledgeBase) -> None:
    assert not GroundedAnswers.direct(knowledge.search(NOT_DIRECT))
    metrics = Metrics()
    engine = FakeEngine("Standard delivery is free for orders of €50 or more.")
    outcome = await service(engine, knowledge, metrics).respond(Message(chat_id=2, text=NOT_DIRECT)).outcome()
    assert outcome.kind is OutcomeKind.ANSWERED and outcome.text.startswith("Standard delivery is free")
    ((_prompt, params),) = engine.calls
    assert params.max_new_tokens == 40, "KB_MAX_NEW_TOKENS, not the general budget (64 here)"
    assert metrics.kb_drafts.labels("used")._value.get() == 1


async def test_a_grounded_draft_that_fails_verification_stops_early(knowledge: KnowledgeBase) -> None:
    """The first sentence invents a figure: the draft is given up there, not decoded to its budget."""
    metrics = Metrics()
    draft = "Shipping is free above €75. " + "We love to ship things to you. " * 20
    engine = FakeEngine(draft, piece_chars=2)
    outcome = await service(engine, knowledge, metrics).respond(Message(chat_id=3, text=NOT_DIRECT)).outcome()
    first_sentence_pieces = len("Shipping is free above €75. ") // 2
    assert engine.closed_early == 1
    assert engine.pieces_sent <= first_sentence_pieces + 2 < 40, f"{engine.pieces_sent} pieces decoded"
    assert "€50" in outcome.text and "75" not in outcome.text, "the passage's own sentence instead"
    assert metrics.kb_drafts.labels("stopped")._value.get() == 1


@pytest.mark.parametrize(("in_flight", "max_load", "drafted"), [(1, 2, True), (2, 2, False), (0, 0, False)])
async def test_no_draft_while_the_model_is_busy(
    knowledge: KnowledgeBase, in_flight: int, max_load: int, drafted: bool
) -> None:
    """KB_DRAFT_MAX_LOAD replies in flight: the passage's own sentences at once, nobody waits for a draft."""
    metrics = Metrics()
    engine = FakeEngine("Standard delivery is free for orders of €50 or more.")
    engine.in_flight = in_flight
    chat = service(engine, knowledge, metrics, max_load=max_load)
    outcome = await chat.respond(Message(chat_id=4, text=NOT_DIRECT)).outcome()
    assert bool(engine.calls) is drafted
    assert "€50" in outcome.text and outcome.grounded and "Shipping and delivery" in outcome.sources
    skipped_while_busy = not drafted and max_load > 0
    assert metrics.kb_drafts.labels("skipped")._value.get() == skipped_while_busy
