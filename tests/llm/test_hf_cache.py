"""The adapter to transformers' cache internals: the exact surface it relies on, and that a forward through
it equals one through transformers' own DynamicCache. A transformers upgrade that changes either fails
here, loudly, rather than in a reply."""

from __future__ import annotations

import inspect

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from bot.llm.local.hf_cache import as_hf_cache
from bot.llm.local.kvcache import BatchCache
from bot.llm.local.loader import LoadedModel


def test_the_cache_internals_the_adapter_uses_are_still_there() -> None:
    assert "layers" in inspect.signature(Cache.__init__).parameters
    update = inspect.signature(DynamicLayer.update).parameters
    assert list(update)[:3] == ["self", "key_states", "value_states"]
    for method in ("get_seq_length", "get_mask_sizes", "update"):
        assert callable(getattr(DynamicLayer, method)), method
    for method in ("get_seq_length", "get_mask_sizes", "update"):
        assert callable(getattr(Cache, method)), method


def test_a_forward_through_the_adapter_equals_one_through_dynamic_cache(tiny_llama: LoadedModel) -> None:
    model = tiny_llama.model
    layers = model.config.num_hidden_layers
    ids = torch.tensor([tiny_llama.tokenizer.encode("Where is my order? It has not arrived yet.")])
    store = BatchCache(layers, 1)
    with torch.inference_mode():
        ours = model(input_ids=ids[:, :-1], cache=as_hf_cache(store, layers), use_cache=True)
        theirs = model(input_ids=ids[:, :-1], cache=DynamicCache(config=model.config), use_cache=True)
        assert torch.allclose(ours.logits, theirs.logits, atol=1e-5)
        assert store.length == ids.shape[1] - 1
        # one more step, continuing from each cache
        step = ids[:, -1:]
        position = torch.tensor([[ids.shape[1] - 1]])
        ours = model(input_ids=step, position_ids=position, cache=as_hf_cache(store, layers), use_cache=True)
        theirs = model(input_ids=step, position_ids=position, cache=theirs.cache, use_cache=True)
    assert torch.allclose(ours.logits, theirs.logits, atol=1e-5)
    assert store.length == ids.shape[1]
