"""The knowledge base as the service sees it: passages, what retrieval found, a grounded answer.

ChatService depends on the `Knowledge` protocol only; app.py wires the concrete KnowledgeBase.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Embedder", "Grounded", "Hit", "Knowledge", "Passage", "Retrieval"]


@dataclass(frozen=True, slots=True)
class Passage:
    """One retrievable piece of the knowledge base: `title` is its document's (cited), `section` a heading."""

    title: str
    section: str
    text: str
    source: str  # the file, relative to KB_PATH

    @property
    def label(self) -> str:
        return f"{self.title} - {self.section}" if self.section else self.title

    def prompt_block(self) -> str:
        """How the passage appears in the prompt: its label in brackets, then its text."""
        return f"[{self.label}]\n{self.text}"

    def to_json(self) -> dict[str, str]:
        return {"title": self.title, "section": self.section, "text": self.text, "source": self.source}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Passage:
        return cls(data["title"], data["section"], data["text"], data["source"])


@dataclass(frozen=True, slots=True)
class Hit:
    """A retrieved passage. `coverage`: the share of the question's informative words (weighted by how
    rare they are) that the passage contains; `similarity`: cosine of the embeddings, when there are any;
    `sentence_similarity`: the question's cosine with each of `sentences(passage.text)` (empty without)."""

    passage: Passage
    score: float
    coverage: float
    similarity: float | None = None
    sentence_similarity: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Retrieval:
    """What the knowledge base found for one message.

    `small_talk`: the message has no informative words ("hi", "thanks"): the model answers it freely.
    `confident`: the best passage is good enough (confidence >= KB_MIN_SCORE) to answer from.
    """

    hits: tuple[Hit, ...] = ()
    confidence: float = 0.0
    confident: bool = False
    small_talk: bool = False

    @property
    def blocks(self) -> tuple[str, ...]:
        return tuple(hit.passage.prompt_block() for hit in self.hits)


@dataclass(frozen=True, slots=True)
class Grounded:
    """The reply to send for a knowledge-base question, with its citation.

    `verified`: the model's own answer passed the checks (else `text` is the extractive fallback or the
    honest "not found"); `problems` says why the model's answer was not used.
    """

    text: str
    sources: tuple[str, ...] = ()
    answered: bool = True
    verified: bool = False
    problems: tuple[str, ...] = field(default_factory=tuple)


class Knowledge(Protocol):
    """The knowledge base: find passages for a message, check a reply against them, reload the files."""

    async def retrieve(self, text: str) -> Retrieval: ...

    def ground(self, question: str, reply: str, retrieval: Retrieval) -> Grounded: ...

    async def reload(self) -> str: ...

    @property
    def public_text(self) -> str:
        """All of the knowledge base's text: contact data in it is the company's own, fine to repeat."""
        ...


class Embedder(Protocol):
    """Sentence embeddings for semantic retrieval; `name` goes into the index fingerprint."""

    name: str

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...
