"""llama.cpp's own server as a benchmark peer: what a user would run instead of this bot's engine.

`llama-server -np N` serves N parallel slots with continuous batching from the same GGUF file, with a
unified KV cache shared by the slots and prompt caching per slot. The runner starts it on a free local
port when `llama-server` is on PATH (or `LLAMA_SERVER` names the binary), waits for `/health`, and asks
it through the project's own OpenAI-compatible engine (`bot.llm.remote`), greedy, exactly as the bot
would ask a remote model server.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bot.core.domain import Prompt
from bot.llm.remote import OpenAIEngine
from bot_dev.bench.runners import EngineRunner, Timing

__all__ = ["LlamaServerRunner", "llama_server_binary"]

READY_TIMEOUT_SECONDS = 120.0


def llama_server_binary() -> str | None:
    """The `llama-server` to run: `LLAMA_SERVER` if set, else the one on PATH; None when there is none."""
    named = os.environ.get("LLAMA_SERVER")
    if named:
        return named if Path(named).is_file() else None
    return shutil.which("llama-server")


class LlamaServerRunner:
    """`llama-server -np slots` on the GGUF file, asked over HTTP; one process for the runner's life."""

    name = "llama-server"

    def __init__(self, binary: str, gguf: str, tokenizer: object, *, slots: int, context: int, threads: int):
        self._tokenizer = tokenizer
        self._port = _free_port()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (the server's log, closed in aclose)
        # -c is the unified cache shared by all slots: room for every slot's longest conversation.
        command = [binary, "-m", gguf, "--host", "127.0.0.1", "--port", str(self._port)]
        command += ["-np", str(slots), "--kv-unified", "-c", str(slots * context), "-cb"]
        command += ["-t", str(threads), "-tb", str(threads), "--no-webui"]
        self._process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        self._runner: EngineRunner | None = None

    async def start(self) -> None:
        """Wait until the server answers `/health` (model loaded); a clear error if it exits or hangs."""
        url = f"http://127.0.0.1:{self._port}"
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not await asyncio.to_thread(_healthy, f"{url}/health"):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"llama-server did not start: {self._tail()}")
            await asyncio.sleep(0.2)
        # retries: llama-server's HTTP layer closes idle keep-alive connections, which a reused one meets
        engine = OpenAIEngine(f"{url}/v1", model="bench", timeout_seconds=600.0, max_retries=3)
        self._runner = EngineRunner(engine, self._tokenizer, name=self.name)

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    async def reply(self, prompt: Prompt, max_new_tokens: int) -> Timing:
        assert self._runner is not None, "start() first"
        return await self._runner.reply(prompt, max_new_tokens)

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.aclose()
        self._process.terminate()
        try:
            await asyncio.to_thread(self._process.wait, 10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            await asyncio.to_thread(self._process.wait)
        self._log.close()

    def _tail(self) -> str:
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        return " | ".join(lines[-5:]) or f"exit code {self._process.poll()}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
