"""Continuous batching: one thread decodes every active reply together, one token per step.

A request waits in a bounded queue until a slot is free; it is then prefilled on its own (starting from
the longest cached prefix of its prompt, see kvcache.PrefixCache) and joins the running batch. Between
two decode steps finished sequences leave and waiting ones join, so a short reply never waits for a long
one. Each sequence samples with its own settings and random generator (sampling.Sampler). torch is only
entered from this thread.

Events reach the requester through its `emit` callback (called on this thread; the engine forwards
them to the event loop): STARTED when its prefill begins, then (copy, token, logprob) per token, DONE
per finished copy, RELEASED once the scheduler holds nothing of it, or FAILED with the exception.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from bot.core.domain import GenerationParams
from bot.core.errors import GenerationError
from bot.llm.local.kvcache import KV, BatchCache, PrefixCache
from bot.llm.local.sampling import Sampler

__all__ = ["DONE", "FAILED", "RELEASED", "STARTED", "Request", "Scheduler"]

log = logging.getLogger(__name__)

STARTED, DONE, RELEASED, FAILED = "started", "done", "released", "failed"


@dataclass(eq=False)
class Request:
    ids: tuple[int, ...]
    params: GenerationParams
    max_new_tokens: int
    emit: Callable[..., object]
    session: str | None = None
    copies: int = 1  # sequences sampled from the one prompt (best-of-n)
    want_logprobs: bool = False
    stop: threading.Event = field(default_factory=threading.Event)


@dataclass(eq=False)
class _Row:
    request: Request
    copy: int
    sampler: Sampler
    tokens: list[int]  # sampled so far; the last one is not yet fed to the model
    cached: int  # tokens of this row in the batch cache

    @property
    def next_token(self) -> int:
        return self.tokens[-1]


@dataclass(eq=False)
class _Live:
    request: Request
    open_copies: int


class Scheduler:
    def __init__(
        self,
        model: Any,
        *,
        eos_ids: set[int],
        max_batch: int,
        cache_bytes: int,
        on_step: Callable[[int], None] | None = None,
        on_prefill: Callable[[int, int], None] | None = None,
        name: str = "generate",
    ) -> None:
        """`on_step(batch_size)` is told about every decode step, `on_prefill(reused, computed)` about every
        prompt: how many of its tokens came from the cache and how many were computed."""
        self._model = model
        self._layers = int(model.config.get_text_config(decoder=True).num_hidden_layers)
        self._eos = eos_ids
        self._max_batch = max_batch
        self.prefixes = PrefixCache(cache_bytes)
        self._on_step, self._on_prefill = on_step, on_prefill
        self._waiting: deque[Request] = deque()
        self._wake = threading.Condition()
        self._retired = False
        self._slots: list[_Row | None] = []
        self._live: dict[int, _Live] = {}
        self._batch: BatchCache | None = None
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

    def position(self, session: str) -> int | None:
        """1-based place of `session`'s request among those waiting for a slot; None if not waiting."""
        with self._wake:
            waiting = list(self._waiting)
        return next((i for i, r in enumerate(waiting, 1) if r.session == session), None)

    def submit(self, request: Request) -> None:
        with self._wake:
            self._waiting.append(request)
            self._wake.notify()

    def retire(self) -> deque[Request]:
        """Stop this thread (it may be stuck in a forward pass) and hand over the requests still waiting."""
        with self._wake:
            self._retired = True
            waiting, self._waiting = self._waiting, deque()
            self._wake.notify()
        return waiting

    def abandon(self) -> tuple[deque[Request], list[Request]]:
        """Retire a hung scheduler: the requests still waiting (for another scheduler) and those it holds."""
        waiting = self.retire()
        return waiting, [live.request for live in list(self._live.values())]

    def join(self, timeout: float) -> None:
        """Wait for a retired scheduler's thread to finish (it may be stuck: then give up after `timeout`)."""
        self._thread.join(timeout)

    def adopt(self, waiting: deque[Request]) -> None:
        with self._wake:
            self._waiting.extend(waiting)
            self._wake.notify()

    # ---- the scheduler thread ----

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._wake:
                    while not self._retired and not self._waiting and not self._live:
                        self._wake.wait()
                    if self._retired:
                        self._fail_all(GenerationError("the engine stopped"))
                        return
                try:
                    self._admit()
                    if self._live and not self._retired:
                        self._step()
                except Exception as exc:  # a bug here must fail the replies in flight, not the thread
                    log.exception("the scheduler failed; failing the replies in progress")
                    self._fail_all(GenerationError(f"the model failed: {type(exc).__name__}: {exc}"))

    def _admit(self) -> None:
        """Prefill waiting requests into free slots (one per step while others decode, so they keep going)."""
        while True:
            free = self._max_batch - sum(row is not None for row in self._slots)
            with self._wake:
                if not self._waiting or self._retired:
                    return
                # best-of-n needs n slots at once; more than the whole batch runs alone
                if self._waiting[0].copies > free and self._live:
                    return
                request = self._waiting.popleft()
            if request.stop.is_set():
                request.emit(RELEASED)
                continue
            try:
                self._prefill(request)
            except Exception as exc:  # this request fails; the batch goes on
                log.exception("prefill failed")
                self._drop(request, GenerationError(f"the model failed: {type(exc).__name__}: {exc}"))
            if self._live:
                return

    def _prefill(self, request: Request) -> None:
        request.emit(STARTED)
        ids = request.ids
        reused, prefix = self.prefixes.lookup(request.session, ids)
        cache = BatchCache(self._layers, 1, prefix, reserve=len(ids) - reused)
        fresh = torch.tensor([ids[reused:]], dtype=torch.long)
        positions = torch.arange(reused, len(ids), dtype=torch.long).unsqueeze(0)
        self.forward_since = time.monotonic()
        try:
            out = self._model(
                input_ids=fresh,
                position_ids=positions,
                cache_position=positions[0],
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        finally:
            self.forward_since = None
        if self._on_prefill is not None:
            self._on_prefill(reused, len(ids) - reused)
        logits = out.logits[0, -1]
        prompt_kv = cache.whole()
        if request.session is not None:
            # kept right away, so that chats arriving while this one decodes share its system prompt
            self.prefixes.store(request.session, ids, prompt_kv)
        prompt = torch.tensor(ids, dtype=torch.long)
        live = _Live(request, request.copies)
        self._live[id(request)] = live
        for copy in range(request.copies):
            seed = None if request.params.seed is None else request.params.seed + copy
            sampler = Sampler(request.params, prompt, seed=seed)
            token, logprob = sampler.choose(logits, want_logprob=request.want_logprobs)
            request.emit(copy, token, logprob)
            row = _Row(request, copy, sampler, [token], cached=len(ids))
            if token in self._eos or request.max_new_tokens <= 1 or request.stop.is_set():
                self._finish(row, cache, 0)
            else:
                self._join(row, prompt_kv)

    def _join(self, row: _Row, kv: KV) -> None:
        slot = next((i for i, r in enumerate(self._slots) if r is None), None)
        if self._batch is None:
            self._batch = BatchCache(self._layers, 0)
        if slot is None:
            slot = len(self._slots)
            self._slots.append(None)
            self._batch.add_rows(1)
        self._batch.place(slot, kv)
        self._slots[slot] = row

    def _step(self) -> None:
        batch = self._batch
        if batch is None:  # live requests without rows cannot happen; if they did, do not spin on them
            self._fail_all(GenerationError("the scheduler lost track of a reply"))
            return
        rows = self._slots
        size = sum(row is not None for row in rows)
        if size != self._last_size:
            log.debug("decoding a batch of %d sequences", size)
            self._last_size = size
        tokens = torch.tensor([[row.next_token if row else 0] for row in rows], dtype=torch.long)
        positions = torch.tensor([[row.cached if row else 0] for row in rows], dtype=torch.long)
        self.forward_since = time.monotonic()
        try:
            out = self._model(
                input_ids=tokens,
                attention_mask=batch.attention_mask(1),
                position_ids=positions,
                cache_position=torch.tensor([batch.length], dtype=torch.long),
                cache=batch,
                use_cache=True,
                logits_to_keep=1,
            )
        except Exception as exc:
            log.exception("decode step failed")
            self._fail_all(GenerationError(f"the model failed: {type(exc).__name__}: {exc}"))
            return
        finally:
            self.forward_since = None
        if self._retired:
            return
        if self._on_step is not None:
            with contextlib.suppress(Exception):  # metrics never stop a reply
                self._on_step(size)
        logits = out.logits[:, -1]
        for slot, row in enumerate(rows):
            if row is None:
                continue
            row.cached += 1
            request = row.request
            if request.stop.is_set():
                self._finish(row, batch, slot)
                continue
            try:
                token, logprob = row.sampler.choose(logits[slot], want_logprob=request.want_logprobs)
            except Exception as exc:  # NaN logits, say: this reply fails, the others go on
                log.exception("sampling failed")
                self._drop(request, GenerationError(f"the model failed: {type(exc).__name__}: {exc}"))
                continue
            row.tokens.append(token)
            request.emit(row.copy, token, logprob)
            if token in self._eos or len(row.tokens) >= request.max_new_tokens:
                self._finish(row, batch, slot)
        self._compact()

    def _finish(self, row: _Row, cache: BatchCache, slot: int) -> None:
        request = row.request
        if request.session is not None and row.copy == 0:
            # what the cache holds for this row: the prompt and every reply token fed back so far
            fed = tuple(row.tokens[: row.cached - len(request.ids)])
            self.prefixes.store(request.session, request.ids + fed, cache.take(slot, row.cached))
        if cache is self._batch:
            self._slots[slot] = None
            cache.mask[slot] = 0  # a free slot is all padding: its columns can be trimmed
        request.emit(row.copy, DONE)
        live = self._live[id(request)]
        live.open_copies -= 1
        if live.open_copies == 0:
            del self._live[id(request)]
            request.emit(RELEASED)

    def _drop(self, request: Request, error: Exception) -> None:
        """Fail one request: free its slots, forget it, and tell its requester."""
        for slot, row in enumerate(self._slots):
            if row is not None and row.request is request:
                self._slots[slot] = None
                if self._batch is not None:
                    self._batch.mask[slot] = 0
        self._live.pop(id(request), None)
        request.emit(FAILED, error)
        request.emit(RELEASED)

    def _compact(self) -> None:
        """Free the batch when it is empty; squeeze out empty slots when they are most of it, and columns no
        slot uses any more when they are half of it."""
        used = [i for i, row in enumerate(self._slots) if row is not None]
        if not used:
            self._slots, self._batch = [], None
        elif len(self._slots) - len(used) > max(4, len(used)):
            assert self._batch is not None
            self._batch.keep_rows(used)
            self._slots = [self._slots[i] for i in used]
        elif self._batch is not None:
            self._batch.trim_left()  # steady traffic never empties the batch: old columns must go

    def _fail_all(self, error: Exception) -> None:
        for live in list(self._live.values()):
            live.request.emit(FAILED, error)
            live.request.emit(RELEASED)
        self._live.clear()
        self._slots, self._batch = [], None
