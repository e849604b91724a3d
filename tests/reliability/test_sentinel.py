"""REDIS_URL=redis+sentinel://...: the bot finds the master through real Sentinels and follows a failover."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bot.app import open_state
from bot.config import load_settings, redact_url
from bot.core.domain import Role, Turn
from bot.core.errors import ConfigError, StoreUnavailable
from bot.storage.redis.store import RedisChatLocks, RedisStore, connect, parse_sentinel_url
from tests.conftest import free_port
from tests.helpers import eventually, eventually_sync
from tests.reliability.conftest import RedisProcess

PASSWORD = "s3ntinel-pw"
needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")


class SentinelProcess:
    """`redis-server --sentinel` monitoring `master` as `mymaster` (quorum 1), on a free port."""

    def __init__(self, directory: Path, master: RedisProcess) -> None:
        self.port = free_port()
        config = directory / f"sentinel-{self.port}.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {directory}\n"
            f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
            f"sentinel auth-pass mymaster {PASSWORD}\n"
            "sentinel down-after-milliseconds mymaster 1000\n"
            "sentinel failover-timeout mymaster 5000\n"
        )
        self.process = subprocess.Popen(
            ["redis-server", str(config), "--sentinel"], stdout=subprocess.DEVNULL
        )
        self.client = redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)
        eventually_sync(
            lambda: self.client.sentinel_master("mymaster"),
            ignoring=(redis.RedisError,),
            what="the sentinel knows the master",
        )

    def master_port(self) -> int:
        return int(self.client.sentinel_get_master_addr_by_name("mymaster")[1])

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[RedisProcess, RedisProcess, SentinelProcess]]:
    """A password-protected master, its replica, and one Sentinel watching them."""
    (tmp_path / "m").mkdir()
    (tmp_path / "r").mkdir()
    auth = ("--requirepass", PASSWORD, "--masterauth", PASSWORD, "--repl-diskless-sync-delay", "0")
    master = RedisProcess(tmp_path / "m", *auth)
    master.client = lambda: redis.Redis(  # type: ignore[method-assign]
        port=master.port, password=PASSWORD, decode_responses=True, socket_timeout=5
    )
    master.start()
    replica = RedisProcess(tmp_path / "r", *auth, "--replicaof", "127.0.0.1", str(master.port))
    replica.client = lambda: redis.Redis(  # type: ignore[method-assign]
        port=replica.port, password=PASSWORD, decode_responses=True, socket_timeout=5
    )
    replica.start()
    eventually_sync(
        lambda: replica.client().info("replication")["master_link_status"] == "up",
        what="the replica synced with the master",
    )
    sentinel = SentinelProcess(tmp_path, master)
    try:
        yield master, replica, sentinel
    finally:
        sentinel.stop()
        replica.stop()
        master.stop()


def sentinel_url(sentinel: SentinelProcess) -> str:
    dead = free_port()  # listed first: nobody listens there, so the client must move on to the next one
    return f"redis+sentinel://:{PASSWORD}@127.0.0.1:{dead},127.0.0.1:{sentinel.port}/mymaster/0"


@needs_redis
async def test_the_store_finds_the_master_through_a_sentinel_and_follows_it_when_the_master_dies(
    cluster: tuple[RedisProcess, RedisProcess, SentinelProcess], key_prefix: str
) -> None:
    master, replica, sentinel = cluster
    client = connect(sentinel_url(sentinel))
    store = RedisStore(client, prefix=key_prefix, max_turns=10, ttl_seconds=60)
    locks = RedisChatLocks(client, prefix=key_prefix)
    assert await store.append(1, [Turn(Role.USER, "before"), Turn(Role.ASSISTANT, "ok")], "m1")
    assert await locks.try_acquire(1, "token", 1, 5)
    assert master.client().llen(f"{key_prefix}:{{chat:1}}:history") == 2

    # the sentinel learns of the replica from the master's INFO
    await eventually(lambda: sentinel.client.sentinel_slaves("mymaster"), interval=0.1)
    master.kill()  # SIGKILL: the sentinel sees it down after a second and promotes the replica
    await eventually(
        lambda: sentinel.master_port() == replica.port, interval=0.1, what="the sentinel promoted the replica"
    )
    # the client finds the old master gone and asks the sentinels again (unavailable while roles change)
    await eventually(
        lambda: store.append(1, [Turn(Role.USER, "after"), Turn(Role.ASSISTANT, "ok")], "m2"),
        interval=0.1,
        ignoring=(StoreUnavailable,),
        what="an append to the new master",
    )
    assert [turn.content for turn in await store.load(1)] == ["before", "ok", "after", "ok"]
    assert replica.client().llen(f"{key_prefix}:{{chat:1}}:history") == 4, "written to the new master"
    await store.aclose()


@needs_redis
async def test_bot_state_opens_through_sentinel_and_never_logs_the_password(
    cluster: tuple[RedisProcess, RedisProcess, SentinelProcess],
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, _, sentinel = cluster
    monkeypatch.setenv("REDIS_URL", sentinel_url(sentinel))
    monkeypatch.setenv("REDIS_KEY_PREFIX", key_prefix)
    caplog.set_level(logging.DEBUG)
    state = await open_state(load_settings(None), default_url="memory://")
    try:
        await state.store.ping()
        assert state.locks is not None and await state.locks.try_acquire(5, "t", 1, 5)
    finally:
        await state.store.aclose()
    logged = "\n".join(caplog.messages)
    assert "redis+sentinel://:****@" in logged
    assert PASSWORD not in logged


def test_sentinel_urls_are_parsed_and_redacted() -> None:
    target = parse_sentinel_url("redis+sentinel://user:p%40ss@10.0.0.1:26379,[::1]:26380/mymaster/2")
    assert target.sentinels == [("10.0.0.1", 26379), ("::1", 26380)]
    assert (target.service, target.db, target.username, target.password) == ("mymaster", 2, "user", "p@ss")
    assert "p%40ss" not in repr(target) and "p@ss" not in repr(target)
    assert parse_sentinel_url("redis+sentinel://h:1/m").db == 0
    url = "redis+sentinel://:pa/ss@h1:26379,h2:26379/mymaster"
    assert redact_url(url) == "redis+sentinel://:****@h1:26379,h2:26379/mymaster"
    for bad, reason in [
        ("redis+sentinel://h1:26379", "service"),
        ("redis+sentinel://h1/mymaster", "host:port"),
        ("redis+sentinel:///mymaster", "sentinel"),
        ("redis+sentinel://h:1/m/x", "number"),
    ]:
        with pytest.raises(ValueError, match=reason):
            parse_sentinel_url(bad)


@pytest.mark.parametrize(
    "url",
    ["redis+sentinel://:hunter2@h1:26379", "redis+sentinel://:hunter2@h1/mymaster", "redis+sentinel://"],
)
def test_a_bad_sentinel_url_is_refused_without_echoing_it(
    url: str, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", url)
    with pytest.raises(ConfigError) as caught:
        load_settings(None)
    assert "REDIS_URL" in str(caught.value) and "host:port" in str(caught.value)
    assert "hunter2" not in str(caught.value)
