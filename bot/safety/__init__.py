"""Safety filters on what comes in and what goes out. Pure and fast; the service applies them."""

from bot.safety.output import new_canary
from bot.safety.pipeline import SafetyPipeline

__all__ = ["SafetyPipeline", "new_canary"]
