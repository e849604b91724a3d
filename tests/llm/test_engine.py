"""The transformers engine on real tiny models: greedy equivalence, streaming, stops, timeouts."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
import torch

from bot.core.domain import GenerationParams, Prompt
from bot.core.errors import GenerationTimeout
from bot.llm.local.engine import TransformersEngine
from bot.llm.local.loader import LoadedModel

GREEDY = GenerationParams(max_new_tokens=24, do_sample=False, repetition_penalty=1.0, timeout_seconds=60)


def prompt_ids(model: LoadedModel, text: str = "Where is my order?") -> list[int]:
    rendered = model.tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )
    return list(model.tokenizer.encode(rendered, add_special_tokens=False))


async def collect(
    engine: TransformersEngine, ids: list[int], params: GenerationParams, stops: tuple[str, ...] = ()
) -> list[str]:
    return [piece async for piece in engine.stream(Prompt(tuple(ids), stops), params)]


async def test_greedy_stream_equals_model_generate(tiny_llama: LoadedModel) -> None:
    engine = TransformersEngine(tiny_llama)
    ids = prompt_ids(tiny_llama)
    pieces = await collect(engine, ids, GREEDY)
    with torch.inference_mode():
        reference = tiny_llama.model.generate(
            torch.tensor([ids]), max_new_tokens=24, do_sample=False, pad_token_id=0
        )
    expected = tiny_llama.tokenizer.decode(reference[0, len(ids) :], skip_special_tokens=True).strip()
    assert len(pieces) > 1  # streamed, not delivered at once
    assert "".join(pieces) == expected
    await engine.aclose()


async def test_sampling_with_a_seed_is_reproducible(tiny_llama: LoadedModel) -> None:
    engine = TransformersEngine(tiny_llama)
    params = GenerationParams(max_new_tokens=16, do_sample=True, temperature=1.0, seed=7)
    first = "".join(await collect(engine, prompt_ids(tiny_llama), params))
    second = "".join(await collect(engine, prompt_ids(tiny_llama), params))
    assert first == second
    await engine.aclose()


async def test_stop_strings_end_the_reply(tiny_llama: LoadedModel) -> None:
    engine = TransformersEngine(tiny_llama)
    ids = prompt_ids(tiny_llama)
    full = "".join(await collect(engine, ids, GREEDY))
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    assert stop.strip(), "the tiny model's greedy text should be long enough to cut"
    cut = "".join(await collect(engine, ids, GREEDY, (stop,)))
    assert cut == full[: full.index(stop)].rstrip()
    await engine.aclose()


async def test_timeout_raises_and_the_loop_stays_responsive(tiny_llama: LoadedModel) -> None:
    engine = TransformersEngine(tiny_llama)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    slow = dataclasses.replace(GREEDY, max_new_tokens=480, timeout_seconds=0.3)
    # every forward pass takes 10 ms: 480 of them cannot finish within the timeout
    hook = tiny_llama.model.register_forward_pre_hook(lambda *_: time.sleep(0.01))
    try:
        with pytest.raises(GenerationTimeout):
            await collect(engine, prompt_ids(tiny_llama), slow)
    finally:
        hook.remove()
    task.cancel()
    assert ticks > 5, "the event loop was blocked while the model generated"
    # the engine is usable again right after a timeout
    assert "".join(await collect(engine, prompt_ids(tiny_llama), GREEDY))
    await engine.aclose()


async def test_closing_the_stream_early_stops_generation(tiny_llama: LoadedModel) -> None:
    engine = TransformersEngine(tiny_llama)
    stream = engine.stream(
        Prompt(tuple(prompt_ids(tiny_llama))), dataclasses.replace(GREEDY, max_new_tokens=480)
    )
    first = await anext(stream)
    await stream.aclose()
    assert first
    assert "".join(await collect(engine, prompt_ids(tiny_llama), GREEDY))
    await engine.aclose()


async def test_plain_models_stop_at_the_next_speaker(tiny_gpt2: LoadedModel) -> None:
    engine = TransformersEngine(tiny_gpt2)
    ids = tiny_gpt2.tokenizer.encode("User: hi\nAssistant:")
    reply = "".join(await collect(engine, ids, GREEDY, ("\nUser:",)))
    assert "\nUser:" not in reply
    await engine.aclose()
