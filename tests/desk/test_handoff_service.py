"""The service's handoff steps with a real tiny model and Redis: silence, plain words, streak escalation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.chat.service import ChatService, Message
from bot.core.domain import GenerationParams, ReplyInfo
from bot.desk.analytics import Analytics
from bot.desk.desk import SupportDesk
from bot.desk.feedback import Feedback
from bot.desk.handoff import Handoffs
from bot.llm.local.engine import TransformersEngine
from bot.llm.local.loader import LoadedModel
from bot.prompt import ChatFormat, PromptBuilder
from bot.storage.redis.desk import RedisAnalytics, RedisFeedback, RedisHandoffs
from bot.storage.redis.store import RedisStore

PARAMS = GenerationParams(max_new_tokens=6, do_sample=False, timeout_seconds=60)
CHAT = 4711


@pytest.fixture
async def service(tiny_llama: LoadedModel, redis_url: str, key_prefix: str) -> AsyncIterator[ChatService]:
    store = RedisStore.from_url(redis_url, prefix=key_prefix, max_turns=20, ttl_seconds=600)
    client = store._client
    analytics = Analytics(RedisAnalytics(client, prefix=key_prefix), retention_days=7)
    handoffs = Handoffs(
        RedisHandoffs(client, prefix=key_prefix),
        store,
        available=True,
        timeout_seconds=600,
        escalate_after=2,
        analytics=analytics,
    )
    feedback = Feedback(
        RedisFeedback(client, prefix=key_prefix), model="tiny", params=PARAMS, retention_days=7
    )
    prompts = PromptBuilder(ChatFormat(tiny_llama.tokenizer), system_prompt="Be brief.", context_tokens=512)
    yield ChatService(
        store=store,
        engine=TransformersEngine(tiny_llama),
        prompts=prompts,
        params=PARAMS,
        support=SupportDesk(handoffs, feedback, analytics, operator_chat_id=-100),
    )
    await store.aclose()


async def ask(service: ChatService, text: str, info: ReplyInfo, message_id: int) -> str:
    message = Message(CHAT, text, user_id=1, author="Anna", message_id=message_id)
    return "".join([piece async for piece in service.respond(message, info)])


async def test_two_ungrounded_answers_in_a_row_hand_the_chat_over(service: ChatService) -> None:
    support = service.support
    assert support is not None
    first, second = ReplyInfo(answered=False), ReplyInfo(answered=False)
    assert await ask(service, "Do you ship to Mars?", first, 1)
    assert not first.handoff_requested
    assert await ask(service, "And to Venus?", second, 2), "the answer is still sent"
    assert second.handoff_requested and await support.handoffs.owned(CHAT)
    handoff = await support.handoffs.current(CHAT)
    assert handoff is not None and handoff.reason == "unanswered"

    silent = ReplyInfo()
    assert await ask(service, "hello?", silent, 3) == "", "the bot is silent while a person owns the chat"
    assert silent.handled_by_human and silent.question == "hello?"
    assert [t.content for t in await support.handoffs.history(CHAT)][-1] == "hello?"
    week = await support.analytics.window(24 * 7)
    assert (week.messages, week.replies, week.unanswered, week.handoffs) == (3, 2, 2, 1)
    assert await support.analytics.unanswered_questions(1) == [
        ("And to Venus?", 1),
        ("Do you ship to Mars?", 1),
    ]


async def test_asking_for_a_person_skips_the_model(service: ChatService) -> None:
    info = ReplyInfo()
    assert await ask(service, "can I talk to a real person?", info, 1) == ""
    assert info.handoff_requested and not info.handled_by_human
    assert service.support is not None and await service.support.handoffs.owned(CHAT)
