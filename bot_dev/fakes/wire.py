"""The wire format of the Bot API as the fake speaks it, and the stdlib HTTP server it runs on.

PTB v22 posts ``application/x-www-form-urlencoded`` (multipart when uploading) where every non-string
value, even an int, is a JSON-encoded string; JSON bodies are accepted as well. Answers are Telegram's
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": ..., "description": ...}``.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "COMMAND_RE",
    "JSON",
    "MENTION_RE",
    "NOT_MODIFIED",
    "ApiCall",
    "ApiError",
    "Dispatcher",
    "Handler",
    "Server",
    "parse_params",
    "true",
    "utf16_len",
]


class Dispatcher(Protocol):
    """What the HTTP server hands each request to (the fake)."""

    def handle(self, path: str, query: str, content_type: str, body: bytes) -> tuple[int, dict[str, Any]]: ...


JSON = dict[str, Any]
# Parameters that are always strings: never JSON-decode them (a text of "42" must stay a string).
STRING_PARAMS = frozenset(
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
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
COMMAND_RE = re.compile(r"/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{5,32})?")
MENTION_RE = re.compile(r"(?<![\w@/])@[A-Za-z][A-Za-z0-9_]{4,31}\b")


def utf16_len(text: str) -> int:
    """Telegram measures lengths and offsets in UTF-16 code units, not code points."""
    return len(text.encode("utf-16-le")) // 2


def true(*_: Any) -> bool:
    """Most state-changing methods answer a bare ``true`` once their side effects are done."""
    return True


@dataclass(frozen=True)
class ApiCall:
    """One HTTP call the bot made: what it asked for, when it arrived, and what it was answered."""

    method: str
    params: dict[str, Any]
    at: float
    status: int


class ApiError(Exception):
    """Raised by method handlers; becomes Telegram's ``{"ok": false, ...}`` error body."""

    def __init__(self, status: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.status, self.description, self.parameters = status, description, parameters

    def payload(self) -> JSON:
        body: JSON = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def decode(value: Any, *, form: bool) -> Any:
    """Form values are all JSON-encoded strings; JSON bodies may still carry JSON strings."""
    if not isinstance(value, str) or (not form and not value.lstrip().startswith(("{", "["))):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value  # e.g. chat_id="@channel"


def parse_params(query: str, content_type: str, body: bytes) -> JSON:
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
    return {k: v if k in STRING_PARAMS else decode(v, form=form) for k, v in raw.items()}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: Dispatcher

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a long poll dropped at shutdown) is normal here, not worth a traceback."""
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

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
