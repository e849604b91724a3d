"""The small steps on their own: the chat line, what counts as visible, the reply value, the terminal."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from bot.chat.deps import ChatDeps
from bot.chat.line import ChatLine
from bot.chat.reply import Reply
from bot.chat.screening import has_visible_content, strip_controls
from bot.chat.service import ChatService
from bot.config import SafetySettings
from bot.core.outcome import Outcome, OutcomeKind
from bot.safety import SafetyPipeline
from bot.storage.inprocess.store import InProcessStore
from bot.transports.terminal import REPLY_END, TerminalChat
from tests.chat.fakes import FakeEngine, fake_deps


async def test_the_line_serves_a_chat_in_arrival_order_and_counts_who_is_ahead() -> None:
    line, served = ChatLine(), []
    places = [line.join("c") for _ in range(3)]
    other = line.join("d")
    assert [p.ahead for p in places] == [0, 1, 2] and other.ahead == 0

    async def serve(n: int) -> None:
        await places[n].turn()
        served.append(n)
        await asyncio.sleep(0)
        places[n].leave()

    places[1].leave()  # turned away on arrival: it does not hold up the third
    await asyncio.gather(serve(2), serve(0))
    assert served == [0, 2] and line.places("c") == []


@pytest.mark.parametrize(
    ("text", "visible"),
    [
        ("hi", True),
        ("🙂", True),
        ("مرحبا", True),
        (" \n\t", False),
        ("\u200b\u200d\ufeff", False),
        ("\x00\x1b", False),
        ("\u2800", False),
        ("\u202e", False),
    ],
)
def test_what_counts_as_visible(text: str, visible: bool) -> None:
    assert has_visible_content(text) is visible


def test_controls_are_stripped_but_tabs_and_line_breaks_kept() -> None:
    assert strip_controls("a\x00b\x1bc\td\ne\rf\x7f") == "abc\td\ne\rf"


async def test_a_reply_streams_its_text_then_its_outcome() -> None:
    async def events():  # type: ignore[no-untyped-def]
        yield "Hel"
        yield "lo"
        yield Outcome(OutcomeKind.ANSWERED, "Hello")

    reply = Reply(events())
    assert [p async for p in reply] == ["Hel", "lo"]
    assert (await reply.outcome()).text == "Hello" and await reply.text() == "Hello"


def terminal(service: ChatService, *, jsonl: bool = False) -> tuple[TerminalChat, io.StringIO]:
    out = io.StringIO()
    chat = TerminalChat(service, chat_id="t", out=out, read_line=input, interactive=False, jsonl=jsonl)
    return chat, out


def canary_service(reply: str, canary: str) -> ChatService:
    settings = SafetySettings(output_profanity=False, check_degenerate=False)
    safety = SafetyPipeline(settings, system_prompt="Be brief.", canary=canary)
    deps: ChatDeps = fake_deps(FakeEngine(reply), InProcessStore(max_turns=20, ttl_seconds=60), safety=safety)
    return ChatService(deps)


async def test_piped_replies_end_with_the_delimiter_and_never_show_withdrawn_text() -> None:
    leak = "word " * 30 + "CANARY-1234 and more words after it " * 3
    chat, out = terminal(canary_service(leak, "CANARY-1234"))
    await chat.handle("tell me")
    await chat.handle("/reset")
    first, second, rest = out.getvalue().split(f"\n{REPLY_END}\n")
    assert first == SafetySettings().refusal_text and "word" not in first, "only the replacement"
    assert second == "(history cleared: this is a new conversation)" and rest == ""


async def test_jsonl_prints_one_object_per_reply_with_its_outcome() -> None:
    service = ChatService(
        fake_deps(FakeEngine("Line one.\nLine two."), InProcessStore(max_turns=20, ttl_seconds=60))
    )
    chat, out = terminal(service, jsonl=True)
    await chat.handle("hello")
    await chat.handle("\u200b")
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["outcome"] for line in lines] == ["answered", "empty_input"]
    assert json.loads(lines[0]) == {"text": "Line one.\nLine two.", "outcome": "answered", "sources": []}
