"""ChatService through the real stack: Redis, a real tokenizer and model, the real prompt builder."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bot.app import build_app
from bot.chat.deps import ChatDeps
from bot.chat.service import ChatService, Message
from bot.config import load_settings
from bot.core.domain import ChatKind, GenerationParams, Role
from bot.core.errors import StoreUnavailable
from bot.core.outcome import OutcomeKind
from bot.llm.local.engine import TransformersEngine
from bot.llm.local.loader import LoadedModel
from bot.prompt import ChatFormat, PromptBuilder
from bot.storage.redis.store import RedisStore

PARAMS = GenerationParams(max_new_tokens=8, do_sample=False, timeout_seconds=60)


def make_service(model: LoadedModel, store: RedisStore) -> ChatService:
    prompts = PromptBuilder(ChatFormat(model.tokenizer), system_prompt="Be brief.", context_tokens=512)
    return ChatService(ChatDeps(store, TransformersEngine(model), prompts, PARAMS))


async def reply(service: ChatService, message: Message) -> str:
    """What the person ends up seeing: the streamed text, or what replaced it (the outcome's text)."""
    stream = service.respond(message)
    text = "".join([piece async for piece in stream])
    outcome = await stream.outcome()
    if outcome.kind is OutcomeKind.ANSWERED:
        assert text.strip() == outcome.text, "an answer's outcome holds what was streamed"
    return outcome.text


@pytest.fixture
async def store(redis_url: str, key_prefix: str) -> RedisStore:
    return RedisStore.from_url(redis_url, prefix=key_prefix, max_turns=20, ttl_seconds=600)


async def test_both_turns_are_stored_and_feed_the_next_prompt(
    tiny_llama: LoadedModel, store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    service = make_service(tiny_llama, store)
    caplog.set_level(logging.DEBUG, logger="bot.chat.service")
    first = await reply(service, Message(chat_id=1, text="Hi, I am Anna", message_id=10, user_id=5))
    await reply(service, Message(chat_id=1, text="What is my name?", message_id=11, user_id=5))
    turns = await store.load(1)
    assert [(t.role, t.content) for t in turns[:2]] == [(Role.USER, "Hi, I am Anna"), (Role.ASSISTANT, first)]
    assert turns[2].content == "What is my name?" and turns[2].message_id == 11
    prompts = [r.getMessage() for r in caplog.records if r.name == "bot.chat.service"]
    assert "with 0 history turns" in prompts[0] and "with 2 history turns" in prompts[1]
    await store.aclose()


async def test_a_redelivered_message_is_stored_once(tiny_llama: LoadedModel, store: RedisStore) -> None:
    service = make_service(tiny_llama, store)
    await reply(service, Message(chat_id=2, text="hello", message_id=1))
    await reply(service, Message(chat_id=2, text="hello", message_id=1))
    assert len(await store.load(2)) == 2
    await store.aclose()


async def test_messages_of_one_chat_are_answered_in_arrival_order(
    tiny_llama: LoadedModel, store: RedisStore
) -> None:
    service = make_service(tiny_llama, store)
    texts = [f"message {n}" for n in range(5)]
    await asyncio.gather(
        *(reply(service, Message(chat_id=3, text=t, message_id=n)) for n, t in enumerate(texts))
    )
    stored = [t.content for t in await store.load(3) if t.role is Role.USER]
    assert stored == texts
    await store.aclose()


async def test_an_abandoned_reply_stores_nothing(tiny_llama: LoadedModel, store: RedisStore) -> None:
    service = make_service(tiny_llama, store)
    stream = service.respond(Message(chat_id=4, text="hello"))
    await anext(stream)
    await stream.aclose()
    assert await store.load(4) == []
    await store.aclose()


async def test_group_turns_keep_their_authors(tiny_llama: LoadedModel, store: RedisStore) -> None:
    service = make_service(tiny_llama, store)
    await reply(
        service, Message(chat_id=-100, text="hi all", author="Anna", user_id=1, chat_kind=ChatKind.GROUP)
    )
    (question, _answer) = await store.load(-100)
    assert (question.author, question.user_id) == ("Anna", 1)
    await store.aclose()


async def test_answers_without_history_when_redis_is_down(
    tiny_llama: LoadedModel, caplog: pytest.LogCaptureFixture
) -> None:
    down = RedisStore.from_url("redis://127.0.0.1:1/0", prefix="x", max_turns=20, ttl_seconds=60)
    service = make_service(tiny_llama, down)
    assert await reply(service, Message(chat_id=5, text="hello"))
    assert any("without history" in m for m in caplog.messages)
    assert any("not saved" in m for m in caplog.messages)
    with pytest.raises(StoreUnavailable):
        await service.reset(5)
    await down.aclose()


async def test_build_app_wires_settings_to_a_working_service(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, tiny_llama_dir: Path, redis_url: str, key_prefix: str
) -> None:
    monkeypatch.setenv("MODEL_NAME", str(tiny_llama_dir))
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("REDIS_KEY_PREFIX", key_prefix)
    monkeypatch.setenv("HISTORY_MAX_TURNS", "2")
    monkeypatch.setenv("GENERATION_MAX_NEW_TOKENS", "4")
    app = await build_app(load_settings(None), default_redis_url="memory://")
    try:
        for n in range(3):
            assert await reply(app.service, Message(chat_id="t", text=f"q{n}"))
        assert next(t.content for t in await app.store.load("t")) == "q2"
        assert len(await app.store.load("t")) == 2
    finally:
        await app.aclose()


async def test_build_app_explains_an_unreachable_redis(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    with pytest.raises(StoreUnavailable) as caught:
        await build_app(load_settings(None), default_redis_url="memory://")
    message = str(caught.value)
    assert "REDIS_URL" in message and "redis-server" in message and "hunter2" not in message
