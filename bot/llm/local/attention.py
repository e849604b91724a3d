"""Attention for the engine's own forward pass (llama.py): which tokens each new one sees, and in what
precision torch's CPU attention runs fastest here.

The precision is measured, not assumed: for a bfloat16 model torch's `scaled_dot_product_attention` was 3
to 5 times faster in float32 (after casting) on an AVX512-BF16 EPYC (118 against 37 us for one row of
100 tokens, 9 query and 3 key heads), and 2 to 10 times faster in bfloat16 on a Xeon with AMX (96 against
997 us for one row of 1,400 tokens; 447 against 1,466 us for 16 rows of 300). `faster_precision` times both
on a few typical shapes when the engine starts (some 60 ms, and up to 0.2 s more for a process's first
bfloat16 calls, which the first reply would pay otherwise) and the faster one is used for every pass.
"""

from __future__ import annotations

import logging
import time

import torch
from torch.nn import functional

__all__ = ["Attention", "allowed", "faster_precision"]

log = logging.getLogger(__name__)

# (rows, new tokens, keys): one chat's decode step, a batch of chats' step, a prompt
_SHAPES = ((1, 1, 512), (16, 1, 256), (1, 128, 128))
_REPEATS = 3  # calls per shape, the fastest counts
_ROUNDS = 2  # after a warm-up round, both precisions in turn


def allowed(mask: torch.Tensor, new: int) -> torch.Tensor | None:
    """Which keys each new token may attend to, [rows, 1, new, columns]. `mask`: [rows, columns], 1 for a
    real token and 0 for padding; its last `new` columns are the new tokens, each of which sees the new
    tokens before it and itself, not those after. None when that is every key (one new token), or plain
    causal attention (nothing but new tokens), and no row has padding."""
    columns = mask.shape[1]
    if (new == 1 or new == columns) and bool(mask.all()):
        return None
    seen = mask.bool()[:, None, :].expand(-1, new, -1)
    if new > 1:
        seen = seen & torch.ones(new, columns, dtype=torch.bool).tril(columns - new)
    return seen[:, None]


class Attention:
    """Grouped-query attention of new queries against a row's keys, in `precision` whatever the model's
    dtype; the result comes back in the queries' dtype."""

    def __init__(self, precision: torch.dtype) -> None:
        self.precision = precision

    def __call__(
        self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, seen: torch.Tensor | None
    ) -> torch.Tensor:
        """`seen`: what `allowed` returned; None with several queries is plain causal attention."""
        dtype, precision = q.dtype, self.precision
        out = functional.scaled_dot_product_attention(
            q.to(precision),
            keys.to(precision),
            values.to(precision),
            attn_mask=seen,
            is_causal=seen is None and q.shape[2] > 1,
            enable_gqa=True,
        )
        return out.to(dtype)


def faster_precision(dtype: torch.dtype, heads: int, kv_heads: int, dim: int) -> torch.dtype:
    """`dtype` or float32, whichever attends faster on this CPU for a model with these heads."""
    if dtype == torch.float32:
        return dtype
    candidates = (dtype, torch.float32)
    best: dict[tuple[torch.dtype, int], float] = {}
    with torch.inference_mode():
        inputs = [_inputs(shape, dtype, heads, kv_heads, dim) for shape in _SHAPES]
        # the first round only warms up: the first bfloat16 calls of a process took 8 ms instead of 40 us
        # for a whole round of calls on an AMX Xeon (kernels prepared, threads woken)
        for _round in range(1 + _ROUNDS):
            for precision in candidates:
                attention = Attention(precision)
                for index, args in enumerate(inputs):
                    seconds = min(_timed(attention, *args) for _ in range(_REPEATS))
                    if _round:
                        key = (precision, index)
                        best[key] = min(best.get(key, seconds), seconds)
    times = {p: sum(best[p, index] for index in range(len(_SHAPES))) for p in candidates}
    chosen = min(candidates, key=lambda precision: times[precision])
    log.info(
        "attention in %s (measured here: %s)",
        str(chosen).removeprefix("torch."),
        ", ".join(f"{str(p).removeprefix('torch.')} {t * 1e6:.0f} us" for p, t in times.items()),
    )
    return chosen


Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]


def _inputs(shape: tuple[int, int, int], dtype: torch.dtype, heads: int, kv_heads: int, dim: int) -> Inputs:
    rows, new, keys = shape
    q = torch.randn(rows, heads, new, dim, dtype=dtype)
    k, v = (torch.randn(rows, kv_heads, keys, dim, dtype=dtype) for _ in range(2))
    return q, k, v, allowed(torch.ones(rows, keys, dtype=torch.long), new)


def _timed(
    attention: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seen: torch.Tensor | None
) -> float:
    started = time.perf_counter()
    attention(q, k, v, seen)
    return time.perf_counter() - started
