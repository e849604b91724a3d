"""From a built prompt to the reply a user may see: streamed through the output checks, or the best of n
candidates; never the very reply the chat got last time (see `grounded.py` for knowledge-base answers).

Each strategy is an async generator of text pieces that ends with one `Generated`: the final text, and
whether it replaced what was shown. The service picks the strategy; this module owns how each is made
safe to show.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace

from bot.chat import ranking
from bot.chat.deps import Safety
from bot.chat.facts import Recall
from bot.chat.identity import claims_identity, unsigned, without_false_identity
from bot.chat.likeness import HOLD_SHARE, copied_share, copies, echoes, without_echo
from bot.chat.refusals import looks_like_refusal, without_refusal
from bot.chat.tone import (
    misplaced_condolence,
    misplaced_sympathy,
    misplaced_thanks,
    only_role_talk,
    without_condolence,
    without_needless_apology,
    without_role_talk,
    without_sympathy,
    without_thanks,
)
from bot.chat.topics import Topics
from bot.core.domain import GenerationParams, Prompt, Verdict
from bot.core.texts import REPEATED_REPLY
from bot.llm.base import Engine
from bot.prompt.examples import Topic

__all__ = ["HOLD_BACK_CHARS", "Answers", "Generated"]

log = logging.getLogger(__name__)

# While streaming, this many characters stay unshown until the output checks have seen what follows them:
# enough to hold a whole card number, IBAN, e-mail address or the canary.
HOLD_BACK_CHARS = 48

Audit = Callable[[int | str, str, Verdict], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Generated:
    """How a generated reply ended: `text` is all of it as it may be shown and stored; `replaced`: it is
    not what the stream showed (the output checks withdrew that). Knowledge-base answers add the rest."""

    text: str
    replaced: bool = False
    sources: tuple[str, ...] = ()
    confidence: float | None = None
    grounded: bool = False
    declined: bool = False


@dataclass(frozen=True, slots=True)
class RankContext:
    """What ranking candidates needs from the chat: its stated facts, a fact asked back, its replies so far
    (newest first), the customer's earlier messages."""

    facts: dict[str, str]
    recalled: Recall | None
    earlier: tuple[str, ...]
    said: tuple[str, ...] = ()


class Answers:
    def __init__(
        self,
        engine: Engine,
        params: GenerationParams,
        *,
        safety: Safety,
        audit: Audit,
        embed: ranking.Embed | None = None,
        examples: Sequence[str] = (),
        topics: Sequence[Topic] = (),
    ) -> None:
        self._engine = engine
        self._params = params
        self._safety = safety
        self._audit = audit
        self._embed = embed  # relevance by sentence embeddings when given (else word overlap)
        self._examples = tuple(examples)  # the worked examples' answers: a reply must not copy them
        self._topics = tuple(topics)  # and their topics, not to be carried into other chats

    async def guarded(
        self,
        chat_id: int | str,
        prompt: Prompt,
        *,
        earlier: Sequence[str] = (),
        facts: Mapping[str, str] | None = None,
        question: str = "",
        said: Sequence[str] = (),
    ) -> AsyncGenerator[str | Generated, None]:
        """The engine's stream, shown only once the output checks have passed it.

        The last HOLD_BACK_CHARS characters stay unshown until more text (or the end) arrives, so a card
        number or the canary is caught before any of it is sent; so does all of it while it still copies
        one of the chat's `earlier` replies or a worked example, refuses, or gives the bot a name or says
        it is a person (`bot.chat.identity`), or offers condolences nobody asked for (`bot.chat.tone`;
        such a reply is never shown as it is: it is generated once more, see `_another`). The engine is
        asked not to copy phrases of the earlier replies in the first place (`GenerationParams.avoid`),
        and a closing "Best regards, [Your Name]", an apology for a confusion nobody had and a sentence
        about a worked example's topic the customer never raised (`said`: their earlier messages) are
        left out.
        """
        raw, shown, safety = "", "", self._safety
        topics = Topics(self._topics, (*said, question))
        against = _Against((*earlier, *self._examples), facts or {}, question, topics)
        params = replace(self._params, avoid=tuple(earlier))  # the examples' shape is to be followed
        async with aclosing(self._engine.stream(prompt, params)) as stream:
            async for piece in stream:
                raw = (raw + piece).lstrip()  # leading blanks never count as shown text
                if len(raw) - len(shown) < 2 * HOLD_BACK_CHARS:
                    continue
                draft = safety.check_output(against.tidied(raw), final=False)
                if draft.blocked:
                    await self._audit(chat_id, "out", draft)
                    yield Generated(safety.message_for(draft, reply=True), replaced=True)
                    return
                cut = draft.text.rfind(" ", len(shown), len(draft.text) - HOLD_BACK_CHARS)
                held = against.held(draft.text, draft.text[:cut])
                if cut > len(shown) and draft.text.startswith(shown) and not held:
                    yield draft.text[len(shown) : cut]
                    shown = draft.text[:cut]
        text = against.tidied(raw.strip())
        async with aclosing(self._ending(chat_id, prompt, text, shown, against)) as ending:
            async for item in ending:
                yield item

    async def _ending(
        self,
        chat_id: int | str,
        prompt: Prompt,
        raw: str,
        shown: str,
        against: _Against,
    ) -> AsyncGenerator[str | Generated, None]:
        """The rest of a streamed reply once the model is done: what was not shown yet, checked as a whole."""
        final = self._safety.check_output(raw)
        await self._audit(chat_id, "out", final)
        if final.blocked:
            yield Generated(self._safety.message_for(final, reply=True), replaced=True)
        elif not final.text.startswith(shown):  # a redaction reached text already shown
            yield Generated(unsigned(final.text, against.facts), replaced=True)
        elif not shown and against.unfit(final.text):
            # advice wrapped in a needless refusal is kept, unwrapped; an echoed greeting loses that sentence
            text = against.cleaned(final.text)
            if against.unfit(text):
                text = await self._another(chat_id, prompt, against, final.text)
            yield text
            yield Generated(text)
        else:
            # a closing "Best regards, [Your Name]" not shown yet is left out
            text = unsigned(final.text, against.facts)
            text = text if text.startswith(shown) else final.text
            if text[len(shown) :]:
                yield text[len(shown) :]
            yield Generated(text)

    async def ranked(self, chat_id: int | str, question: str, prompt: Prompt, context: RankContext) -> str:
        """n candidates in one batch, ranked by `bot.chat.ranking` (answers the question, uses the stated
        facts, no refusal, no repetition, then likelihood); the best that passes the output checks wins.
        A fact the customer asks back opens the reply when no candidate states it."""
        params = replace(self._params, avoid=context.earlier)
        candidates = await self._engine.candidates(prompt, params)
        recalled = context.recalled
        asked = recalled.values if recalled is not None else ()
        ranked = await asyncio.to_thread(  # embedding the candidates is CPU work: off the event loop
            functools.partial(
                ranking.rank,
                [(c.text, c.mean_logprob) for c in candidates],
                question=question,
                facts=context.facts,
                asked_values=asked,
                previous_replies=context.earlier,
                examples=self._examples,
                embed=self._embed,
            )
        )
        sentence, passed = recalled.sentence if recalled is not None else None, []
        topics = Topics(self._topics, (*context.said, question))
        against = _Against(context.earlier, context.facts, question, topics)
        for candidate in ranked:
            body = against.cleaned(candidate.text.strip())
            if sentence is not None and looks_like_refusal(body):  # the fact asked back is the answer
                body = ""
            text = ranking.with_recall(body, sentence, asked)
            verdict = self._safety.check_output(text)
            await self._audit(chat_id, "out", verdict)
            if not verdict.blocked and not copies(verdict.text, context.earlier):
                return verdict.text
            if not verdict.blocked:
                passed.append(verdict.text)
        if sentence is not None:
            return sentence
        if passed:  # each one (nearly) repeats an earlier reply: the least alike, unless all are the same
            return _least_copied(passed, context.earlier) or REPEATED_REPLY
        return self._safety.refusal_text

    async def _another(self, chat_id: int | str, prompt: Prompt, against: _Against, first: str) -> str:
        """The model's `first` reply refused, or said (nearly) what it said earlier in the chat, or
        parroted an example (`against.others`): one more try with another seed, sampling. If that one is unfit
        too: a refusal stands, else the less alike of the two, and an honest short text rather than the
        same words twice."""
        seed = (self._params.seed or 0) + 1
        temperature = max(self._params.temperature, 0.7)
        earlier = tuple(text for text in against.others if text not in self._examples)
        params = replace(self._params, do_sample=True, temperature=temperature, seed=seed, avoid=earlier)
        async with aclosing(self._engine.stream(prompt, params)) as stream:
            text = against.tidied("".join([piece async for piece in stream]).strip())
        verdict = self._safety.check_output(text)
        await self._audit(chat_id, "out", verdict)
        if not verdict.blocked and verdict.text and not against.unfit(verdict.text):
            log.info("chat %s: the model's reply refused or repeated; sent a regenerated one", chat_id)
            return against.cleaned(verdict.text)  # a made-up signature goes here too
        options = [verdict.text, first] if not verdict.blocked and verdict.text else [first]
        chosen = _least_copied(options, against.others)
        if chosen is None:
            log.info("chat %s: the model repeated an earlier reply; sent a short note instead", chat_id)
        return against.cleaned(chosen) if chosen is not None else REPEATED_REPLY


@dataclass(frozen=True, slots=True)
class _Against:
    """What a reply is checked against: texts it must not copy (the chat's earlier replies, the worked
    examples), the facts the customer stated, and the customer's message."""

    others: tuple[str, ...]
    facts: Mapping[str, str]
    question: str = ""
    topics: Topics = field(default_factory=lambda: Topics((), ()))

    def unfit(self, text: str) -> bool:
        """Not to be sent as it is: it copies an earlier reply or an example, only says the customer's
        message back, or says what no reply may say (`_unsayable`)."""
        return copies(text, self.others) or echoes(text, self.question) or self._unsayable(text)

    def _unsayable(self, text: str) -> bool:
        """It refuses an ordinary request, names the bot or says it is a person, offers condolences,
        sympathy or thanks for help nobody asked for, or is nothing but talk of its role or of a worked
        example's topic (what is left once tidied)."""
        return (
            looks_like_refusal(text)
            or claims_identity(text, self.facts)
            or misplaced_condolence(text, self.question)
            or misplaced_sympathy(text, self.question)
            or misplaced_thanks(text, self.question)
            or only_role_talk(text)
            or self.topics.only_foreign(text)
        )

    def tidied(self, text: str) -> str:
        """`text` without what is cut out of a reply word for word, safe to apply while it streams: an
        apology for a confusion nobody had, the customer's own sentence said back, a sentence about a
        worked example's topic, sympathy for a trouble nobody mentioned, thanks for the customer's help,
        talk about its own role."""
        text = without_sympathy(without_needless_apology(text, self.question), self.question)
        text = without_role_talk(without_thanks(text, self.question))
        text = without_echo(text, self.question)
        cut = self.topics.without_foreign(text)
        # a copy of an example stays whole, to be caught as one (`unfit`), not passed for its other half
        return text if cut != text and copies(text, self.others) else cut

    def cleaned(self, text: str) -> str:
        """Advice without the needless refusal, condolence or apology around it, without the bot naming
        itself, and without a placeholder signature."""
        text = without_condolence(self.tidied(without_refusal(text)), self.question)
        return unsigned(without_false_identity(text, self.facts), self.facts)

    def held(self, text: str, shown_part: str) -> bool:
        """Not to start showing yet: it may turn out unfit (what no reply may say is looked for in all of
        it, the held-back end too; a copy in what would be shown, at a lower share)."""
        return (
            copies(shown_part, self.others, share=HOLD_SHARE)
            or echoes(text, self.question)  # so far: it may go on with words of its own
            or self._unsayable(text)
        )


def _least_copied(texts: Sequence[str], others: Sequence[str]) -> str | None:
    """The first of `texts` that copies none of `others`, else the least alike of them, or None when each
    one has every word trigram of one of `others` (the same words again)."""
    fresh = [text for text in texts if not copies(text, others)]
    if fresh:
        return fresh[0]
    alike = {text: max(copied_share(text, other) for other in others if other) for text in texts}
    least = min(texts, key=alike.__getitem__)
    return least if alike[least] < 1.0 else None
