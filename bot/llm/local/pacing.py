"""How many threads each forward pass uses: measured while serving, because the answer changes with load.

On an idle 2-core machine a decode step of the bundled model takes 17 ms on two threads and 22 ms on
one. With one other busy process on the machine, two threads took 37 ms a step and up to a second in
the worst runs, one thread still 22 ms: torch's OpenMP workers wait for each other at every one of the
hundreds of small parallel regions of a step, and a worker the OS has parked behind another process
stalls them all. Which is faster therefore depends on what else runs, and that changes by the minute.

So `Pacer` keeps a running average of the time per token for each thread count and each size of work
(rows of a decode step, tokens of a prefill, in powers of two), uses the fastest, and now and then
tries the others again: at once while one has no figure yet, then every `PROBE_EVERY` passes, twice as
rarely each time a probe loses (one bad probe under load costs a slow step, so probes back off).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

__all__ = ["PROBE_EVERY", "Pacer"]

PROBE_EVERY = 32  # passes between two tries of a thread count that is not the fastest
MOST_PROBE_EVERY = 4096
PROBE_PASSES = 4  # a try: this many passes in a row, measured afresh (the first one only warms up)
WEIGHT = 0.3  # of the newest measurement in the running average

T = TypeVar("T")


@dataclass
class _Option:
    seconds_per_token: float | None = None
    warm: bool = False  # the first pass of a thread count on some work is a warm-up, not counted
    probe_every: int = PROBE_EVERY
    last_used: int = 0


@dataclass
class _Work:
    options: dict[int, _Option]
    passes: int = 0
    best: int = 0
    probe: int = 0  # the thread count being tried, 0: none
    probe_left: int = 0  # passes of the try still to run


class Pacer:
    """Chooses the thread count of each forward pass from measured time per token; use it from one thread."""

    def __init__(self, most: int) -> None:
        """`most`: the thread count allowed (MODEL_THREADS, or torch's default: the cores)."""
        self.choices = sorted({most, max(1, most // 2), 1}, reverse=True)
        self._work: dict[tuple[str, int], _Work] = {}
        self._current = 0  # the thread count torch was last set to on this thread (0: not yet)
        self._decode_best = most  # the best count of the latest decode step's work

    def run(self, kind: str, tokens: int, forward: Callable[[], T]) -> T:
        """`forward()` on the thread count chosen for this work, timed for the next choices."""
        threads = self.threads(kind, tokens)
        if threads != self._current:
            torch.set_num_threads(threads)
            self._current = threads
        started = time.perf_counter()
        result = forward()
        self.record(kind, tokens, threads, time.perf_counter() - started)
        return result

    def threads(self, kind: str, tokens: int) -> int:
        """The thread count for a pass of `kind` ("decode", "prefill") over `tokens` tokens.

        Decode steps are many and short, so they tell first when the machine is busy; while they run best
        on fewer threads, other passes use no more (a prefill tried on two threads then would stall long).
        """
        if kind != "decode" and self._decode_best < self.choices[0]:
            return self._decode_best
        work = self._entry(kind, tokens)
        work.passes += 1
        if not work.probe_left:
            due = [
                n
                for n, o in work.options.items()
                if n != work.best
                and (o.seconds_per_token is None or work.passes - o.last_used >= o.probe_every)
            ]
            if not due:
                return work.best
            work.probe, work.probe_left = due[0], PROBE_PASSES
            tried = work.options[work.probe]
            tried.seconds_per_token, tried.warm = None, False  # an old figure says nothing about now
        work.probe_left -= 1
        work.options[work.probe].last_used = work.passes
        return work.probe

    def record(self, kind: str, tokens: int, threads: int, seconds: float) -> None:
        """What a pass of `kind` over `tokens` tokens on `threads` threads took."""
        work = self._entry(kind, tokens)
        option = work.options[threads]
        rate = seconds / max(tokens, 1)
        previous = option.seconds_per_token
        if option.warm:
            option.seconds_per_token = rate if previous is None else (1 - WEIGHT) * previous + WEIGHT * rate
        option.warm = True
        measured = {n: o.seconds_per_token for n, o in work.options.items() if o.seconds_per_token}
        if measured:
            work.best = min(measured, key=lambda n: measured[n])
        if kind == "decode":
            self._decode_best = work.best
        if threads == work.probe and not work.probe_left:  # the try is over: did it win?
            won = work.best == threads
            option.probe_every = PROBE_EVERY if won else min(2 * option.probe_every, MOST_PROBE_EVERY)
            work.probe = 0

    def figures(self) -> dict[str, dict[int, float]]:
        """Milliseconds per token by work ("decode 16") and thread count, for logs and tests."""
        return {
            f"{kind} {size}": {
                n: round(o.seconds_per_token * 1000, 3)
                for n, o in work.options.items()
                if o.seconds_per_token is not None
            }
            for (kind, size), work in self._work.items()
        }

    def _entry(self, kind: str, tokens: int) -> _Work:
        size = 1 << max(0, tokens - 1).bit_length()  # 1, 2, 4, 8, ...: the next power of two
        key = (kind, size)
        if key not in self._work:
            self._work[key] = _Work({n: _Option() for n in self.choices}, best=self.choices[0])
        return self._work[key]
