"""Safety filters on what comes in and what goes out. Pure and fast; the service applies them."""

from bot.safety.output import is_degenerate, new_canary
from bot.safety.pipeline import SafetyPipeline
from bot.safety.semantic import SemanticDetector
from bot.safety.text import clean, is_blank, visible_text

__all__ = [
    "SafetyPipeline",
    "SemanticDetector",
    "clean",
    "is_blank",
    "is_degenerate",
    "new_canary",
    "visible_text",
]
