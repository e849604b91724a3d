"""The chat service's collaborators, from settings and the opened state: null objects stand in for a
missing knowledge base or support desk, so the service never checks for `None`."""

from __future__ import annotations

from dataclasses import replace

from bot.chat.deps import ChatDeps, ChatOptions
from bot.chat.gate import Gate
from bot.chat.ordering import ChatTurns
from bot.chat.ranking import Embed
from bot.config import Settings
from bot.desk.desk import NoDesk, SupportDesk
from bot.knowledge.index import KnowledgeBase
from bot.llm.base import Engine
from bot.metrics import Metrics
from bot.prompt.builder import PromptBuilder
from bot.safety import SafetyPipeline
from bot.wiring.embeddings import shared_embedder
from bot.wiring.stores import State

__all__ = ["chat_deps"]


def chat_deps(
    settings: Settings,
    state: State,
    engine: Engine,
    prompts: PromptBuilder,
    gate: Gate,
    safety: SafetyPipeline,
    knowledge: KnowledgeBase | None,
    metrics: Metrics,
    desk: SupportDesk | None,
) -> ChatDeps:
    """Everything ChatService needs, required, with the process's metrics and cross-replica ordering."""
    turns = ChatTurns(
        state.locks,
        state.limits,
        lease_seconds=settings.redis.lease_seconds,
        on_store_error=lambda operation: metrics.redis_errors.labels(operation).inc(),
    )
    options = ChatOptions(
        max_queued_per_chat=settings.rate_limit.max_queued_per_chat,
        kb_max_new_tokens=settings.kb.max_new_tokens,
        kb_draft_max_load=settings.kb.draft_max_load,
    )
    deps = ChatDeps(state.store, engine, prompts, settings.generation.params(), gate=gate, safety=safety)
    return replace(
        deps,
        knowledge=knowledge if knowledge is not None else deps.knowledge,
        desk=desk if desk is not None else NoDesk(),
        audit=state.audit,
        metrics=metrics,
        turns=turns,
        options=options,
        embed=_ranking_embed(settings),
    )


def _ranking_embed(settings: Settings) -> Embed | None:
    """The process's shared MiniLM for best-of-n relevance, when GENERATION_RANK_EMBEDDINGS allows it
    (`auto`: only when there are candidates to rank; one reply is not worth loading a model for)."""
    mode = settings.generation.rank_embeddings
    if mode == "auto" and settings.generation.num_candidates <= 1:
        return None
    embedder = shared_embedder("GENERATION_RANK_EMBEDDINGS", mode)
    return embedder.embed if embedder is not None else None
