"""Attention for the engine's own forward pass (llama.py): which tokens each new one sees, and how torch's
CPU attention runs fastest here.

Both choices are measured when the engine starts, not assumed (some 0.3 s, and up to 0.2 s more for a
process's first bfloat16 calls, which the first reply would pay otherwise):
- the precision of `scaled_dot_product_attention`: for a bfloat16 model it was 3 to 5 times faster in
  float32 (after casting) on an AVX512-BF16 EPYC (118 against 37 us for one row of 100 tokens, 9 query
  and 3 key heads), and 2 to 10 times faster in bfloat16 on a Xeon with AMX (96 against 997 us for one
  row of 1,400 tokens; 447 against 1,466 us for 16 rows of 300);
- from how many query-key pairs (rows x new tokens x keys) decode steps, and prompts, go written out
  instead: two batched products in the model's dtype, with the query heads that share a key head stacked
  into one matrix, and a softmax between them. On the AVX512-BF16 EPYC, in the engine's own forward, a
  step of 16 chats with 350 cached tokens each took 60 against 69 ms written out, with 800 tokens 75
  against 127 ms; a 25-token prompt after 1,500 cached tokens 93 against 131 ms. One chat with a short
  history and short prompts stay faster with the kernel, and in float32 writing it out won nowhere.
  Each is chosen only where it wins clearly (by `_MARGIN`), so that a coin toss of the timer does not
  flip it from one start to the next.
"""

from __future__ import annotations

import logging
import time

import torch
from torch.nn import functional

__all__ = ["Attention", "allowed", "measured"]

log = logging.getLogger(__name__)

# (rows, new tokens, keys): one chat's decode step, a batch of chats' step, a prompt
_SHAPES = ((1, 1, 512), (16, 1, 256), (1, 128, 128))
# where writing it out may start to win, in query-key pairs (rows x new tokens x keys): decode steps of
# one chat and of several, a question's prompt after a short and a long history, a first prompt alone
_STEPS = ((1, 1, 128), (1, 1, 512), (4, 1, 512), (1, 1, 2048), (16, 1, 512))
_PROMPTS = ((1, 25, 128), (1, 25, 512), (1, 128, 128), (1, 25, 2048))
_MARGIN = 0.9  # written out only where it took at most this share of the kernel's time: a clear win
_REPEATS = 3  # calls per shape, the fastest counts
_ROUNDS = 2  # after a warm-up round, the candidates in turn


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
    """Grouped-query attention of new queries against a row's keys: by torch's kernel in `precision`
    whatever the model's dtype, or written out in the model's dtype from `steps` query-key pairs (rows x
    keys) for decode steps and from `prompts` pairs (rows x new tokens x keys) for prompts (None: never).
    The result comes back in the queries' dtype."""

    def __init__(self, precision: torch.dtype, steps: int | None = None, prompts: int | None = None) -> None:
        self.precision = precision
        self.written_from = {False: steps, True: prompts}  # by "several new tokens"

    def __call__(
        self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, seen: torch.Tensor | None
    ) -> torch.Tensor:
        """`seen`: what `allowed` returned; None with several queries is plain causal attention."""
        rows, _, new, _ = q.shape
        limit = self.written_from[new > 1]
        if limit is not None and rows * new * keys.shape[2] >= limit:
            return _written_out(q, keys, values, seen)
        dtype, precision = q.dtype, self.precision
        out = functional.scaled_dot_product_attention(
            q.to(precision),
            keys.to(precision),
            values.to(precision),
            attn_mask=seen,
            is_causal=seen is None and new > 1,
            enable_gqa=True,
        )
        return out.to(dtype)

    def __str__(self) -> str:
        def written(limit: int | None) -> str:
            return "never" if limit is None else f"from {limit} query-key pairs"

        steps, prompts = self.written_from[False], self.written_from[True]
        return (
            f"{str(self.precision).removeprefix('torch.')}; written out: steps {written(steps)}, "
            f"prompts {written(prompts)}"
        )


def _written_out(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, seen: torch.Tensor | None
) -> torch.Tensor:
    """softmax(q k^T / sqrt(dim)) v with the `group` query heads that share a key head stacked into one
    matrix per key head (two well-shaped products instead of `group` thin ones)."""
    rows, heads, new, dim = q.shape
    kv_heads, columns = keys.shape[1], keys.shape[2]
    group = heads // kv_heads
    # query head i uses key head i // group, so the heads of a group are adjacent
    stacked = (q * dim**-0.5).reshape(rows, kv_heads, group * new, dim)
    # the cache's keys are a view of a longer buffer: bfloat16 products over it ran 5 times slower than
    # copying it first (599 against 38 + 109 us, 16 rows of 512 keys); float32 ones ran the same
    keys = keys if keys.dtype == torch.float32 else keys.contiguous()
    scores = torch.matmul(stacked, keys.transpose(-1, -2)).view(rows, kv_heads, group, new, columns)
    if seen is None and new > 1:  # plain causal: only the new tokens' own columns hide anything
        hidden = torch.ones(new, new, dtype=torch.bool).triu(1)
        scores[..., columns - new :].masked_fill_(hidden, float("-inf"))
    elif seen is not None:
        scores.masked_fill_(~seen[:, :, None], float("-inf"))
    weights = torch.softmax(scores.view(rows, kv_heads, group * new, columns), dim=-1)
    return torch.matmul(weights, values).view(rows, heads, new, dim)


def measured(dtype: torch.dtype, heads: int, kv_heads: int, dim: int) -> Attention:
    """The attention measured fastest on this CPU for a model of this dtype and these heads: the kernel's
    precision (`dtype` or float32; a float32 model needs no choice), and from how many query-key pairs
    decode steps and prompts go written out."""
    candidates = (dtype,) if dtype == torch.float32 else (dtype, torch.float32)

    def inputs(shapes: tuple[tuple[int, int, int], ...]) -> list[Inputs]:
        return [_inputs(shape, dtype, heads, kv_heads, dim) for shape in shapes]

    with torch.inference_mode():
        times = _fastest({str(p): Attention(p) for p in candidates}, inputs(_SHAPES))
        precision = min(candidates, key=lambda p: sum(times[str(p)]))
        ways = {"kernel": Attention(precision), "written": Attention(precision, steps=0, prompts=0)}
        steps, prompts = _fastest(ways, inputs(_STEPS)), _fastest(ways, inputs(_PROMPTS))
    chosen = Attention(precision, _crossover(_STEPS, steps), _crossover(_PROMPTS, prompts))
    log.info(
        "attention: %s (measured here: %s; steps %s, prompts %s)",
        chosen,
        ", ".join(f"{name.removeprefix('torch.')} {sum(t) * 1e6:.0f} us" for name, t in times.items()),
        _shown(_STEPS, steps),
        _shown(_PROMPTS, prompts),
    )
    return chosen


def _pairs(shape: tuple[int, int, int]) -> int:
    rows, new, keys = shape
    return rows * new * keys


def _crossover(shapes: tuple[tuple[int, int, int], ...], times: dict[str, list[float]]) -> int | None:
    """The fewest query-key pairs from which writing it out won (by a margin) at every larger shape
    measured."""
    order = sorted(range(len(shapes)), key=lambda index: _pairs(shapes[index]))
    wins = [times["written"][index] < _MARGIN * times["kernel"][index] for index in order]
    start = next((i for i in range(len(wins)) if all(wins[i:])), None)
    return None if start is None else _pairs(shapes[order[start]])


def _shown(shapes: tuple[tuple[int, int, int], ...], times: dict[str, list[float]]) -> str:
    """ "rows x new x keys kernel/written us, ..." (no run of bare digits: the log's redaction takes those
    for card numbers)."""
    return ", ".join(
        f"{rows}x{new}x{keys} {kernel * 1e6:.0f}/{written * 1e6:.0f} us"
        for (rows, new, keys), kernel, written in zip(shapes, times["kernel"], times["written"], strict=True)
    )


Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]


def _fastest(candidates: dict[str, Attention], inputs: list[Inputs]) -> dict[str, list[float]]:
    """The fastest of a few calls of each candidate on each input, after a warm-up round (the first
    bfloat16 calls of a process took 8 ms instead of 40 us for a whole round of calls on an AMX Xeon:
    kernels prepared, threads woken), the candidates taking turns."""
    best = {name: [float("inf")] * len(inputs) for name in candidates}
    for _round in range(1 + _ROUNDS):
        for name, attention in candidates.items():
            for index, args in enumerate(inputs):
                seconds = min(_timed(attention, *args) for _ in range(_REPEATS))
                if _round:
                    best[name][index] = min(best[name][index], seconds)
    return best


def _inputs(shape: tuple[int, int, int], dtype: torch.dtype, heads: int, kv_heads: int, dim: int) -> Inputs:
    """Random inputs of a shape; keys and values are views of a longer buffer, as the cache hands them out
    (casting a strided view to float32 costs more than a contiguous tensor)."""
    rows, new, keys = shape
    q = torch.randn(rows, heads, new, dim, dtype=dtype)
    k, v = (torch.randn(rows, kv_heads, 2 * keys, dim, dtype=dtype)[:, :, :keys] for _ in range(2))
    return q, k, v, allowed(torch.ones(rows, keys, dtype=torch.long), new)


def _timed(
    attention: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seen: torch.Tensor | None
) -> float:
    started = time.perf_counter()
    attention(q, k, v, seen)
    return time.perf_counter() - started
