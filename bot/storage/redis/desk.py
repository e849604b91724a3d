"""The support desk's stores in Redis (handoffs, feedback, analytics); key layout in `support_base`.

They share the conversation store's client (and its retry policy); the conversation store closes it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from redis import asyncio as aioredis

from bot.storage.desk_base import Handoff, Vote
from bot.storage.redis.store import _call

__all__ = ["RedisAnalytics", "RedisFeedback", "RedisHandoffs"]

# At most this many distinct questions are ranked per day; the rarest go first.
MAX_RANKED = 2000

# Safe to resend (redis-py retries a command whose reply was lost): a begin finding its own record
# reports success; an end leaves the ended record under the caller's token for a minute and returns it
# again to a resend.
_BEGIN = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  if current == ARGV[2] then
    return 1
  end
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""

_EXTEND = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

_END = """
local done = redis.call('GET', KEYS[3])
if done then
  return done
end
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then
  return false
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], value, 'PX', 60000)
return value
"""

_END_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local ended = {}
for _, chat in ipairs(due) do
  local value = redis.call('HGET', KEYS[1], chat)
  redis.call('HDEL', KEYS[1], chat)
  redis.call('ZREM', KEYS[2], chat)
  if value then
    table.insert(ended, value)
  end
end
return ended
"""

_STREAK = """
if ARGV[1] == '1' then
  redis.call('DEL', KEYS[1])
  return 0
end
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return n
"""

_VOTE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
local old = redis.call('HMGET', KEYS[1], 'vote', 'voted_at')
if old[1] == ARGV[1] then
  return {old[1], old[2] or ''}
end
redis.call('HSET', KEYS[1], 'vote', ARGV[1], 'voted_at', ARGV[2], 'voter', ARGV[3])
return {old[1] or '', old[2] or ''}
"""


class RedisHandoffs:
    def __init__(self, client: aioredis.Redis, *, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._keys = [f"{prefix}:{{support}}:handoffs", f"{prefix}:{{support}}:handoff-expiry"]
        self._begin = client.register_script(_BEGIN)
        self._extend = client.register_script(_EXTEND)
        self._end = client.register_script(_END)
        self._end_due = client.register_script(_END_DUE)
        self._streak = client.register_script(_STREAK)

    async def begin(self, handoff: Handoff, expires_at: float) -> bool:
        args: list[str | int | float] = [handoff.chat_id, handoff.to_json(), expires_at]
        return bool(await _call(self._begin(keys=self._keys, args=args)))

    async def get(self, chat_id: int) -> tuple[Handoff, float] | None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hget(self._keys[0], str(chat_id))
            pipe.zscore(self._keys[1], str(chat_id))
            raw, expires = await _call(pipe.execute())
        if raw is None or expires is None:
            return None
        return Handoff.from_json(raw), float(expires)

    async def extend(self, chat_id: int, expires_at: float) -> bool:
        return bool(await _call(self._extend(keys=self._keys, args=[chat_id, expires_at])))

    async def end(self, chat_id: int) -> Handoff | None:
        tombstone = f"{self._prefix}:{{support}}:ended:{uuid.uuid4().hex}"
        raw = await _call(self._end(keys=[*self._keys, tombstone], args=[chat_id]))
        return Handoff.from_json(raw) if raw else None

    async def end_due(self, now: float, limit: int = 100) -> list[Handoff]:
        raw = await _call(self._end_due(keys=self._keys, args=[now, limit]))
        return [Handoff.from_json(item) for item in raw]

    async def link(self, message_id: int, chat_id: int, ttl_seconds: int) -> None:
        await _call(self._client.set(self._relay_key(message_id), chat_id, ex=ttl_seconds))

    async def linked(self, message_id: int) -> int | None:
        raw = await _call(self._client.get(self._relay_key(message_id)))
        return int(raw) if raw is not None else None

    async def streak(self, chat_id: int, *, grounded: bool, ttl_seconds: int) -> int:
        key = f"{self._prefix}:{{support}}:unanswered:{chat_id}"
        return int(await _call(self._streak(keys=[key], args=["1" if grounded else "0", ttl_seconds])))

    def _relay_key(self, message_id: int) -> str:
        return f"{self._prefix}:{{support}}:relay:{message_id}"


class RedisFeedback:
    def __init__(self, client: aioredis.Redis, *, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._vote = client.register_script(_VOTE)

    def _key(self, key: str) -> str:
        return f"{self._prefix}:feedback:{key}"

    async def save(self, key: str, fields: Mapping[str, str], ttl_seconds: int) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            mapping: dict[Any, Any] = dict(fields)
            pipe.hset(self._key(key), mapping=mapping)
            pipe.expire(self._key(key), ttl_seconds)
            await _call(pipe.execute())

    async def vote(self, key: str, value: str, user_id: int | None, at: float) -> Vote | None:
        args = [value, f"{at:.3f}", "" if user_id is None else str(user_id)]
        raw = await _call(self._vote(keys=[self._key(key)], args=args))
        if raw is None:
            return None
        old, old_at = raw
        return Vote(str(old), float(old_at) if old_at else None)

    async def get(self, key: str) -> dict[str, str] | None:
        raw: dict[str, str] = await _call(self._client.hgetall(self._key(key)))
        return raw or None


class RedisAnalytics:
    def __init__(self, client: aioredis.Redis, *, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def _hour_key(self, hour: int) -> str:
        return f"{self._prefix}:{{stats}}:h:{hour}"

    def _chats_key(self, hour: int) -> str:
        return f"{self._prefix}:{{stats}}:chats:{hour}"

    def _board_key(self, board: str, day: str) -> str:
        return f"{self._prefix}:{{stats}}:{board}:{day}"

    async def record(
        self,
        *,
        hour: int,
        day: str,
        counts: Mapping[str, int],
        chat: str | None,
        ranked: Mapping[str, str],
        ttl_seconds: int,
    ) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            if counts:
                for field, amount in counts.items():
                    pipe.hincrby(self._hour_key(hour), field, amount)
                pipe.expire(self._hour_key(hour), ttl_seconds)
            if chat is not None:
                pipe.pfadd(self._chats_key(hour), chat)
                pipe.expire(self._chats_key(hour), ttl_seconds)
            for board, text in ranked.items():
                key = self._board_key(board, day)
                pipe.zincrby(key, 1, text)
                pipe.zremrangebyrank(key, 0, -(MAX_RANKED + 1))
                pipe.expire(key, ttl_seconds)
            await _call(pipe.execute())

    async def counters(self, hours: Sequence[int]) -> list[dict[str, int]]:
        async with self._client.pipeline(transaction=False) as pipe:
            for hour in hours:
                pipe.hgetall(self._hour_key(hour))
            raw: list[dict[str, str]] = await _call(pipe.execute())
        return [{field: int(value) for field, value in hour.items()} for hour in raw]

    async def conversations(self, hours: Sequence[int]) -> int:
        if not hours:
            return 0
        return int(await _call(self._client.pfcount(*[self._chats_key(hour) for hour in hours])))

    async def top(self, board: str, days: Sequence[str], count: int) -> list[tuple[str, int]]:
        if not days:
            return []
        keys = [self._board_key(board, day) for day in days]
        raw: Any = await _call(self._client.zunion(keys, withscores=True))
        ranked = sorted(
            ((str(text), int(score)) for text, score in raw), key=lambda item: (-item[1], item[0])
        )
        return ranked[:count]
