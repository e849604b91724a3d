"""The Bot API methods the bot calls, each checked the way Telegram checks it and applied to the world."""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable
from typing import Any

from bot_dev.fakes.wire import JSON, NOT_MODIFIED, ApiError, true, utf16_len
from bot_dev.fakes.world import World

__all__ = ["BotMethods"]


class BotMethods(World):
    """getMe, getUpdates, sendMessage, edits, deletes, commands, webhooks, callback answers."""

    def method_table(self) -> dict[str, Callable[[JSON], Any]]:
        """Handlers by lower-case method name (Telegram's method names are case-insensitive)."""
        return {
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
            "sendchataction": lambda p: true(self._chat_id(p), self._require(p, "action")),
            "setmycommands": self._set_my_commands,
            "getmycommands": lambda p: self._commands.get(self._commands_key(p), []),
            "deletemycommands": lambda p: true(self._commands.pop(self._commands_key(p), None)),
            "setwebhook": lambda p: self._set_webhook(str(p.get("url") or ""), p),  # "" removes it
            "deletewebhook": lambda p: self._set_webhook("", p),
            "getwebhookinfo": lambda _: {
                "url": self.webhook_url,
                "has_custom_certificate": False,
                "pending_update_count": len(self._queue),
            },
            "answercallbackquery": self._answer_callback_query,
            "close": true,
            "logout": true,
        }

    @staticmethod
    def _require(params: JSON, name: str) -> Any:
        if params.get(name) in (None, ""):
            raise ApiError(400, f"Bad Request: {name} is empty")
        return params[name]

    def _chat_id(self, params: JSON) -> int:
        chat_id = self._require(params, "chat_id")
        if not isinstance(chat_id, int):
            raise ApiError(400, "Bad Request: chat not found")
        return chat_id

    @staticmethod
    def _text(params: JSON) -> str:
        text = str(params.get("text") or "")
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if utf16_len(text) > 4096:
            raise ApiError(400, "Bad Request: message is too long")
        return text

    def _get_updates(self, params: JSON) -> list[JSON]:
        offset, limit = int(params.get("offset") or 0), min(max(int(params.get("limit") or 100), 1), 100)
        deadline = time.monotonic() + max(float(params.get("timeout") or 0), 0.0)
        allowed = params.get("allowed_updates")
        with self._cond:
            if self.webhook_url:
                raise ApiError(
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
            self.polls_waiting += 1  # what tests wait for instead of a clock: this poll is being held open
            try:
                while not self._queue and not self._stopping and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
            finally:
                self.polls_waiting -= 1
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
                raise ApiError(400, "Bad Request: message to be replied not found")
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
                raise ApiError(400, "Bad Request: message to edit not found")
            if message["from"]["id"] != self.bot_id:
                raise ApiError(400, "Bad Request: message can't be edited")
            if message.get("text") == text and message.get("reply_markup") == markup:
                raise ApiError(400, NOT_MODIFIED)
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
            raise ApiError(400, "Bad Request: inline keyboard expected")
        with self._cond:
            message = self._messages.get((chat_id, message_id))
            if message is None:
                raise ApiError(400, "Bad Request: message to edit not found")
            if message["from"]["id"] != self.bot_id:
                raise ApiError(400, "Bad Request: message can't be edited")
            if message.get("reply_markup") == markup:
                raise ApiError(400, NOT_MODIFIED)
            message.pop("reply_markup", None)
            if markup:
                message["reply_markup"] = markup
            message["edit_date"] = int(time.time())
            return copy.deepcopy(message)

    def _delete_message(self, params: JSON) -> bool:
        chat_id, message_id = self._chat_id(params), int(self._require(params, "message_id"))
        with self._cond:
            if self._messages.pop((chat_id, message_id), None) is None:
                raise ApiError(400, "Bad Request: message to delete not found")
            self.sent.get(chat_id, {}).pop(message_id, None)
            return True

    @staticmethod
    def _commands_key(params: JSON) -> str:
        return json.dumps([params.get("scope") or {"type": "default"}, params.get("language_code") or ""])

    def _set_my_commands(self, params: JSON) -> bool:
        commands = self._require(params, "commands")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise ApiError(400, "Bad Request: command description must be non-empty")
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
            raise ApiError(
                400, "Bad Request: query is too old and response timeout expired or query ID is invalid"
            )
        return True
