"""What one load test measured, and how it is shown: a table for people, a dict for `--json`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from rich.table import Table

__all__ = ["LoadReport", "percentile"]


@dataclass(frozen=True)
class LoadReport:
    """Every figure of one run; `ok` is the exactly-once verdict the exit code reflects."""

    users: int
    minutes: float
    think: float
    reply_timeout: float
    model: str
    sent: int
    received: int
    duplicates: int
    lost: int
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    replies_per_minute: float
    engine_errors: int
    engine_errors_by_kind: dict[str, int]
    redis_errors: int
    bot_warnings: int
    seconds: float
    bot_stopped_early: bool  # by Ctrl-C or a fatal error: messages it never fetched count as lost
    redis_key_prefix: str
    redis_keys_deleted: int

    @property
    def ok(self) -> bool:
        return self.sent > 0 and self.lost == 0 and self.duplicates == 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def table(self) -> Table:
        """Every figure, one per row; latencies and durations in seconds."""
        table = Table("measure", "value", title="bot loadtest")
        for name, value in self.as_dict().items():
            shown = "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)
            if name == "ok":
                shown = "[green]yes[/]" if value else "[red]NO[/]"
            elif isinstance(value, bool):
                shown = "yes" if value else "no"
            table.add_row(name.replace("_", " "), shown)
        return table


def percentile(values: list[float], p: float) -> float | None:
    """Nearest rank: a latency some request really had, also for a handful of samples."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]
