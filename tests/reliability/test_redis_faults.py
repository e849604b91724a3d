"""Redis faults through the real stack: PTB over HTTP to the fake Bot API, a Redis process of the test's own
(AOF, fsync always), the real tiny model.

Each test breaks Redis in one way (SIGKILL and restart, CLIENT PAUSE, out of memory, a lost reply, a burst)
and checks what the user sees (every message answered) and what history keeps (every acknowledged turn,
never a duplicate, in order, capped).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from bot.core.errors import StoreUnavailable
from bot.storage import history_key
from bot.storage.base import ConversationStore, ids_key
from bot.storage.desk_base import Handoff
from bot.storage.redis.desk import RedisHandoffs
from bot.storage.redis.store import connect
from bot.transports.telegram.handlers import Texts
from bot_dev.fakes.bot_api import FakeBotApi
from tests.helpers import HANG_SECONDS
from tests.reliability.conftest import RedisProcess
from tests.reliability.proxy import Command, RedisFaultProxy

log = logging.getLogger(__name__)

ANNA, BEN, CARL = 2001, 2002, 2003
# Final text only (no streamed drafts to count around); the tiny model writes random words, which the
# profanity and degenerate-output checks would otherwise replace with a canned text.
PLAIN = {
    "TELEGRAM_STREAM_INTERVAL_SECONDS": "0",
    "SAFETY_OUTPUT_PROFANITY": "false",
    "SAFETY_CHECK_DEGENERATE": "false",
}
APOLOGIES = (Texts.FAILED, Texts.TIMEOUT, Texts.BUSY)
PROMPT_LOG = re.compile(
    r"chat (-?\d+): prompt of \d+ tokens with (\d+) history turns \((\d+) older dropped\)"
)
NOT_SAVED = "this exchange was not saved to history"


@dataclass(frozen=True)
class Append:
    """One `store.append` call the service made, and how it ended."""

    chat_id: int | str
    append_id: str
    texts: tuple[str, ...]
    outcome: str  # "applied", "skipped" (the id was already applied) or "failed: ..."

    @property
    def acknowledged(self) -> bool:
        return self.outcome == "applied"


def record_appends(store: ConversationStore, monkeypatch: pytest.MonkeyPatch) -> list[Append]:
    """Wrap the running bot's store so the test knows which appends Redis acknowledged.

    The real append still runs; the wrapper only notes its outcome after it returns or raises.
    """
    real = store.append
    seen: list[Append] = []

    async def append(chat_id: int | str, turns: Any, append_id: str) -> bool:
        texts = tuple(turn.content for turn in turns)
        try:
            applied = await real(chat_id, turns, append_id)
        except StoreUnavailable as exc:
            seen.append(Append(chat_id, append_id, texts, f"failed: {exc}"))
            raise
        seen.append(Append(chat_id, append_id, texts, "applied" if applied else "skipped"))
        return applied

    monkeypatch.setattr(store, "append", append)
    return seen


async def answered(
    api: FakeBotApi,
    chat_id: int,
    count: int,
    timeout: float = HANG_SECONDS,  # noqa: ASYNC109 (it bounds a hang; the fake's wait_for polls)
) -> list[str]:
    await api.wait_for(lambda: len(api.messages_in(chat_id)) >= count, timeout)
    return api.messages_in(chat_id)


def history(server: RedisProcess, prefix: str, chat_id: int) -> list[dict[str, Any]]:
    client = server.client()
    try:
        return [json.loads(item) for item in client.lrange(history_key(prefix, chat_id), 0, -1)]
    finally:
        client.close()


def pairs_of(turns: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [(turns[i]["content"], turns[i + 1]["content"]) for i in range(0, len(turns) - 1, 2)]


def replied_at(api: FakeBotApi, chat_id: int, after: float) -> float:
    """Seconds from `after` until the bot's first sendMessage to the chat that followed it."""
    return (
        min(
            call.at
            for call in api.calls_of("sendMessage")
            if call.params["chat_id"] == chat_id and call.at > after
        )
        - after
    )


def prompt_history_sizes(caplog: pytest.LogCaptureFixture, chat_id: int) -> list[int]:
    """History turns loaded for each prompt of the chat (used + dropped for the token budget)."""
    sizes = []
    for message in caplog.messages:
        if (match := PROMPT_LOG.search(message)) and int(match.group(1)) == chat_id:
            sizes.append(int(match.group(2)) + int(match.group(3)))
    return sizes


def is_delivery_claim(prefix: str) -> Callable[[Command], bool]:
    wanted = f"{prefix}:delivery:".encode()
    return lambda command: command[0].upper() in (b"EVALSHA", b"EVAL") and command[3].startswith(wanted)


def is_rate_count(prefix: str) -> Callable[[Command], bool]:
    wanted = f"{prefix}:{{user:".encode()
    return lambda command: command[0].upper() in (b"EVALSHA", b"EVAL") and command[3].startswith(wanted)


def is_append_to(key: str) -> Callable[[Command], bool]:
    wanted = key.encode()
    return lambda command: command[0].upper() in (b"EVALSHA", b"EVAL") and wanted in command


@pytest.fixture
async def proxy(redis_process: RedisProcess) -> AsyncIterator[RedisFaultProxy]:
    """A fault proxy in front of the test's Redis (set up before the bot, so torn down after it)."""
    fault_proxy = await RedisFaultProxy(redis_process.port).start()
    yield fault_proxy
    await fault_proxy.aclose()


# --- 1. SIGKILL and restart -----------------------------------------------------------------------------


async def test_sigkill_and_restart_keep_every_acknowledged_turn_once(
    fake_api: FakeBotApi,
    redis_process: RedisProcess,
    start_bot: Any,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="bot.chat.service")
    bot = await start_bot(REDIS_URL=redis_process.url, **PLAIN)
    appends = record_appends(bot.app.store, monkeypatch)

    fake_api.send_text(ANNA, ANNA, "my parcel 1 is late")
    await answered(fake_api, ANNA, 1)
    typing = len(fake_api.calls_of("sendChatAction"))
    fake_api.send_text(ANNA, ANNA, "and parcel 2 too")
    await fake_api.wait_for(lambda: len(fake_api.calls_of("sendChatAction")) > typing)
    redis_process.kill()  # while the bot works on parcel 2: its append may or may not be acknowledged
    await answered(fake_api, ANNA, 2)
    fake_api.send_text(ANNA, ANNA, "parcel 3, while Redis is down")
    await answered(fake_api, ANNA, 3)
    await fake_api.wait_for(lambda: len(appends) == 3)
    assert appends[2].outcome.startswith("failed"), "Redis was down: the append cannot have succeeded"
    acknowledged_before = [a.texts for a in appends if a.acknowledged]
    attempted_before = [a.texts for a in appends]

    redis_process.start()  # same port, same directory: AOF replays what was acknowledged
    restored = history(redis_process, key_prefix, ANNA)
    restored_pairs = pairs_of(restored)
    # every acknowledged exchange survived; anything else there was at least attempted (an append the
    # server applied just before dying, unacknowledged, may legitimately survive too); order kept
    assert [p for p in restored_pairs if p in acknowledged_before] == acknowledged_before
    assert [p for p in attempted_before if p in restored_pairs] == restored_pairs

    fake_api.send_text(ANNA, ANNA, "parcel 4, after the restart")
    replies = await answered(fake_api, ANNA, 4)
    await fake_api.wait_for(lambda: len(appends) == 4 and appends[3].acknowledged)

    assert len(replies) == 4 and not set(replies) & set(APOLOGIES)
    turns = history(redis_process, key_prefix, ANNA)
    assert [t["role"] for t in turns] == ["user", "assistant"] * (len(turns) // 2)
    pairs = pairs_of(turns)
    assert pairs == [*restored_pairs, appends[3].texts], "the restored history, then the new exchange"
    assert pairs[0][0] == "my parcel 1 is late" and pairs[-1][0] == "parcel 4, after the restart"
    assert "parcel 3, while Redis is down" not in [q for q, _ in pairs]
    message_ids = [t["mid"] for t in turns if t["role"] == "user"]
    assert len(message_ids) == len(set(message_ids)), "a turn was stored twice"
    # the first prompt after the restart was built on the restored history
    assert prompt_history_sizes(caplog, ANNA)[-1] == len(restored)
    assert any(NOT_SAVED in m for m in caplog.messages)


# --- 2. CLIENT PAUSE ------------------------------------------------------------------------------------

PAUSE_SECONDS = 8


async def test_client_pause_delays_every_chat_but_nobody_goes_unanswered(
    fake_api: FakeBotApi,
    redis_process: RedisProcess,
    proxy: RedisFaultProxy,
    start_bot: Any,
    key_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="bot.chat.service")
    bot = await start_bot(REDIS_URL=proxy.url, **PLAIN)  # the proxy only counts commands here
    fake_api.send_text(ANNA, ANNA, "hello before the pause")
    await answered(fake_api, ANNA, 1)
    await fake_api.wait_for(lambda: len(history(redis_process, key_prefix, ANNA)) == 2)

    commands_before, connections_before = len(proxy.commands), proxy.connections
    admin = redis_process.client()
    paused_at = time.monotonic()  # no later than the pause began: lower bounds measured from it hold
    try:
        await asyncio.to_thread(admin.execute_command, "CLIENT", "PAUSE", PAUSE_SECONDS * 1000, "ALL")
    finally:
        admin.close()
    # the chat whose Redis calls hit the pause first
    fake_api.send_text(ANNA, ANNA, "are you still there?")
    anna_id = str(ANNA).encode()
    await fake_api.wait_for(
        lambda: any(anna_id in b" ".join(c) for c in proxy.commands[commands_before:]), HANG_SECONDS
    )
    fake_api.send_text(BEN, BEN, "where is my parcel?")
    fake_api.send_text(CARL, CARL, "can I change my address?")

    anna = await answered(fake_api, ANNA, 2)
    ben = await answered(fake_api, BEN, 1)
    carl = await answered(fake_api, CARL, 1)
    waits = {
        "anna": replied_at(fake_api, ANNA, paused_at),
        "ben": replied_at(fake_api, BEN, paused_at),
        "carl": replied_at(fake_api, CARL, paused_at),
    }
    log.info("reply latencies under a %d s CLIENT PAUSE: %s", PAUSE_SECONDS, waits)
    log.info(
        "after the pause began: %d new connections, commands %s",
        proxy.connections - connections_before,
        [b" ".join(c[:2]).decode() for c in proxy.commands[commands_before:]],
    )

    assert not bot.task.done(), "the bot kept running"
    assert not {anna[-1], ben[-1], carl[-1]} & set(APOLOGIES)
    # CLIENT PAUSE ALL holds every command; each Redis call waits out its 2 s socket timeout and retries
    # (three tries), then the bot goes on without that call (no duplicate check, no rate limit, no
    # history). Nobody is answered while Redis is paused (a lower bound: a busy machine only adds to it),
    # and everyone is answered once it resumes (the `answered` waits above; how soon is the log's figure).
    for wait in waits.values():
        assert wait >= PAUSE_SECONDS - 2, waits
    # every exchange was stored once, after the pause
    await fake_api.wait_for(lambda: len(history(redis_process, key_prefix, ANNA)) == 4)
    assert [t["content"] for t in history(redis_process, key_prefix, ANNA)][::2] == [
        "hello before the pause",
        "are you still there?",
    ]
    await fake_api.wait_for(lambda: len(history(redis_process, key_prefix, BEN)) == 2)
    await fake_api.wait_for(lambda: len(history(redis_process, key_prefix, CARL)) == 2)
    assert not any("without history" in m or NOT_SAVED in m for m in caplog.messages)


# --- 3. out of memory -----------------------------------------------------------------------------------


async def test_out_of_memory_still_replies_and_warns_once_per_unsaved_exchange(
    fake_api: FakeBotApi,
    redis_process: RedisProcess,
    start_bot: Any,
    key_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    await start_bot(REDIS_URL=redis_process.url, **PLAIN)
    fake_api.send_text(ANNA, ANNA, "hello while there is room")
    await answered(fake_api, ANNA, 1)
    await fake_api.wait_for(lambda: len(history(redis_process, key_prefix, ANNA)) == 2)

    admin = redis_process.client()
    try:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.set("ballast", "x" * 2_000_000)
        admin.config_set("maxmemory", "1mb")
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            admin.set("probe", "1")

        fake_api.send_text(ANNA, ANNA, "first question while Redis is full")
        fake_api.send_text(ANNA, ANNA, "second question while Redis is full")
        replies = await answered(fake_api, ANNA, 3)
        assert len(replies) == 3 and not set(replies) & set(APOLOGIES)

        def not_saved() -> list[logging.LogRecord]:
            return [
                r
                for r in caplog.records
                if r.name == "bot.chat.service"
                and r.levelno == logging.WARNING
                and NOT_SAVED in r.getMessage()
            ]

        await fake_api.wait_for(lambda: len(not_saved()) >= 2)
        for record in not_saved():
            assert f"chat {ANNA}:" in record.getMessage() and "maxmemory" in record.getMessage()
        assert len(history(redis_process, key_prefix, ANNA)) == 2

        admin.delete("ballast")
        admin.config_set("maxmemory", "0")
    finally:
        admin.close()
    fake_api.send_text(ANNA, ANNA, "and now that there is room again?")
    await answered(fake_api, ANNA, 4)
    await fake_api.wait_for(lambda: len(history(redis_process, key_prefix, ANNA)) == 4)
    # the chat's exchanges run in turn: this one was stored after the full ones had finished, warnings
    # included, so a second warning for either of them would be here by now
    assert len(not_saved()) == 2, [r.getMessage() for r in not_saved()]
    questions = [t["content"] for t in history(redis_process, key_prefix, ANNA)][::2]
    assert questions == ["hello while there is room", "and now that there is room again?"]


# --- 4. a lost reply ------------------------------------------------------------------------------------


async def test_a_lost_reply_to_an_applied_append_stores_the_turns_once(
    fake_api: FakeBotApi,
    redis_process: RedisProcess,
    proxy: RedisFaultProxy,
    start_bot: Any,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bot = await start_bot(REDIS_URL=proxy.url, **PLAIN)
    appends = record_appends(bot.app.store, monkeypatch)
    fake_api.send_text(ANNA, ANNA, "first question")
    await answered(fake_api, ANNA, 1)
    await fake_api.wait_for(lambda: len(appends) == 1)

    is_append = is_append_to(history_key(key_prefix, ANNA))
    before = len(proxy.seen(is_append))  # the first append sent two: NOSCRIPT, SCRIPT LOAD, then again
    lost = proxy.lose_reply_to(is_append)
    fake_api.send_text(ANNA, ANNA, "second question")
    replies = await answered(fake_api, ANNA, 2)
    await fake_api.wait_for(lambda: len(appends) == 2)

    assert lost.is_set() and proxy.lost[0].reply == b":1\r\n", "the server applied the append it answered"
    sent = proxy.seen(is_append)[before:]
    assert len(sent) == 2, "the second append, then its retry on a new connection"
    assert sent[0] == sent[1] and sent[0][0] == b"EVALSHA", "the retry is the same call, same append id"
    assert sent[0][5] == appends[1].append_id.encode()  # EVALSHA sha 2 history appends <append id> ...
    assert appends[1].outcome == "skipped", "the retry found its id already applied"
    turns = history(redis_process, key_prefix, ANNA)
    assert [t["content"] for t in turns] == ["first question", replies[0], "second question", replies[1]]
    client = redis_process.client()
    try:
        assert client.zcard(ids_key(key_prefix, ANNA)) == 2
    finally:
        client.close()


async def test_a_lost_reply_to_the_delivery_claim_still_answers(
    fake_api: FakeBotApi,
    proxy: RedisFaultProxy,
    start_bot: Any,
    key_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.transports.telegram.handlers")
    await start_bot(REDIS_URL=proxy.url, **PLAIN)
    lost = proxy.lose_reply_to(is_delivery_claim(key_prefix))
    fake_api.send_text(ANNA, ANNA, "is anybody there?")
    await fake_api.wait_for(
        lambda: bool(fake_api.messages_in(ANNA)) or any("already answered" in m for m in caplog.messages)
    )
    assert lost.is_set()
    assert len(fake_api.messages_in(ANNA)) == 1, "the message was taken for a redelivery and not answered"


async def test_a_lost_reply_to_the_rate_limit_count_counts_the_message_once(
    fake_api: FakeBotApi,
    redis_process: RedisProcess,
    proxy: RedisFaultProxy,
    start_bot: Any,
    key_prefix: str,
) -> None:
    await start_bot(REDIS_URL=proxy.url, **PLAIN)
    lost = proxy.lose_reply_to(is_rate_count(key_prefix))
    fake_api.send_text(ANNA, ANNA, "count me once")
    await answered(fake_api, ANNA, 1)
    assert lost.is_set()
    client = redis_process.client()
    try:
        counters = {key: client.get(key) for key in client.scan_iter(match=f"{key_prefix}:{{user:{ANNA}}}:*")}
    finally:
        client.close()
    counters = {key: value for key, value in counters.items() if ":hit:" not in key}  # the idempotency marker
    assert len(counters) == 2  # this minute's and today's
    assert set(counters.values()) == {"1"}, counters


# --- 5. a burst from one user ---------------------------------------------------------------------------


async def test_twenty_messages_at_once_are_answered_and_stored_in_order(
    fake_api: FakeBotApi,
    redis_process: RedisProcess,
    start_bot: Any,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    questions = [f"question number {n}" for n in range(20)]
    for question in questions:  # all queued before the bot's first getUpdates: one batch of 20
        fake_api.send_text(ANNA, ANNA, question)
    # short replies: twenty generations run one after another on a CPU the other tests may be sharing
    bot = await start_bot(
        REDIS_URL=redis_process.url, HISTORY_MAX_TURNS="10", GENERATION_MAX_NEW_TOKENS="6", **PLAIN
    )
    appends = record_appends(bot.app.store, monkeypatch)

    replies = await answered(fake_api, ANNA, 20, timeout=3 * HANG_SECONDS)
    await fake_api.wait_for(lambda: len(appends) == 20)
    polled = fake_api.calls_of("getUpdates")[0].at
    sent = [call.at - polled for call in fake_api.calls_of("sendMessage")]
    log.info("20 queued messages: first reply %.2f s, last %.2f s after the first poll", sent[0], sent[-1])
    assert len(replies) == 20 and not set(replies) & set(APOLOGIES)
    assert all(a.acknowledged for a in appends)
    assert [a.texts[0] for a in appends] == questions, "questions were answered in the order they were sent"
    assert [a.texts[1] for a in appends] == replies, "each answer was shown in the question's order"

    turns = history(redis_process, key_prefix, ANNA)
    assert len(turns) == 10
    assert [t["role"] for t in turns] == ["user", "assistant"] * 5
    assert [t["content"] for t in turns[::2]] == questions[-5:]
    assert [t["content"] for t in turns[1::2]] == replies[-5:]
    assert [t["mid"] for t in turns[::2]] == sorted(t["mid"] for t in turns[::2])
    client = redis_process.client()
    try:
        assert client.zcard(ids_key(key_prefix, ANNA)) <= 10
    finally:
        client.close()


async def test_a_lost_reply_to_a_handoff_begin_or_end_is_not_misread(
    proxy: RedisFaultProxy, key_prefix: str
) -> None:
    """redis-py resends a script whose reply was lost: the resend must report what the first run did."""
    client = connect(proxy.url)
    handoffs = RedisHandoffs(client, prefix=key_prefix)
    try:
        handoff = Handoff(chat_id=42, user_id=7, name="Anna", reason="asked", started=1_700_000_000.0)
        await handoffs.get(1)  # a connection and the scripts' first NOSCRIPT round trip out of the way
        is_handoff = is_append_to(f"{key_prefix}:{{support}}:handoffs")
        lost = proxy.lose_reply_to(is_handoff)
        assert await handoffs.begin(handoff, expires_at=1_700_001_800.0), "the begin was applied"
        assert lost.is_set()
        lost = proxy.lose_reply_to(is_handoff)
        assert await handoffs.end(42) == handoff, "the end was applied: its handoff is reported once more"
        assert lost.is_set() and await handoffs.get(42) is None
    finally:
        await client.aclose()
