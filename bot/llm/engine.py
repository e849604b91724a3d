"""The local transformers engine: `model.generate` in a worker thread, streamed into the event loop.

One generation runs at a time on a dedicated thread, so the event loop stays free and torch is never
entered concurrently. Tokens cross into the loop through `call_soon_threadsafe`; text is produced with
incremental detokenisation and cut at stop strings; a threading.Event stops `generate` early when the
reply is complete, timed out, or no longer wanted.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

import torch
from transformers.generation.stopping_criteria import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from bot.domain import GenerationParams, Prompt
from bot.errors import EngineBusy, GenerationError, GenerationTimeout
from bot.llm.base import Candidate
from bot.llm.detok import IncrementalDecoder, StopMatcher
from bot.llm.loader import LoadedModel
from bot.llm.worker import GenerationWorker

__all__ = ["TransformersEngine"]

log = logging.getLogger(__name__)

_END = object()
_STARTED = object()
# A generation that ignores its stop signal this long after being stopped (a hung forward pass) is left
# behind on its thread, and later requests run on a fresh worker: one stuck reply must not stall every chat.
STUCK_AFTER_SECONDS = 2.0


class _LoopStreamer(BaseStreamer):
    """Hands each new token (not the prompt) to an asyncio queue on the loop's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]) -> None:
        self._loop, self._queue = loop, queue
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # the first call carries the prompt
            self._prompt_seen = True
            return
        self._loop.call_soon_threadsafe(self._queue.put_nowait, value.reshape(-1).tolist())

    def begin(self) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, _STARTED)

    def end(self) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, _END)


class _StopWhenSet(StoppingCriteria):
    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self._event.is_set(), dtype=torch.bool)  # type: ignore[return-value]


class TransformersEngine:
    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_queue: int = 64,
        on_generated: Callable[[int, int], None] | None = None,
    ) -> None:
        """`max_queue` bounds the generations waiting for the model (beyond it: EngineBusy, back-pressure);
        `on_generated(tokens, sequences)` is told about every finished generation (for metrics)."""
        self._loaded = loaded
        self._max_queue = max_queue
        self._on_generated = on_generated
        self.name = loaded.name
        self.tokenizer = loaded.tokenizer
        self.context_tokens = loaded.context_tokens
        self._worker = GenerationWorker()
        pad = loaded.tokenizer.pad_token_id
        self._pad_id = pad if pad is not None else loaded.model.generation_config.eos_token_id

    async def stream(self, prompt: Prompt, params: GenerationParams) -> AsyncGenerator[str, None]:
        self._admit()
        prompt_ids, stop_strings = prompt.ids, prompt.stop_strings
        loop = asyncio.get_running_loop()
        deadline: float | None = None  # the timeout runs from when this generation starts, not while queued
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        kwargs = self._generate_kwargs(prompt_ids, params, _LoopStreamer(loop, queue), stop)
        job = self._worker.submit(lambda: self._generate(kwargs, params.seed))
        decoder = IncrementalDecoder(self.tokenizer)
        matcher = StopMatcher(stop_strings)
        started = False  # leading whitespace of a reply is dropped ("Assistant: Hello" -> "Hello")
        try:
            while True:
                try:
                    left = None if deadline is None else max(deadline - loop.time(), 0)
                    item = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    raise GenerationTimeout(
                        f"no complete reply within {params.timeout_seconds:g} s"
                    ) from None
                if item is _STARTED:
                    deadline = loop.time() + params.timeout_seconds
                    continue
                if item is _END:
                    break
                text = matcher.feed(decoder.push(item))
                if not started:
                    text = text.lstrip()
                    started = bool(text)
                if text:
                    yield text
                if matcher.stopped:
                    break
            await job  # re-raises an error from the worker thread
            tail = matcher.feed(decoder.flush()) + matcher.flush()
            if tail.rstrip():
                yield tail.rstrip() if started else tail.strip()
            log.debug("generated %d tokens", decoder.token_count)
            if self._on_generated is not None:
                self._on_generated(decoder.token_count, 1)
        finally:
            stop.set()
            if not job.done() and deadline is None:
                job.cancel()  # never started: drop it from the queue
            elif not job.done():
                await asyncio.shield(asyncio.wait([job], timeout=STUCK_AFTER_SECONDS))
            if not job.done():
                if deadline is not None:
                    log.error(
                        "a generation ignored its stop signal for %.0f s; continuing on a fresh thread",
                        STUCK_AFTER_SECONDS,
                    )
                    self._worker.replace()
            elif not job.cancelled():
                job.exception()  # retrieved here so an abandoned reply's error is not reported as unhandled

    async def candidates(self, prompt: Prompt, params: GenerationParams) -> list[Candidate]:
        self._admit()
        prompt_ids, stop_strings = prompt.ids, prompt.stop_strings
        stop = threading.Event()
        kwargs = self._generate_kwargs(prompt_ids, params, None, stop)
        kwargs.update(
            do_sample=True,
            num_return_sequences=params.num_candidates,
            return_dict_in_generate=True,
            output_scores=True,
        )
        if not params.do_sample:  # best-of-n needs variety: sample from the configured distribution
            kwargs.update(temperature=params.temperature or 0.7, top_p=params.top_p, top_k=params.top_k)
        job = self._worker.submit(
            lambda: self._sample_many(kwargs, params.seed, len(prompt_ids), tuple(stop_strings))
        )
        try:
            return await asyncio.wait_for(asyncio.shield(job), params.timeout_seconds)
        except TimeoutError:
            raise GenerationTimeout(f"no complete reply within {params.timeout_seconds:g} s") from None
        finally:
            stop.set()

    def _sample_many(
        self, kwargs: dict[str, Any], seed: int | None, prompt_len: int, stop_strings: tuple[str, ...]
    ) -> list[Candidate]:
        model = self._loaded.model
        try:
            if seed is not None:
                torch.manual_seed(seed)
            with torch.inference_mode():
                out = model.generate(**kwargs)
                scores = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        except Exception as exc:  # surfaced to the awaiting coroutine as the project's own error
            raise GenerationError(f"the model failed: {type(exc).__name__}: {exc}") from exc
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
        candidates = []
        for row, row_scores in zip(out.sequences[:, prompt_len:].tolist(), scores.tolist(), strict=True):
            length = next((i + 1 for i, token in enumerate(row) if token in eos_ids), len(row))
            logprobs = [s for s in row_scores[:length] if s != float("-inf")]
            text = self.tokenizer.decode(row[:length], skip_special_tokens=True)
            for marker in stop_strings:
                text = text.split(marker, 1)[0]
            mean = sum(logprobs) / len(logprobs) if logprobs else float("-inf")
            candidates.append(Candidate(text.strip(), mean))
        if self._on_generated is not None:
            self._on_generated(int(scores.numel()), len(candidates))
        return sorted(candidates, key=lambda c: c.mean_logprob, reverse=True)

    def _generate_kwargs(
        self,
        prompt_ids: Sequence[int],
        params: GenerationParams,
        streamer: BaseStreamer | None,
        stop: threading.Event,
    ) -> dict[str, Any]:
        device = self._loaded.device
        input_ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=device)
        kwargs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "max_new_tokens": max(1, min(params.max_new_tokens, self.context_tokens - len(prompt_ids))),
            "do_sample": params.do_sample,
            "pad_token_id": self._pad_id,
            "stopping_criteria": StoppingCriteriaList([_StopWhenSet(stop)]),
        }
        if streamer is not None:
            kwargs["streamer"] = streamer
        if params.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = params.repetition_penalty
        if params.do_sample:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
        else:  # keep the model's sampling defaults from warning about being ignored
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs

    def _generate(self, kwargs: dict[str, Any], seed: int | None) -> None:
        kwargs["streamer"].begin()
        try:
            if seed is not None:
                torch.manual_seed(seed)
            with torch.inference_mode():
                self._loaded.model.generate(**kwargs)
        except Exception as exc:  # surfaced to the awaiting coroutine as the project's own error
            kwargs["streamer"].end()
            raise GenerationError(f"the model failed: {type(exc).__name__}: {exc}") from exc

    @property
    def pending(self) -> int:
        """Generations queued behind the one running."""
        return self._worker.pending

    def _admit(self) -> None:
        if self._worker.pending >= self._max_queue:
            raise EngineBusy(f"{self._worker.pending} replies are already waiting for the model")

    async def aclose(self) -> None:
        self._worker.close()
