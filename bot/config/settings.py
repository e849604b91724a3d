"""Every section together: reading them once, reporting problems one line each, `.env.example`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, ValidationError

from bot.config.base import Section
from bot.config.model import (
    EngineSettings,
    GenerationSettings,
    LlmSettings,
    ModelSettings,
    PromptSettings,
    ServeSettings,
)
from bot.config.operations import LogSettings, MetricsSettings
from bot.config.safety import SafetySettings
from bot.config.storage import HistorySettings, RateLimitSettings, RedisSettings
from bot.config.support import KbSettings, SupportSettings
from bot.config.telegram import TelegramSettings
from bot.core.errors import ConfigError

__all__ = ["Settings", "env_prefixes", "example_env", "load_settings", "redact_url"]


class Settings(BaseModel):
    """Every section, validated. Build it with `load_settings`. Field docstrings title `.env.example`."""

    telegram: TelegramSettings = Field(title="Telegram")
    redis: RedisSettings = Field(title="Redis (conversation history, limits)")
    model: ModelSettings = Field(title="Model")
    engine: EngineSettings = Field(title="Generation engine")
    prompt: PromptSettings = Field(title="Prompt")
    history: HistorySettings = Field(title="History")
    generation: GenerationSettings = Field(title="Generation (sampling)")
    rate_limit: RateLimitSettings = Field(title="Rate limits (per user, shared through Redis)")
    safety: SafetySettings = Field(title="Safety filters")
    metrics: MetricsSettings = Field(title="Metrics and health checks")
    log: LogSettings = Field(title="Logging")
    kb: KbSettings = Field(title="Knowledge base (grounded answers with sources)")
    support: SupportSettings = Field(title="Support desk (handoff, feedback, analytics)")
    llm: LlmSettings = Field(title="Remote inference (LLM_BACKEND=openai)")
    serve: ServeSettings = Field(title="Model server (bot serve-model)")

    model_config = {"protected_namespaces": ()}

    def sections(self) -> list[Section]:
        return [getattr(self, name) for name in type(self).model_fields]

    def effective(self) -> list[tuple[str, str]]:
        """(VARIABLE, value) for every setting, secrets masked, for `bot config`."""
        rows: list[tuple[str, str]] = []
        for section in self.sections():
            for field in type(section).model_fields:
                value = getattr(section, field)
                if isinstance(value, SecretStr):
                    shown = "********"
                elif field.endswith("url") and isinstance(value, str):
                    shown = redact_url(value)
                else:
                    shown = _env_text(value)
                rows.append((section.env_name(field), shown))
        return rows


def _env_text(value: object) -> str:
    """A setting's value as one would write it in `.env`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, frozenset):
        return ",".join(str(item) for item in sorted(value))
    return str(value)


def _format_error(section: type[Section], error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"]:  # a check across fields: its message names the variables itself
        return message
    field = str(error["loc"][0])
    name = section.env_name(field)
    if field in section.secret_fields or "input" not in error:
        return f"{name}: {message}"
    raw = error["input"]
    if not isinstance(raw, str | int | float) or field.endswith("url"):  # a broken URL may hide a password
        return f"{name}: {message}"
    return f"{name}={raw!s}: {message}"


def load_settings(env_file: str | Path | None = ".env") -> Settings:
    """Read every section; raise ConfigError listing each invalid variable on its own line."""
    sections: dict[str, Section] = {}
    problems: list[str] = []
    for name, info in Settings.model_fields.items():
        cls: type[Section] = info.annotation  # type: ignore[assignment]
        try:
            sections[name] = cls(_env_file=env_file)  # type: ignore[call-arg]
        except ValidationError as exc:
            problems.extend(_format_error(cls, error) for error in exc.errors())
    if problems:
        raise ConfigError("\n".join(f"invalid setting {problem}" for problem in problems))
    return Settings(**sections)  # type: ignore[arg-type]


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe to log.

    Split by hand rather than by a URL parser: a Sentinel URL lists several host:port pairs, and a
    password may hold `/`, `#` or `@`, which would make a parser put part of it in the path.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:  # nothing URL-like to split on: show nothing that could be a secret
        return "<unparseable URL>" if "@" in url or ":" in url.partition(":")[2] else url
    userinfo, at, hosts = rest.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    if not at or not colon:
        return url
    return f"{scheme}://{user}:****@{hosts}"


def example_env() -> str:
    """The text of `.env.example`: every variable with its description and default, commented out."""
    lines = [
        "# Every setting of the bot, with its default. Copy to .env and uncomment what you change.",
        "# Environment variables win over this file.",
        "# `bot config` prints the effective values (secrets masked).",
        "# Generated by `bot config --example`.",
    ]
    for info in Settings.model_fields.values():
        section: type[Section] = info.annotation  # type: ignore[assignment]
        lines += ["", f"# ---- {info.title} ----"]
        for field, spec in section.model_fields.items():
            shown = "" if isinstance(spec.default, SecretStr) else _env_text(spec.default)
            lines += [f"# {spec.description}", f"# {section.env_name(field)}={shown}"]
    return "\n".join(lines) + "\n"


def env_prefixes() -> tuple[str, ...]:
    """The start of every variable the settings read: each section's prefix, or (for a section without
    one, such as SYSTEM_PROMPT) its variables' full names. Derived, so a new section cannot be missed by
    whoever strips the bot's settings from an environment (the tests' `clean_env`, subprocesses)."""
    found: list[str] = []
    for info in Settings.model_fields.values():
        section: type[Section] = info.annotation  # type: ignore[assignment]
        prefix = str(section.model_config.get("env_prefix", "")).upper()
        found += [prefix] if prefix else [section.env_name(field) for field in section.model_fields]
    return tuple(found)
