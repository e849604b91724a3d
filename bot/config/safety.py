"""SAFETY_*: the input and output checks, and the texts people see when one of them stops a message."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from bot.config.base import Section
from bot.core.errors import ConfigError

__all__ = ["SafetySettings"]


class SafetySettings(Section):
    model_config = SettingsConfigDict(env_prefix="SAFETY_")

    max_input_chars: int = Field(
        4000, ge=1, description="Longer messages are refused before the model sees them"
    )
    normalize_unicode: bool = Field(
        True, description="NFKC and removal of bidi overrides / hidden characters (emoji and RTL kept)"
    )
    redact_pii: bool = Field(
        True, description="Replace e-mails, phones, cards, IBANs and IPs with [email], [phone], ... both ways"
    )
    phone_regions: str = Field(
        "US,GB,DE,FR,ES,IT,NL,RU,CN", description="Regions whose national phone formats are recognised"
    )
    injection_action: Literal["block", "log", "off"] = Field(
        "block", description="Prompt-injection / jailbreak attempts: block (refuse), log only, or off"
    )
    semantic: Literal["auto", "on", "off"] = Field(
        "off",
        description="Sentence-embedding detector of injection and abuse next to the rules "
        "(all-MiniLM-L6-v2; catches paraphrases, but also blocks some ordinary messages and costs tens of ms "
        "per message, see docs/safety.md): off = rules only, auto = on when its package is installed, "
        "on = required",
    )
    abuse_action: Literal["block", "log", "off"] = Field(
        "block", description="Insults, threats, slurs and swearing aimed at someone: block (refuse), log, off"
    )
    profanity_action: Literal["block", "redact", "log", "off"] = Field(
        "log", description='Swearing aimed at nobody ("WTF happened to my bill"): block, redact, log, off'
    )
    blocked_terms: str = Field("", description="Comma-separated topics/phrases to refuse (case-insensitive)")
    blocked_terms_file: Path | None = Field(None, description="File with more blocked phrases, one per line")
    canary: bool = Field(
        True, description="Put a canary token in the system prompt; a reply containing it is never sent"
    )
    prompt_overlap_words: int = Field(
        10, ge=0, description="Block replies quoting this many consecutive system-prompt words (0 = off)"
    )
    check_degenerate: bool = Field(
        True, description="Replace empty or looping replies with the fallback text"
    )
    output_profanity: bool = Field(True, description="Never send a reply that swears or insults")
    max_output_chars: int = Field(3500, ge=1, description="Longer replies are cut at a sentence end")
    refusal_text: str = Field(
        "Sorry, I can't help with that. I'm here for questions about our products, orders and your account.",
        description="Answer to a refused message or a reply that failed the output checks",
    )
    too_long_text: str = Field(
        "Your message is too long for me to read. Please shorten it and send it again.",
        description="Answer to a message over SAFETY_MAX_INPUT_CHARS",
    )
    abuse_text: str = Field(
        "I'd like to help, but let's keep it respectful, please. What can I do for you?",
        description="Answer to a message refused for profanity or abuse",
    )
    fallback_text: str = Field(
        "Sorry, I could not put an answer together. Could you rephrase your question?",
        description="Sent instead of an empty or degenerate reply",
    )
    audit_max_entries: int = Field(10_000, ge=100, description="Length of the Redis stream of safety events")

    @field_validator("blocked_terms_file")
    @classmethod
    def _terms_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {str(value)!r} does not exist or is not a file")
        return value

    def terms(self) -> list[str]:
        """SAFETY_BLOCKED_TERMS plus the lines of SAFETY_BLOCKED_TERMS_FILE (read here, at start-up)."""
        terms = [t.strip() for t in self.blocked_terms.split(",") if t.strip()]
        if self.blocked_terms_file is not None:
            try:
                lines = self.blocked_terms_file.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(
                    f"invalid setting SAFETY_BLOCKED_TERMS_FILE: cannot read it: {exc}"
                ) from exc
            terms += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        return terms
