"""The Redis conversation store: the only module of the project that imports redis."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import unquote

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.core.domain import Turn
from bot.core.errors import StoreUnavailable
from bot.storage.base import Bucket, LeaseState, chat_lock_keys, facts_key, history_key, ids_key
from bot.storage.redis import lua

__all__ = [
    "SENTINEL_SCHEME",
    "RedisAudit",
    "RedisChatLocks",
    "RedisLimits",
    "RedisStore",
    "SentinelTarget",
    "connect",
    "parse_sentinel_url",
]

log = logging.getLogger(__name__)

SENTINEL_SCHEME = "redis+sentinel"


def connect(url: str) -> aioredis.Redis:
    """A client whose commands retry transient errors with capped exponential backoff.

    Retried commands must be idempotent, since a reply can be lost after the server applied the command:
    appends carry an id, delivery leases and chat locks a token, rate-limit hits a marker.
    `redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]` asks the Sentinels where
    the master of `service` is, and asks again after a failover.
    """
    options: dict[str, Any] = {
        "decode_responses": True,
        # A stalled Redis must not hold a reply for long: a message makes a few calls, each bounded to
        # about 3 x 2 s here, after which the bot answers without history.
        "socket_connect_timeout": 2,
        "socket_timeout": 2,
        "health_check_interval": 30,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    if url.startswith(f"{SENTINEL_SCHEME}://"):
        target = parse_sentinel_url(url)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            target.sentinels,
            sentinel_kwargs={"socket_connect_timeout": 2, "socket_timeout": 2},
            **options,
        )
        client = sentinel.master_for(
            target.service,
            redis_class=_SentinelRedis,
            db=target.db,
            username=target.username,
            password=target.password,
        )
        client.sentinels = sentinel
        return cast(aioredis.Redis, client)
    return aioredis.from_url(url, **options)


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Split a `redis+sentinel://` URL; ValueError names what is wrong (never the password)."""
    rest = url.removeprefix(f"{SENTINEL_SCHEME}://")
    userinfo, _, rest = rest.rpartition("@")
    hosts, _, path = rest.partition("/")
    username, _, password = userinfo.partition(":")
    sentinels: list[tuple[str, int]] = []
    for item in filter(None, hosts.split(",")):
        host, colon, port = item.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"sentinel address {item!r} is not host:port")
        sentinels.append((host.strip("[]"), int(port)))
    if not sentinels:
        raise ValueError("names no sentinel host:port")
    service, _, db = path.strip("/").partition("/")
    if not service:
        raise ValueError("names no service (the master's name), e.g. redis+sentinel://host:26379/mymaster")
    if db and not db.isdigit():
        raise ValueError(f"database {db!r} is not a number")
    return SentinelTarget(
        sentinels,
        unquote(service),
        int(db or 0),
        unquote(username) or None,
        unquote(password) or None,
    )


class _SentinelRedis(aioredis.Redis):
    """The master's client; closing it also closes the connections to the Sentinels."""

    sentinels: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinels is not None:
            for client in self.sentinels.sentinels:
                await client.aclose()


async def _call(awaitable: Any) -> Any:
    """Await a redis command, translating its failures into StoreUnavailable."""
    try:
        return await awaitable
    except RedisError as exc:
        raise StoreUnavailable(f"Redis: {type(exc).__name__}: {exc}") from exc
    except OSError as exc:
        raise StoreUnavailable(f"Redis: {exc}") from exc


class RedisStore:
    """Chat history in Redis lists; see `bot.storage.base` for the key layout."""

    def __init__(self, client: aioredis.Redis, *, prefix: str, max_turns: int, ttl_seconds: int) -> None:
        self._client = client
        self._prefix = prefix
        self._max_turns = max_turns
        self._ttl = ttl_seconds
        self._append = client.register_script(lua.APPEND)

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
        keys = (
            history_key(self._prefix, chat_id),
            ids_key(self._prefix, chat_id),
            facts_key(self._prefix, chat_id),
        )
        await _call(self._client.delete(*keys))

    async def load_facts(self, chat_id: int | str) -> dict[str, str]:
        raw: dict[str, str] = await _call(self._client.hgetall(facts_key(self._prefix, chat_id)))
        return dict(raw)

    async def save_facts(self, chat_id: int | str, facts: Mapping[str, str]) -> None:
        """One transaction: the old hash goes, the new one gets the history's TTL."""
        key = facts_key(self._prefix, chat_id)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if facts:
                mapping: dict[Any, Any] = dict(facts.items())
                pipe.hset(key, mapping=mapping)
                pipe.expire(key, self._ttl)
            await _call(pipe.execute())

    async def ping(self) -> None:
        await _call(self._client.ping())

    async def aclose(self) -> None:
        await self._client.aclose()


class RedisLimits:
    """Deduplication claims and rate-limit counters; shares the store's client, which the store closes."""

    def __init__(self, client: aioredis.Redis, *, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._consume = client.register_script(lua.CONSUME)
        self._claim = client.register_script(lua.CLAIM)
        self._lease = client.register_script(lua.LEASE)
        self._renew = client.register_script(lua.RENEW_LEASE)
        self._settle = client.register_script(lua.SETTLE)
        self._release = client.register_script(lua.RELEASE_LEASE)

    def _key(self, key: str) -> str:
        return f"{self._prefix}:delivery:{key}"

    async def claim(self, key: str, ttl_seconds: int) -> bool:
        token = uuid.uuid4().hex
        claimed = await _call(self._claim(keys=[self._key(key)], args=[token, ttl_seconds]))
        return bool(claimed)

    async def lease(self, key: str, token: str, lease_seconds: float) -> LeaseState:
        state = await _call(self._lease(keys=[self._key(key)], args=[token, _ms(lease_seconds)]))
        return LeaseState(state)

    async def renew_lease(self, key: str, token: str, lease_seconds: float) -> bool:
        return bool(await _call(self._renew(keys=[self._key(key)], args=[token, _ms(lease_seconds)])))

    async def settle(self, key: str, token: str, done_ttl_seconds: int) -> bool:
        return bool(await _call(self._settle(keys=[self._key(key)], args=[token, done_ttl_seconds])))

    async def release_lease(self, key: str, token: str) -> None:
        await _call(self._release(keys=[self._key(key)], args=[token]))

    async def consume(self, scope: str, buckets: Sequence[Bucket]) -> int:
        keys = [f"{self._prefix}:{{{scope}}}:{bucket.name}" for bucket in buckets]
        keys.append(f"{self._prefix}:{{{scope}}}:hit:{uuid.uuid4().hex}")
        args = [value for bucket in buckets for value in (bucket.limit, bucket.ttl_seconds)]
        return int(await _call(self._consume(keys=keys, args=args)))


class RedisChatLocks:
    """The fair per-chat lock shared by every replica; see `bot.storage.base.ChatLocks` and the key layout."""

    def __init__(self, client: aioredis.Redis, *, prefix: str) -> None:
        self._prefix = prefix
        self._acquire = client.register_script(lua.ACQUIRE)
        self._renew = client.register_script(lua.RENEW_LOCK)
        self._release = client.register_script(lua.RELEASE_LOCK)

    async def try_acquire(self, chat_id: int | str, token: str, ticket: float, lease_seconds: float) -> bool:
        keys = list(chat_lock_keys(self._prefix, chat_id))
        return bool(await _call(self._acquire(keys=keys, args=[token, ticket, _ms(lease_seconds)])))

    async def renew(self, chat_id: int | str, token: str, lease_seconds: float) -> bool:
        keys = [chat_lock_keys(self._prefix, chat_id)[0]]
        return bool(await _call(self._renew(keys=keys, args=[token, _ms(lease_seconds)])))

    async def release(self, chat_id: int | str, token: str) -> None:
        await _call(self._release(keys=list(chat_lock_keys(self._prefix, chat_id)), args=[token]))


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


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
