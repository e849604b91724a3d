"""The transformers engine on real tiny models: greedy equivalence, streaming, stops, timeouts."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch

from bot.core.domain import GenerationParams, Prompt
from bot.core.errors import GenerationTimeout
from bot.llm.local.detok import without_broken_bytes
from bot.llm.local.engine import TransformersEngine, shortened_budget
from bot.llm.local.loader import LoadedModel, load_model
from tests.tiny_models import build_tiny_llama

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
    expected = without_broken_bytes(
        tiny_llama.tokenizer.decode(reference[0, len(ids) :], skip_special_tokens=True)
    ).strip()
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


@pytest.fixture(scope="module")
def endless(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """A tiny model that never ends a reply by itself: every reply runs to its token budget."""
    path = build_tiny_llama(tmp_path_factory.mktemp("endless") / "model", endless=True)
    return load_model(str(path), dtype="float32", device="cpu")


async def eventually(condition: Callable[[], object]) -> None:
    """Wait for `condition` (a state the scheduler thread reaches), polling the engine's counters."""
    for _ in range(6000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the engine never reached the expected state")


async def test_closing_the_stream_early_stops_generation(endless: LoadedModel) -> None:
    passes = [0]
    hook = endless.model.register_forward_pre_hook(lambda *_: passes.__setitem__(0, passes[0] + 1))
    engine = TransformersEngine(endless)
    try:
        stream = engine.stream(
            Prompt(tuple(prompt_ids(endless))), dataclasses.replace(GREEDY, max_new_tokens=400)
        )
        assert await anext(stream)
        await stream.aclose()
        await eventually(lambda: not engine.active and not engine.pending)
        # had generation gone on, the model would have run 400 passes before letting go of the request
        assert passes[0] < 100
    finally:
        hook.remove()
        await engine.aclose()


async def test_a_slow_reply_that_keeps_producing_is_not_timed_out(endless: LoadedModel) -> None:
    """Judged by progress, not total time: 40 steps of 0.1 s each outlast a 1 s stall limit many times."""
    counted: list[int] = []
    engine = TransformersEngine(endless, on_generated=lambda tokens, _n: counted.append(tokens))
    hook = endless.model.register_forward_pre_hook(lambda *_: time.sleep(0.1))
    slow = dataclasses.replace(GREEDY, max_new_tokens=40, stall_seconds=1.0, timeout_seconds=600)
    try:
        assert "".join(await collect(engine, prompt_ids(endless), slow))
        assert counted == [40]
    finally:
        hook.remove()
        await engine.aclose()


async def test_a_stalled_forward_times_out_and_the_engine_recovers(endless: LoadedModel) -> None:
    release, stalled, passes = threading.Event(), threading.Event(), [0]

    def stall_after_five(*_: Any) -> None:
        passes[0] += 1
        if passes[0] > 5 and not release.is_set():
            stalled.set()
            release.wait(30)

    hook = endless.model.register_forward_pre_hook(stall_after_five)
    engine = TransformersEngine(endless)
    params = dataclasses.replace(GREEDY, max_new_tokens=40, stall_seconds=0.5, timeout_seconds=600)
    try:
        with pytest.raises(GenerationTimeout, match="no progress"):
            await collect(engine, prompt_ids(endless), params)
        assert stalled.is_set()
    finally:
        release.set()
        hook.remove()
    assert "".join(await collect(engine, prompt_ids(endless), GREEDY))
    await engine.aclose()


def test_budgets_shrink_with_the_queue_but_not_below_the_floor() -> None:
    assert shortened_budget(256, waiting=0, max_batch=16, floor=64) == 256
    assert shortened_budget(256, waiting=16, max_batch=16, floor=64) == 128
    assert shortened_budget(256, waiting=1000, max_batch=16, floor=64) == 64
    assert shortened_budget(32, waiting=1000, max_batch=16, floor=64) == 32  # never above what was asked


async def test_a_reply_queued_behind_a_full_batch_gets_a_shorter_budget(endless: LoadedModel) -> None:
    counted: list[int] = []
    engine = TransformersEngine(
        endless, max_batch=1, min_new_tokens=8, on_generated=lambda tokens, _n: counted.append(tokens)
    )
    go = threading.Event()

    def hold_decoding(_module: Any, _args: Any, kwargs: Any) -> None:  # the first reply keeps its slot
        if kwargs["input_ids"].shape[1] == 1:
            go.wait(30)

    hook = endless.model.register_forward_pre_hook(hold_decoding, with_kwargs=True)
    params = dataclasses.replace(GREEDY, max_new_tokens=40)
    try:
        first = engine.stream(Prompt(tuple(prompt_ids(endless))), params)
        first_piece = asyncio.ensure_future(anext(first))
        await eventually(lambda: engine.active)
        second = asyncio.ensure_future(collect(engine, prompt_ids(endless, "Hi"), params))
        await eventually(lambda: engine.pending)
        go.set()
        assert await first_piece
        await first.aclose()
        assert await asyncio.wait_for(second, 60)
    finally:
        go.set()
        hook.remove()
        await engine.aclose()
    assert counted == [20]  # 40 * 1 / (1 + 1): one reply was ahead of it in a batch of one


async def test_plain_models_stop_at_the_next_speaker(tiny_gpt2: LoadedModel) -> None:
    engine = TransformersEngine(tiny_gpt2)
    ids = tiny_gpt2.tokenizer.encode("User: hi\nAssistant:")
    reply = "".join(await collect(engine, ids, GREEDY, ("\nUser:",)))
    assert "\nUser:" not in reply
    await engine.aclose()
