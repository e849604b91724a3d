"""Redis Cluster: every script the store runs touches keys of one hash slot (else CROSSSLOT)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from redis.commands.core import AsyncScript
from redis.crc import key_slot

from bot.domain import Role, Turn
from bot.memory.base import Bucket
from bot.memory.redis import RedisChatLocks, RedisLimits, RedisStore, connect


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
