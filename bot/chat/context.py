"""What the model is shown for one message: the chat's history, knowledge-base passages, the prompt."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.chat.facts import Recall, extract_facts, merge_facts, recall
from bot.chat.identity import disclosure
from bot.core.domain import ChatKind, Prompt, Role, Turn
from bot.core.errors import StoreUnavailable
from bot.knowledge.base import Knowledge, Retrieval
from bot.metrics import Metrics
from bot.prompt.builder import PromptBuilder
from bot.storage.base import ConversationStore, FactStore

__all__ = ["Context", "ContextBuilder"]

log = logging.getLogger("bot.chat.service")


@dataclass(frozen=True, slots=True)
class Context:
    """The prompt, and what it was built from. `retrieval` is None for small talk (no passages)."""

    prompt: Prompt
    retrieval: Retrieval | None
    earlier_replies: tuple[str, ...]  # the chat's assistant turns, newest first: a reply must not repeat one
    facts: dict[str, str] = field(default_factory=dict)  # what the customer stated: name, order number...
    recalled: Recall | None = None  # the customer asks one of those facts back ("what is my name?")
    said: tuple[str, ...] = ()  # the customer's earlier messages, oldest first


class ContextBuilder:
    def __init__(
        self,
        store: ConversationStore,
        knowledge: Knowledge,
        prompts: PromptBuilder,
        metrics: Metrics,
        *,
        max_new_tokens: int,
    ) -> None:
        self._store = store
        self._knowledge = knowledge
        self._prompts = prompts
        self._metrics = metrics
        self._max_new_tokens = max_new_tokens

    async def __call__(self, chat_id: int | str, question: Turn, kind: ChatKind) -> Context:
        """Raises PromptTooLong when the message alone does not fit the model's context."""
        history = await self._history(chat_id)
        facts = merge_facts(await self._facts(chat_id), extract_facts(question.content))
        retrieval = await self._knowledge.retrieve(question.content)
        found = None if retrieval.small_talk else retrieval
        prompt = self._prompts.build(
            history,
            question,
            max_new_tokens=self._max_new_tokens,
            label_authors=kind is ChatKind.GROUP,
            session=str(chat_id),
            knowledge=found.blocks if found is not None else (),
            facts=facts,
        )
        log.debug(
            "chat %s: prompt of %d tokens with %d history turns (%d older dropped)",
            chat_id,
            prompt.token_count,
            prompt.history_used,
            prompt.history_dropped,
        )
        earlier = tuple(t.content for t in reversed(history) if t.role is Role.ASSISTANT)
        said = tuple(t.content for t in history if t.role is Role.USER)
        recalled = disclosure(question.content) or recall(question.content, facts)
        return Context(prompt, found, earlier, facts, recalled, said)

    async def _history(self, chat_id: int | str) -> list[Turn]:
        """The chat's turns; if the store is down the bot still answers, without them, and says so."""
        try:
            return await self._store.load(chat_id)
        except StoreUnavailable as exc:
            self._metrics.redis_errors.labels("load").inc()
            log.warning("answering chat %s without history: %s", chat_id, exc)
            return []

    async def _facts(self, chat_id: int | str) -> dict[str, str]:
        """The facts stated earlier in this chat; none when the store keeps none or is down."""
        if not isinstance(self._store, FactStore):
            return {}
        try:
            return await self._store.load_facts(chat_id)
        except StoreUnavailable as exc:
            self._metrics.redis_errors.labels("facts").inc()
            log.warning("answering chat %s without its facts: %s", chat_id, exc)
            return {}

    async def save_facts(self, chat_id: int | str, facts: Mapping[str, str]) -> None:
        """Keep the facts beside the history, with its TTL (cleared with it by /reset)."""
        if not facts or not isinstance(self._store, FactStore):
            return
        try:
            await self._store.save_facts(chat_id, facts)
        except StoreUnavailable as exc:
            self._metrics.redis_errors.labels("facts").inc()
            log.warning("chat %s: its facts were not saved: %s", chat_id, exc)
