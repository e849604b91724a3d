"""A reply as a value: the stream of its text as it is produced, then the `Outcome` that ends it.

The service's pipeline is an async generator of text pieces whose last item is the Outcome; `Reply`
splits the two, so a transport iterates the text (to show drafts) and then awaits how the reply ended.
Stopping early (`aclose`) abandons the reply: nothing is stored.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from bot.core.outcome import Outcome

__all__ = ["Reply"]


class Reply:
    """`async for piece in reply` streams the text; `await reply.outcome()` says how it ended."""

    def __init__(self, events: AsyncGenerator[str | Outcome, None]) -> None:
        self._events = events
        self._outcome: Outcome | None = None

    def __aiter__(self) -> Reply:
        return self

    async def __anext__(self) -> str:
        if self._outcome is not None:
            raise StopAsyncIteration
        event = await anext(self._events)
        if isinstance(event, Outcome):
            self._outcome = event
            await self._events.aclose()  # the pipeline yields its outcome last: nothing runs after it
            raise StopAsyncIteration
        return event

    async def outcome(self) -> Outcome:
        """How the reply ended; reads (and drops) whatever text was not read yet."""
        async for _piece in self:
            pass
        if self._outcome is None:
            raise RuntimeError("the reply was closed before it ended")
        return self._outcome

    async def text(self) -> str:
        """The whole reply for a caller that does not stream: the outcome's text."""
        return (await self.outcome()).text

    async def aclose(self) -> None:
        """Abandon the reply (the person went away): generation stops and nothing is stored."""
        await self._events.aclose()
