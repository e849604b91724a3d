"""What the scheduler thread tells a requester about its reply, as small typed values.

The scheduler calls a request's `emit` with these (on its own thread; the engine forwards them to the
event loop). Order per request: `Started` when its prefill begins, then a `Token` per sampled token and
a `Finished` per copy, or a `Failed`; `Released` last, once the scheduler holds nothing of the request
(so a watchdog knows the stop it asked for took effect).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.core.domain import GenerationParams

__all__ = ["Event", "Failed", "Finished", "Released", "Request", "Started", "Token"]


@dataclass(frozen=True, slots=True)
class Started:
    """The prefill began; `max_new_tokens` is the budget this reply got (shorter when the queue is long)."""

    max_new_tokens: int


@dataclass(frozen=True, slots=True)
class Token:
    """Copy `copy` sampled `token`; `logprob` under the processed distribution (0.0 unless asked for)."""

    copy: int
    token: int
    logprob: float = 0.0


@dataclass(frozen=True, slots=True)
class Finished:
    """Copy `copy` ended: an end-of-sequence token, its token budget, or a stop request."""

    copy: int


@dataclass(frozen=True, slots=True)
class Failed:
    """The reply cannot go on; `error` is what the requester raises."""

    error: Exception


@dataclass(frozen=True, slots=True)
class Released:
    """The scheduler holds nothing of this request any more."""


Event = Started | Token | Finished | Failed | Released


@dataclass(eq=False)
class Request:
    """One reply to generate: its prompt, settings and budget, where its events go, and its stop switch."""

    ids: tuple[int, ...]
    params: GenerationParams
    max_new_tokens: int
    emit: Callable[[Event], object]
    session: str | None = None
    copies: int = 1  # sequences sampled from the one prompt (best-of-n)
    want_logprobs: bool = False
    avoid: tuple[tuple[int, ...], ...] = ()  # token ids of the texts whose phrases are not to be copied
    stop: threading.Event = field(default_factory=threading.Event)
