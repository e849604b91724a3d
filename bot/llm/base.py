"""What the service needs from a text generator."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.domain import GenerationParams

__all__ = ["Candidate", "Engine"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One sampled reply and how sure the model was of it (mean log-probability per token)."""

    text: str
    mean_logprob: float


class Engine(Protocol):
    name: str

    def stream(
        self, prompt_ids: Sequence[int], params: GenerationParams, stop_strings: Sequence[str] = ()
    ) -> AsyncGenerator[str, None]:
        """Yield the reply's text as it is produced, without special tokens or stop strings.

        Raises GenerationTimeout after `params.timeout_seconds` and GenerationError if the model fails.
        Closing the iterator early stops the generation.
        """
        ...

    async def candidates(
        self, prompt_ids: Sequence[int], params: GenerationParams, stop_strings: Sequence[str] = ()
    ) -> list[Candidate]:
        """Sample `params.num_candidates` whole replies in one batch, best (highest mean log-prob) first."""
        ...

    async def aclose(self) -> None: ...
