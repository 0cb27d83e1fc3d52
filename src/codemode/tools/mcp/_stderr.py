"""Capture of a stdio MCP server's stderr: a bounded tail for error messages, lines to logging.

Invariants: memory is bounded (`max_lines` lines of at most `max_line_chars` characters); the
pipe is always drained, so a chatty server never blocks on a full stderr pipe; every pipe
opened here is closed by `StderrPipe.finish`, even if the server never started.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import io
import logging
import os
from collections import deque
from typing import TextIO

__all__ = ["StderrPipe", "StderrTail"]


class StderrTail:
    """The last lines a server wrote to stderr, across restarts; each line is also logged."""

    def __init__(self, logger: logging.Logger, *, max_lines: int = 40, max_line_chars: int = 500) -> None:
        self._logger = logger
        self._lines: deque[str] = deque(maxlen=max_lines)
        self._max_line_chars = max_line_chars
        self._partial = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> None:
        text = self._partial + self._decoder.decode(data)
        *complete, self._partial = text.split("\n")
        for line in complete:
            self._add(line)
        if len(self._partial) > self._max_line_chars:
            self._add(self._partial)
            self._partial = ""

    def flush(self) -> None:
        """End of one process's output: keep a last line that had no newline."""
        text = self._partial + self._decoder.decode(b"", final=True)
        self._partial = ""
        self._decoder.reset()
        if text:
            self._add(text)

    def tail(self, max_chars: int = 2000, max_lines: int | None = None) -> str:
        """The most recent lines, at most `max_chars` characters (older lines dropped first)."""
        kept: list[str] = []
        size = 0
        for line in reversed(self._lines):
            if max_lines is not None and len(kept) >= max_lines:
                break
            size += len(line) + 1
            if size > max_chars and kept:
                break
            kept.append(line)
        return "\n".join(reversed(kept))

    def _add(self, line: str) -> None:
        line = line.rstrip("\r")
        if not line.strip():
            return
        if len(line) > self._max_line_chars:
            line = line[: self._max_line_chars] + "…"
        self._lines.append(line)
        self._logger.debug("stderr: %s", line)


class _Protocol(asyncio.Protocol):
    def __init__(self, tail: StderrTail) -> None:
        self._tail = tail
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self._tail.feed(data)

    def eof_received(self) -> bool | None:
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._tail.flush()
        if not self.closed.done():
            self.closed.set_result(None)


class StderrPipe:
    """One process's stderr: `writer` goes to the child; the parent reads the other end.

    Call `close_writer()` once the child has been spawned (it holds its own copy), and
    `finish()` when the process is gone.
    """

    def __init__(self, writer: TextIO, transport: asyncio.ReadTransport, protocol: _Protocol) -> None:
        self.writer = writer
        self._transport = transport
        self._protocol = protocol

    @classmethod
    async def open(cls, tail: StderrTail) -> StderrPipe:
        read_fd, write_fd = os.pipe()
        writer = os.fdopen(write_fd, "w", encoding="utf-8")
        reader = io.FileIO(read_fd, "rb")
        try:
            loop = asyncio.get_running_loop()
            transport, protocol = await loop.connect_read_pipe(lambda: _Protocol(tail), reader)
        except BaseException:
            writer.close()
            reader.close()
            raise
        return cls(writer, transport, protocol)

    def close_writer(self) -> None:
        with contextlib.suppress(OSError):
            self.writer.close()

    async def finish(self, grace: float = 0.5) -> None:
        """Read what the dead process left in the pipe (up to `grace` seconds), then close it.

        The grace period matters only when a descendant of the server still holds the pipe.
        """
        self.close_writer()
        try:
            await asyncio.wait_for(asyncio.shield(self._protocol.closed), grace)
        except TimeoutError:
            pass
        finally:
            self._transport.close()
            # One loop pass so the transport's connection_lost runs before we return.
            await asyncio.sleep(0)
