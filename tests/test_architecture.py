"""Imports go one way; no module does I/O at import time; each module declares its public API."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import bot
import bot_dev

PACKAGE = Path(bot.__file__).parent
DEV_PACKAGE = Path(bot_dev.__file__).parent

CORE = ("bot.core",)
# module prefix -> project modules it may import (the first matching prefix wins; every module has one)
ALLOWED: dict[str, tuple[str, ...]] = {
    "bot.core": ("bot.core",),
    "bot.metrics": (),
    "bot.config": CORE,
    "bot.logs": CORE,
    "bot.storage": (*CORE, "bot.storage"),
    "bot.prompt": (*CORE, "bot.prompt"),
    "bot.llm": (*CORE, "bot.llm"),
    "bot.knowledge": (*CORE, "bot.knowledge"),
    "bot.safety": (*CORE, "bot.config", "bot.safety"),
    # the support desk's logic: storage only through its protocols
    "bot.desk": (*CORE, "bot.desk", "bot.storage.base", "bot.storage.desk_base"),
    # the chat flow depends on protocols, never on concrete stores or engines
    "bot.chat": (
        *CORE,
        "bot.chat",
        "bot.desk",
        "bot.knowledge.base",
        "bot.llm.base",
        "bot.metrics",
        "bot.prompt",
        "bot.safety",
        "bot.storage.base",
    ),
    "bot.transports.health": ("bot.metrics",),
    "bot.transports.openai_server": (*CORE, "bot.transports.openai_server", "bot.llm.base", "bot.metrics"),
    "bot.transports": (
        *CORE,
        "bot.config",
        "bot.chat",
        "bot.desk",
        "bot.metrics",
        "bot.storage.desk_base",
        "bot.transports",
    ),
    # the one wiring module
    "bot.app": ("bot.",),
    "bot.cli": ("bot",),
    "bot.__main__": ("bot.cli",),
    "bot.__init__": (),
    # developer tools measure the product from outside; the product never imports them (but the CLI)
    "bot_dev.fakes": ("bot_dev.fakes",),
    "bot_dev.bench": ("bot_dev.bench", "bot.config", *CORE, "bot.llm", "bot.prompt"),
    "bot_dev": ("bot.", "bot_dev."),
}
THIRD_PARTY_HOMES = {
    "httpx": ("bot.llm.remote",),
    # the knowledge-base index's vectors; the trainer of the semantic safety head
    "numpy": ("bot.knowledge.retrieval", "bot.knowledge.index", "bot_dev.safety_train"),
    "snowballstemmer": ("bot.knowledge.retrieval",),
    "redis": ("bot.storage.redis.",),
    "torch": ("bot.llm.", "bot_dev.bench."),  # the bench's naive runner calls `generate` itself
    "transformers": ("bot.llm.", "bot.logs", "bot_dev.bench.runners"),
    "telegram": ("bot.transports.telegram.", "bot_dev."),
    "tornado": ("bot.transports.", "bot_dev."),
    "yaml": ("bot.knowledge.corpus",),
}


def modules() -> list[str]:
    found = ["bot.__init__", "bot_dev.__init__"]
    for package, root in (("bot", PACKAGE), ("bot_dev", DEV_PACKAGE)):
        found += [m.name for m in pkgutil.walk_packages([str(root)], prefix=f"{package}.")]
    return sorted(found)


def imports_of(module: str) -> set[str]:
    root = DEV_PACKAGE if module.startswith("bot_dev") else PACKAGE
    path = root.joinpath(*module.removesuffix(".__init__").split(".")[1:])
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
    assert rule is not None, f"{module} has no import rule in ALLOWED"
    for name in imports_of(module):
        if name.startswith(("bot.", "bot_dev")) or name == "bot":
            assert name.startswith(rule) and rule, f"{module} must not import {name}"
        top = name.split(".")[0]
        if top in THIRD_PARTY_HOMES:
            assert module.startswith(THIRD_PARTY_HOMES[top]), f"{module} imports {top}"


@pytest.mark.parametrize("module", modules())
def test_every_module_declares_its_public_api(module: str) -> None:
    if module == "bot.__main__":  # importing it runs the command
        return
    imported = importlib.import_module(module.removesuffix(".__init__"))
    assert hasattr(imported, "__all__"), f"{module} has no __all__"
    for name in imported.__all__:
        assert hasattr(imported, name), f"{module}.__all__ names missing {name}"
