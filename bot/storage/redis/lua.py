"""The Lua scripts the Redis store runs: each is atomic, and safe to run again after a lost reply.

redis-py retries a command whose reply was lost, although the server may have applied it; so every
script that writes carries something (an id, a token, a marker key) by which a second run finds that
the first one happened. Every script touches the keys of one hash slot only (Redis Cluster):
`tests/memory/test_cluster_slots.py` checks it.
"""

from __future__ import annotations

__all__ = [
    "ACQUIRE",
    "APPEND",
    "CLAIM",
    "CONSUME",
    "LEASE",
    "RELEASE_LEASE",
    "RELEASE_LOCK",
    "RENEW_LEASE",
    "RENEW_LOCK",
    "SETTLE",
]

# One round trip, atomic: skip an append already applied, push, trim, refresh both TTLs.
APPEND = """
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
CONSUME = """
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
CLAIM = """
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

# Delivery leases. The value says who holds it: `lease:<token>` while answering, `done:<token>` after.
# Each script is safe to retry with the same token after a lost reply (it finds its own mark).
# A value of another shape is a claim by an older version (`claim` above): treated as done.
LEASE = """
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], 'lease:' .. ARGV[1], 'PX', ARGV[2])
  return 'mine'
end
if v == 'lease:' .. ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 'mine'
end
if string.sub(v, 1, 6) == 'lease:' then
  return 'held'
end
return 'done'
"""

RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == 'lease:' .. ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# Lapsed and nobody took over: still ours to mark (we did deliver the reply).
SETTLE = """
local v = redis.call('GET', KEYS[1])
if v and v ~= 'lease:' .. ARGV[1] and v ~= 'done:' .. ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], 'done:' .. ARGV[1], 'EX', ARGV[2])
return 1
"""

RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == 'lease:' .. ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 1
"""

# The chat lock: KEYS = lock, queue (token -> ticket), waiters (token -> ms until it stops counting).
# Time is the server's, so replicas' clocks need not agree. Waiters that stopped refreshing drop out
# first; then the lowest ticket takes a free lock. A retry by the holder finds itself and succeeds.
ACQUIRE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local lease = tonumber(ARGV[3])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], lease)
  return 1
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now_ms)
for _, token in ipairs(dead) do
  redis.call('ZREM', KEYS[2], token)
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now_ms)
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], now_ms + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[2], 2 * lease)
redis.call('PEXPIRE', KEYS[3], 2 * lease)
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0)
if first[1] ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', lease)
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""

RENEW_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# Compare-and-delete: never frees a lock another holder took after ours lapsed.
RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""
