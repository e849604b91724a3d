"""Turning a stream of token ids into a stream of text, and cutting it at stop strings.

Both are pure and small, so they are tested with plain ints and strings, no model needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["IncrementalDecoder", "StopMatcher", "without_broken_bytes"]


class _Decodes(Protocol):
    def decode(self, ids: list[int], skip_special_tokens: bool = ...) -> str: ...


class IncrementalDecoder:
    """Emit only text that can no longer change, and never half a character.

    Decoding token by token breaks multi-byte characters and merges (a UTF-8 emoji spans several byte
    tokens); so, as in TGI, each step decodes a short window and emits the growth of the text, holding
    back while it ends in an incomplete character (U+FFFD). Bytes that never complete a character (the
    model sampled an invalid sequence, or the reply was cut mid-character) are dropped, not shown as
    U+FFFD: a reply ending in a replacement character is garbage to the customer.
    """

    def __init__(self, tokenizer: _Decodes) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    def push(self, ids: Sequence[int]) -> str:
        self._ids.extend(ids)
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
        text = self._decode(self._ids[self._prefix_offset :])
        if len(text) > len(prefix) and not text.endswith("\ufffd"):
            self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
            return without_broken_bytes(text[len(prefix) :])
        return ""

    def flush(self) -> str:
        """Whatever is still held back once no more tokens will come, without an incomplete character."""
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
        text = self._decode(self._ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self._ids)
        return without_broken_bytes(text[len(prefix) :])

    @property
    def token_count(self) -> int:
        return len(self._ids)

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True)


def without_broken_bytes(text: str) -> str:
    """`text` without the replacement characters that stand for bytes no character was made of."""
    return text.replace("\ufffd", "")


class StopMatcher:
    """Passes text through until a stop string appears, holding back any tail that could start one."""

    def __init__(self, stop_strings: Sequence[str]) -> None:
        self._stops = tuple(s for s in stop_strings if s)
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """The text that is now safe to emit; sets `stopped` once a stop string was seen."""
        if self.stopped:
            return ""
        self._pending += text
        cut = min((i for i in (self._pending.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            out, self._pending = self._pending[:cut], ""
            return out
        hold = max((_overlap(self._pending, s) for s in self._stops), default=0)
        out = self._pending[: len(self._pending) - hold]
        self._pending = self._pending[len(self._pending) - hold :]
        return out

    def flush(self) -> str:
        """What was held back, once the stream has ended without a stop string."""
        out, self._pending = ("" if self.stopped else self._pending), ""
        return out


def _overlap(text: str, stop: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `stop`."""
    for size in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:size]):
            return size
    return 0
