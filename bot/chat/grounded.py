"""Knowledge-base answers: the model's short draft, verified against the passages while it is written,
or the best passage's own sentences; never a figure the passages do not back.

Fast by construction (issue #12): a question a passage answers directly (nearly all of its informative
words in one passage) gets that passage's sentences at once, without the model, and so does every
question unless drafts are on (KB_DRAFT_MAX_LOAD, off by default: the bundled model's drafts were less
often right than the passages' sentences) and the model is not busy (that many replies in flight: a
draft's long prompt would delay every waiting customer); otherwise the draft has
its own small budget (KB_MAX_NEW_TOKENS) and is checked each time a sentence ends, so a draft that has
already failed (an invented figure, a sentence twice, rambling) stops decoding at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import replace

from bot.chat.answers import Generated
from bot.chat.deps import Safety
from bot.core.domain import GenerationParams, Prompt, Verdict
from bot.knowledge.base import Grounded, Knowledge, Retrieval
from bot.llm.base import Engine
from bot.metrics import Metrics

__all__ = ["DIRECT_COVERAGE", "FATAL_PROBLEMS", "GroundedAnswers", "complete_sentences"]

log = logging.getLogger("bot.chat.answers")

# the best passage holds at least this share of the question's informative words: it answers directly
DIRECT_COVERAGE = 0.8
# problems a longer draft cannot mend: once seen in its complete sentences, the draft is given up
FATAL_PROBLEMS = ("invented:", "out_of_context:", "repetitive", "rambling")
_SENTENCE_ENDS = ".!?\n"
_BY_DESIGN = ("direct", "drafts off")  # answered from the passage without trying a draft

Audit = Callable[[int | str, str, Verdict], Awaitable[None]]


def complete_sentences(text: str) -> str:
    """`text` up to its last finished sentence ("" while the first one is still being written)."""
    for index in range(len(text) - 1, 0, -1):
        if text[index] in " \n" and text[index - 1] in _SENTENCE_ENDS:
            return text[:index]
    return ""


class GroundedAnswers:
    def __init__(
        self,
        engine: Engine,
        params: GenerationParams,
        knowledge: Knowledge,
        *,
        safety: Safety,
        audit: Audit,
        metrics: Metrics,
        max_new_tokens: int,
        max_load: int = 0,
    ) -> None:
        """`max_load`: drafts are written only while fewer replies than this are in flight."""
        self._engine = engine
        self._max_load = max_load
        self._params = replace(params, max_new_tokens=min(params.max_new_tokens, max_new_tokens))
        self._knowledge = knowledge
        self._safety = safety
        self._audit = audit
        self._metrics = metrics

    async def __call__(
        self, chat_id: int | str, question: str, prompt: Prompt, retrieval: Retrieval
    ) -> Generated:
        """The whole reply, checked against the passages, with its source; or an honest "I don't know".

        Not streamed: a figure the passages do not back must never be shown, not even for the seconds
        until a replacement.
        """
        grounded = self._knowledge.ground(question, "", retrieval)  # "not found", or the extractive answer
        if self.direct(retrieval):
            grounded = replace(grounded, problems=("direct",))  # no draft: the passage answers directly
        elif retrieval.confident and not self._max_load:
            grounded = replace(grounded, problems=("drafts off",))
        elif retrieval.confident and self._engine.in_flight >= self._max_load:
            grounded = replace(grounded, problems=("busy",))  # no draft: it would make everyone wait
            self._metrics.kb_drafts.labels("skipped").inc()
        elif retrieval.confident:
            grounded = await self._from_model(question, prompt, retrieval, grounded)
        verdict = self._safety.check_output(grounded.text)
        await self._audit(chat_id, "out", verdict)
        if verdict.blocked and grounded.verified:  # the model's words failed: the passage's own instead
            fallback = self._knowledge.ground(question, "", retrieval)
            grounded = replace(fallback, problems=tuple(f"output:{r}" for r in verdict.reasons))
            verdict = self._safety.check_output(grounded.text)
        text = self._safety.message_for(verdict, reply=True) if verdict.blocked else verdict.text
        if grounded.problems and grounded.answered:  # the usual way (direct, drafts off) is not news
            level = logging.DEBUG if grounded.problems[0] in _BY_DESIGN else logging.INFO
            problems = ",".join(grounded.problems)
            log.log(level, "chat %s: answered from the passage, not the model (%s)", chat_id, problems)
        answered = grounded.answered
        return Generated(
            text,
            sources=grounded.sources,
            confidence=retrieval.confidence,
            grounded=answered,
            declined=not answered,
        )

    @staticmethod
    def direct(retrieval: Retrieval) -> bool:
        """A passage answers the question directly: its own sentences go out without waiting for a draft."""
        return retrieval.confident and bool(retrieval.hits) and retrieval.hits[0].coverage >= DIRECT_COVERAGE

    async def _from_model(
        self, question: str, prompt: Prompt, retrieval: Retrieval, fallback: Grounded
    ) -> Grounded:
        """The first verified draft (several with GENERATION_NUM_CANDIDATES, most likely first)."""
        if self._params.num_candidates > 1:
            drafts = [c.text for c in await self._engine.candidates(prompt, self._params)]
        else:
            draft = await self._draft(question, prompt, retrieval)
            if isinstance(draft, tuple):  # given up while it was written
                return replace(fallback, problems=draft)
            drafts = [draft]
        grounded = fallback
        for draft in drafts:
            grounded = self._knowledge.ground(question, draft, retrieval)
            if grounded.verified:
                self._metrics.kb_drafts.labels("used").inc()
                return grounded
            self._metrics.kb_drafts.labels("discarded").inc()
        return grounded

    async def _draft(self, question: str, prompt: Prompt, retrieval: Retrieval) -> str | tuple[str, ...]:
        """The model's draft, checked each time a sentence ends; or the problems it failed with for good
        (the stream is closed there, which stops the generation)."""
        text, checked = "", ""
        async with aclosing(self._engine.stream(prompt, self._params)) as stream:
            async for piece in stream:
                text += piece
                done = complete_sentences(text)
                if len(done) <= len(checked):
                    continue
                checked = done
                fatal = [
                    p
                    for p in self._knowledge.ground(question, done, retrieval).problems
                    if p.startswith(FATAL_PROBLEMS)
                ]
                if fatal:
                    self._metrics.kb_drafts.labels("stopped").inc()
                    log.info(
                        "knowledge-base draft given up after %d characters (%s)", len(text), ",".join(fatal)
                    )
                    return ("stopped", *fatal)
        return text
