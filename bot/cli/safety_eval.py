"""`bot safety-eval`: the input safety checks measured on a labelled JSONL corpus (no model needed)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bot.cli.common import Commands, fail
from bot.config import Settings

__all__ = ["ORDER", "register", "run"]

ORDER = 40


def register(commands: Commands) -> argparse.ArgumentParser:
    evaluate = commands.add_parser(
        "safety-eval", help="measure the input safety checks on a labelled JSONL corpus"
    )
    evaluate.add_argument(
        "corpus", type=Path, help='JSONL lines of {"text": ..., "label": injection|pii|toxic|benign}'
    )
    evaluate.add_argument("--json", type=Path, metavar="OUT", help="write every verdict and the summary here")
    return evaluate


def run(settings: Settings, args: argparse.Namespace) -> int:
    from rich.console import Console

    from bot.app import build_safety
    from bot_dev.safety_eval import evaluate, read_corpus

    try:
        rows = read_corpus(args.corpus)
    except (OSError, ValueError) as exc:
        return fail(f"cannot read the corpus: {exc}")
    pipeline, _prompt = build_safety(settings)
    result = evaluate(pipeline, rows)
    console = Console()
    console.print(_table(args.corpus, result.summary))
    if result.summary["pii_redaction_rate"]:
        rates = ", ".join(f"{kind} {rate:.1%}" for kind, rate in result.summary["pii_redaction_rate"].items())
        console.print(f"PII redacted by kind: {rates}")
    if args.json is not None:
        report = {"results": result.rows, "summary": result.summary}
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=1))
        console.print(f"wrote {args.json}")
    return 0


def _table(corpus: Path, summary: dict[str, Any]) -> Any:
    """Detection and false-positive rates and latency, one row per label and one for all."""
    from rich.table import Table

    table = Table(title=f"Input safety checks on {corpus} ({summary['messages']} messages)")
    for column in ("label", "messages", "detected", "false positives", "p50 ms", "p95 ms"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, figures in summary["labels"].items():
        detected = figures.get("detection_rate")
        false_positives = figures.get("false_positive_rate")
        table.add_row(
            label,
            str(figures["messages"]),
            f"{detected:.1%}" if detected is not None else "",
            f"{false_positives:.1%}" if false_positives is not None else "",
            f"{figures['p50_ms']:.3f}",
            f"{figures['p95_ms']:.3f}",
        )
    table.add_row(
        "all", str(summary["messages"]), "", "", f"{summary['p50_ms']:.3f}", f"{summary['p95_ms']:.3f}"
    )
    return table
