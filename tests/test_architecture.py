"""Imports go one way; no module does I/O at import time; each module declares its public API."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import bot

PACKAGE = Path(bot.__file__).parent

# module prefix -> project modules it may import
ALLOWED: dict[str, tuple[str, ...]] = {
    "bot.domain": (),
    "bot.errors": (),
    "bot.memory": ("bot.domain", "bot.errors", "bot.memory"),
    "bot.prompt": ("bot.domain", "bot.errors", "bot.prompt"),
    "bot.llm": ("bot.domain", "bot.errors", "bot.llm"),
    "bot.config": ("bot.domain", "bot.errors"),
    "bot.gate": ("bot.errors", "bot.memory.base"),
    "bot.metrics": (),
    "bot.observability": ("bot.metrics",),
    "bot.safety": ("bot.config", "bot.domain", "bot.errors", "bot.safety"),
    # the reply's safe shapes (guarded stream, best of n, grounded): protocols only, like the service
    "bot.answers": ("bot.domain", "bot.errors", "bot.llm.base", "bot.safety", "bot.support.base"),
    "bot.service": (
        "bot.answers",
        "bot.domain",
        "bot.errors",
        "bot.gate",
        "bot.memory.base",
        "bot.memory.leases",
        "bot.llm.base",
        "bot.prompt",
        "bot.safety",
        "bot.metrics",
        "bot.support",
    ),
    "bot.terminal": ("bot.errors", "bot.service"),
    "bot.telegram": (
        "bot.config",
        "bot.domain",
        "bot.errors",
        "bot.gate",
        "bot.service",
        "bot.telegram",
        "bot.metrics",
        "bot.observability",
        "bot.support",
    ),
    "bot.testing": ("bot.testing",),
    # the benchmark measures the llm layer from outside, as the service would use it
    "bot.bench": ("bot.bench", "bot.config", "bot.domain", "bot.llm", "bot.prompt"),
    # the support desk's logic: storage only through its protocols
    "bot.support": ("bot.domain", "bot.errors", "bot.memory.base", "bot.memory.support_base", "bot.support"),
}
THIRD_PARTY_HOMES = {
    "httpx": ("bot.llm.remote",),
    "numpy": ("bot.support.retrieval", "bot.support.index"),  # the knowledge-base index's vectors
    "snowballstemmer": ("bot.support.retrieval",),
    "redis": ("bot.memory.redis", "bot.memory.support_redis"),
    "torch": ("bot.llm.", "bot.bench."),  # the bench's naive runner calls `generate` itself
    "transformers": ("bot.llm.", "bot.logs", "bot.bench.runners"),
    "yaml": ("bot.support.knowledge",),
}


def modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages([str(PACKAGE)], prefix="bot."))


def imports_of(module: str) -> set[str]:
    path = PACKAGE.joinpath(*module.split(".")[1:])
    source = (path / "__init__.py") if path.is_dir() else path.with_suffix(".py")
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("module", modules())
def test_imports_go_one_way(module: str) -> None:
    rule = next((allowed for prefix, allowed in ALLOWED.items() if module.startswith(prefix)), None)
    for name in imports_of(module):
        if name.startswith("bot.") and rule is not None:
            assert name.startswith(rule), f"{module} must not import {name}"
        top = name.split(".")[0]
        if top in THIRD_PARTY_HOMES:
            assert module.startswith(THIRD_PARTY_HOMES[top]), f"{module} imports {top}"


@pytest.mark.parametrize("module", modules())
def test_every_module_declares_its_public_api(module: str) -> None:
    if module == "bot.__main__":  # importing it runs the command
        return
    imported = importlib.import_module(module)
    assert hasattr(imported, "__all__"), f"{module} has no __all__"
    for name in imported.__all__:
        assert hasattr(imported, name), f"{module}.__all__ names missing {name}"
