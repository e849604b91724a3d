"""Settings: defaults, validation messages, secrets, and `.env.example` documenting every variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.config import example_env, load_settings, redact_url
from bot.core.errors import ConfigError
from tests.conftest import ROOT


def all_variables() -> list[str]:
    settings = load_settings(None)
    return [name for name, _value in settings.effective()]


def test_defaults_load_without_any_environment(clean_env: Path) -> None:
    settings = load_settings(None)
    assert settings.model.name == "bundled:smollm2-135m-instruct"
    assert settings.redis.url is None
    assert settings.generation.params().max_new_tokens == settings.generation.max_new_tokens


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GENERATION_TEMPERATURE", "-1"),
        ("GENERATION_TOP_P", "2"),
        ("GENERATION_TOP_K", "-3"),
        ("GENERATION_MAX_NEW_TOKENS", "0"),
        ("GENERATION_DO_SAMPLE", "maybe"),
        ("REDIS_URL", "not a url"),
        ("MODEL_DTYPE", "int3"),
        ("HISTORY_MAX_TURNS", "many"),
        ("TELEGRAM_API_BASE_URL", "ftp://example.org"),
        ("SYSTEM_PROMPT_FILE", "/no/such/prompt.txt"),
    ],
)
def test_invalid_values_name_their_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(None)
    lines = str(caught.value).splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"invalid setting {variable}")


def test_secrets_are_never_echoed(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456:SECRET-TOKEN-VALUE")
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:6379/0")
    shown = dict(load_settings(None).effective())
    assert shown["TELEGRAM_BOT_TOKEN"] == "********"
    assert "hunter2" not in shown["REDIS_URL"]
    monkeypatch.setenv("REDIS_URL", "ftp://:hunter2@host")
    with pytest.raises(ConfigError) as caught:
        load_settings(None)
    assert "hunter2" not in str(caught.value)


def test_env_file_is_read(clean_env: Path) -> None:
    (clean_env / "custom.env").write_text("GENERATION_TEMPERATURE=0.2\nHISTORY_MAX_TURNS=8\n")
    settings = load_settings(clean_env / "custom.env")
    assert settings.generation.temperature == 0.2 and settings.history.max_turns == 8


def test_system_prompt_file_wins(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / "prompt.txt").write_text("You work for Acme.\n", encoding="utf-8")
    monkeypatch.setenv("SYSTEM_PROMPT", "ignored")
    monkeypatch.setenv("SYSTEM_PROMPT_FILE", str(clean_env / "prompt.txt"))
    assert load_settings(None).prompt.resolve() == "You work for Acme."


def test_env_example_is_the_generated_template(clean_env: Path) -> None:
    assert (ROOT / ".env.example").read_text() == example_env(), (
        "regenerate: bot config --example > .env.example"
    )


def test_env_example_documents_every_setting(clean_env: Path) -> None:
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    missing = [name for name in all_variables() if name not in documented]
    assert not missing, f".env.example lacks {missing}"
    unknown = documented - set(all_variables())
    assert not unknown, f".env.example lists settings the bot does not read: {sorted(unknown)}"


def test_redact_url() -> None:
    assert redact_url("redis://user:pw@host:6379/0") == "redis://user:****@host:6379/0"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"
