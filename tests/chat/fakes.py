"""A FakeEngine with canned replies, for fast tests of the service's steps (no model, no torch).

It keeps what the service asked for (`calls`), how many pieces it produced (`pieces_sent`) and whether a
stream was closed before its end (`closed_early`): closing the stream is how the service stops generation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from bot.chat.deps import ChatDeps
from bot.core.domain import GenerationParams, Prompt, Role
from bot.llm.base import Candidate
from bot.prompt import PromptBuilder

__all__ = ["FakeEngine", "FakeFormat", "fake_deps"]


class FakeEngine:
    name = "fake"

    def __init__(self, *replies: str | BaseException, piece_chars: int = 3) -> None:
        self._replies = list(replies) or ["Hello!"]
        self._piece_chars = piece_chars
        self.calls: list[tuple[Prompt, GenerationParams]] = []
        self.pieces_sent = 0
        self.closed_early = 0
        self.in_flight = 0  # the load the engine reports; set it to play a busy model
        self.release = asyncio.Event()  # set by default; clear it to hold a stream before its first piece
        self.release.set()

    def _next(self) -> str | BaseException:
        return self._replies.pop(0) if len(self._replies) > 1 else self._replies[0]

    async def stream(self, prompt: Prompt, params: GenerationParams) -> AsyncGenerator[str, None]:
        self.calls.append((prompt, params))
        reply = self._next()
        await self.release.wait()
        if isinstance(reply, BaseException):
            raise reply
        pieces = [reply[i : i + self._piece_chars] for i in range(0, len(reply), self._piece_chars)]
        done = 0
        try:
            for piece in pieces[: params.max_new_tokens]:
                self.pieces_sent += 1
                yield piece
                done += 1
                await asyncio.sleep(0)
        finally:
            if done < min(len(pieces), params.max_new_tokens):
                self.closed_early += 1

    async def candidates(self, prompt: Prompt, params: GenerationParams) -> list[Candidate]:
        self.calls.append((prompt, params))
        found = []
        for n in range(params.num_candidates):
            reply = self._next()
            if isinstance(reply, BaseException):
                raise reply
            found.append(Candidate(reply, -float(n)))
        return found

    def queue_position(self, session: str) -> int | None:
        return None

    async def aclose(self) -> None:
        return None


class FakeFormat:
    """A chat format that "tokenises" by characters: prompts are built for real, without a tokenizer."""

    stop_strings: tuple[str, ...] = ()

    def render(self, system: str, messages: list[tuple[Role, str]]) -> list[int]:
        text = system + "".join(f"{role}:{content}\n" for role, content in messages)
        return [ord(c) % 256 for c in text]


def fake_deps(engine: FakeEngine, store: object, **overrides: object) -> ChatDeps:
    """A service's collaborators around `engine` and `store`, greedy, short replies; override any."""
    prompts = PromptBuilder(FakeFormat(), system_prompt="Be brief.", context_tokens=4096)  # type: ignore[arg-type]
    params = GenerationParams(max_new_tokens=64, do_sample=False)
    return ChatDeps(store, engine, prompts, params, **overrides)  # type: ignore[arg-type]
