"""The thread that runs generations: one at a time, off the event loop, replaceable if one wedges.

torch is entered from this one thread, so generations never interleave. If a generation ignores its
stop signal (a forward pass that hangs), the engine retires this thread and starts a fresh one that
takes over the queued jobs: one stuck reply must not stall every chat. A retired thread exits as soon as
its stuck job returns; it is a daemon, so it never blocks the process from exiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["GenerationWorker"]

T = TypeVar("T")
_Job = tuple[Callable[[], Any], "concurrent.futures.Future[Any]"]


class GenerationWorker:
    def __init__(self, name: str = "generate") -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._retired = threading.Event()
        self._spawn()

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((fn, future))
        return asyncio.wrap_future(future)

    @property
    def pending(self) -> int:
        """Jobs waiting for the thread (approximate: SimpleQueue.qsize)."""
        return self._jobs.qsize()

    def replace(self) -> None:
        """Leave the current thread to its stuck job; a new thread serves the queue from now on."""
        self._retired.set()
        self._retired = threading.Event()
        self._spawn()

    def close(self) -> None:
        self._retired.set()
        self._jobs.put(None)

    def _spawn(self) -> None:
        threading.Thread(target=self._run, args=(self._retired,), name=self._name, daemon=True).start()

    def _run(self, retired: threading.Event) -> None:
        while not retired.is_set():
            job = self._jobs.get()
            if job is None:
                return
            fn, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the awaiting coroutine
                future.set_exception(exc)
