"""What the benchmark compares, behind one small interface: generate a reply, report its timings.

- `naive`: `model.generate` per request, one at a time, the whole prompt prefilled every turn;
- `engine`: this project's batching engine (continuous batching, per-chat KV-cache reuse);
- `llama.cpp`: llama-cpp-python on the same GGUF file, one request at a time (`pip install -e .[bench]`).
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from transformers.generation.streamers import BaseStreamer

from bot.core.domain import GenerationParams, Prompt
from bot.llm.base import Engine
from bot.llm.local.loader import LoadedModel
from bot.llm.threads import on_fresh_thread

__all__ = ["EngineRunner", "LlamaCppRunner", "NaiveRunner", "Runner", "Timing", "count_tokens"]


@dataclass(frozen=True, slots=True)
class Timing:
    text: str
    tokens: int
    ttft: float  # seconds from the request to its first token
    total: float  # seconds from the request to its last token


def count_tokens(tokenizer: Any, text: str) -> int:
    """Every runner's replies are counted the same way: the reply text, tokenised again."""
    return len(tokenizer.encode(text, add_special_tokens=False)) if text else 0


class Runner(Protocol):
    name: str

    async def reply(self, prompt: Prompt, max_new_tokens: int) -> Timing: ...

    async def aclose(self) -> None: ...


class _FirstToken(BaseStreamer):
    """Notes when `generate` produces its first new token (the first `put` is the prompt)."""

    def __init__(self) -> None:
        self.first: float | None = None
        self._calls = 0

    def put(self, value: torch.Tensor) -> None:
        self._calls += 1
        if self._calls == 2:
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


class NaiveRunner:
    """One `generate` at a time, each on a thread that ends with it (so that it leaves no OpenMP team to
    slow the engine measured after it, see bot/llm/threads.py); every request prefills its whole prompt."""

    name = "naive"

    async def aclose(self) -> None:
        pass

    def __init__(self, loaded: LoadedModel) -> None:
        self._loaded = loaded
        self._lock = threading.Lock()

    async def reply(self, prompt: Prompt, max_new_tokens: int) -> Timing:
        asked = time.perf_counter()
        work = functools.partial(self._generate, prompt.ids, max_new_tokens, asked)
        return await asyncio.to_thread(on_fresh_thread, work, name="naive")

    def _generate(self, ids: Sequence[int], max_new_tokens: int, asked: float) -> Timing:
        model, tokenizer = self._loaded.model, self._loaded.tokenizer
        streamer = _FirstToken()
        with self._lock, torch.inference_mode():
            out = model.generate(
                torch.tensor([list(ids)]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=tokenizer.pad_token_id or 0,
                streamer=streamer,
            )
        done = time.perf_counter()
        text = tokenizer.decode(out[0, len(ids) :].tolist(), skip_special_tokens=True).strip()
        return Timing(text, count_tokens(tokenizer, text), (streamer.first or done) - asked, done - asked)


class EngineRunner:
    """Any of the project's engines, greedy: this one's own, or a model server through the remote one."""

    def __init__(self, engine: Engine, tokenizer: Any, *, name: str = "engine") -> None:
        self.engine, self._tokenizer, self.name = engine, tokenizer, name

    async def reply(self, prompt: Prompt, max_new_tokens: int) -> Timing:
        params = GenerationParams(max_new_tokens=max_new_tokens, do_sample=False, timeout_seconds=600)
        asked = time.perf_counter()
        first: float | None = None
        pieces: list[str] = []
        async for piece in self.engine.stream(prompt, params):
            first = first or time.perf_counter()
            pieces.append(piece)
        done = time.perf_counter()
        text = "".join(pieces).strip()
        return Timing(text, count_tokens(self._tokenizer, text), (first or done) - asked, done - asked)

    async def aclose(self) -> None:
        await self.engine.aclose()


def load_cpu_backends() -> None:
    """Register the CPU code of a llama.cpp built with GGML_BACKEND_DL (docs/benchmarks.md).

    Such a build keeps its CPU kernels in one libggml-cpu-<variant>.so per CPU generation and picks the
    best one for this CPU at run time; llama-server loads them itself, llama-cpp-python does not (its
    model load then fails). Without LLAMA_CPP_LIB_PATH, or with a build that has no such files (one
    built with GGML_NATIVE=ON, say), there is nothing to do.
    """
    folder = Path(os.environ.get("LLAMA_CPP_LIB_PATH", ""))
    if not folder.name or not any(folder.glob("libggml-cpu-*.so")):
        return
    ggml = ctypes.CDLL(str(folder / "libggml.so"))  # the instance libllama already loaded
    ggml.ggml_backend_reg_count.restype = ctypes.c_size_t
    if ggml.ggml_backend_reg_count() == 0:
        ggml.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
        ggml.ggml_backend_load_all_from_path(str(folder).encode())


class LlamaCppRunner:
    """llama-cpp-python on the GGUF file, greedy, one request at a time (it has one context)."""

    name = "llama.cpp"

    def __init__(self, gguf: str, tokenizer: Any, *, context: int, threads: int) -> None:
        from llama_cpp import Llama  # the optional `bench` extra

        load_cpu_backends()
        self._tokenizer = tokenizer
        self._llm: Any = Llama(model_path=gguf, n_ctx=context, n_threads=threads, verbose=False)
        self._lock = threading.Lock()

    async def reply(self, prompt: Prompt, max_new_tokens: int) -> Timing:
        return await asyncio.to_thread(self._generate, list(prompt.ids), max_new_tokens, time.perf_counter())

    def _generate(self, ids: list[int], max_new_tokens: int, asked: float) -> Timing:
        first: float | None = None
        pieces: list[str] = []
        with self._lock:
            for chunk in self._llm.create_completion(
                ids, max_tokens=max_new_tokens, temperature=0.0, top_k=1, stream=True
            ):
                first = first or time.perf_counter()
                pieces.append(chunk["choices"][0]["text"])
        done = time.perf_counter()
        text = "".join(pieces).strip()
        return Timing(text, count_tokens(self._tokenizer, text), (first or done) - asked, done - asked)

    async def aclose(self) -> None:
        self._llm.close()
