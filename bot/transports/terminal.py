"""The terminal transport: talk to the assistant in a shell, or script it through a pipe.

Interactive (stdin is a terminal): a prompt, replies streamed as they are generated, /reset and /exit.
Piped: one message per input line, one reply per message on stdout, nothing else on stdout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TextIO

from bot.chat.service import ChatService, Message
from bot.core.errors import (
    EngineBusy,
    GenerationError,
    GenerationTimeout,
    InputRefused,
    PromptTooLong,
    ReplyReplaced,
    StoreUnavailable,
)

__all__ = ["HELP", "TerminalChat"]

HELP = "Commands: /reset (or /new) forgets this conversation, /help shows this, /exit (or Ctrl-D) quits."


class TerminalChat:
    def __init__(
        self,
        service: ChatService,
        *,
        chat_id: str,
        out: TextIO,
        read_line: Callable[[str], str],
        interactive: bool,
    ) -> None:
        self._service = service
        self._chat_id = chat_id
        self._out = out
        self._read_line = read_line
        self._interactive = interactive

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
                self._say(f"(could not clear the history: {exc})\n")
            else:
                self._say("(history cleared: this is a new conversation)\n")
            return
        if text in ("/help", "/start"):
            self._say(HELP + "\n")
            return
        if self._interactive:
            self._say("bot> ")
        try:
            async for piece in self._service.respond(Message(chat_id=self._chat_id, text=text)):
                self._say(piece)
        except InputRefused as exc:
            self._say(exc.text)
        except ReplyReplaced as exc:  # what was shown of the reply is withdrawn
            self._say(("\n" if self._interactive else "") + exc.text)
        except PromptTooLong:
            self._say("(that message is too long for me to read; please shorten it)")
        except GenerationTimeout:
            self._say("(sorry, that took too long; please try again)")
        except EngineBusy:
            self._say("(I am busy with other conversations; please try again in a moment)")
        except GenerationError as exc:
            self._say(f"(sorry, something went wrong while answering: {exc})")
        self._say("\n")

    def _say(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()
