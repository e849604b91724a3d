"""Per-chat facts through the real stack: a real tokenizer and model, the real prompt builder, real Redis."""

from __future__ import annotations

import redis

from bot.chat.deps import ChatDeps
from bot.chat.service import ChatService, Message
from bot.core.domain import GenerationParams, Role, Turn
from bot.llm.local.engine import TransformersEngine
from bot.llm.local.loader import LoadedModel
from bot.prompt import ChatFormat, PromptBuilder
from bot.storage import history_key
from bot.storage.base import facts_key
from bot.storage.redis.store import RedisStore

PARAMS = GenerationParams(max_new_tokens=6, do_sample=False, timeout_seconds=60)


async def reply(service: ChatService, chat_id: int, text: str, message_id: int) -> str:
    message = Message(chat_id=chat_id, text=text, message_id=message_id)
    return (await service.respond(message).outcome()).text


def make_service(model: LoadedModel, store: RedisStore) -> tuple[ChatService, PromptBuilder]:
    prompts = PromptBuilder(ChatFormat(model.tokenizer), system_prompt="Be brief.", context_tokens=512)
    engine = TransformersEngine(model)
    return ChatService(ChatDeps(store, engine, prompts, PARAMS)), prompts


async def test_facts_are_kept_with_the_history_ttl_shown_in_the_prompt_and_cleared_by_reset(
    tiny_llama: LoadedModel, redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    store = RedisStore.from_url(redis_url, prefix=key_prefix, max_turns=20, ttl_seconds=900)
    service, prompts = make_service(tiny_llama, store)
    await reply(service, 7, "Hi, my name is Anna and my order number is A-1234.", 1)
    assert await store.load_facts(7) == {"name": "Anna", "order number": "A-1234"}
    history_ttl = redis_client.ttl(history_key(key_prefix, 7))
    facts_ttl = redis_client.ttl(facts_key(key_prefix, 7))
    assert 0 < history_ttl <= 900 and abs(facts_ttl - history_ttl) <= 1

    # what the next prompt is built from: the facts are in its system part
    prompt = prompts.build(
        await store.load(7), Turn(Role.USER, "hi"), max_new_tokens=6, facts=await store.load_facts(7)
    )
    system = dict(prompt.messages)[Role.SYSTEM]
    assert "name: Anna" in system and "order number: A-1234" in system
    rendered = tiny_llama.tokenizer.decode(list(prompt.ids))
    assert "order number: A-1234" in rendered

    await service.reset(7)
    assert await store.load_facts(7) == {} and redis_client.exists(facts_key(key_prefix, 7)) == 0
    await store.aclose()


async def test_a_fact_asked_back_is_in_the_reply_even_from_a_model_that_ignores_it(
    tiny_llama: LoadedModel, redis_url: str, key_prefix: str
) -> None:
    # the tiny model has random weights: whatever it says, the customer gets the order number back
    store = RedisStore.from_url(redis_url, prefix=key_prefix, max_turns=20, ttl_seconds=600)
    service, _prompts = make_service(tiny_llama, store)
    await reply(service, 8, "hello, my order number is A-1234 and it hasn't shipped yet", 1)
    await reply(service, 8, "How long does shipping usually take?", 2)
    answer = await reply(service, 8, "can you repeat my order number so i can write it down?", 3)
    assert "A-1234" in answer
    stored = await store.load(8)
    assert stored[-1].role is Role.ASSISTANT and "A-1234" in stored[-1].content
    await store.aclose()


async def test_what_the_safety_layer_redacts_never_becomes_a_fact(
    tiny_llama: LoadedModel, redis_url: str, key_prefix: str
) -> None:
    from bot.config import SafetySettings
    from bot.safety import SafetyPipeline

    store = RedisStore.from_url(redis_url, prefix=key_prefix, max_turns=20, ttl_seconds=600)
    prompts = PromptBuilder(ChatFormat(tiny_llama.tokenizer), system_prompt="Be brief.", context_tokens=512)
    safety = SafetyPipeline(SafetySettings(), system_prompt="Be brief.")  # type: ignore[call-arg]
    service = ChatService(ChatDeps(store, TransformersEngine(tiny_llama), prompts, PARAMS, safety=safety))
    await reply(service, 9, "I'm Anna, my e-mail is anna.smith@example.com and order A-1234", 1)
    facts = await store.load_facts(9)
    assert facts.get("name") == "Anna" and "example.com" not in " ".join(facts.values())
    await store.aclose()
