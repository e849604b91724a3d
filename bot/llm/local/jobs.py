"""Other torch work run on the scheduler's thread, between two decode steps.

Query embeddings and the like are short; run on threads of their own they would each keep an OpenMP
team alive and slow every decode step (bot/llm/threads.py), and on two cores two busy teams fight over
the same cores. Queued here instead, the scheduler runs them between steps: a job waits at most one
step, and a step never shares the cores with one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["Jobs"]

T = TypeVar("T")


class Jobs:
    """A FIFO of callables and their futures. Not locked: its owner holds its own lock around each call."""

    def __init__(self) -> None:
        self._queue: deque[tuple[Callable[[], Any], Future[Any]]] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, work: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._queue.append((work, future))
        return future

    @staticmethod
    def now(work: Callable[[], T]) -> Future[T]:
        """`work` run at once, on the calling thread, as a completed future."""
        jobs = Jobs()
        future = jobs.add(work)
        jobs.run()
        return future

    def take(self) -> Jobs:
        """Every queued job, moved into a new `Jobs` (to run them outside the owner's lock, or elsewhere)."""
        taken = Jobs()
        taken._queue, self._queue = self._queue, deque()
        return taken

    def extend(self, other: Jobs) -> None:
        self._queue.extend(other._queue)

    def run(self) -> None:
        """Run every job in order; each one's result or exception goes to its future."""
        while self._queue:
            work, future = self._queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(work())
            except Exception as exc:  # the submitter gets it from its future
                future.set_exception(exc)

    def fail(self, error: Exception) -> None:
        while self._queue:
            _work, future = self._queue.popleft()
            if future.set_running_or_notify_cancel():
                future.set_exception(error)
