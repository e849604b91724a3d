"""A loopback TCP proxy between a Redis client and its server that can lose one reply on purpose.

It reads the RESP traffic both ways, pairs every server reply with the command it answers (Redis answers
in order on a connection), and forwards replies one whole frame at a time. Armed with `lose_reply_to`, it
lets the next matching command reach the server, waits for the server's answer (so the command has been
applied), then swallows that answer and closes the client's connection: the client sees its connection
drop, cannot know the write happened, and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["LostReply", "RedisFaultProxy"]

Command = list[bytes]
_CRLF = b"\r\n"


def _frame_end(buf: bytes | bytearray, pos: int) -> int | None:
    """Where the RESP2/RESP3 value starting at `pos` ends, or None while it is incomplete."""
    line_end = buf.find(_CRLF, pos)
    if line_end < 0:
        return None
    kind, header, after = buf[pos : pos + 1], buf[pos + 1 : line_end], line_end + 2
    if kind in (b"$", b"!", b"="):  # bulk string, bulk error, verbatim string
        size = int(header)
        end = after + size + 2 if size >= 0 else after
        return end if len(buf) >= end else None
    if kind in (b"*", b"~", b">", b"%", b"|"):  # array, set, push, map, attribute
        count = int(header) * (2 if kind in (b"%", b"|") else 1)
        for _ in range(max(count, 0)):
            next_pos = _frame_end(buf, after)
            if next_pos is None:
                return None
            after = next_pos
        return after
    return after  # simple string, error, integer, null, double, boolean, big number (or an inline line)


def _parse_command(buf: bytes | bytearray, pos: int) -> tuple[Command, int] | None:
    """The command (an array of bulk strings, or an inline line) starting at `pos`, and where it ends."""
    end = _frame_end(buf, pos)
    if end is None:
        return None
    if buf[pos : pos + 1] != b"*":
        return bytes(buf[pos : end - 2]).split(), end
    line_end = buf.find(_CRLF, pos)
    args: Command = []
    at = line_end + 2
    for _ in range(int(buf[pos + 1 : line_end])):
        header_end = buf.find(_CRLF, at)
        size = int(buf[at + 1 : header_end])
        args.append(bytes(buf[header_end + 2 : header_end + 2 + size]))
        at = header_end + 2 + size + 2
    return args, end


@dataclass(frozen=True)
class LostReply:
    """A command the server applied and answered, whose answer the client never got."""

    command: Command
    reply: bytes


@dataclass
class _Trap:
    matches: Callable[[Command], bool]
    sprung: asyncio.Event = field(default_factory=asyncio.Event)


class RedisFaultProxy:
    """Listens on a free loopback port and forwards every connection to the Redis server at `upstream`."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._trap: _Trap | None = None
        self.commands: list[Command] = []  # every command seen, in arrival order (all connections)
        self.connections = 0  # client connections accepted so far
        self.lost: list[LostReply] = []

    @property
    def port(self) -> int:
        assert self._server is not None, "RedisFaultProxy.start() was not awaited"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> RedisFaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        for task in list(self._pipes):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    def lose_reply_to(self, matches: Callable[[Command], bool]) -> asyncio.Event:
        """Arm once: the answer to the next command for which `matches` is true is lost.

        Error replies (NOSCRIPT, OOM...) pass: only a command the server carried out loses its answer.
        Returns an event set when it happened.
        """
        self._trap = _Trap(matches)
        return self._trap.sprung

    def seen(self, matches: Callable[[Command], bool]) -> list[Command]:
        return [command for command in self.commands if matches(command)]

    # --- plumbing ----------------------------------------------------------------------------------
    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        self.connections += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            client_writer.close()
            self._pipes.discard(task)
            return
        pending: deque[Command] = deque()
        upstream = asyncio.create_task(self._commands(client_reader, server_writer, pending))
        downstream = asyncio.create_task(self._replies(server_reader, client_writer, pending))
        try:
            await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in (upstream, downstream):
                pipe.cancel()
            for writer in (client_writer, server_writer):
                writer.close()
            for pipe in (upstream, downstream):
                with contextlib.suppress(asyncio.CancelledError, OSError, ConnectionError):
                    await pipe
            self._pipes.discard(task)

    async def _commands(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pending: deque[Command]
    ) -> None:
        """Client to server: forward bytes as they come, noting each complete command in order."""
        buf = bytearray()
        while chunk := await reader.read(65536):
            buf += chunk
            pos = 0
            while (parsed := _parse_command(buf, pos)) is not None:
                command, pos = parsed
                pending.append(command)
                self.commands.append(command)
            del buf[:pos]
            writer.write(chunk)
            await writer.drain()

    async def _replies(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pending: deque[Command]
    ) -> None:
        """Server to client: forward whole replies; swallow the trapped one and hang up on the client."""
        buf = bytearray()
        while chunk := await reader.read(65536):
            buf += chunk
            pos = 0
            while (end := _frame_end(buf, pos)) is not None:
                reply, pos = bytes(buf[pos:end]), end
                if reply.startswith(b">"):  # a RESP3 push answers no command
                    writer.write(reply)
                    continue
                command = pending.popleft() if pending else []
                trap = self._trap
                applied = not reply.startswith((b"-", b"!"))  # an error (NOSCRIPT, OOM...) changed nothing
                if trap is not None and command and applied and trap.matches(command):
                    self._trap = None
                    self.lost.append(LostReply(command, reply))
                    trap.sprung.set()
                    return  # the caller closes both sides: the client sees its connection drop
                writer.write(reply)
            del buf[:pos]
            await writer.drain()
