"""Conversation memory: the store protocol and its key layout. Concrete stores live in submodules."""

from bot.memory.base import ConversationStore, history_key, ids_key

__all__ = ["ConversationStore", "history_key", "ids_key"]
