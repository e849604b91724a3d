"""What the service needs from a text generator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from bot.domain import GenerationParams

__all__ = ["Engine"]


class Engine(Protocol):
    name: str

    def stream(
        self, prompt_ids: Sequence[int], params: GenerationParams, stop_strings: Sequence[str] = ()
    ) -> AsyncIterator[str]:
        """Yield the reply's text as it is produced, without special tokens or stop strings.

        Raises GenerationTimeout after `params.timeout_seconds` and GenerationError if the model fails.
        Closing the iterator early stops the generation.
        """
        ...

    async def aclose(self) -> None: ...
