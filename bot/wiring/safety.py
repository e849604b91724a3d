"""Which semantic safety detector SAFETY_SEMANTIC means: MiniLM against trained exemplars, or rules only."""

from __future__ import annotations

from bot.safety.semantic import SemanticDetector
from bot.wiring.embeddings import shared_embedder

__all__ = ["semantic_detector"]


def semantic_detector(mode: str) -> SemanticDetector | None:
    """The embedding-based safety detector over the process's shared MiniLM, when SAFETY_SEMANTIC allows it
    and the model is installed."""
    embedder = shared_embedder("SAFETY_SEMANTIC", mode)
    return SemanticDetector(embedder.embed) if embedder is not None else None
