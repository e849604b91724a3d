"""Both stores must behave the same: order, cap, TTL, idempotent appends, clear, exact round trip."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import redis

from bot.core.domain import Role, Turn
from bot.core.errors import StoreUnavailable
from bot.storage import ConversationStore, history_key, ids_key
from bot.storage.inprocess.store import InProcessStore
from bot.storage.redis.store import RedisStore

MAX_TURNS = 6
TTL = 3600


@pytest.fixture(params=["redis", "inprocess"])
async def store(
    request: pytest.FixtureRequest, redis_url: str, key_prefix: str
) -> AsyncIterator[ConversationStore]:
    made: ConversationStore
    if request.param == "redis":
        made = RedisStore.from_url(redis_url, prefix=key_prefix, max_turns=MAX_TURNS, ttl_seconds=TTL)
    else:
        made = InProcessStore(max_turns=MAX_TURNS, ttl_seconds=TTL)
    yield made
    await made.aclose()


def pair(n: int) -> list[Turn]:
    return [Turn(Role.USER, f"question {n}", message_id=n, user_id=5), Turn(Role.ASSISTANT, f"answer {n}")]


async def test_appends_in_order_and_loads_them_back(store: ConversationStore) -> None:
    await store.append(1, pair(1), "a1")
    await store.append(1, pair(2), "a2")
    turns = await store.load(1)
    assert [t.content for t in turns] == ["question 1", "answer 1", "question 2", "answer 2"]
    assert turns[0].message_id == 1 and turns[0].user_id == 5 and turns[0].role is Role.USER


async def test_history_is_capped_to_the_newest_turns(store: ConversationStore) -> None:
    for n in range(10):
        await store.append("c", pair(n), f"a{n}")
    turns = await store.load("c")
    assert len(turns) == MAX_TURNS
    assert turns[-1].content == "answer 9" and turns[0].content == "question 7"


async def test_an_append_id_is_applied_once(store: ConversationStore) -> None:
    assert await store.append(7, pair(1), "m1") is True
    assert await store.append(7, pair(1), "m1") is False
    assert len(await store.load(7)) == 2


async def test_chats_are_apart_and_clear_forgets_one(store: ConversationStore) -> None:
    await store.append(1, pair(1), "x")
    await store.append(2, pair(2), "x")
    await store.clear(1)
    assert await store.load(1) == []
    assert [t.content for t in await store.load(2)] == ["question 2", "answer 2"]
    assert await store.append(1, pair(1), "x") is True  # cleared chats start afresh, ids included


async def test_unicode_round_trips_exactly(store: ConversationStore) -> None:
    text = "👩‍👩‍👧‍👦 مرحبا بك e\u0301 \u05e9\u05dc\u05d5\u05dd 🇩🇪 \U0001f3f3\ufe0f\u200d\U0001f308"
    await store.append(3, [Turn(Role.USER, text)], "u")
    (turn,) = await store.load(3)
    assert turn.content.encode("utf-8") == text.encode("utf-8")


async def test_redis_keys_are_capped_and_expire(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    store = RedisStore.from_url(redis_url, prefix=key_prefix, max_turns=4, ttl_seconds=120)
    try:
        for n in range(5):
            await store.append(42, pair(n), f"a{n}")
    finally:
        await store.aclose()
    assert redis_client.llen(history_key(key_prefix, 42)) == 4
    assert 0 < redis_client.ttl(history_key(key_prefix, 42)) <= 120
    assert 0 < redis_client.ttl(ids_key(key_prefix, 42)) <= 120
    assert redis_client.zcard(ids_key(key_prefix, 42)) <= 4


async def test_inprocess_history_expires_after_the_ttl() -> None:
    now = [1000.0]
    clock: Callable[[], float] = lambda: now[0]  # noqa: E731
    store = InProcessStore(max_turns=4, ttl_seconds=60, clock=clock)
    await store.append(1, pair(1), "a")
    now[0] += 59
    assert len(await store.load(1)) == 2
    now[0] += 2
    assert await store.load(1) == []


async def test_unreachable_redis_raises_store_unavailable() -> None:
    store = RedisStore.from_url("redis://127.0.0.1:1/0", prefix="x", max_turns=4, ttl_seconds=60)
    try:
        with pytest.raises(StoreUnavailable):
            await store.load(1)
        with pytest.raises(StoreUnavailable):
            await store.append(1, pair(1), "a")
    finally:
        await store.aclose()


async def test_facts_are_kept_beside_the_history_and_go_with_clear(store: ConversationStore) -> None:
    from bot.storage.base import FactStore

    assert isinstance(store, FactStore)
    assert await store.load_facts(1) == {}
    await store.append(1, pair(1), "a1")
    await store.save_facts(1, {"name": "Anna", "order number": "A-1234"})
    await store.save_facts(2, {"name": "Tomasz"})
    assert await store.load_facts(1) == {"name": "Anna", "order number": "A-1234"}
    await store.save_facts(1, {"name": "Anna"})  # a save replaces the record
    assert await store.load_facts(1) == {"name": "Anna"}
    await store.clear(1)
    assert await store.load_facts(1) == {} and await store.load(1) == []
    assert await store.load_facts(2) == {"name": "Tomasz"}


async def test_redis_facts_expire_with_the_history(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    from bot.storage.base import facts_key

    store = RedisStore.from_url(redis_url, prefix=key_prefix, max_turns=MAX_TURNS, ttl_seconds=TTL)
    await store.append(3, pair(1), "a1")
    await store.save_facts(3, {"colour": "mustard yellow"})
    assert redis_client.type(facts_key(key_prefix, 3)) == "hash"
    assert abs(redis_client.ttl(facts_key(key_prefix, 3)) - redis_client.ttl(history_key(key_prefix, 3))) <= 1
    await store.aclose()


async def test_inprocess_facts_expire_after_the_ttl() -> None:
    now = [0.0]
    store = InProcessStore(max_turns=MAX_TURNS, ttl_seconds=10, clock=lambda: now[0])
    await store.save_facts(1, {"size": "42"})
    now[0] = 9.0
    assert await store.load_facts(1) == {"size": "42"}
    now[0] = 10.0
    assert await store.load_facts(1) == {}
