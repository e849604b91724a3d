"""Shared test helpers that wait for events instead of for time.

A test waits for the condition it needs (a reply shown, a queue filled, a forward pass reached), never
for a fixed while; its deadline only bounds a hang, so a slow or busy machine makes a test slower, never
red. Speed is measured by the benchmarks, not here. A model that should be slow or stuck at a given
moment is held at a forward pass until the test lets it go (`stalled_forward`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis

from bot.storage.inbox import inbox_keys

__all__ = ["HANG_SECONDS", "Stall", "eventually", "eventually_sync", "handled", "stalled_forward"]

T = TypeVar("T")

# How long a test waits for something that should happen: long enough that only a hang reaches it.
HANG_SECONDS = 120.0


def _describe(condition: object, what: str | None) -> str:
    return what or str(getattr(condition, "__qualname__", repr(condition)))


async def eventually(
    condition: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = HANG_SECONDS,  # noqa: ASYNC109 (the deadline is the point: it names what hung)
    interval: float = 0.01,
    ignoring: tuple[type[BaseException], ...] = (),
    what: str | None = None,
) -> T:
    """Poll `condition` (a function, or a coroutine function) until it returns something truthy, and return
    that. Exceptions of the `ignoring` types count as "not yet". Fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
            if inspect.isawaitable(result):
                result = await result
        except ignoring:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"still not the case after {timeout:g} s: {_describe(condition, what)}")
        await asyncio.sleep(interval)


def eventually_sync(
    condition: Callable[[], T],
    *,
    timeout: float = HANG_SECONDS,
    interval: float = 0.05,
    ignoring: tuple[type[BaseException], ...] = (),
    what: str | None = None,
) -> T:
    """`eventually` for code that has no event loop (fixtures starting a server, say)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
        except ignoring:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"still not the case after {timeout:g} s: {_describe(condition, what)}")
        time.sleep(interval)


def handled(client: redis.Redis, key_prefix: str, bot_id: int, update_id: int) -> bool:
    """Polling mode: the update has left the bot's inbox, so its handler has finished (its last edit and
    any retried send are out). Meaningful only once the update was taken in (its reply has begun)."""
    return client.zscore(inbox_keys(key_prefix, bot_id)[0], update_id) is None


@dataclass
class Stall:
    """A forward pass held up by `stalled_forward`: `blocked` once one waits, `resumed` once it goes on."""

    blocked: threading.Event = field(default_factory=threading.Event)
    resumed: threading.Event = field(default_factory=threading.Event)

    def is_set(self) -> bool:
        return self.blocked.is_set()


def each_pass(model: Any) -> Any:
    """The module that every forward pass of `model` runs once, with the token ids ([rows, new tokens]),
    whether transformers' forward runs it or the engine's own decode step (bot/llm/local/llama.py): the
    token embedding. Faults and counters hook it."""
    return model.get_input_embeddings()


@contextlib.contextmanager
def stalled_forward(
    model: Any,
    *,
    after: int = 0,
    once: bool = False,
    when: Callable[[], bool] = lambda: True,
    hold_seconds: float = HANG_SECONDS,
) -> Iterator[Stall]:
    """A fault injected into the real model: forward passes after the first `after`, from the first one
    at which `when()` holds (say, a draft is on screen), block until the block ends (only the first one
    with `once`), or for `hold_seconds` at most (a bound on a hung test)."""
    release, stall, passes = threading.Event(), Stall(), [0]

    def hook(_module: Any, _args: Any) -> None:
        passes[0] += 1
        if passes[0] <= after or (once and stall.blocked.is_set()):
            return
        if not stall.blocked.is_set() and not when():
            return
        stall.blocked.set()
        release.wait(hold_seconds)
        stall.resumed.set()

    handle = each_pass(model).register_forward_pre_hook(hook)
    try:
        yield stall
    finally:
        handle.remove()
        release.set()
