"""A Llama-family model's configuration, modules and weights, read without transformers' modeling code.

`from_pretrained` of a Llama imports transformers' modeling machinery: its attention masks (which import
torch._dynamo and sympy) and its distributed loading (torch.distributed.tensor, which even `LlamaConfig`
imports), 1.3 to 1.7 s of a 4-second start on two cores (measured on an AVX-512 EPYC; docs/benchmarks.md).
The engine's own forward (llama.py) needs none of it: only the modules and their weights. Here they are
built with the module and parameter names of transformers' `LlamaForCausalLM`, so the numeric formats,
the packed weights saved per module name and `llama.LlamaForward` apply unchanged, from the same
safetensors files; the configuration is transformers' base class with `LlamaConfig`'s defaults. The
tests compare the result with transformers' model: logits, cache and the modules it imports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import GenerationConfig
from transformers.configuration_utils import PretrainedConfig

__all__ = ["LlamaModules", "llama_config", "load_llama"]

# LlamaConfig's defaults for what a config.json may leave out (transformers 5)
_DEFAULTS = {
    "tie_word_embeddings": False,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
    "attention_bias": False,
    "mlp_bias": False,
    "pretraining_tp": 1,
    "max_position_embeddings": 2048,
    "head_dim": None,
}


def llama_config(location: Path) -> PretrainedConfig | None:
    """The configuration in `location` when it is a Llama with plain rotary embeddings (None otherwise:
    other rotary types need transformers' `LlamaConfig` to be read right)."""
    try:
        values = json.loads((location / "config.json").read_text())
    except (OSError, ValueError):
        return None
    legacy = {"rope_type": "default", "rope_theta": values.get("rope_theta", 10000.0)}
    rope = values.get("rope_parameters") or (None if values.get("rope_scaling") else legacy)
    if values.get("model_type") != "llama" or not rope or rope.get("rope_type") != "default":
        return None
    values = {**_DEFAULTS, "num_key_value_heads": values.get("num_attention_heads"), **values}
    return PretrainedConfig(**{**values, "rope_parameters": rope})


class _Norm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.variance_epsilon = eps


def _linear(inputs: int, outputs: int) -> nn.Linear:
    return nn.Linear(inputs, outputs, bias=False)  # plain: the numeric formats replace nn.Linear by type


class _Attention(nn.Module):
    def __init__(self, config: Any, dim: int) -> None:
        super().__init__()
        size, heads, kv_heads = config.hidden_size, config.num_attention_heads, config.num_key_value_heads
        self.q_proj, self.o_proj = _linear(size, heads * dim), _linear(heads * dim, size)
        self.k_proj, self.v_proj = _linear(size, kv_heads * dim), _linear(size, kv_heads * dim)


class _Mlp(nn.Module):
    def __init__(self, config: Any) -> None:
        super().__init__()
        size, inner = config.hidden_size, config.intermediate_size
        self.gate_proj, self.up_proj, self.down_proj = (
            _linear(size, inner),
            _linear(size, inner),
            _linear(inner, size),
        )


class _Layer(nn.Module):
    def __init__(self, config: Any, dim: int) -> None:
        super().__init__()
        self.self_attn, self.mlp = _Attention(config, dim), _Mlp(config)
        self.input_layernorm = _Norm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = _Norm(config.hidden_size, config.rms_norm_eps)


class _Rotary(nn.Module):
    """The rotary embedding's frequencies, as transformers' LlamaRotaryEmbedding computes them by default."""

    inv_freq: torch.Tensor

    def __init__(self, config: Any, dim: int) -> None:
        super().__init__()
        steps = torch.arange(0, dim, 2, dtype=torch.float, device="cpu")  # computed: never on the meta device
        inv_freq = 1.0 / (config.rope_parameters["rope_theta"] ** (steps / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.attention_scaling = 1.0


class _Decoder(nn.Module):
    def __init__(self, config: Any, dim: int) -> None:
        super().__init__()
        # given a weight, nn.Embedding skips its random initialisation, which on the meta device imports
        # torch._dynamo (nn.Linear's does not)
        shape = (config.vocab_size, config.hidden_size)
        self.embed_tokens = nn.Embedding(*shape, _weight=torch.empty(shape))
        self.layers = nn.ModuleList([_Layer(config, dim) for _ in range(config.num_hidden_layers)])
        self.norm = _Norm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = _Rotary(config, dim)


class LlamaModules(nn.Module):
    """What `llama.LlamaForward` runs: transformers' `LlamaForCausalLM` tree, without its forward."""

    def __init__(self, config: Any, generation_config: GenerationConfig) -> None:
        super().__init__()
        self.config, self.generation_config = config, generation_config
        dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.model = _Decoder(config, dim)
        self.lm_head = _linear(config.hidden_size, config.vocab_size)

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding, as transformers' models name it: every forward pass runs it once."""
        return self.model.embed_tokens


def load_llama(location: Path, config: PretrainedConfig, dtype: torch.dtype) -> LlamaModules:
    """The model in `location` (a directory of safetensors files and configs), in `dtype`; `config`: what
    `llama_config` read there."""
    try:
        generation = GenerationConfig.from_pretrained(location)
    except OSError:  # no generation_config.json: transformers derives it from the model's config too
        generation = GenerationConfig.from_model_config(config)
    with torch.device("meta"):  # no memory and nothing initialised: the weights come from the files
        modules = LlamaModules(config, generation)
    weights = _read(location)
    if config.tie_word_embeddings:
        weights.pop("lm_head.weight", None)
    modules.load_state_dict(
        {name: tensor.to(dtype) for name, tensor in weights.items()}, strict=False, assign=True
    )
    if config.tie_word_embeddings:
        modules.lm_head.weight = modules.model.embed_tokens.weight
    missing = [name for name, tensor in modules.state_dict().items() if tensor.is_meta]
    if missing:
        raise KeyError(f"weights missing from {location}: {', '.join(missing[:3])}")
    return modules.requires_grad_(False).eval()


def _read(location: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the model's safetensors files: one file, or the shards its index names."""
    index = location / "model.safetensors.index.json"
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values()))
        if index.is_file()
        else ["model.safetensors"]
    )
    weights: dict[str, torch.Tensor] = {}
    for file in files:
        weights.update(load_file(location / file))
    return weights
