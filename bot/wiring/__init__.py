"""Factories the runtime (`bot.app`) calls: which concrete stores REDIS_URL means, which engine
LLM_BACKEND means. Only `bot.app` imports them (tests/test_architecture.py): the process is still wired
in one place."""

from __future__ import annotations

__all__: list[str] = []
