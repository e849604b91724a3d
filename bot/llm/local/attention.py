"""Attention for the engine's own forward pass (llama.py): which tokens each new one sees, and how torch's
CPU attention runs fastest here.

Both choices are measured when the engine starts, not assumed (some 0.1 s, and up to 0.2 s more for a
process's first bfloat16 calls, which the first reply would pay otherwise):
- the precision of `scaled_dot_product_attention`: for a bfloat16 model it was 3 to 5 times faster in
  float32 (after casting) on an AVX512-BF16 EPYC (118 against 37 us for one row of 100 tokens, 9 query
  and 3 key heads), and 2 to 10 times faster in bfloat16 on a Xeon with AMX (96 against 997 us for one
  row of 1,400 tokens; 447 against 1,466 us for 16 rows of 300);
- from how many keys a prompt (several new tokens) attends written out instead: two batched products in
  the model's dtype with the query heads of a key head stacked into one matrix, and a softmax between
  them. On the AVX512-BF16 EPYC that took 477-598 against 792-884 us for a 25-token prompt after 1,500
  cached tokens (a question late in a conversation) and 711 against 1,174 us for 80 after 800, but lost
  on short histories (139 against 99 us for 25 after 100); in float32 it lost everywhere.
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
# keys behind a typical question's prompt (25 new tokens): where the written-out form may start to win
_PROMPT_NEW, _PROMPT_KEYS = 25, (128, 256, 512, 1024, 2048)
_REPEATS = 3  # calls per shape, the fastest counts
_ROUNDS = 2  # after a warm-up round, both candidates in turn


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
    whatever the model's dtype, or, for prompts over at least `written_from` keys (None: never), written
    out in the model's dtype. The result comes back in the queries' dtype."""

    def __init__(self, precision: torch.dtype, written_from: int | None = None) -> None:
        self.precision = precision
        self.written_from = written_from

    def __call__(
        self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, seen: torch.Tensor | None
    ) -> torch.Tensor:
        """`seen`: what `allowed` returned; None with several queries is plain causal attention."""
        new = q.shape[2]
        if new > 1 and self.written_from is not None and keys.shape[2] >= self.written_from:
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
        written = "never" if self.written_from is None else f"from {self.written_from} keys"
        return f"{str(self.precision).removeprefix('torch.')}, prompts written out {written}"


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
    scores = torch.matmul(stacked, keys.transpose(-1, -2)).view(rows, kv_heads, group, new, columns)
    if seen is None:  # plain causal: only the new tokens' own columns hide anything
        hidden = torch.ones(new, new, dtype=torch.bool).triu(1)
        scores[..., columns - new :].masked_fill_(hidden, float("-inf"))
    else:
        scores.masked_fill_(~seen[:, :, None], float("-inf"))
    weights = torch.softmax(scores.view(rows, kv_heads, group * new, columns), dim=-1)
    return torch.matmul(weights, values).view(rows, heads, new, dim)


def measured(dtype: torch.dtype, heads: int, kv_heads: int, dim: int) -> Attention:
    """The attention measured fastest on this CPU for a model of this dtype and these heads: the kernel's
    precision (`dtype` or float32; a float32 model needs no choice) and where prompts go written out."""
    candidates = (dtype,) if dtype == torch.float32 else (dtype, torch.float32)
    with torch.inference_mode():
        steps = [_inputs(shape, dtype, heads, kv_heads, dim) for shape in _SHAPES]
        times = _fastest({str(p): Attention(p) for p in candidates}, steps)
        precision = min(candidates, key=lambda p: sum(times[str(p)]))
        shapes = [(1, _PROMPT_NEW, keys) for keys in _PROMPT_KEYS]
        prompts = [_inputs(shape, dtype, heads, kv_heads, dim) for shape in shapes]
        ways = {"kernel": Attention(precision), "written": Attention(precision, written_from=0)}
        prompt_times = _fastest(ways, prompts)
    wins = [w < k for w, k in zip(prompt_times["written"], prompt_times["kernel"], strict=True)]
    # from the fewest keys at which writing it out wins at every larger count measured
    start = next((i for i in range(len(wins)) if all(wins[i:])), None)
    chosen = Attention(precision, None if start is None else _PROMPT_KEYS[start])
    log.info(
        "attention in %s (measured here: %s; a %d-token prompt over %s keys: %s)",
        chosen,
        ", ".join(f"{name.removeprefix('torch.')} {sum(t) * 1e6:.0f} us" for name, t in times.items()),
        _PROMPT_NEW,
        "/".join(map(str, _PROMPT_KEYS)),
        ", ".join(f"{name} {'/'.join(f'{s * 1e6:.0f}' for s in t)} us" for name, t in prompt_times.items()),
    )
    return chosen


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
