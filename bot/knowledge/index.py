"""The knowledge base the service asks: its files, their index on disk, search and grounding.

The index (passages and, with embeddings, their vectors) is saved under KB_INDEX_DIR keyed by a
fingerprint of the files' content and of every setting that shapes it, so a restart with unchanged files
only reads it back, and any edit, or a change of KB_PASSAGE_CHARS or of the embedding model, rebuilds it.
A rebuild (`/reload`) prepares the new version aside and swaps it in whole; a broken file leaves the
previous version serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from bot.knowledge import grounding
from bot.knowledge.base import Embedder, Grounded, Passage, Retrieval
from bot.knowledge.corpus import (
    KnowledgeBaseError,
    SourceFile,
    fingerprint,
    load_passages,
    read_folder,
    sentences,
)
from bot.knowledge.retrieval import Retriever

__all__ = ["INDEX_VERSION", "KnowledgeBase", "default_index_dir"]

log = logging.getLogger(__name__)

INDEX_VERSION = 2  # bump when the passage format, splitting rules or saved vectors change


def default_index_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("tg-support-bot")) / "kb"


class KnowledgeBase:
    """Implements bot.knowledge.base.Knowledge over a folder of documents."""

    def __init__(
        self,
        path: Path,
        *,
        index_dir: Path | None = None,
        top_k: int = 3,
        min_score: float = 0.35,
        passage_chars: int = 700,
        embedder: Embedder | None = None,
    ) -> None:
        self.path = path
        self.index_dir = index_dir or default_index_dir()
        self.top_k, self.min_score, self.passage_chars = top_k, min_score, passage_chars
        self.embedder = embedder
        self._retriever = Retriever(())
        self._public_text = ""
        self.summary = ""
        self.work_seconds = 0.0  # spent in search and grounding, for `bot kb eval` (generation excluded)

    # -- building -----------------------------------------------------------------------------------
    def build(self) -> str:
        """Read the folder, load or build its index, and start serving it. Returns a one-line summary."""
        started = time.monotonic()
        files = read_folder(self.path)
        key = self._key(files)
        index = self.index_dir / f"kb-{key[:24]}.json"
        loaded = self._load(index, key)
        if loaded is not None:
            passages, vectors, by_sentence = loaded
        else:
            passages = load_passages(files, max_chars=self.passage_chars)
            if not passages:
                raise KnowledgeBaseError(f"KB_PATH={self.path}: the documents contain no text")
            vectors, by_sentence = self._embed(passages)
            self._save(index, key, passages, vectors, by_sentence)
        self._retriever = Retriever(passages, vectors, _split_rows(by_sentence, passages))
        self._public_text = "\n".join(f"{p.label}\n{p.text}" for p in passages)
        how = "BM25 + embeddings" if vectors is not None else "BM25"
        verb = "loaded" if loaded is not None else "built"
        self.summary = (
            f"knowledge base: {len(passages)} passages from {len(files)} files in {self.path} ({how}), "
            f"index {verb} in {time.monotonic() - started:.2f} s"
        )
        log.info("%s", self.summary)
        return self.summary

    async def reload(self) -> str:
        return await asyncio.to_thread(self.build)

    @property
    def passages(self) -> tuple[Passage, ...]:
        return self._retriever.passages

    @property
    def public_text(self) -> str:
        return self._public_text

    # -- answering ----------------------------------------------------------------------------------
    async def retrieve(self, text: str) -> Retrieval:
        if self.embedder is None:  # BM25 over a few thousand passages takes well under a millisecond
            return self.search(text)
        return await asyncio.to_thread(self.search, text)

    def search(self, text: str) -> Retrieval:
        started = time.perf_counter()
        retriever = self._retriever  # one version throughout, even if a reload swaps it meanwhile
        vector = None
        if self.embedder is not None and retriever.vectors is not None:
            vector = self.embedder.embed([text])[0]
        found = retriever.search(text, top_k=self.top_k, min_score=self.min_score, query_vector=vector)
        self.work_seconds += time.perf_counter() - started
        return found

    def ground(self, question: str, reply: str, retrieval: Retrieval) -> Grounded:
        started = time.perf_counter()
        grounded = grounding.ground(question, reply, retrieval, weight=self._retriever.bm25.idf)
        self.work_seconds += time.perf_counter() - started
        return grounded

    # -- the index on disk --------------------------------------------------------------------------
    def _key(self, files: Sequence[SourceFile]) -> str:
        shape = {
            "version": INDEX_VERSION,
            "passage_chars": self.passage_chars,
            "embedder": self.embedder.name if self.embedder is not None else None,
        }
        text = f"{fingerprint(files)}:{json.dumps(shape, sort_keys=True)}"
        return hashlib.sha256(text.encode()).hexdigest()

    def _embed(self, passages: Sequence[Passage]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Vectors of the passages, and of every sentence (with its heading, which gives it context:
        "Express: 1 to 2 days"), so that the extractive answer can pick sentences by meaning too."""
        if self.embedder is None:
            return None, None
        texts = [f"{p.label}: {p.text}" for p in passages]
        vectors = np.asarray(self.embedder.embed(texts), dtype=np.float32)
        lines = [f"{p.section}: {s}" if p.section else s for p in passages for s in sentences(p.text)]
        by_sentence = np.asarray(self.embedder.embed(lines), dtype=np.float32) if lines else None
        return vectors, by_sentence

    def _load(
        self, index: Path, key: str
    ) -> tuple[list[Passage], np.ndarray | None, np.ndarray | None] | None:
        if not index.is_file():
            return None
        try:
            data = json.loads(index.read_text(encoding="utf-8"))
            if data.get("key") != key:
                return None
            passages = [Passage.from_json(item) for item in data["passages"]]
            vectors = by_sentence = None
            if self.embedder is not None:
                vectors = np.load(index.with_suffix(".npy"), allow_pickle=False)
                if vectors.shape[0] != len(passages):
                    raise ValueError("vectors and passages differ in number")
                by_sentence = np.load(_sentence_file(index), allow_pickle=False)
                if by_sentence.shape[0] != sum(len(sentences(p.text)) for p in passages):
                    raise ValueError("sentence vectors and sentences differ in number")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("the saved knowledge-base index %s is unusable (%s); rebuilding it", index, exc)
            return None
        return passages, vectors, by_sentence

    def _save(
        self,
        index: Path,
        key: str,
        passages: Sequence[Passage],
        vectors: np.ndarray | None,
        by_sentence: np.ndarray | None,
    ) -> None:
        """Written aside and renamed into place, so a crash never leaves half an index; old ones removed."""
        try:
            self.index_dir.mkdir(parents=True, exist_ok=True)
            if vectors is not None:
                _replace(index.with_suffix(".npy"), lambda f: np.save(f, vectors, allow_pickle=False))
            if by_sentence is not None:
                _replace(_sentence_file(index), lambda f: np.save(f, by_sentence, allow_pickle=False))
            body = json.dumps({"key": key, "passages": [p.to_json() for p in passages]}, ensure_ascii=False)
            _replace(index, lambda f: f.write(body.encode()))
            for old in self.index_dir.glob("kb-*"):
                if old.name.split(".")[0] != index.stem:
                    old.unlink(missing_ok=True)
        except OSError as exc:  # the bot still works; the next start just builds the index again
            log.warning("cannot save the knowledge-base index in %s (KB_INDEX_DIR): %s", self.index_dir, exc)


def _sentence_file(index: Path) -> Path:
    return index.with_suffix(".sentences.npy")


def _split_rows(by_sentence: np.ndarray | None, passages: Sequence[Passage]) -> list[np.ndarray] | None:
    """The sentence vectors cut back into one block per passage."""
    if by_sentence is None:
        return None
    counts = [len(sentences(p.text)) for p in passages]
    return list(np.split(by_sentence, np.cumsum(counts)[:-1])) if counts else []


def _replace(target: Path, write: Callable[[BinaryIO], object]) -> None:
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as handle:
        write(handle)
    os.replace(temporary, target)
