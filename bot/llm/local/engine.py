"""The local transformers engine: replies from every chat decoded together, streamed into the event loop.

A `Scheduler` thread runs the model (continuous batching, per-chat KV-cache reuse); this class is its
asyncio face. Typed events (events.py) cross into the loop through `call_soon_threadsafe`, and one
consumer loop (`_tokens`) serves both `stream` and `candidates`.

Budgets fit the machine: a reply is judged hung by lack of progress (no token for `stall_seconds`), not
by its total time, so a slow but healthy machine still answers; and when more replies wait than the
batch holds, new replies get a shorter `max_new_tokens` (never below `min_new_tokens`) instead of every
customer timing out. Busy and stalled are still told as exceptions (EngineBusy, GenerationTimeout):
the service turns them into outcomes. If a forward pass never returns, the stuck scheduler is retired
and a fresh one takes over the waiting requests (watchdog.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import Future
from dataclasses import replace
from typing import Any, TypeVar

import torch

from bot.core.domain import GenerationParams, Prompt
from bot.core.errors import EngineBusy, GenerationError, GenerationTimeout
from bot.llm.base import Candidate
from bot.llm.local.attention import Attention
from bot.llm.local.detok import IncrementalDecoder, StopMatcher, without_broken_bytes
from bot.llm.local.events import Event, Failed, Finished, Released, Request, Started, Token
from bot.llm.local.jobs import Jobs
from bot.llm.local.llama import LlamaForward
from bot.llm.local.loader import LoadedModel
from bot.llm.local.scheduler import Scheduler
from bot.llm.local.slots import Forward
from bot.llm.local.speed import forward_pass, layer_count
from bot.llm.local.watchdog import Watchdog
from bot.llm.threads import on_fresh_thread

__all__ = ["TransformersEngine", "shortened_budget"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def shortened_budget(wanted: int, *, waiting: int, max_batch: int, floor: int) -> int:
    """The token budget for a new reply when `waiting` replies queue behind a batch of `max_batch`.

    Everyone in line waits for the replies ahead of them to finish; shortening new replies in proportion
    to the queue keeps that wait bounded, where a fixed timeout would fail them all. Never below `floor`
    (nor above `wanted`).
    """
    if waiting <= 0:
        return wanted
    return max(min(wanted, floor), int(wanted * max_batch / (max_batch + waiting)))


class TransformersEngine:
    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_queue: int = 64,
        max_batch: int = 16,
        cache_mb: int = 512,
        min_new_tokens: int = 64,
        lean_forward: bool = True,
        on_generated: Callable[[int, int], None] | None = None,
        on_step: Callable[[int], None] | None = None,
        on_prefill: Callable[[int, int], None] | None = None,
    ) -> None:
        """`max_queue` bounds the replies waiting for a slot (beyond it: EngineBusy, back-pressure);
        `max_batch` the sequences decoded together; `cache_mb` the KV caches kept for the next turns;
        `min_new_tokens` the shortest budget a reply gets when the queue is long; `lean_forward`: prompts
        and decode steps of Llama-family models run through llama.LlamaForward (transformers' otherwise).
        `on_generated(tokens, sequences)` is told about every finished reply, `on_step(batch_size)` about
        every decode step and `on_prefill(reused, computed)` about every prompt (for metrics)."""
        self._loaded = loaded
        self._max_queue = max_queue
        self._min_new_tokens = min_new_tokens
        self._on_generated = on_generated
        self.name = loaded.name
        self.tokenizer = loaded.tokenizer
        self.context_tokens = loaded.context_tokens
        scheduler_args: dict[str, Any] = {
            "layers": layer_count(loaded.model),
            "eos_ids": _eos_ids(loaded),
            "max_batch": max_batch,
            "cache_bytes": cache_mb * 1024 * 1024,
            "threads": torch.get_num_threads(),  # MODEL_THREADS, or torch's default (the cores)
            "on_step": on_step,
            "on_prefill": on_prefill,
        }
        # as MODEL_DTYPE=auto measured it for this format on this machine, else measured now (some 0.3 s)
        attention = loaded.calibration.attention(loaded.format) if loaded.calibration else None
        forward = _forward_pass(loaded.model, lean=lean_forward, attention=attention)
        self.forward_pass = (
            f"the engine's own Llama forward, attention: {forward.attention}"
            if isinstance(forward, LlamaForward)
            else "transformers' forward"
        )  # for the benchmark's report
        self._watchdog = Watchdog(lambda: Scheduler(forward, **scheduler_args))

    @property
    def _scheduler(self) -> Scheduler:
        return self._watchdog.scheduler

    @property
    def active(self) -> int:
        """Sequences being decoded now."""
        return self._scheduler.active

    @property
    def pending(self) -> int:
        """Replies waiting for a slot in the batch."""
        return self._scheduler.pending

    @property
    def in_flight(self) -> int:
        """Sequences being decoded and replies waiting for a slot."""
        return self.active + self.pending

    def queue_position(self, session: str) -> int | None:
        return self._scheduler.position(session)

    @property
    def cached_chats(self) -> int:
        return len(self._scheduler.prefixes)

    def compute(self, work: Callable[[], T]) -> Future[T]:
        """Run other torch work (query embeddings) on the engine's thread, between two decode steps.

        Each thread that runs torch keeps a team of OpenMP workers, and on a small machine more teams than
        cores slow every decode step by half (bot/llm/threads.py): this keeps torch on one thread.
        """
        if self._watchdog.closed:  # no thread to run on any more: one of its own
            return Jobs.now(lambda: on_fresh_thread(work))
        return self._scheduler.call(work)

    async def stream(self, prompt: Prompt, params: GenerationParams) -> AsyncGenerator[str, None]:
        decoder = IncrementalDecoder(self.tokenizer)
        matcher = StopMatcher(prompt.stop_strings)
        # whitespace around the reply is dropped ("Assistant: Hello\n" -> "Hello"): leading at once,
        # trailing held back until more text follows it
        started, held = False, ""
        async with contextlib.aclosing(self._tokens(prompt, params)) as tokens:
            async for token in tokens:
                text = matcher.feed(decoder.push([token.token]))
                if not started:
                    text = text.lstrip()
                    started = bool(text)
                text = held + text
                body = text.rstrip()
                held = text[len(body) :]
                if body:
                    yield body
                if matcher.stopped:
                    break
        tail = held + matcher.feed(decoder.flush()) + matcher.flush()
        tail = (tail if started else tail.lstrip()).rstrip()
        if tail:
            yield tail
        log.debug("generated %d tokens", decoder.token_count)
        if self._on_generated is not None:
            self._on_generated(decoder.token_count, 1)

    async def candidates(self, prompt: Prompt, params: GenerationParams) -> list[Candidate]:
        if not params.do_sample:  # best-of-n needs variety: sample from the configured distribution
            params = replace(params, do_sample=True, temperature=params.temperature or 0.7)
        n = params.num_candidates
        tokens: list[list[int]] = [[] for _ in range(n)]
        logprobs: list[list[float]] = [[] for _ in range(n)]
        async with contextlib.aclosing(self._tokens(prompt, params, copies=n)) as events:
            async for token in events:
                tokens[token.copy].append(token.token)
                logprobs[token.copy].append(token.logprob)
        result = [self._candidate(t, lp, prompt.stop_strings) for t, lp in zip(tokens, logprobs, strict=True)]
        if self._on_generated is not None:
            self._on_generated(sum(map(len, tokens)), len(tokens))
        return sorted(result, key=lambda c: c.mean_logprob, reverse=True)

    async def _tokens(
        self, prompt: Prompt, params: GenerationParams, *, copies: int = 1
    ) -> AsyncGenerator[Token, None]:
        """The one consumer loop: submit, then yield tokens until the scheduler releases the request.

        Raises GenerationTimeout when no event came for `stall_seconds` once the prefill started (a hung
        model) or the reply ran past `timeout_seconds`, and the scheduler's error on Failed. Leaving early
        (the caller stopped reading) sets the request's stop switch; the watchdog sees it released.
        """
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event] = asyncio.Queue()
        request, scheduler = self._submit(prompt, params, _emitter(loop, events), copies)
        deadline: float | None = None  # the total limit, from when the prefill starts
        released = False
        try:
            while True:
                event = await self._next(events, deadline, params)
                if isinstance(event, Token):
                    yield event
                elif isinstance(event, Started):
                    deadline = loop.time() + params.timeout_seconds
                elif isinstance(event, Failed):
                    raise event.error
                elif isinstance(event, Released):
                    released = True
                    return
                else:
                    assert isinstance(event, Finished)
        finally:
            request.stop.set()
            if not released and deadline is not None:
                self._watchdog.watch(scheduler, events, min(params.stall_seconds, params.timeout_seconds))

    def _candidate(self, tokens: list[int], logprobs: list[float], stops: tuple[str, ...]) -> Candidate:
        text = without_broken_bytes(self.tokenizer.decode(tokens, skip_special_tokens=True))
        for marker in stops:
            text = text.split(marker, 1)[0]
        mean = sum(logprobs) / len(logprobs) if logprobs else float("-inf")
        return Candidate(text.strip(), mean)

    def _submit(
        self, prompt: Prompt, params: GenerationParams, emit: Callable[[Event], object], copies: int
    ) -> tuple[Request, Scheduler]:
        if self._watchdog.closed:
            raise GenerationError("the engine is shut down")
        scheduler = self._scheduler
        waiting = scheduler.pending
        if waiting >= self._max_queue:
            raise EngineBusy(f"{waiting} replies are already waiting for the model")
        room = self.context_tokens - len(prompt.ids)
        busy = waiting + scheduler.active + copies - scheduler.max_batch  # who would wait behind the batch
        budget = shortened_budget(
            params.max_new_tokens, waiting=busy, max_batch=scheduler.max_batch, floor=self._min_new_tokens
        )
        if budget < params.max_new_tokens:
            log.info("%d replies queue for the model: this reply gets %d new tokens", busy, budget)
        request = Request(
            ids=tuple(prompt.ids),
            params=params,
            max_new_tokens=max(1, min(budget, room)),
            emit=emit,
            session=prompt.session,
            copies=copies,
            want_logprobs=copies > 1,
            avoid=self._avoided(params),
        )
        scheduler.submit(request)
        return request, scheduler

    def _avoided(self, params: GenerationParams) -> tuple[tuple[int, ...], ...]:
        if not params.avoid_ngram:
            return ()
        return tuple(tuple(self.tokenizer.encode(text, add_special_tokens=False)) for text in params.avoid)

    @staticmethod
    async def _next(events: asyncio.Queue[Event], deadline: float | None, params: GenerationParams) -> Event:
        """The next event; before the prefill starts the wait for a slot is unbounded (the queue is)."""
        if deadline is None:
            return await events.get()
        left = deadline - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(events.get(), max(0.0, min(left, params.stall_seconds)))
        except TimeoutError:
            if left <= params.stall_seconds:
                raise GenerationTimeout(f"no complete reply within {params.timeout_seconds:g} s") from None
            raise GenerationTimeout(f"the model made no progress for {params.stall_seconds:g} s") from None

    async def aclose(self) -> None:
        await self._watchdog.aclose()


def _emitter(loop: asyncio.AbstractEventLoop, events: asyncio.Queue[Event]) -> Callable[[Event], None]:
    """Hands the scheduler's events for one request to its event loop (from the scheduler's thread)."""

    def emit(event: Event) -> None:
        with contextlib.suppress(RuntimeError):  # the requester's loop closed: nobody is listening
            loop.call_soon_threadsafe(events.put_nowait, event)

    return emit


def _forward_pass(model: Any, *, lean: bool, attention: Attention | None) -> Forward:
    """The engine's own forward pass for the models it reproduces, transformers' for the others."""
    # joining the weights runs multi-threaded torch ops: on a thread that ends, so that it leaves no
    # OpenMP team behind on the event loop's thread (measured: 21 instead of 13 ms a step, threads.py)
    return on_fresh_thread(lambda: forward_pass(model, lean=lean, attention=attention), name="join-weights")


def _eos_ids(loaded: LoadedModel) -> set[int]:
    """The tokens that end a reply: the model's generation config decides, as it does for `generate`."""
    eos = loaded.model.generation_config.eos_token_id
    if eos is None:
        return set()
    return {int(eos)} if isinstance(eos, int) else {int(i) for i in eos}
