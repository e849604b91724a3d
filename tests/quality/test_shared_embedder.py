"""One all-MiniLM-L6-v2 per process: the knowledge base, the semantic safety detector and best-of-n ranking
are handed the same instance by the wiring (a second copy would cost its memory and load time again)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.app import build_gate, build_knowledge, build_safety, open_state
from bot.chat.deps import ChatDeps
from bot.config import Settings, load_settings
from bot.core.errors import ConfigError
from bot.llm.embeddings import bundled_minilm_dir
from bot.metrics import Metrics
from bot.wiring.chat import chat_deps
from bot.wiring.embeddings import shared_embedder
from tests.chat.fakes import FakeEngine, fake_deps

INSTALLED = bundled_minilm_dir() is not None


def deps_for(settings: Settings, state: Any, safety: Any, knowledge: Any) -> ChatDeps:
    """The chat service's collaborators as the wiring builds them, around a fake engine."""
    base = fake_deps(FakeEngine(), state.store)
    gate = build_gate(settings, state.limits)
    return chat_deps(settings, state, base.engine, base.prompts, gate, safety, knowledge, Metrics(), None)


@pytest.mark.skipif(not INSTALLED, reason="the optional embedding model is not installed")
async def test_the_knowledge_base_safety_and_ranking_share_one_embedder(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / "kb").mkdir()
    (clean_env / "kb" / "returns.md").write_text("# Returns\n\nSend items back within 30 days.\n")
    monkeypatch.setenv("KB_PATH", str(clean_env / "kb"))
    monkeypatch.setenv("KB_INDEX_DIR", str(clean_env / "index"))
    monkeypatch.setenv("SAFETY_SEMANTIC", "auto")
    monkeypatch.setenv("GENERATION_NUM_CANDIDATES", "2")  # auto ranks by embeddings only with candidates
    settings = load_settings(None)
    knowledge = await build_knowledge(settings)
    safety, _prompt = build_safety(settings)
    state = await open_state(settings, default_url="memory://")
    deps = deps_for(settings, state, safety, knowledge)
    assert knowledge is not None and knowledge.embedder is not None and deps.embed is not None
    assert deps.embed.__self__ is knowledge.embedder  # type: ignore[attr-defined]
    detector = safety._semantic
    assert detector is not None and detector._embed.__self__ is knowledge.embedder  # type: ignore[attr-defined]
    await state.aclose()


def test_off_means_none_and_on_without_the_package_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert shared_embedder("GENERATION_RANK_EMBEDDINGS", "off") is None
    monkeypatch.setattr("bot.llm.embeddings.bundled_minilm_dir", lambda: None)
    assert shared_embedder("KB_EMBEDDINGS", "auto") is None
    with pytest.raises(ConfigError, match="GENERATION_RANK_EMBEDDINGS=on"):
        shared_embedder("GENERATION_RANK_EMBEDDINGS", "on")


async def test_one_candidate_loads_no_embedder_for_ranking(clean_env: Path) -> None:
    settings = load_settings(None)
    assert settings.generation.num_candidates == 1 and settings.generation.rank_embeddings == "auto"
    safety, _prompt = build_safety(settings)
    state = await open_state(settings, default_url="memory://")
    assert deps_for(settings, state, safety, None).embed is None
    await state.aclose()
