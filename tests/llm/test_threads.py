"""Which thread runs torch: loading leaves no OpenMP team behind, other work runs on the engine's thread,
and each forward pass uses the thread count measured fastest now (pacing.py)."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TypeVar

import pytest

from bot.core.errors import GenerationError
from bot.llm.local.engine import TransformersEngine
from bot.llm.local.jobs import Jobs
from bot.llm.local.loader import LoadedModel
from bot.llm.local.pacing import MOST_PROBE_EVERY, PROBE_EVERY, PROBE_PASSES, Pacer
from bot.llm.threads import on_fresh_thread
from tests.llm.test_engine import GREEDY, collect, prompt_ids
from tests.tiny_models import build_tiny_llama

T = TypeVar("T")


def test_on_fresh_thread_returns_the_result_of_another_thread_and_raises_its_error() -> None:
    assert on_fresh_thread(threading.get_ident) != threading.get_ident()

    def fails() -> None:
        raise ValueError("broken weights")

    with pytest.raises(ValueError, match="broken weights"):
        on_fresh_thread(fails)


def test_jobs_run_in_order_and_hand_results_and_errors_to_their_futures() -> None:
    jobs, ran = Jobs(), []

    def note(n: int, result: str) -> str:
        ran.append(n)
        return result

    first = jobs.add(lambda: note(1, "one"))
    second = jobs.add(lambda: 1 / 0)
    third = jobs.add(lambda: note(3, "three"))
    taken = jobs.take()
    assert len(jobs) == 0 and len(taken) == 3
    taken.run()
    assert ran == [1, 3] and first.result() == "one" and third.result() == "three"
    with pytest.raises(ZeroDivisionError):
        second.result()
    late = jobs.add(lambda: "never")
    jobs.fail(GenerationError("the engine stopped"))
    with pytest.raises(GenerationError):
        late.result()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: torch starts no OpenMP workers")
def test_loading_a_model_and_starting_the_engine_leave_no_openmp_workers_behind(tmp_path: Path) -> None:
    """After a load and an engine start the process has the threads it had before, plus the engine's
    own: none of torch's workers (the model is wide enough for torch to split its products)."""
    model_dir = build_tiny_llama(tmp_path / "wide", width=512)
    code = (
        "import os, sys, time, torch\n"
        "torch.set_num_threads(2)\n"
        "from bot.llm.local.engine import TransformersEngine\n"
        "from bot.llm.local.loader import load_model\n"
        "before = len(os.listdir('/proc/self/task'))\n"
        "loaded = load_model(sys.argv[1], dtype='float32')\n"
        "engine = TransformersEngine(loaded)  # one thread of its own, idle\n"
        "for _ in range(100):  # a finished thread's workers exit shortly after it\n"
        "    if len(os.listdir('/proc/self/task')) <= before + 1: break\n"
        "    time.sleep(0.05)\n"
        "print(before, len(os.listdir('/proc/self/task')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(model_dir)], capture_output=True, text=True, check=True
    )
    before, after = map(int, out.stdout.split())
    assert after == before + 1


async def test_compute_runs_on_the_engines_thread_between_decode_steps(tiny_llama: LoadedModel) -> None:
    engine = TransformersEngine(tiny_llama)
    try:
        reply = asyncio.create_task(collect(engine, prompt_ids(tiny_llama), GREEDY))
        ran_on = await asyncio.wrap_future(engine.compute(lambda: threading.current_thread().name))
        failing = engine.compute(lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            await asyncio.wrap_future(failing)
        assert ran_on == "generate"
        assert "".join(await reply)  # the reply went on around the jobs
    finally:
        await engine.aclose()
    # closed: the work still runs, on a thread of its own
    after: Future[str] = engine.compute(lambda: threading.current_thread().name)
    assert after.result() not in ("generate", threading.current_thread().name)


def test_the_embedder_runs_on_the_thread_it_is_given() -> None:
    from bot.llm.embeddings import MiniLmEmbedder, bundled_minilm_dir

    location = bundled_minilm_dir()
    if location is None:
        pytest.skip("the embedding model is not installed")
    embedder = MiniLmEmbedder(location)
    names: list[str] = []

    def submit(work: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()

        def run() -> None:
            names.append(threading.current_thread().name)
            future.set_result(work())

        thread = threading.Thread(target=run, name="compute")
        thread.start()
        thread.join()
        return future

    embedder.run_on(submit)
    vectors = embedder.embed(["where is my parcel", "opening hours"])
    embedder.run_on(None)
    assert names == ["compute"] and len(vectors) == 2 and len(vectors[0]) == 384
    assert embedder.embed(["where is my parcel"])[0] == pytest.approx(vectors[0], abs=1e-5)


def test_the_pacer_keeps_the_faster_thread_count_and_tries_the_other_now_and_then() -> None:
    pacer = Pacer(2)
    speed = {2: 0.017, 1: 0.022}  # seconds a decode step takes on each thread count
    used = [_step(pacer, speed) for _ in range(200)]
    assert used[-1] == 2 and used.count(1) < 30  # both measured, then mostly the faster one
    assert pacer.figures()["decode 1"] == {2: pytest.approx(17.0), 1: pytest.approx(22.0)}

    speed[2] = 0.9  # another process takes a core: two threads now wait on each other
    used = [_step(pacer, speed) for _ in range(40)]
    assert used[:3].count(2) >= 1 and used[-20:] == [1] * 20  # it noticed within a step or two

    # tries of the slow count back off: fewer and fewer of them
    used = [_step(pacer, speed) for _ in range(4000)]
    tries = [i for i in range(1, len(used)) if used[i] == 2 and used[i - 1] == 1]
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert gaps == sorted(gaps) and gaps[-1] > 4 * PROBE_EVERY and gaps[-1] <= MOST_PROBE_EVERY + PROBE_PASSES

    speed[2] = 0.017  # the other process ended: two threads win again at the next try
    used = [_step(pacer, speed) for _ in range(2 * MOST_PROBE_EVERY)]
    assert used[-100:] == [2] * 100


def test_each_size_of_work_is_measured_on_its_own() -> None:
    pacer = Pacer(2)
    for _ in range(50):
        for tokens, speed in ((1, {2: 0.02, 1: 0.01}), (16, {2: 0.05, 1: 0.09})):
            threads = pacer.threads("decode", tokens)
            pacer.record("decode", tokens, threads, speed[threads])
    assert pacer.threads("decode", 1) == 1 and pacer.threads("decode", 12) == 2
    assert Pacer(8).choices == [8, 4, 1] and Pacer(1).choices == [1]


def test_while_decode_steps_run_best_on_fewer_threads_a_prefill_uses_no_more() -> None:
    pacer = Pacer(2)
    busy = {2: 0.09, 1: 0.02}  # decode steps: two threads stall on a busy machine
    for _ in range(20):
        _step(pacer, busy)
    assert pacer.threads("prefill", 500) == 1  # not tried on two threads while the machine is busy
    quiet = {2: 0.01, 1: 0.02}
    for _ in range(PROBE_EVERY * 4):
        _step(pacer, quiet)
    used = []
    for _ in range(10):  # its own measurement again
        used.append(pacer.threads("prefill", 500))
        pacer.record("prefill", 500, used[-1], 500 * quiet[used[-1]])
    assert used[-1] == 2 and 1 in used


def _step(pacer: Pacer, speed: dict[int, float]) -> int:
    threads = pacer.threads("decode", 1)
    pacer.record("decode", 1, threads, speed[threads])
    return threads
