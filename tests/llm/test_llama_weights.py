"""A Llama built without transformers' modeling code (llama_weights.py) computes what transformers' model
computes, imports none of that code, and is used only where the engine's own forward is all that runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from bot.llm.local.hf_cache import TransformersForward
from bot.llm.local.kvcache import BatchCache
from bot.llm.local.llama import LlamaForward
from bot.llm.local.llama_weights import LlamaModules, llama_config
from bot.llm.local.loader import LoadedModel, load_model

TEXT = "Hello! My name is Anna and I would like to return a pair of shoes."


def prompt_pass(
    loaded: LoadedModel, forward: LlamaForward | TransformersForward
) -> tuple[torch.Tensor, list]:
    layers = loaded.model.config.num_hidden_layers
    ids = torch.tensor([loaded.tokenizer.encode(TEXT)])
    cache = BatchCache(layers, 1, reserve=ids.shape[1])
    with torch.inference_mode():
        logits = forward(ids, torch.arange(ids.shape[1])[None], cache)
    return logits, cache.whole()


def test_a_llama_built_here_computes_what_transformers_model_computes(tiny_llama_dir: Path) -> None:
    theirs = load_model(str(tiny_llama_dir), dtype="float32", device="cpu")
    ours = load_model(str(tiny_llama_dir), dtype="float32", device="cpu", lean=True)
    assert isinstance(ours.model, LlamaModules) and not isinstance(theirs.model, LlamaModules)
    expected, expected_kv = prompt_pass(theirs, TransformersForward(theirs.model))
    got, got_kv = prompt_pass(ours, LlamaForward(ours.model))
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)  # llama.py's own norm rounds differently
    for (k, v), (their_k, their_v) in zip(got_kv, expected_kv, strict=True):
        assert torch.allclose(k, their_k, atol=1e-4) and torch.allclose(v, their_v, atol=1e-4)
    # the same forward over either loader's modules: the very same numbers
    same, same_kv = prompt_pass(theirs, LlamaForward(theirs.model))
    assert torch.equal(got, same) and all(
        torch.equal(a[0], b[0]) for a, b in zip(got_kv, same_kv, strict=True)
    )
    assert ours.model.lm_head.weight is ours.model.model.embed_tokens.weight  # tied, as in the files
    assert ours.model.get_input_embeddings() is ours.model.model.embed_tokens  # transformers' name for it
    assert ours.model.generation_config.eos_token_id == theirs.model.generation_config.eos_token_id
    assert ours.context_tokens == theirs.context_tokens == 512
    assert ours.tokenizer.encode(TEXT) == theirs.tokenizer.encode(TEXT)
    assert ours.tokenizer.chat_template == theirs.tokenizer.chat_template


def test_packed_weights_saved_by_one_load_serve_the_other(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """The int4 format keeps its packs per module name: the names here are transformers' names."""
    theirs = load_model(str(tiny_llama_dir), dtype="int4", device="cpu", cache_dir=tmp_path)
    ours = load_model(str(tiny_llama_dir), dtype="int4", device="cpu", cache_dir=tmp_path, lean=True)
    assert isinstance(ours.model, LlamaModules) and ours.format == "int4"
    assert len(list((tmp_path / "formats").glob("*.int4.safetensors"))) == 1
    expected, _ = prompt_pass(theirs, LlamaForward(theirs.model, attention=torch.float32))
    got, _ = prompt_pass(ours, LlamaForward(ours.model, attention=torch.float32))
    assert torch.equal(got, expected)


def test_the_int8_format_converts_a_llama_built_here_as_it_does_transformers_model(
    tiny_llama_dir: Path,
) -> None:
    theirs = load_model(str(tiny_llama_dir), dtype="int8", device="cpu")
    ours = load_model(str(tiny_llama_dir), dtype="int8", device="cpu", lean=True)
    kinds = [
        type(ours.model.model.layers[0].self_attn.q_proj),
        type(theirs.model.model.layers[0].self_attn.q_proj),
    ]
    assert kinds[0] is kinds[1] and kinds[0] is not torch.nn.Linear  # dynamically quantised, both
    plain = load_model(str(tiny_llama_dir), dtype="float32", device="cpu", lean=True)
    assert type(plain.model.model.layers[0].mlp.gate_proj) is torch.nn.Linear  # joined as plain weights


def test_loading_a_llama_here_imports_none_of_transformers_modeling_code(tiny_llama_dir: Path) -> None:
    heavy = [
        "transformers.modeling_utils",
        "transformers.masking_utils",
        "torch._dynamo",
        "torch.distributed.tensor",
    ]
    code = (
        "import sys\n"
        "from bot.llm.local.loader import load_model\n"
        "from bot.llm.local.engine import TransformersEngine\n"
        f"loaded = load_model({str(tiny_llama_dir)!r}, dtype='float32', device='cpu', lean=True)\n"
        "TransformersEngine(loaded)\n"
        f"print([name for name in {heavy!r} if name in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_other_models_and_rotary_types_are_left_to_transformers(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    assert llama_config(tiny_gpt2_dir) is None
    gpt2 = load_model(str(tiny_gpt2_dir), dtype="float32", device="cpu", lean=True)
    assert not isinstance(gpt2.model, LlamaModules)
    base = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2}
    scaled = {**base, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}
    for name, values in {"legacy": {**base, "rope_theta": 500000.0}, "scaled": scaled}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(values))
    legacy = llama_config(tmp_path / "legacy")
    assert legacy is not None
    assert legacy.rope_parameters == {"rope_type": "default", "rope_theta": 500000.0}
    assert legacy.num_key_value_heads == 4 and legacy.tie_word_embeddings is False  # LlamaConfig's defaults
    assert llama_config(tmp_path / "scaled") is None


def test_a_format_not_yet_measured_is_measured_on_transformers_model(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    loaded = load_model(
        str(tiny_llama_dir), dtype="auto", device="cpu", cache_dir=tmp_path, lean=True, batch=2
    )
    assert loaded.calibration is not None and not isinstance(loaded.model, LlamaModules)
    again = load_model(
        str(tiny_llama_dir), dtype="auto", device="cpu", cache_dir=tmp_path, lean=True, batch=2
    )
    assert isinstance(again.model, LlamaModules) and again.format == loaded.format
