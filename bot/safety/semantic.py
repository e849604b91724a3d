"""A semantic detector next to the rules: sentence embeddings and a small logistic head.

Rules and word lists catch the phrasings someone thought of; paraphrases ("set aside whatever you were
configured with") slip through. Here the message is embedded with all-MiniLM-L6-v2 (the model the
knowledge base uses; the app passes its `embed` function in, so this module needs neither torch nor the
model) and a softmax head scores it as benign, injection or abuse. The head is trained offline on the
project's own corpus plus a bank of exemplars (`python -m bot_dev.safety_train`, which writes
`bot/safety/semantic_head.py`), and its thresholds were chosen on out-of-fold scores of that corpus.

Vectors are cached by text (a retried or repeated message costs nothing), and when the embedding
function fails the detector turns itself off and the rules carry on alone; that is logged once.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.safety.text import semantic_view

__all__ = ["Embed", "SemanticDetector", "SemanticHead"]

log = logging.getLogger(__name__)

Embed = Callable[[Sequence[str]], list[list[float]]]
VIEW_CHARS = 1000  # about the 256 tokens the model reads; the rest would be cut anyway
# A sentence embedding of one to four words says little ("Hey", "bye", "remember me" scored as abuse):
# shorter messages are left to the rules, which name the short attacks ("DAN mode", "f*** you").
MIN_WORDS = 5


@dataclass(frozen=True, slots=True)
class SemanticHead:
    """A trained softmax head: one weight row and bias per label, and a threshold per flagged label."""

    labels: tuple[str, ...]
    weights: tuple[tuple[float, ...], ...]
    bias: tuple[float, ...]
    thresholds: dict[str, float]
    embedder: str

    def probabilities(self, vector: Sequence[float]) -> dict[str, float]:
        logits = [
            b + math.fsum(w * x for w, x in zip(row, vector, strict=True))
            for row, b in zip(self.weights, self.bias, strict=True)
        ]
        top = max(logits)
        exps = [math.exp(v - top) for v in logits]
        total = sum(exps)
        return {label: e / total for label, e in zip(self.labels, exps, strict=True)}


class SemanticDetector:
    """`detect(text)` -> [] or ["injection"] or ["abuse"], from the embedding of the text."""

    def __init__(self, embed: Embed, head: SemanticHead | None = None, *, cache_size: int = 4096) -> None:
        if head is None:
            from bot.safety.semantic_head import HEAD

            head = HEAD
        self._embed, self._head, self._cache_size = embed, head, cache_size
        self._cache: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.available = True

    def scores(self, text: str) -> dict[str, float] | None:
        """Label probabilities; None for a message under MIN_WORDS or when the embeddings are unavailable."""
        view = semantic_view(text)[:VIEW_CHARS]
        if len(view.split()) < MIN_WORDS or not self.available:
            return None
        with self._lock:
            cached = self._cache.get(view)
            if cached is not None:
                self._cache.move_to_end(view)
                return cached
        try:
            [vector] = self._embed([view])
        except (RuntimeError, ValueError, OSError, MemoryError) as exc:  # the model failed: rules only
            self.available = False
            log.warning("safety: semantic detector off, rules only (the embedding model failed: %s)", exc)
            return None
        probabilities = self._head.probabilities(vector)
        with self._lock:
            self._cache[view] = probabilities
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return probabilities

    def detect(self, text: str) -> list[str]:
        probabilities = self.scores(text)
        if probabilities is None:
            return []
        flagged = [
            (probabilities[label], label)
            for label, threshold in self._head.thresholds.items()
            if probabilities[label] >= threshold
        ]
        return [max(flagged)[1]] if flagged else []
