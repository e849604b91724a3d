"""Text generation: the engine protocol. Model loading and the transformers engine live in submodules."""

from bot.llm.base import Engine

__all__ = ["Engine"]
