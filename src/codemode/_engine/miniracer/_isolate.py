"""One prepared V8 context (isolate, prelude, output ring) and the threads that make and free them.

Invariant: the event loop never calls synchronously into a running isolate; the ring is read
straight from shared memory, and never after the context is freed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import struct
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from py_mini_racer._context import Context
from py_mini_racer._dll import init_mini_racer, mr_callback_func
from py_mini_racer._objects import ObjectFactoryImpl

SCRIPT_NAME = "exec_main.mjs"
PRELUDE_NAME = "codemode_prelude.js"
RING_BYTES = 1 << 20
MAX_BUFFERED_CHARS = 64 * 1024 * 1024
# mini-racer's default. (Lazy compilation of the prelude's functions on an exec's first calls
# was a third of its CPU: the ones every exec runs are parenthesized in prelude.js, which makes
# V8 compile them while the isolate is prepared.)
ISOLATE_THREADS = 4  # threads that create, prepare and free isolates, in parallel
V8_FLAGS = ("--single-threaded",)
_HEADER = 16
# The prelude's host object lives in a script-level const whose name is random per process:
# the script cannot name it, so it cannot reach the host interface or the output ring.
HOST = f"__codemode_host_{secrets.token_hex(8)}__"
PRELUDE = (
    resources.files("codemode._engine")
    .joinpath("prelude.js")
    .read_text(encoding="utf-8")
    .replace("__codemode_host__", HOST)
)
CHANNEL_ERROR = (
    "codemode could not read a message from the script, so the script was stopped. The script "
    "probably modified built-ins codemode relies on (Object.prototype.toJSON, String.prototype, "
    "Array.prototype, Map.prototype) or codemode internals; do not modify them."
)


class ChannelError(Exception):
    """The ring held something the prelude cannot have written (the script tampered with it)."""


_isolate_thread: ThreadPoolExecutor | None = None
_isolate_thread_lock = threading.Lock()


def isolate_executor() -> ThreadPoolExecutor:
    """The threads that create, prepare and free isolates (V8 init happens there too)."""
    global _isolate_thread
    with _isolate_thread_lock:
        if _isolate_thread is None:
            _isolate_thread = ThreadPoolExecutor(max_workers=ISOLATE_THREADS, thread_name_prefix="codemode-isolates")
        return _isolate_thread


@dataclass(frozen=True)
class _Context(Context):
    """mini-racer's Context with two economies on the event loop's hot path.

    * Value handles are freed in batches, not one ctypes call each: every call into the library
      releases and retakes the GIL while the isolate's callbacks wait for it, and freeing each
      handle at once cost 3-4 such calls per exec. A context lives for one cell, and freeing it
      frees every value it still holds.
    * Callbacks from the isolate (the ping, eval completions) that arrive before the loop got
      round to the previous ones share one wake-up of the loop (one self-pipe write and read)
      instead of one each.
    """

    _unfreed: list[Any] = field(default_factory=list)
    _alive: list[bool] = field(default_factory=lambda: [True])
    _inbox: deque[tuple[int, Any]] = field(default_factory=deque)
    _drain_scheduled: list[bool] = field(default_factory=lambda: [False])

    def handle_callback_from_v8(self, callback_id: int, raw_val_handle: Any) -> None:
        # On the isolate's thread, holding the GIL: queue and, if the loop was not told yet, tell it.
        val_handle = self._wrap_raw_handle(raw_val_handle)
        if callback_id == 0:  # an uncancelable task's result (used while preparing)
            self._non_cancelable_mr_task_results_queue.put(val_handle)
            return
        self._inbox.append((callback_id, val_handle))
        if not self._drain_scheduled[0]:
            self._drain_scheduled[0] = True
            self.event_loop.call_soon_threadsafe(self._drain_inbox)

    def _drain_inbox(self) -> None:
        self._drain_scheduled[0] = False  # before draining: a later callback schedules again
        inbox = self._inbox
        while inbox:
            callback_id, val_handle = inbox.popleft()
            self._handle_callback_from_v8_on_event_loop(callback_id, val_handle)

    def _free(self, raw: Any) -> None:
        if not self._alive[0]:
            return
        self._unfreed.append(raw)
        if len(self._unfreed) >= 256:  # a long cell (many tool calls) does not hoard them
            batch = self._unfreed[:]
            self._unfreed.clear()
            for handle in batch:
                self._dll.mr_free_value(self._ctx, handle)


_first_context_lock = threading.Lock()
_first_context_made = False


def _init_context(dll: Any, callback: Any) -> int:
    """`mr_init_context`, alone the first time: V8 crashes (a fatal CHECK in its array buffer
    allocator's first set-up) if the first two contexts of a process are created at once."""
    global _first_context_made
    if _first_context_made:
        return int(dll.mr_init_context(callback))
    with _first_context_lock:
        raw = int(dll.mr_init_context(callback))
        _first_context_made = True
        return raw


class Isolate:
    """A prepared V8 context: prelude evaluated, tools installed, ring mapped."""

    def __init__(self, loop: asyncio.AbstractEventLoop, prelude: str, heap_limit: int) -> None:
        self.dll = init_mini_racer(flags=V8_FLAGS, ignore_duplicate_init=True)
        self.loop = loop
        self.on_ping: Callable[[], None] = lambda: None
        context_ref: list[Context] = []

        @mr_callback_func
        def callback(callback_id: int, raw_value: Any) -> None:
            context_ref[0].handle_callback_from_v8(callback_id, raw_value)

        self._callback = callback  # must outlive the context
        self.raw = _init_context(self.dll, callback)
        self.ctx = _Context(self.dll, self.raw, loop, ObjectFactoryImpl(), itertools.count(1))
        context_ref.append(self.ctx)
        if heap_limit:
            self.dll.mr_set_hard_memory_limit(self.raw, heap_limit)

        ping_id = next(self.ctx._next_async_callback_id)
        self.ctx._active_cancelable_mr_task_callbacks[ping_id] = self._ping_from_loop
        ping = self.ctx._value_handle_to_python(
            self.ctx._wrap_raw_handle(self.dll.mr_make_js_callback(self.raw, ping_id))
        )
        global_object = self._eval_blocking("globalThis")
        self.ctx.set_object_item(global_object, "__codemode_ping__", ping)  # type: ignore[arg-type]
        ring = self._eval_blocking(prelude)
        if not isinstance(ring, memoryview) or len(ring) != _HEADER + RING_BYTES:
            raise RuntimeError("codemode prelude did not return its output ring")
        self.ring: memoryview | None = ring
        self._keep = (ping, global_object)

    def _eval_blocking(self, code: str) -> Any:
        """Evaluate on the isolate thread and wait (only while preparing: no script runs yet)."""
        handle = self.ctx._python_to_value_handle(code)
        self.dll.mr_eval(self.raw, handle.raw, 0)
        return self.ctx._value_handle_to_python(self.ctx._non_cancelable_mr_task_results_queue.get())

    def _ping_from_loop(self, value_handle: Any) -> None:
        del value_handle  # the ping carries nothing; reading it would block on a busy isolate
        self.on_ping()

    def submit(self, code: str) -> asyncio.Future[Any]:
        """Queue `code` for the isolate; the future settles when V8 has run it."""
        future: asyncio.Future[Any] = self.loop.create_future()
        callback_id = next(self.ctx._next_async_callback_id)
        handle = self.ctx._python_to_value_handle(code)

        def done(value_handle: Any) -> None:
            self.ctx._active_cancelable_mr_task_callbacks.pop(callback_id, None)
            if future.done():
                return
            try:
                future.set_result(self.ctx._value_handle_to_python(value_handle))
            except Exception as exc:  # noqa: BLE001 - e.g. a BigInt result cannot be converted
                future.set_exception(exc)

        self.ctx._active_cancelable_mr_task_callbacks[callback_id] = done
        future.add_done_callback(lambda _: handle)  # keep the code alive until V8 took it
        self.dll.mr_eval(self.raw, handle.raw, callback_id)
        return future

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
            raise ChannelError("ring positions out of range")
        messages = []
        mask = RING_BYTES - 1
        while read != write:
            pos = read & mask
            length = struct.unpack_from("<I", ring, _HEADER + pos)[0]
            if 4 + length * 2 > (write - read) & 0xFFFFFFFF:
                raise ChannelError("message longer than the ring's content")
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
                raise ChannelError(str(exc)) from None
            read = (read + 4 + ((nbytes + 3) & ~3)) & 0xFFFFFFFF
        struct.pack_into("<I", ring, 4, read)
        overflow = struct.unpack_from("<i", ring, 8)[0] > 0
        return messages, overflow

    def memory_limit_reached(self) -> bool:
        return bool(self.dll.mr_hard_memory_limit_reached(self.raw))

    def free(self) -> None:
        """Free the context (isolate thread only). Stops any running script."""
        self.ctx._alive[0] = False  # its values die with it
        self.dll.mr_free_context(self.raw)
        self.ctx._active_cancelable_mr_task_callbacks.clear()
