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
from contextlib import contextmanager
from dataclasses import dataclass

from bot.chat import ranking
from bot.chat.answers import Answers
from bot.chat.facts import Recall, extract_facts, merge_facts, recall
from bot.chat.gate import Gate
from bot.chat.ordering import ChatTurns, Delivery
from bot.core.domain import ChatKind, GenerationParams, Prompt, ReplyInfo, Role, Turn, Verdict
from bot.core.errors import (
    AccessDenied,
    BotError,
    ConfigError,
    DuplicateDelivery,
    GenerationTimeout,
    InputRefused,
    RateLimited,
    ReplyReplaced,
    StoreUnavailable,
)
from bot.desk.desk import SupportDesk
from bot.desk.handoff import wants_human
from bot.knowledge.base import Knowledge, Retrieval
from bot.llm.base import Engine
from bot.metrics import Metrics
from bot.prompt.builder import PromptBuilder
from bot.safety import SafetyPipeline
from bot.storage.base import AuditLog, ChatLocks, ConversationStore, FactStore, Limits

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
        chat_locks: ChatLocks | None = None,
        lease_seconds: float = 15.0,
        support: SupportDesk | None = None,
        knowledge: Knowledge | None = None,
    ) -> None:
        self._support = support
        self._knowledge = knowledge
        if knowledge is not None and safety is not None:
            safety.allow_public(knowledge.public_text)  # the company's own contact data may be repeated
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
        self._answers = Answers(engine, params, safety=safety, knowledge=knowledge, audit=self._audit)
        # across replicas: the chat's shared lock, then the delivery's lease (`bot/chat/ordering.py`)
        self._turns = ChatTurns(
            chat_locks,
            limits,
            lease_seconds=lease_seconds,
            done_ttl_seconds=dedup_ttl_seconds,
            on_store_error=self._store_failed,
        )

    @property
    def params(self) -> GenerationParams:
        return self._params

    @property
    def support(self) -> SupportDesk | None:
        """Handoff, feedback and analytics, for transports (None: no support desk)."""
        return self._support

    async def respond(self, message: Message, info: ReplyInfo | None = None) -> AsyncIterator[str]:
        """Stream the reply to `message`; both turns are stored once the reply is complete.

        `info`, when given, is filled in as the reply is produced (the question as stored, the reply,
        knowledge-base sources and confidence) for the transport to use once the stream ends.

        Messages of one chat are answered one at a time, in arrival order (the lock is taken before any
        await); with `chat_locks` also across replicas, oldest message_id first, and a Telegram update is
        answered once however often it is delivered, even after the replica answering it died. Raises
        DuplicateDelivery, AccessDenied, RateLimited or InputRefused before the first piece,
        and ReplyReplaced (after storing the replacement) when the reply failed the output checks after
        part of it was shown. If the store is down the bot still answers, without history, and says so in
        the log. A reply abandoned midway stores nothing.
        """
        arrived, first = time.monotonic(), True
        outcome = "answered"
        try:
            with self._chat_lock(message.chat_id) as lock:
                # a transport that passes a delivery id sends the reply in this task after the stream
                # ends: the chat stays held across replicas until then, so replies go out in order
                shared = self._turns.chat(
                    message.chat_id, message.message_id, until_task_ends=message.delivery_id is not None
                )
                async with lock, shared:
                    delivery = await self._screen(message)
                    try:
                        async for piece in self._respond_locked(
                            message, info if info is not None else ReplyInfo()
                        ):
                            if first and self._metrics is not None:
                                self._metrics.first_token_seconds.observe(time.monotonic() - arrived)
                            first = False
                            yield piece
                    except BaseException as exc:  # a refusal or notice is an answer; an abandoned reply not
                        if delivery is not None:
                            delivery.finish(answered=isinstance(exc, BotError))
                        raise
                    if delivery is not None:
                        delivery.finish(answered=True)
        except BaseException as exc:
            outcome = _OUTCOMES.get(type(exc), "error")
            raise
        finally:
            if self._metrics is not None:
                self._metrics.replies.labels(outcome).inc()
                if outcome in ("answered", "replaced"):
                    self._metrics.reply_seconds.observe(time.monotonic() - arrived)

    async def _screen(self, message: Message) -> Delivery | None:
        """Lease the delivery (DuplicateDelivery if it was answered), then the gate."""
        delivery = None
        if message.delivery_id is not None:
            delivery = await self._turns.claim(message.delivery_id)
        try:
            if self._gate is not None:
                await self._gate.admit(message.user_id, message.chat_id)
            if self._support is not None:
                await self._support.analytics.message(message.chat_id)
        except BaseException as exc:
            if delivery is not None:
                delivery.finish(answered=isinstance(exc, BotError))
            raise
        return delivery

    async def _respond_locked(self, message: Message, info: ReplyInfo) -> AsyncIterator[str]:
        started = time.monotonic()
        if self._support is not None and await self._support.handoffs.owned(message.chat_id):
            await self._for_person(message, info)  # the one place the bot keeps silent during a handoff
            return
        text = message.text
        if self._safety is not None:
            verdict = self._safety.check_input(text)
            await self._audit(message.chat_id, "in", verdict)
            if verdict.blocked:
                if self._support is not None:
                    await self._support.analytics.blocked(message.chat_id)
                raise InputRefused(self._safety.message_for(verdict), reasons=verdict.reasons)
            text = verdict.text
        if await self._asks_for_person(message, text, info):
            return
        try:
            history = await self._store.load(message.chat_id)
        except StoreUnavailable as exc:
            self._store_failed("load")
            log.warning("answering chat %s without history: %s", message.chat_id, exc)
            history = []
        question = Turn(
            Role.USER, text, message_id=message.message_id, user_id=message.user_id, author=message.author
        )
        # -- issue 13 hook, part 1: the facts the customer stated, for the prompt and the ranking --------
        facts = merge_facts(await self._load_facts(message.chat_id), extract_facts(text))
        recalled = recall(text, facts)
        retrieval = await self._retrieve(text)
        prompt = self._prompts.build(
            history,
            question,
            max_new_tokens=self._params.max_new_tokens,
            label_authors=message.chat_kind is ChatKind.GROUP,
            session=str(message.chat_id),
            knowledge=retrieval.blocks if retrieval is not None else (),
            facts=facts,
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
            if retrieval is not None:  # a knowledge-base question: the answer is verified before it is shown
                grounded = await self._answers.grounded(message.chat_id, text, prompt, retrieval, info)
                pieces.append(grounded)
                yield grounded
            elif self._params.num_candidates > 1 or recalled is not None:  # issue 13 hook, part 2: ranking
                best = await self._ranked(message.chat_id, text, prompt, facts, history, recalled)
                pieces.append(best)
                yield best
            else:
                async for piece in self._answers.guarded(message.chat_id, prompt):
                    pieces.append(piece)
                    yield piece
            reply = "".join(pieces).strip()
        except ReplyReplaced as exc:
            reply, replaced = exc.text, exc
        if not reply:
            reply = EMPTY_REPLY_FALLBACK
            yield reply
        info.question, info.reply, info.asker_id = question.content, reply, message.user_id
        answer = Turn(Role.ASSISTANT, reply)
        append_id = f"m{message.message_id}" if message.message_id is not None else uuid.uuid4().hex
        try:
            await self._store.append(message.chat_id, [question, answer], append_id)
        except StoreUnavailable as exc:
            self._store_failed("append")
            log.warning("chat %s: this exchange was not saved to history: %s", message.chat_id, exc)
        await self._save_facts(message.chat_id, facts)  # issue 13 hook, part 3: beside the history, same TTL
        await self._after_reply(message, info, time.monotonic() - started, replaced=replaced is not None)
        if replaced is not None:
            raise replaced

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

    # -- issue 13: facts the customer stated, and best of n ranked for answer quality -------------------
    async def _load_facts(self, chat_id: int | str) -> dict[str, str]:
        if not isinstance(self._store, FactStore):
            return {}
        try:
            return await self._store.load_facts(chat_id)
        except StoreUnavailable as exc:
            self._store_failed("facts")
            log.warning("answering chat %s without its facts: %s", chat_id, exc)
            return {}

    async def _save_facts(self, chat_id: int | str, facts: dict[str, str]) -> None:
        if not isinstance(self._store, FactStore):
            return
        try:
            await self._store.save_facts(chat_id, facts)
        except StoreUnavailable as exc:
            self._store_failed("facts")
            log.warning("chat %s: its facts were not saved: %s", chat_id, exc)

    async def _ranked(
        self,
        chat_id: int | str,
        question: str,
        prompt: Prompt,
        facts: dict[str, str],
        history: list[Turn],
        recalled: Recall | None,
    ) -> str:
        """n candidates in one batch, ranked (`bot.chat.ranking`); the best that passes the output checks."""
        candidates = await self._engine.candidates(prompt, self._params)
        previous = next((turn.content for turn in reversed(history) if turn.role is Role.ASSISTANT), None)
        asked = recalled.values if recalled is not None else ()
        ranked = ranking.rank(
            [(c.text, c.mean_logprob) for c in candidates],
            question=question,
            facts=facts,
            asked_values=asked,
            previous_reply=previous,
        )
        sentence = recalled.sentence if recalled is not None else None
        for candidate in ranked:
            text = ranking.with_recall(candidate.text.strip(), sentence, asked)
            if self._safety is None:
                return text
            verdict = self._safety.check_output(text)
            await self._audit(chat_id, "out", verdict)
            if not verdict.blocked:
                return verdict.text
        return sentence if sentence is not None else (self._safety.refusal_text if self._safety else "")

    # -- the support desk: handoff and analytics ----------------------------------------------------
    def _question(self, message: Message, text: str) -> Turn:
        return Turn(
            Role.USER, text, message_id=message.message_id, user_id=message.user_id, author=message.author
        )

    async def _for_person(self, message: Message, info: ReplyInfo) -> None:
        """A person owns the chat: keep the message in history, redacted as usual, and say nothing."""
        assert self._support is not None
        text = message.text
        if self._safety is not None:
            verdict = self._safety.check_input(text)
            await self._audit(message.chat_id, "in", verdict)
            text = f"[withheld: {','.join(verdict.reasons)}]" if verdict.blocked else verdict.text
        append_id = f"m{message.message_id}" if message.message_id is not None else uuid.uuid4().hex
        await self._support.handoffs.store_turn(message.chat_id, self._question(message, text), append_id)
        info.question, info.handled_by_human = text, True

    async def _asks_for_person(self, message: Message, text: str, info: ReplyInfo) -> bool:
        """A plain-words request for a person ("I want to talk to a human") hands the chat over."""
        support = self._support
        if support is None or not support.handoffs.available or not wants_human(text):
            return False
        try:
            await support.handoffs.begin(int(message.chat_id), message.user_id, message.author or "", "asked")
        except (StoreUnavailable, ValueError) as exc:
            log.warning("chat %s asked for a person but the handoff failed: %s", message.chat_id, exc)
            return False
        append_id = f"m{message.message_id}" if message.message_id is not None else uuid.uuid4().hex
        await support.handoffs.store_turn(message.chat_id, self._question(message, text), append_id)
        info.question, info.handoff_requested = text, True
        return True

    async def _after_reply(
        self, message: Message, info: ReplyInfo, seconds: float, *, replaced: bool
    ) -> None:
        """Analytics of a finished reply; after too many ungrounded answers in a row, hand the chat over."""
        support = self._support
        if support is None:
            return
        if replaced:
            await support.analytics.blocked(message.chat_id)
        await support.analytics.reply(message.chat_id, seconds, info.question, answered=info.answered)
        if await support.handoffs.should_escalate(message.chat_id, grounded=info.answered):
            try:
                begun = await support.handoffs.begin(
                    int(message.chat_id), message.user_id, message.author or "", "unanswered"
                )
            except StoreUnavailable as exc:
                log.warning("chat %s: escalation to a person failed: %s", message.chat_id, exc)
                return
            info.handoff_requested = begun is not None

    # -- the knowledge base: retrieval and grounded answers -------------------------------------------
    async def _retrieve(self, text: str) -> Retrieval | None:
        """Passages for a question; None without a knowledge base or for small talk ("hi", "thanks")."""
        if self._knowledge is None:
            return None
        retrieval = await self._knowledge.retrieve(text)
        return None if retrieval.small_talk else retrieval

    async def reload_knowledge(self) -> str:
        """Re-read the knowledge base (an admin's /reload); the summary says what is now served.

        Raises ConfigError when there is none or a file is broken (the previous version keeps serving).
        """
        if self._knowledge is None:
            raise ConfigError("no knowledge base is configured: set KB_PATH to a folder of documents")
        summary = await self._knowledge.reload()
        if self._safety is not None:
            self._safety.allow_public(self._knowledge.public_text)
        return summary

    def queue_position(self, chat_id: int | str) -> int | None:
        """Where this chat's reply waits for the model (1 = next), or None when it is not waiting."""
        return self._engine.queue_position(str(chat_id))

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
