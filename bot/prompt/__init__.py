"""Prompt building and token budgeting. Pure: no I/O, no model; only a tokenizer is needed."""

from bot.core.domain import Prompt
from bot.prompt.builder import ChatFormat, PromptBuilder, Tokenizer

__all__ = ["ChatFormat", "Prompt", "PromptBuilder", "Tokenizer"]
