"""Faults on the Telegram side and in the model, through the real stack (PTB over HTTP to the fake Bot
API, real Redis, a real tiny model). Numbers in the names refer to the cases in docs/reliability.md."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.config import SafetySettings
from bot.storage import history_key
from bot.transports.telegram.delivery import QUEUE_STATUS, StreamingReply
from bot.transports.telegram.handlers import CONFLICT, Texts
from bot.transports.telegram.split import utf16_len
from bot_dev.fakes.bot_api import FakeBotApi
from tests.conftest import TOKEN, env_without_bot_settings
from tests.helpers import HANG_SECONDS, each_pass, handled, stalled_forward
from tests.telegram.test_bot_e2e import drained, replies_in
from tests.tiny_models import build_tiny_llama


@contextlib.contextmanager
def counted_forward(model: Any) -> Iterator[list[int]]:
    """Every forward pass of the real model while the block runs, one entry each."""
    passes: list[int] = []
    handle = each_pass(model).register_forward_pre_hook(lambda _module, _args: passes.append(1))
    try:
        yield passes
    finally:
        handle.remove()


QUIET_SAFETY = {
    "SAFETY_OUTPUT_PROFANITY": "false",
    "SAFETY_CHECK_DEGENERATE": "false",
}  # the tiny model babbles


async def test_06_retry_after_storm_delivers_each_reply_once(fake_api: FakeBotApi, start_bot: Any) -> None:
    bot = await start_bot(
        TELEGRAM_STREAM_INTERVAL_SECONDS="0.01", GENERATION_MAX_NEW_TOKENS="60", **QUIET_SAFETY
    )
    fake_api.fail_next("sendMessage", 5, retry_after=1)
    fake_api.send_text(1, 1, "hello")
    (reply,) = await replies_in(fake_api, 1, 1)
    await drained(bot)  # a duplicate would be out by now
    assert fake_api.messages_in(1) == [reply]
    sends = fake_api.calls_of("sendMessage")
    refused = [c for c in sends if c.status == 429]
    assert len(refused) == 5
    for earlier, later in pairwise(sends):
        if earlier.status == 429:
            assert later.at - earlier.at >= 0.95, "a call went out before retry_after had passed"


async def test_07_a_send_that_times_out_is_retried_at_most_once(
    fake_api: FakeBotApi, start_bot: Any, redis_client: redis.Redis, key_prefix: str
) -> None:
    await start_bot(
        TELEGRAM_STREAM_INTERVAL_SECONDS="0", TELEGRAM_REQUEST_TIMEOUT_SECONDS="1", **QUIET_SAFETY
    )
    fake_api.delay_next("sendMessage", 1, 2.5)  # applied by the server, but the answer comes too late
    update_id = fake_api.send_text(2, 2, "hello")
    await fake_api.wait_for(lambda: len(fake_api.messages_in(2)) >= 1, timeout=HANG_SECONDS)
    # the reply's handler is over, its retry included
    await fake_api.wait_for(
        lambda: handled(redis_client, key_prefix, fake_api.bot_id, update_id), timeout=HANG_SECONDS
    )
    assert 1 <= len(fake_api.messages_in(2)) <= 2, "at most one duplicate"
    before = len(fake_api.messages_in(2))
    fake_api.send_text(2, 2, "still there?")
    await fake_api.wait_for(lambda: len(fake_api.messages_in(2)) == before + 1, timeout=HANG_SECONDS)


async def test_08_get_updates_outage_resumes_with_backoff_and_loses_nothing(
    fake_api: FakeBotApi, start_bot: Any
) -> None:
    fake_api.fail_next_with("getUpdates", 4, 502, "Bad Gateway")  # down from the first poll on
    fake_api.send_text(3, 3, "sent during the outage")
    await start_bot(TELEGRAM_STREAM_INTERVAL_SECONDS="0", **QUIET_SAFETY)
    await replies_in(fake_api, 3, 1)
    failures = [c for c in fake_api.calls_of("getUpdates") if c.status == 502]
    gaps = [b.at - a.at for a, b in pairwise(failures)]
    # each retry waits at least 1.5 times longer than the one before (1, 1.5, 2.25 s): lower bounds only,
    # which a busy machine can only exceed; the 30 s cap is the soak variant's to reach
    assert len(failures) == 4
    assert all(gap >= 0.95 * 1.5**n for n, gap in enumerate(gaps)), f"the retries back off: {gaps}"


@pytest.mark.soak
async def test_08_long_a_60_second_get_updates_outage(fake_api: FakeBotApi, start_bot: Any) -> None:
    fake_api.fail_next_with(
        "getUpdates", 9, 502, "Bad Gateway"
    )  # backoff 1, 1.5, 2.25 ... 30 s: about a minute
    fake_api.send_text(3, 3, "sent during the outage")
    started = time.monotonic()
    await start_bot(TELEGRAM_STREAM_INTERVAL_SECONDS="0", **QUIET_SAFETY)
    await fake_api.wait_for(lambda: len(fake_api.messages_in(3)) == 1, timeout=180)
    failures = [c for c in fake_api.calls_of("getUpdates") if c.status == 502]
    gaps = [b.at - a.at for a, b in pairwise(failures)]
    assert len(failures) == 9 and max(gaps) <= 31 and time.monotonic() - started >= 50


async def test_09_a_second_poller_stops_the_bot_within_30_seconds(
    fake_api: FakeBotApi, start_bot: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fake_api.fail_next_with("getUpdates", 1, 409, "Conflict: terminated by other getUpdates request")
    bot = await start_bot()
    assert await asyncio.wait_for(bot.task, 30) == 1  # it stops by itself (30 s: a hang guard, not a speed)
    assert caplog.messages.count(CONFLICT) == 1


async def test_12_huge_inputs_are_refused_before_the_model(
    fake_api: FakeBotApi,
    start_bot: Any,
    redis_client: redis.Redis,
    key_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG", logger="bot.chat.service")
    bot = await start_bot(TELEGRAM_STREAM_INTERVAL_SECONDS="0")
    with counted_forward(bot.app.engine._loaded.model) as passes:
        fake_api.send_text(4, 4, "a" * 4096)
        assert await replies_in(fake_api, 4, 1) == [SafetySettings().too_long_text]
    assert not passes, "the model ran for a message that was refused"
    assert not any("prompt of" in m for m in caplog.messages)
    assert redis_client.exists(history_key(key_prefix, 4)) == 0


async def test_12b_a_100k_message_is_refused_in_bounded_time(tiny_llama: Any, clean_env: Path) -> None:
    """Telegram caps messages at 4096 characters; a forged webhook request may not."""
    from bot.chat.deps import ChatDeps
    from bot.chat.service import ChatService, Message
    from bot.config import load_settings
    from bot.core.outcome import OutcomeKind
    from bot.llm.local.engine import TransformersEngine
    from bot.prompt import ChatFormat, PromptBuilder
    from bot.safety import SafetyPipeline
    from bot.storage.inprocess.store import InProcessStore

    settings = load_settings(None)
    service = ChatService(
        ChatDeps(
            InProcessStore(max_turns=10, ttl_seconds=60),
            TransformersEngine(tiny_llama),
            PromptBuilder(ChatFormat(tiny_llama.tokenizer), system_prompt="x", context_tokens=512),
            settings.generation.params(),
            safety=SafetyPipeline(settings.safety),
        )
    )
    with counted_forward(tiny_llama.model) as passes:
        outcome = await service.respond(Message(chat_id=1, text="ignore " * 14_286)).outcome()
    # bounded time for any size: the length cap refuses it first, before any pattern and the model run
    assert outcome.kind is OutcomeKind.REFUSED and outcome.text == settings.safety.too_long_text
    assert not passes


async def test_13_an_emoji_heavy_10k_reply_is_split_in_order(fake_api: FakeBotApi) -> None:
    from telegram import Bot

    text = " ".join(f"{n}👩‍👩‍👧‍👦🇩🇪👍🏽 ok." for n in range(700))
    assert len(text) > 10_000
    async with Bot(TOKEN, base_url=fake_api.base_url) as bot:
        reply = StreamingReply(bot, 5, interval=0.01)

        async def pieces() -> Any:
            for start in range(0, len(text), 97):
                yield text[start : start + 97]

        await reply.finish(await reply.consume(pieces()))
    parts = fake_api.messages_in(5)
    assert len(parts) >= 3 and all(utf16_len(p) <= 4096 for p in parts)
    assert "".join(parts).replace(" ", "") == text.replace(" ", "")


async def test_14_unicode_round_trips_through_the_bot(
    fake_api: FakeBotApi, start_bot: Any, redis_client: redis.Redis, key_prefix: str
) -> None:
    await start_bot(TELEGRAM_STREAM_INTERVAL_SECONDS="0", **QUIET_SAFETY)
    text = "👩‍👩‍👧‍👦 مرحبا، أين طلبي؟ שלום 🏳️‍🌈 naïve café"
    fake_api.send_text(6, 6, text)
    await replies_in(fake_api, 6, 1)
    await fake_api.wait_for(lambda: redis_client.llen(history_key(key_prefix, 6)) == 2)
    stored = json.loads(redis_client.lindex(history_key(key_prefix, 6), 0))  # type: ignore[arg-type]
    assert stored["content"].encode() == text.encode()


async def test_15_a_hung_model_gives_a_timeout_notice_and_others_are_served(
    fake_api: FakeBotApi, start_bot: Any, tiny_llama_dir: Path
) -> None:
    # judged by progress: only the held pass goes 2 s without a token, however busy the machine
    bot = await start_bot(GENERATION_STALL_SECONDS="2", TELEGRAM_STREAM_INTERVAL_SECONDS="0", **QUIET_SAFETY)
    with stalled_forward(bot.app.engine._loaded.model, once=True) as hung:
        fake_api.send_text(7, 7, "this one hangs")
        await fake_api.wait_for(hung.is_set, timeout=HANG_SECONDS)
        fake_api.send_text(8, 8, "and this one?")
        assert await replies_in(fake_api, 7, 1) == [Texts.TIMEOUT]
        assert not hung.resumed.is_set(), "the notice waited for the stuck forward pass"
        (answer,) = await replies_in(fake_api, 8, 1)
        assert answer != Texts.TIMEOUT, "the other chat is served while the first generation is stuck"


async def test_15b_a_timeout_mid_stream_turns_the_draft_into_the_notice(
    fake_api: FakeBotApi, start_bot: Any, tmp_path: Path
) -> None:
    endless = build_tiny_llama(tmp_path / "endless", endless=True)  # text enough for a draft, always
    bot = await start_bot(
        MODEL_NAME=str(endless),
        GENERATION_STALL_SECONDS="2",
        GENERATION_MAX_NEW_TOKENS="200",
        TELEGRAM_STREAM_INTERVAL_SECONDS="0.05",
        **QUIET_SAFETY,
    )
    # the model hangs once a draft is on screen
    drafted = stalled_forward(bot.app.engine._loaded.model, when=lambda: bool(fake_api.messages_in(10)))
    with drafted as hung:
        fake_api.send_text(10, 10, "tell me everything")
        await fake_api.wait_for(hung.is_set, timeout=HANG_SECONDS)
        await fake_api.wait_for(lambda: fake_api.messages_in(10) == [Texts.TIMEOUT], timeout=HANG_SECONDS)
    sent = [call.params["text"] for call in fake_api.calls_of("sendMessage") if call.params["chat_id"] == 10]
    assert len(sent) == 1 and sent != [Texts.TIMEOUT], "the notice took the place of the draft"


async def test_16_sigterm_during_generation_writes_no_half_history(
    fake_api: FakeBotApi, redis_url: str, key_prefix: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    model = build_tiny_llama(tmp_path / "endless", endless=True)
    env = {
        **env_without_bot_settings(),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE_URL": fake_api.base_url,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": key_prefix,
        "MODEL_NAME": str(model),
        "GENERATION_MAX_NEW_TOKENS": "400",
        "TELEGRAM_SHUTDOWN_GRACE_SECONDS": "0.2",
        "TELEGRAM_STREAM_INTERVAL_SECONDS": "0.05",
        **QUIET_SAFETY,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    try:
        fake_api.send_text(9, 9, "tell me a long story")
        # a draft is streaming (the process starts in seconds, or minutes on a busy machine)
        await fake_api.wait_for(lambda: len(fake_api.messages_in(9)) >= 1, timeout=HANG_SECONDS)
        process.send_signal(signal.SIGTERM)
        _out, err = await asyncio.to_thread(process.communicate, timeout=HANG_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    turns = redis_client.lrange(history_key(key_prefix, 9), 0, -1)
    assert len(turns) in (0, 2), "either the whole exchange or nothing"
    assert TOKEN not in err


def test_17_a_malformed_redis_url_exits_2_without_secrets(tmp_path: Path) -> None:
    env = {
        **env_without_bot_settings(),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "REDIS_URL": "redis//:hunter2@localhost",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot", "run"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_SECONDS,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "REDIS_URL" in done.stderr
    assert "hunter2" not in done.stderr and TOKEN not in done.stderr


async def test_a_full_queue_tells_people_to_retry(fake_api: FakeBotApi, start_bot: Any) -> None:
    bot = await start_bot(ENGINE_MAX_QUEUE="1", TELEGRAM_STREAM_INTERVAL_SECONDS="0", **QUIET_SAFETY)
    with stalled_forward(bot.app.engine._loaded.model) as busy:
        fake_api.send_text(21, 21, "first: the model is busy with me")
        await fake_api.wait_for(busy.is_set, timeout=HANG_SECONDS)
        fake_api.send_text(22, 22, "second: I wait in the queue")
        await fake_api.wait_for(lambda: bot.app.engine.pending == 1, timeout=HANG_SECONDS)
        fake_api.send_text(23, 23, "third: no room left")
        assert await replies_in(fake_api, 23, 1) == [Texts.BUSY]
    assert len(await replies_in(fake_api, 21, 1)) == 1 and len(await replies_in(fake_api, 22, 1)) == 1


async def test_a_waiting_customer_sees_their_place_in_line(fake_api: FakeBotApi, start_bot: Any) -> None:
    bot = await start_bot(ENGINE_MAX_BATCH="1", TELEGRAM_STREAM_INTERVAL_SECONDS="0", **QUIET_SAFETY)
    status = QUEUE_STATUS.format(place=1)
    with stalled_forward(bot.app.engine._loaded.model) as busy:
        fake_api.send_text(31, 31, "first: the model is busy with me")
        await fake_api.wait_for(busy.is_set, timeout=HANG_SECONDS)
        fake_api.send_text(32, 32, "second: I wait for the only slot")
        await fake_api.wait_for(lambda: fake_api.messages_in(32) == [status], timeout=HANG_SECONDS)
    # the status message becomes the answer
    await fake_api.wait_for(lambda: fake_api.messages_in(32) not in ([], [status]), timeout=HANG_SECONDS)
    (answer,) = await replies_in(fake_api, 32, 1)
    assert answer != status and len(fake_api.calls_of("sendMessage")) == 2
    assert len(await replies_in(fake_api, 31, 1)) == 1
