"""Attention for the engine's own forward pass (llama.py): which tokens each new one sees, and how torch's
CPU attention runs fastest here.

Both choices are measured when the engine starts, not assumed (0.2 to 0.6 s, and up to 0.2 s more for a
process's first bfloat16 calls, which the first reply would pay otherwise):
- the precision of torch's `scaled_dot_product_attention` kernel: for a bfloat16 model it was 3 to 5
  times faster in float32 (after casting) on an AVX512-BF16 EPYC (118 against 37 us for one row of 100
  tokens, 9 query and 3 key heads), and 2 to 10 times faster in bfloat16 on a Xeon with AMX (96 against
  997 us for one row of 1,400 tokens; 447 against 1,466 us for 16 rows of 300);
- which way decode steps and prompts of each size run (`Attention`): the kernel; the kernel "folded",
  in the model's dtype with the query heads that share a key head passed as one head's queries (decode
  steps only); or "written" out as two batched products and a softmax in the model's dtype. For a
  bfloat16 model on the AVX512-BF16 EPYC, the kernel's own grouped-query path and the cast of the cache
  were most of a step's attention: in the engine's forward, one chat's step after 300 tokens took 11.9
  against 13.5 ms (folded), a step of 16 chats with 350 tokens each 53.7 against 61.6 ms and with 800
  tokens 80 against 116 ms (written out), a 25-token prompt after 1,500 tokens 91 against 99 ms
  (written out). For a float32 model the kernel won nearly everywhere. Another way replaces the kernel
  only where it wins clearly (by `_MARGIN`), so that a coin toss of the timer does not decide.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.nn import functional

__all__ = ["Attention", "allowed", "measured"]

log = logging.getLogger(__name__)

# (rows, new tokens, keys) where the kernel's precision is measured: one chat's decode step, a batch of
# chats' step, a prompt
_SHAPES = ((1, 1, 512), (16, 1, 256), (1, 128, 128))
# where another way may win, by query-key pairs (rows x new tokens x keys, each a different count): decode
# steps of one chat over a short and a longer history and of several chats; a question's prompt after a
# short, a longer and a long history
_STEPS = ((1, 1, 128), (1, 1, 512), (1, 1, 1024), (4, 1, 512), (16, 1, 512))
_PROMPTS = ((1, 25, 128), (1, 25, 512), (1, 25, 2048))
_KERNEL = ((0, "kernel"),)  # torch's kernel for every size
_WAYS = ("kernel", "folded", "written")
_MARGIN = 0.9  # another way only where it took at most this share of the kernel's time: a clear win
_REPEATS = 5  # calls per shape, the fastest counts
_ROUNDS = 3  # after a warm-up round, the candidates in turn


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


Shape = tuple[int, int, int]  # (rows, new tokens, keys)
Way = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


class Attention:
    """Grouped-query attention of new queries against a row's keys, the result in the queries' dtype.

    `steps` and `prompts` list, for decode steps (one new token a row) and for prompts, the ways they run
    from a number of query-key pairs (rows x new tokens x keys) on, in increasing order, the first one
    for any size: "kernel" (torch's kernel in `precision` whatever the model's dtype), "folded" (the
    kernel in the model's dtype, the query heads that share a key head stacked as one head's queries: one
    new token a row only) or "written" (`_written_out`, in the model's dtype)."""

    def __init__(
        self,
        precision: torch.dtype,
        steps: Sequence[tuple[int, str]] = _KERNEL,
        prompts: Sequence[tuple[int, str]] = _KERNEL,
    ) -> None:
        self.precision = precision
        self.ways = {False: tuple(steps), True: tuple(prompts)}  # by "several new tokens"
        self._by_name: dict[str, Way] = {"kernel": self._kernel, "folded": _folded, "written": _written_out}

    def __call__(
        self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, seen: torch.Tensor | None
    ) -> torch.Tensor:
        """`seen`: what `allowed` returned; None with several queries is plain causal attention."""
        rows, _, new, _ = q.shape
        pairs, ways = rows * new * keys.shape[2], self.ways[new > 1]
        way = next((name for start, name in reversed(ways) if pairs >= start), ways[0][1])
        return self._by_name[way](q, keys, values, seen)

    def _kernel(
        self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, seen: torch.Tensor | None
    ) -> torch.Tensor:
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

    def to_dict(self) -> dict[str, Any]:
        """What was chosen, for the format calibration's cache (`from_dict` reads it back)."""
        return {
            "precision": str(self.precision).removeprefix("torch."),
            "steps": [list(way) for way in self.ways[False]],
            "prompts": [list(way) for way in self.ways[True]],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attention:
        def ways(kind: str, known: tuple[str, ...]) -> list[tuple[int, str]]:
            return [(int(start), str(name)) for start, name in data[kind] if name in known]

        steps, prompts = ways("steps", _WAYS), ways("prompts", ("kernel", "written"))  # folded: steps only
        return cls(getattr(torch, data["precision"]), steps or _KERNEL, prompts or _KERNEL)

    def __str__(self) -> str:
        def ways(kind: Sequence[tuple[int, str]]) -> str:
            return kind[0][1] + "".join(f", {name} from {start} query-key pairs" for start, name in kind[1:])

        precision, steps, prompts = str(self.precision), ways(self.ways[False]), ways(self.ways[True])
        return f"kernel in {precision.removeprefix('torch.')}; steps: {steps}; prompts: {prompts}"


def _folded(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, seen: torch.Tensor | None
) -> torch.Tensor:
    """The kernel in the model's dtype for one new token a row, the `group` query heads that share a key
    head passed as that head's `group` queries: no copy of the keys, no cast (a bfloat16 step of 16 rows
    over 350 keys took 385 against 7,117 us with the kernel's own grouped-query path, on the AVX512-BF16
    EPYC). Each row's mask is the same for all its queries, so it applies as it is."""
    rows, heads, _, dim = q.shape
    kv_heads = keys.shape[1]
    stacked = q.reshape(rows, kv_heads, heads // kv_heads, dim)
    return functional.scaled_dot_product_attention(stacked, keys, values, attn_mask=seen).view(
        rows, heads, 1, dim
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
    precision (`dtype` or float32; a float32 model needs no choice), and the way decode steps and prompts
    of each size run."""
    candidates = (dtype,) if dtype == torch.float32 else (dtype, torch.float32)

    def inputs(shapes: tuple[Shape, ...]) -> list[Inputs]:
        return [_inputs(shape, dtype, heads, kv_heads, dim) for shape in shapes]

    with torch.inference_mode():
        times = _fastest({str(p): Attention(p)._kernel for p in candidates}, inputs(_SHAPES))
        precision = min(candidates, key=lambda p: sum(times[str(p)]))
        kernel = Attention(precision)._kernel
        steps = _fastest({"kernel": kernel, "folded": _folded, "written": _written_out}, inputs(_STEPS))
        prompts = _fastest({"kernel": kernel, "written": _written_out}, inputs(_PROMPTS))
    chosen = Attention(precision, _chosen(_STEPS, steps), _chosen(_PROMPTS, prompts))
    log.info(
        "attention: %s (measured here: %s; steps %s; prompts %s)",
        chosen,
        ", ".join(f"{name.removeprefix('torch.')} {sum(t) * 1e6:.0f} us" for name, t in times.items()),
        _shown(_STEPS, steps),
        _shown(_PROMPTS, prompts),
    )
    return chosen


def _pairs(shape: Shape) -> int:
    rows, new, keys = shape
    return rows * new * keys


def _chosen(shapes: tuple[Shape, ...], times: dict[str, list[float]]) -> list[tuple[int, str]]:
    """From how many query-key pairs each way runs: at each shape measured (by increasing pairs), the
    fastest other way if it clearly beat the kernel (by `_MARGIN`), else the kernel; the smallest shape's
    way for anything smaller."""
    ways: list[tuple[int, str]] = []
    for index in sorted(range(len(shapes)), key=lambda i: _pairs(shapes[i])):
        others = {name: seconds[index] for name, seconds in times.items() if name != "kernel"}
        best = min(others, key=others.__getitem__)
        way = best if others[best] < _MARGIN * times["kernel"][index] else "kernel"
        if not ways or way != ways[-1][1]:
            ways.append((_pairs(shapes[index]) if ways else 0, way))
    return ways


def _shown(shapes: tuple[Shape, ...], times: dict[str, list[float]]) -> str:
    """ "1x1x128: kernel 41 folded 23 written 76 us, ..." (numbers between words: the log's redaction
    takes runs of numbers for phone or card numbers)."""
    return ", ".join(
        f"{rows}x{new}x{keys}: "
        + " ".join(f"{name} {seconds[index] * 1e6:.0f}" for name, seconds in times.items())
        + " us"
        for index, (rows, new, keys) in enumerate(shapes)
    )


Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]


def _fastest(candidates: dict[str, Way], inputs: list[Inputs]) -> dict[str, list[float]]:
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


def _inputs(shape: Shape, dtype: torch.dtype, heads: int, kv_heads: int, dim: int) -> Inputs:
    """Random inputs of a shape; keys and values are views of a longer buffer, as the cache hands them out
    (casting a strided view to float32 costs more than a contiguous tensor)."""
    rows, new, keys = shape
    q = torch.randn(rows, heads, new, dim, dtype=dtype)
    k, v = (torch.randn(rows, kv_heads, 2 * keys, dim, dtype=dtype)[:, :, :keys] for _ in range(2))
    return q, k, v, allowed(torch.ones(rows, keys, dtype=torch.long), new)


def _timed(
    attention: Way, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seen: torch.Tensor | None
) -> float:
    started = time.perf_counter()
    attention(q, k, v, seen)
    return time.perf_counter() - started
