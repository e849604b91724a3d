"""This process's line of messages per chat: a place is taken on arrival, turns come in arrival order.

Taking the place needs no await, so two messages of one chat keep the order they arrived in even while
each is checked (duplicate, allow-list, rate limits) concurrently with waiting: limits are counted when a
message arrives, not when its turn comes, and a burst gets its notices at once. The line's length is what
the per-chat queue cap (RATE_LIMIT_MAX_QUEUED_PER_CHAT) looks at.
"""

from __future__ import annotations

import asyncio

__all__ = ["ChatLine", "Place"]


class Place:
    """One message's place in its chat's line; `leave` once it is answered (or turned away)."""

    def __init__(self, line: ChatLine, key: str) -> None:
        self._line, self._key = line, key
        self._left: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def ahead(self) -> int:
        """Messages of the chat that arrived earlier and are still in line (being answered or waiting)."""
        return len(self._line.before(self._key, self))

    @property
    def left(self) -> asyncio.Future[None]:
        return self._left

    async def turn(self) -> None:
        """Wait until every earlier message of the chat has left the line."""
        while earlier := self._line.before(self._key, self):
            await asyncio.shield(earlier[0].left)

    def leave(self) -> None:
        if not self._left.done():
            self._left.set_result(None)
            self._line.remove(self._key, self)


class ChatLine:
    def __init__(self) -> None:
        self._lines: dict[str, list[Place]] = {}

    def join(self, chat_id: int | str) -> Place:
        key = str(chat_id)
        place = Place(self, key)
        self._lines.setdefault(key, []).append(place)
        return place

    def places(self, key: str) -> list[Place]:
        return self._lines.get(key, [])

    def before(self, key: str, place: Place) -> list[Place]:
        line = self._lines.get(key, [])
        return line[: line.index(place)] if place in line else []

    def remove(self, key: str, place: Place) -> None:
        line = self._lines.get(key)
        if line is not None and place in line:
            line.remove(place)
            if not line:
                del self._lines[key]
