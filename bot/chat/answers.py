"""From a built prompt to the reply a user may see: streamed through the output checks, the best of n
candidates, or an answer grounded in the knowledge base and verified against it.

ChatService decides which (it owns the flow, history and limits); this module owns how each is made safe
to show. Audit records go through the service's `audit` callback, so counting stays in one place.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import replace

from bot.core.domain import GenerationParams, Prompt, ReplyInfo, Verdict
from bot.core.errors import ReplyReplaced
from bot.knowledge.base import Knowledge, Retrieval
from bot.llm.base import Engine
from bot.safety import SafetyPipeline

__all__ = ["HOLD_BACK_CHARS", "Answers"]

log = logging.getLogger(__name__)

# While streaming, this many characters stay unshown until the output checks have seen what follows them:
# enough to hold a whole card number, IBAN, e-mail address or the canary.
HOLD_BACK_CHARS = 48

Audit = Callable[[int | str, str, Verdict], Awaitable[None]]


class Answers:
    def __init__(
        self,
        engine: Engine,
        params: GenerationParams,
        *,
        safety: SafetyPipeline | None,
        knowledge: Knowledge | None,
        audit: Audit,
    ) -> None:
        self._engine = engine
        self._params = params
        self._safety = safety
        self._knowledge = knowledge
        self._audit = audit

    async def guarded(self, chat_id: int | str, prompt: Prompt) -> AsyncIterator[str]:
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

    async def best_of(self, chat_id: int | str, prompt: Prompt) -> str:
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

    async def grounded(
        self, chat_id: int | str, question: str, prompt: Prompt, retrieval: Retrieval, info: ReplyInfo
    ) -> str:
        """The whole reply, checked against the passages, with its source; or an honest "I don't know".

        Knowledge-base answers are not streamed: a figure the passages do not back must never be shown,
        not even for the seconds until a replacement, so the model's draft is generated in full, verified,
        and replaced by the best passage's own sentences when it fails. Answers are a few sentences, so
        the wait is short, and the typing indicator covers it.
        """
        assert self._knowledge is not None
        grounded = self._knowledge.ground(question, "", retrieval)  # "not found", or the extractive answer
        if retrieval.confident:
            for draft in await self._drafts(prompt):
                candidate = self._knowledge.ground(question, draft, retrieval)
                if candidate.verified:
                    grounded = candidate
                    break
                grounded = candidate
        text = grounded.text
        if self._safety is not None:
            verdict = self._safety.check_output(text)
            await self._audit(chat_id, "out", verdict)
            if verdict.blocked and grounded.verified:  # the model's words failed: the passage's own instead
                fallback = self._knowledge.ground(question, "", retrieval)
                grounded = replace(fallback, problems=tuple(f"output:{r}" for r in verdict.reasons))
                verdict = self._safety.check_output(grounded.text)
            text = self._safety.message_for(verdict) if verdict.blocked else verdict.text
        if grounded.problems and grounded.answered:
            problems = ",".join(grounded.problems)
            log.info("chat %s: answered from the passage, not the model (%s)", chat_id, problems)
        info.sources, info.confidence = grounded.sources, retrieval.confidence
        info.answered, info.grounded = grounded.answered, grounded.answered
        return text

    async def _drafts(self, prompt: Prompt) -> list[str]:
        """The model's full replies (several with GENERATION_NUM_CANDIDATES), most likely first."""
        if self._params.num_candidates > 1:
            return [candidate.text for candidate in await self._engine.candidates(prompt, self._params)]
        stream = self._engine.stream(prompt, self._params)
        async with aclosing(stream):
            return ["".join([piece async for piece in stream])]
