"""A stdio MCP server's stderr: captured as a bounded tail for error messages (lines to
logging), and read: which lines name the cause of a failure, and how much of them a model may see.

Invariants: memory is bounded (`max_lines` lines of at most `max_line_chars` characters); the
pipe is always drained, so a chatty server never blocks on a full stderr pipe; every pipe
opened here is closed by `StderrPipe.finish`, even if the server never started. `redacted`
text names no home directory, user name, absolute path or secret-looking value of the
environment: it is what reaches a model (the exec description) and remote MCP clients.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import getpass
import io
import logging
import os
import re
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TextIO

__all__ = ["StderrPipe", "StderrTail", "redacted", "stderr_cause"]

MAX_CAUSE_LINES = 3
MIN_SECRET_CHARS = 6
"""Shorter values are not redacted: they would blank out ordinary words."""

_NOISE = re.compile(
    r"A complete log of this run can be found in"  # npm's pointer to its own log file
    r"|^npm (?:error|ERR!|warn|WARN)(?: (?:code|\d{3}))?$"  # npm's prefix with nothing after it
    r"|^npm (?:error|ERR!) \d{3} (?:Note that you can also install from a|tarball, folder, http url, or git url\.)$"
    r"|^Traceback \(most recent call last\):$"
)
_ERROR = re.compile(r"(?i)\b(?:error|fatal|panic)\b|ERR!|\w(?:Error|Exception)\b")
"""A line that reports an error, e.g. `npm error ...`, `ModuleNotFoundError: ...`."""
_TROUBLE = re.compile(
    r"(?i)not found|denied|cannot|can't|failed|canceled|cancelled|no such|missing|invalid|refused|"
    r"not set|unknown|unsupported|exception"
)
"""A line that reads like trouble (when no line reports an error)."""
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|PASS|AUTH|CREDENTIAL|COOKIE|SESSION|PRIVATE|DSN", re.I)
_BEARER = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}")
_URL_USERINFO = re.compile(r"(?<=://)[^/\s@]+@")
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])(?:~|[A-Za-z]:)?[/\\](?:[^\s'\"`:;,()<>\[\]{}]+[/\\])*([^\s'\"`:;,()<>\[\]{}/\\]*)")


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


# -- reading it ------------------------------------------------------------------------------
def stderr_cause(tail: str, max_lines: int = MAX_CAUSE_LINES) -> tuple[str, ...]:
    """The lines of a failed server's stderr that say why: the first lines that read like an
    error (else the last lines), without noise such as npm's "A complete log of this run can be
    found in ..." (which npm prints last, so the last line alone hides the cause)."""
    lines: list[str] = []
    for line in tail.splitlines():
        line = line.strip()
        if line and not _NOISE.search(line) and line not in lines:
            lines.append(line)
    for kind in (_ERROR, _TROUBLE):
        matching = [line for line in lines if kind.search(line)]
        if matching:
            return tuple(matching[:max_lines])
    return tuple(lines[-max_lines:])


def redacted(text: str, secrets: Iterable[str] = (), env: Mapping[str, str] | None = None) -> str:
    """`text` with the values of `secrets` and of secret-looking variables (by name: KEY, TOKEN,
    PASSWORD, ...) of this process's environment and of `env` (a server's own), bearer tokens,
    URL credentials, the home directories, user names and absolute paths replaced (a path
    keeps only its last part: `.../server.js`)."""
    environment = {**os.environ, **(env or {})}
    hidden = {value for value in secrets if len(value) >= MIN_SECRET_CHARS}
    hidden |= {
        value for name, value in environment.items() if _SECRET_NAME.search(name) and len(value) >= MIN_SECRET_CHARS
    }
    for value in sorted(hidden, key=len, reverse=True):
        text = text.replace(value, "<redacted>")
    text = _BEARER.sub(lambda match: f"{match.group(1)} <redacted>", text)
    text = _URL_USERINFO.sub("<redacted>@", text)
    for home in sorted({str(Path.home()), environment.get("HOME", "")}, key=len, reverse=True):
        if len(home) > 1:
            text = text.replace(home, "~")
    text = _ABSOLUTE_PATH.sub(lambda match: f".../{match.group(1)}" if match.group(1) else "...", text)
    for user in {_user_name(), environment.get("USER"), environment.get("LOGNAME")}:
        if user is not None and len(user) >= 3:
            text = re.sub(rf"(?<![\w.-]){re.escape(user)}(?![\w.-])", "<user>", text)
    return text


def _user_name() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no USER/LOGNAME variable
        return None
