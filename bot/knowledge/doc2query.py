"""doc2query: questions each passage answers, written by the model when the index is built.

Customers word questions differently from the documents ("how long am I tied in?" for "the contract runs
12 months"). The model is asked, once per passage, for a few short questions the passage answers; those
are added to the passage's BM25 text and embedded next to its vector, so retrieval also matches a
question worded like them. They help retrieval only: they are never shown, quoted or cited.

The model is small: it is shown one worked example (a library's passage and its questions), and its
questions are checked: a line without a question word or a question mark, a very short one, a
duplicate, one sharing no informative word with the passage ("What's your next question?"), or one with
a figure the passage does not give (a model that invents "€12" would make the passage match questions
about €12) is dropped. Last, a question another passage matches better than its own (by cosine, or by
BM25 without embeddings) is dropped too: it would pull that passage's questions to the wrong one.
The knowledge package does not know the engine: the wiring passes a `QuestionWriter` that streams the
model's reply to a conversation.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing

from bot.core.domain import Role
from bot.knowledge.base import Passage
from bot.knowledge.grounding import unsupported_facts
from bot.knowledge.retrieval import Bm25, terms

__all__ = [
    "INSTRUCTION",
    "PROMPT_VERSION",
    "QuestionWriter",
    "instruction",
    "keep_own",
    "parse_questions",
    "write_questions",
]

# the model's reply to a conversation (system text, then (role, text) turns), as it is produced; closing
# the iterator stops the generation
QuestionWriter = Callable[[str, Sequence[tuple[Role, str]]], AsyncGenerator[str, None]]

SYSTEM = "You write the questions that customers ask, one per line."
INSTRUCTION = "Write {count} short questions a customer could ask that this text answers.\n\nText:\n{text}"
# one worked example (a small model copies its form: bare questions, one a line, worded like a customer)
EXAMPLE = (
    "Library - Borrowing books\nMembers can borrow up to ten books at a time for three weeks. You can renew "
    "a loan twice online unless someone has reserved the book.",
    "How many books can I take out at once?\nHow long can I keep a book?\nCan I extend my loan?",
)
PROMPT_VERSION = 3  # saved with the questions: a new instruction or parser writes them again
MIN_WORDS = 3
MAX_CHARS = 160
CONCURRENCY = 16  # passages written at once: the local engine batches them

_MARKER = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)]|q\d*[:.)]|question\s*\d*[:.)])\s*", re.IGNORECASE)
_ASKS = re.compile(
    r"^(?:what|how|when|where|which|who|whom|whose|why|can|could|do|does|did|is|are|was|will|would|should|"
    r"may|might|have|has|if|i|my)\b",
    re.IGNORECASE,
)
_WORDS = re.compile(r"[^\W_]+")


def instruction(passage: Passage, count: int) -> tuple[tuple[Role, str], ...]:
    """What the model is asked for one passage (its label gives the text its context), after the example."""
    return (
        (Role.USER, INSTRUCTION.format(count=count, text=EXAMPLE[0])),
        (Role.ASSISTANT, EXAMPLE[1]),
        (Role.USER, INSTRUCTION.format(count=count, text=f"{passage.label}\n{passage.text}")),
    )


def parse_questions(reply: str, passage: Passage, count: int) -> list[str]:
    """The usable questions of the model's reply, at most `count`, in its order."""
    found: list[str] = []
    seen: set[str] = set()
    topic = set(terms(f"{passage.label} {passage.text}"))
    for line in reply.splitlines():
        question = _MARKER.sub("", line).strip().strip('"').strip()
        if "?" in question:
            question = question[: question.index("?") + 1]  # "...? Answer: ..." keeps the question only
        elif not _ASKS.match(question):
            continue
        words = _WORDS.findall(question.casefold())
        key = " ".join(words)
        if len(words) < MIN_WORDS or len(question) > MAX_CHARS or key in seen:
            continue
        if unsupported_facts(question, [passage.label, passage.text]):
            continue  # a figure the passage does not give would pull in questions about that figure
        if not set(terms(question)) & topic:
            continue  # nothing of the passage in it: "What's your next question?"
        seen.add(key)
        found.append(question)
        if len(found) == count:
            break
    return found


async def _one(write: QuestionWriter, passage: Passage, count: int) -> list[str]:
    """The model's questions for one passage; the generation stops once `count` lines are complete."""
    text = ""
    async with aclosing(write(SYSTEM, instruction(passage, count))) as stream:
        async for piece in stream:
            text += piece
            done = text[: text.rfind("\n")] if "\n" in text else ""
            if len(parse_questions(done, passage, count)) >= count:
                break
    return parse_questions(text, passage, count)


async def write_questions(
    write: QuestionWriter,
    passages: Sequence[Passage],
    count: int,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[str]]:
    """`count` questions (or fewer, where the model wrote fewer usable ones) for every passage, in order.

    Up to CONCURRENCY passages are written at once; `progress(done, total)` follows each one.
    """
    limit = asyncio.Semaphore(CONCURRENCY)
    done = 0

    async def one(passage: Passage) -> list[str]:
        nonlocal done
        async with limit:
            questions = await _one(write, passage, count)
        done += 1
        if progress is not None:
            progress(done, len(passages))
        return questions

    return list(await asyncio.gather(*(one(p) for p in passages)))


def keep_own(
    lists: Sequence[Sequence[str]], passages: Sequence[Passage], nearest: Sequence[int] | None = None
) -> tuple[list[list[str]], list[int]]:
    """The questions whose closest passage is their own, and their numbers in the flat order (to keep
    their vectors). `nearest`: each question's closest passage by cosine; without it, by BM25."""
    bm25 = Bm25([terms(f"{p.title} {p.section} {p.text}") for p in passages])
    kept: list[list[str]] = []
    numbers: list[int] = []
    row = 0
    for index, questions in enumerate(lists):
        mine = []
        for question in questions:
            if nearest is not None:
                best = nearest[row]
            else:
                scores = bm25.scores(terms(question))
                best = max(scores, key=lambda i: scores[i]) if scores else -1
            if best == index:
                mine.append(question)
                numbers.append(row)
            row += 1
        kept.append(mine)
    return kept, numbers
