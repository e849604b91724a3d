"""The forward pass of a Llama-family model, written out: transformers' forward minus its machinery.

A decode step of a small model on a CPU is some 1,800 small operations, and transformers' forward adds
its own around them (keyword plumbing, mask building, the cache adapter, output records): for the
bundled 135M model about a quarter of a one-chat step (20 against 15 ms, int4, on an AVX-512 EPYC).
This module runs the same computation on the same weights (the loaded model's modules, in whatever
numeric format they are) and writes the same `BatchCache`, for prompts (one row, many new tokens) and
decode steps (many rows, one new token each) alike, with changes that alter the result by rounding only
(in float32, not at all beyond 1e-4):
- the q/k/v projections and the gate/up projections are each one product (their weights are joined
  once; the modules' own weights become views of the joined ones, so memory does not grow and
  transformers' forward, still used by the format calibration, reads the same numbers);
- rotary angles and the mask are computed once per pass, not once per layer;
- grouped-query attention runs in one `scaled_dot_product_attention` call without repeating the keys,
  without a mask when no row has padding, in the precision measured faster on this CPU, and prompts after
  a long history written out where that was measured faster (attention.py).

Only models whose forward this reproduces are accepted (`unsupported` says why not); the tests compare
this pass with transformers' forward on a tiny Llama, row by row, at several batch sizes and padding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from bot.llm.local.attention import Attention, allowed, measured
from bot.llm.local.int4 import PackedLinear
from bot.llm.local.kvcache import BatchCache

__all__ = ["JOINED", "LlamaForward", "unsupported"]

# the projections of a block multiplied as one product each (their weights joined, see _joined)
JOINED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))

_MODEL_TYPES = ("llama",)  # SmolLM, TinyLlama, Llama 2/3 and their fine-tunes
_ROPE_TYPES = (None, "default", "linear", "llama3", "yarn")  # fixed angles: inv_freq says it all

Projection = Callable[[torch.Tensor], torch.Tensor]


def unsupported(config: Any) -> str | None:
    """Why a model of this configuration cannot be run by `LlamaForward` (None: it can)."""
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


class _RMSNorm:
    """transformers' LlamaRMSNorm in one fused kernel: over [x, -x] the mean is zero and the variance is the
    mean of x², so torch's layer norm of that gives x / sqrt(mean(x²) + eps), of which the first half is
    kept. torch's own `rms_norm` is six operations on a CPU, this is four (8 against 14 us for one row on
    an AVX-512 EPYC, 61 norms a step). In float32 it differs by rounding (2e-9); in bfloat16 the weight is
    applied before rounding, not after: one unit in the last place."""

    def __init__(self, norm: Any) -> None:
        weight = norm.weight.data
        self._half, self._eps = weight.shape[0], float(norm.variance_epsilon)
        self._weight = torch.cat((weight, weight))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        both = torch.cat((x, x.neg()), dim=-1)
        normed = functional.layer_norm(both, (2 * self._half,), self._weight, None, self._eps)
        return normed[..., : self._half].contiguous()  # contiguous rows: what the products take as they are


def _rotated(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding: x * cos + rotate_half(x) * sin, where rotate_half(x) = cat(-x2, x1) is
    roll(x) = cat(x2, x1) with the sign folded into `signed_sin` (exactly the same numbers, two fewer ops)."""
    return x * cos + x.roll(x.shape[-1] // 2, -1) * signed_sin


def _joined(parts: list[Any]) -> Projection:
    """One product for several projections of the same input, outputs side by side."""
    if all(isinstance(part, PackedLinear) for part in parts):
        joined = PackedLinear.joined(parts)
        if joined is not None:
            return joined.forward
    if all(type(part) is nn.Linear and part.bias is None for part in parts):
        weight = torch.cat([part.weight.data for part in parts])
        views = torch.split(weight, [part.weight.shape[0] for part in parts])
        for part, view in zip(parts, views, strict=True):
            part.weight.data = view
        return lambda x: functional.linear(x, weight)
    return lambda x: torch.cat([part.forward(x) for part in parts], dim=-1)  # int8 dynamic: one by one


def _outputs(projection: Any) -> int:
    """Output size of a projection: nn.Linear, PackedLinear or a dynamically quantised linear layer."""
    size = getattr(projection, "out_features", None)
    return int(size if size is not None else projection.weight.shape[0])


class _Layer:
    def __init__(self, layer: Any) -> None:
        attention, mlp = layer.self_attn, layer.mlp
        self.norm_in = _RMSNorm(layer.input_layernorm)
        self.norm_post = _RMSNorm(layer.post_attention_layernorm)
        # the joined product's output: q and k (rotated together), then v
        self.split = [_outputs(attention.q_proj) + _outputs(attention.k_proj), _outputs(attention.v_proj)]
        self.intermediate = _outputs(mlp.gate_proj)
        self.qkv = _joined([attention.q_proj, attention.k_proj, attention.v_proj])
        # `forward` itself: a module's call adds its hook machinery, some 120 times a pass
        self.out: Projection = attention.o_proj.forward
        self.gate_up = _joined([mlp.gate_proj, mlp.up_proj])
        self.down: Projection = mlp.down_proj.forward


class LlamaForward:
    """Forward passes of a Llama-family model over the rows of a `BatchCache` (a `slots.Forward`)."""

    def __init__(self, model: Any, attention: torch.dtype | Attention | None = None) -> None:
        """`attention`: how attention runs, or the precision of torch's kernel for it (None: measured now,
        see attention.py)."""
        reason = unsupported(model.config)
        if reason is not None:
            raise ValueError(f"not a plain Llama decoder: {reason}")
        config, inner = model.config, model.model
        self._embed: Projection = inner.embed_tokens
        self._norm = _RMSNorm(inner.norm)
        self._head: Projection = model.lm_head
        self._inv_freq = inner.rotary_emb.inv_freq.float()
        self._rope_scale = float(inner.rotary_emb.attention_scaling)
        half = self._inv_freq.shape[0]
        self._sign = torch.cat((-torch.ones(half), torch.ones(half)))  # see _rotated
        self._heads, self._kv_heads = config.num_attention_heads, config.num_key_value_heads
        self._dim = getattr(config, "head_dim", None) or config.hidden_size // self._heads
        self._layers = [_Layer(layer) for layer in inner.layers[: config.num_hidden_layers]]
        if attention is None:
            dtype = inner.embed_tokens.weight.dtype
            self._attention = measured(dtype, self._heads, self._kv_heads, self._dim)
        else:
            self._attention = attention if isinstance(attention, Attention) else Attention(attention)

    @property
    def attention(self) -> Attention:
        """How attention runs, as measured on this CPU (see attention.py)."""
        return self._attention

    def __call__(self, tokens: torch.Tensor, positions: torch.Tensor, cache: BatchCache) -> torch.Tensor:
        """Feed `tokens[i]` (one or more new tokens) at `positions[i]` to row i of `cache`, both [rows, new]:
        the logits of each row's last new token, [rows, vocab]. The cache grows by `new` columns, as with
        transformers' forward."""
        (rows, new), hidden = tokens.shape, self._embed(tokens)
        x, dtype = hidden.reshape(rows * new, -1), hidden.dtype  # flat rows: products take them as they are
        angles = positions[..., None].float() * self._inv_freq
        angles = torch.cat((angles, angles), dim=-1)
        cos = (angles.cos() * self._rope_scale).to(dtype)[:, None]  # [rows, 1 (every head), new, dim]
        sin = (angles.sin() * self._rope_scale * self._sign).to(dtype)[:, None]
        seen = allowed(cache.attention_mask(new), new)
        heads, kv_heads, dim = self._heads, self._kv_heads, self._dim
        for index, layer in enumerate(self._layers):
            qk, v = torch.split(layer.qkv(layer.norm_in(x)), layer.split, dim=-1)
            # q's and k's heads rotated at once
            qk = _rotated(qk.reshape(rows, new, heads + kv_heads, dim).transpose(1, 2), cos, sin)
            q, k = qk[:, :heads], qk[:, heads:]
            keys, values = cache.write(index, k, v.reshape(rows, new, kv_heads, dim).transpose(1, 2))
            attended = self._attention(q, keys, values, seen).transpose(1, 2)
            x = x + layer.out(attended.reshape(rows * new, heads * dim))
            gate, up = torch.split(layer.gate_up(layer.norm_post(x)), layer.intermediate, dim=-1)
            x = x + layer.down(functional.silu(gate) * up)
        logits: torch.Tensor = self._head(self._norm(x.view(rows, new, -1)[:, -1]))
        return logits
