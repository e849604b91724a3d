"""OpenAIEngine against a real serve-model server (tornado, in-process) over a real tiny model.

No HTTP is mocked: the client speaks to the server over loopback, so request encoding, SSE framing,
status codes, retries and disconnects are all the real thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import inspect
import json
import logging
import math
import shutil
import subprocess
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import load_settings
from bot.core.domain import GenerationParams, Prompt, Role, Turn
from bot.core.errors import ConfigError, EngineBusy, GenerationError, GenerationTimeout
from bot.llm.base import Candidate
from bot.llm.local.engine import TransformersEngine
from bot.llm.local.loader import LoadedModel, load_model, resolve_source
from bot.llm.remote import OpenAIEngine
from bot.prompt.builder import ChatFormat, PromptBuilder
from bot.transports.openai_server.server import ModelServer
from tests.conftest import free_port
from tests.helpers import eventually
from tests.tiny_models import build_tiny_llama

GREEDY = GenerationParams(max_new_tokens=24, do_sample=False, timeout_seconds=60)
LONG = dataclasses.replace(GREEDY, max_new_tokens=4000)  # on the endless model: far longer than any test
MODEL_ID = "tiny-llama"


@pytest.fixture(scope="module")
def endless(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """A tiny Llama that never emits end-of-sequence: replies run to max_new_tokens."""
    path = build_tiny_llama(tmp_path_factory.mktemp("endless"), endless=True, context=4096)
    return load_model(str(path), dtype="float32", device="cpu")


class Recording:
    """A real engine, wrapped to record how each of its streams ended: finished, or stopped early."""

    def __init__(self, inner: TransformersEngine) -> None:
        self.inner, self.name = inner, inner.name
        self.ended: list[tuple[str, int]] = []
        self.generating = 0  # streams that have produced text and not ended

    async def stream(self, prompt: Prompt, params: GenerationParams) -> AsyncGenerator[str, None]:
        pieces, how = 0, "finished"
        try:
            async with aclosing(self.inner.stream(prompt, params)) as stream:
                async for piece in stream:
                    pieces += 1
                    self.generating += pieces == 1
                    yield piece
        except BaseException as exc:
            how = type(exc).__name__
            raise
        finally:
            self.generating -= pieces > 0
            self.ended.append((how, pieces))

    async def candidates(self, prompt: Prompt, params: GenerationParams) -> list[Candidate]:
        return await self.inner.candidates(prompt, params)

    async def aclose(self) -> None:
        await self.inner.aclose()


Serve = Callable[..., Awaitable[tuple[ModelServer, str]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """`await serve(model, api_key=..., max_queue=..., port=...)` -> (server, base URL), stopped after.

    `max_queue` also limits the engine to one generation at a time, so that "busy" is a state that holds.
    """
    started: list[ModelServer] = []

    async def start(
        model: LoadedModel, *, api_key: str | None = None, max_queue: int | None = None, port: int = 0
    ) -> tuple[ModelServer, str]:
        limits: dict[str, int] = {}
        if max_queue is not None:  # one generation at a time (a batching engine: one slot), then the queue
            limits["max_queue"] = max_queue
            if "max_batch" in inspect.signature(TransformersEngine).parameters:
                limits["max_batch"] = 1
        engine = Recording(TransformersEngine(model, **limits))
        tokenizer = model.tokenizer
        server = ModelServer(
            engine,
            ChatFormat(tokenizer),
            lambda text: len(tokenizer.encode(text, add_special_tokens=False)),
            model_id=MODEL_ID,
            context_tokens=model.context_tokens,
            defaults=GREEDY,
            api_key=api_key,
        )
        bound = server.start("127.0.0.1", port)
        started.append(server)
        return server, f"http://127.0.0.1:{bound}/v1"

    yield start
    for server in started:
        await server.stop()
        await server.engine.aclose()


def make_prompt(model: LoadedModel, text: str = "Where is my order?") -> Prompt:
    builder = PromptBuilder(ChatFormat(model.tokenizer), system_prompt="Be brief.", context_tokens=512)
    return builder.build([], Turn(Role.USER, text), max_new_tokens=GREEDY.max_new_tokens)


async def collect(engine: Any, prompt: Prompt, params: GenerationParams) -> list[str]:
    async with aclosing(engine.stream(prompt, params)) as stream:
        return [piece async for piece in stream]


def recording(server: ModelServer) -> Recording:
    assert isinstance(server.engine, Recording)
    return server.engine


async def test_streamed_reply_equals_the_local_engines_greedy_reply(
    tiny_llama: LoadedModel, serve: Serve
) -> None:
    server, url = await serve(tiny_llama)
    prompt = make_prompt(tiny_llama)
    local = TransformersEngine(tiny_llama)
    expected = "".join(await collect(local, prompt, GREEDY))
    await local.aclose()
    reported: list[tuple[int, int]] = []
    client = OpenAIEngine(
        url, model=MODEL_ID, on_generated=lambda tokens, seqs: reported.append((tokens, seqs))
    )
    pieces = await collect(client, prompt, GREEDY)
    await client.aclose()
    assert expected and len(pieces) > 1  # streamed, not delivered at once
    assert "".join(pieces) == expected
    assert len(reported) == 1 and reported[0][0] > 0 and reported[0][1] == 1  # usage from the server
    assert recording(server).ended == [("finished", len(pieces))]


async def test_non_streaming_and_several_choices_in_openai_format(
    tiny_llama: LoadedModel, serve: Serve
) -> None:
    _server, url = await serve(tiny_llama)
    prompt = make_prompt(tiny_llama)
    local = TransformersEngine(tiny_llama)
    expected = "".join(await collect(local, prompt, GREEDY))
    await local.aclose()
    messages = [{"role": role.value, "content": text} for role, text in prompt.messages]
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        models = (await http.get("/models")).json()
        assert models["data"][0]["id"] == MODEL_ID
        body = {"model": MODEL_ID, "messages": messages, "max_tokens": 24, "temperature": 0}
        answer = (await http.post("/chat/completions", json=body)).json()
        assert answer["object"] == "chat.completion"
        assert answer["choices"][0]["message"] == {"role": "assistant", "content": expected}
        usage = answer["usage"]
        assert usage["prompt_tokens"] == prompt.token_count
        assert (
            usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > prompt.token_count
        )
        streamed = await http.post(
            "/chat/completions", json={**body, "n": 2, "temperature": 1.0, "seed": 3, "stream": True}
        )
        assert streamed.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in streamed.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(event) for event in events[:-1]]
        assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
        assert {c["choices"][0]["index"] for c in chunks} == {0, 1}
    client = OpenAIEngine(url, model=MODEL_ID)
    found = await client.candidates(prompt, dataclasses.replace(GREEDY, num_candidates=3, seed=5))
    await client.aclose()
    assert len(found) == 3 and all(c.text for c in found)
    scores = [c.mean_logprob for c in found]
    assert all(math.isfinite(s) for s in scores) and scores == sorted(scores, reverse=True)


async def test_a_wrong_api_key_is_a_clear_error_that_never_shows_the_key(
    tiny_llama: LoadedModel, serve: Serve
) -> None:
    # letters, so the key's parts never turn up by chance in a URL's port or address
    _server, url = await serve(tiny_llama, api_key="right-key-QWXZ")
    prompt = make_prompt(tiny_llama)
    for key in ("wrong-key-JKVY", None):
        client = OpenAIEngine(url, model=MODEL_ID, api_key=key)
        with pytest.raises(GenerationError, match="refused the API key") as caught:
            await collect(client, prompt, GREEDY)
        await client.aclose()
        assert "LLM_API_KEY" in str(caught.value)
        assert "JKVY" not in str(caught.value) and "QWXZ" not in str(caught.value)
    async with httpx.AsyncClient(base_url=url) as http:
        refused = await http.get("/models")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert refused.json()["error"]["code"] == "invalid_api_key"
        assert (await http.get(url.removesuffix("/v1") + "/healthz")).status_code == 200
    client = OpenAIEngine(url, model=MODEL_ID, api_key="right-key-QWXZ")
    assert "".join(await collect(client, prompt, GREEDY))
    await client.aclose()


async def test_bad_requests_get_specific_openai_errors(tiny_llama: LoadedModel, serve: Serve) -> None:
    _server, url = await serve(tiny_llama)
    async with httpx.AsyncClient(base_url=url) as http:
        long = {"messages": [{"role": "user", "content": "Hello! " * 600}]}
        answer = await http.post("/chat/completions", json=long)
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "context_length_exceeded"
        wrong_model = await http.post(
            "/chat/completions", json={"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert wrong_model.status_code == 404 and MODEL_ID in wrong_model.json()["error"]["message"]
        image = {
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
        }
        assert (await http.post("/chat/completions", json=image)).status_code == 400
    client = OpenAIEngine(url, model="gpt-9")
    with pytest.raises(GenerationError, match="LLM_MODEL"):
        await collect(client, make_prompt(tiny_llama), GREEDY)
    await client.aclose()


async def test_a_server_that_is_not_up_yet_is_retried_until_it_is(
    tiny_llama: LoadedModel, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    client = OpenAIEngine(f"http://127.0.0.1:{port}/v1", model=MODEL_ID, max_retries=8)
    caplog.set_level(logging.WARNING, logger="bot.llm.remote")
    reply = asyncio.create_task(collect(client, make_prompt(tiny_llama), GREEDY))
    await eventually(lambda: "cannot reach the model server" in caplog.text)
    await serve(tiny_llama, port=port)
    assert "".join(await reply)
    await client.aclose()


async def test_a_restarting_server_answers_503_and_the_client_retries_on_the_new_one(
    tiny_llama: LoadedModel, endless: LoadedModel, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    old, url = await serve(endless)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    prompt = make_prompt(endless)
    client = OpenAIEngine(url, model=MODEL_ID, max_retries=8)
    await collect(client, prompt, GREEDY)  # leaves a kept-alive connection in the client's pool
    other = OpenAIEngine(url, model=MODEL_ID)
    long_reply = other.stream(prompt, LONG)
    await anext(long_reply)  # a reply in progress keeps the old server draining
    stopping = asyncio.create_task(old.stop(grace_seconds=60))
    await eventually(lambda: old.draining)
    caplog.set_level(logging.WARNING, logger="bot.llm.remote")
    reply = asyncio.create_task(collect(client, prompt, GREEDY))
    await eventually(lambda: "answered 503" in caplog.text)
    assert "in 1.0 s" in caplog.text  # the server's Retry-After, not the client's own backoff
    await long_reply.aclose()
    await other.aclose()
    await stopping
    new, _ = await serve(tiny_llama, port=port)
    assert "".join(await reply)
    assert [how for how, _pieces in recording(new).ended] == ["finished"]  # answered by the new server
    await client.aclose()


async def test_a_busy_engine_answers_429_retried_then_engine_busy(
    endless: LoadedModel, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    server, url = await serve(endless, max_queue=1)
    engine = recording(server)
    prompt = make_prompt(endless)
    holders: list[tuple[OpenAIEngine, asyncio.Task[list[str]]]] = []
    for busy in (lambda: engine.generating == 1, lambda: engine.inner.pending == 1):
        client = OpenAIEngine(url, model=MODEL_ID)  # the first generates, the second fills the queue
        holders.append((client, asyncio.create_task(collect(client, prompt, LONG))))
        await eventually(busy)
    impatient = OpenAIEngine(url, model=MODEL_ID, max_retries=0)
    with pytest.raises(EngineBusy, match="429"):
        await collect(impatient, prompt, GREEDY)
    await impatient.aclose()
    async with httpx.AsyncClient(base_url=url) as http:
        refused = await http.post("/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "engine_busy"
    caplog.set_level(logging.WARNING, logger="bot.llm.remote")
    patient = OpenAIEngine(url, model=MODEL_ID, max_retries=5)
    retried = asyncio.create_task(collect(patient, prompt, GREEDY))
    await eventually(lambda: "answered 429" in caplog.text)
    for client, task in holders:  # free the engine while `patient` waits for Retry-After
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.aclose()
    assert "".join(await retried)
    await patient.aclose()


async def test_timeout_raises_and_stops_the_server_side_generation(
    endless: LoadedModel, serve: Serve
) -> None:
    server, url = await serve(endless)
    client = OpenAIEngine(url, model=MODEL_ID)
    with pytest.raises(GenerationTimeout):
        await collect(client, make_prompt(endless), dataclasses.replace(LONG, timeout_seconds=0.3))
    await client.aclose()
    await eventually(lambda: bool(recording(server).ended))
    how, pieces = recording(server).ended[0]
    assert how != "finished" and pieces < LONG.max_new_tokens


async def test_closing_the_stream_early_stops_the_server_side_generation(
    endless: LoadedModel, serve: Serve
) -> None:
    server, url = await serve(endless)
    client = OpenAIEngine(url, model=MODEL_ID)
    stream = client.stream(make_prompt(endless), LONG)
    await anext(stream)
    await anext(stream)
    await stream.aclose()
    await eventually(lambda: bool(recording(server).ended))
    how, pieces = recording(server).ended[0]
    assert how != "finished" and pieces < LONG.max_new_tokens
    assert server.active == 0
    await client.aclose()


def _llama_cpp_command() -> list[str] | None:
    if shutil.which("llama-server"):
        return ["llama-server", "--host", "127.0.0.1"]
    server_deps = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette")  # llama-cpp-python[server]
    if all(importlib.util.find_spec(name) for name in server_deps):
        return [sys.executable, "-m", "llama_cpp.server", "--host", "127.0.0.1"]
    return None


@pytest.mark.skipif(
    _llama_cpp_command() is None, reason="neither llama-server nor llama-cpp-python[server] is installed"
)
async def test_against_llama_cpp_server_with_the_bundled_gguf(tmp_path: Path) -> None:
    from bot.llm.local.loader import load_tokenizer

    gguf = resolve_source("bundled:smollm2-135m-instruct").location
    port = free_port()
    command = [*(_llama_cpp_command() or []), "--port", str(port)]
    command += ["-m", gguf] if command[0] == "llama-server" else ["--model", gguf]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        tokenizer, _ = load_tokenizer("bundled:smollm2-135m-instruct")
        builder = PromptBuilder(ChatFormat(tokenizer), system_prompt="Be brief.", context_tokens=2048)
        prompt = builder.build([], Turn(Role.USER, "Say hello."), max_new_tokens=16)
        client = OpenAIEngine(f"http://127.0.0.1:{port}/v1", model="smollm2", max_retries=10)
        reply = "".join(await collect(client, prompt, dataclasses.replace(GREEDY, max_new_tokens=16)))
        await client.aclose()
        assert reply.strip()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_openai_backend_settings_are_validated_and_the_key_is_masked(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_BACKEND", "openai")
    with pytest.raises(ConfigError, match=r"LLM_BASE_URL: required when LLM_BACKEND=openai"):
        load_settings(None)
    monkeypatch.setenv("LLM_BASE_URL", "ftp://models")
    with pytest.raises(ConfigError, match=r"LLM_BASE_URL: must be an http\(s\) URL"):
        load_settings(None)
    monkeypatch.setenv("LLM_BASE_URL", "http://models:8000/v1")
    monkeypatch.setenv("LLM_API_KEY", "sk-very-secret")
    monkeypatch.setenv("SERVE_API_KEY", "serve-secret")
    shown = dict(load_settings(None).effective())
    assert shown["LLM_BASE_URL"] == "http://models:8000/v1"
    assert shown["LLM_API_KEY"] == shown["SERVE_API_KEY"] == "********"
