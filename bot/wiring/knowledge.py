"""The knowledge base KB_PATH names; semantic search when KB_EMBEDDINGS allows it and the model is there."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from bot.config import Settings
from bot.knowledge.index import KnowledgeBase
from bot.wiring.embeddings import shared_embedder

if TYPE_CHECKING:
    from bot.llm.embeddings import MiniLmEmbedder

__all__ = ["build_knowledge"]


async def build_knowledge(settings: Settings) -> KnowledgeBase | None:
    """The knowledge base at KB_PATH, its index read back or built (in a thread); None without KB_PATH."""
    kb = settings.kb
    if kb.path is None:
        return None
    embedder = await asyncio.to_thread(_embedder, kb.embeddings)
    base = KnowledgeBase(
        kb.path,
        index_dir=kb.index_dir,
        top_k=kb.top_k,
        min_score=kb.min_score,
        passage_chars=kb.passage_chars,
        embedder=embedder,
    )
    await asyncio.to_thread(base.build)
    return base


def _embedder(mode: str) -> MiniLmEmbedder | None:
    """The process's shared all-MiniLM-L6-v2 when KB_EMBEDDINGS allows it and its package is installed."""
    return shared_embedder("KB_EMBEDDINGS", mode)
