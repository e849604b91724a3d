"""Fault-injection helpers: a Redis server process of the test's own that can be killed, paused, restarted."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import free_port
from tests.helpers import eventually_sync


class RedisProcess:
    """A `redis-server` on a free loopback port with AOF persistence in the test's directory."""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.port = free_port()
        self.directory = directory
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
        )
        eventually_sync(
            lambda: self.client().ping(), ignoring=(redis.ConnectionError,), what="redis-server answers"
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save; only what AOF already holds survives."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def token_never_logged() -> Iterator[None]:
    """Case 18: every log line of every reliability test, at DEBUG and with the chatty libraries (httpx
    logs request URLs, which hold the token) turned up, goes through the bot's redacting handler; the
    token must match none of them."""
    import io
    import logging

    from bot.logs import RedactingFilter
    from tests.conftest import TOKEN

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter([TOKEN]))
    root = logging.getLogger()
    noisy = [logging.getLogger(name) for name in ("httpx", "httpcore", "telegram", "bot")]
    saved = (root.level, [logger.level for logger in noisy])
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for logger in noisy:
        logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        for logger, level in zip(noisy, saved[1], strict=True):
            logger.setLevel(level)
    output = stream.getvalue()
    assert TOKEN not in output and TOKEN.split(":")[1] not in output, "the bot token reached a log line"
    if "HTTP Request" in output:  # httpx did log Bot API URLs: the filter, not silence, kept the token out
        assert "<redacted" in output
