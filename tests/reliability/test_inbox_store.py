"""The update inbox's rules, on Redis and in process alike: oldest first, leased, released, done, dropped.

What the polling bot relies on to lose nothing and answer once (see `bot/storage/inbox.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.crc import key_slot

from bot.storage.inbox import MAX_ATTEMPTS, Inbox, inbox_keys
from bot.storage.inprocess.inbox import InProcessInbox
from bot.storage.redis.inbox import TAKE, RedisInbox
from bot.storage.redis.store import connect

LONG = 30.0  # a lease that does not lapse during a test
SHORT = 0.2  # one that does, once the test has slept past it
BRIEF = 1.0  # one that must hold across the next few calls (on a busy machine too), then lapse
BOT_ID = 777


@pytest.fixture(params=["redis", "inprocess"])
async def inbox(request: pytest.FixtureRequest, redis_url: str, key_prefix: str) -> AsyncIterator[Inbox]:
    if request.param == "inprocess":
        yield InProcessInbox()
        return
    client = connect(redis_url)
    yield RedisInbox(client, prefix=key_prefix, bot_id=BOT_ID)
    await client.aclose()


async def fill(inbox: Inbox, *entries: tuple[int, str]) -> None:
    for update_id, chat in reversed(entries):  # stored out of order: taken in update-id order anyway
        await inbox.add(update_id, chat, f'{{"update_id": {update_id}}}')


def ids(entries: list[Any]) -> list[int]:
    return [entry.update_id for entry in entries]


async def test_oldest_first_each_entry_to_one_owner_until_done(inbox: Inbox) -> None:
    await fill(inbox, (10, "a"), (11, "b"), (12, "a"), (13, "c"))
    await inbox.add(10, "a", "a second add changes nothing")
    taken = await inbox.take("one", 2, LONG)
    assert ids(taken) == [10, 11] and taken[0].payload == '{"update_id": 10}'
    assert ids(await inbox.take("one", 5, LONG)) == [12, 13], "what this owner holds is not handed out again"
    assert await inbox.take("two", 5, LONG) == []
    for update_id in (10, 11, 12):
        await inbox.done(update_id)
    assert await inbox.pending() == 1
    assert await inbox.renew("one", [13, 10], LONG) == 1, "only the entry still held is renewed"


async def test_a_dead_owners_entries_are_taken_once_its_lease_lapses_and_its_chats_wait_for_them(
    inbox: Inbox,
) -> None:
    await fill(inbox, (1, "a"), (2, "b"))
    assert ids(await inbox.take("dead", 1, BRIEF)) == [1]
    await fill(inbox, (3, "a"), (4, "c"))
    # chat a's older message is held by another owner: its newer one waits, other chats do not
    assert ids(await inbox.take("next", 5, LONG)) == [2, 4]
    await asyncio.sleep(BRIEF * 1.5)
    assert ids(await inbox.take("next", 5, LONG)) == [1, 3], "oldest first once the lease lapsed"
    assert await inbox.renew("dead", [1], LONG) == 0, "the dead owner's lease is gone"


async def test_released_entries_come_back_at_once_and_a_poison_update_is_dropped(inbox: Inbox) -> None:
    await fill(inbox, (5, "a"))
    for _ in range(MAX_ATTEMPTS + 3):  # shutdowns give entries back: that is no failed attempt
        assert ids(await inbox.take("one", 1, LONG)) == [5]
        await inbox.release("one", [5])
    for _ in range(MAX_ATTEMPTS):  # a process that dies on it, every time
        assert ids(await inbox.take("crashing", 1, SHORT)) == [5]
        await asyncio.sleep(SHORT * 2)
    assert await inbox.take("next", 1, LONG) == []
    assert await inbox.pending() == 0, "dropped after MAX_ATTEMPTS, not retried forever"


async def test_a_take_retried_after_a_lost_reply_gets_the_same_entries(
    redis_url: str, key_prefix: str
) -> None:
    client = connect(redis_url)
    inbox = RedisInbox(client, prefix=key_prefix, bot_id=BOT_ID)
    await fill(inbox, (1, "a"), (2, "b"), (3, "c"))
    take = client.register_script(TAKE)
    args: list[str | int] = ["one", "token-1", 30_000, 2, MAX_ATTEMPTS, 100]
    first = await take(keys=list(inbox_keys(key_prefix, BOT_ID)), args=args)
    again = await take(keys=list(inbox_keys(key_prefix, BOT_ID)), args=args)
    assert first == again and first[1][::2] == ["1", "2"]
    assert ids(await inbox.take("one", 5, LONG)) == [3]
    await client.aclose()


def test_the_inbox_keys_share_one_hash_slot() -> None:
    def slots(bot: int) -> set[int]:
        return {key_slot(k.encode()) for k in inbox_keys("bot", bot)}

    assert len(slots(BOT_ID)) == 1 and len(slots(-5)) == 1
