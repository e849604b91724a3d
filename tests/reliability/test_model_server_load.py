"""`bot serve-model` under more requests than it can serve in time sheds load (issue #14, item 2).

The real server and the real batching engine over the tiny model, slowed down: every forward pass
sleeps, so fifty requests take far longer than the generation timeout. Every request must still get an
answer (200, or 429/503 with Retry-After) within GENERATION_TIMEOUT_SECONDS + 5 s, nothing may stay
queued once its client is gone, and the access log must say what really happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from bot.core.domain import GenerationParams
from bot.llm.local.engine import TransformersEngine
from bot.llm.local.loader import LoadedModel, load_model
from bot.prompt.builder import ChatFormat
from bot.transports.openai_server.server import ModelServer
from tests.helpers import each_pass, eventually
from tests.tiny_models import build_tiny_llama

TIMEOUT = 3.0  # GENERATION_TIMEOUT_SECONDS of this server
BOUND = TIMEOUT + 5  # the target: every request answered within this
STEP_SECONDS = 0.05  # each forward pass of the slowed model takes at least this long
REQUEST = {"messages": [{"role": "user", "content": "Where is my order?"}], "max_tokens": 8}


@pytest.fixture(scope="module")
def slowed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadedModel]:
    """A tiny Llama that never stops early (every reply is max_tokens long) and sleeps in every step."""
    path = build_tiny_llama(tmp_path_factory.mktemp("endless"), endless=True)
    model = load_model(str(path), dtype="float32", device="cpu")
    hook = each_pass(model.model).register_forward_pre_hook(lambda *_: time.sleep(STEP_SECONDS))
    yield model
    hook.remove()


@pytest.fixture
async def server(slowed: LoadedModel) -> AsyncIterator[tuple[ModelServer, TransformersEngine, str]]:
    engine = TransformersEngine(slowed, max_queue=64, max_batch=2)
    tokenizer = slowed.tokenizer
    defaults = GenerationParams(max_new_tokens=8, do_sample=False, timeout_seconds=TIMEOUT)
    model_server = ModelServer(
        engine,
        ChatFormat(tokenizer),
        lambda text: len(tokenizer.encode(text, add_special_tokens=False)),
        model_id="tiny",
        context_tokens=slowed.context_tokens,
        defaults=defaults,
    )
    port = model_server.start("127.0.0.1", 0)
    yield model_server, engine, f"http://127.0.0.1:{port}/v1"
    await model_server.stop()
    await engine.aclose()


@pytest.fixture(autouse=True)
def token_never_logged() -> Iterator[None]:
    """Replaces the package's check that the bot token is redacted from httpx's request lines: these
    tests make httpx requests to the model server only, where no bot token exists to redact."""
    yield


async def test_fifty_concurrent_requests_are_each_answered_200_429_or_503_within_the_bound(
    server: tuple[ModelServer, TransformersEngine, str], caplog: pytest.LogCaptureFixture
) -> None:
    model_server, engine, url = server
    caplog.set_level(logging.INFO, logger="bot.transports.openai_server")
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=url, timeout=BOUND, limits=limits) as client:

        async def ask(stream: bool) -> httpx.Response:
            return await client.post("/chat/completions", json={**REQUEST, "stream": stream})

        # a request not answered within BOUND raises ReadTimeout here and fails the test
        responses = await asyncio.gather(*(ask(stream=n % 5 == 0) for n in range(50)))
    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {200, 429, 503}, statuses
    assert 200 in statuses, "the model still answers what it can"
    shed = [response for response in responses if response.status_code != 200]
    assert shed, "50 requests at 9+ slowed steps each cannot all be answered in time: some were shed"
    for response in shed:
        assert response.headers["retry-after"].isdigit()
        assert response.json()["error"]["code"] in ("engine_busy", "overloaded")
    for response in responses:  # a stream that started ends properly: done, or an error event
        if response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream"):
            assert response.text.endswith("data: [DONE]\n\n") or '"error"' in response.text.splitlines()[-2]
    await eventually(lambda: engine.pending == 0 and model_server.active == 0)
    logged = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("POST /v1/chat/completions")
    ]
    assert sorted(int(line.split()[2]) for line in logged) == sorted(statuses), (
        "the log shows the true statuses"
    )


async def test_a_client_that_goes_away_frees_its_place_and_is_logged_as_such(
    server: tuple[ModelServer, TransformersEngine, str], caplog: pytest.LogCaptureFixture
) -> None:
    model_server, engine, url = server
    caplog.set_level(logging.INFO, logger="bot.transports.openai_server")
    async with httpx.AsyncClient(base_url=url, timeout=BOUND) as client:
        busy = [asyncio.create_task(client.post("/chat/completions", json=REQUEST)) for _ in range(2)]
        await eventually(lambda: engine.pending == 0 and model_server.active == 2)  # both generating
        waiting = asyncio.create_task(client.post("/chat/completions", json=REQUEST))
        await eventually(lambda: engine.pending == 1)  # queued behind them
        waiting.cancel()  # the client gives up and closes its connection
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        await eventually(lambda: engine.pending == 0 and bool(gone_requests(caplog)))
        for task in busy:
            assert (await task).status_code in (200, 503)
    gone = gone_requests(caplog)
    assert len(gone) == 1 and gone[0].startswith("POST /v1/chat/completions 499")


def gone_requests(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Access-log lines ("METHOD PATH STATUS in N ms") whose status is 499, the client gone."""
    lines = [record.getMessage() for record in caplog.records]
    return [line for line in lines if line.split()[2:3] == ["499"]]
