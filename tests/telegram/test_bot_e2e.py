"""The Telegram bot end to end: PTB over HTTP to the fake Bot API, real Redis, a real tiny model."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.core.texts import QUEUE_FULL
from bot.storage import history_key
from bot.transports.telegram.handlers import CONFLICT, Texts
from bot.transports.telegram.split import utf16_len
from bot_dev.fakes.bot_api import FakeBotApi
from tests.conftest import RunningBot, free_port
from tests.helpers import HANG_SECONDS, eventually, stalled_forward
from tests.tiny_models import build_tiny_llama

ANNA, BEN = 1001, 1002
GROUP = -100500


async def replies_in(
    api: FakeBotApi,
    chat_id: int,
    count: int,
    timeout: float = HANG_SECONDS,  # noqa: ASYNC109 (it bounds a hang; the fake's wait_for polls)
) -> list[str]:
    """Wait until `count` bot messages in the chat show their final text (no streaming cursor)."""
    await api.wait_for(
        lambda: (
            len(api.messages_in(chat_id)) >= count
            and not any(t.endswith(" …") for t in api.messages_in(chat_id))
        ),
        timeout=timeout,
    )
    return api.messages_in(chat_id)


async def drained(bot: RunningBot) -> None:
    """Stop the bot the graceful way, which first finishes every reply in hand: after this nothing more
    is sent, so what the fake Bot API holds is final (no waiting a while for late edits or duplicates)."""
    assert await bot.shutdown() == 0


async def test_two_users_at_once_keep_apart_histories(
    fake_api: FakeBotApi, start_bot: Any, redis_client: redis.Redis, key_prefix: str
) -> None:
    await start_bot()
    fake_api.send_text(ANNA, ANNA, "Hi, I am Anna", first_name="Anna")
    fake_api.send_text(BEN, BEN, "Hi, I am Ben", first_name="Ben")
    assert len(await replies_in(fake_api, ANNA, 1)) == 1
    assert len(await replies_in(fake_api, BEN, 1)) == 1
    await fake_api.wait_for(lambda: redis_client.llen(history_key(key_prefix, BEN)) == 2)
    anna = redis_client.lrange(history_key(key_prefix, ANNA), 0, -1)
    ben = redis_client.lrange(history_key(key_prefix, BEN), 0, -1)
    assert "Anna" in anna[0] and not any("Ben" in turn for turn in anna)
    assert "Ben" in ben[0] and not any("Anna" in turn for turn in ben)
    assert fake_api.calls_of("sendChatAction"), "the typing action is shown while the model works"
    commands = fake_api.calls_of("setMyCommands")[0].params["commands"]
    assert {c["command"] for c in commands} >= {"start", "help", "reset", "new"}


async def test_reset_clears_the_chat_history(
    fake_api: FakeBotApi, start_bot: Any, redis_client: redis.Redis, key_prefix: str
) -> None:
    await start_bot()
    fake_api.send_text(ANNA, ANNA, "remember me")
    await replies_in(fake_api, ANNA, 1)
    await fake_api.wait_for(lambda: redis_client.exists(history_key(key_prefix, ANNA)) == 1)
    fake_api.send_text(ANNA, ANNA, "/new")
    assert (await replies_in(fake_api, ANNA, 2))[-1] == Texts.RESET
    assert redis_client.exists(history_key(key_prefix, ANNA)) == 0


async def test_start_help_and_unknown_commands(fake_api: FakeBotApi, start_bot: Any) -> None:
    await start_bot(TELEGRAM_START_MESSAGE="Welcome to Acme support!")
    fake_api.send_text(ANNA, ANNA, "/start")
    assert await replies_in(fake_api, ANNA, 1) == ["Welcome to Acme support!"]
    fake_api.send_text(ANNA, ANNA, "/help")
    fake_api.send_text(ANNA, ANNA, "/frobnicate")
    # each is answered; two commands of the same instant race (updates run concurrently, and only chat
    # messages are kept in order), so the two replies may come either way round (seen once in CI)
    assert sorted((await replies_in(fake_api, ANNA, 3))[1:]) == sorted([Texts.HELP, Texts.UNKNOWN_COMMAND])


async def test_groups_are_answered_only_when_addressed(
    fake_api: FakeBotApi, start_bot: Any, redis_client: redis.Redis, key_prefix: str
) -> None:
    await start_bot()
    fake_api.send_text(GROUP, ANNA, "hello everyone", chat_type="supergroup", first_name="Anna")
    mention = fake_api.send_text(
        GROUP, BEN, "@support_test_bot where is my parcel?", chat_type="supergroup", first_name="Ben"
    )
    assert len(await replies_in(fake_api, GROUP, 1)) == 1
    (reply,) = [m for m in fake_api.sent_messages if m["chat"]["id"] == GROUP and m["from"]["is_bot"]]
    assert reply["reply_to_message"]["from"]["first_name"] == "Ben", "a group answer replies to the question"
    fake_api.send_text(
        GROUP,
        ANNA,
        "thanks, and mine?",
        chat_type="supergroup",
        first_name="Anna",
        reply_to_bot_message_id=reply["message_id"],
    )
    await replies_in(fake_api, GROUP, 2)
    history = redis_client.lrange(history_key(key_prefix, GROUP), 0, -1)
    assert len(history) == 4 and "hello everyone" not in "".join(history)
    assert (
        '"author": "Ben"' in history[0]
        and "where is my parcel?" in history[0]
        and "@support" not in history[0]
    )
    assert '"author": "Anna"' in history[2]
    assert mention


async def test_five_quick_messages_are_answered_in_order(
    fake_api: FakeBotApi, start_bot: Any, redis_client: redis.Redis, key_prefix: str
) -> None:
    await start_bot(TELEGRAM_STREAM_INTERVAL_SECONDS="0")
    for n in range(5):
        fake_api.send_text(ANNA, ANNA, f"question {n}")
    await replies_in(fake_api, ANNA, 5)
    await fake_api.wait_for(lambda: redis_client.llen(history_key(key_prefix, ANNA)) == 10)
    import json

    turns = [json.loads(t) for t in redis_client.lrange(history_key(key_prefix, ANNA), 0, -1)]
    assert [t["content"] for t in turns[::2]] == [f"question {n}" for n in range(5)]
    assert [t["role"] for t in turns] == ["user", "assistant"] * 5
    assert [t["content"] for t in turns[1::2]] == fake_api.messages_in(ANNA)


async def test_a_long_reply_is_split_in_order(fake_api: FakeBotApi, start_bot: Any, tmp_path: Path) -> None:
    model = build_tiny_llama(tmp_path / "tiny-4k", context=4096, endless=True)
    # the tiny model's random text is no support answer: only its length matters here. 3000 tokens (about
    # 5,000 characters) take seconds on a quiet machine and minutes on a busy one: no limit here may
    # stand in for the machine's speed, they only bound a hang
    bot = await start_bot(
        MODEL_NAME=str(model),
        GENERATION_MAX_NEW_TOKENS="3000",
        GENERATION_TIMEOUT_SECONDS="3600",
        TELEGRAM_STREAM_INTERVAL_SECONDS="0.5",
        SAFETY_OUTPUT_PROFANITY="false",
        SAFETY_REDACT_PII="false",
        SAFETY_CHECK_DEGENERATE="false",
        SAFETY_MAX_OUTPUT_CHARS="100000",
    )
    fake_api.send_text(ANNA, ANNA, "tell me everything")
    await fake_api.wait_for(
        lambda: any(call.params.get("chat_id") == ANNA for call in fake_api.calls_of("sendMessage")),
        HANG_SECONDS,
    )
    assert fake_api.calls_of("getMe")
    await fake_api.wait_for(
        lambda: len(fake_api.messages_in(ANNA)) >= 2 and not fake_api.messages_in(ANNA)[-1].endswith(" …"),
        10 * HANG_SECONDS,
    )
    await drained(bot)  # the final edits have landed
    parts = fake_api.messages_in(ANNA)
    assert len(parts) >= 2 and all(utf16_len(p) <= 4096 for p in parts)
    assert sum(utf16_len(p) for p in parts) > 4096


async def test_a_429_storm_while_streaming_delivers_each_reply_once(
    fake_api: FakeBotApi, start_bot: Any
) -> None:
    bot = await start_bot(GENERATION_MAX_NEW_TOKENS="60", TELEGRAM_STREAM_INTERVAL_SECONDS="0.01")
    fake_api.fail_next("editMessageText", 5, retry_after=1)
    fake_api.send_text(ANNA, ANNA, "hello")
    (reply,) = await replies_in(fake_api, ANNA, 1)
    await drained(bot)  # a duplicate, or an edit still retrying, would be out by now
    assert fake_api.messages_in(ANNA) == [reply] and reply
    edits = fake_api.calls_of("editMessageText")
    refused = [c for c in edits if c.status == 429]
    assert refused, "the storm hit the stream"
    later = [c for c in edits if c.status == 200 and c.at > refused[0].at]
    assert all(c.at >= refused[0].at + 1 for c in later), "an edit was sent before retry_after had passed"


async def start_webhook_bot(fake_api: FakeBotApi, start_bot: Any) -> tuple[RunningBot, str]:
    """Start the bot in webhook mode on a free loopback port; return it and the URL to POST updates to."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram"
    bot = await start_bot(
        TELEGRAM_WEBHOOK_URL=url,
        TELEGRAM_WEBHOOK_SECRET="s3cret",
        TELEGRAM_WEBHOOK_LISTEN="127.0.0.1",
        TELEGRAM_WEBHOOK_PORT=str(port),
    )
    await fake_api.wait_for(lambda: bool(fake_api.calls_of("setWebhook")), HANG_SECONDS)
    return bot, url


async def test_a_redelivered_update_is_answered_once(
    fake_api: FakeBotApi, bot_env: dict[str, str], start_bot: Any, redis_client: redis.Redis, key_prefix: str
) -> None:
    update_id = fake_api.send_text(ANNA, ANNA, "only once please")
    (original,) = [u for u in fake_api.pending_updates() if u["update_id"] == update_id]
    bot, url = await start_webhook_bot(fake_api, start_bot)
    for _ in range(2):  # each acknowledged (200) once the update has been handled
        assert await asyncio.to_thread(fake_api.webhook_post, url, original, "s3cret") == 200
    await replies_in(fake_api, ANNA, 1)
    await drained(bot)
    assert len(fake_api.messages_in(ANNA)) == 1
    assert redis_client.llen(history_key(key_prefix, ANNA)) == 2


async def test_webhook_refuses_a_missing_or_wrong_secret(
    fake_api: FakeBotApi, start_bot: Any, redis_client: redis.Redis, key_prefix: str
) -> None:
    _bot, url = await start_webhook_bot(fake_api, start_bot)
    assert fake_api.calls_of("setWebhook")[0].params["secret_token"] == "s3cret"
    refused_id = fake_api.send_text(ANNA, ANNA, "hi over webhook")
    signed_id = fake_api.send_text(ANNA, ANNA, "and this one is signed")
    updates = {u["update_id"]: u for u in fake_api.pending_updates()}
    refused, signed = updates[refused_id], updates[signed_id]
    assert await asyncio.to_thread(fake_api.webhook_post, url, refused, None) == 403
    assert await asyncio.to_thread(fake_api.webhook_post, url, refused, "wrong") == 403
    # the chat's next update is acknowledged (200) once handled, and a chat is answered in order: had a
    # refused request been taken in, its reply would be out by then too
    assert await asyncio.to_thread(fake_api.webhook_post, url, signed, "s3cret") == 200
    assert len(fake_api.messages_in(ANNA)) == 1
    stored = [json.loads(t) for t in redis_client.lrange(history_key(key_prefix, ANNA), 0, -1)]
    assert [t["content"] for t in stored if t["role"] == "user"] == ["and this one is signed"]
    # Telegram delivers a refused update again: with the right secret, it is answered
    assert await asyncio.to_thread(fake_api.webhook_post, url, refused, "s3cret") == 200
    assert len(await replies_in(fake_api, ANNA, 2)) == 2


async def test_a_stranger_is_turned_away_by_the_allow_list(
    fake_api: FakeBotApi, start_bot: Any, redis_client: redis.Redis, key_prefix: str
) -> None:
    await start_bot(TELEGRAM_ALLOWED_USER_IDS=str(ANNA))
    fake_api.send_text(BEN, BEN, "let me in")
    assert await replies_in(fake_api, BEN, 1) == [Texts.NOT_ALLOWED]
    fake_api.send_text(ANNA, ANNA, "hello")
    await replies_in(fake_api, ANNA, 1)
    assert redis_client.exists(history_key(key_prefix, BEN)) == 0


def within_one_minute(bot: RunningBot, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hold the gate's clock in the middle of a minute: the per-minute limit counts in windows of whole
    minutes, and a burst that arrives slowly (a busy machine) must not straddle two of them."""
    now = time.time()
    monkeypatch.setattr(bot.app.gate, "_clock", lambda: now - now % 60 + 30)


async def test_the_rate_limit_says_when_to_write_again(
    fake_api: FakeBotApi, start_bot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = await start_bot(RATE_LIMIT_PER_MINUTE="2", TELEGRAM_STREAM_INTERVAL_SECONDS="0")
    within_one_minute(bot, monkeypatch)
    for n in range(3):
        fake_api.send_text(ANNA, ANNA, f"message {n}")
    texts = await replies_in(fake_api, ANNA, 3)
    notices = [t for t in texts if "too fast" in t and "seconds" in t]
    assert len(notices) == 1 and texts[0] == notices[0], "counted on arrival: the notice comes first"


async def test_a_burst_gets_its_notices_at_once_and_nothing_is_lost_or_sent_twice(
    fake_api: FakeBotApi,
    start_bot: Any,
    redis_client: redis.Redis,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """30 messages at once with a limit of 20 a minute: the ten over it are told while the first
    answers are still being written; every message gets exactly one reply."""
    bot = await start_bot(
        RATE_LIMIT_PER_MINUTE="20", TELEGRAM_STREAM_INTERVAL_SECONDS="0", HISTORY_MAX_TURNS="100"
    )
    within_one_minute(bot, monkeypatch)
    for n in range(30):
        fake_api.send_text(ANNA, ANNA, f"question number {n}")
    texts = await replies_in(fake_api, ANNA, 30, timeout=3 * HANG_SECONDS)
    notices = [n for n, t in enumerate(texts) if "too fast" in t or t == QUEUE_FULL]
    assert len(notices) >= 10
    expected = 2 * (30 - len(notices))
    await fake_api.wait_for(
        lambda: redis_client.llen(history_key(key_prefix, ANNA)) >= expected, HANG_SECONDS
    )
    assert len(fake_api.messages_in(ANNA)) == 30, "one reply per message, none twice"
    answered = [t for t in fake_api.messages_in(ANNA) if "too fast" not in t and t != QUEUE_FULL]
    stored = [json.loads(t) for t in redis_client.lrange(history_key(key_prefix, ANNA), 0, -1)]
    questions = [t["content"] for t in stored if t["role"] == "user"]
    assert len(questions) == len(set(questions)) == len(answered) == 30 - len(notices)
    rate_limited = bot.app.metrics.registry.get_sample_value("bot_replies_total", {"outcome": "rate_limited"})
    assert rate_limited == len(notices)
    # the notices went out on arrival, not when each message's turn came (that was after 20 answers): a
    # reply or two may slip in between the notices' sends, never the queue of answers
    answers = sorted(set(range(30)) - set(notices))
    assert max(notices) < answers[len(answers) // 2], f"notices at positions {notices}"


async def test_stickers_photos_and_userless_updates_never_raise(fake_api: FakeBotApi, start_bot: Any) -> None:
    await start_bot()
    base = {"date": 1_700_000_000, "from": {"id": ANNA, "is_bot": False, "first_name": "Anna"}}
    fake_api.push_raw(
        {
            "message": {
                **base,
                "message_id": 1,
                "chat": {"id": ANNA, "type": "private"},
                "sticker": {
                    "file_id": "s",
                    "file_unique_id": "s",
                    "type": "regular",
                    "width": 1,
                    "height": 1,
                    "is_animated": False,
                    "is_video": False,
                },
            }
        }
    )
    fake_api.push_raw(
        {
            "message": {
                **base,
                "message_id": 2,
                "chat": {"id": GROUP, "type": "group", "title": "G"},
                "photo": [{"file_id": "p", "file_unique_id": "p", "width": 1, "height": 1}],
            }
        }
    )
    fake_api.push_raw(
        {
            "message": {
                "message_id": 3,
                "date": 1_700_000_000,
                "chat": {"id": GROUP, "type": "group", "title": "G"},
                "sender_chat": {"id": GROUP, "type": "group", "title": "G"},
                "text": "anonymous admin",
            }
        }
    )
    fake_api.push_raw(
        {
            "edited_message": {
                **base,
                "message_id": 4,
                "edit_date": 1,
                "chat": {"id": ANNA, "type": "private"},
                "text": "edited",
            }
        }
    )
    fake_api.push_raw(
        {
            "channel_post": {
                "message_id": 5,
                "date": 1,
                "chat": {"id": -100777, "type": "channel", "title": "C"},
                "text": "post",
            }
        }
    )
    assert await replies_in(fake_api, ANNA, 1) == [Texts.UNSUPPORTED]
    fake_api.send_text(ANNA, ANNA, "still there?")
    await replies_in(fake_api, ANNA, 2)
    assert fake_api.messages_in(GROUP) == []


async def test_redis_stopped_mid_conversation_still_gets_answers(
    fake_api: FakeBotApi, start_bot: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import subprocess

    port = free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        await eventually(client.ping, ignoring=(redis.ConnectionError,), what="the Redis server answers")
        await start_bot(REDIS_URL=f"redis://127.0.0.1:{port}/0")
        fake_api.send_text(ANNA, ANNA, "first")
        await replies_in(fake_api, ANNA, 1)
        server.terminate()
        server.wait(10)
        fake_api.send_text(ANNA, ANNA, "second, while Redis is down")
        texts = await replies_in(fake_api, ANNA, 2)
        assert texts[1] and texts[1] not in (Texts.FAILED, Texts.TIMEOUT)
        assert any("without history" in m for m in caplog.messages)
    finally:
        server.kill()
        server.wait(10)


async def test_a_second_poller_conflict_stops_the_bot(
    fake_api: FakeBotApi, start_bot: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fake_api.fail_next_with("getUpdates", 1, 409, "Conflict: terminated by other getUpdates request")
    bot = await start_bot()
    assert await asyncio.wait_for(bot.task, HANG_SECONDS) == 1
    assert CONFLICT in caplog.messages


async def test_chats_writing_at_once_are_decoded_in_one_batch(
    fake_api: FakeBotApi, start_bot: Any, tmp_path: Path
) -> None:
    endless = build_tiny_llama(tmp_path / "endless", endless=True)  # every reply runs to max_new_tokens
    bot = await start_bot(
        MODEL_NAME=str(endless),
        GENERATION_MAX_NEW_TOKENS="80",
        TELEGRAM_STREAM_INTERVAL_SECONDS="0.05",
        SAFETY_OUTPUT_PROFANITY="false",
        SAFETY_CHECK_DEGENERATE="false",
        GENERATION_STALL_SECONDS="300",  # the first reply is held below until the others have asked
    )
    chats = range(3001, 3007)
    # the first prefill waits until every chat waits for the model: a fast machine cannot answer one
    # chat before the next one asks
    with stalled_forward(bot.app.engine._loaded.model, once=True) as first:
        for chat in chats:
            fake_api.send_text(chat, chat, f"hello from chat {chat}")
        await fake_api.wait_for(first.is_set, HANG_SECONDS)
        await fake_api.wait_for(lambda: bot.app.engine.pending == len(chats) - 1, HANG_SECONDS)
    for chat in chats:
        assert len(await replies_in(fake_api, chat, 1)) == 1
    registry = bot.app.metrics.registry
    steps = registry.get_sample_value("bot_engine_batch_size_count")
    alone = registry.get_sample_value("bot_engine_batch_size_bucket", {"le": "1.0"})
    assert steps and alone is not None and steps - alone > 0, "no decode step served two chats at once"
    assert registry.get_sample_value("bot_engine_cache_lookups_total", {"result": "miss"}) == 1
    assert registry.get_sample_value("bot_engine_cache_lookups_total", {"result": "hit"}) == 5, (
        "later chats start from the shared system-prompt prefix"
    )
