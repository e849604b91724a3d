"""The Redis conversation store: the only module of the project that imports redis."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.domain import Turn
from bot.errors import StoreUnavailable
from bot.memory.base import Bucket, history_key, ids_key

__all__ = ["RedisAudit", "RedisLimits", "RedisStore", "connect"]

log = logging.getLogger(__name__)

# One round trip, atomic: skip an append already applied, push, trim, refresh both TTLs.
_APPEND = """
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return 0
end
local cap = tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(cap + 1))
for i = 5, #ARGV do
  redis.call('RPUSH', KEYS[1], ARGV[i])
end
redis.call('LTRIM', KEYS[1], -cap, -1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""

# Admit a hit only if every bucket has room; then count it in all of them. The last key marks this hit
# as counted, so a retry after a lost reply does not count it twice.
_CONSUME = """
local n = #KEYS - 1
if redis.call('EXISTS', KEYS[n + 1]) == 1 then
  return -1
end
for i = 1, n do
  if tonumber(redis.call('GET', KEYS[i]) or '0') >= tonumber(ARGV[2 * i - 1]) then
    return i - 1
  end
end
for i = 1, n do
  if redis.call('INCR', KEYS[i]) == 1 then
    redis.call('EXPIRE', KEYS[i], ARGV[2 * i])
  end
end
redis.call('SET', KEYS[n + 1], 1, 'EX', 300)
return -1
"""

# First claim wins; the same claimant retrying after a lost reply (same token) still wins.
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  return 1
end
return 0
"""


def connect(url: str) -> aioredis.Redis:
    """A client whose commands retry transient errors with capped exponential backoff.

    Retried commands must be idempotent, since a reply can be lost after the server applied the command:
    appends carry an id, delivery claims a token, rate-limit hits a marker.
    """
    return aioredis.from_url(
        url,
        decode_responses=True,
        # A stalled Redis must not hold a reply for long: a message makes four calls, each bounded to
        # about 3 x 2 s here, after which the bot answers without history.
        socket_connect_timeout=2,
        socket_timeout=2,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


async def _call(awaitable: Any) -> Any:
    """Await a redis command, translating its failures into StoreUnavailable."""
    try:
        return await awaitable
    except RedisError as exc:
        raise StoreUnavailable(f"Redis: {type(exc).__name__}: {exc}") from exc
    except OSError as exc:
        raise StoreUnavailable(f"Redis: {exc}") from exc


class RedisStore:
    """Chat history in Redis lists; see `bot.memory.base` for the key layout."""

    def __init__(self, client: aioredis.Redis, *, prefix: str, max_turns: int, ttl_seconds: int) -> None:
        self._client = client
        self._prefix = prefix
        self._max_turns = max_turns
        self._ttl = ttl_seconds
        self._append = client.register_script(_APPEND)

    @classmethod
    def from_url(cls, url: str, *, prefix: str, max_turns: int, ttl_seconds: int) -> RedisStore:
        return cls(connect(url), prefix=prefix, max_turns=max_turns, ttl_seconds=ttl_seconds)

    async def load(self, chat_id: int | str) -> list[Turn]:
        raw: list[str] = await _call(self._client.lrange(history_key(self._prefix, chat_id), 0, -1))
        turns: list[Turn] = []
        for item in raw:
            try:
                turns.append(Turn.from_json_dict(json.loads(item)))
            except (ValueError, KeyError, TypeError):
                log.warning("skipping an unreadable history entry of chat %s", chat_id)
        return turns

    async def append(self, chat_id: int | str, turns: Sequence[Turn], append_id: str) -> bool:
        if not turns:
            return False
        payload = [json.dumps(turn.to_json_dict(), ensure_ascii=False) for turn in turns]
        keys = [history_key(self._prefix, chat_id), ids_key(self._prefix, chat_id)]
        args: list[str | int | float] = [append_id, self._max_turns, self._ttl, time.time(), *payload]
        applied = await _call(self._append(keys=keys, args=args))
        return bool(applied)

    async def clear(self, chat_id: int | str) -> None:
        await _call(self._client.delete(history_key(self._prefix, chat_id), ids_key(self._prefix, chat_id)))

    async def ping(self) -> None:
        await _call(self._client.ping())

    async def aclose(self) -> None:
        await self._client.aclose()


class RedisLimits:
    """Deduplication claims and rate-limit counters; shares the store's client, which the store closes."""

    def __init__(self, client: aioredis.Redis, *, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._consume = client.register_script(_CONSUME)
        self._claim = client.register_script(_CLAIM)

    async def claim(self, key: str, ttl_seconds: int) -> bool:
        token = uuid.uuid4().hex
        claimed = await _call(self._claim(keys=[f"{self._prefix}:delivery:{key}"], args=[token, ttl_seconds]))
        return bool(claimed)

    async def consume(self, scope: str, buckets: Sequence[Bucket]) -> int:
        keys = [f"{self._prefix}:{{{scope}}}:{bucket.name}" for bucket in buckets]
        keys.append(f"{self._prefix}:{{{scope}}}:hit:{uuid.uuid4().hex}")
        args = [value for bucket in buckets for value in (bucket.limit, bucket.ttl_seconds)]
        return int(await _call(self._consume(keys=keys, args=args)))


class RedisAudit:
    """Safety events in a Redis stream trimmed to about `max_entries` (XADD MAXLEN ~)."""

    def __init__(self, client: aioredis.Redis, *, prefix: str, max_entries: int) -> None:
        self._client = client
        self._key = f"{prefix}:safety:audit"
        self._max = max_entries

    async def record(self, event: Mapping[str, str]) -> None:
        fields: dict[Any, Any] = dict(event)
        await _call(self._client.xadd(self._key, fields, maxlen=self._max, approximate=True))

    async def recent(self, count: int) -> list[dict[str, str]]:
        entries = await _call(self._client.xrevrange(self._key, count=count))
        return [dict(fields) for _id, fields in entries]
