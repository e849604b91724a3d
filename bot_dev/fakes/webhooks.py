"""Webhook delivery the way Telegram's Bot API server does it, for the fake Bot API (tests, load tests).

What the real server does (tdlib/telegram-bot-api, `WebhookActor`) and this models: updates are POSTed as
JSON with the secret header; a chat's updates go one at a time, the next only after the previous one
was answered 2xx; up to `connections` requests are in flight across chats; a request that fails
(connection refused or reset, timeout, any non-2xx status) is retried after a pause that doubles, and
the update stays queued until some request for it succeeds. The URLs are taken in turn, as a load
balancer in front of several replicas would, so a retry usually reaches another replica.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from bot_dev.fakes.bot_api import JSON, FakeBotApi

__all__ = ["InFlight", "WebhookAttempt", "WebhookDelivery"]


@dataclass(frozen=True)
class InFlight:
    """A POST still waiting for its answer."""

    update_id: int
    chat: object
    url: str
    since: float


@dataclass(frozen=True)
class WebhookAttempt:
    """One POST of an update: where it went and what came back (status 0: no HTTP answer at all)."""

    update_id: int
    url: str
    status: int
    at: float


def _queue_of(update: JSON) -> object:
    """The chat an update belongs to (Telegram keeps one delivery queue per chat)."""
    for key in ("message", "edited_message", "channel_post", "edited_channel_post"):
        if isinstance(update.get(key), dict) and "chat" in update[key]:
            return update[key]["chat"]["id"]
    query = update.get("callback_query")
    if isinstance(query, dict) and isinstance(query.get("message"), dict):
        return query["message"]["chat"]["id"]
    return ("update", update["update_id"])


class WebhookDelivery:
    """POSTs the fake's queued updates to `urls` in turn until each one is acknowledged."""

    def __init__(
        self,
        api: FakeBotApi,
        urls: list[str],
        *,
        connections: int = 40,
        first_retry: float = 0.25,
        max_retry: float = 2.0,
        timeout: float = 60.0,
    ) -> None:
        if not urls:
            raise ValueError("WebhookDelivery needs at least one URL")
        self._api, self._urls = api, list(urls)
        self._connections, self._timeout = connections, timeout
        self._first_retry, self._max_retry = first_retry, max_retry
        self.attempts: list[WebhookAttempt] = []
        self._lock = threading.Lock()
        self._busy: dict[object, InFlight] = {}  # chat -> its update being POSTed
        self._retry_at: dict[int, tuple[float, float]] = {}  # update_id -> (when, last pause)
        self._turn = 0
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=connections, thread_name_prefix="fake-webhook")
        self._thread = threading.Thread(target=self._run, name="fake-webhook-delivery", daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._api.confirm_update(-1)  # wakes the delivery thread
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def acknowledged(self) -> set[int]:
        with self._lock:
            return {a.update_id for a in self.attempts if 200 <= a.status < 300}

    def in_flight(self) -> list[InFlight]:
        """The requests sent and not yet answered."""
        with self._lock:
            return list(self._busy.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                chats_seen: set[object] = set()
                for update in self._api.pending_updates():
                    chat = _queue_of(update)
                    if chat in chats_seen:  # not this chat's oldest update: it waits its turn
                        continue
                    chats_seen.add(chat)
                    if chat in self._busy or len(self._busy) >= self._connections:
                        continue
                    if self._retry_at.get(update["update_id"], (0.0, 0.0))[0] > now:
                        continue
                    url = self._urls[self._turn % len(self._urls)]
                    self._turn += 1
                    self._busy[chat] = InFlight(update["update_id"], chat, url, time.monotonic())
                    self._pool.submit(self._post, chat, url, update)
            self._api.wait_for_change(0.05)

    def _post(self, chat: object, url: str, update: JSON) -> None:
        update_id = int(update["update_id"])
        headers = {"Content-Type": "application/json"}
        if self._api.webhook_secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = self._api.webhook_secret
        request = urllib.request.Request(url, json.dumps(update).encode(), headers, method="POST")
        status = 0
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                status = int(response.status)
        except urllib.error.HTTPError as err:
            status = int(err.code)
        except (OSError, ValueError):  # refused, reset, timed out: no answer at all
            status = 0
        with self._lock:
            self.attempts.append(WebhookAttempt(update_id, url, status, time.monotonic()))
            del self._busy[chat]
            if not 200 <= status < 300:
                pause = self._retry_at.get(update_id, (0.0, self._first_retry / 2))[1] * 2
                pause = min(pause, self._max_retry)
                self._retry_at[update_id] = (time.monotonic() + pause, pause)
            else:
                self._retry_at.pop(update_id, None)
        if 200 <= status < 300:
            self._api.confirm_update(update_id)
        else:
            self._api.confirm_update(-1)  # nothing to forget: wakes the delivery thread
