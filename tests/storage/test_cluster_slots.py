"""Redis Cluster: every script or multi-key command the stores run touches keys of one hash slot (else
CROSSSLOT)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from redis.commands.core import AsyncScript
from redis.crc import key_slot

from bot.core.domain import Role, Turn
from bot.storage.base import Bucket
from bot.storage.desk_base import Handoff
from bot.storage.redis.desk import RedisAnalytics, RedisHandoffs
from bot.storage.redis.store import RedisChatLocks, RedisLimits, RedisStore, connect


@pytest.fixture
def script_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """The KEYS of every script call made while the test runs, through redis-py's own script class."""
    seen: list[list[str]] = []
    original = AsyncScript.__call__

    def recording(self: AsyncScript, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        seen.append([str(key) for key in keys or []])
        return original(self, keys=keys, args=args, client=client)

    monkeypatch.setattr(AsyncScript, "__call__", recording)
    yield seen


async def test_every_script_touches_one_slot(
    script_keys: list[list[str]], redis_url: str, key_prefix: str
) -> None:
    client = connect(redis_url)
    store = RedisStore(client, prefix=key_prefix, max_turns=10, ttl_seconds=60)
    limits = RedisLimits(client, prefix=key_prefix)
    locks = RedisChatLocks(client, prefix=key_prefix)
    for chat_id in (1, -100123456, "terminal"):
        await store.append(chat_id, [Turn(Role.USER, "q"), Turn(Role.ASSISTANT, "a")], f"m{chat_id}")
        assert await locks.try_acquire(chat_id, "t", 1, 5)
        assert not await locks.try_acquire(chat_id, "u", 2, 5)
        await locks.renew(chat_id, "t", 5)
        await locks.release(chat_id, "t")
        await locks.release(chat_id, "u")
    await limits.consume("user:42", [Bucket("min:1", 5, 60), Bucket("day:1", 50, 86400)])
    await limits.claim("tg:1:1", 60)
    await limits.lease("tg:1:2", "t", 5)
    await limits.renew_lease("tg:1:2", "t", 5)
    await limits.settle("tg:1:2", "t", 60)
    await limits.lease("tg:1:3", "t", 5)
    await limits.release_lease("tg:1:3", "t")
    await client.aclose()

    multi = [keys for keys in script_keys if len(keys) > 1]
    assert len(multi) >= 3 * 3 + 1, "the multi-key scripts (append, lock, release, consume) ran"
    for keys in script_keys:
        slots = {key_slot(key.encode()) for key in keys}
        assert len(slots) == 1, f"a script touches keys of several slots: {keys}"


async def test_the_support_desk_stays_in_its_slots(
    script_keys: list[list[str]], redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = connect(redis_url)
    multi: list[tuple[str, ...]] = []  # the keys of every command that takes several

    for command in ("pfcount", "zunion"):
        original = getattr(client, command)

        def recording(*keys: Any, _original: Any = original, **kwargs: Any) -> Any:
            names = keys[0] if keys and isinstance(keys[0], list) else keys
            multi.append(tuple(str(k) for k in names))
            return _original(*keys, **kwargs)

        monkeypatch.setattr(client, command, recording)
    handoffs = RedisHandoffs(client, prefix=key_prefix)
    analytics = RedisAnalytics(client, prefix=key_prefix)
    handoff = Handoff(chat_id=5, user_id=1, name="A", reason="asked", started=1.0)
    assert await handoffs.begin(handoff, expires_at=2.0)
    await handoffs.extend(5, 3.0)
    await handoffs.end(5)
    await handoffs.end_due(10.0)
    for hour, day in ((100, "d1"), (101, "d2")):
        await analytics.record(
            hour=hour, day=day, counts={"messages": 1}, chat="5", ranked={"asked": "q?"}, ttl_seconds=60
        )
    assert await analytics.conversations([100, 101]) == 1
    assert await analytics.top("asked", ["d1", "d2"], 5) == [("q?", 2)]
    await client.aclose()
    assert multi, "the window queries read several keys in one command"
    for keys in [*script_keys, *multi]:
        slots = {key_slot(key.encode()) for key in keys}
        assert len(slots) == 1, f"a command touches keys of several slots: {keys}"
