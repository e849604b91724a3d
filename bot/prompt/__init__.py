"""Prompt building and token budgeting. Pure: no I/O, no model; only a tokenizer is needed."""

from bot.prompt.builder import ChatFormat, Prompt, PromptBuilder, Tokenizer

__all__ = ["ChatFormat", "Prompt", "PromptBuilder", "Tokenizer"]
