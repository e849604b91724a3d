"""The terminal transport: talk to the assistant in a shell, or script it through a pipe.

Interactive (stdin is a terminal): a prompt, replies streamed as they are generated, /reset and /exit.
Piped: one message per input line; each reply is printed once its outcome is known (a reply the safety
checks replaced never shows the withdrawn text) and is followed by a line holding only the ASCII record
separator (U+001E, `REPLY_END`), which a reply never contains. With `--jsonl`: one JSON object per reply,
{"text": ..., "outcome": ..., "sources": [...]}, and nothing else on stdout.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TextIO

from bot.chat.service import ChatService, Message
from bot.core.errors import StoreUnavailable
from bot.core.outcome import Outcome, OutcomeKind
from bot.core.texts import TerminalTexts

__all__ = ["HELP", "REPLY_END", "TerminalChat"]

HELP = TerminalTexts.HELP
REPLY_END = "\x1e"


class TerminalChat:
    def __init__(
        self,
        service: ChatService,
        *,
        chat_id: str,
        out: TextIO,
        read_line: Callable[[str], str],
        interactive: bool,
        jsonl: bool = False,
    ) -> None:
        self._service = service
        self._chat_id = chat_id
        self._out = out
        self._read_line = read_line
        self._interactive = interactive
        self._jsonl = jsonl

    async def run(self) -> None:
        if self._interactive:
            self._say(f"Connected. {HELP}\n")
        while True:
            try:
                line = await asyncio.to_thread(self._read_line, "you> " if self._interactive else "")
            except EOFError:
                break
            text = line.strip()
            if not text:
                continue
            if text in ("/exit", "/quit"):
                break
            await self.handle(text)
        if self._interactive:
            self._say("\n")

    async def handle(self, text: str) -> None:
        """Answer one line: a command or a message."""
        if text in ("/reset", "/new"):
            try:
                await self._service.reset(self._chat_id)
            except StoreUnavailable as exc:
                self._notice(TerminalTexts.NOT_CLEARED.format(error=exc))
            else:
                self._notice(TerminalTexts.CLEARED)
            return
        if text in ("/help", "/start"):
            self._notice(HELP)
            return
        reply = self._service.respond(Message(chat_id=self._chat_id, text=text))
        if not self._interactive:  # piped: the reply goes out once it is final
            self._emit(await reply.outcome())
            return
        self._say("bot> ")
        streamed = ""
        async for piece in reply:
            streamed += piece
            self._say(piece)
        outcome = await reply.outcome()
        if outcome.kind is OutcomeKind.REPLACED or (not outcome.streamed and outcome.text):
            self._say(("\n" if streamed else "") + outcome.text)  # what was shown is withdrawn
        self._say("\n")

    def _notice(self, text: str) -> None:
        """A command's answer (not a reply of the assistant: its outcome is "command")."""
        if self._interactive:
            self._say(text + "\n")
        else:
            self._record(text, "command", ())

    def _emit(self, outcome: Outcome) -> None:
        self._record(outcome.text, outcome.kind.value, outcome.sources)

    def _record(self, text: str, kind: str, sources: tuple[str, ...]) -> None:
        if self._jsonl:
            record = {"text": text, "outcome": kind, "sources": list(sources)}
            self._say(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            self._say(text.replace(REPLY_END, "") + "\n" + REPLY_END + "\n")

    def _say(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()
