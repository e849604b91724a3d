"""REDIS_*, HISTORY_*, RATE_LIMIT_*: where conversations and counters live, and for how long."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from bot.config.base import Section

__all__ = ["REDIS_SCHEMES", "HistorySettings", "RateLimitSettings", "RedisSettings"]

REDIS_SCHEMES = ("redis", "rediss", "unix", "memory", "redis+sentinel")
# redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]
_SENTINEL_URL = re.compile(
    r"redis\+sentinel://(?:.*@)?(?P<hosts>[^/@]+)/(?P<service>[^/]+)(?:/(?P<db>\d+))?/?"
)
_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[^:,\s\[\]]+):\d{1,5}")


class RedisSettings(Section):
    model_config = SettingsConfigDict(env_prefix="REDIS_")

    url: str | None = Field(
        None,
        description="redis://host:port/db, rediss://, unix:///path, "
        "redis+sentinel://[:password@]host:port[,host:port]/service_name[/db] or memory:// (in-process); "
        "unset: `bot chat` keeps history in memory",
    )
    key_prefix: str = Field("bot", min_length=1, description="Prefix of every Redis key this bot writes")
    lease_seconds: float = Field(
        15.0,
        ge=1,
        le=600,
        description="A replica's hold on a chat or an update lasts this long unless renewed (every third "
        "of it); after a crash other replicas take over once it lapses",
    )

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in REDIS_SCHEMES:
            raise ValueError(
                "must be a URL starting with redis://, rediss://, unix://, redis+sentinel:// or memory:// "
                "(for example redis://127.0.0.1:6379/0)"
            )
        if parts.scheme in ("redis", "rediss") and not parts.hostname:
            raise ValueError("must name a host, for example redis://127.0.0.1:6379/0")
        if parts.scheme == "redis+sentinel":
            match = _SENTINEL_URL.fullmatch(value)
            hosts = match.group("hosts").split(",") if match else []
            if not hosts or not all(_HOST_PORT.fullmatch(host) for host in hosts):
                raise ValueError(
                    "must list sentinels as host:port and name the service, for example "
                    "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/0"
                )
        return value


class HistorySettings(Section):
    model_config = SettingsConfigDict(env_prefix="HISTORY_")

    max_turns: int = Field(20, ge=1, le=1000, description="Messages kept per chat (user and bot each count)")
    ttl_seconds: int = Field(
        7 * 24 * 3600, ge=1, description="A chat's history expires this long after its last message"
    )


class RateLimitSettings(Section):
    model_config = SettingsConfigDict(env_prefix="RATE_LIMIT_")

    per_minute: int = Field(20, ge=0, description="Messages a user may send per minute (0 = no limit)")
    per_day: int = Field(300, ge=0, description="Messages a user may send per UTC day (0 = no limit)")
    max_queued_per_chat: int = Field(
        20,
        ge=0,
        description="Messages of one chat that may wait in line for an answer at once; more are told to "
        "wait for the earlier answers (0 = no cap)",
    )
