"""Which engine LLM_BACKEND means: the local batching engine over a loaded model, or a remote
OpenAI-compatible server (then only the tokenizer is loaded, to budget prompts); `bot serve-model`'s
server over the local engine."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config import Settings, redact_url
from bot.llm.base import Engine
from bot.metrics import Metrics
from bot.prompt.builder import ChatFormat
from bot.wiring.embeddings import embed_on

if TYPE_CHECKING:
    from bot.llm.local.engine import TransformersEngine
    from bot.llm.local.loader import LoadedModel
    from bot.transports.openai_server.server import ModelServer

__all__ = ["build_engine", "build_model_server"]

log = logging.getLogger(__name__)


async def _load_local(settings: Settings, *, show_progress: bool) -> LoadedModel:
    from bot.llm.local.loader import load_model

    model = settings.model
    return await asyncio.to_thread(
        load_model,
        model.name,
        dtype=model.dtype,
        device=model.device,
        cache_dir=Path(model.cache_dir) if model.cache_dir else None,
        threads=model.threads,
        progress=_print_progress if show_progress else None,
        lean=settings.engine.lean_forward,
    )


async def build_engine(
    settings: Settings, metrics: Metrics, *, show_progress: bool = False
) -> tuple[Engine, Any, int]:
    """The engine LLM_BACKEND names, the tokenizer prompts are budgeted with, and the context in tokens.

    With LLM_BACKEND=openai no weights are loaded here: only MODEL_NAME's tokenizer, to count tokens.
    """

    def generated(tokens: int, sequences: int) -> None:
        metrics.tokens.inc(tokens)

    if settings.llm.backend == "openai":
        from bot.llm.local.loader import load_tokenizer
        from bot.llm.remote import OpenAIEngine

        model, llm = settings.model, settings.llm
        tokenizer, native = await asyncio.to_thread(
            load_tokenizer, model.name, cache_dir=Path(model.cache_dir) if model.cache_dir else None
        )
        remote = OpenAIEngine(
            llm.base_url or "",
            model=llm.model or model.name,
            api_key=llm.api_key.get_secret_value() if llm.api_key else None,
            timeout_seconds=llm.timeout_seconds,
            max_retries=llm.max_retries,
            on_generated=generated,
        )
        metrics.watch_queue(lambda: remote.pending)
        log.info("replies from %s (model %s)", redact_url(llm.base_url or ""), remote.name)
        return remote, tokenizer, model.max_context or native
    loaded = await _load_local(settings, show_progress=show_progress)
    engine = _local_engine(loaded, settings, metrics)
    embed_on(engine.compute)  # query embeddings between decode steps: torch on one thread (threads.py)
    metrics.watch_queue(lambda: engine.pending)
    context = min(settings.model.max_context or engine.context_tokens, engine.context_tokens)
    return engine, loaded.tokenizer, context


def _local_engine(loaded: LoadedModel, settings: Settings, metrics: Metrics | None) -> TransformersEngine:
    """The batching engine over a loaded model, reporting to `metrics` when given."""
    from bot.llm.local.engine import TransformersEngine

    engine = settings.engine
    if metrics is None:
        return TransformersEngine(
            loaded,
            max_queue=engine.max_queue,
            max_batch=engine.max_batch,
            cache_mb=engine.cache_max_mb,
            min_new_tokens=engine.min_new_tokens,
            lean_forward=engine.lean_forward,
        )

    def prefilled(reused: int, computed: int) -> None:
        metrics.prompt_tokens.labels("cached").inc(reused)
        metrics.prompt_tokens.labels("computed").inc(computed)
        metrics.cache_lookups.labels("hit" if reused else "miss").inc()

    return TransformersEngine(
        loaded,
        max_queue=engine.max_queue,
        max_batch=engine.max_batch,
        cache_mb=engine.cache_max_mb,
        min_new_tokens=engine.min_new_tokens,
        lean_forward=engine.lean_forward,
        on_generated=lambda tokens, _sequences: metrics.tokens.inc(tokens),
        on_step=metrics.batch_size.observe,
        on_prefill=prefilled,
    )


async def build_model_server(settings: Settings, *, show_progress: bool = False) -> ModelServer:
    """`bot serve-model`: the local model (whatever LLM_BACKEND says) behind the OpenAI-compatible API."""
    from bot.transports.openai_server.server import ModelServer

    loaded = await _load_local(settings, show_progress=show_progress)
    engine = _local_engine(loaded, settings, None)
    context = min(settings.model.max_context or engine.context_tokens, engine.context_tokens)
    tokenizer = loaded.tokenizer
    key = settings.serve.api_key
    return ModelServer(
        engine,
        ChatFormat(tokenizer),
        lambda text: len(tokenizer.encode(text, add_special_tokens=False)),
        model_id=settings.model.name,
        context_tokens=context,
        defaults=settings.generation.params(),
        api_key=key.get_secret_value() if key else None,
    )


def _print_progress(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[dim]· {message}[/dim]")
