"""Handoff logic over both stores (real Redis and in-process), with a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.core.domain import Role, Turn
from bot.desk.analytics import Analytics
from bot.desk.handoff import Handoffs, relay_text, summary_text, wants_human
from bot.storage.desk_base import Handoff
from bot.storage.inprocess.desk import InProcessAnalytics, InProcessHandoffs
from bot.storage.inprocess.store import InProcessStore
from bot.storage.redis.desk import RedisHandoffs
from bot.storage.redis.store import RedisStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["redis", "inprocess"])
async def stores(request: Any, redis_url: str, key_prefix: str) -> AsyncIterator[tuple[Any, Any]]:
    if request.param == "inprocess":
        yield InProcessHandoffs(), InProcessStore(max_turns=20, ttl_seconds=3600)
        return
    history = RedisStore.from_url(redis_url, prefix=key_prefix, max_turns=20, ttl_seconds=3600)
    yield RedisHandoffs(history._client, prefix=key_prefix), history
    await history.aclose()


def desk(stores: tuple[Any, Any], clock: Clock, **kwargs: Any) -> Handoffs:
    options: dict[str, Any] = {"available": True, "timeout_seconds": 600, "escalate_after": 2} | kwargs
    return Handoffs(stores[0], stores[1], clock=clock, **options)


@pytest.mark.parametrize(
    "text",
    [
        "I want to talk to a human",
        "can I speak with a real person?",
        "Please connect me to an operator",
        "get me a live agent",
        "human please",
        "Operator!",
        "I need a representative",
    ],
)
def test_plain_requests_for_a_person_are_recognised(text: str) -> None:
    assert wants_human(text)


@pytest.mark.parametrize(
    "text",
    [
        "How do I reset my password?",
        "is this product made by humans or robots",
        "my order was sent to the wrong person",
        "the agent field in the form is empty",
        "Where is my parcel?",
    ],
)
def test_ordinary_questions_are_not_requests_for_a_person(text: str) -> None:
    assert not wants_human(text)


async def test_begin_is_exclusive_and_release_returns_it_once(stores: tuple[Any, Any]) -> None:
    clock = Clock()
    analytics_store = InProcessAnalytics()
    handoffs = desk(stores, clock, analytics=Analytics(analytics_store, retention_days=1, clock=clock))
    first = await handoffs.begin(42, 7, "Anna", "asked")
    assert first == Handoff(42, 7, "Anna", "asked", clock.now)
    assert await handoffs.begin(42, 7, "Anna", "again") is None
    assert await handoffs.owned(42) and not await handoffs.owned(43)
    assert await handoffs.current(42) == first
    assert await handoffs.release(42) == first
    assert await handoffs.release(42) is None
    assert not await handoffs.owned(42)
    (hour,) = await analytics_store.counters([int(clock.now // 3600)])
    assert hour == {"handoffs": 1}


async def test_timeout_counts_from_the_last_operator_reply(stores: tuple[Any, Any]) -> None:
    clock = Clock()
    handoffs = desk(stores, clock)
    await handoffs.begin(42, 7, "Anna", "asked")
    await handoffs.begin(43, 8, "Ben", "asked")
    clock.now += 500
    assert await handoffs.operator_replied(42)
    assert not await handoffs.operator_replied(99), "a chat that is not handed off cannot be extended"
    clock.now += 200  # 700 s after the start: Ben's handoff is over, Anna's operator replied 200 s ago
    assert not await handoffs.owned(43) and await handoffs.owned(42)
    assert [h.chat_id for h in await handoffs.expired()] == [43]
    assert await handoffs.expired() == [], "each expired handoff is returned once"
    clock.now += 500
    assert [h.chat_id for h in await handoffs.expired()] == [42]


async def test_an_expired_unswept_handoff_can_start_again(stores: tuple[Any, Any]) -> None:
    clock = Clock()
    handoffs = desk(stores, clock)
    await handoffs.begin(42, 7, "Anna", "asked")
    clock.now += 601
    again = await handoffs.begin(42, 7, "Anna", "asked again")
    assert again is not None and again.reason == "asked again" and await handoffs.owned(42)


async def test_relay_links_and_history(stores: tuple[Any, Any]) -> None:
    handoffs = desk(stores, Clock())
    await handoffs.link(5001, 42)
    assert await handoffs.linked(5001) == 42 and await handoffs.linked(5002) is None
    await handoffs.store_turn(42, Turn(Role.USER, "hello"), "m1")
    await handoffs.store_turn(42, Turn(Role.USER, "hello"), "m1")  # a redelivery is stored once
    assert [t.content for t in await handoffs.history(42)] == ["hello"]


async def test_escalation_after_unanswered_streak(stores: tuple[Any, Any]) -> None:
    handoffs = desk(stores, Clock(), escalate_after=2)
    assert not await handoffs.should_escalate(42, grounded=False)
    assert not await handoffs.should_escalate(42, grounded=True), "a grounded answer resets the streak"
    assert not await handoffs.should_escalate(42, grounded=False)
    assert await handoffs.should_escalate(42, grounded=False)
    assert not await handoffs.should_escalate(42, grounded=False), "the streak starts over after escalating"
    never = desk(stores, Clock(), escalate_after=0)
    assert not await never.should_escalate(43, grounded=False)
    assert not await never.should_escalate(43, grounded=False)


async def test_nothing_is_handed_off_without_operators(stores: tuple[Any, Any]) -> None:
    handoffs = desk(stores, Clock(), available=False)
    assert not await handoffs.owned(42)
    assert not await handoffs.should_escalate("terminal", grounded=False)


def test_summary_names_the_customer_and_shows_the_last_messages() -> None:
    history = [Turn(Role.USER, f"question {n}", author="Anna") for n in range(8)]
    history.append(Turn(Role.ASSISTANT, "an answer " + "x" * 500))
    text = summary_text(Handoff(42, 7, "Anna", "asked", 0.0), history, username="anna_k")
    assert text.startswith("🙋 Anna (user 7) (@anna_k) needs a person — chat 42")
    assert "question 2" not in text and "Anna: question 7" in text
    assert "Bot: an answer" in text and "x" * 400 not in text, "long turns are clipped"
    assert "/release 42" in text
    assert relay_text("", 42, "hi") == "💬 Customer (chat 42):\nhi"
