"""The project's exception hierarchy.

Foreign exceptions (redis, transformers, OS errors) are translated into these at the boundary, so that
transports can turn each kind into the right message for a person without knowing where it came from.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "BotError",
    "ConfigError",
    "DuplicateDelivery",
    "EngineBusy",
    "GenerationError",
    "GenerationTimeout",
    "InputRefused",
    "ModelLoadError",
    "PromptTooLong",
    "RateLimited",
    "ReplyReplaced",
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


class AccessDenied(BotError):
    """The user or chat is not on the allow-list."""


class RateLimited(BotError):
    """The user sent too many messages; `retry_after` seconds until they may write again."""

    def __init__(self, message: str, *, retry_after: float, daily: bool) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.daily = daily


class InputRefused(BotError):
    """The safety pipeline refused the message; `text` is what to tell the person."""

    def __init__(self, text: str, *, reasons: tuple[str, ...]) -> None:
        super().__init__(f"message refused: {', '.join(reasons)}")
        self.text = text
        self.reasons = reasons


class ReplyReplaced(BotError):
    """The reply failed the output checks after part of it was shown; show `text` instead of all of it."""

    def __init__(self, text: str, *, reasons: tuple[str, ...]) -> None:
        super().__init__(f"reply replaced: {', '.join(reasons)}")
        self.text = text
        self.reasons = reasons
