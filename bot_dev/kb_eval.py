"""`bot kb eval`: the whole answer path on a set of questions, and the figures that say if it is good.

Each line of the question file is {"question": ..., "expected": [facts...]} (add "answerable": false for
questions the knowledge base cannot answer). Reported: the share of answers that contain every expected
fact, answers with figures or contact data found nowhere in the knowledge base (must be 0), how often
retrieval found a passage holding the facts, how often out-of-scope questions were honestly declined,
the time spent in retrieval and grounding (generation excluded), the whole answer's latency (p50/p95
seconds from the question to the complete answer through ChatService, generation included: what a
customer waits), and what became of the model's drafts (bot_kb_drafts_total: used, discarded after
verification, stopped while written; a question answered directly from a passage has none).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bot.core.outcome import Outcome
from bot.knowledge.grounding import unsupported_facts
from bot.knowledge.index import KnowledgeBase

__all__ = ["DRAFT_RESULTS", "EvalQuestion", "EvalReport", "EvalResult", "evaluate", "read_questions"]

Answer = Callable[[int, str], Awaitable[Outcome]]
Drafts = Callable[[], dict[str, float]]  # bot_kb_drafts_total so far, by result
DRAFT_RESULTS = ("used", "discarded", "stopped", "skipped")


@dataclass(frozen=True, slots=True)
class EvalQuestion:
    question: str
    expected: tuple[str, ...]
    answerable: bool = True


@dataclass(slots=True)
class EvalResult:
    question: str
    expected: list[str]
    answerable: bool
    answer: str
    sources: list[str]
    answered: bool
    contains_expected: bool
    invented: list[str]
    retrieval_hit: bool
    grounding_ms: float
    answer_seconds: float
    outcome: str
    drafts: dict[str, int] = field(default_factory=dict)  # this answer's drafts, by result


@dataclass(slots=True)
class EvalReport:
    results: list[EvalResult] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        answerable = [r for r in self.results if r.answerable]
        other = [r for r in self.results if not r.answerable]
        times = sorted(r.grounding_ms for r in self.results)
        latency = sorted(r.answer_seconds for r in self.results)
        return {
            "questions": len(self.results),
            "answerable": len(answerable),
            "contains_expected_rate": _share(sum(r.contains_expected for r in answerable), len(answerable)),
            "answers_with_invented_figures": sum(bool(r.invented) for r in self.results),
            "retrieval_hit_rate": _share(sum(r.retrieval_hit for r in answerable), len(answerable)),
            "out_of_scope": len(other),
            "out_of_scope_declined_rate": _share(sum(not r.answered for r in other), len(other)),
            "grounding_p50_ms": round(_percentile(times, 50), 3),
            "grounding_p95_ms": round(_percentile(times, 95), 3),
            "answer_p50_seconds": round(_percentile(latency, 50), 3),
            "answer_p95_seconds": round(_percentile(latency, 95), 3),
            **{f"drafts_{name}": sum(r.drafts.get(name, 0) for r in self.results) for name in DRAFT_RESULTS},
            "answers_without_draft": sum(not any(r.drafts.values()) for r in self.results),
        }

    def as_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "results": [asdict(r) for r in self.results]}


def read_questions(path: Path) -> list[EvalQuestion]:
    """The question file; a bad line raises ValueError naming the line."""
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            question, expected = data["question"], data.get("expected", [])
            if not isinstance(question, str) or not question.strip():
                raise ValueError("'question' must be a non-empty string")
            if not isinstance(expected, list) or not all(isinstance(e, str) for e in expected):
                raise ValueError("'expected' must be a list of strings")
            questions.append(EvalQuestion(question, tuple(expected), bool(data.get("answerable", True))))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path} line {number}: {exc}") from None
    if not questions:
        raise ValueError(f"{path}: no questions in it")
    return questions


async def evaluate(
    knowledge: KnowledgeBase, questions: Sequence[EvalQuestion], answer: Answer, drafts: Drafts | None = None
) -> EvalReport:
    """Ask every question through `answer` (the real service), one new chat each; `drafts` reads the
    service's draft counters (bot_kb_drafts_total), so each answer's drafts are known."""
    report = EvalReport()
    everything = knowledge.public_text
    for number, item in enumerate(questions):
        before = drafts() if drafts is not None else {}
        spent, started = knowledge.work_seconds, time.perf_counter()
        info = await answer(number, item.question)
        seconds = time.perf_counter() - started
        after = drafts() if drafts is not None else {}
        grounding_ms = (knowledge.work_seconds - spent) * 1000
        reply = info.text
        found = knowledge.search(item.question)
        held = " ".join(h.passage.text for h in found.hits)
        body = reply.split("\n\nSource")[0]
        report.results.append(
            EvalResult(
                question=item.question,
                expected=list(item.expected),
                answerable=item.answerable,
                answer=reply,
                sources=list(info.sources),
                answered=not info.declined,
                contains_expected=all(_norm(e) in _norm(reply) for e in item.expected),
                invented=unsupported_facts(body, [everything, item.question]),
                retrieval_hit=bool(item.expected) and all(_norm(e) in _norm(held) for e in item.expected),
                grounding_ms=round(grounding_ms, 3),
                answer_seconds=round(seconds, 3),
                outcome=info.kind.value,
                drafts={k: round(after.get(k, 0) - before.get(k, 0)) for k in DRAFT_RESULTS if k in after},
            )
        )
    return report


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _percentile(values: Sequence[float], percent: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(percent) - 1]
