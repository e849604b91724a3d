"""What the service needs from a text generator."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

from bot.core.domain import GenerationParams, Prompt

__all__ = ["Candidate", "Engine"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One sampled reply and how sure the model was of it (mean log-probability per token)."""

    text: str
    mean_logprob: float


class Engine(Protocol):
    name: str

    def stream(self, prompt: Prompt, params: GenerationParams) -> AsyncGenerator[str, None]:
        """Yield the reply's text as it is produced, without special tokens or the prompt's stop strings.

        Raises GenerationTimeout after `params.timeout_seconds` and GenerationError if the model fails.
        Closing the iterator early stops the generation.
        """
        ...

    async def candidates(self, prompt: Prompt, params: GenerationParams) -> list[Candidate]:
        """Sample `params.num_candidates` whole replies in one batch, best (highest mean log-prob) first."""
        ...

    @property
    def in_flight(self) -> int:
        """Replies being generated or waiting for the model now (a measure of load)."""
        ...

    def queue_position(self, session: str) -> int | None:
        """Where the reply for `session` waits in line for the model (1 = next), or None when it is not
        waiting (being generated, done, or unknown: a remote server does not say)."""
        ...

    async def aclose(self) -> None: ...
