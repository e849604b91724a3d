"""How fast a model decodes and reads a prompt, measured through the forward pass the engine runs it with.

The format calibration (formats.py) compares numeric formats by these rates. They are taken through the
engine's own forward for the models it reproduces (llama.py, with its measured attention) and through
transformers' forward for the others, over a cache as the scheduler builds it: the rows of a batch start
from a history of some hundred tokens each (a system prompt and a turn or two), since attention over the
history is part of what a format costs (timed over an eight-token prompt, the bfloat16 formats lost the
16-chat comparison on an AVX512-BF16 EPYC that they won in the engine's own steps).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from bot.llm.local.attention import Attention
from bot.llm.local.hf_cache import TransformersForward
from bot.llm.local.kvcache import BatchCache
from bot.llm.local.llama import LlamaForward, unsupported
from bot.llm.local.slots import Forward

__all__ = ["decode_rate", "forward_pass", "layer_count", "prefill_rate"]

log = logging.getLogger(__name__)


def forward_pass(model: Any, *, lean: bool, attention: Attention | None = None) -> Forward:
    """The engine's own forward pass for the models it reproduces (with `attention`, or attention measured
    now), transformers' for the others."""
    reason = unsupported(model.config) if lean else "ENGINE_LEAN_FORWARD=false"
    if reason is None:
        log.info("forward passes: the engine's own Llama forward")
        return LlamaForward(model, attention)
    log.info("forward passes: transformers' forward (%s)", reason)
    return TransformersForward(model)


def layer_count(model: Any) -> int:
    return int(model.config.get_text_config(decoder=True).num_hidden_layers)


def decode_rate(forward: Forward, layers: int, history: torch.Tensor, rows: int, steps: int) -> float:
    """Decode tokens/s of `rows` sequences that each hold `history` ([1, tokens]): one warm-up step, then
    `steps` one-token steps."""
    length = history.shape[1]
    with torch.inference_mode():
        one = BatchCache(layers, 1, reserve=length)
        forward(history, torch.arange(length)[None], one)
        cache = BatchCache(layers, rows)
        for row in range(rows):
            cache.place(row, one.whole())
        token = history[:, -1:].expand(rows, 1)
        started = 0.0
        for step in range(1 + steps):
            if step == 1:
                started = time.perf_counter()
            logits = forward(token, torch.full((rows, 1), length + step), cache)
            token = logits.argmax(-1, keepdim=True)
        elapsed = time.perf_counter() - started
    return rows * steps / max(elapsed, 1e-9)


def prefill_rate(forward: Forward, layers: int, ids: torch.Tensor) -> float:
    """Prompt tokens/s: the best of two passes over `ids` ([1, tokens]) into an empty cache, after a
    warm-up pass."""
    length = ids.shape[1]
    positions = torch.arange(length)[None]
    best = float("inf")
    with torch.inference_mode():
        for attempt in range(3):
            cache = BatchCache(layers, 1, reserve=length)
            started = time.perf_counter()
            forward(ids, positions, cache)
            if attempt:
                best = min(best, time.perf_counter() - started)
    return length / max(best, 1e-9)
