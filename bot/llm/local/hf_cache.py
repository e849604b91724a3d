"""The one place that depends on transformers' cache internals: a `Cache` view of our own KV storage.

transformers' public cache classes (`DynamicCache`, `StaticCache`) either copy the whole cache on every
step or fix one length for every row; continuous batching needs rows that come and go in a buffer that
grows by doubling (kvcache.BatchCache, plain torch). The model only talks to a cache through `Cache`
and its per-layer objects, so this adapter subclasses `Cache` and `DynamicLayer` and forwards each
layer's `update` to the storage. Those two classes are not a stable API: tests/llm/test_hf_cache.py
checks the exact surface used here and that a forward through the adapter equals one through
`DynamicCache`, so a transformers upgrade that changes them fails there, loudly, not in production.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from transformers.cache_utils import Cache, DynamicLayer

from bot.llm.local.kvcache import BatchCache

__all__ = ["KVStore", "TransformersForward", "as_hf_cache"]


class KVStore(Protocol):
    """What the adapter needs from the storage: its filled length and a per-layer in-place write."""

    length: int

    def write(
        self, layer: int, key_states: torch.Tensor, value_states: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class _Layer(DynamicLayer):  # type: ignore[no-untyped-call]
    """One layer's view of the store: `update` writes the new columns in place and returns the filled part."""

    def __init__(self, store: KVStore, index: int) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._store, self._index = store, index
        self.is_initialized = True

    def get_seq_length(self) -> int:
        return self._store.length

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys, self.values = self._store.write(self._index, key_states, value_states)
        return self.keys, self.values


class _View(Cache):
    def __init__(self, store: KVStore, layer_count: int) -> None:
        super().__init__(layers=[_Layer(store, i) for i in range(layer_count)])


def as_hf_cache(store: KVStore, layer_count: int) -> Cache:
    """A transformers `Cache` whose layers read and write `store` (pass it to the model's forward)."""
    return _View(store, layer_count)


class TransformersForward:
    """Decode steps through transformers' own forward: any model (llama.LlamaForward is faster for Llamas)."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._layers = int(model.config.get_text_config(decoder=True).num_hidden_layers)

    def __call__(self, tokens: torch.Tensor, positions: torch.Tensor, cache: BatchCache) -> torch.Tensor:
        """Feed `tokens[i]` at `positions[i]` to row i of `cache`, both [rows, new]: the logits of each
        row's last new token."""
        new = tokens.shape[1]
        out = self._model(
            input_ids=tokens,
            attention_mask=cache.attention_mask(new),
            position_ids=positions,
            cache_position=torch.arange(cache.length, cache.length + new, dtype=torch.long),
            cache=as_hf_cache(cache, self._layers),
            use_cache=True,
            logits_to_keep=1,
        )
        logits: torch.Tensor = out.logits[:, -1]
        return logits
