"""TELEGRAM_*: the bot's token, how updates arrive (polling or webhook), who may use it."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from bot.config.base import IdSet, Section, id_set

__all__ = ["DEFAULT_START_MESSAGE", "TelegramSettings"]

DEFAULT_START_MESSAGE = (
    "Hello! I am the support assistant. Ask me anything about our products, orders or your account. "
    "Send /reset to start a new conversation and /help for more."
)


class TelegramSettings(Section):
    model_config = SettingsConfigDict(env_prefix="TELEGRAM_")
    secret_fields = frozenset({"bot_token", "webhook_secret"})

    bot_token: SecretStr | None = Field(None, description="Bot token from @BotFather (needed by `bot run`)")
    api_base_url: str = Field(
        "https://api.telegram.org/bot",
        description="Bot API base URL; PTB calls <base><token>/<method> (self-hosted API or emulator)",
    )

    webhook_url: str | None = Field(
        None, description="Public HTTPS URL Telegram posts updates to; unset = long polling"
    )
    webhook_secret: SecretStr | None = Field(
        None, description="Secret Telegram sends with every webhook request (1-256 of A-Z a-z 0-9 _ -)"
    )
    webhook_listen: str = Field("0.0.0.0", description="Address the webhook server listens on")
    webhook_port: int = Field(8443, ge=1, le=65535, description="Port the webhook server listens on")
    allowed_user_ids: IdSet = Field(
        frozenset(), description="Comma-separated user ids who may use the bot (empty = everyone)"
    )
    allowed_chat_ids: IdSet = Field(
        frozenset(), description="Comma-separated chat ids (groups) where everyone may use the bot"
    )
    admin_user_ids: IdSet = Field(
        frozenset(), description="Comma-separated admin user ids: always allowed, never rate limited"
    )
    group_trigger: Literal["mention_or_reply", "mention", "always"] = Field(
        "mention_or_reply", description="When to answer in groups: on @mention and/or reply to the bot"
    )
    start_message: str = Field(DEFAULT_START_MESSAGE, description="The /start greeting")
    stream_interval_seconds: float = Field(
        1.0,
        ge=0,
        le=60,
        description="Edit the streamed reply at most this often (0 = send only the final text)",
    )
    shutdown_grace_seconds: float = Field(
        20.0, ge=0, description="On SIGTERM, wait this long for replies in progress to finish"
    )
    max_concurrent_updates: int = Field(
        256,
        ge=1,
        le=4096,
        description="Updates this process answers at once; the rest wait in the update inbox, oldest first",
    )
    request_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="Timeout of one Bot API call (long polling waits on top of it)"
    )

    _split_ids = field_validator("allowed_user_ids", "allowed_chat_ids", "admin_user_ids", mode="before")(
        id_set
    )

    @field_validator("api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
            raise ValueError("must be an http(s) URL such as https://api.telegram.org/bot")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        if value is not None and (
            urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc
        ):
            raise ValueError("must be a URL such as https://bot.example.com/telegram")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> TelegramSettings:
        if self.webhook_url and self.webhook_secret is None:
            raise ValueError("TELEGRAM_WEBHOOK_SECRET: required when TELEGRAM_WEBHOOK_URL is set")
        return self
