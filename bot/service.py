"""ChatService: the one transport-agnostic flow from a user's message to the bot's reply.

drop redeliveries -> the gate (allow-lists, rate limits) -> input safety checks -> load history -> build
the prompt within the token budget -> stream the reply through the output safety checks -> store both turns.
Transports (terminal, Telegram) call only this. It depends on protocols, never on Redis or torch.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass

from bot.domain import ChatKind, GenerationParams, Prompt, ReplyInfo, Role, Turn, Verdict
from bot.errors import (
    AccessDenied,
    DuplicateDelivery,
    GenerationTimeout,
    InputRefused,
    RateLimited,
    ReplyReplaced,
    StoreUnavailable,
)
from bot.gate import Gate
from bot.llm.base import Engine
from bot.memory.base import AuditLog, ConversationStore, Limits
from bot.metrics import Metrics
from bot.prompt.builder import PromptBuilder
from bot.safety import SafetyPipeline

__all__ = ["EMPTY_REPLY_FALLBACK", "ChatService", "Message"]

log = logging.getLogger(__name__)

EMPTY_REPLY_FALLBACK = "Sorry, I could not put an answer together. Could you rephrase your question?"
# what `bot_replies_total{outcome}` calls each way a reply can end
_OUTCOMES: dict[type[BaseException], str] = {
    ReplyReplaced: "replaced",
    InputRefused: "refused",
    DuplicateDelivery: "duplicate",
    AccessDenied: "denied",
    RateLimited: "rate_limited",
    GenerationTimeout: "timeout",
    GeneratorExit: "abandoned",
    asyncio.CancelledError: "abandoned",
}
# While streaming, this many characters stay unshown until the output checks have seen what follows them:
# enough to hold a whole card number, IBAN, e-mail address or the canary.
HOLD_BACK_CHARS = 48


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
        safety: SafetyPipeline | None = None,
        audit: AuditLog | None = None,
        metrics: Metrics | None = None,
        dedup_ttl_seconds: int = 86_400,
    ) -> None:
        self._metrics = metrics
        self._store = store
        self._safety = safety
        self._audit_log = audit
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

    async def respond(self, message: Message, info: ReplyInfo | None = None) -> AsyncIterator[str]:
        """Stream the reply to `message`; both turns are stored once the reply is complete.

        `info`, when given, is filled in as the reply is produced (the question as stored, the reply,
        knowledge-base sources and confidence) for the transport to use once the stream ends.

        Messages of one chat are answered one at a time, in arrival order (the lock is taken before any
        await). Raises DuplicateDelivery, AccessDenied, RateLimited or InputRefused before the first piece,
        and ReplyReplaced (after storing the replacement) when the reply failed the output checks after
        part of it was shown. If the store is down the bot still answers, without history, and says so in
        the log. A reply abandoned midway stores nothing.
        """
        arrived, first = time.monotonic(), True
        outcome = "answered"
        try:
            with self._chat_lock(message.chat_id) as lock:
                async with lock:
                    await self._screen(message)
                    async for piece in self._respond_locked(
                        message, info if info is not None else ReplyInfo()
                    ):
                        if first and self._metrics is not None:
                            self._metrics.first_token_seconds.observe(time.monotonic() - arrived)
                        first = False
                        yield piece
        except BaseException as exc:
            outcome = _OUTCOMES.get(type(exc), "error")
            raise
        finally:
            if self._metrics is not None:
                self._metrics.replies.labels(outcome).inc()
                if outcome in ("answered", "replaced"):
                    self._metrics.reply_seconds.observe(time.monotonic() - arrived)

    async def _screen(self, message: Message) -> None:
        if message.delivery_id is not None and self._limits is not None:
            try:
                first = await self._limits.claim(message.delivery_id, self._dedup_ttl)
            except StoreUnavailable as exc:
                self._store_failed("claim")
                log.warning("cannot check delivery %s for duplicates: %s", message.delivery_id, exc)
                first = True
            if not first:
                raise DuplicateDelivery(f"delivery {message.delivery_id} was already handled")
        if self._gate is not None:
            await self._gate.admit(message.user_id, message.chat_id)

    async def _respond_locked(self, message: Message, info: ReplyInfo) -> AsyncIterator[str]:
        text = message.text
        if self._safety is not None:
            verdict = self._safety.check_input(text)
            await self._audit(message.chat_id, "in", verdict)
            if verdict.blocked:
                raise InputRefused(self._safety.message_for(verdict), reasons=verdict.reasons)
            text = verdict.text
        try:
            history = await self._store.load(message.chat_id)
        except StoreUnavailable as exc:
            self._store_failed("load")
            log.warning("answering chat %s without history: %s", message.chat_id, exc)
            history = []
        question = Turn(
            Role.USER, text, message_id=message.message_id, user_id=message.user_id, author=message.author
        )
        prompt = self._prompts.build(
            history,
            question,
            max_new_tokens=self._params.max_new_tokens,
            label_authors=message.chat_kind is ChatKind.GROUP,
            session=str(message.chat_id),
        )
        log.debug(
            "chat %s: prompt of %d tokens with %d history turns (%d older dropped)",
            message.chat_id,
            prompt.token_count,
            prompt.history_used,
            prompt.history_dropped,
        )
        pieces: list[str] = []
        replaced: ReplyReplaced | None = None
        try:
            if self._params.num_candidates > 1:
                best = await self._best_of(message.chat_id, prompt)
                pieces.append(best)
                yield best
            else:
                async for piece in self._guarded(message.chat_id, prompt):
                    pieces.append(piece)
                    yield piece
            reply = "".join(pieces).strip()
        except ReplyReplaced as exc:
            reply, replaced = exc.text, exc
        if not reply:
            reply = EMPTY_REPLY_FALLBACK
            yield reply
        info.question, info.reply = question.content, reply
        answer = Turn(Role.ASSISTANT, reply)
        append_id = f"m{message.message_id}" if message.message_id is not None else uuid.uuid4().hex
        try:
            await self._store.append(message.chat_id, [question, answer], append_id)
        except StoreUnavailable as exc:
            self._store_failed("append")
            log.warning("chat %s: this exchange was not saved to history: %s", message.chat_id, exc)
        if replaced is not None:
            raise replaced

    async def _guarded(self, chat_id: int | str, prompt: Prompt) -> AsyncIterator[str]:
        """The engine's stream, shown only once the output checks have passed it.

        The last HOLD_BACK_CHARS characters stay unshown until more text (or the end) arrives, so a card
        number or the canary is caught before any of it is sent.
        """
        stream = self._engine.stream(prompt, self._params)
        safety = self._safety
        if safety is None:
            async with aclosing(stream):
                async for piece in stream:
                    yield piece
            return
        raw, shown = "", ""
        async with aclosing(stream):
            async for piece in stream:
                raw += piece
                if len(raw) - len(shown) < 2 * HOLD_BACK_CHARS:
                    continue
                draft = safety.check_output(raw, final=False)
                if draft.blocked:
                    await self._audit(chat_id, "out", draft)
                    raise ReplyReplaced(safety.message_for(draft), reasons=draft.reasons)
                cut = draft.text.rfind(" ", len(shown), len(draft.text) - HOLD_BACK_CHARS)
                if cut > len(shown) and draft.text.startswith(shown):
                    yield draft.text[len(shown) : cut]
                    shown = draft.text[:cut]
        final = safety.check_output(raw.strip())
        await self._audit(chat_id, "out", final)
        if final.blocked:
            raise ReplyReplaced(safety.message_for(final), reasons=final.reasons)
        if not final.text.startswith(shown):  # a redaction reached text already shown
            raise ReplyReplaced(final.text, reasons=final.reasons)
        if final.text[len(shown) :]:
            yield final.text[len(shown) :]

    async def _best_of(self, chat_id: int | str, prompt: Prompt) -> str:
        """Sample n replies in one batch; the most likely one that passes the output checks wins."""
        candidates = await self._engine.candidates(prompt, self._params)
        if self._safety is None:
            return candidates[0].text
        for candidate in candidates:
            verdict = self._safety.check_output(candidate.text)
            await self._audit(chat_id, "out", verdict)
            if not verdict.blocked:
                return verdict.text
        return self._safety.refusal_text

    async def _audit(self, chat_id: int | str, direction: str, verdict: Verdict) -> None:
        """Record a block or redaction: reason codes and chat id only, never the text."""
        if not verdict.reasons:
            return
        if verdict.blocked:
            what = "message" if direction == "in" else "reply"
            log.info("chat %s: %s blocked (%s)", chat_id, what, ",".join(verdict.reasons))
        event = {
            "ts": f"{time.time():.3f}",
            "chat": str(chat_id),
            "direction": direction,
            "action": verdict.action.value,
            "reasons": ",".join(verdict.reasons),
        }
        if self._metrics is not None:
            for reason in verdict.reasons:
                self._metrics.safety.labels(direction, verdict.action.value, reason).inc()
        if self._audit_log is None:
            return
        try:
            await self._audit_log.record(event)
        except StoreUnavailable as exc:
            self._store_failed("audit")
            log.warning("safety event not recorded: %s", exc)

    async def reset(self, chat_id: int | str) -> None:
        """Forget the chat's history (raises StoreUnavailable if the store is down)."""
        await self._store.clear(chat_id)

    def _store_failed(self, operation: str) -> None:
        if self._metrics is not None:
            self._metrics.redis_errors.labels(operation).inc()

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
