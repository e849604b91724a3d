"""The OpenAI wire format, as pure functions: server-sent events, log-probabilities, error bodies,
Retry-After and backoff. Split from remote.py so the client reads as one flow; tested through it.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

__all__ = ["backoff", "describe", "error_detail", "mean_logprob", "retry_after", "sse_data"]

MAX_BACKOFF_SECONDS = 8.0


def sse_data(line: str) -> str | None:
    """The payload of a `data:` line; None for blank lines, comments and other fields."""
    if not line.startswith("data:"):
        return None
    return line[5:].strip()


def mean_logprob(choice: dict[str, Any]) -> float:
    """From per-token log-probabilities (OpenAI's format), or serve-model's `mean_logprob`; else NaN."""
    content = (choice.get("logprobs") or {}).get("content") or []
    values = [item["logprob"] for item in content if isinstance(item, dict) and "logprob" in item]
    if values:
        return float(sum(values) / len(values))
    mean = choice.get("mean_logprob")
    return float(mean) if isinstance(mean, int | float) else math.nan


def error_detail(raw: bytes) -> str:
    """The server's own message (OpenAI's error format, or plain text), shortened to one line."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
        error = data.get("error", data) if isinstance(data, dict) else data
        text = str(error.get("message", error)) if isinstance(error, dict) else str(error)
    except ValueError:
        pass
    line = text.splitlines()[0] if text else "no details"
    return line[:300]


def retry_after(value: str | None) -> float | None:
    try:
        return min(max(float(value), 0.0), 30.0) if value else None
    except ValueError:  # an HTTP date: fall back to our own backoff
        return None


def backoff(attempt: int) -> float:
    """0.25, 0.5, 1, 2 ... seconds with jitter, so replicas do not retry in lockstep."""
    return min(0.25 * 2.0**attempt, MAX_BACKOFF_SECONDS) * random.uniform(0.75, 1.25)


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
