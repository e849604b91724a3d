"""Key/value caches for the batching engine: one growable batch cache, and an LRU of finished chats.

`BatchCache` holds the keys and values of every sequence being decoded, right-aligned (left-padded) in
preallocated buffers that grow by doubling, so a decode step writes one column in place instead of
copying the whole cache as `DynamicCache` does. Rows are slots: a finished sequence frees its slot for
the next one without moving the others. It is plain torch; the model sees it through hf_cache's adapter.

`PrefixCache` keeps the keys and values of recent chats (prompt + reply), bounded in megabytes. A chat's
next turn starts from the longest prefix it shares with an entry, so only the new tokens are computed;
the system-prompt prefix that every chat shares is kept as its own entry the first time two chats meet.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

__all__ = ["KV", "BatchCache", "PrefixCache", "common_prefix"]

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys and values, [rows, heads, tokens, dim]


class BatchCache:
    """Keys and values of `rows` sequences, right-aligned at column `length`; `mask` marks real tokens.

    A row that holds no sequence is all padding. Buffers are allocated on the first write (or from a
    prefix) and grow by doubling, so a decode step costs one column, not a copy of the cache.
    """

    def __init__(self, layer_count: int, rows: int, prefix: KV | None = None, *, reserve: int = 0) -> None:
        """A cache of `rows` empty slots; or one row holding `prefix` with room for `reserve` more tokens
        (sized exactly, so a prefill writes in place and its result is taken without another copy)."""
        self.layer_count = layer_count
        self.length = 0
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.mask = torch.zeros(rows, 0, dtype=torch.long)
        self._reserve = reserve
        if prefix is not None:
            n = prefix[0][0].shape[2]
            self.keys = [_copy_into(k, n + reserve) for k, _ in prefix]
            self.values = [_copy_into(v, n + reserve) for _, v in prefix]
            self.mask = torch.ones(1, n + reserve, dtype=torch.long)
            self.length = n

    @property
    def rows(self) -> int:
        return int(self.mask.shape[0])

    @property
    def capacity(self) -> int:
        return int(self.mask.shape[1])

    def write(
        self, layer: int, key_states: torch.Tensor, value_states: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store one layer's new columns after `length`; the last layer's write completes the step."""
        start = self.length
        end = start + key_states.shape[-2]
        if layer >= len(self.keys):  # first write: allocate like the model's own tensors
            rows, heads, _, dim = key_states.shape
            size = (rows, heads, max(end, self._reserve or 64), dim)
            self.keys.append(key_states.new_zeros(size))
            self.values.append(value_states.new_zeros((rows, value_states.shape[1], size[2], size[3])))
        elif end > self.keys[layer].shape[2]:
            grown = max(end, 2 * self.keys[layer].shape[2])
            self.keys[layer] = _widen(self.keys[layer], grown)
            self.values[layer] = _widen(self.values[layer], grown)
        self.keys[layer][:, :, start:end] = key_states
        self.values[layer][:, :, start:end] = value_states
        if layer == self.layer_count - 1:
            if end > self.capacity:
                self.mask = _widen(self.mask, max(end, 2 * self.capacity))
            self.mask[:, start:end] = self.mask[:, start - 1 : start] if start else 1
            self.length = end
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def attention_mask(self, new_tokens: int) -> torch.Tensor:
        """The 2-D padding mask for a step that adds `new_tokens` columns."""
        # an empty slot attends to its own new column only: never a fully masked row (NaNs)
        fresh = torch.ones(self.rows, new_tokens, dtype=torch.long)
        return torch.cat([self.mask[:, : self.length], fresh], dim=1)

    def place(self, row: int, kv: KV) -> None:
        """Put one sequence's cache (one row of `n` tokens) into slot `row`, ending at column `length`."""
        n = kv[0][0].shape[2]
        if not self.keys:
            self.keys = [k.new_zeros((self.rows, k.shape[1], max(2 * n, 64), k.shape[3])) for k, _ in kv]
            self.values = [v.new_zeros((self.rows, v.shape[1], max(2 * n, 64), v.shape[3])) for _, v in kv]
            self.mask = torch.zeros(self.rows, max(2 * n, 64), dtype=torch.long)
        if n > self.length:  # longer than everyone: shift the batch right to make room on the left
            shift = n - self.length
            columns = max(n + 1, self.capacity)
            self.keys = [_shift(k, shift, columns) for k in self.keys]
            self.values = [_shift(v, shift, columns) for v in self.values]
            self.mask = _shift(self.mask, shift, columns)
            self.length = n
        start = self.length - n
        for i, (k, v) in enumerate(kv):
            self.keys[i][row, :, :start] = 0
            self.values[i][row, :, :start] = 0
            self.keys[i][row, :, start : self.length] = k[0]
            self.values[i][row, :, start : self.length] = v[0]
        self.mask[row] = 0
        self.mask[row, start : self.length] = 1

    def add_rows(self, extra: int) -> None:
        if self.keys:
            self.keys = [torch.cat([k, k.new_zeros((extra, *k.shape[1:]))]) for k in self.keys]
            self.values = [torch.cat([v, v.new_zeros((extra, *v.shape[1:]))]) for v in self.values]
        self.mask = torch.cat([self.mask, self.mask.new_zeros((extra, self.capacity))])

    def keep_rows(self, rows: list[int]) -> None:
        """Keep only the slots `rows` (in that order), and drop columns no remaining row uses."""
        index = torch.tensor(rows, dtype=torch.long)
        mask = self.mask[index]
        used = mask[:, : self.length].any(dim=0).nonzero()
        first = int(used[0]) if len(used) else self.length
        self.keys = [k[index, :, first:].contiguous() for k in self.keys]
        self.values = [v[index, :, first:].contiguous() for v in self.values]
        self.mask = mask[:, first:].contiguous()
        self.length -= first

    def whole(self) -> KV:
        """This one-row cache's filled part, without a copy when it was sized exactly (see `reserve`)."""
        return [
            (k[:, :, : self.length].contiguous(), v[:, :, : self.length].contiguous())
            for k, v in zip(self.keys, self.values, strict=True)
        ]

    def trim_left(self) -> int:
        """Drop the leading columns no slot uses (finished replies') once they are half the cache."""
        used = self.mask[:, : self.length].any(dim=0).nonzero()
        first = int(used[0]) if len(used) else self.length
        if first < max(64, self.length // 2):
            return 0
        self.keys = [k[:, :, first:].contiguous() for k in self.keys]
        self.values = [v[:, :, first:].contiguous() for v in self.values]
        self.mask = self.mask[:, first:].contiguous()
        self.length -= first
        return first

    def take(self, row: int, tokens: int) -> KV:
        """A copy of one slot's last `tokens` columns, as a standalone single-row cache."""
        start, end = self.length - tokens, self.length
        return [
            (k[row : row + 1, :, start:end].clone(), v[row : row + 1, :, start:end].clone())
            for k, v in zip(self.keys, self.values, strict=True)
        ]

    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.kv())

    def kv(self) -> KV:
        return list(zip(self.keys, self.values, strict=True))


def _copy_into(tensor: torch.Tensor, columns: int) -> torch.Tensor:
    """A copy of a [rows, heads, tokens, dim] tensor with room for `columns` tokens."""
    out = tensor.new_empty((*tensor.shape[:2], columns, tensor.shape[3]))
    out[:, :, : tensor.shape[2]] = tensor
    return out


def _widen(tensor: torch.Tensor, columns: int) -> torch.Tensor:
    """The tensor with zero columns appended up to `columns` (dim 2 of a cache, dim 1 of a mask)."""
    dim = 2 if tensor.dim() == 4 else 1
    shape = list(tensor.shape)
    shape[dim] = columns - tensor.shape[dim]
    return torch.cat([tensor, tensor.new_zeros(shape)], dim=dim)


def _shift(tensor: torch.Tensor, shift: int, columns: int) -> torch.Tensor:
    """The tensor moved `shift` columns right into `columns` columns, zeros on the left."""
    dim = 2 if tensor.dim() == 4 else 1
    shape = list(tensor.shape)
    shape[dim] = columns
    out = tensor.new_zeros(shape)
    width = min(tensor.shape[dim], columns - shift)
    out.narrow(dim, shift, width).copy_(tensor.narrow(dim, 0, width))
    return out


def common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """Length of the longest common prefix, by bisection over C-speed slice comparisons."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


@dataclass
class _Entry:
    ids: tuple[int, ...]
    kv: KV
    size: int


def _size(kv: KV) -> int:
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)


class PrefixCache:
    """Recent chats' caches, least recently used evicted first, within `max_bytes`."""

    SHARED = "\x00shared-prefix"  # the entry holding the prefix chats have in common (the system prompt)
    MIN_SHARED_TOKENS = 16

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, session: str | None, ids: tuple[int, ...]) -> tuple[int, KV | None]:
        """The longest cached prefix of `ids`: (tokens, a private copy of their cache), or (0, None).

        The result is a view: the caller copies it before writing (BatchCache does). The chat's own entry
        is handed over (it is about to be extended); another chat's stays. When a chat starts from another
        chat's cache, that shared part is kept as an entry of its own.
        """
        best_key, best = None, 0
        for key, entry in self._entries.items():
            n = common_prefix(entry.ids, ids)
            if n > best or (n == best and key == session):
                best_key, best = key, n
        best = min(best, len(ids) - 1)  # the last prompt token is always run: its logits pick the reply
        if best_key is None or best <= 0:
            return 0, None
        entry = self._entries[best_key]
        kv = [(k[:, :, :best], v[:, :, :best]) for k, v in entry.kv]
        if best_key == session:
            del self._entries[best_key]
            self.bytes -= entry.size
        else:
            self._entries.move_to_end(best_key)
            if best_key != self.SHARED and best >= self.MIN_SHARED_TOKENS:
                shared = self._entries.get(self.SHARED)
                if shared is None or len(shared.ids) != best:
                    self.store(self.SHARED, ids[:best], [(k.clone(), v.clone()) for k, v in kv])
        return best, kv

    def store(self, session: str, ids: tuple[int, ...], kv: KV) -> None:
        old = self._entries.pop(session, None)
        if old is not None:
            self.bytes -= old.size
        entry = _Entry(ids, kv, _size(kv))
        if entry.size > self._max:
            return
        self._entries[session] = entry
        self.bytes += entry.size
        while self.bytes > self._max:
            _key, evicted = self._entries.popitem(last=False)
            self.bytes -= evicted.size
