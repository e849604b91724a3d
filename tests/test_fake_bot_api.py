"""The fake Bot API must look like Telegram to the real python-telegram-bot client."""

from __future__ import annotations

import asyncio
import datetime as dtm
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import pytest
from telegram import Bot as PtbBot
from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, MessageEntity, Update
from telegram.error import BadRequest, Conflict, EndPointNotFound, InvalidToken, NetworkError, RetryAfter
from telegram.ext import Application, ContextTypes, MessageHandler, filters

from bot_dev.fakes.bot_api import FakeBotApi
from bot_dev.fakes.wire import parse_params

CHAT, USER = 4242, 4242


@pytest.fixture
def fake() -> Iterator[FakeBotApi]:
    with FakeBotApi() as api:
        yield api


@pytest.fixture
async def bot(fake: FakeBotApi) -> AsyncIterator[PtbBot]:
    async with PtbBot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url) as client:
        yield client


async def test_get_me_identifies_the_bot(fake: FakeBotApi, bot: PtbBot) -> None:
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (777, "support_test_bot", True)
    assert bot.username == "support_test_bot"
    assert [c.method for c in fake.calls] == ["getMe", "getMe"]  # initialize() + explicit call


async def test_send_and_edit_update_the_chat_model(fake: FakeBotApi, bot: PtbBot) -> None:
    first = await bot.send_message(CHAT, "Hello")
    second = await bot.send_message(CHAT, "Thinking…")
    assert (first.message_id, second.message_id) == (1, 2)
    assert first.from_user is not None and first.from_user.id == 777
    assert first.chat.type == "private"

    edited = await bot.edit_message_text("Answer", chat_id=CHAT, message_id=second.message_id)
    assert not isinstance(edited, bool) and edited.text == "Answer" and edited.edit_date is not None
    assert fake.messages_in(CHAT) == ["Hello", "Answer"]
    assert [m["text"] for m in fake.sent_messages] == ["Hello", "Thinking…"]
    assert fake.calls_of("sendMessage")[0].params == {"chat_id": CHAT, "text": "Hello"}

    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text("Answer", chat_id=CHAT, message_id=second.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("x", chat_id=CHAT, message_id=99)
    assert [c.status for c in fake.calls_of("editMessageText")] == [200, 400, 400]


async def test_text_limits_count_utf16_code_units(bot: PtbBot) -> None:
    await bot.send_message(CHAT, "x" * 4096)
    await bot.send_message(CHAT, "😀" * 2048)  # 4096 UTF-16 code units
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(CHAT, "😀" * 2049)
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(CHAT, "x" * 4097)
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await bot.send_message(CHAT, "  ")


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_flood_control_raises_retry_after(fake: FakeBotApi, bot: PtbBot) -> None:
    fake.fail_next("sendMessage", 1, retry_after=3)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(CHAT, "hi")
    assert caught.value.retry_after in (3, dtm.timedelta(seconds=3))
    await bot.send_message(CHAT, "hi")
    assert [c.status for c in fake.calls_of("sendMessage")] == [429, 200]
    assert fake.messages_in(CHAT) == ["hi"]


async def test_generic_failures(fake: FakeBotApi, bot: PtbBot) -> None:
    fake.fail_next_with("getUpdates", 1, 409, "Conflict: terminated by other getUpdates request")
    fake.fail_next_with("sendMessage", 1, 500, "Internal Server Error")
    with pytest.raises(Conflict):
        await bot.get_updates()
    with pytest.raises(NetworkError):
        await bot.send_message(CHAT, "hi")


async def test_get_updates_delivers_realistic_messages(fake: FakeBotApi, bot: PtbBot) -> None:
    text = "/ask@support_test_bot привет 😀 @support_test_bot help"
    update_id = fake.send_text(-100123, USER, text, chat_type="supergroup", username="alice")
    assert update_id == 1000

    updates = await bot.get_updates(timeout=1)
    assert len(updates) == 1 and isinstance(updates[0], Update)
    message = updates[0].message
    assert message is not None and message.chat.title and message.chat.type == "supergroup"
    assert message.from_user is not None and message.from_user.username == "alice"
    parsed = {entity.type: value for entity, value in message.parse_entities().items()}
    assert parsed == {
        MessageEntity.BOT_COMMAND: "/ask@support_test_bot",
        MessageEntity.MENTION: "@support_test_bot",
    }
    # Confirming with offset drops the update; an empty queue is held open, then answers [] by itself.
    poll = asyncio.create_task(bot.get_updates(offset=update_id + 1, timeout=1))
    await fake.wait_for(lambda: fake.polls_waiting == 1)
    assert not poll.done() and fake.pending_updates() == []
    assert await poll == ()
    assert fake.polls_waiting == 0 and fake.calls_of("getUpdates")[-1].status == 200


async def test_long_poll_wakes_on_push(fake: FakeBotApi, bot: PtbBot) -> None:
    sent = await bot.send_message(CHAT, "How can I help?")
    # a poll that would wait ten minutes: only the push can end it while the test runs
    poll = asyncio.create_task(bot.get_updates(timeout=600))
    await fake.wait_for(lambda: fake.polls_waiting == 1)
    fake.send_text(CHAT, USER, "thanks", reply_to_bot_message_id=sent.message_id)
    await fake.wait_for(lambda: fake.polls_waiting == 0)  # woken by the push, not by its timeout
    updates = await poll
    message = updates[0].message
    assert message is not None and message.message_id == 2  # ids are shared per chat
    assert message.reply_to_message is not None and message.reply_to_message.text == "How can I help?"

    reply = await bot.send_message(CHAT, "You're welcome", reply_to_message_id=message.message_id)
    assert reply.reply_to_message is not None and reply.reply_to_message.text == "thanks"


async def test_callback_queries_and_keyboards(fake: FakeBotApi, bot: PtbBot) -> None:
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Yes", callback_data="yes")]])
    sent = await bot.send_message(CHAT, "Resolved?", reply_markup=markup)
    assert sent.reply_markup == markup
    fake.send_callback(CHAT, USER, sent.message_id, "yes")
    (update,) = await bot.get_updates()
    query = update.callback_query
    assert query is not None and query.data == "yes" and query.message is not None
    assert await query.answer("ok") is True
    with pytest.raises(BadRequest, match=r"(?i)query ID is invalid"):
        await bot.answer_callback_query("nope")


async def test_commands_and_webhook_state(fake: FakeBotApi, bot: PtbBot) -> None:
    await bot.set_my_commands([BotCommand("start", "Start"), BotCommand("help", "Help")])
    assert [c.command for c in await bot.get_my_commands()] == ["start", "help"]
    assert await bot.delete_my_commands() is True
    assert await bot.get_my_commands() == ()

    await bot.set_webhook("https://example.invalid/hook", secret_token="s3cret")
    assert (await bot.get_webhook_info()).url == "https://example.invalid/hook"
    with pytest.raises(Conflict, match="webhook is active"):
        await bot.get_updates()
    await bot.delete_webhook()
    assert await bot.get_updates() == ()
    assert await bot.send_chat_action(CHAT, "typing") is True


async def test_wrong_token_and_unknown_method(fake: FakeBotApi, bot: PtbBot) -> None:
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("fooBar")
    assert fake.calls[-1].status == 404
    with pytest.raises(InvalidToken):
        await PtbBot("1:wrong", base_url=fake.base_url).get_me()
    assert fake.calls[-1].status == 401


async def test_wait_for_messages_times_out_helpfully(fake: FakeBotApi, bot: PtbBot) -> None:
    await bot.send_message(CHAT, "one")
    assert await fake.wait_for_messages(CHAT, 1) == ["one"]
    with pytest.raises(AssertionError, match="chats show"):
        await fake.wait_for_messages(CHAT, 2, timeout=0.1)


def test_webhook_post_sends_secret_header(fake: FakeBotApi) -> None:
    seen: list[tuple[str | None, bytes]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.headers.get("X-Telegram-Bot-Api-Secret-Token"), body))
            self.send_response(200 if self.headers.get("X-Telegram-Bot-Api-Secret-Token") else 403)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        assert fake.webhook_post(url, {"message": {"text": "x"}}, "s3cret") == 200
        assert fake.webhook_post(url, {"message": {"text": "x"}}, None) == 403
    finally:
        server.shutdown()
        server.server_close()
    assert seen[0][0] == "s3cret" and b'"update_id": 1000' in seen[0][1]


def test_parses_the_bodies_ptb_sends() -> None:
    form = httpx.Request("POST", "http://x", data={"chat_id": "5", "text": "42", "reply_markup": '{"a": 1}'})
    assert parse_params("", form.headers["Content-Type"], form.read()) == {
        "chat_id": 5,
        "text": "42",
        "reply_markup": {"a": 1},
    }
    files = {"document": ("a.txt", b"abc")}
    multipart = httpx.Request("POST", "http://x", data={"chat_id": "5"}, files=files)
    params = parse_params("", multipart.headers["Content-Type"], multipart.read())
    assert params == {"chat_id": 5, "document": "<file a.txt: 3 bytes>"}
    assert parse_params("", "application/json", b'{"chat_id": 5, "commands": "[1]"}') == {
        "chat_id": 5,
        "commands": [1],
    }


async def test_application_polls_and_replies(fake: FakeBotApi) -> None:
    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text(f"echo: {update.effective_message.text}")

    app = Application.builder().token(fake.token).base_url(fake.base_url).build()
    app.add_handler(MessageHandler(filters.TEXT, echo))
    async with app:
        await app.start()
        assert app.updater is not None
        # ten-minute polls: stopping must not wait for one to end (the test would hang, not pass slowly)
        await app.updater.start_polling(poll_interval=0, timeout=dtm.timedelta(seconds=600))
        fake.send_text(CHAT, USER, "hi")
        assert await fake.wait_for_messages(CHAT, 1) == ["echo: hi"]
        await fake.wait_for(lambda: fake.polls_waiting == 1)
        await app.updater.stop()
        await app.stop()
    assert {"deleteWebhook", "getUpdates", "sendMessage"} <= {c.method for c in fake.calls}


async def test_edit_message_reply_markup_replaces_and_removes_buttons(fake: FakeBotApi, bot: PtbBot) -> None:
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("👍", callback_data="fb1:up")]])
    sent = await bot.send_message(CHAT, "Answer", reply_markup=markup)
    thanked = InlineKeyboardMarkup([[InlineKeyboardButton("👍 ✓", callback_data="fb1:up")]])
    edited = await bot.edit_message_reply_markup(CHAT, sent.message_id, reply_markup=thanked)
    assert not isinstance(edited, bool) and edited.reply_markup == thanked and edited.text == "Answer"
    assert fake.markup_of(CHAT, sent.message_id) == thanked.to_dict()
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_reply_markup(CHAT, sent.message_id, reply_markup=thanked)
    await bot.edit_message_reply_markup(CHAT, sent.message_id)
    assert fake.markup_of(CHAT, sent.message_id) is None
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_reply_markup(CHAT, 999, reply_markup=thanked)
