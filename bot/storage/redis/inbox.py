"""The update inbox in Redis (layout in `bot.storage.inbox`): five keys of one hash slot, Lua per step.

Lease expiry uses the Redis server's clock (`TIME`), so replicas with skewed clocks agree on it. Every
script is safe to run twice: adding is by update id, a take carries a token by which a retry after a
lost reply gets the same entries back, and renew/release/done act only on what they name.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from redis import asyncio as aioredis

from bot.storage.inbox import MAX_ATTEMPTS, InboxEntry, inbox_keys
from bot.storage.redis.store import _call

__all__ = ["RedisInbox"]

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

ADD = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return 1
"""

# ARGV: owner, take token, lease ms, limit, max attempts, how many of the oldest entries to look at.
TAKE = (
    _NOW
    + """
local owner, token, limit = ARGV[1], ARGV[2], tonumber(ARGV[4])
local blocked, out, dropped = {}, {}, 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[6]) - 1)) do
  if #out >= 2 * limit then
    break
  end
  local chat = redis.call('HGET', KEYS[3], id) or ''
  local lease = redis.call('HGET', KEYS[4], id)
  local holder, taken_by, expiry = nil, nil, 0
  if lease then
    holder, taken_by, expiry = string.match(lease, '^(%S+) (%S+) (%d+)$')
    expiry = tonumber(expiry) or 0
  end
  local payload = redis.call('HGET', KEYS[2], id)
  if lease and holder == owner and taken_by == token and payload then
    out[#out + 1] = id
    out[#out + 1] = payload
  elseif lease and expiry > now then
    if holder ~= owner and chat ~= '' then
      blocked[chat] = true
    end
  elseif chat == '' or not blocked[chat] then
    local attempts = redis.call('HINCRBY', KEYS[5], id, 1)
    if attempts > tonumber(ARGV[5]) or not payload then
      redis.call('ZREM', KEYS[1], id)
      redis.call('HDEL', KEYS[2], id)
      redis.call('HDEL', KEYS[3], id)
      redis.call('HDEL', KEYS[4], id)
      redis.call('HDEL', KEYS[5], id)
      dropped = dropped + 1
    else
      redis.call('HSET', KEYS[4], id, owner .. ' ' .. token .. ' ' .. (now + tonumber(ARGV[3])))
      out[#out + 1] = id
      out[#out + 1] = payload
    end
  end
end
return {dropped, out}
"""
)

RENEW = (
    _NOW
    + """
local n = 0
for i = 3, #ARGV do
  local lease = redis.call('HGET', KEYS[1], ARGV[i])
  if lease then
    local holder, token = string.match(lease, '^(%S+) (%S+) ')
    if holder == ARGV[1] then
      redis.call('HSET', KEYS[1], ARGV[i], holder .. ' ' .. token .. ' ' .. (now + tonumber(ARGV[2])))
      n = n + 1
    end
  end
end
return n
"""
)

# A released entry was not tried to the end: its attempt does not count.
RELEASE = """
for i = 2, #ARGV do
  local lease = redis.call('HGET', KEYS[1], ARGV[i])
  if lease and string.match(lease, '^(%S+) ') == ARGV[1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    if redis.call('HINCRBY', KEYS[2], ARGV[i], -1) <= 0 then
      redis.call('HDEL', KEYS[2], ARGV[i])
    end
  end
end
return 1
"""

DONE = """
redis.call('ZREM', KEYS[1], ARGV[1])
for i = 2, 5 do
  redis.call('HDEL', KEYS[i], ARGV[1])
end
return 1
"""


class RedisInbox:
    """One bot's inbox in Redis; shares the store's client, which the store closes."""

    def __init__(self, client: aioredis.Redis, *, prefix: str, bot_id: int, scan: int = 1000) -> None:
        self._client = client
        self._keys = list(inbox_keys(prefix, bot_id))
        self._scan = scan
        self._add = client.register_script(ADD)
        self._take = client.register_script(TAKE)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)
        self._done = client.register_script(DONE)
        self.dropped = 0  # poison updates given up on (each also logged by the caller)

    async def add(self, update_id: int, chat: str, payload: str) -> None:
        await _call(self._add(keys=self._keys[:3], args=[update_id, chat, payload]))

    async def take(self, owner: str, limit: int, lease_seconds: float) -> list[InboxEntry]:
        args: list[str | int] = [owner, uuid.uuid4().hex, _ms(lease_seconds), limit, MAX_ATTEMPTS, self._scan]
        dropped, flat = await _call(self._take(keys=self._keys, args=args))
        self.dropped += int(dropped)
        return [InboxEntry(int(flat[i]), str(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def renew(self, owner: str, update_ids: Sequence[int], lease_seconds: float) -> int:
        if not update_ids:
            return 0
        args: list[str | int] = [owner, _ms(lease_seconds), *update_ids]
        return int(await _call(self._renew(keys=self._keys[3:4], args=args)))

    async def release(self, owner: str, update_ids: Sequence[int]) -> None:
        if update_ids:
            await _call(self._release(keys=self._keys[3:5], args=[owner, *update_ids]))

    async def done(self, update_id: int) -> None:
        await _call(self._done(keys=self._keys, args=[update_id]))

    async def pending(self) -> int:
        return int(await _call(self._client.zcard(self._keys[0])))


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
