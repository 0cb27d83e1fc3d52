"""Everything codemode uses of mini-racer's private modules and attributes, in one place.

mini-racer's public API blocks the event loop on a busy isolate (every call waits for the script
to go idle) and starts a thread per instance, so codemode drives its C library and `Context`
internals directly. This module is the only one that imports `py_mini_racer`; it refuses a
version it was not written for, and `tests/test_miniracer_compat.py` pins the contract it relies
on, so an upgrade fails loudly at import or in that test instead of deep inside a cell.

Invariant: V8 is initialised once per process by `init_v8()`, on the first caller's thread and
before any other thread creates a context (V8 crashes if it is first initialised on a worker
thread while others create contexts, or if the first two contexts are created at once).
"""

# pyright: reportPrivateUsage=false
# (this module is where codemode's use of mini-racer's private parts is kept, version-gated)

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

SUPPORTED_VERSIONS = ("0.14.",)  # the releases whose private parts this module was written against

_version = metadata.version("mini-racer")
if not _version.startswith(SUPPORTED_VERSIONS):
    raise ImportError(
        f"codemode supports mini-racer {', '.join(v + 'x' for v in SUPPORTED_VERSIONS)}, but {_version} is "
        "installed; install a supported version (pip install 'mini-racer>=0.14.1,<0.15')"
    )

from py_mini_racer._context import Context, ContextType  # noqa: E402
from py_mini_racer._dll import init_mini_racer, mr_callback_func  # noqa: E402
from py_mini_racer._exc import (  # noqa: E402
    JSConversionException,
    JSEvalException,
    JSOOMException,
    JSParseException,
)
from py_mini_racer._objects import ObjectFactoryImpl, _MiniRacerTypes  # noqa: E402

__all__ = [
    "JSConversionException",
    "JSEvalException",
    "JSOOMException",
    "JSParseException",
    "V8Context",
    "init_v8",
    "longest_free_s",
    "make_lost_callbacks_fatal",
]

V8_FLAGS = ("--single-threaded",)
_UNDEFINED = _MiniRacerTypes.undefined

_init_lock = threading.Lock()
_dll: Any = None
_first_context_lock = threading.Lock()
_first_context_made = False
_fatal: tuple[int, bytes] | None = None  # (exit status, what to print) when a callback is lost


def make_lost_callbacks_fatal(status: int, message: bytes) -> None:
    """End the process with `status`, printing `message`, when handling a callback from an
    isolate fails.

    ctypes only prints an error raised in a callback, and asyncio only logs one raised while the
    loop hands the callbacks on: the eval or message is lost and the cell waiting for it waits
    forever. An engine worker near its memory cap gets exactly that (a `MemoryError`), and ends
    instead; in-process, errors go where Python sends them."""
    global _fatal
    _fatal = (status, message)


def _exit_if_lost_callbacks_fatal() -> None:
    """End the process as `make_lost_callbacks_fatal` said, allocating nothing (memory may be
    what ran out); return when it said nothing, for the caller to re-raise."""
    fatal = _fatal
    if fatal is None:
        return
    try:
        os.write(2, fatal[1])
    finally:
        os._exit(fatal[0])


def init_v8() -> Any:
    """Initialise V8 (once per process, on this thread) and return mini-racer's C library."""
    global _dll
    with _init_lock:
        if _dll is None:
            _dll = init_mini_racer(flags=V8_FLAGS, ignore_duplicate_init=True)
        return _dll


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
    * A quiet eval (a command whose value nobody uses) that completes without error wakes
      nobody: its completion waits in the inbox for the next wake-up. Each nested tool call
      ends in one such eval (its result handed in) after the ping of the script's next message,
      so this spares a wake-up of the loop per call.
    """

    _unfreed: list[Any] = field(default_factory=list[Any])
    _alive: list[bool] = field(default_factory=lambda: [True])
    _inbox: deque[tuple[int, Any]] = field(default_factory=deque[tuple[int, Any]])
    _drain_scheduled: list[bool] = field(default_factory=lambda: [False])
    _quiet: set[int] = field(default_factory=set[int])

    def handle_callback_from_v8(self, callback_id: int, raw_val_handle: Any) -> None:
        # On the isolate's thread, holding the GIL: queue and, if the loop was not told yet, tell it.
        val_handle = self._wrap_raw_handle(raw_val_handle)
        if callback_id == 0:  # an uncancelable task's result (used while preparing)
            self._non_cancelable_mr_task_results_queue.put(val_handle)
            return
        self._inbox.append((callback_id, val_handle))
        if callback_id in self._quiet and raw_val_handle.contents.type == _UNDEFINED:
            return  # went well: handled with whatever wakes the loop next
        if not self._drain_scheduled[0]:
            self._drain_scheduled[0] = True
            try:
                self.event_loop.call_soon_threadsafe(self._drain_inbox)
            except RuntimeError:
                pass  # the loop closed; the context is about to be freed with it

    def _drain_inbox(self) -> None:
        self._drain_scheduled[0] = False  # before draining: a later callback schedules again
        inbox = self._inbox
        try:
            while inbox:
                callback_id, val_handle = inbox.popleft()
                self._handle_callback_from_v8_on_event_loop(callback_id, val_handle)
        except MemoryError:
            _exit_if_lost_callbacks_fatal()
            raise

    def _free(self, raw: Any) -> None:
        if not self._alive[0]:
            return
        self._unfreed.append(raw)
        if len(self._unfreed) >= 256:  # a long cell (many tool calls) does not hoard them
            batch = self._unfreed[:]
            self._unfreed.clear()
            for handle in batch:
                self._dll.mr_free_value(self._ctx, handle)


class V8Context:
    """One mini-racer context (a V8 isolate on its own native thread), driven without blocking.

    Created, prepared and freed on a background thread; `submit`, `set_heap_limit` and
    `heap_limit_reached` are called on the event loop and never wait for the script.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, on_ping: Callable[[], None]) -> None:
        self._dll = init_v8()
        context_ref: list[_Context] = []

        @mr_callback_func
        def callback(callback_id: int, raw_val_handle: Any) -> None:
            try:
                context_ref[0].handle_callback_from_v8(callback_id, raw_val_handle)
            except BaseException:
                _exit_if_lost_callbacks_fatal()
                raise

        self._callback = callback  # must outlive the context
        self._raw = _init_context(self._dll, callback)
        self._ctx = _Context(self._dll, ContextType(self._raw), loop, ObjectFactoryImpl(), itertools.count(1))
        context_ref.append(self._ctx)
        self._loop = loop

        ping_id = next(self._ctx._next_async_callback_id)
        self._ctx._active_cancelable_mr_task_callbacks[ping_id] = lambda _value: on_ping()
        ping = self._ctx._value_handle_to_python(
            self._ctx._wrap_raw_handle(self._dll.mr_make_js_callback(self._raw, ping_id))
        )
        global_object = self.eval_blocking("globalThis")
        self._ctx.set_object_item(global_object, "__codemode_ping__", ping)
        self._keep = (ping, global_object)

    def eval_blocking(self, code: str) -> Any:
        """Evaluate and wait for the value (only while preparing: no script runs yet)."""
        handle = self._ctx._python_to_value_handle(code)
        self._dll.mr_eval(self._raw, handle.raw, 0)
        return self._ctx._value_handle_to_python(self._ctx._non_cancelable_mr_task_results_queue.get())

    def submit(self, code: str, *, quiet: bool = False) -> asyncio.Future[Any]:
        """Queue `code` for the isolate; the future settles (on the loop) when V8 has run it.
        `quiet`: if it ran without error to `undefined`, not before something else wakes the
        loop (a ping, another eval; see `_Context`)."""
        future: asyncio.Future[Any] = self._loop.create_future()
        ctx = self._ctx
        callback_id = next(ctx._next_async_callback_id)
        handle = ctx._python_to_value_handle(code)

        def done(value_handle: Any) -> None:
            ctx._active_cancelable_mr_task_callbacks.pop(callback_id, None)
            ctx._quiet.discard(callback_id)
            if future.done():
                return
            try:
                future.set_result(ctx._value_handle_to_python(value_handle))
            except Exception as exc:
                future.set_exception(exc)

        ctx._active_cancelable_mr_task_callbacks[callback_id] = done
        if quiet:
            ctx._quiet.add(callback_id)
        future.add_done_callback(lambda _: handle)  # keep the code alive until V8 took it
        self._dll.mr_eval(self._raw, handle.raw, callback_id)
        return future

    def set_heap_limit(self, limit_bytes: int) -> None:
        """Set the hard heap limit (does not wait for the isolate)."""
        self._dll.mr_set_hard_memory_limit(self._raw, limit_bytes)

    def heap_limit_reached(self) -> bool:
        """Whether V8 stopped the script at the hard heap limit (does not wait for the isolate)."""
        return bool(self._dll.mr_hard_memory_limit_reached(self._raw))

    def free(self) -> None:
        """Free the context, stopping any running script (background thread only; blocks until
        the isolate thread stopped, which a builtin V8 cannot interrupt may delay forever)."""
        self._ctx._alive[0] = False  # its values die with it
        key = id(self)
        with _freeing_lock:
            _freeing[key] = time.monotonic()
        try:
            self._dll.mr_free_context(self._raw)
        finally:
            with _freeing_lock:
                del _freeing[key]
        self._ctx._active_cancelable_mr_task_callbacks.clear()


_freeing: dict[int, float] = {}  # contexts being freed -> when that started
_freeing_lock = threading.Lock()


def longest_free_s() -> float:
    """How long the oldest context still being freed has taken (0 if none): a context whose
    script sits in a builtin V8 cannot interrupt never finishes freeing."""
    with _freeing_lock:
        oldest = min(_freeing.values(), default=None)
    return 0.0 if oldest is None else time.monotonic() - oldest
