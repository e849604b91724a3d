"""Continuous batching: one thread decodes every active reply together, one token per step.

A request waits in a bounded queue until a slot is free; it is then prefilled on its own (starting from
the longest cached prefix of its prompt, see kvcache.PrefixCache) and joins the running batch
(slots.Slots). Between two decode steps finished sequences leave and waiting ones join, so a short reply
never waits for a long one. Each sequence samples with its own settings and random generator
(sampling.Sampler). torch is only entered from this thread: other torch work of the process (query
embeddings) is handed to it with `call` and runs between two steps (jobs.py). What happens to a request
is told through its `emit` callback as typed events (events.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

import torch

from bot.core.errors import GenerationError
from bot.llm.local.events import Failed, Finished, Released, Request, Started, Token
from bot.llm.local.jobs import Jobs
from bot.llm.local.kvcache import BatchCache, PrefixCache
from bot.llm.local.pacing import Pacer
from bot.llm.local.sampling import Sampler
from bot.llm.local.slots import Forward, Row, Slots

__all__ = ["Request", "Scheduler"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def _failure(exc: Exception) -> GenerationError:
    return GenerationError(f"the model failed: {type(exc).__name__}: {exc}")


class Scheduler:
    def __init__(
        self,
        forward: Forward,
        *,
        layers: int,
        eos_ids: set[int],
        max_batch: int,
        cache_bytes: int,
        threads: int = 1,
        on_step: Callable[[int], None] | None = None,
        on_prefill: Callable[[int, int], None] | None = None,
        name: str = "generate",
    ) -> None:
        """`forward`: the model's forward pass (llama.LlamaForward or transformers'), for prompts and decode
        steps alike, writing a cache of `layers` layers. `threads`: the most torch threads a pass may use
        (pacing.py picks per pass); `on_step(batch_size)` is told about every decode step,
        `on_prefill(reused, computed)` about every prompt: how many of its tokens came from the cache and
        how many were computed."""
        self._forward, self._layers = forward, layers
        self._eos = eos_ids
        self.max_batch = max_batch
        self.prefixes = PrefixCache(cache_bytes)
        self.pacer = Pacer(threads)
        self._on_step, self._on_prefill = on_step, on_prefill
        self._waiting: deque[Request] = deque()
        self._jobs = Jobs()
        self._wake = threading.Condition()
        self._retired = False
        self._slots = Slots(self._layers)
        self._live: dict[int, tuple[Request, int]] = {}  # id(request) -> (request, copies still open)
        self._last_size = 0
        # when the forward pass now running began (None between passes): a watchdog's view of a hang
        self.forward_since: float | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # ---- called from the event loop's thread ----

    @property
    def pending(self) -> int:
        """Requests waiting for a slot."""
        return len(self._waiting)

    @property
    def active(self) -> int:
        """Sequences being decoded now."""
        return self._slots.size

    def position(self, session: str) -> int | None:
        """1-based place of `session`'s request among those waiting for a slot; None if not waiting."""
        with self._wake:
            waiting = list(self._waiting)
        return next((i for i, r in enumerate(waiting, 1) if r.session == session), None)

    def submit(self, request: Request) -> None:
        with self._wake:
            self._waiting.append(request)
            self._wake.notify()

    def call(self, work: Callable[[], T]) -> Future[T]:
        """Run `work` on this scheduler's thread between two decode steps (at once when called from it)."""
        if threading.current_thread() is self._thread:
            return Jobs.now(work)
        with self._wake:
            if self._retired:
                raise GenerationError("the engine stopped")
            future = self._jobs.add(work)
            self._wake.notify()
        return future

    def retire(self) -> tuple[deque[Request], Jobs]:
        """Stop this thread (it may be stuck in a forward pass); the requests and jobs still waiting."""
        with self._wake:
            self._retired = True
            waiting, self._waiting = self._waiting, deque()
            jobs = self._jobs.take()
            self._wake.notify()
        return waiting, jobs

    def abandon(self) -> tuple[deque[Request], list[Request], Jobs]:
        """Retire a hung scheduler: what still waits (for another scheduler) and the requests it holds."""
        waiting, jobs = self.retire()
        return waiting, [request for request, _open in list(self._live.values())], jobs

    def join(self, timeout: float) -> None:
        """Wait for a retired scheduler's thread to finish (it may be stuck: then give up after `timeout`)."""
        self._thread.join(timeout)

    def adopt(self, waiting: deque[Request], jobs: Jobs | None = None) -> None:
        with self._wake:
            self._waiting.extend(waiting)
            if jobs is not None:
                self._jobs.extend(jobs)
            self._wake.notify()

    # ---- the scheduler thread ----

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._wake:
                    while not (self._retired or self._waiting or self._live or self._jobs):
                        self._wake.wait()
                    if self._retired:
                        self._fail_all(GenerationError("the engine stopped"))
                        return
                    jobs = self._jobs.take()
                jobs.run()
                try:
                    self._admit()
                    if self._live and not self._retired:
                        self._step()
                except Exception as exc:  # a bug here must fail the replies in flight, not the thread
                    log.exception("the scheduler failed; failing the replies in progress")
                    self._fail_all(_failure(exc))

    def _admit(self) -> None:
        """Prefill waiting requests into free slots (one per step while others decode, so they keep going)."""
        while True:
            free = self.max_batch - self._slots.size
            with self._wake:
                if not self._waiting or self._retired:
                    return
                # best-of-n needs n slots at once; more than the whole batch runs alone
                if self._waiting[0].copies > free and self._live:
                    return
                request = self._waiting.popleft()
            if request.stop.is_set():
                request.emit(Released())
                continue
            try:
                self._prefill(request)
            except Exception as exc:  # this request fails; the batch goes on
                log.exception("prefill failed")
                self._drop(request, _failure(exc))
            if self._live:
                return

    def _pass(self, kind: str, tokens: int, forward: Callable[[], T]) -> T:
        """One forward pass on the thread count the pacer picks; `forward_since` shows a hang meanwhile."""
        self.forward_since = time.monotonic()
        try:
            return self.pacer.run(kind, tokens, forward)
        finally:
            self.forward_since = None

    def _prefill(self, request: Request) -> None:
        request.emit(Started(request.max_new_tokens))
        ids = request.ids
        reused, prefix = self.prefixes.lookup(request.session, ids)
        cache = BatchCache(self._layers, 1, prefix, reserve=len(ids) - reused)
        tokens = torch.tensor([ids[reused:]], dtype=torch.long)
        positions = torch.arange(reused, len(ids), dtype=torch.long).unsqueeze(0)
        logits = self._pass("prefill", len(ids) - reused, lambda: self._forward(tokens, positions, cache))[0]
        if self._on_prefill is not None:
            self._on_prefill(reused, len(ids) - reused)
        prompt_kv = cache.whole()
        if request.session is not None:
            # kept right away, so that chats arriving while this one decodes share its system prompt
            self.prefixes.store(request.session, ids, prompt_kv)
        self._live[id(request)] = (request, request.copies)
        for copy in range(request.copies):
            seed = None if request.params.seed is None else request.params.seed + copy
            row = Row(request, copy, Sampler(request.params, seed=seed, avoid=request.avoid), cached=len(ids))
            if self._sample(row, logits):
                self._finish(row, None)
            else:
                self._slots.join(row, prompt_kv)

    def _sample(self, row: Row, logits: torch.Tensor) -> bool:
        """Choose `row`'s next token and tell its requester; True when the row is done."""
        request = row.request
        token, logprob = row.sampler.choose(logits, want_logprob=request.want_logprobs)
        row.tokens.append(token)
        request.emit(Token(row.copy, token, logprob))
        return token in self._eos or len(row.tokens) >= request.max_new_tokens or request.stop.is_set()

    def _step(self) -> None:
        size = self._slots.size
        if size != self._last_size:
            log.debug("decoding a batch of %d sequences", size)
            self._last_size = size
        try:
            logits = self._pass("decode", size, lambda: self._slots.forward(self._forward))
        except Exception as exc:
            log.exception("decode step failed")
            self._fail_all(_failure(exc))
            return
        if self._retired:
            return
        if self._on_step is not None:
            with contextlib.suppress(Exception):  # metrics never stop a reply
                self._on_step(size)
        for slot, row in enumerate(self._slots.rows):
            if row is None:
                continue
            row.cached += 1
            if row.request.stop.is_set():
                self._finish(row, slot)
                continue
            try:
                done = self._sample(row, logits[slot])
            except Exception as exc:  # NaN logits, say: this reply fails, the others go on
                log.exception("sampling failed")
                self._drop(row.request, _failure(exc))
                continue
            if done:
                self._finish(row, slot)
        self._slots.compact()

    def _finish(self, row: Row, slot: int | None) -> None:
        """Row `row` (in batch slot `slot`, or None when it ended at its prefill) is done."""
        request = row.request
        cache = self._slots.cache
        if request.session is not None and row.copy == 0 and slot is not None and cache is not None:
            # what the cache holds for this row: the prompt and every reply token fed back so far
            fed = tuple(row.tokens[: row.cached - len(request.ids)])
            self.prefixes.store(request.session, request.ids + fed, cache.take(slot, row.cached))
        if slot is not None:
            self._slots.free(slot)
        request.emit(Finished(row.copy))
        _request, still_open = self._live[id(request)]
        if still_open > 1:
            self._live[id(request)] = (request, still_open - 1)
        else:
            del self._live[id(request)]
            request.emit(Released())

    def _drop(self, request: Request, error: Exception) -> None:
        """Fail one request: free its slots, forget it, and tell its requester."""
        self._slots.free_request(request)
        self._live.pop(id(request), None)
        request.emit(Failed(error))
        request.emit(Released())

    def _fail_all(self, error: Exception) -> None:
        for request, _open in list(self._live.values()):
            request.emit(Failed(error))
            request.emit(Released())
        self._live.clear()
        self._slots.clear()
