"""`bot bench`: the same scripted support conversations through each runner, in one process run.

Phases: one chat alone (per-stream tokens/s); C chats at once for each concurrency level (aggregate
tokens/s, time to first token); one long conversation (time to first token at turn 1 vs turn N, as the
history grows). Runners go one after the other, each alone on the machine. Cold start is timed in a
fresh process; peak RSS is sampled while the engine serves the most chats.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bot.core.domain import Prompt, Role, Turn
from bot.core.errors import GenerationError
from bot.llm.local.engine import TransformersEngine
from bot.llm.local.loader import LoadedModel, resolve_source
from bot.prompt.builder import ChatFormat, PromptBuilder
from bot_dev.bench.llama_server import LlamaServerRunner, llama_server_binary
from bot_dev.bench.runners import EngineRunner, LlamaCppRunner, NaiveRunner, Runner, Timing
from bot_dev.bench.workload import LONG_OPENING, SYSTEM_PROMPT, TTFT_PROBES, user_turn

__all__ = ["BenchOptions", "cold_start_seconds", "run_bench"]

Tick = Callable[[str], None]


@dataclass(frozen=True)
class BenchOptions:
    concurrency: tuple[int, ...] = (1, 4, 16)
    turns_per_chat: int = 2  # in the concurrency phases
    long_turns: int = 20  # the long conversation: TTFT at turn 1 vs this turn
    max_new_tokens: int = 48
    single_replies: int = 3
    runners: tuple[str, ...] = ("engine", "naive", "llama.cpp", "llama-server")

    def replies_per_runner(self) -> int:
        return self.single_replies + sum(c * self.turns_per_chat for c in self.concurrency) + self.long_turns


@dataclass
class RunnerResult:
    single_tokens_per_second: float = 0.0
    aggregate_tokens_per_second: dict[int, float] = field(default_factory=dict)
    ttft_by_concurrency: dict[int, dict[str, float]] = field(default_factory=dict)
    ttft_by_turn: list[float] = field(default_factory=list)
    prompt_tokens_by_turn: list[int] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    probes_first: list[float] = field(default_factory=list)  # TTFT_PROBES at turn 1, and at the last turn
    probes_last: list[float] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "single_tokens_per_second": round(self.single_tokens_per_second, 2),
            "aggregate_tokens_per_second": {
                str(c): round(v, 2) for c, v in self.aggregate_tokens_per_second.items()
            },
            "ttft_seconds": _percentiles(self.ttfts),
            "ttft_by_concurrency": {str(c): v for c, v in self.ttft_by_concurrency.items()},
            "ttft_by_turn": [round(t, 4) for t in self.ttft_by_turn],
            "prompt_tokens_by_turn": self.prompt_tokens_by_turn,
            "ttft_probes_turn1": [round(t, 4) for t in self.probes_first],
            "ttft_probes_last_turn": [round(t, 4) for t in self.probes_last],
        }


class _Conversation:
    """One scripted chat: its history grows with the replies the runner actually gave."""

    def __init__(
        self, prompts: PromptBuilder, chat: int, max_new_tokens: int, opening: str | None = None
    ) -> None:
        """`opening`: the first message, instead of the scripted one (see LONG_OPENING)."""
        self._prompts, self._chat, self._max_new = prompts, chat, max_new_tokens
        self._opening = opening
        self.history: list[Turn] = []

    def prompt(self, turn: int, runner: str) -> Prompt:
        text = self._opening if turn == 0 and self._opening else user_turn(self._chat, turn)
        question = Turn(Role.USER, text)
        built = self._prompts.build(self.history, question, max_new_tokens=self._max_new)
        self._question = question
        return replace(built, session=f"{runner}-{self._chat}")  # ids for local runners, messages for servers

    def branch(self, text: str, runner: str) -> Prompt:
        """A prompt that asks `text` after the history so far, without it joining the history."""
        built = self._prompts.build(self.history, Turn(Role.USER, text), max_new_tokens=self._max_new)
        return replace(built, session=f"{runner}-{self._chat}")

    def answered(self, timing: Timing) -> None:
        self.history += [self._question, Turn(Role.ASSISTANT, timing.text)]


async def _single(
    runners: dict[str, Runner], prompts: PromptBuilder, options: BenchOptions, tick: Tick
) -> dict[str, float]:
    """One chat alone: decode speed, the median of a few replies."""
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for i in range(options.single_replies):
        for name, runner in runners.items():
            chat = _Conversation(prompts, 1000 + i, options.max_new_tokens)
            timing = await runner.reply(chat.prompt(0, name), options.max_new_tokens)
            decode = timing.total - timing.ttft
            if timing.tokens > 1 and decode > 0:
                rates[name].append((timing.tokens - 1) / decode)
            tick(name)
    return {name: statistics.median(r) if r else 0.0 for name, r in rates.items()}


async def _concurrent(
    runner: Runner, prompts: PromptBuilder, options: BenchOptions, chats: int, tick: Tick
) -> tuple[float, list[float]]:
    async def converse(chat: int) -> tuple[int, list[float]]:
        conversation = _Conversation(prompts, chat, options.max_new_tokens)
        tokens, ttfts = 0, []
        for turn in range(options.turns_per_chat):
            timing = await runner.reply(conversation.prompt(turn, runner.name), options.max_new_tokens)
            conversation.answered(timing)
            tokens += timing.tokens
            ttfts.append(timing.ttft)
            tick(runner.name)
        return tokens, ttfts

    started = time.perf_counter()
    results = await asyncio.gather(*(converse(chats * 100 + i) for i in range(chats)))
    elapsed = time.perf_counter() - started
    return sum(t for t, _ in results) / elapsed, [x for _, ttfts in results for x in ttfts]


async def _long(
    runners: dict[str, Runner], prompts: PromptBuilder, options: BenchOptions, tick: Tick
) -> dict[str, RunnerResult]:
    """One conversation of `long_turns` turns per runner, turn by turn in step; TTFT_PROBES asked as
    branches before its first turn and after its last."""
    conversations = {
        name: _Conversation(prompts, 7, options.max_new_tokens, opening=LONG_OPENING) for name in runners
    }
    found = {name: RunnerResult() for name in runners}

    async def probe(name: str, into: list[float]) -> None:
        for text in TTFT_PROBES:  # only the first token counts
            into.append((await runners[name].reply(conversations[name].branch(text, name), 1)).ttft)

    for name in runners:
        await probe(name, found[name].probes_first)
    for turn in range(options.long_turns):
        for name, runner in runners.items():
            prompt = conversations[name].prompt(turn, name)
            timing = await runner.reply(prompt, options.max_new_tokens)
            conversations[name].answered(timing)
            found[name].ttft_by_turn.append(timing.ttft)
            found[name].prompt_tokens_by_turn.append(prompt.token_count)
            tick(name)
    for name in runners:
        await probe(name, found[name].probes_last)
    return found


async def _measure(
    runners: dict[str, Runner], prompts: PromptBuilder, options: BenchOptions, tick: Tick
) -> tuple[dict[str, RunnerResult], float]:
    """Every phase for the given runners; and the engine's peak RSS while it serves the most chats."""
    results = {name: RunnerResult() for name in runners}
    for runner in runners.values():  # warm-up: first-call allocations stay out of the figures
        await runner.reply(prompts.build([], Turn(Role.USER, "Hello"), max_new_tokens=4), 4)
    for name, rate in (await _single(runners, prompts, options, tick)).items():
        results[name].single_tokens_per_second = rate
    peak = 0.0
    for chats in options.concurrency:
        for name, runner in runners.items():
            with _RssPeak() as rss:
                rate, ttfts = await _concurrent(runner, prompts, options, chats, tick)
            if name == "engine" and chats == max(options.concurrency):
                peak = rss.peak_mb
            results[name].aggregate_tokens_per_second[chats] = rate
            results[name].ttft_by_concurrency[chats] = _percentiles(ttfts)
            results[name].ttfts += ttfts
    for name, long in (await _long(runners, prompts, options, tick)).items():
        results[name].ttft_by_turn, results[name].prompt_tokens_by_turn = (
            long.ttft_by_turn,
            long.prompt_tokens_by_turn,
        )
        results[name].probes_first, results[name].probes_last = long.probes_first, long.probes_last
    return results, peak


async def run_bench(
    loaded: LoadedModel,
    *,
    options: BenchOptions,
    cache_mb: int,
    threads: int,
    tick: Tick,
    lean_forward: bool = True,
    note: Callable[[str], None],
) -> dict[str, Any]:
    """Every runner through the same workload; the JSON-ready figures with the headline ratios.
    `lean_forward`: the engine's decode steps through its own Llama forward (ENGINE_LEAN_FORWARD)."""
    chat_format = ChatFormat(loaded.tokenizer)
    context = min(loaded.context_tokens, 8192)
    prompts = PromptBuilder(chat_format, system_prompt=SYSTEM_PROMPT, context_tokens=context)
    skipped: dict[str, str] = {}
    results: dict[str, RunnerResult] = {}
    peak_rss_mb: float | None = None
    forward_pass: str | None = None
    # One runner at a time, each alone on the machine: llama.cpp's worker threads keep spinning after a
    # call, which slows torch by a third if the two take turns (measured), so interleaving is not fairer.
    for name in options.runners:
        runner, why = _runner(
            name, loaded, options, context=context, cache_mb=cache_mb, threads=threads, lean=lean_forward
        )
        if runner is None:
            skipped[name] = why
            note(f"{name} skipped: {why}")
            continue
        try:
            if isinstance(runner, LlamaServerRunner):
                await runner.start()
            measured, peak = await _measure({name: runner}, prompts, options, tick)
        except (RuntimeError, GenerationError) as error:  # a peer that would not start or failed
            if name in ("engine", "naive"):
                raise
            skipped[name] = str(error)
            note(f"{name} skipped: {error}")
            continue
        finally:
            await runner.aclose()
        results.update(measured)
        if name == "engine":
            peak_rss_mb = peak
            forward_pass = getattr(getattr(runner, "engine", None), "forward_pass", None)
    return {**_summary(results, skipped, peak_rss_mb), "engine_forward_pass": forward_pass}


def _runner(
    name: str,
    loaded: LoadedModel,
    options: BenchOptions,
    *,
    context: int,
    cache_mb: int,
    threads: int,
    lean: bool,
) -> tuple[Runner | None, str]:
    """The runner called `name`, or None and why it cannot run here (a peer that is not installed)."""
    if name == "engine":
        top = max(options.concurrency)
        engine = TransformersEngine(
            loaded, max_batch=top, max_queue=1024, cache_mb=cache_mb, lean_forward=lean
        )
        return EngineRunner(engine, loaded.tokenizer), ""
    if name == "naive":
        return NaiveRunner(loaded), ""
    gguf, why = _gguf_for(loaded.name, name)
    if gguf is None:
        return None, why
    if name == "llama.cpp":
        return LlamaCppRunner(gguf, loaded.tokenizer, context=context, threads=threads), ""
    binary = llama_server_binary()
    if binary is None:
        return None, "llama-server is not on PATH (build it as docs/benchmarks.md shows, or set LLAMA_SERVER)"
    slots, per_slot = max(options.concurrency), min(context, 4096)
    return LlamaServerRunner(
        binary, gguf, loaded.tokenizer, slots=slots, context=per_slot, threads=threads
    ), ""


class _RssPeak:
    """The process's largest resident set size while the block runs, sampled every 20 ms."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> _RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while True:
            try:
                resident = int(Path("/proc/self/statm").read_text().split()[1]) * page
            except (OSError, IndexError, ValueError):  # not Linux: the peak so far is what there is
                resident = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.peak_mb = max(self.peak_mb, resident / 2**20)
            if self._done.wait(0.02):
                return


def _gguf_for(model_name: str, runner: str) -> tuple[str | None, str]:
    if runner == "llama.cpp":
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            return None, "llama-cpp-python is not installed (pip install -e .[bench], see docs/benchmarks.md)"
        except OSError as exc:  # installed over a separate llama.cpp build that it cannot find
            why = f"llama-cpp-python cannot load llama.cpp ({exc})"
            return None, f"{why}: set LLAMA_CPP_LIB_PATH to its build's bin folder (docs/benchmarks.md)"
    source = resolve_source(model_name)
    if source.kind != "gguf":
        return None, f"MODEL_NAME={model_name} is not a GGUF file, so llama.cpp cannot run the same model"
    return source.location, ""


def _summary(
    results: dict[str, RunnerResult], skipped: dict[str, str], peak_rss_mb: float | None
) -> dict[str, Any]:
    engine, naive = results.get("engine"), results.get("naive")
    cpp, server = results.get("llama.cpp"), results.get("llama-server")
    top = max(engine.aggregate_tokens_per_second) if engine else None
    turns = len(engine.ttft_by_turn) if engine else 0

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a is not None and b else None

    def aggregate(result: RunnerResult | None) -> float | None:
        if result is None or top is None:
            return None
        return result.aggregate_tokens_per_second.get(top)

    ratios = {
        f"aggregate{top}_vs_naive": ratio(aggregate(engine), aggregate(naive)),
        f"aggregate{top}_vs_llamacpp": ratio(aggregate(engine), aggregate(cpp)),
        f"ttft_turn{turns}_vs_turn1": _history_cost(engine),
        f"naive_ttft_turn{turns}_vs_turn1": _history_cost(naive),
        "single_vs_llamacpp": ratio(
            engine.single_tokens_per_second if engine else None,
            cpp.single_tokens_per_second if cpp else None,
        ),
        f"aggregate{top}_vs_llamaserver": ratio(aggregate(engine), aggregate(server)),
        "single_vs_llamaserver": ratio(
            engine.single_tokens_per_second if engine else None,
            server.single_tokens_per_second if server else None,
        ),
        "single_vs_naive": ratio(
            engine.single_tokens_per_second if engine else None,
            naive.single_tokens_per_second if naive else None,
        ),
    }
    return {
        "runners": {name: result.as_json() for name, result in results.items()},
        "skipped": skipped,
        "ratios": ratios,
        "peak_rss_mb": round(peak_rss_mb, 1) if peak_rss_mb is not None else None,
    }


def cold_start_seconds(
    model_name: str, *, dtype: str, threads: int | None, cache_dir: str | None, lean: bool = True
) -> float:
    """Process start to a loaded, ready engine, in a fresh Python process (imports included), loaded as
    `bot run` loads it (`lean`: ENGINE_LEAN_FORWARD)."""
    code = (
        "import sys, pathlib\n"
        "from bot.llm.local.loader import load_model\n"
        "from bot.llm.local.engine import TransformersEngine\n"
        "cache = pathlib.Path(sys.argv[4]) if sys.argv[4] else None\n"
        "threads = int(sys.argv[3]) if sys.argv[3] else None\n"
        "lean = sys.argv[5] == 'lean'\n"
        "loaded = load_model(sys.argv[1], dtype=sys.argv[2], threads=threads, cache_dir=cache, lean=lean)\n"
        "TransformersEngine(loaded, lean_forward=lean)\n"
        "print('ready', flush=True)\n"
    )
    argv = [
        sys.executable,
        "-c",
        code,
        model_name,
        dtype,
        str(threads or ""),
        cache_dir or "",
        "lean" if lean else "",
    ]
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    elapsed = time.perf_counter() - started
    process.kill()
    process.wait()
    if line.strip() != "ready":
        raise RuntimeError("the cold-start probe did not get ready (run `bot chat` once to see why)")
    return elapsed


def _history_cost(result: RunnerResult | None) -> float | None:
    """Time to first token after the long conversation's history over that at its start: the median of
    the same probe questions asked at both points."""
    if result is None or not result.probes_first or not result.probes_last:
        return None
    first, last = statistics.median(result.probes_first), statistics.median(result.probes_last)
    return round(last / first, 2) if first else None


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0}
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 4),
        "p95": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 4),
    }


def write_json(path: Path, figures: dict[str, Any]) -> None:
    path.write_text(json.dumps(figures, indent=2) + "\n")
