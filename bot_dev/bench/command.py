"""`bot bench` on the terminal: load the model, time a cold start, run every runner with a progress bar,
then print the table and write the JSON and the chart."""

from __future__ import annotations

import asyncio
import platform
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bot.config import ModelSettings
from bot.llm.local.formats import cpu_description
from bot.llm.local.loader import LoadedModel, load_model
from bot_dev.bench.report import plot, print_table
from bot_dev.bench.run import BenchOptions, cold_start_seconds, run_bench, write_json

__all__ = ["bench"]


def bench(
    model: ModelSettings,
    options: BenchOptions,
    *,
    cache_mb: int,
    lean_forward: bool = True,
    json_path: Path | None,
    plot_path: Path | None,
) -> int:
    console = Console(stderr=True)
    cache_dir = str(model.cache_dir) if model.cache_dir else None
    console.print(f"[dim]· loading {escape(model.name)}[/dim]")
    # transformers' model, whose generate the naive runner calls; the engine runs the same modules through
    # its own forward either way, and the cold start below is timed as `bot run` loads (ENGINE_LEAN_FORWARD)
    loaded = load_model(
        model.name,
        dtype=model.dtype,
        device=model.device,
        threads=model.threads,
        cache_dir=Path(cache_dir) if cache_dir else None,
        progress=lambda message: console.print(f"[dim]· {escape(message)}[/dim]"),
        batch=max(options.concurrency),
    )
    console.print("[dim]· timing a cold start in a fresh process[/dim]")
    cold = cold_start_seconds(
        model.name, dtype=model.dtype, threads=model.threads, cache_dir=cache_dir, lean=lean_forward
    )
    threads = torch.get_num_threads()
    total = options.replies_per_runner() * len(options.runners)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("replies", total=total)

        def tick(runner: str) -> None:
            progress.update(task, advance=1, description=f"{runner:>9}")

        def note(message: str) -> None:
            progress.update(task, total=(progress.tasks[0].total or 0) - options.replies_per_runner())
            progress.console.print(f"[yellow]{escape(message)}[/yellow]")

        figures = asyncio.run(
            run_bench(
                loaded,
                options=options,
                cache_mb=cache_mb,
                lean_forward=lean_forward,
                threads=threads,
                tick=tick,
                note=note,
            )
        )
    figures = {**_setup(loaded, options, threads, cold), "lean_forward": lean_forward, **figures}
    print_table(figures, Console())
    _write(figures, console, json_path, plot_path)
    return 0


def _write(figures: dict[str, Any], console: Console, json_path: Path | None, plot_path: Path | None) -> None:
    if json_path is not None:
        write_json(json_path, figures)
        console.print(f"[dim]· figures written to {escape(str(json_path))}[/dim]")
    if plot_path is not None:
        plot(figures, plot_path)
        console.print(f"[dim]· chart written to {escape(str(plot_path))}[/dim]")


def _setup(loaded: LoadedModel, options: BenchOptions, threads: int, cold: float) -> dict[str, Any]:
    """What the figures were measured on: model, numeric format (and why), CPU model and flags, settings."""
    cpu, flags = cpu_description()
    return {
        "model": loaded.name,
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "format": loaded.format,
        "format_calibration": loaded.calibration.summary() if loaded.calibration else "explicit MODEL_DTYPE",
        "cpu": cpu,
        "cpu_flags": flags,
        "threads": threads,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "max_new_tokens": options.max_new_tokens,
        "turns_per_chat": options.turns_per_chat,
        "cold_start_seconds": round(cold, 2),
    }
