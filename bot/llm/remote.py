"""An Engine that asks an OpenAI-compatible model server (vLLM, SGLang, TGI, llama.cpp, `bot serve-model`).

The only module that imports httpx. It sends the prompt's messages, not its token ids, to
`{base}/chat/completions`; the server renders them with its own chat template. Failures before the first
piece of text (connection refused, 429/502/503/504) are retried with backoff, honouring Retry-After;
after the first piece nothing is retried, so no text is ever sent twice. Every foreign error leaves this
module as GenerationError, GenerationTimeout or EngineBusy. The API key travels only in the
Authorization header; messages name the server by scheme, host and path, never by credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from bot.core.domain import GenerationParams, Prompt
from bot.core.errors import EngineBusy, GenerationError, GenerationTimeout
from bot.llm.base import Candidate
from bot.llm.local.detok import StopMatcher
from bot.llm.openai_wire import backoff, describe, error_detail, mean_logprob, retry_after, sse_data

__all__ = ["RETRY_STATUSES", "OpenAIEngine"]

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
BUSY_STATUSES = frozenset({429, 503})


class OpenAIEngine:
    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        timeout_seconds: float = 30.0,
        max_retries: int = 3,
        on_generated: Callable[[int, int], None] | None = None,
    ) -> None:
        """`timeout_seconds` bounds connecting and each wait for the server's next bytes (a stalled server);
        the reply as a whole is bounded by `params.timeout_seconds` of each call."""
        self.name = model
        self._model = model
        self._max_retries = max_retries
        self._on_generated = on_generated
        parts = urlsplit(base_url)
        self._where = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        self._where += parts.path.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout_seconds),
            follow_redirects=False,
        )
        self._timeout = timeout_seconds
        self.pending = 0  # requests in flight, for the queue-depth gauge

    async def stream(self, prompt: Prompt, params: GenerationParams) -> AsyncGenerator[str, None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + params.timeout_seconds
        body = self._body(prompt, params, n=1)
        body.update(stream=True, stream_options={"include_usage": True})
        self.pending += 1
        try:
            response = await self._open(body, deadline, params)
        finally:
            self.pending -= 1
        matcher = StopMatcher(prompt.stop_strings)  # in case the server does not apply `stop` itself
        seen: dict[str, Any] = {"usage": None, "chunks": 0}
        started, held = False, ""
        try:
            with self._translated(params, "failed mid-reply"):
                async with contextlib.aclosing(self._deltas(response, deadline, seen)) as deltas:
                    async for content in deltas:
                        text = matcher.feed(content)
                        if not started:
                            text = text.lstrip()
                            started = bool(text)
                        # Trailing whitespace waits until more text follows: a reply never ends in blanks.
                        text, held = held + text, ""
                        body_text = text.rstrip()
                        held = text[len(body_text) :]
                        if body_text:
                            yield body_text
                        if matcher.stopped:
                            break
                tail = matcher.flush().rstrip()
                if tail and started:
                    yield held + tail
                elif tail:
                    yield tail.lstrip()
        finally:
            await response.aclose()
        self._report(seen["usage"], seen["chunks"], 1)

    async def _deltas(
        self, response: httpx.Response, deadline: float, seen: dict[str, Any]
    ) -> AsyncGenerator[str, None]:
        """The content pieces of a streamed chat completion; `seen` collects its usage and chunk count."""
        lines = response.aiter_lines()
        done = False
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    line = await anext(lines, None)
            except TimeoutError:
                if done:  # the reply is complete; the server merely kept the response open
                    return
                raise
            if line is None:
                return
            event = sse_data(line)
            if event is None or done:
                continue
            if event == "[DONE]":  # read on to the body's end, so the connection can be reused
                done = True
                continue
            data = self._json(event)
            seen["usage"] = data.get("usage") or seen["usage"]
            choices = data.get("choices") or []
            content = (choices[0].get("delta") or {}).get("content") if choices else None
            if content:
                seen["chunks"] += 1
                yield content

    @contextlib.contextmanager
    def _translated(self, params: GenerationParams, failed: str) -> Iterator[None]:
        """Errors while a reply is read, as the project's own: the reply's timeout, a stalled server, or
        a broken connection (`failed` says when: "failed mid-reply")."""
        try:
            yield
        except TimeoutError:
            raise GenerationTimeout(f"no complete reply within {params.timeout_seconds:g} s") from None
        except httpx.TimeoutException:
            raise GenerationTimeout(
                f"the model server at {self._where} stalled for {self._timeout:g} s (LLM_TIMEOUT_SECONDS)"
            ) from None
        except httpx.HTTPError as exc:
            raise GenerationError(f"the model server at {self._where} {failed}: {describe(exc)}") from exc

    async def candidates(self, prompt: Prompt, params: GenerationParams) -> list[Candidate]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + params.timeout_seconds
        body = self._body(prompt, params, n=params.num_candidates)
        body["logprobs"] = True
        self.pending += 1
        try:
            response = await self._open(body, deadline, params)
            with self._translated(params, "failed"):
                try:
                    async with asyncio.timeout_at(deadline):
                        raw = await response.aread()
                finally:
                    await response.aclose()
        finally:
            self.pending -= 1
        data = self._json(raw.decode("utf-8", "replace"))
        found: list[Candidate] = []
        for choice in data.get("choices") or []:
            text = str((choice.get("message") or {}).get("content") or "")
            for marker in prompt.stop_strings:
                text = text.split(marker, 1)[0]
            found.append(Candidate(text.strip(), mean_logprob(choice)))
        if not found:
            raise GenerationError(f"the model server at {self._where} answered without any choice")
        self._report(data.get("usage"), 0, len(found))
        # A stable sort: a server that gives no log-probabilities keeps its own order.
        return sorted(found, key=lambda c: -c.mean_logprob if not math.isnan(c.mean_logprob) else 0.0)

    @property
    def in_flight(self) -> int:
        return self.pending

    def queue_position(self, session: str) -> int | None:
        return None  # an OpenAI-compatible server does not say where a request waits

    async def aclose(self) -> None:
        await self._client.aclose()

    def _body(self, prompt: Prompt, params: GenerationParams, *, n: int) -> dict[str, Any]:
        greedy = not params.do_sample and n == 1
        body: dict[str, Any] = {
            "model": self._model,
            "messages": [{"role": role.value, "content": text} for role, text in prompt.messages],
            "max_tokens": params.max_new_tokens,
            # Best-of-n needs variety, as in the local engine: sample even when replies are greedy.
            "temperature": 0.0 if greedy else (params.temperature or 0.7),
            "top_p": 1.0 if greedy else params.top_p,
            "n": n,
        }
        if not greedy and params.top_k > 0:
            body["top_k"] = params.top_k  # not in OpenAI's API; vLLM, SGLang, TGI and llama.cpp accept it
        if params.repetition_penalty != 1.0:
            body["repetition_penalty"] = params.repetition_penalty
        if params.seed is not None:
            body["seed"] = params.seed
        if prompt.stop_strings:
            body["stop"] = list(prompt.stop_strings)
        return body

    async def _open(self, body: dict[str, Any], deadline: float, params: GenerationParams) -> httpx.Response:
        """POST the request and return the streaming 200 response, retrying what is worth retrying."""
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            wait: float | None = None
            try:
                async with asyncio.timeout_at(deadline):
                    request = self._client.build_request("POST", "chat/completions", json=body)
                    response = await self._client.send(request, stream=True)
                    if response.status_code == 200:
                        return response
                    try:
                        raw = await response.aread()
                    finally:
                        await response.aclose()
            except TimeoutError:
                raise GenerationTimeout(f"no complete reply within {params.timeout_seconds:g} s") from None
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                status, problem = None, f"cannot reach the model server at {self._where}: {describe(exc)}"
            except httpx.TimeoutException:
                raise GenerationTimeout(
                    f"the model server at {self._where} sent nothing for {self._timeout:g} s "
                    "(LLM_TIMEOUT_SECONDS)"
                ) from None
            except httpx.HTTPError as exc:
                raise GenerationError(f"the model server at {self._where} failed: {describe(exc)}") from exc
            else:
                status = response.status_code
                problem = self._status_problem(status, raw)
                if status not in RETRY_STATUSES:
                    raise GenerationError(problem)
                wait = retry_after(response.headers.get("Retry-After"))
            delay = wait if wait is not None else backoff(attempt)
            if attempt >= self._max_retries or loop.time() + delay >= deadline:
                raise EngineBusy(problem) if status in BUSY_STATUSES else GenerationError(problem)
            attempt += 1
            log.warning("%s; retry %d of %d in %.1f s", problem, attempt, self._max_retries, delay)
            await asyncio.sleep(delay)

    def _status_problem(self, status: int, raw: bytes) -> str:
        detail = error_detail(raw)
        if status == 401:
            return f"the model server at {self._where} refused the API key (LLM_API_KEY): {detail}"
        if status == 404:
            return (
                f"the model server at {self._where} answered 404 (check LLM_BASE_URL and LLM_MODEL): {detail}"
            )
        return f"the model server at {self._where} answered {status}: {detail}"

    def _json(self, text: str) -> dict[str, Any]:
        try:
            data = json.loads(text)
        except ValueError:
            raise GenerationError(f"the model server at {self._where} sent malformed JSON") from None
        if not isinstance(data, dict):
            raise GenerationError(f"the model server at {self._where} sent an unexpected answer")
        if "error" in data:  # an error after the stream had started (vLLM and serve-model send these)
            error = data["error"] if isinstance(data["error"], dict) else {"message": data["error"]}
            problem = f"the model server at {self._where} failed: {error.get('message', 'unknown error')}"
            code = str(error.get("code") or error.get("type") or "")
            if "timeout" in code:
                raise GenerationTimeout(problem)
            raise GenerationError(problem)
        return data

    def _report(self, usage: Any, chunks: int, sequences: int) -> None:
        if self._on_generated is None:
            return
        tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        self._on_generated(int(tokens) if isinstance(tokens, int) else chunks, sequences)
