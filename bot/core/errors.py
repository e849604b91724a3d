"""The project's exception hierarchy.

Foreign exceptions (redis, transformers, OS errors) are translated into these at the boundary. They are
for failures; how a reply ends (refused, rate limited, handed off...) is a value, `bot.core.outcome`.
"""

from __future__ import annotations

__all__ = [
    "BotError",
    "ConfigError",
    "DuplicateDelivery",
    "EngineBusy",
    "GenerationError",
    "GenerationTimeout",
    "ModelLoadError",
    "PromptTooLong",
    "StoreUnavailable",
]


class BotError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(BotError):
    """A setting is missing or invalid; the message names the environment variable."""


class ModelLoadError(BotError):
    """The model named by MODEL_NAME could not be found or loaded."""


class StoreUnavailable(BotError):
    """The conversation store (Redis) could not be reached or refused the command."""


class PromptTooLong(BotError):
    """The message alone does not fit into the model's context window."""


class GenerationError(BotError):
    """The model failed while generating a reply."""


class GenerationTimeout(GenerationError):
    """The reply took longer than the configured timeout."""


class EngineBusy(GenerationError):
    """Too many replies are queued; the caller should try again shortly."""


class DuplicateDelivery(BotError):
    """This exact update was already handled (a redelivery); it must not be answered again."""
