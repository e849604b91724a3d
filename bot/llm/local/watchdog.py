"""Keeping the engine alive when a forward pass never returns.

A requester that stopped reading (its customer left, or it gave up on a stall) asks the watchdog to see
the request released. The scheduler normally does so at its next step. If instead one forward pass runs
longer than the stall limit, the model is hung: that scheduler is retired, a fresh one serves the
waiting requests, and the replies the stuck one held are failed at once (they cannot finish on a hung
thread). A slow step (a long prefill) is not a hang, and only the scheduler a request ran on can be
retired, never its replacement.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from bot.core.errors import GenerationError
from bot.llm.local.events import Event, Failed, Released
from bot.llm.local.scheduler import Scheduler

__all__ = ["STUCK_AFTER_SECONDS", "Watchdog"]

log = logging.getLogger(__name__)

# the shortest forward pass taken for a hang; also how long closing waits for a running step
STUCK_AFTER_SECONDS = 2.0


class Watchdog:
    def __init__(self, make_scheduler: Callable[[], Scheduler]) -> None:
        self._make = make_scheduler
        self.scheduler = make_scheduler()
        self.closed = False
        self._tasks: set[asyncio.Task[None]] = set()

    def watch(self, scheduler: Scheduler, events: asyncio.Queue[Event], stall_seconds: float) -> None:
        """Follow a stopped request in the background until `scheduler` releases it (or is retired)."""
        hung_after = max(stall_seconds, STUCK_AFTER_SECONDS)
        task = asyncio.create_task(self._await_release(scheduler, events, hung_after))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _await_release(
        self, scheduler: Scheduler, events: asyncio.Queue[Event], hung_after: float
    ) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 10 * hung_after
        while loop.time() < give_up:
            try:
                if isinstance(await asyncio.wait_for(events.get(), 0.25), Released):
                    return
                continue
            except TimeoutError:
                pass
            if self.closed or scheduler is not self.scheduler:
                return
            since = scheduler.forward_since
            if since is not None and time.monotonic() - since > hung_after:
                self._replace(scheduler, time.monotonic() - since)
                return

    def _replace(self, stuck: Scheduler, seconds: float) -> None:
        log.error(
            "a forward pass has run for %.0f s (the model is hung?); continuing on a fresh thread", seconds
        )
        self.scheduler = self._make()
        waiting, live, jobs = stuck.abandon()
        self.scheduler.adopt(waiting, jobs)
        for request in live:
            request.emit(Failed(GenerationError("the model stopped responding")))
            request.emit(Released())

    async def aclose(self) -> None:
        self.closed = True
        waiting, jobs = self.scheduler.retire()
        for request in waiting:
            request.emit(Failed(GenerationError("the engine is shutting down")))
        jobs.fail(GenerationError("the engine is shutting down"))
        # let a running step finish, so the process never exits while torch is mid-call
        await asyncio.to_thread(self.scheduler.join, STUCK_AFTER_SECONDS)
