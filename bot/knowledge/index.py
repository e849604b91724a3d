"""The knowledge base the service asks: its files, their index on disk, search and grounding.

The index (passages and, with embeddings, their vectors) is saved under KB_INDEX_DIR keyed by a
fingerprint of the files' content and of every setting that shapes it, so a restart with unchanged files
only reads it back, and any edit, or a change of KB_PASSAGE_CHARS or of the embedding model, rebuilds it.
The questions the model wrote for each passage (doc2query, KB_DOC2QUERY) are saved in the same index with
their vectors, so they are written again only when the documents change (or the model, or their number).
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
from collections.abc import Callable, Mapping, Sequence
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
from bot.knowledge.doc2query import PROMPT_VERSION, QuestionWriter, keep_own, write_questions
from bot.knowledge.retrieval import Retriever

__all__ = ["INDEX_VERSION", "KnowledgeBase", "default_index_dir"]

log = logging.getLogger(__name__)

# doc2query's questions per passage, and their vectors per passage (None without embeddings)
Questions = tuple[list[list[str]], list[np.ndarray] | None] | None

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
        questions: int = 0,
        question_model: str = "",
    ) -> None:
        self.path = path
        self.index_dir = index_dir or default_index_dir()
        self.top_k, self.min_score, self.passage_chars = top_k, min_score, passage_chars
        self.embedder = embedder
        # doc2query: questions per passage (0: none) and who writes them; saved questions of another
        # writer or number are written again
        self.questions = questions
        self.question_source = f"{question_model}:{questions}:v{PROMPT_VERSION}" if questions else ""
        self._writer: QuestionWriter | None = None
        self._built: tuple[Path, str, list[Passage], np.ndarray | None, np.ndarray | None] | None = None
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
        questions: Questions = None
        if loaded is not None:
            passages, vectors, by_sentence = loaded
            questions = self._load_questions(index, passages)
        else:
            passages = load_passages(files, max_chars=self.passage_chars)
            if not passages:
                raise KnowledgeBaseError(f"KB_PATH={self.path}: the documents contain no text")
            vectors, by_sentence = self._embed(passages)
            self._save(index, key, passages, vectors, by_sentence)
        self._built = (index, key, passages, vectors, by_sentence)
        self._retriever = Retriever(passages, vectors, _split_rows(by_sentence, passages), *(questions or ()))
        self._public_text = "\n".join(f"{p.label}\n{p.text}" for p in passages)
        how = "BM25 + embeddings" if vectors is not None else "BM25"
        how += " + questions" if questions is not None else ""
        verb = "loaded" if loaded is not None else "built"
        self.summary = (
            f"knowledge base: {len(passages)} passages from {len(files)} files in {self.path} ({how}), "
            f"index {verb} in {time.monotonic() - started:.2f} s"
        )
        log.info("%s", self.summary)
        return self.summary

    async def reload(self) -> str:
        summary = await asyncio.to_thread(self.build)
        if self._writer is not None:
            summary = await self.add_questions(self._writer)
        return summary

    @property
    def has_questions(self) -> bool:
        return self._retriever.questions is not None

    async def add_questions(
        self, write: QuestionWriter, *, progress: Callable[[int, int], None] | None = None
    ) -> str:
        """Have the model write the passages' questions, unless the saved index has them; save and serve
        them. `write` is kept, so that `/reload` writes the questions of changed documents too."""
        self._writer = write
        if not self.questions or self._built is None or self.has_questions:
            return self.summary
        started = time.monotonic()
        index, key, passages, vectors, by_sentence = self._built
        lists = await write_questions(write, passages, self.questions, progress=progress)
        flat = [q for questions in lists for q in questions]
        rows = nearest = None
        if self.embedder is not None and vectors is not None:
            embedded = await asyncio.to_thread(self.embedder.embed, flat) if flat else []
            rows = np.asarray(embedded, dtype=np.float32).reshape(len(flat), vectors.shape[1])
            nearest = [int(i) for i in np.argmax(rows @ vectors.T, axis=1)]
        lists, kept = keep_own(lists, passages, nearest)
        rows = rows[kept] if rows is not None else None
        saved = {"source": self.question_source, "lists": lists}
        await asyncio.to_thread(self._save, index, key, passages, vectors, by_sentence, saved, rows)
        if self._built is not None and self._built[1] == key:  # not replaced by a reload meanwhile
            split = _split_rows(rows, lists)
            self._retriever = Retriever(passages, vectors, self._retriever.sentence_vectors, lists, split)
        self.summary += f"; {len(kept)} questions written in {time.monotonic() - started:.1f} s"
        log.info("knowledge base: %d questions written for %d passages", len(kept), len(passages))
        return self.summary

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

    def _load_questions(self, index: Path, passages: Sequence[Passage]) -> Questions:
        """The saved questions and (with embeddings) their vectors, when this writer wrote them."""
        if not self.questions:
            return None
        try:
            saved = json.loads(index.read_text(encoding="utf-8")).get("questions") or {}
            if saved.get("source") != self.question_source:
                return None
            lists = [[str(q) for q in questions] for questions in saved["lists"]]
            if len(lists) != len(passages):
                raise ValueError("questions and passages differ in number")
            if self.embedder is None:
                return lists, None
            rows = np.load(_question_file(index), allow_pickle=False)
            if rows.shape[0] != sum(len(q) for q in lists):
                raise ValueError("question vectors and questions differ in number")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("the saved questions in %s are unusable (%s); writing them again", index, exc)
            return None
        return lists, _split_rows(rows, lists)

    def _save(
        self,
        index: Path,
        key: str,
        passages: Sequence[Passage],
        vectors: np.ndarray | None,
        by_sentence: np.ndarray | None,
        questions: Mapping[str, object] | None = None,
        question_vectors: np.ndarray | None = None,
    ) -> None:
        """Written aside and renamed into place, so a crash never leaves half an index; old ones removed."""
        try:
            self.index_dir.mkdir(parents=True, exist_ok=True)
            if vectors is not None:
                _replace(index.with_suffix(".npy"), lambda f: np.save(f, vectors, allow_pickle=False))
            if by_sentence is not None:
                _replace(_sentence_file(index), lambda f: np.save(f, by_sentence, allow_pickle=False))
            if question_vectors is not None:
                _replace(_question_file(index), lambda f: np.save(f, question_vectors, allow_pickle=False))
            data = {"key": key, "passages": [p.to_json() for p in passages], "questions": questions}
            body = json.dumps(data, ensure_ascii=False)
            _replace(index, lambda f: f.write(body.encode()))
            for old in self.index_dir.glob("kb-*"):
                if old.name.split(".")[0] != index.stem:
                    old.unlink(missing_ok=True)
        except OSError as exc:  # the bot still works; the next start just builds the index again
            log.warning("cannot save the knowledge-base index in %s (KB_INDEX_DIR): %s", self.index_dir, exc)


def _sentence_file(index: Path) -> Path:
    return index.with_suffix(".sentences.npy")


def _question_file(index: Path) -> Path:
    return index.with_suffix(".questions.npy")


def _split_rows(
    rows: np.ndarray | None, parts: Sequence[Passage] | Sequence[list[str]]
) -> list[np.ndarray] | None:
    """Sentence (or question) vectors cut back into one block per passage."""
    if rows is None:
        return None
    counts = [len(sentences(p.text)) if isinstance(p, Passage) else len(p) for p in parts]
    return list(np.split(rows, np.cumsum(counts)[:-1])) if counts else []


def _replace(target: Path, write: Callable[[BinaryIO], object]) -> None:
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as handle:
        write(handle)
    os.replace(temporary, target)
