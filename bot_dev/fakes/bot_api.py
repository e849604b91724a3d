"""A small, honest fake of the Telegram Bot API HTTP server for end-to-end tests.

The real python-telegram-bot ``Application`` talks plain HTTP to it, so the whole stack (request
encoding, error mapping, polling, retries) is exercised.  It runs on a stdlib
``ThreadingHTTPServer`` in a background thread, so a blocked long poll never blocks the event loop
under test.  PTB v22 posts ``application/x-www-form-urlencoded`` (multipart when uploading) where
every non-string value, even an int, is a JSON-encoded string; JSON bodies are accepted as well.
"""

from __future__ import annotations

import asyncio
import copy
import email
import email.policy
import itertools
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

__all__ = ["ApiCall", "FakeBotApi"]

JSON = dict[str, Any]
# Parameters that are always strings: never JSON-decode them (a text of "42" must stay a string).
_STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "data",
        "url",
        "secret_token",
        "callback_query_id",
        "parse_mode",
        "action",
        "language_code",
        "inline_message_id",
        "business_connection_id",
        "message_effect_id",
    }
)
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
_COMMAND_RE = re.compile(r"/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{5,32})?")
_MENTION_RE = re.compile(r"(?<![\w@/])@[A-Za-z][A-Za-z0-9_]{4,31}\b")


def _utf16_len(text: str) -> int:
    """Telegram measures lengths and offsets in UTF-16 code units, not code points."""
    return len(text.encode("utf-16-le")) // 2


def _true(*_: Any) -> bool:
    """Most state-changing methods answer a bare ``true`` once their side effects are done."""
    return True


@dataclass(frozen=True)
class ApiCall:
    """One HTTP call the bot made: what it asked for, when it arrived, and what it was answered."""

    method: str
    params: dict[str, Any]
    at: float
    status: int


class _ApiError(Exception):
    """Raised by method handlers; becomes Telegram's ``{"ok": false, ...}`` error body."""

    def __init__(self, status: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.status, self.description, self.parameters = status, description, parameters

    def payload(self) -> JSON:
        body: JSON = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def _decode(value: Any, *, form: bool) -> Any:
    """Form values are all JSON-encoded strings; JSON bodies may still carry JSON strings."""
    if not isinstance(value, str) or (not form and not value.lstrip().startswith(("{", "["))):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value  # e.g. chat_id="@channel"


def _parse_params(query: str, content_type: str, body: bytes) -> JSON:
    raw: JSON = dict(parse_qsl(query))
    form = True
    if body and content_type.startswith("application/json"):
        raw.update(json.loads(body))
        form = False
    elif body and content_type.startswith("multipart/form-data"):
        head = f"Content-Type: {content_type}\r\n\r\n".encode()
        msg = email.message_from_bytes(head + body, policy=email.policy.HTTP)
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            filename = part.get_filename()
            raw[str(name)] = f"<file {filename}: {len(data)} bytes>" if filename else data.decode()
    elif body:
        raw.update(parse_qsl(body.decode(), keep_blank_values=True))
    return {k: v if k in _STRING_PARAMS else _decode(v, form=form) for k, v in raw.items()}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeBotApi

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a long poll dropped at shutdown) is normal here, not worth a traceback."""
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        status, payload = self.server.fake.handle(url.path, url.query, self.headers.get_content_type(), body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""


class FakeBotApi:
    """In-process Telegram Bot API: records calls, models chats, queues updates, injects failures."""

    def __init__(
        self,
        token: str = "123456:TEST-token-abcdefghijklmnopqrstuvwxyz",
        bot_username: str = "support_test_bot",
        bot_id: int = 777,
    ) -> None:
        self.token, self.bot_username, self.bot_id = token, bot_username, bot_id
        self.bot_user: JSON = {
            "id": bot_id,
            "is_bot": True,
            "first_name": "Support Bot",
            "username": bot_username,
        }
        self.calls: list[ApiCall] = []
        self.sent: dict[int, dict[int, str]] = {}
        self.sent_messages: list[JSON] = []
        self.next_update_id = 1000
        self.webhook_url = ""
        self.webhook_secret: str | None = None
        self._cond = threading.Condition(threading.RLock())
        self._queue: list[JSON] = []
        self._messages: dict[tuple[int, int], JSON] = {}
        self._chats: dict[int, JSON] = {}
        self._last_message_id: dict[int, int] = {}
        self._commands: dict[str, list[JSON]] = {}
        self._callback_ids: set[str] = set()
        self._failures: dict[str, list[_ApiError]] = {}
        self._delays: dict[str, list[float]] = {}
        self._stopping = False
        self._query_ids = itertools.count(4_200_000)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._methods: dict[str, Callable[[JSON], Any]] = {
            "getme": lambda _: dict(
                self.bot_user,
                can_join_groups=True,
                can_read_all_group_messages=False,
                supports_inline_queries=False,
            ),
            "getupdates": self._get_updates,
            "sendmessage": self._send_message,
            "editmessagetext": self._edit_message_text,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "deletemessage": self._delete_message,
            "sendchataction": lambda p: _true(self._chat_id(p), self._require(p, "action")),
            "setmycommands": self._set_my_commands,
            "getmycommands": lambda p: self._commands.get(self._commands_key(p), []),
            "deletemycommands": lambda p: _true(self._commands.pop(self._commands_key(p), None)),
            "setwebhook": lambda p: self._set_webhook(str(p.get("url") or ""), p),  # "" removes it
            "deletewebhook": lambda p: self._set_webhook("", p),
            "getwebhookinfo": lambda _: {
                "url": self.webhook_url,
                "has_custom_certificate": False,
                "pending_update_count": len(self._queue),
            },
            "answercallbackquery": self._answer_callback_query,
            "close": _true,
            "logout": _true,
        }

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Self:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-bot-api",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True  # release long pollers so the server can shut down promptly
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "FakeBotApi.start() was not called"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # --- failure injection and inspection ---------------------------------------------------------
    def fail_next(self, method: str, count: int, retry_after: int = 1) -> None:
        """Answer the next ``count`` calls of ``method`` with flood control (HTTP 429)."""
        error = _ApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})
        with self._cond:
            self._failures.setdefault(method.lower(), []).extend([error] * count)

    def fail_next_with(self, method: str, count: int, status: int, description: str) -> None:
        """Answer the next ``count`` calls of ``method`` with an arbitrary error (409, 500, ...)."""
        with self._cond:
            self._failures.setdefault(method.lower(), []).extend([_ApiError(status, description)] * count)

    def delay_next(self, method: str, count: int, seconds: float) -> None:
        """Apply the next ``count`` calls of ``method`` normally but answer only after ``seconds``
        (longer than the client's timeout, it simulates a reply lost in the network)."""
        with self._cond:
            self._delays.setdefault(method.lower(), []).extend([seconds] * count)

    def calls_of(self, method: str) -> list[ApiCall]:
        with self._cond:
            return [c for c in self.calls if c.method.lower() == method.lower()]

    def messages_in(self, chat_id: int) -> list[str]:
        """What the chat currently shows from the bot, oldest first, after edits."""
        with self._cond:
            return [text for _, text in sorted(self.sent.get(chat_id, {}).items())]

    # --- HTTP dispatch -----------------------------------------------------------------------------
    def handle(self, path: str, query: str, content_type: str, body: bytes) -> tuple[int, JSON]:
        """Serve one request (called on a server thread); returns (HTTP status, JSON body)."""
        received, params = time.monotonic(), dict[str, Any]()
        match = re.fullmatch(r"/bot([^/]+)/([A-Za-z]+)", path)
        method = match.group(2) if match else path
        try:
            if match is None:
                raise _ApiError(404, "Not Found")
            params = _parse_params(query, content_type, body)
            if match.group(1) != self.token:
                raise _ApiError(401, "Unauthorized")
            with self._cond:
                pending = self._failures.get(method.lower())
                if pending:
                    raise pending.pop(0)
            handler = self._methods.get(method.lower())
            if handler is None:
                raise _ApiError(404, "Not Found: method not found")
            status, payload = 200, {"ok": True, "result": handler(params)}
        except _ApiError as err:
            status, payload = err.status, err.payload()
        except (ValueError, TypeError, KeyError) as err:
            status, payload = 400, _ApiError(400, f"Bad Request: {err}").payload()
        with self._cond:
            self.calls.append(ApiCall(method, params, received, status))
            delays = self._delays.get(method.lower())
            delay = delays.pop(0) if delays else 0.0
        if delay:
            time.sleep(delay)  # on this request's server thread only
        return status, payload

    @staticmethod
    def _require(params: JSON, name: str) -> Any:
        if params.get(name) in (None, ""):
            raise _ApiError(400, f"Bad Request: {name} is empty")
        return params[name]

    def _chat_id(self, params: JSON) -> int:
        chat_id = self._require(params, "chat_id")
        if not isinstance(chat_id, int):
            raise _ApiError(400, "Bad Request: chat not found")
        return chat_id

    @staticmethod
    def _text(params: JSON) -> str:
        text = str(params.get("text") or "")
        if not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        if _utf16_len(text) > 4096:
            raise _ApiError(400, "Bad Request: message is too long")
        return text

    def _chat(self, chat_id: int) -> JSON:
        if chat_id in self._chats:
            return dict(self._chats[chat_id])
        if chat_id > 0:
            return {"id": chat_id, "type": "private", "first_name": "User"}
        kind = "supergroup" if str(chat_id).startswith("-100") else "group"
        return {"id": chat_id, "type": kind, "title": "Test group"}

    def _new_message_id(self, chat_id: int, wanted: int | None = None) -> int:
        message_id = wanted if wanted is not None else self._last_message_id.get(chat_id, 0) + 1
        self._last_message_id[chat_id] = max(message_id, self._last_message_id.get(chat_id, 0))
        return message_id

    # --- methods -----------------------------------------------------------------------------------
    def _get_updates(self, params: JSON) -> list[JSON]:
        offset, limit = int(params.get("offset") or 0), min(max(int(params.get("limit") or 100), 1), 100)
        deadline = time.monotonic() + max(float(params.get("timeout") or 0), 0.0)
        allowed = params.get("allowed_updates")
        with self._cond:
            if self.webhook_url:
                raise _ApiError(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )
            if offset < 0:
                self._queue = self._queue[offset:]
            elif offset:
                self._queue = [u for u in self._queue if u["update_id"] >= offset]  # confirmed
            if allowed:  # Telegram drops the updates of types the bot did not ask for
                self._queue = [u for u in self._queue if set(u) & set(allowed)]
            while not self._queue and not self._stopping and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            return copy.deepcopy(self._queue[:limit])

    def _send_message(self, params: JSON) -> JSON:
        chat_id, text = self._chat_id(params), self._text(params)
        reply = params.get("reply_parameters") or {}
        reply_id = reply.get("message_id") or params.get("reply_to_message_id")
        with self._cond:
            target = self._messages.get((int(reply.get("chat_id") or chat_id), int(reply_id or 0)))
            if (
                reply_id
                and target is None
                and not (
                    reply.get("allow_sending_without_reply") or params.get("allow_sending_without_reply")
                )
            ):
                raise _ApiError(400, "Bad Request: message to be replied not found")
            message: JSON = {
                "message_id": self._new_message_id(chat_id),
                "from": dict(self.bot_user),
                "chat": self._chat(chat_id),
                "date": int(time.time()),
                "text": text,
            }
            if target is not None:
                message["reply_to_message"] = {k: v for k, v in target.items() if k != "reply_to_message"}
            for key in ("entities", "reply_markup"):
                if isinstance(params.get(key), (list, dict)) and (
                    key != "reply_markup" or "inline_keyboard" in params[key]
                ):
                    message[key] = params[key]
            self._messages[(chat_id, message["message_id"])] = message
            self.sent.setdefault(chat_id, {})[message["message_id"]] = text
            self.sent_messages.append(copy.deepcopy(message))
            return copy.deepcopy(message)

    def _edit_message_text(self, params: JSON) -> JSON | bool:
        if params.get("inline_message_id"):
            self._text(params)
            return True  # inline messages are not modelled; Telegram answers True for them
        chat_id, text = self._chat_id(params), self._text(params)
        message_id = int(self._require(params, "message_id"))
        markup = params.get("reply_markup") if isinstance(params.get("reply_markup"), dict) else None
        with self._cond:
            message = self._messages.get((chat_id, message_id))
            if message is None:
                raise _ApiError(400, "Bad Request: message to edit not found")
            if message["from"]["id"] != self.bot_id:
                raise _ApiError(400, "Bad Request: message can't be edited")
            if message.get("text") == text and message.get("reply_markup") == markup:
                raise _ApiError(400, _NOT_MODIFIED)
            message.update(text=text, edit_date=int(time.time()))
            message.pop("reply_markup", None)
            if markup:
                message["reply_markup"] = markup
            self.sent.setdefault(chat_id, {})[message_id] = text
            return copy.deepcopy(message)

    def _edit_message_reply_markup(self, params: JSON) -> JSON | bool:
        """Replace (or, without reply_markup, remove) a message's inline keyboard."""
        if params.get("inline_message_id"):
            return True
        chat_id, message_id = self._chat_id(params), int(self._require(params, "message_id"))
        markup = params.get("reply_markup") if isinstance(params.get("reply_markup"), dict) else None
        if markup is not None and "inline_keyboard" not in markup:
            raise _ApiError(400, "Bad Request: inline keyboard expected")
        with self._cond:
            message = self._messages.get((chat_id, message_id))
            if message is None:
                raise _ApiError(400, "Bad Request: message to edit not found")
            if message["from"]["id"] != self.bot_id:
                raise _ApiError(400, "Bad Request: message can't be edited")
            if message.get("reply_markup") == markup:
                raise _ApiError(400, _NOT_MODIFIED)
            message.pop("reply_markup", None)
            if markup:
                message["reply_markup"] = markup
            message["edit_date"] = int(time.time())
            return copy.deepcopy(message)

    def markup_of(self, chat_id: int, message_id: int) -> JSON | None:
        """The inline keyboard a message shows now (after edits), or None."""
        with self._cond:
            message = self._messages.get((chat_id, message_id))
            return copy.deepcopy(message.get("reply_markup")) if message else None

    def _delete_message(self, params: JSON) -> bool:
        chat_id, message_id = self._chat_id(params), int(self._require(params, "message_id"))
        with self._cond:
            if self._messages.pop((chat_id, message_id), None) is None:
                raise _ApiError(400, "Bad Request: message to delete not found")
            self.sent.get(chat_id, {}).pop(message_id, None)
            return True

    @staticmethod
    def _commands_key(params: JSON) -> str:
        return json.dumps([params.get("scope") or {"type": "default"}, params.get("language_code") or ""])

    def _set_my_commands(self, params: JSON) -> bool:
        commands = self._require(params, "commands")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise _ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise _ApiError(400, "Bad Request: command description must be non-empty")
        with self._cond:
            self._commands[self._commands_key(params)] = list(commands)
        return True

    def _set_webhook(self, url: str, params: JSON) -> bool:
        with self._cond:
            self.webhook_url = url
            self.webhook_secret = str(params["secret_token"]) if params.get("secret_token") else None
            if params.get("drop_pending_updates"):
                self._queue.clear()
        return True

    def _answer_callback_query(self, params: JSON) -> bool:
        if str(self._require(params, "callback_query_id")) not in self._callback_ids:
            raise _ApiError(
                400, "Bad Request: query is too old and response timeout expired or query ID is invalid"
            )
        return True

    # --- injecting updates -------------------------------------------------------------------------
    def push_update(self, update: JSON) -> int:
        """Queue an update (assigning ``update_id`` if missing) and wake any long poll."""
        update = copy.deepcopy(update)
        with self._cond:
            update.setdefault("update_id", self.next_update_id)
            self.next_update_id = max(self.next_update_id, update["update_id"]) + 1
            for key in ("message", "edited_message", "channel_post", "edited_channel_post"):
                message = update.get(key)
                if isinstance(message, dict) and "chat" in message and "message_id" in message:
                    chat_id = message["chat"]["id"]  # remember it so replies and edits can find it
                    self._new_message_id(chat_id, message["message_id"])
                    self._messages[(chat_id, message["message_id"])] = copy.deepcopy(message)
            self._queue.append(update)
            self._cond.notify_all()
            return int(update["update_id"])

    def pending_updates(self) -> list[JSON]:
        """Copies of the queued, unconfirmed updates (e.g. to POST one to a webhook by hand)."""
        with self._cond:
            return copy.deepcopy(self._queue)

    def confirm_update(self, update_id: int) -> None:
        """Forget a queued update, as Telegram does once a webhook request for it answered 2xx."""
        with self._cond:
            self._queue = [u for u in self._queue if u["update_id"] != update_id]
            self._cond.notify_all()

    def wait_for_change(self, timeout: float) -> None:
        """Block (a delivery thread) until an update is queued or confirmed, or `timeout` passes."""
        with self._cond:
            if not self._stopping:
                self._cond.wait(timeout)

    def push_raw(self, update: JSON) -> int:
        """Queue a hand-built update (sticker, photo, edited_message, channel_post, ...)."""
        return self.push_update(update)

    def _auto_entities(self, text: str) -> list[JSON]:
        entities: list[JSON] = []
        command = _COMMAND_RE.match(text)
        if command:
            entities.append({"type": "bot_command", "offset": 0, "length": _utf16_len(command.group())})
        for mention in _MENTION_RE.finditer(text):
            if not command or mention.start() >= command.end():
                entities.append(
                    {
                        "type": "mention",
                        "offset": _utf16_len(text[: mention.start()]),
                        "length": _utf16_len(mention.group()),
                    }
                )
        return entities

    def send_text(
        self,
        chat_id: int,
        user_id: int,
        text: str,
        *,
        chat_type: str = "private",
        first_name: str = "User",
        username: str | None = None,
        message_id: int | None = None,
        reply_to_bot_message_id: int | None = None,
        entities: list[JSON] | None = None,
    ) -> int:
        """Queue a realistic ``message`` update from a user, as Telegram would deliver it."""
        user: JSON = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}
        chat: JSON = {"id": chat_id, "type": chat_type}
        if username:
            user["username"] = username
        if chat_type == "private":
            chat.update({k: v for k, v in user.items() if k in ("first_name", "username")})
        else:
            chat["title"] = "Test group"
        with self._cond:
            self._chats[chat_id] = chat
            message: JSON = {
                "message_id": self._new_message_id(chat_id, message_id),
                "from": user,
                "chat": chat,
                "date": int(time.time()),
                "text": text,
            }
            found = entities if entities is not None else self._auto_entities(text)
            if found:
                message["entities"] = found
            if reply_to_bot_message_id is not None:
                target = self._messages.get((chat_id, reply_to_bot_message_id))
                if target is None:
                    raise ValueError(f"bot message {reply_to_bot_message_id} not found in chat {chat_id}")
                message["reply_to_message"] = {k: v for k, v in target.items() if k != "reply_to_message"}
            return self.push_update({"message": message})

    def send_callback(self, chat_id: int, user_id: int, message_id: int, data: str) -> int:
        """Queue a ``callback_query`` update for a button on a message the bot sent."""
        with self._cond:
            message = self._messages.get((chat_id, message_id))
            if message is None:
                raise ValueError(f"message {message_id} not found in chat {chat_id}")
            query_id = f"{user_id}-{next(self._query_ids)}"
            self._callback_ids.add(query_id)
            user = {"id": user_id, "is_bot": False, "first_name": "User"}
            return self.push_update(
                {
                    "callback_query": {
                        "id": query_id,
                        "from": user,
                        "message": copy.deepcopy(message),
                        "chat_instance": str(abs(chat_id) * 31 + 7),
                        "data": data,
                    }
                }
            )

    # --- test helpers --------------------------------------------------------------------------------
    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Poll ``predicate`` without blocking the loop the bot runs on."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                with self._cond:
                    recent = [f"{c.method}->{c.status}" for c in self.calls[-15:]]
                    shown = {chat: self.messages_in(chat) for chat in self.sent}
                name = getattr(predicate, "__qualname__", repr(predicate))
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {name}; "
                    f"recent calls: {recent}; chats show: {shown}"
                )
            await asyncio.sleep(0.02)

    async def wait_for_messages(self, chat_id: int, count: int, timeout: float = 10) -> list[str]:  # noqa: ASYNC109
        """Wait until the bot has at least ``count`` messages in ``chat_id``; return their texts."""
        await self.wait_for(lambda: len(self.messages_in(chat_id)) >= count, timeout)
        return self.messages_in(chat_id)

    def webhook_post(self, url: str, update: JSON, secret: str | None = None) -> int:
        """POST an update to the bot's webhook like Telegram does (blocking: use asyncio.to_thread)."""
        with self._cond:
            update = dict(update)
            update.setdefault("update_id", self.next_update_id)
            self.next_update_id = max(self.next_update_id, update["update_id"]) + 1
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        request = urllib.request.Request(url, json.dumps(update).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as err:
            return int(err.code)
