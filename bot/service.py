"""ChatService: the one transport-agnostic flow from a user's message to the bot's reply.

drop redeliveries -> the gate (allow-lists, rate limits) -> load history -> build the prompt within the
token budget -> stream the reply -> store both turns.
Transports (terminal, Telegram) call only this. It depends on protocols, never on Redis or torch.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bot.domain import ChatKind, GenerationParams, Role, Turn
from bot.errors import DuplicateDelivery, StoreUnavailable
from bot.gate import Gate
from bot.llm.base import Engine
from bot.memory.base import ConversationStore, Limits
from bot.prompt.builder import PromptBuilder

__all__ = ["EMPTY_REPLY_FALLBACK", "ChatService", "Message"]

log = logging.getLogger(__name__)

EMPTY_REPLY_FALLBACK = "Sorry, I could not put an answer together. Could you rephrase your question?"


@dataclass(frozen=True, slots=True)
class Message:
    """An incoming message, as any transport sees it."""

    chat_id: int | str
    text: str
    user_id: int | None = None
    author: str | None = None
    message_id: int | None = None
    chat_kind: ChatKind = ChatKind.PRIVATE
    delivery_id: str | None = None  # the transport's id of this delivery (a Telegram update), for dedup


class ChatService:
    def __init__(
        self,
        *,
        store: ConversationStore,
        engine: Engine,
        prompts: PromptBuilder,
        params: GenerationParams,
        gate: Gate | None = None,
        limits: Limits | None = None,
        dedup_ttl_seconds: int = 86_400,
    ) -> None:
        self._store = store
        self._gate = gate
        self._limits = limits
        self._dedup_ttl = dedup_ttl_seconds
        self._engine = engine
        self._prompts = prompts
        self._params = params
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @property
    def params(self) -> GenerationParams:
        return self._params

    async def respond(self, message: Message) -> AsyncIterator[str]:
        """Stream the reply to `message`; both turns are stored once the reply is complete.

        Messages of one chat are answered one at a time, in arrival order (the lock is taken before any
        await). Raises DuplicateDelivery, AccessDenied or RateLimited before the first piece. If the store
        is down the bot still answers, without history, and says so in the log. A reply abandoned midway
        stores nothing.
        """
        with self._chat_lock(message.chat_id) as lock:
            async with lock:
                await self._screen(message)
                async for piece in self._respond_locked(message):
                    yield piece

    async def _screen(self, message: Message) -> None:
        if message.delivery_id is not None and self._limits is not None:
            try:
                first = await self._limits.claim(message.delivery_id, self._dedup_ttl)
            except StoreUnavailable as exc:
                log.warning("cannot check delivery %s for duplicates: %s", message.delivery_id, exc)
                first = True
            if not first:
                raise DuplicateDelivery(f"delivery {message.delivery_id} was already handled")
        if self._gate is not None:
            await self._gate.admit(message.user_id, message.chat_id)

    async def _respond_locked(self, message: Message) -> AsyncIterator[str]:
        try:
            history = await self._store.load(message.chat_id)
        except StoreUnavailable as exc:
            log.warning("answering chat %s without history: %s", message.chat_id, exc)
            history = []
        question = Turn(
            Role.USER,
            message.text,
            message_id=message.message_id,
            user_id=message.user_id,
            author=message.author,
        )
        prompt = self._prompts.build(
            history,
            question,
            max_new_tokens=self._params.max_new_tokens,
            label_authors=message.chat_kind is ChatKind.GROUP,
        )
        log.debug(
            "chat %s: prompt of %d tokens with %d history turns (%d older dropped)",
            message.chat_id,
            prompt.token_count,
            prompt.history_used,
            prompt.history_dropped,
        )
        pieces: list[str] = []
        async for piece in self._engine.stream(prompt.ids, self._params, prompt.stop_strings):
            pieces.append(piece)
            yield piece
        reply = "".join(pieces).strip()
        if not reply:
            reply = EMPTY_REPLY_FALLBACK
            yield reply
        answer = Turn(Role.ASSISTANT, reply)
        append_id = f"m{message.message_id}" if message.message_id is not None else uuid.uuid4().hex
        try:
            await self._store.append(message.chat_id, [question, answer], append_id)
        except StoreUnavailable as exc:
            log.warning("chat %s: this exchange was not saved to history: %s", message.chat_id, exc)

    async def reset(self, chat_id: int | str) -> None:
        """Forget the chat's history (raises StoreUnavailable if the store is down)."""
        await self._store.clear(chat_id)

    @contextmanager
    def _chat_lock(self, chat_id: int | str) -> Iterator[asyncio.Lock]:
        """A per-chat FIFO lock, dropped when nobody holds or waits for it."""
        key = str(chat_id)
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            yield lock
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
