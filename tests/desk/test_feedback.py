"""Feedback: button data, the stored record, and vote changes (Redis and in-process)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.core.domain import GenerationParams
from bot.core.outcome import Outcome, OutcomeKind
from bot.desk.analytics import Analytics
from bot.desk.feedback import Feedback, VoteOutcome, buttons, callback_data, parse_callback
from bot.storage.inprocess.desk import InProcessAnalytics, InProcessFeedback
from bot.storage.redis.desk import RedisFeedback
from bot.storage.redis.store import connect


@pytest.fixture(params=["redis", "inprocess"])
async def store(request: Any, redis_url: str, key_prefix: str) -> AsyncIterator[Any]:
    if request.param == "inprocess":
        yield InProcessFeedback()
        return
    client = connect(redis_url)
    yield RedisFeedback(client, prefix=key_prefix)
    await client.aclose()


def test_callback_data_is_small_and_versioned() -> None:
    assert callback_data("up") == "fb1:up" and parse_callback("fb1:down") == "down"
    assert all(len(data.encode()) <= 64 for _, data in buttons())
    assert parse_callback("fb0:up") is None and parse_callback("fb1:maybe") is None
    assert parse_callback("something else") is None
    with pytest.raises(ValueError, match="a vote is one of"):
        callback_data("meh")
    assert [label for label, _ in buttons("down")] == ["👍", "👎 ✓ Thanks!"]


async def test_a_vote_is_stored_with_its_answer_and_can_change(store: Any) -> None:
    analytics_store = InProcessAnalytics()
    now = [1_700_000_000.0]
    analytics = Analytics(analytics_store, retention_days=7, clock=lambda: now[0])
    params = GenerationParams(temperature=0.3, do_sample=True)
    feedback = Feedback(
        store, model="tiny-model", params=params, retention_days=7, analytics=analytics, clock=lambda: now[0]
    )
    info = Outcome(
        OutcomeKind.ANSWERED,
        "It ships today.",
        question="Where is my [email] order?",
        reply="It ships today.",
        sources=("faq.md#orders",),
    )
    await feedback.remember(42, 7, info)
    assert await feedback.vote(42, 8, "up", 1) is VoteOutcome.UNKNOWN, "an answer never saved"
    assert await feedback.vote(42, 7, "up", 1) is VoteOutcome.RECORDED
    assert await feedback.vote(42, 7, "up", 1) is VoteOutcome.UNCHANGED
    now[0] += 7200  # two hours later the person changes their mind
    assert await feedback.vote(42, 7, "down", 1) is VoteOutcome.RECORDED
    record = await feedback.record(42, 7)
    assert record is not None
    assert (record["vote"], record["question"], record["answer"]) == (
        "down",
        "Where is my [email] order?",
        "It ships today.",
    )
    assert record["model"] == "tiny-model" and json.loads(record["params"])["temperature"] == 0.3
    assert json.loads(record["sources"]) == ["faq.md#orders"]
    window = await analytics.window(24)
    assert (window.up, window.down) == (0, 1), "the first vote was taken back from its own hour"


async def test_in_a_group_only_the_person_who_asked_rates_the_answer(store: Any) -> None:
    feedback = Feedback(store, model="tiny-model", params=GenerationParams(), retention_days=7)
    await feedback.remember(
        -100, 5, Outcome(OutcomeKind.ANSWERED, question="Opening hours?", reply="9 to 18.", asker_id=1001)
    )
    assert await feedback.vote(-100, 5, "down", 1002) is VoteOutcome.NOT_YOURS
    assert await feedback.vote(-100, 5, "up", 1001) is VoteOutcome.RECORDED
    record = await feedback.record(-100, 5)
    assert record is not None and (record["vote"], record["asker"]) == ("up", "1001")
