"""`bot safety-eval`: run the input pipeline over a labelled JSONL corpus and measure it.

Latency is reported as wall-clock time per message (p50/p95) and as the process's CPU time per message,
which does not count time spent waiting for a core on a loaded machine.

Each line: {"text": ..., "label": "injection" | "pii" | "toxic" | "benign"}, optionally with
"pii": [{"kind": ..., "value": ...}] naming the personal data a pii line contains. A line counts as
detected when the pipeline blocks it (injection, toxic) or when every listed value is gone from the text
that would reach the model (pii). Any block or redaction of a benign line is a false positive.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.core.domain import Action
from bot.safety.pipeline import SafetyPipeline

__all__ = ["EvalResult", "evaluate", "read_corpus"]

LABELS = ("injection", "pii", "toxic", "benign")


@dataclass
class EvalResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def read_corpus(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not JSON: {exc.msg}") from None
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("text"), str)
            or row.get("label") not in LABELS
        ):
            raise ValueError(f"{path}:{number}: needs a string 'text' and a 'label' in {', '.join(LABELS)}")
        rows.append(row)
    return rows


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def evaluate(pipeline: SafetyPipeline, corpus: Iterable[dict[str, Any]]) -> EvalResult:
    result = EvalResult()
    latencies: dict[str, list[float]] = defaultdict(list)
    hits: dict[str, list[bool]] = defaultdict(list)
    pii_hits: dict[str, list[bool]] = defaultdict(list)
    cpu: list[float] = []
    for row in corpus:
        started, cpu_started = time.perf_counter(), time.process_time()
        verdict = pipeline.check_input(row["text"])
        elapsed_ms = (time.perf_counter() - started) * 1000
        cpu.append((time.process_time() - cpu_started) * 1000)
        label = row["label"]
        latencies[label].append(elapsed_ms)
        if label == "pii":
            found = [item["value"] not in verdict.text for item in row.get("pii", [])]
            for item, ok in zip(row.get("pii", []), found, strict=True):
                pii_hits[item["kind"]].append(ok)
            hit = verdict.action is Action.REDACT and all(found)
        elif label == "benign":
            hit = verdict.action is not Action.ALLOW  # a false positive
        else:
            hit = verdict.action is Action.BLOCK
        hits[label].append(hit)
        result.rows.append(
            {
                "text": row["text"],
                "label": label,
                "verdict": verdict.action.value,
                "reasons": list(verdict.reasons),
                "output_text": verdict.text,
                "latency_ms": round(elapsed_ms, 4),
            }
        )
    all_latencies = [v for values in latencies.values() for v in values]
    per_label = {}
    for label in LABELS:
        if label not in hits:
            continue
        rate = sum(hits[label]) / len(hits[label])
        per_label[label] = {
            "messages": len(hits[label]),
            ("false_positive_rate" if label == "benign" else "detection_rate"): round(rate, 4),
            "p50_ms": round(_percentile(latencies[label], 0.5), 4),
            "p95_ms": round(_percentile(latencies[label], 0.95), 4),
        }
    result.summary = {
        "labels": per_label,
        "pii_redaction_rate": {kind: round(sum(v) / len(v), 4) for kind, v in sorted(pii_hits.items())},
        "messages": len(result.rows),
        "p50_ms": round(_percentile(all_latencies, 0.5), 4),
        "p95_ms": round(_percentile(all_latencies, 0.95), 4),
        # CPU time of the process per message (all its threads): what the check costs on a machine shared
        # with other work, where wall-clock time also counts the waiting for a core
        "cpu_p50_ms": round(_percentile(cpu, 0.5), 4),
        "cpu_p95_ms": round(_percentile(cpu, 0.95), 4),
    }
    return result
