"""A Telegram customer-support assistant: Redis memory, a local transformers model, one service."""

__all__ = ["__version__"]

__version__ = "0.1.0"
