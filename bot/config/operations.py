"""METRICS_* and LOG_*: what an operator watches (health, metrics) and reads (logs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from bot.config.base import Section

__all__ = ["LogSettings", "MetricsSettings"]


class MetricsSettings(Section):
    model_config = SettingsConfigDict(env_prefix="METRICS_")

    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Serve /healthz, /readyz and Prometheus /metrics on this port (unset: off)",
    )
    listen: str = Field("0.0.0.0", description="Address the metrics and health server listens on")


class LogSettings(Section):
    model_config = SettingsConfigDict(env_prefix="LOG_")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level")
    format: Literal["text", "json"] = Field(
        "text", description="text for people, json (one object a line) for collectors"
    )

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value
