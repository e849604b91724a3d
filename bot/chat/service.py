"""ChatService: the one transport-agnostic flow from a user's message to the bot's reply.

`respond(message)` returns a `Reply`: the reply's text as it is generated, then its `Outcome`. On arrival
(before waiting for the chat's turn): drop redeliveries, the gate (allow-lists, rate limits), nothing
visible, the per-chat queue cap. In the chat's turn: a person owns the chat -> input safety -> a person
asked for -> history + knowledge + prompt -> generate (through the output checks) -> persist -> analytics.
Each step is a small unit of `bot/chat/`; this module only orders them. Transports call only this.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, replace

from bot.chat.answers import Answers, Generated, RankContext
from bot.chat.audit import SafetyAudit
from bot.chat.context import Context, ContextBuilder
from bot.chat.deps import ChatDeps
from bot.chat.grounded import GroundedAnswers
from bot.chat.handoff import HandoffStep
from bot.chat.line import ChatLine, Place
from bot.chat.ordering import Delivery
from bot.chat.record import Recorder
from bot.chat.reply import Reply
from bot.chat.screening import InputCheck, strip_controls
from bot.core.domain import ChatKind, GenerationParams, Role, Turn
from bot.core.errors import DuplicateDelivery, EngineBusy, GenerationError, GenerationTimeout, PromptTooLong
from bot.core.outcome import Outcome, OutcomeKind
from bot.core.texts import EMPTY_REPLY_FALLBACK, QUEUE_FULL, Texts
from bot.desk.desk import Desk

__all__ = ["EMPTY_REPLY_FALLBACK", "ChatService", "Message", "failure_outcome"]

log = logging.getLogger(__name__)


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


def failure_outcome(chat_id: int | str, exc: GenerationError | PromptTooLong) -> Outcome:
    """What the person is told when the model could not answer (the one place these become texts)."""
    if isinstance(exc, PromptTooLong):
        return Outcome(OutcomeKind.TOO_LONG, Texts.TOO_LONG)
    if isinstance(exc, EngineBusy):
        return Outcome(OutcomeKind.BUSY, Texts.BUSY)
    if isinstance(exc, GenerationTimeout):
        log.warning("chat %s: the model stalled: %s", chat_id, exc)
        return Outcome(OutcomeKind.TIMEOUT, Texts.TIMEOUT)
    log.error("generation failed in chat %s: %s", chat_id, exc)
    return Outcome(OutcomeKind.ERROR, Texts.FAILED)


class ChatService:
    def __init__(self, deps: ChatDeps) -> None:
        self._deps = deps
        deps.safety.allow_public(deps.knowledge.public_text)  # the company's own contact data may be repeated
        audit = SafetyAudit(deps.audit, deps.metrics)
        self._line = ChatLine()
        self._check = InputCheck(deps.safety, audit)
        self._handoff = HandoffStep(deps.desk, self._check)
        self._context = ContextBuilder(
            deps.store, deps.knowledge, deps.prompts, deps.metrics, max_new_tokens=deps.params.max_new_tokens
        )
        self._answers = Answers(
            deps.engine,
            deps.params,
            safety=deps.safety,
            audit=audit,
            embed=deps.embed,
            examples=deps.prompts.example_answers,
            topics=deps.prompts.example_topics,
        )
        self._grounded = GroundedAnswers(
            deps.engine,
            deps.params,
            deps.knowledge,
            safety=deps.safety,
            audit=audit,
            metrics=deps.metrics,
            max_new_tokens=deps.options.kb_max_new_tokens,
            max_load=deps.options.kb_draft_max_load,
        )
        self._recorder = Recorder(deps.store, deps.desk, deps.metrics)

    @property
    def params(self) -> GenerationParams:
        return self._deps.params

    @property
    def desk(self) -> Desk:
        """Handoff, feedback and analytics, for transports (`NoDesk` when there is none)."""
        return self._deps.desk

    def respond(self, message: Message) -> Reply:
        """The reply to `message`: iterate it for the text as it is generated, then await its outcome.

        Messages of one chat are answered one at a time, in arrival order (the place in line is taken
        before any await); with shared chat locks also across replicas, oldest message_id first, and a
        Telegram update is answered once however often it is delivered. Limits are counted on arrival, so
        a burst is told at once. If the store is down the bot still answers, without history. A reply
        abandoned midway (`aclose`) stores nothing.
        """
        return Reply(self._measured(message))

    async def _measured(self, message: Message) -> AsyncGenerator[str | Outcome, None]:
        """The flow, counted in `bot_replies_total{outcome}` and the latency histograms."""
        metrics, arrived, first = self._deps.metrics, time.monotonic(), True
        outcome, label = None, "error"
        try:
            async with aclosing(self._ordered(message)) as flow:
                async for item in flow:
                    if isinstance(item, Outcome):
                        outcome = item
                        continue
                    if first:
                        metrics.first_token_seconds.observe(time.monotonic() - arrived)
                        first = False
                    yield item
            label = outcome.metric_label if outcome is not None else "error"
        except (GeneratorExit, asyncio.CancelledError):
            label = "abandoned"
            raise
        finally:
            metrics.replies.labels(label).inc()
            if label in ("answered", "replaced"):
                metrics.reply_seconds.observe(time.monotonic() - arrived)
        if outcome is None:
            raise RuntimeError("the reply ended without an outcome")
        yield outcome

    async def _ordered(self, message: Message) -> AsyncGenerator[str | Outcome, None]:
        """Admission on arrival, then the chat's turn (in this process, then across replicas)."""
        place = self._line.join(message.chat_id)
        delivery: Delivery | None = None
        try:
            delivery, outcome = await self._admit(message, place)
            if outcome is None:
                await place.turn()
                turns = self._deps.turns
                # a transport that passes a delivery id sends the reply in this task after the stream ends:
                # the chat stays held across replicas until then, so replies go out in order
                held = message.delivery_id is not None
                async with turns.chat(message.chat_id, message.message_id, until_task_ends=held):
                    async for item in self._answer(message):
                        if isinstance(item, Outcome):
                            outcome = item
                        else:
                            yield item
        except BaseException:
            if delivery is not None:  # abandoned or failed: a redelivery is answered
                delivery.finish(answered=False)
            raise
        finally:
            place.leave()
        if delivery is not None:
            delivery.finish(answered=True)
        assert outcome is not None
        yield outcome

    async def _admit(self, message: Message, place: Place) -> tuple[Delivery | None, Outcome | None]:
        """On arrival: a redelivery, the gate, an empty message, a full line; None when it may go on."""
        delivery = None
        if message.delivery_id is not None:
            try:
                delivery = await self._deps.turns.claim(message.delivery_id)
            except DuplicateDelivery:
                log.info("update %s was already answered; skipping the redelivery", message.delivery_id)
                return None, Outcome(OutcomeKind.DUPLICATE)
        outcome = await self._deps.gate.admit(message.user_id, message.chat_id)
        if outcome is None:
            outcome = InputCheck.empty(message.text)
        cap = self._deps.options.max_queued_per_chat
        if outcome is None and cap and place.ahead > cap:  # those turned away already left the line
            log.info("chat %s: %d messages ahead in line; turned away", message.chat_id, place.ahead)
            outcome = Outcome(OutcomeKind.QUEUE_FULL, QUEUE_FULL)
        if outcome is None:
            await self._deps.desk.arrived(message.chat_id)
        return delivery, outcome

    async def _answer(self, message: Message) -> AsyncGenerator[str | Outcome, None]:
        """The chat's turn: handoff -> input safety -> generate -> persist -> analytics."""
        started, chat = time.monotonic(), message.chat_id
        question = Turn(
            Role.USER,
            strip_controls(message.text),
            message_id=message.message_id,
            user_id=message.user_id,
            author=message.author,
        )
        if (outcome := await self._handoff.person_owns(chat, question)) is not None:
            yield outcome
            return
        screened = await self._check(chat, question.content)
        if screened.refusal is not None:
            await self._deps.desk.blocked(chat)
            yield screened.refusal
            return
        question = replace(question, content=screened.text)
        if (outcome := await self._handoff.person_asked(chat, question)) is not None:
            yield outcome
            return
        generated: Generated | None = None
        try:
            context = await self._context(chat, question, message.chat_kind)
            async for item in self._generate(chat, question.content, context):
                if isinstance(item, Generated):
                    generated = item
                else:
                    yield item
            await self._context.save_facts(chat, context.facts)
        except (GenerationError, PromptTooLong) as exc:
            yield failure_outcome(chat, exc)
            return
        assert generated is not None
        if not generated.text.strip():  # nothing usable came out: say so rather than nothing
            yield EMPTY_REPLY_FALLBACK
        yield await self._finish(chat, question, generated, time.monotonic() - started)

    async def _generate(
        self, chat: int | str, text: str, context: Context
    ) -> AsyncGenerator[str | Generated, None]:
        """A knowledge-base answer (verified, not streamed), the best of n candidates, or the stream."""
        if context.retrieval is not None:
            grounded = await self._grounded(chat, text, context.prompt, context.retrieval)
            yield grounded.text
            yield grounded
        elif self._deps.params.num_candidates > 1 or context.recalled is not None:
            facts = RankContext(context.facts, context.recalled, context.earlier_replies, context.said)
            best = await self._answers.ranked(chat, text, context.prompt, facts)
            yield best
            yield Generated(best)
        else:
            async with aclosing(
                self._answers.guarded(
                    chat,
                    context.prompt,
                    earlier=context.earlier_replies,
                    facts=context.facts,
                    question=text,
                    said=context.said,
                )
            ) as stream:
                async for item in stream:
                    yield item

    async def _finish(self, chat: int | str, question: Turn, generated: Generated, seconds: float) -> Outcome:
        """Store the exchange and count it; the outcome the transport renders."""
        text = generated.text.strip() or EMPTY_REPLY_FALLBACK
        await self._recorder.persist(chat, question, text)
        outcome = Outcome(
            OutcomeKind.REPLACED
            if generated.replaced or not generated.text.strip()
            else OutcomeKind.ANSWERED,
            text,
            question=question.content,
            reply=text,
            asker_id=question.user_id,
            sources=generated.sources,
            confidence=generated.confidence,
            grounded=generated.grounded,
            declined=generated.declined,
        )
        return await self._recorder.analytics(chat, question, outcome, seconds)

    async def reload_knowledge(self) -> str:
        """Re-read the knowledge base (an admin's /reload); the summary says what is now served.

        Raises ConfigError when there is none or a file is broken (the previous version keeps serving).
        """
        summary = await self._deps.knowledge.reload()
        self._deps.safety.allow_public(self._deps.knowledge.public_text)
        return summary

    def queue_position(self, chat_id: int | str) -> int | None:
        """Where this chat's reply waits for the model (1 = next), or None when it is not waiting."""
        return self._deps.engine.queue_position(str(chat_id))

    async def reset(self, chat_id: int | str) -> None:
        """Forget the chat's history (raises StoreUnavailable if the store is down)."""
        await self._deps.store.clear(chat_id)
