"""Holding a chat and an update across replicas: wait for the chat's turn, lease the delivery, renew, settle.

Several `bot run` replicas behind one webhook answer as one bot because every reply is made under two
leases in the shared store: the chat's lock (one reply per chat at a time, oldest message first) and the
delivery's lease (one reply per Telegram update). Both are renewed while this process works on them and
expire when it dies, so a crashed replica's chats and updates are taken over after `lease_seconds`.
A store that is down degrades to what one process can promise (its own per-chat lock) and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from bot.core.errors import DuplicateDelivery, StoreUnavailable
from bot.storage.base import ChatLocks, LeaseState, Limits

__all__ = ["ChatTurns", "Delivery"]

log = logging.getLogger(__name__)

POLL_FIRST, POLL_MAX = 0.02, 0.25  # seconds between tries while waiting for a turn


def _when_task_ends(
    task: asyncio.Task[Any], then: Callable[[asyncio.Task[Any] | None], None], *, limit: float
) -> None:
    """Call `then(task)` once `task` ends, or `then(None)` after `limit` seconds if it is still going
    (a transport that answers many updates in one long-lived task must not hold a chat forever)."""
    called = False

    def once(ended: asyncio.Task[Any] | None) -> None:
        nonlocal called
        if not called:
            called = True
            timer.cancel()
            task.remove_done_callback(once)
            then(ended)

    timer = asyncio.get_running_loop().call_later(limit, once, None)
    task.add_done_callback(once)


class _Heartbeat:
    """Renews a lease every third of its length until stopped; says once if the lease was lost."""

    def __init__(self, renew: Callable[[], Awaitable[bool]], every: float, what: str) -> None:
        self._task = asyncio.create_task(self._run(renew, every, what))

    @staticmethod
    async def _run(renew: Callable[[], Awaitable[bool]], every: float, what: str) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                if not await renew():
                    log.warning("%s: lease lapsed before it was renewed; another replica may take over", what)
                    return
            except StoreUnavailable as exc:
                log.debug("%s: lease not renewed this time: %s", what, exc)

    def stop(self) -> None:
        self._task.cancel()


class Delivery:
    """This process's lease on one update; settle it with `finish` once the reply is decided."""

    def __init__(self, turns: ChatTurns, delivery_id: str, token: str) -> None:
        self._turns, self.delivery_id, self._token = turns, delivery_id, token
        self._beat = _Heartbeat(self._renew, turns.lease_seconds / 3, f"delivery {delivery_id}")
        self._finished = False

    async def _renew(self) -> bool:
        return await self._turns.limits.renew_lease(self.delivery_id, self._token, self._turns.lease_seconds)

    def finish(self, *, answered: bool) -> None:
        """`answered`: a reply (or a notice) was decided; it counts as delivered once the task that is
        sending it ends normally (the transport sends in the task that asked the service), and a
        redelivery is then dropped (if the task is still going `lease_seconds` later, it counts as
        delivered then). Otherwise, or if that task fails, the lease is given back now and a redelivery
        is answered."""
        if self._finished:
            return
        self._finished = True
        task = asyncio.current_task()
        if not answered or task is None:
            self._close(done=answered)
            return
        _when_task_ends(
            task,
            lambda t: self._close(done=t is None or (not t.cancelled() and t.exception() is None)),
            limit=self._turns.lease_seconds,
        )

    def _close(self, *, done: bool) -> None:
        self._beat.stop()
        self._turns.background(self._settle(done))

    async def _settle(self, done: bool) -> None:
        limits, key = self._turns.limits, self.delivery_id
        try:
            if not done:
                await limits.release_lease(key, self._token)
            elif not await limits.settle(key, self._token, self._turns.done_ttl_seconds):
                log.warning("delivery %s was taken over by another replica: it may be answered twice", key)
        except StoreUnavailable as exc:
            self._turns.store_failed("settle")
            log.warning("delivery %s not marked as %s: %s", key, "done" if done else "free", exc)


class ChatTurns:
    """The shared per-chat lock and per-update leases a `ChatService` answers under."""

    def __init__(
        self,
        locks: ChatLocks | None,
        limits: Limits | None,
        *,
        lease_seconds: float = 15.0,
        done_ttl_seconds: int = 86_400,
        on_store_error: Callable[[str], None] | None = None,
    ) -> None:
        self._locks = locks
        self._limits = limits
        self.lease_seconds = lease_seconds
        self.done_ttl_seconds = done_ttl_seconds
        self._on_store_error = on_store_error
        self._tasks: set[asyncio.Task[None]] = set()
        self._kept: set[tuple[asyncio.Task[Any] | None, str]] = set()  # chats held until a task ends

    @classmethod
    def local(cls) -> ChatTurns:
        """No shared store: this process's own order only, and no dedup of redeliveries."""
        return cls(None, None)

    @property
    def limits(self) -> Limits:
        assert self._limits is not None
        return self._limits

    def store_failed(self, operation: str) -> None:
        if self._on_store_error is not None:
            self._on_store_error(operation)

    def background(self, work: Awaitable[None]) -> None:
        """Run a store write that must not wait for (or be cancelled with) the reply that caused it."""

        async def run() -> None:
            await work

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the store writes still in flight (at shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)

    @contextlib.asynccontextmanager
    async def chat(
        self, chat_id: int | str, message_id: int | None, *, until_task_ends: bool = False
    ) -> AsyncIterator[None]:
        """Hold the chat's shared lock for the block; waits behind older messages of the chat.

        Messages without an id queue behind those with one, in arrival order. `until_task_ends` keeps
        the lock until the current task ends, for a transport that sends the reply after the service
        is done with it in the same task (so the next reply cannot overtake it); never for a task that
        answers the same chat again itself.
        """
        task = asyncio.current_task()
        if self._locks is None or (task, str(chat_id)) in self._kept:
            yield  # no shared lock, or this task still holds the chat from its previous reply
            return
        token = uuid.uuid4().hex
        ticket: float = message_id if message_id is not None else time.time() * 1000
        if not await self._wait_for_turn(self._locks, chat_id, token, ticket):
            yield  # the store is down: this process's own lock is all there is
            return
        locks, lease = self._locks, self.lease_seconds
        beat = _Heartbeat(lambda: locks.renew(chat_id, token, lease), lease / 3, f"chat {chat_id}")

        def release(_: object = None) -> None:
            self._kept.discard((task, str(chat_id)))
            beat.stop()
            self.background(self._release(locks, chat_id, token))

        try:
            yield
        finally:
            if until_task_ends and task is not None:
                self._kept.add((task, str(chat_id)))
                _when_task_ends(task, release, limit=self.lease_seconds)
            else:
                release()

    async def _wait_for_turn(self, locks: ChatLocks, chat_id: int | str, token: str, ticket: float) -> bool:
        pause = POLL_FIRST
        try:
            while not await locks.try_acquire(chat_id, token, ticket, self.lease_seconds):
                await asyncio.sleep(pause)
                pause = min(pause * 1.5, POLL_MAX)
        except StoreUnavailable as exc:
            self.store_failed("lock")
            log.warning(
                "chat %s: answering under this replica's lock only (order across replicas not kept): %s",
                chat_id,
                exc,
            )
            self.background(self._release(locks, chat_id, token))
            return False
        except BaseException:  # cancelled while queueing: leave the queue at once
            self.background(self._release(locks, chat_id, token))
            raise
        return True

    async def _release(self, locks: ChatLocks, chat_id: int | str, token: str) -> None:
        try:
            await locks.release(chat_id, token)
        except StoreUnavailable as exc:
            self.store_failed("unlock")
            log.warning("chat %s: lock not released (it expires by itself): %s", chat_id, exc)

    async def claim(self, delivery_id: str) -> Delivery | None:
        """Lease the delivery, waiting while another replica is still answering it.

        Raises DuplicateDelivery when it was already answered; None when the store cannot tell (the
        message is answered: a possible duplicate beats a lost question).
        """
        if self._limits is None:
            return None
        token, pause = uuid.uuid4().hex, POLL_FIRST
        try:
            while (
                state := await self._limits.lease(delivery_id, token, self.lease_seconds)
            ) is LeaseState.HELD:
                await asyncio.sleep(pause)
                pause = min(pause * 1.5, POLL_MAX)
        except StoreUnavailable as exc:
            self.store_failed("claim")
            log.warning("cannot check delivery %s for duplicates: %s", delivery_id, exc)
            return None
        if state is LeaseState.DONE:
            raise DuplicateDelivery(f"delivery {delivery_id} was already handled")
        return Delivery(self, delivery_id, token)
