"""The fake's model of Telegram: the bot's identity, chats, messages, queued updates and every call made.

One lock (a condition, so long polls can wait on it) guards all of it: the HTTP server's threads and the
test's event loop both read and write here.
"""

from __future__ import annotations

import copy
import itertools
import threading

from bot_dev.fakes.wire import JSON, ApiCall

__all__ = ["World"]


class World:
    """State shared by the Bot API methods (what the bot does) and the user actions (what people do)."""

    def __init__(self, token: str, bot_username: str, bot_id: int) -> None:
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
        self.polls_waiting = 0  # getUpdates calls held open right now, waiting for an update
        self._cond = threading.Condition(threading.RLock())
        self._queue: list[JSON] = []
        self._messages: dict[tuple[int, int], JSON] = {}
        self._chats: dict[int, JSON] = {}
        self._last_message_id: dict[int, int] = {}
        self._commands: dict[str, list[JSON]] = {}
        self._callback_ids: set[str] = set()
        self._stopping = False
        self._query_ids = itertools.count(4_200_000)

    def calls_of(self, method: str) -> list[ApiCall]:
        with self._cond:
            return [c for c in self.calls if c.method.lower() == method.lower()]

    def messages_in(self, chat_id: int) -> list[str]:
        """What the chat currently shows from the bot, oldest first, after edits."""
        with self._cond:
            return [text for _, text in sorted(self.sent.get(chat_id, {}).items())]

    def markup_of(self, chat_id: int, message_id: int) -> JSON | None:
        """The inline keyboard a message shows now (after edits), or None."""
        with self._cond:
            message = self._messages.get((chat_id, message_id))
            return copy.deepcopy(message.get("reply_markup")) if message else None

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
