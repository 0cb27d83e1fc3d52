"""One prepared V8 context (isolate, prelude, output ring) and the threads that make and free them.

Isolates are generic: nothing of a session is in them until a cell starts (its tools, heap
limit and stored values arrive with the program), so one pool serves every session.

Invariant: the event loop never calls synchronously into a running isolate; the ring is read
straight from shared memory, and never after the context is freed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import struct
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any, cast

from codemode._engine.miniracer._compat import V8Context
from codemode._protocol.helpers import MODULE_EXPORTS, PRELUDE_HELPERS
from codemode.errors import EngineError

SCRIPT_NAME = "exec_main.mjs"
PRELUDE_NAME = "codemode_prelude.js"
RING_BYTES = 1 << 20
# Characters of messages that may wait inside a busy isolate (beyond what the ring holds); output
# past it is dropped there, and the cell shows a notice in its place (`OutputDroppedEvent`).
MAX_BUFFERED_CHARS = 64 * 1024 * 1024
# (Lazy compilation of the prelude's functions on an exec's first calls was a third of its CPU:
# the ones every exec runs are parenthesized in prelude.js, which makes V8 compile them while
# the isolate is prepared.)
ISOLATE_THREADS = 4  # threads that create, prepare and free isolates, in parallel
_HEADER = 16
# The prelude's host object lives in a script-level const whose name is random per process:
# the script cannot name it, so it cannot reach the host interface or the output ring.
HOST = f"__codemode_host_{secrets.token_hex(8)}__"
PRELUDE = (
    resources.files("codemode._engine")
    .joinpath("prelude.js")
    .read_text(encoding="utf-8")
    .replace("__codemode_host__", HOST)
    .replace(
        "__CODEMODE_SETUP__",
        json.dumps(
            {
                "ring_bytes": RING_BYTES,
                "max_buffered_chars": MAX_BUFFERED_CHARS,
                "helpers": PRELUDE_HELPERS,  # the prelude checks it installs exactly these
                "module_exports": sorted(MODULE_EXPORTS),
            }
        ),
    )
)
# The prelude keeps its own copies of the built-ins it uses, so nothing a script replaces makes
# it write a malformed message: one means a codemode bug (or a script that reached the ring).
CHANNEL_ERROR = (
    "codemode could not read a message from the script, so the script was stopped. This is a "
    "codemode bug: please report it with the script that caused it."
)


class ChannelError(Exception):
    """The ring held something the prelude cannot have written (the script tampered with it).

    `messages` are the ones read intact before it: they were sent, so they are delivered."""

    def __init__(self, reason: str, messages: list[Any]) -> None:
        super().__init__(reason)
        self.messages = messages


_isolate_thread: ThreadPoolExecutor | None = None
_isolate_thread_lock = threading.Lock()


def isolate_executor() -> ThreadPoolExecutor:
    """The threads that create, prepare and free isolates."""
    global _isolate_thread
    with _isolate_thread_lock:
        if _isolate_thread is None:
            _isolate_thread = ThreadPoolExecutor(max_workers=ISOLATE_THREADS, thread_name_prefix="codemode-isolates")
        return _isolate_thread


class Isolate:
    """A prepared V8 context: prelude evaluated, ring mapped; no session's data yet."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.on_ping: Callable[[], None] = lambda: None
        self.v8 = V8Context(loop, lambda: self.on_ping())
        try:
            ring = self.v8.eval_blocking(PRELUDE)
            if not isinstance(ring, memoryview) or len(cast(memoryview, ring)) != _HEADER + RING_BYTES:
                raise EngineError("the codemode prelude did not return its output ring")
        except BaseException:
            self.v8.free()  # a context that failed to prepare is no isolate anybody frees later
            raise
        self.ring: memoryview | None = ring

    def submit(self, code: str, *, quiet: bool = False) -> asyncio.Future[Any]:
        """Queue `code` for the isolate; the future settles when V8 has run it (`quiet`: see
        `V8Context.submit`)."""
        return self.v8.submit(code, quiet=quiet)

    def overflow_count(self) -> int:
        """How many messages wait in the script-side overflow queue (readable while it runs)."""
        ring = self.ring
        return 0 if ring is None else max(0, struct.unpack_from("<i", ring, 8)[0])

    def read_messages(self) -> tuple[list[Any], bool]:
        """Take every complete message out of the ring; also say whether overflow is waiting."""
        ring = self.ring
        if ring is None:
            return [], False
        struct.pack_into("<i", ring, 12, 0)  # ping handled: the next message pings again
        write = struct.unpack_from("<I", ring, 0)[0]
        read = struct.unpack_from("<I", ring, 4)[0]
        if (write - read) & 0xFFFFFFFF > RING_BYTES:
            raise ChannelError("ring positions out of range", [])
        messages: list[Any] = []
        mask = RING_BYTES - 1
        while read != write:
            pos = read & mask
            length = struct.unpack_from("<I", ring, _HEADER + pos)[0]
            if 4 + length * 2 > (write - read) & 0xFFFFFFFF:
                raise ChannelError("message longer than the ring's content", messages)
            start = (pos + 4) & mask
            nbytes = length * 2
            end = start + nbytes
            if end <= RING_BYTES:
                raw = bytes(ring[_HEADER + start : _HEADER + end])
            else:
                raw = bytes(ring[_HEADER + start :]) + bytes(ring[_HEADER : _HEADER + end - RING_BYTES])
            try:
                messages.append(json.loads(raw.decode("utf-16-le", errors="surrogatepass")))
            except (ValueError, RecursionError) as exc:
                raise ChannelError(str(exc), messages) from None
            read = (read + 4 + ((nbytes + 3) & ~3)) & 0xFFFFFFFF
        struct.pack_into("<I", ring, 4, read)
        overflow = struct.unpack_from("<i", ring, 8)[0] > 0
        return messages, overflow

    def free(self) -> None:
        """Free the context (isolate thread only). Stops any running script."""
        self.ring = None
        self.v8.free()
