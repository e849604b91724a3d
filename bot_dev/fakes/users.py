"""What people do on Telegram, as updates queued for the bot: messages, button presses, webhook posts."""

from __future__ import annotations

import copy
import json
import time
import urllib.error
import urllib.request

from bot_dev.fakes.wire import COMMAND_RE, JSON, MENTION_RE, utf16_len
from bot_dev.fakes.world import World

__all__ = ["UserActions"]


class UserActions(World):
    """Queue updates (realistic messages, callback queries, hand-built ones) and deliver them by webhook."""

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
        command = COMMAND_RE.match(text)
        if command:
            entities.append({"type": "bot_command", "offset": 0, "length": utf16_len(command.group())})
        for mention in MENTION_RE.finditer(text):
            if not command or mention.start() >= command.end():
                entities.append(
                    {
                        "type": "mention",
                        "offset": utf16_len(text[: mention.start()]),
                        "length": utf16_len(mention.group()),
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
