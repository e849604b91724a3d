"""The running batch: which sequence sits in which row of the batch cache, and keeping that cache tight.

Rows are slots: a sequence joins the first free one (or a new one), leaves it when it finishes, and the
others never move, so a decode step is one forward over every row. Empty rows are squeezed out when
they are most of the batch; columns no row uses any more are dropped when they are half of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from bot.llm.local.events import Request
from bot.llm.local.kvcache import KV, BatchCache
from bot.llm.local.sampling import Sampler

__all__ = ["Forward", "Row", "Slots"]

# a forward pass: feeds tokens[i] at positions[i] (both [rows, new]) to row i of the cache, which grows by
# `new` columns; returns the logits of each row's last new token, [rows, vocab]
Forward = Callable[[torch.Tensor, torch.Tensor, BatchCache], torch.Tensor]


@dataclass(eq=False)
class Row:
    """One sequence being decoded: copy `copy` of `request`'s reply."""

    request: Request
    copy: int
    sampler: Sampler
    cached: int  # tokens of this row in the batch cache
    tokens: list[int] = field(default_factory=list)  # sampled so far; the last one is not yet fed

    @property
    def next_token(self) -> int:
        return self.tokens[-1]


class Slots:
    def __init__(self, layer_count: int) -> None:
        self._layers = layer_count
        self.rows: list[Row | None] = []
        self.cache: BatchCache | None = None

    @property
    def size(self) -> int:
        return sum(row is not None for row in self.rows)

    def join(self, row: Row, kv: KV) -> None:
        slot = next((i for i, r in enumerate(self.rows) if r is None), None)
        if self.cache is None:
            self.cache = BatchCache(self._layers, 0)
        if slot is None:
            slot = len(self.rows)
            self.rows.append(None)
            self.cache.add_rows(1)
        self.cache.place(slot, kv)
        self.rows[slot] = row

    def forward(self, step: Forward) -> torch.Tensor:
        """One decode step over every row: the last-position logits, [rows, vocab]."""
        assert self.cache is not None
        tokens = torch.tensor([[row.next_token if row else 0] for row in self.rows], dtype=torch.long)
        positions = torch.tensor([[row.cached if row else 0] for row in self.rows], dtype=torch.long)
        return step(tokens, positions, self.cache)

    def free(self, slot: int) -> None:
        self.rows[slot] = None
        if self.cache is not None:
            self.cache.mask[slot] = 0  # a free slot is all padding: its columns can be trimmed

    def free_request(self, request: Request) -> None:
        for slot, row in enumerate(self.rows):
            if row is not None and row.request is request:
                self.free(slot)

    def compact(self) -> None:
        """Free the cache when no row is used; squeeze out empty rows when they are most of the batch, and
        columns no row uses any more when they are half of it (steady traffic never empties the batch)."""
        used = [i for i, row in enumerate(self.rows) if row is not None]
        if not used:
            self.clear()
        elif len(self.rows) - len(used) > max(4, len(used)):
            assert self.cache is not None
            self.cache.keep_rows(used)
            self.rows = [self.rows[i] for i in used]
        elif self.cache is not None:
            self.cache.trim_left()

    def clear(self) -> None:
        self.rows, self.cache = [], None
