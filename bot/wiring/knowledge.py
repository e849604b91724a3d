"""The knowledge base KB_PATH names; semantic search when KB_EMBEDDINGS allows it and the model is there;
the questions the model writes for its passages (KB_DOC2QUERY) once the engine is loaded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING, Any

from bot.config import Settings
from bot.core.domain import GenerationParams, Prompt, Role
from bot.knowledge.doc2query import QuestionWriter
from bot.knowledge.index import KnowledgeBase
from bot.llm.base import Engine
from bot.prompt.builder import ChatFormat
from bot.wiring.embeddings import shared_embedder

if TYPE_CHECKING:
    from bot.llm.embeddings import MiniLmEmbedder

__all__ = ["add_questions", "build_knowledge", "question_writer"]

# greedy: the questions are written once and saved; short: three questions fit in a few dozen tokens
QUESTION_PARAMS = GenerationParams(max_new_tokens=96, do_sample=False, timeout_seconds=120.0)

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
        questions=kb.doc2query_questions if _doc2query(settings) else 0,
        question_model=settings.llm.model or settings.model.name
        if settings.llm.backend == "openai"
        else settings.model.name,
    )
    await asyncio.to_thread(base.build)
    return base


def _doc2query(settings: Settings) -> bool:
    mode = settings.kb.doc2query
    return mode == "on" or (mode == "auto" and settings.llm.backend == "local")


def question_writer(engine: Engine, tokenizer: Any) -> QuestionWriter:
    """The engine's reply to a conversation, as doc2query reads it (a fresh prompt of its own)."""
    chat = ChatFormat(tokenizer)

    def write(system: str, messages: Sequence[tuple[Role, str]]) -> AsyncGenerator[str, None]:
        ids = tuple(chat.render(system, messages))
        turns = ((Role.SYSTEM, system), *messages)
        return engine.stream(Prompt(ids, stop_strings=chat.stop_strings, messages=turns), QUESTION_PARAMS)

    return write


async def add_questions(
    knowledge: KnowledgeBase | None, engine: Engine, tokenizer: Any, *, show_progress: bool = False
) -> None:
    """The passages' questions (doc2query): read from the index, or written by the model once and saved.

    A failure to write them is logged and the knowledge base serves without them (they only help
    retrieval); the next start tries again.
    """
    if knowledge is None or not knowledge.questions or knowledge.has_questions:
        return
    write = question_writer(engine, tokenizer)
    try:
        if not show_progress:
            await knowledge.add_questions(write)
            return
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("writing questions for the passages (doc2query, once)", total=None)
            await knowledge.add_questions(
                write, progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
    except Exception as exc:  # any model failure: serve without the questions, try again next start
        log.warning("knowledge base: the model could not write the passages' questions (%s)", exc)


def _embedder(mode: str) -> MiniLmEmbedder | None:
    """The process's shared all-MiniLM-L6-v2 when KB_EMBEDDINGS allows it and its package is installed."""
    return shared_embedder("KB_EMBEDDINGS", mode)
