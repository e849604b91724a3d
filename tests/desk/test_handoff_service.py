"""The service's handoff steps with a real tiny model and Redis: silence, plain words, streak escalation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from bot.chat.deps import ChatDeps
from bot.chat.service import ChatService, Message
from bot.core.domain import GenerationParams
from bot.core.outcome import Outcome, OutcomeKind
from bot.desk.analytics import Analytics
from bot.desk.desk import SupportDesk
from bot.desk.feedback import Feedback
from bot.desk.handoff import Handoffs
from bot.knowledge.base import Grounded, Retrieval
from bot.knowledge.grounding import NOT_FOUND_TEXT
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
    desk = SupportDesk(handoffs, feedback, analytics, operator_chat_id=-100)
    yield ChatService(ChatDeps(store, TransformersEngine(tiny_llama), prompts, PARAMS, desk=desk))
    await store.aclose()


async def ask(service: ChatService, text: str, message_id: int) -> tuple[str, Outcome]:
    reply = service.respond(Message(CHAT, text, user_id=1, author="Anna", message_id=message_id))
    return "".join([piece async for piece in reply]), await reply.outcome()


class NothingFound:
    """A knowledge base that never has the answer: every reply counts as unanswered."""

    public_text = ""

    async def retrieve(self, text: str) -> Retrieval:
        return Retrieval(confidence=0.1)

    def ground(self, question: str, reply: str, retrieval: Retrieval) -> Grounded:
        return Grounded(NOT_FOUND_TEXT, answered=False, problems=("low_confidence",))

    async def reload(self) -> str:
        return "nothing"


async def test_two_ungrounded_answers_in_a_row_hand_the_chat_over(service: ChatService) -> None:
    support = service.desk
    assert isinstance(support, SupportDesk)
    service = ChatService(replace(service._deps, knowledge=NothingFound()))
    text, first = await ask(service, "Do you ship to Mars?", 1)
    assert text == NOT_FOUND_TEXT and first.declined and not first.handed_over
    text, second = await ask(service, "And to Venus?", 2)
    assert text == second.text == NOT_FOUND_TEXT, "the answer is still sent"
    assert second.kind is OutcomeKind.ANSWERED and second.handed_over and await support.owned(CHAT)
    handoff = await support.handoff(CHAT)
    assert handoff is not None and handoff.reason == "unanswered"

    text, silent = await ask(service, "hello?", 3)
    assert text == "" and silent.text == "", "the bot is silent while a person owns the chat"
    assert silent.kind is OutcomeKind.HANDED_OFF and silent.question == "hello?"
    assert [t.content for t in await support.history(CHAT)][-1] == "hello?"
    week = await support.analytics.window(24 * 7)
    assert (week.messages, week.replies, week.unanswered, week.handoffs) == (3, 2, 2, 1)
    assert await support.analytics.unanswered_questions(1) == [
        ("And to Venus?", 1),
        ("Do you ship to Mars?", 1),
    ]


async def test_asking_for_a_person_skips_the_model(service: ChatService) -> None:
    text, outcome = await ask(service, "can I talk to a real person?", 1)
    assert text == outcome.text == "" and outcome.kind is OutcomeKind.HANDOFF_REQUESTED
    assert isinstance(service.desk, SupportDesk) and await service.desk.owned(CHAT)
