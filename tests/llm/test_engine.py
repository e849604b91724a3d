"""The transformers engine on real tiny models: greedy equivalence, streaming, stops, timeouts."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from typing import Any

import pytest
import torch

from bot.core.domain import GenerationParams, Prompt
from bot.core.errors import GenerationTimeout
from bot.llm.local.detok import without_broken_bytes
from bot.llm.local.engine import TransformersEngine, shortened_budget
from bot.llm.local.loader import LoadedModel, load_model
from tests.helpers import HANG_SECONDS, each_pass, eventually
from tests.tiny_models import build_tiny_llama

GREEDY = GenerationParams(max_new_tokens=24, do_sample=False, repetition_penalty=1.0, timeout_seconds=60)
# the first piece of the endless model's reply comes within this many passes; later ones wait for the test
HELD_AFTER = 10


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


async def test_a_reply_does_not_say_again_what_it_is_told_to_avoid(tiny_llama: LoadedModel) -> None:
    engine = TransformersEngine(tiny_llama)
    ids = prompt_ids(tiny_llama)
    first = "".join(await collect(engine, ids, GREEDY))
    avoiding = dataclasses.replace(GREEDY, avoid_ngram=4, avoid=(first,))
    # the same prompt, greedy: without the block it says `first` again, token for token
    assert "".join(await collect(engine, ids, dataclasses.replace(avoiding, avoid_ngram=0))) == first
    second = "".join(await collect(engine, ids, avoiding))
    assert second and second != first  # which phrases are blocked: tests/llm/test_sampling.py
    await engine.aclose()


async def test_timeout_raises_and_the_engine_is_usable_again(tiny_llama: LoadedModel) -> None:
    engine = TransformersEngine(tiny_llama)
    slow = dataclasses.replace(GREEDY, max_new_tokens=480, timeout_seconds=0.3)
    # a slow model: 480 passes of 10 ms or more cannot finish within 0.3 s, on any machine
    hook = each_pass(tiny_llama.model).register_forward_pre_hook(lambda *_: time.sleep(0.01))
    try:
        with pytest.raises(GenerationTimeout, match="no complete reply"):
            await collect(engine, prompt_ids(tiny_llama), slow)
    finally:
        hook.remove()
    assert "".join(await collect(engine, prompt_ids(tiny_llama), GREEDY))
    await engine.aclose()


async def test_the_event_loop_runs_while_the_model_computes(endless: LoadedModel) -> None:
    """Each of the first passes asks the event loop to run a callback, and goes on only once it ran: a
    loop that waits for the model (in its own thread, or by blocking on it) cannot, until the reply is
    over. Ordering, not timing: however slow the machine, a free loop runs them mid-reply."""
    loop = asyncio.get_running_loop()
    mid_reply: list[bool] = []  # one per callback the loop ran: was the reply still being generated?
    generating, asked = True, [0]

    def ask_the_loop(*_: Any) -> None:
        if asked[0] < 3:
            asked[0] += 1
            ran = threading.Event()

            def on_the_loop() -> None:
                mid_reply.append(generating)
                ran.set()

            loop.call_soon_threadsafe(on_the_loop)
            ran.wait(HANG_SECONDS)

    hook = each_pass(endless.model).register_forward_pre_hook(ask_the_loop)
    engine = TransformersEngine(endless)
    try:
        assert "".join(await collect(engine, prompt_ids(endless), GREEDY))
    finally:
        generating = False
        hook.remove()
        await engine.aclose()
    assert mid_reply == [True, True, True], "the event loop was blocked while the model generated"


@pytest.fixture(scope="module")
def endless(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """A tiny model that never ends a reply by itself: every reply runs to its token budget."""
    path = build_tiny_llama(tmp_path_factory.mktemp("endless") / "model", endless=True)
    return load_model(str(path), dtype="float32", device="cpu")


async def test_closing_the_stream_early_stops_generation(endless: LoadedModel) -> None:
    closed, passes = threading.Event(), [0]

    def count_and_wait_for_the_reader(*_: Any) -> None:
        passes[0] += 1
        if passes[0] > HELD_AFTER:  # however fast the model, it cannot run ahead of the reader's close
            closed.wait(HANG_SECONDS)

    hook = each_pass(endless.model).register_forward_pre_hook(count_and_wait_for_the_reader)
    engine = TransformersEngine(endless, max_batch=1)  # one slot: the next reply waits for it to be let go
    try:
        stream = engine.stream(
            Prompt(tuple(prompt_ids(endless))), dataclasses.replace(GREEDY, max_new_tokens=400)
        )
        assert await anext(stream)
        await stream.aclose()
        closed.set()
        short = dataclasses.replace(GREEDY, max_new_tokens=5)
        assert await asyncio.wait_for(collect(engine, prompt_ids(endless, "Hi"), short), HANG_SECONDS)
        # had generation gone on, the model would have run 400 passes before letting go of the slot
        assert passes[0] < 100
    finally:
        closed.set()
        hook.remove()
        await engine.aclose()


async def test_a_slow_reply_that_keeps_producing_is_not_timed_out(endless: LoadedModel) -> None:
    """Judged by progress, not total time: 20 passes of 0.2 s each (4 s at least, on any machine) outlast
    a 3 s stall limit, while each pass leaves the slowest machine seconds to spare."""
    counted: list[int] = []
    engine = TransformersEngine(endless, on_generated=lambda tokens, _n: counted.append(tokens))
    hook = each_pass(endless.model).register_forward_pre_hook(lambda *_: time.sleep(0.2))
    slow = dataclasses.replace(GREEDY, max_new_tokens=20, stall_seconds=3.0, timeout_seconds=600)
    try:
        assert "".join(await collect(engine, prompt_ids(endless), slow))
        assert counted == [20]
    finally:
        hook.remove()
        await engine.aclose()


async def test_a_stalled_forward_times_out_and_the_engine_recovers(endless: LoadedModel) -> None:
    release, stalled, resumed, passes = threading.Event(), threading.Event(), threading.Event(), [0]

    def stall_the_sixth_pass(*_: Any) -> None:
        passes[0] += 1
        if passes[0] == 6:
            stalled.set()
            release.wait(HANG_SECONDS)
            resumed.set()

    hook = each_pass(endless.model).register_forward_pre_hook(stall_the_sixth_pass)
    engine = TransformersEngine(endless)
    # the stall limit is far above a pass of the tiny model, so only the held pass can reach it
    params = dataclasses.replace(GREEDY, max_new_tokens=40, stall_seconds=2.0, timeout_seconds=600)
    try:
        with pytest.raises(GenerationTimeout, match="no progress"):
            await collect(engine, prompt_ids(endless), params)
        assert stalled.is_set() and not resumed.is_set(), "given up while the pass was stalled, not after"
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

    def hold_decoding(_module: Any, args: Any) -> None:  # the first reply keeps its slot
        if args[0].shape[1] == 1 and not go.wait(HANG_SECONDS):
            go.set()  # a hung test: let the model go on

    hook = each_pass(endless.model).register_forward_pre_hook(hold_decoding)
    params = dataclasses.replace(GREEDY, max_new_tokens=40)
    try:
        first = engine.stream(Prompt(tuple(prompt_ids(endless))), params)
        first_piece = asyncio.ensure_future(anext(first))
        await eventually(lambda: engine.active)
        second = asyncio.ensure_future(collect(engine, prompt_ids(endless, "Hi"), params))
        await eventually(lambda: engine.pending)
        assert engine.in_flight == 2, "one reply decoding, one waiting: the load a busy model reports"
        go.set()
        assert await first_piece
        await first.aclose()
        assert await asyncio.wait_for(second, HANG_SECONDS)
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
