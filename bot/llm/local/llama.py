"""A decode step of a Llama-family model, written out: transformers' forward minus its per-layer machinery.

A decode step of a small model on a CPU is some 1,800 small operations, and transformers' forward adds
its own around them (keyword plumbing, mask building, the cache adapter, output records): for the
bundled 135M model about a quarter of a one-chat step (20 against 15 ms, int4, on an AVX-512 EPYC).
This module runs the same computation on the same weights (the loaded model's modules, in whatever
numeric format they are) and writes the same `BatchCache`, with changes that alter the result by
rounding only (in float32, not at all beyond 1e-4; for a bfloat16 model the float32 attention is the
more exact):
- the q/k/v projections and the gate/up projections are each one product (their weights are joined
  once; the modules' own weights become views of the joined ones, so memory does not grow and
  transformers' forward, still used for prompts, reads the same numbers);
- rotary angles and the padding mask are computed once per step, not once per layer;
- grouped-query attention runs in one `scaled_dot_product_attention` call without repeating the keys,
  in float32 (see `_attention`), without a mask when no row has padding.

Only models whose forward this reproduces are accepted (`unsupported` says why not); the tests compare
this step with transformers' forward on a tiny Llama, row by row, at several batch sizes and padding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from bot.llm.local.int4 import PackedLinear
from bot.llm.local.kvcache import BatchCache

__all__ = ["LlamaDecode", "unsupported"]

_MODEL_TYPES = ("llama",)  # SmolLM, TinyLlama, Llama 2/3 and their fine-tunes
_ROPE_TYPES = (None, "default", "linear", "llama3", "yarn")  # fixed angles: inv_freq says it all

Projection = Callable[[torch.Tensor], torch.Tensor]


def unsupported(model: Any) -> str | None:
    """Why `model`'s decode step cannot be run by `LlamaDecode` (None: it can)."""
    config = model.config
    if config.model_type not in _MODEL_TYPES:
        return f"model type {config.model_type!r}"
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    checks = {
        "biases": bool(getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False)),
        f"activation {config.hidden_act!r}": config.hidden_act != "silu",
        f"rope type {rope.get('rope_type')!r}": rope.get("rope_type") not in _ROPE_TYPES,
        "tensor-parallel pretraining layout": getattr(config, "pretraining_tp", 1) != 1,
    }
    return next((reason for reason, failed in checks.items() if failed), None)


def _rms(x: torch.Tensor, norm: Any) -> torch.Tensor:
    """transformers' LlamaRMSNorm, step for step (float32 inside, the weight applied in x's dtype)."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    out: torch.Tensor = norm.weight * h.to(x.dtype)
    return out


def _rotated(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def _attention(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """One new query per row against its cached keys, in float32 whatever the model's dtype: torch's CPU
    attention in bfloat16 took 3 to 5 times as long as casting to float32 and attending there (measured on
    an AVX512-BF16 EPYC, 9 query and 3 key heads: 118 against 37 us for one row of 100 tokens, 2.5 against
    0.42 ms for 16 rows of 300), and float32 is the more exact of the two."""
    mask = None if bias is None else bias[:, None, None, :]
    return functional.scaled_dot_product_attention(
        q.float(), keys.float(), values.float(), attn_mask=mask, enable_gqa=True
    )


def _joined(parts: list[Any]) -> Projection:
    """One product for several projections of the same input, outputs side by side."""
    if all(isinstance(part, PackedLinear) for part in parts):
        joined = PackedLinear.joined(parts)
        if joined is not None:
            return joined
    if all(type(part) is nn.Linear and part.bias is None for part in parts):
        weight = torch.cat([part.weight.data for part in parts])
        views = torch.split(weight, [part.weight.shape[0] for part in parts])
        for part, view in zip(parts, views, strict=True):
            part.weight.data = view
        return lambda x: functional.linear(x, weight)
    return lambda x: torch.cat([part(x) for part in parts], dim=-1)  # int8 dynamic: called one by one


def _outputs(projection: Any) -> int:
    """Output size of a projection: nn.Linear, PackedLinear or a dynamically quantised linear layer."""
    size = getattr(projection, "out_features", None)
    return int(size if size is not None else projection.weight.shape[0])


class _Layer:
    def __init__(self, layer: Any) -> None:
        attention, mlp = layer.self_attn, layer.mlp
        self.norm_in: Any = layer.input_layernorm
        self.norm_post: Any = layer.post_attention_layernorm
        # the joined product's output: q and k (rotated together), then v
        self.split = [_outputs(attention.q_proj) + _outputs(attention.k_proj), _outputs(attention.v_proj)]
        self.intermediate = _outputs(mlp.gate_proj)
        self.qkv = _joined([attention.q_proj, attention.k_proj, attention.v_proj])
        self.out: Projection = attention.o_proj
        self.gate_up = _joined([mlp.gate_proj, mlp.up_proj])
        self.down: Projection = mlp.down_proj


class LlamaDecode:
    """Decode steps of a Llama-family model: one new token per row of a `BatchCache`."""

    def __init__(self, model: Any) -> None:
        reason = unsupported(model)
        if reason is not None:
            raise ValueError(f"not a plain Llama decoder: {reason}")
        config, inner = model.config, model.model
        self._embed: Projection = inner.embed_tokens
        self._norm: Any = inner.norm
        self._head: Projection = model.lm_head
        self._inv_freq = inner.rotary_emb.inv_freq.float()
        self._rope_scale = float(inner.rotary_emb.attention_scaling)
        self._heads, self._kv_heads = config.num_attention_heads, config.num_key_value_heads
        self._dim = getattr(config, "head_dim", None) or config.hidden_size // self._heads
        self._layers = [_Layer(layer) for layer in inner.layers[: config.num_hidden_layers]]

    def __call__(self, tokens: torch.Tensor, positions: torch.Tensor, cache: BatchCache) -> torch.Tensor:
        """Feed `tokens[i]` at position `positions[i]` to row i of `cache`: the next-token logits, [rows,
        vocab]. The cache grows by one column, as with transformers' forward."""
        x = self._embed(tokens[:, None])[:, 0]  # ids shaped as transformers' forward passes them
        rows, dtype = x.shape[0], x.dtype
        angles = positions[:, None].float() * self._inv_freq[None]
        angles = torch.cat((angles, angles), dim=-1)
        cos = (angles.cos() * self._rope_scale).to(dtype)[:, None, None, :]
        sin = (angles.sin() * self._rope_scale).to(dtype)[:, None, None, :]
        mask = cache.attention_mask(1)  # 1: a token the row attends to; 0: padding
        bias = None if bool(mask.all()) else torch.zeros(mask.shape).masked_fill_(mask == 0, -torch.inf)
        heads, kv_heads, dim = self._heads, self._kv_heads, self._dim
        for index, layer in enumerate(self._layers):
            qk, v = torch.split(layer.qkv(_rms(x, layer.norm_in)), layer.split, dim=-1)
            qk = _rotated(qk.reshape(rows, heads + kv_heads, 1, dim), cos, sin)  # q's and k's heads at once
            q, k = qk[:, :heads], qk[:, heads:]
            keys, values = cache.write(index, k, v.reshape(rows, kv_heads, 1, dim))
            attended = _attention(q, keys, values, bias).to(dtype)
            x = x + layer.out(attended.reshape(rows, heads * dim))
            gate, up = torch.split(layer.gate_up(_rms(x, layer.norm_post)), layer.intermediate, dim=-1)
            x = x + layer.down(functional.silu(gate) * up)
        logits: torch.Tensor = self._head(_rms(x, self._norm))
        return logits
