"""`bot kb eval`'s figures: facts found, latency end to end, and what became of the model's drafts."""

from __future__ import annotations

from pathlib import Path

from bot.core.outcome import Outcome, OutcomeKind
from bot.knowledge.index import KnowledgeBase
from bot_dev.kb_eval import EvalQuestion, evaluate

GUIDE = "# Guide\n\n## Prices\n\nA city bike costs €15 per day.\n\n## Hours\n\nWe open at 09:00 every day.\n"


async def test_each_answer_records_its_drafts_and_the_summary_counts_them(tmp_path: Path) -> None:
    (tmp_path / "guide.md").write_text(GUIDE)
    base = KnowledgeBase(tmp_path, index_dir=tmp_path / ".index")
    base.build()
    counts = {"used": 0.0, "discarded": 0.0, "stopped": 0.0}
    drafts_per_question = [{"stopped": 1}, {}, {"discarded": 1, "used": 1}]

    async def answer(number: int, question: str) -> Outcome:
        for result, made in drafts_per_question[number].items():
            counts[result] += made
        text = "A city bike costs €15 per day.\n\nSource: Guide" if number != 1 else "We open at 09:00."
        return Outcome(OutcomeKind.ANSWERED, text=text, sources=("Guide",))

    questions = [
        EvalQuestion("How much is a city bike?", ("€15",)),
        EvalQuestion("When do you open?", ("09:00",)),
        EvalQuestion("Price of a bike for a day?", ("€15",)),
    ]
    report = await evaluate(base, questions, answer, lambda: dict(counts))
    assert [r.drafts for r in report.results] == [
        {"used": 0, "discarded": 0, "stopped": 1},
        {"used": 0, "discarded": 0, "stopped": 0},
        {"used": 1, "discarded": 1, "stopped": 0},
    ]
    summary = report.summary()
    assert (summary["drafts_used"], summary["drafts_discarded"], summary["drafts_stopped"]) == (1, 1, 1)
    assert summary["answers_without_draft"] == 1
    assert summary["contains_expected_rate"] == 1.0 and summary["answers_with_invented_figures"] == 0
    assert summary["answer_p95_seconds"] >= summary["answer_p50_seconds"] >= 0
