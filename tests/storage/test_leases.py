"""Chat locks and delivery leases: the same contract in Redis and in-process, and the turns built on them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import redis

from bot.chat.ordering import ChatTurns
from bot.core.errors import DuplicateDelivery
from bot.storage.base import ChatLocks, LeaseState, Limits, chat_lock_keys
from bot.storage.inprocess.store import InProcessChatLocks, InProcessLimits
from bot.storage.redis.store import RedisChatLocks, RedisLimits, connect
from tests.helpers import eventually

LEASE = 5.0
# a lease that must hold across the next few calls, then lapse: long enough for a busy machine's calls
BRIEF = 1.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["redis", "inprocess"])
async def backend(
    request: pytest.FixtureRequest, redis_url: str, key_prefix: str, clock: Clock
) -> AsyncIterator[tuple[ChatLocks, Limits]]:
    if request.param == "inprocess":
        yield InProcessChatLocks(clock=clock), InProcessLimits(clock=clock)
        return
    client = connect(redis_url)
    yield RedisChatLocks(client, prefix=key_prefix), RedisLimits(client, prefix=key_prefix)
    await client.aclose()


async def expire(backend: tuple[ChatLocks, Limits], clock: Clock, seconds: float) -> None:
    """Let leases of `seconds` lapse: on the fake clock in-process, for real in Redis (server time)."""
    if isinstance(backend[0], InProcessChatLocks):
        clock.now += seconds + 0.01
    else:
        await asyncio.sleep(seconds + 0.05)


async def test_the_lock_goes_to_the_lowest_waiting_ticket(backend: tuple[ChatLocks, Limits]) -> None:
    locks, _ = backend
    assert await locks.try_acquire(1, "holder", 3, LEASE)
    assert not await locks.try_acquire(1, "five", 5, LEASE)  # arrived first, but a later message
    assert not await locks.try_acquire(1, "four", 4, LEASE)
    await locks.release(1, "holder")
    assert not await locks.try_acquire(1, "five", 5, LEASE)
    assert await locks.try_acquire(1, "four", 4, LEASE)
    assert not await locks.try_acquire(1, "five", 5, LEASE)
    await locks.release(1, "four")
    assert await locks.try_acquire(1, "five", 5, LEASE)


async def test_chats_do_not_block_each_other_and_a_retry_by_the_holder_succeeds(
    backend: tuple[ChatLocks, Limits],
) -> None:
    locks, _ = backend
    assert await locks.try_acquire(1, "a", 1, LEASE)
    assert await locks.try_acquire(2, "b", 9, LEASE)
    assert await locks.try_acquire(1, "a", 1, LEASE)  # its reply was lost and redis-py asked again
    assert await locks.renew(1, "a", LEASE)
    assert not await locks.renew(1, "b", LEASE)


async def test_release_is_compare_and_delete(backend: tuple[ChatLocks, Limits]) -> None:
    locks, _ = backend
    assert await locks.try_acquire(1, "a", 1, LEASE)
    await locks.release(1, "someone else")
    assert not await locks.try_acquire(1, "b", 2, LEASE)
    await locks.release(1, "a")
    await locks.release(1, "a")  # a retried release changes nothing
    assert await locks.try_acquire(1, "b", 2, LEASE)


async def test_a_dead_holders_lease_and_a_dead_waiters_place_expire(
    backend: tuple[ChatLocks, Limits], clock: Clock
) -> None:
    locks, _ = backend
    assert await locks.try_acquire(1, "dead holder", 1, BRIEF)
    assert not await locks.try_acquire(1, "dead waiter", 2, BRIEF)
    assert not await locks.try_acquire(1, "live", 3, 30)
    await expire(backend, clock, BRIEF)
    assert not await locks.renew(1, "dead holder", LEASE)
    assert await locks.try_acquire(1, "live", 3, LEASE)


async def test_a_delivery_lease_is_mine_held_then_done(backend: tuple[ChatLocks, Limits]) -> None:
    _, limits = backend
    assert await limits.lease("tg:1:5", "a", LEASE) is LeaseState.MINE
    assert await limits.lease("tg:1:5", "a", LEASE) is LeaseState.MINE  # retried after a lost reply
    assert await limits.lease("tg:1:5", "b", LEASE) is LeaseState.HELD
    assert await limits.renew_lease("tg:1:5", "a", LEASE)
    assert not await limits.renew_lease("tg:1:5", "b", LEASE)
    assert await limits.settle("tg:1:5", "a", 60)
    assert await limits.settle("tg:1:5", "a", 60)  # retried
    assert await limits.lease("tg:1:5", "b", LEASE) is LeaseState.DONE
    assert not await limits.renew_lease("tg:1:5", "a", LEASE)


async def test_a_released_or_lapsed_delivery_is_answered_by_the_next_one(
    backend: tuple[ChatLocks, Limits], clock: Clock
) -> None:
    _, limits = backend
    assert await limits.lease("tg:1:6", "a", LEASE) is LeaseState.MINE
    await limits.release_lease("tg:1:6", "a")
    assert await limits.lease("tg:1:6", "b", 0.2) is LeaseState.MINE
    await expire(backend, clock, 0.2)
    assert await limits.lease("tg:1:6", "c", LEASE) is LeaseState.MINE
    assert not await limits.settle("tg:1:6", "b", 60), "b's lease lapsed and c took over: b must not mark it"
    assert await limits.lease("tg:1:6", "b", LEASE) is LeaseState.HELD


async def test_an_older_versions_claim_counts_as_done(redis_url: str, key_prefix: str) -> None:
    client = connect(redis_url)
    limits = RedisLimits(client, prefix=key_prefix)
    assert await limits.claim("tg:1:7", 60)
    assert await limits.lease("tg:1:7", "a", LEASE) is LeaseState.DONE
    await client.aclose()


# --- the turns ChatService answers under --------------------------------------------------------------


async def test_two_replicas_answer_a_chat_oldest_message_first(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    clients = [connect(redis_url), connect(redis_url)]
    replicas = [ChatTurns(RedisChatLocks(c, prefix=key_prefix), None, lease_seconds=LEASE) for c in clients]
    order: list[int] = []
    holding = asyncio.Event()
    release = asyncio.Event()

    async def answer(replica: ChatTurns, message_id: int, hold: bool = False) -> None:
        async with replica.chat(42, message_id):
            order.append(message_id)
            if hold:
                holding.set()
                await release.wait()

    first = asyncio.create_task(answer(replicas[0], 1, hold=True))
    await holding.wait()
    arrivals = [5, 3, 4, 2]  # later messages reach the replicas first
    waiting = [asyncio.create_task(answer(replicas[i % 2], m)) for i, m in enumerate(arrivals)]
    queue = chat_lock_keys(key_prefix, 42)[1]
    # every waiter has queued (in Redis) before the holder lets go
    await eventually(lambda: redis_client.zcard(queue) == len(arrivals))
    release.set()
    await asyncio.gather(first, *waiting)
    assert order == [1, 2, 3, 4, 5]
    for replica in replicas:
        await replica.drain()
    assert not redis_client.exists(*chat_lock_keys(key_prefix, 42))
    for client in clients:
        await client.aclose()


async def test_the_lease_is_renewed_while_the_reply_takes_longer_than_it(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    client = connect(redis_url)
    locks = RedisChatLocks(client, prefix=key_prefix)
    renewals = [0]
    renew = locks.renew

    async def counted_renew(chat_id: int | str, token: str, lease_seconds: float) -> bool:
        renewals[0] += 1
        return await renew(chat_id, token, lease_seconds)

    locks.renew = counted_renew  # type: ignore[method-assign]
    # renewed every third of a lease: a busy machine may stall the loop for most of a lease unharmed
    turns = ChatTurns(locks, None, lease_seconds=BRIEF)
    other = ChatTurns(RedisChatLocks(client, prefix=key_prefix), None, lease_seconds=BRIEF)
    entered: list[str] = []
    inside = asyncio.Event()

    async def slow() -> None:
        async with turns.chat(9, 1):
            entered.append("slow in")
            inside.set()
            # four renewals, a third of a lease apart: the reply has outlasted its first lease
            await eventually(lambda: renewals[0] >= 4)
            entered.append("slow out")

    async def next_message() -> None:
        async with other.chat(9, 2):
            entered.append("next")

    task = asyncio.create_task(slow())
    await inside.wait()
    await asyncio.gather(task, next_message())
    assert entered == ["slow in", "slow out", "next"]
    await turns.drain()
    await other.drain()
    await client.aclose()


async def test_a_delivery_is_done_once_the_answering_task_ends(redis_url: str, key_prefix: str) -> None:
    client = connect(redis_url)
    limits = RedisLimits(client, prefix=key_prefix)
    turns = ChatTurns(None, limits, lease_seconds=LEASE)
    sent = asyncio.Event()

    async def answer() -> None:
        delivery = await turns.claim("tg:1:100")
        assert delivery is not None
        delivery.finish(answered=True)
        # the transport sends the reply after the service is done: still this replica's lease
        assert await limits.lease("tg:1:100", "redelivery", LEASE) is LeaseState.HELD
        sent.set()

    await asyncio.create_task(answer())
    await turns.drain()
    with pytest.raises(DuplicateDelivery):
        await turns.claim("tg:1:100")
    assert sent.is_set()
    await client.aclose()


async def test_an_abandoned_reply_gives_the_delivery_back(redis_url: str, key_prefix: str) -> None:
    client = connect(redis_url)
    turns = ChatTurns(None, RedisLimits(client, prefix=key_prefix), lease_seconds=LEASE)
    delivery = await turns.claim("tg:1:101")
    assert delivery is not None
    delivery.finish(answered=False)
    await turns.drain()
    assert await turns.claim("tg:1:101") is not None
    await client.aclose()


async def test_a_redelivery_waits_for_a_dead_replicas_lease_then_answers(
    redis_url: str, key_prefix: str
) -> None:
    client = connect(redis_url)
    limits = RedisLimits(client, prefix=key_prefix)
    assert await limits.lease("tg:1:102", "replica that died", 0.3) is LeaseState.MINE
    turns = ChatTurns(None, limits, lease_seconds=LEASE)
    delivery = await turns.claim("tg:1:102")
    assert delivery is not None
    assert await limits.lease("tg:1:102", "third", LEASE) is LeaseState.HELD
    delivery.finish(answered=False)
    await turns.drain()
    await client.aclose()


async def test_a_store_that_is_down_degrades_to_the_local_lock_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.chat.ordering")
    client = connect("redis://127.0.0.1:1/0")
    failures: list[str] = []
    turns = ChatTurns(
        RedisChatLocks(client, prefix="x"),
        RedisLimits(client, prefix="x"),
        on_store_error=failures.append,
    )
    async with turns.chat(5, 1):
        assert await turns.claim("tg:1:1") is None  # answered rather than dropped
    await turns.drain()
    assert "lock" in failures and "claim" in failures
    assert any("answering under this replica's lock only" in m for m in caplog.messages)
    await client.aclose()


async def test_a_chat_can_stay_held_until_the_reply_is_sent_and_the_same_task_may_answer_again(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    client = connect(redis_url)
    replica, other = (ChatTurns(RedisChatLocks(client, prefix=key_prefix), None) for _ in range(2))
    events: list[str] = []
    sending = asyncio.Event()
    sent = asyncio.Event()

    async def answer_and_send() -> None:
        async with replica.chat(3, 1, until_task_ends=True):
            events.append("generated 1")
        sending.set()
        await sent.wait()  # the transport sends the reply after the service is done
        async with replica.chat(3, 2, until_task_ends=True):  # the same task again: no deadlock
            events.append("generated 2")
        events.append("sent 1 and 2")

    async def next_message() -> None:
        await sending.wait()
        async with other.chat(3, 3):
            events.append("generated 3")

    first, second = asyncio.create_task(answer_and_send()), asyncio.create_task(next_message())
    queue = chat_lock_keys(key_prefix, 3)[1]
    # the next message has asked for the chat (it queues in Redis) or, wrongly, got it
    await eventually(lambda: redis_client.zcard(queue) == 1 or "generated 3" in events)
    assert events == ["generated 1"], "the next message waits while the reply is still being sent"
    sent.set()
    await asyncio.gather(first, second)
    assert events == ["generated 1", "generated 2", "sent 1 and 2", "generated 3"]
    await replica.drain()
    await other.drain()
    await client.aclose()


async def test_a_task_that_goes_on_answering_lets_go_of_the_chat_and_the_delivery_after_a_lease(
    redis_url: str, key_prefix: str
) -> None:
    client = connect(redis_url)
    limits = RedisLimits(client, prefix=key_prefix)
    replica = ChatTurns(RedisChatLocks(client, prefix=key_prefix), limits, lease_seconds=0.3)
    other = ChatTurns(RedisChatLocks(client, prefix=key_prefix), limits, lease_seconds=0.3)
    done, answered = asyncio.Event(), asyncio.Event()

    async def long_lived_transport() -> None:  # one task for every update, as a sequential poller has
        async with replica.chat(4, 1, until_task_ends=True):
            delivery = await replica.claim("tg:1:200")
            assert delivery is not None
            delivery.finish(answered=True)
        answered.set()
        await done.wait()

    task = asyncio.create_task(long_lived_transport())
    await answered.wait()
    async with other.chat(4, 2):  # not forever behind a task that never ends
        with pytest.raises(DuplicateDelivery):
            await other.claim("tg:1:200")
    done.set()
    await task
    await replica.drain()
    await other.drain()
    await client.aclose()
