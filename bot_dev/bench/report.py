"""The benchmark's figures for people: a terminal table and a chart."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["plot", "print_table"]


def print_table(figures: dict[str, Any], console: Console) -> None:
    runners: dict[str, Any] = figures["runners"]
    decode = "" if figures.get("lean_forward", True) else ", transformers' forward"
    table = Table(
        title=f"bot bench: {figures['model']} ({figures['format']}, {figures['threads']} threads{decode})"
    )
    table.add_column("figure")
    for name in runners:
        table.add_column(name, justify="right")
    levels = sorted({int(c) for r in runners.values() for c in r["aggregate_tokens_per_second"]})
    rows: list[tuple[str, list[str]]] = [
        ("tokens/s, one chat alone", [f"{r['single_tokens_per_second']:.1f}" for r in runners.values()]),
    ]
    for level in levels:
        rows.append(
            (
                f"aggregate tokens/s, {level} chats",
                [f"{r['aggregate_tokens_per_second'].get(str(level), 0):.1f}" for r in runners.values()],
            )
        )
    rows += [
        ("TTFT p50 (s)", [f"{r['ttft_seconds']['p50']:.3f}" for r in runners.values()]),
        ("TTFT p95 (s)", [f"{r['ttft_seconds']['p95']:.3f}" for r in runners.values()]),
        ("TTFT turn 1 (s)", [f"{r['ttft_by_turn'][0]:.3f}" for r in runners.values()]),
        (
            f"TTFT turn {len(next(iter(runners.values()))['ttft_by_turn'])} (s)",
            [f"{r['ttft_by_turn'][-1]:.3f}" for r in runners.values()],
        ),
        ("TTFT probes, turn 1 (median s)", [_median(r["ttft_probes_turn1"]) for r in runners.values()]),
        (
            "TTFT probes, last turn (median s)",
            [_median(r["ttft_probes_last_turn"]) for r in runners.values()],
        ),
    ]
    for label, cells in rows:
        table.add_row(label, *cells)
    console.print(table)
    console.print(f"CPU: {escape(figures['cpu'])} ({escape(_simd(figures['cpu_flags']))})")
    console.print(f"numeric format: {escape(figures['format_calibration'])}")
    if figures.get("engine_forward_pass"):
        console.print(f"engine: {escape(figures['engine_forward_pass'])}")
    console.print(
        f"cold start to ready: {figures['cold_start_seconds']:.2f} s   peak RSS: {figures['peak_rss_mb']} MB"
    )
    for name, why in figures["skipped"].items():
        console.print(f"[yellow]{escape(name)} skipped:[/yellow] {escape(why)}")
    console.print("ratios: " + ", ".join(f"{k}={v}" for k, v in figures["ratios"].items()))


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.3f}" if values else "-"


def _simd(flags: str) -> str:
    """The vector-instruction flags that decide which format and kernels are fast (all flags go to JSON)."""
    wanted = ("avx2", "fma", "avx512", "amx", "avx_vnni", "neon", "sve")
    shown = [f for f in flags.split() if f.startswith(wanted)]
    return " ".join(shown) or "no AVX2/AVX-512/AMX flags"


def plot(figures: dict[str, Any], path: Path) -> None:
    """Aggregate tokens/s against concurrency, and time to first token against the turn, per runner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, runner in figures["runners"].items():
        levels = sorted(int(c) for c in runner["aggregate_tokens_per_second"])
        left.plot(
            levels, [runner["aggregate_tokens_per_second"][str(c)] for c in levels], marker="o", label=name
        )
        turns = range(1, len(runner["ttft_by_turn"]) + 1)
        right.plot(list(turns), runner["ttft_by_turn"], marker=".", label=name)
    left.set(title="Throughput", xlabel="concurrent chats", ylabel="aggregate tokens/s")
    right.set(title="Time to first token as history grows", xlabel="turn", ylabel="seconds")
    for axis in (left, right):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend()
    fig.suptitle(f"{figures['model']} ({figures['dtype']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
