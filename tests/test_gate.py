"""The gate: allow-lists, admins, per-minute limits and daily quotas on real Redis and in process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.chat.gate import AccessPolicy, Gate
from bot.core.outcome import OutcomeKind
from bot.storage import Limits
from bot.storage.inprocess.store import InProcessLimits
from bot.storage.redis.store import RedisLimits, connect

NOON = 1_800_000_000.0 - 1_800_000_000.0 % 86_400 + 43_200  # a UTC noon, at the start of a minute


@pytest.fixture(params=["redis", "inprocess"])
async def limits(request: pytest.FixtureRequest, redis_url: str, key_prefix: str) -> AsyncIterator[Limits]:
    if request.param == "inprocess":
        yield InProcessLimits()
        return
    client = connect(redis_url)
    yield RedisLimits(client, prefix=key_prefix)
    await client.aclose()


def gate(limits: Limits, now: list[float], **policy: object) -> Gate:
    return Gate(AccessPolicy(**policy), limits, clock=lambda: now[0])  # type: ignore[arg-type]


async def test_allow_lists(limits: Limits) -> None:
    g = gate(
        limits,
        [NOON],
        allowed_user_ids=frozenset({1}),
        allowed_chat_ids=frozenset({-50}),
        admin_user_ids=frozenset({9}),
    )
    assert await g.admit(1, 1) is None
    assert await g.admit(2, -50) is None  # anyone in an allowed group
    assert await g.admit(9, 9) is None  # admins always
    denied = await g.admit(2, 2)
    assert denied is not None and denied.kind is OutcomeKind.DENIED
    assert gate(limits, [NOON]).allows(12345, 12345), "empty allow-lists admit everyone"


async def test_per_minute_limit_says_when_to_retry_and_resets(limits: Limits) -> None:
    now = [NOON + 10]
    g = gate(limits, now, per_minute=2)
    assert await g.admit(5, 5) is None
    assert await g.admit(5, 5) is None
    limited = await g.admit(5, 5)
    assert limited is not None and limited.kind is OutcomeKind.RATE_LIMITED
    assert limited.retry_after == pytest.approx(50) and "wait 50 seconds" in limited.text
    assert await g.admit(6, 6) is None  # other users are not affected
    now[0] += 60
    assert await g.admit(5, 5) is None


async def test_daily_quota(limits: Limits) -> None:
    now = [NOON]
    g = gate(limits, now, per_minute=100, per_day=3)
    for minute in range(3):
        now[0] = NOON + 60 * minute
        assert await g.admit(7, 7) is None
    limited = await g.admit(7, 7)
    assert limited is not None and limited.kind is OutcomeKind.RATE_LIMITED
    assert limited.retry_after == pytest.approx(43_200 - 120) and "today's message limit" in limited.text


async def test_admins_are_never_limited(limits: Limits) -> None:
    g = gate(limits, [NOON], per_minute=1, admin_user_ids=frozenset({3}))
    assert [await g.admit(3, 3) for _ in range(5)] == [None] * 5


async def test_a_redis_outage_lets_messages_through() -> None:
    client = connect("redis://127.0.0.1:1/0")
    g = Gate(AccessPolicy(per_minute=1), RedisLimits(client, prefix="x"))
    assert [await g.admit(1, 1), await g.admit(1, 1)] == [None, None], "over the limit, but let through"
    await client.aclose()


async def test_claims_are_granted_once(limits: Limits) -> None:
    assert await limits.claim("tg:1:100", 60) is True
    assert await limits.claim("tg:1:100", 60) is False
    assert await limits.claim("tg:1:101", 60) is True
