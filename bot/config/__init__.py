"""Settings, read once from environment variables and an optional `.env` file.

Each concern has its own section with its own prefix (GENERATION_*, MODEL_*, ...), one module per group
of sections; `settings.py` puts them together. `load_settings` is the only function here that touches
the environment; it turns every validation problem into one line that names the variable, without
echoing secret values. A new setting is a described field in its section (`.env.example` is generated).
"""

from __future__ import annotations

from bot.config.model import (
    DEFAULT_SYSTEM_PROMPT,
    EngineSettings,
    GenerationSettings,
    LlmSettings,
    ModelSettings,
    PromptSettings,
    ServeSettings,
)
from bot.config.operations import LogSettings, MetricsSettings
from bot.config.safety import SafetySettings
from bot.config.settings import Settings, env_prefixes, example_env, load_settings, redact_url
from bot.config.storage import HistorySettings, RateLimitSettings, RedisSettings
from bot.config.support import KbSettings, SupportSettings
from bot.config.telegram import TelegramSettings

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "EngineSettings",
    "GenerationSettings",
    "HistorySettings",
    "KbSettings",
    "LlmSettings",
    "LogSettings",
    "MetricsSettings",
    "ModelSettings",
    "PromptSettings",
    "RateLimitSettings",
    "RedisSettings",
    "SafetySettings",
    "ServeSettings",
    "Settings",
    "SupportSettings",
    "TelegramSettings",
    "env_prefixes",
    "example_env",
    "load_settings",
    "redact_url",
]
