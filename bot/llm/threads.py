"""Which thread runs torch: one compute thread per process, and short-lived threads for the rest.

torch's CPU kernels split work with OpenMP (libgomp). Every thread that runs a multi-threaded torch op
gets a team of worker threads of its own, and that team lives as long as the thread does. When the
teams of a process hold more threads than there are cores, libgomp stops letting idle workers spin
and puts them to sleep between parallel regions instead; a decode step is hundreds of small parallel
regions, so every one of them then waits for a wake-up. Measured on 2 cores (bundled SmolLM2-135M,
int4, one chat): 17 ms a decode step when one thread in the process runs torch, 28 ms when the model
was loaded on another thread that is still alive (asyncio's default executor keeps its threads).

So torch work that happens once (loading a model, building an index) runs on a thread that ends with
it (`on_fresh_thread`): its team goes away with it. Work that recurs while the engine decodes (query
embeddings) runs on the engine's own compute thread between decode steps (`Scheduler.call`), which also
keeps two teams from fighting over two cores.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Protocol, TypeVar

__all__ = ["Submit", "on_fresh_thread"]

T = TypeVar("T")


class Submit(Protocol):
    """Runs `work` on a compute thread; its future (Scheduler.call, TransformersEngine.compute)."""

    def __call__(self, work: Callable[[], T]) -> Future[T]: ...


def on_fresh_thread(work: Callable[[], T], *, name: str = "torch-once") -> T:
    """`work()` run on a new thread that ends when it returns; its result, or its exception re-raised."""
    done: Future[T] = Future()

    def run() -> None:
        try:
            done.set_result(work())
        except BaseException as exc:  # handed to the caller, who re-raises it
            done.set_exception(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join()
    return done.result()
