"""Polling without losing updates: each one is kept in the bot's inbox before Telegram forgets it.

python-telegram-bot's Updater confirms a batch of updates to Telegram with the next `getUpdates` call,
which it makes as soon as it has handed the batch to its queue. Here that queue is the inbox itself:
`put` returns only once the update is stored (in Redis), so nothing confirmed is held only in memory.
A loop then takes updates from the inbox, oldest first, at most `concurrency` at a time, leases them,
answers each through the Application, and removes it once handled. Shutdown stops taking, lets the
updates in hand finish within the grace period and gives the rest back; a process that dies leaves its
leases to lapse. Either way the next process (or another replica) answers what is left, and the delivery
lease of `bot/chat/ordering.py` keeps an update answered just before a crash from being answered twice.

When the store cannot take an update (Redis down or out of memory), it is answered from memory at once,
as before the inbox existed: an outage costs durability, never replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid

from telegram import Update
from telegram.ext import Application

from bot.core.errors import StoreUnavailable
from bot.storage.inbox import Inbox, InboxEntry

__all__ = ["UpdateInbox"]

log = logging.getLogger(__name__)


class UpdateInbox:
    """The Updater's `update_queue` (its `put` stores) and the loop that answers from the inbox."""

    def __init__(
        self,
        inbox: Inbox | None,
        application: Application,  # type: ignore[type-arg]
        *,
        concurrency: int,
        lease_seconds: float,
        poll_seconds: float = 1.0,
    ) -> None:
        self._inbox, self._application = inbox, application
        self._concurrency, self._lease = concurrency, lease_seconds
        self._poll = min(poll_seconds, lease_seconds / 3)
        self._owner = uuid.uuid4().hex
        self._tasks: dict[int, asyncio.Task[None]] = {}  # stored updates in hand, by update id
        self._unstored: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._taking = False
        self._store_down = False
        self._loops: list[asyncio.Task[None]] = []

    async def put(self, update: object) -> None:
        """Store an update the Updater fetched; only then may its offset move past it."""
        if not isinstance(update, Update):
            return
        chat = update.effective_chat
        try:
            if self._inbox is None:
                raise StoreUnavailable("no inbox")
            await self._inbox.add(
                update.update_id, str(chat.id) if chat else "", json.dumps(update.to_dict())
            )
        except StoreUnavailable as exc:
            if self._inbox is not None:
                self._store_failed(exc)
            task = asyncio.create_task(self._answer(update))
            self._unstored.add(task)
            task.add_done_callback(self._unstored.discard)
            return
        self._wake.set()

    def start(self) -> None:
        self._taking = True
        self._loops = [asyncio.create_task(self._take_loop()), asyncio.create_task(self._renew_loop())]

    async def stop(self, grace: float) -> None:
        """Take nothing more; finish what is in hand within `grace` seconds; give back the rest."""
        self._taking = False
        self._wake.set()
        await asyncio.wait([self._loops[0]], timeout=5)
        in_hand = {task: update_id for update_id, task in self._tasks.items()}
        late: set[asyncio.Task[None]] = set()
        if in_hand or self._unstored:
            _, late = await asyncio.wait({*in_hand, *self._unstored}, timeout=grace)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=5)
        self._loops[1].cancel()
        given_back = [update_id for task, update_id in in_hand.items() if task in late]
        lost = len(late) - len(given_back)
        if lost:
            log.warning("%d replies kept only in memory (the store was down) were abandoned", lost)
        await self._give_back(given_back)

    async def _give_back(self, update_ids: list[int]) -> None:
        if self._inbox is None:
            return
        try:
            if update_ids:
                await self._inbox.release(self._owner, update_ids)
            left = await self._inbox.pending()
        except StoreUnavailable as exc:
            log.warning("the inbox could not be read at shutdown (its leases lapse by themselves): %s", exc)
            return
        if update_ids:
            log.warning(
                "%d replies did not finish within the grace period: back in the inbox", len(update_ids)
            )
        if left:
            log.info("%d updates left in the inbox: answered at the next start", left)

    async def _take_loop(self) -> None:
        while self._taking:
            room = self._concurrency - len(self._tasks)
            entries = await self._take(room) if room > 0 else []
            if entries:
                for entry in entries:
                    self._begin(entry)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)

    async def _take(self, room: int) -> list[InboxEntry]:
        if self._inbox is None:
            return []
        try:
            entries = await self._inbox.take(self._owner, room, self._lease)
        except StoreUnavailable as exc:
            self._store_failed(exc)
            return []
        if self._store_down:
            self._store_down = False
            log.info("the inbox is reachable again")
        return [entry for entry in entries if entry.update_id not in self._tasks]

    def _begin(self, entry: InboxEntry) -> None:
        task = asyncio.create_task(self._handle(entry))
        self._tasks[entry.update_id] = task
        task.add_done_callback(lambda _: self._finished(entry.update_id))

    def _finished(self, update_id: int) -> None:
        self._tasks.pop(update_id, None)
        self._wake.set()  # room for the next one

    async def _handle(self, entry: InboxEntry) -> None:
        try:
            update = Update.de_json(json.loads(entry.payload), self._application.bot)
        except (ValueError, TypeError, KeyError) as exc:
            log.error("update %d in the inbox is unreadable and is dropped: %s", entry.update_id, exc)
            await self._done(entry.update_id)
            return
        await self._answer(update, stored=True)

    async def _answer(self, update: Update, *, stored: bool = False) -> None:
        application = self._application
        try:
            await application.update_processor.process_update(update, application.process_update(update))
        except Exception:  # handlers' errors go to the error handler; this is PTB failing itself
            log.exception("update %d could not be processed", update.update_id)
        if stored:  # not reached when cancelled: the update stays in the inbox
            await self._done(update.update_id)

    async def _done(self, update_id: int) -> None:
        if self._inbox is None:
            return
        try:
            await self._inbox.done(update_id)
        except StoreUnavailable as exc:  # its lease lapses; the delivery lease drops the repeat
            log.warning("update %d not removed from the inbox: %s", update_id, exc)

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            if self._inbox is None:
                return
            try:
                await self._inbox.renew(self._owner, list(self._tasks), self._lease)
            except StoreUnavailable as exc:
                log.debug("inbox leases not renewed this time: %s", exc)

    def _store_failed(self, exc: StoreUnavailable) -> None:
        if not self._store_down:
            self._store_down = True
            log.warning("the inbox is unavailable; updates are answered from memory meanwhile: %s", exc)
