"""The engine's own Llama forward pass (llama.py) computes what transformers' forward computes, on the same
weights and the same cache: decode steps over rows of different lengths, and prompts with and without a
cached prefix; models it does not reproduce keep transformers' forward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from bot.core.domain import GenerationParams, Prompt
from bot.llm.local.attention import Attention
from bot.llm.local.engine import TransformersEngine
from bot.llm.local.hf_cache import TransformersForward, as_hf_cache
from bot.llm.local.int4 import PackedLinear, pack_linears
from bot.llm.local.kvcache import KV, BatchCache
from bot.llm.local.llama import LlamaForward, unsupported
from bot.llm.local.loader import LoadedModel, load_model
from tests.llm.test_int4 import linear_with, q4_1_weight

PROMPTS = ("Where is my order?", "Hello! My name is Anna and I would like to return a pair of shoes.", "Hi")


def prompt_caches(loaded: LoadedModel) -> list[tuple[KV, int]]:
    """Each prompt's cache (from transformers' forward) and its length: rows of a batch to decode."""
    model, layers = loaded.model, loaded.model.config.num_hidden_layers
    caches = []
    with torch.inference_mode():
        for text in PROMPTS:
            ids = loaded.tokenizer.encode(text)
            store = BatchCache(layers, 1, reserve=len(ids))
            model(input_ids=torch.tensor([ids]), cache=as_hf_cache(store, layers), use_cache=True)
            caches.append((store.whole(), len(ids)))
    return caches


def batch_of(caches: list[tuple[KV, int]], layers: int) -> BatchCache:
    cache = BatchCache(layers, 0)
    cache.add_rows(len(caches))
    for row, (kv, _length) in enumerate(caches):
        cache.place(row, kv)
    return cache


def decode_both(loaded: LoadedModel, steps: int) -> tuple[list[torch.Tensor], list[torch.Tensor], BatchCache]:
    """Logits of `steps` greedy steps by transformers' forward and by LlamaForward, each on its own copy."""
    layers = loaded.model.config.num_hidden_layers
    caches = prompt_caches(loaded)
    theirs_step, ours_step = TransformersForward(loaded.model), LlamaForward(loaded.model)
    results: list[list[torch.Tensor]] = []
    stores = []
    for step in (theirs_step, ours_step):
        cache = batch_of(caches, layers)
        tokens = torch.tensor([[3], [7], [11]])
        positions = torch.tensor([[length] for _kv, length in caches])
        logits = []
        with torch.inference_mode():
            for _ in range(steps):
                out = step(tokens, positions, cache)
                logits.append(out.float())
                tokens, positions = out.argmax(-1, keepdim=True), positions + 1
        results.append(logits)
        stores.append(cache)
    return results[0], results[1], stores[1]


def test_lean_steps_equal_transformers_forward_for_rows_of_every_length(tiny_llama: LoadedModel) -> None:
    theirs, ours, cache = decode_both(tiny_llama, steps=6)
    for expected, got in zip(theirs, ours, strict=True):
        assert got.shape == expected.shape == (3, tiny_llama.model.config.vocab_size)
        assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)
        assert torch.equal(got.argmax(-1), expected.argmax(-1))
    assert cache.length == max(length for _kv, length in prompt_caches(tiny_llama)) + 6


@pytest.mark.parametrize("written_out", [False, True], ids=["kernel", "written-out"])
@pytest.mark.parametrize("cached", [0, 5])
def test_lean_prompts_equal_transformers_forward_with_and_without_a_cached_prefix(
    tiny_llama: LoadedModel, cached: int, written_out: bool
) -> None:
    """A prompt of 12 tokens, the first `cached` of them already in the cache (a chat's next turn), with
    attention by torch's kernel or written out (attention.py chooses by measuring)."""
    layers = tiny_llama.model.config.num_hidden_layers
    ids = torch.tensor(
        [tiny_llama.tokenizer.encode("Hello! I would like to return a pair of shoes, please.")]
    )
    ids, new = ids[:, :12], 12 - cached
    positions = torch.arange(cached, 12)[None]
    results = []
    way = [(0, "written")] if written_out else [(0, "kernel")]
    attention = Attention(torch.float32, way, way)
    for forward in (TransformersForward(tiny_llama.model), LlamaForward(tiny_llama.model, attention)):
        with torch.inference_mode():
            prefix = None
            if cached:
                store = BatchCache(layers, 1, reserve=cached)
                forward(ids[:, :cached], torch.arange(cached)[None], store)
                prefix = store.whole()
            cache = BatchCache(layers, 1, prefix, reserve=new)
            results.append((forward(ids[:, cached:], positions, cache), cache.whole()))
    (theirs, their_kv), (ours, our_kv) = results
    assert ours.shape == (1, tiny_llama.model.config.vocab_size)
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4)
    for (their_k, their_v), (our_k, our_v) in zip(their_kv, our_kv, strict=True):
        assert our_k.shape[2] == 12
        assert torch.allclose(our_k, their_k, atol=1e-4) and torch.allclose(our_v, their_v, atol=1e-4)


def test_joined_projections_share_the_layers_memory_and_leave_transformers_forward_unchanged(
    tiny_llama_dir: Path,
) -> None:
    loaded = load_model(str(tiny_llama_dir), dtype="float32", device="cpu")
    ids = torch.tensor([loaded.tokenizer.encode("Your refund will arrive within five business days.")])
    with torch.inference_mode():
        before = loaded.model(input_ids=ids).logits
        LlamaForward(loaded.model)
        after = loaded.model(input_ids=ids).logits
    assert torch.equal(before, after)
    attention = loaded.model.model.layers[0].self_attn
    parts = (attention.q_proj, attention.k_proj, attention.v_proj)
    storages = {part.weight.untyped_storage().data_ptr() for part in parts}
    assert len(storages) == 1  # one joined matrix, the three projections views of it


def test_joined_packed_layers_multiply_like_their_parts() -> None:
    parts = nn.ModuleList([linear_with(q4_1_weight(128, 128)), linear_with(q4_1_weight(32, 128))])
    pack_linears(parts, torch.bfloat16)
    for part in parts:
        part.max_rows = 1 << 30  # the packed kernel, whatever this CPU's crossover
    x = torch.randn(2, 128, dtype=torch.bfloat16)
    with torch.inference_mode():
        separately = torch.cat([parts[0](x), parts[1](x)], dim=-1)
        joined = PackedLinear.joined(list(parts))  # type: ignore[arg-type]
        assert joined is not None and joined.kind == "int4"
        assert torch.equal(joined(x), separately)
        assert torch.equal(torch.cat([parts[0](x), parts[1](x)], dim=-1), separately)  # the parts still work
    assert parts[1].packed.data_ptr() == joined.packed[128:].data_ptr()
    mixed = nn.ModuleList([linear_with(q4_1_weight(128, 128)), linear_with(torch.randn(32, 128) * 0.05)])
    pack_linears(mixed, torch.bfloat16)
    assert PackedLinear.joined(list(mixed)) is None  # int4 and int8 layers: called one by one
    # the kernel packs rows in blocks of 64: packs of 96 and 32 rows do not join into one
    unaligned = nn.ModuleList([linear_with(q4_1_weight(96, 128)), linear_with(q4_1_weight(32, 128))])
    pack_linears(unaligned, torch.bfloat16)
    assert PackedLinear.joined(list(unaligned)) is None


def test_models_the_lean_step_does_not_reproduce_keep_transformers_forward(
    tiny_llama: LoadedModel, tiny_gpt2: LoadedModel
) -> None:
    assert unsupported(tiny_llama.model.config) is None
    assert unsupported(tiny_gpt2.model.config) == "model type 'gpt2'"
    with pytest.raises(ValueError, match="gpt2"):
        LlamaForward(tiny_gpt2.model)


async def test_the_engine_streams_the_same_reply_with_and_without_the_lean_step(
    tiny_llama: LoadedModel,
) -> None:
    ids = tuple(tiny_llama.tokenizer.encode("Please send us your order number"))
    params = GenerationParams(max_new_tokens=16, do_sample=False)
    replies = []
    for lean in (True, False):
        engine = TransformersEngine(tiny_llama, lean_forward=lean)
        replies.append("".join([piece async for piece in engine.stream(Prompt(ids), params)]))
        await engine.aclose()
    assert replies[0] and replies[0] == replies[1]
