"""Conversation memory: the store protocol and its key layout. Concrete stores live in submodules."""

from bot.storage.base import AuditLog, Bucket, ConversationStore, Limits, history_key, ids_key

__all__ = ["AuditLog", "Bucket", "ConversationStore", "Limits", "history_key", "ids_key"]
