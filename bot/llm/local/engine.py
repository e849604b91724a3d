"""The local transformers engine: replies from every chat decoded together, streamed into the event loop.

A `Scheduler` thread runs the model (continuous batching, per-chat KV-cache reuse); this class is its
asyncio face. Tokens cross into the loop through `call_soon_threadsafe`; text comes out through
incremental detokenisation and is cut at stop strings. The timeout runs from when a reply's prefill
starts, not while it waits for a slot. If the model hangs (a forward pass that never returns), the stuck
scheduler is retired and a fresh one takes over the waiting requests: one wedged step must not stall
every chat for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import replace
from typing import Any

from bot.core.domain import GenerationParams, Prompt
from bot.core.errors import EngineBusy, GenerationError, GenerationTimeout
from bot.llm.base import Candidate
from bot.llm.local.detok import IncrementalDecoder, StopMatcher
from bot.llm.local.loader import LoadedModel
from bot.llm.local.scheduler import DONE, FAILED, RELEASED, STARTED, Request, Scheduler

__all__ = ["TransformersEngine"]

log = logging.getLogger(__name__)

# A forward pass running longer than the reply timeout (and at least this long) means a hung model: its
# scheduler is retired and requests continue on a fresh one. Also how long closing waits for a step.
STUCK_AFTER_SECONDS = 2.0


class TransformersEngine:
    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_queue: int = 64,
        max_batch: int = 16,
        cache_mb: int = 512,
        on_generated: Callable[[int, int], None] | None = None,
        on_step: Callable[[int], None] | None = None,
        on_prefill: Callable[[int, int], None] | None = None,
    ) -> None:
        """`max_queue` bounds the replies waiting for a slot (beyond it: EngineBusy, back-pressure);
        `max_batch` the sequences decoded together; `cache_mb` the KV caches kept for the next turns.
        `on_generated(tokens, sequences)` is told about every finished reply, `on_step(batch_size)` about
        every decode step and `on_prefill(reused, computed)` about every prompt (for metrics)."""
        self._loaded = loaded
        self._max_queue = max_queue
        self._on_generated = on_generated
        self.name = loaded.name
        self.tokenizer = loaded.tokenizer
        self.context_tokens = loaded.context_tokens
        self._scheduler_args: dict[str, Any] = {
            "eos_ids": _eos_ids(loaded),
            "max_batch": max_batch,
            "cache_bytes": cache_mb * 1024 * 1024,
            "on_step": on_step,
            "on_prefill": on_prefill,
        }
        self._scheduler = Scheduler(loaded.model, **self._scheduler_args)
        self._closed = False
        self._watchers: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Replies waiting for a slot in the batch."""
        return self._scheduler.pending

    def queue_position(self, session: str) -> int | None:
        return self._scheduler.position(session)

    @property
    def cached_chats(self) -> int:
        return len(self._scheduler.prefixes)

    async def stream(self, prompt: Prompt, params: GenerationParams) -> AsyncGenerator[str, None]:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        request, scheduler = self._submit(prompt, params, _emitter(loop, events))
        decoder = IncrementalDecoder(self.tokenizer)
        matcher = StopMatcher(prompt.stop_strings)
        deadline: float | None = None
        released = started = False  # leading whitespace of a reply is dropped ("Assistant: Hello" -> "Hello")
        try:
            while True:
                event = await self._next(events, deadline, params)
                if event[0] == STARTED:
                    deadline = loop.time() + params.timeout_seconds
                    continue
                if event[0] == RELEASED:
                    released = True
                    break
                if event[0] == FAILED:
                    raise event[1]
                if event[1] == DONE:
                    continue
                text = matcher.feed(decoder.push([event[1]]))
                if not started:
                    text = text.lstrip()
                    started = bool(text)
                if text:
                    yield text
                if matcher.stopped:
                    break
            tail = matcher.feed(decoder.flush()) + matcher.flush()
            if tail.rstrip():
                yield tail.rstrip() if started else tail.strip()
            log.debug("generated %d tokens", decoder.token_count)
            if self._on_generated is not None:
                self._on_generated(decoder.token_count, 1)
        finally:
            request.stop.set()
            if not released and deadline is not None:
                self._watch(scheduler, events, params.timeout_seconds)

    async def candidates(self, prompt: Prompt, params: GenerationParams) -> list[Candidate]:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        if not params.do_sample:  # best-of-n needs variety: sample from the configured distribution
            params = _sampling(params)
        request, scheduler = self._submit(
            prompt, params, _emitter(loop, events), copies=params.num_candidates
        )
        tokens: list[list[int]] = [[] for _ in range(params.num_candidates)]
        logprobs: list[list[float]] = [[] for _ in range(params.num_candidates)]
        deadline: float | None = None
        released = False
        try:
            while True:
                event = await self._next(events, deadline, params)
                if event[0] == STARTED:
                    deadline = loop.time() + params.timeout_seconds
                elif event[0] == RELEASED:
                    released = True
                    break
                elif event[0] == FAILED:
                    raise event[1]
                elif event[1] != DONE:
                    tokens[event[0]].append(event[1])
                    logprobs[event[0]].append(event[2])
        finally:
            request.stop.set()
            if not released and deadline is not None:
                self._watch(scheduler, events, params.timeout_seconds)
        result = [self._candidate(t, lp, prompt.stop_strings) for t, lp in zip(tokens, logprobs, strict=True)]
        if self._on_generated is not None:
            self._on_generated(sum(map(len, tokens)), len(tokens))
        return sorted(result, key=lambda c: c.mean_logprob, reverse=True)

    def _candidate(self, tokens: list[int], logprobs: list[float], stops: tuple[str, ...]) -> Candidate:
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        for marker in stops:
            text = text.split(marker, 1)[0]
        mean = sum(logprobs) / len(logprobs) if logprobs else float("-inf")
        return Candidate(text.strip(), mean)

    def _submit(
        self, prompt: Prompt, params: GenerationParams, emit: Callable[..., object], *, copies: int = 1
    ) -> tuple[Request, Scheduler]:
        if self._closed:
            raise GenerationError("the engine is shut down")
        if self._scheduler.pending >= self._max_queue:
            raise EngineBusy(f"{self._scheduler.pending} replies are already waiting for the model")
        room = self.context_tokens - len(prompt.ids)
        request = Request(
            ids=tuple(prompt.ids),
            params=params,
            max_new_tokens=max(1, min(params.max_new_tokens, room)),
            emit=emit,
            session=prompt.session,
            copies=copies,
            want_logprobs=copies > 1,
        )
        scheduler = self._scheduler
        scheduler.submit(request)
        return request, scheduler

    @staticmethod
    async def _next(
        events: asyncio.Queue[tuple[Any, ...]], deadline: float | None, params: GenerationParams
    ) -> tuple[Any, ...]:
        left = None if deadline is None else max(deadline - asyncio.get_running_loop().time(), 0)
        try:
            return await asyncio.wait_for(events.get(), left)
        except TimeoutError:
            raise GenerationTimeout(f"no complete reply within {params.timeout_seconds:g} s") from None

    def _watch(self, scheduler: Scheduler, events: asyncio.Queue[tuple[Any, ...]], timeout: float) -> None:
        """Watch a stopped request in the background until its scheduler lets it go.

        A scheduler normally does so at its next step. If instead one forward pass runs longer than a
        whole reply may take, the model is hung: that scheduler is retired and a fresh one serves the
        waiting requests. A slow step (a long prefill) is not a hang, and only the scheduler the
        request ran on can be retired, never its replacement.
        """
        task = asyncio.create_task(self._await_release(scheduler, events, max(timeout, STUCK_AFTER_SECONDS)))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _await_release(
        self, scheduler: Scheduler, events: asyncio.Queue[tuple[Any, ...]], hung_after: float
    ) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 10 * hung_after
        while loop.time() < give_up:
            try:
                if (await asyncio.wait_for(events.get(), 0.25))[0] == RELEASED:
                    return
                continue
            except TimeoutError:
                pass
            if self._closed or scheduler is not self._scheduler:
                return
            since = scheduler.forward_since
            if since is not None and time.monotonic() - since > hung_after:
                self._replace(scheduler, time.monotonic() - since)
                return

    def _replace(self, stuck: Scheduler, seconds: float) -> None:
        log.error(
            "a forward pass has run for %.0f s (the model is hung?); continuing on a fresh thread", seconds
        )
        self._scheduler = Scheduler(self._loaded.model, **self._scheduler_args)
        waiting, live = stuck.abandon()
        self._scheduler.adopt(waiting)
        for request in live:  # their replies cannot finish on a hung thread: fail them now, not at timeout
            request.emit(FAILED, GenerationError("the model stopped responding"))
            request.emit(RELEASED)

    async def aclose(self) -> None:
        self._closed = True
        for request in self._scheduler.retire():
            request.emit(FAILED, GenerationError("the engine is shutting down"))
        # let a running step finish, so the process never exits while torch is mid-call
        await asyncio.to_thread(self._scheduler.join, STUCK_AFTER_SECONDS)


def _emitter(loop: asyncio.AbstractEventLoop, events: asyncio.Queue[tuple[Any, ...]]) -> Callable[..., None]:
    """Hands the scheduler's events for one request to its event loop (from the scheduler's thread)."""

    def emit(*event: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the requester's loop closed: nobody is listening
            loop.call_soon_threadsafe(events.put_nowait, event)

    return emit


def _eos_ids(loaded: LoadedModel) -> set[int]:
    """The tokens that end a reply: the model's generation config decides, as it does for `generate`."""
    eos = loaded.model.generation_config.eos_token_id
    if eos is None:
        return set()
    return {int(eos)} if isinstance(eos, int) else {int(i) for i in eos}


def _sampling(params: GenerationParams) -> GenerationParams:
    return replace(params, do_sample=True, temperature=params.temperature or 0.7)
