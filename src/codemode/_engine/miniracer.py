"""The mini-racer (V8) engine: the only module that knows py_mini_racer.

Invariants:
* Every cell runs in a fresh, never-used V8 context (its own isolate and native thread).
  Contexts are created, prepared and freed on one background "isolate" thread, so the event
  loop never blocks on V8; a small per-session pool of prepared contexts keeps creation off
  the critical path.
* The event loop never makes a synchronous call into a running isolate (such a call blocks
  until the script is idle, which for `while(true){}` is never). Script -> host data travels
  through a SharedArrayBuffer ring read straight from memory; host -> script data travels as
  queued eval tasks, which V8 runs when the script is idle.
* Terminate = free the context: the only way to stop a loop running after an `await`.
  The ring is read one last time first, and never after.

mini-racer's private Context helpers are used on purpose (its public API blocks the loop);
the version is pinned in pyproject.toml.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import struct
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import Any

from py_mini_racer._context import Context
from py_mini_racer._dll import init_mini_racer, mr_callback_func
from py_mini_racer._exc import JSEvalException, JSOOMException, JSParseException
from py_mini_racer._objects import ObjectFactoryImpl

from codemode._engine.base import (
    CellProgram,
    EngineEvent,
    EventSink,
    FinishedEvent,
    NotifyEvent,
    OutputEvent,
    SessionSetup,
    ToolCallEvent,
    YieldEvent,
)
from codemode._types import AudioItem, ImageItem, TextItem

SCRIPT_NAME = "exec_main.mjs"
_PRELUDE_NAME = "codemode_prelude.js"
RING_BYTES = 1 << 20
MAX_BUFFERED_CHARS = 64 * 1024 * 1024
POOL_SIZE = 2
_HEADER = 16
_PRELUDE = resources.files("codemode._engine").joinpath("prelude.js").read_text(encoding="utf-8")
_PROGRAM_PREFIX = (
    "__codemode_host__.run({snapshot}, async function (__codemode_module__, __codemode_import__) "
    '{{"use strict";{hoisted}'
)
_PROGRAM_SUFFIX = f"\n}});\n//# sourceURL={SCRIPT_NAME}\n"

_isolate_thread: ThreadPoolExecutor | None = None
_isolate_thread_lock = threading.Lock()


def _isolate_executor() -> ThreadPoolExecutor:
    """The one thread that creates, prepares and frees isolates (V8 init happens there too)."""
    global _isolate_thread
    with _isolate_thread_lock:
        if _isolate_thread is None:
            _isolate_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codemode-isolates")
        return _isolate_thread


class _Isolate:
    """A prepared V8 context: prelude evaluated, tools installed, ring mapped."""

    def __init__(self, loop: asyncio.AbstractEventLoop, setup_json: str, heap_limit: int) -> None:
        self.dll = init_mini_racer(ignore_duplicate_init=True)
        self.loop = loop
        self.on_ping: Callable[[], None] = lambda: None
        context_ref: list[Context] = []

        @mr_callback_func
        def callback(callback_id: int, raw_value: Any) -> None:
            context_ref[0].handle_callback_from_v8(callback_id, raw_value)

        self._callback = callback  # must outlive the context
        self.raw = self.dll.mr_init_context(callback)
        self.ctx = Context(self.dll, self.raw, loop, ObjectFactoryImpl(), itertools.count(1))
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
        ring = self._eval_blocking(_PRELUDE.replace("__CODEMODE_SETUP__", setup_json))
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
            except JSEvalException as exc:
                future.set_exception(exc)

        self.ctx._active_cancelable_mr_task_callbacks[callback_id] = done
        future.add_done_callback(lambda _: handle)  # keep the code alive until V8 took it
        self.dll.mr_eval(self.raw, handle.raw, callback_id)
        return future

    def read_messages(self) -> tuple[list[Any], bool]:
        """Take every complete message out of the ring; also say whether overflow is waiting."""
        ring = self.ring
        if ring is None:
            return [], False
        struct.pack_into("<i", ring, 12, 0)  # ping handled: the next message pings again
        write = struct.unpack_from("<I", ring, 0)[0]
        read = struct.unpack_from("<I", ring, 4)[0]
        messages = []
        mask = RING_BYTES - 1
        while read != write:
            pos = read & mask
            length = struct.unpack_from("<I", ring, _HEADER + pos)[0]
            start = (pos + 4) & mask
            nbytes = length * 2
            end = start + nbytes
            if end <= RING_BYTES:
                raw = bytes(ring[_HEADER + start : _HEADER + end])
            else:
                raw = bytes(ring[_HEADER + start :]) + bytes(ring[_HEADER : _HEADER + end - RING_BYTES])
            messages.append(json.loads(raw.decode("utf-16-le", errors="surrogatepass")))
            read = (read + 4 + ((nbytes + 3) & ~3)) & 0xFFFFFFFF
        struct.pack_into("<I", ring, 4, read)
        overflow = struct.unpack_from("<i", ring, 8)[0] > 0
        return messages, overflow

    def memory_limit_reached(self) -> bool:
        return bool(self.dll.mr_hard_memory_limit_reached(self.raw))

    def free(self) -> None:
        """Free the context (isolate thread only). Stops any running script."""
        self.dll.mr_free_context(self.raw)
        self.ctx._active_cancelable_mr_task_callbacks.clear()


class MiniRacerCell:
    """One script in one isolate; implements `EngineCell`."""

    def __init__(self, isolate: _Isolate, on_event: EventSink, prefix_length: int) -> None:
        self._isolate = isolate
        self._on_event = on_event
        self._prefix_length = prefix_length
        self._finished = False
        self._freed = False
        self._draining = False
        self._tasks: set[asyncio.Future[Any]] = set()
        isolate.on_ping = self._pump

    # -- commands ---------------------------------------------------------------------------
    def launch(self, script: str) -> None:
        self._watch(self._isolate.submit(script), program=True)

    def resolve_tool_call(self, call_id: int, ok: bool, payload: str) -> None:
        if self._finished or self._freed:
            return
        code = f"__codemode_host__.resolve({call_id},{1 if ok else 0},{json.dumps(payload)})"
        self._watch(self._isolate.submit(code))

    async def terminate(self) -> None:
        if self._freed:
            return
        self._pump()
        await self._free()

    def release(self) -> None:
        if not self._freed:
            task = asyncio.ensure_future(self._free())
            _background.add(task)
            task.add_done_callback(_background.discard)

    def memory_limit_reached(self) -> bool:
        return not self._freed and self._isolate.memory_limit_reached()

    # -- events -----------------------------------------------------------------------------
    def _watch(self, future: asyncio.Future[Any], program: bool = False) -> None:
        self._tasks.add(future)

        def settled(fut: asyncio.Future[Any]) -> None:
            self._tasks.discard(fut)
            if fut.cancelled() or self._freed:
                return
            exc = fut.exception()
            self._pump()
            if exc is not None:
                self._fail(self._engine_error_text(exc))

        future.add_done_callback(settled)

    def _pump(self) -> None:
        """Deliver every message waiting in the ring (and start an overflow drain if needed)."""
        if self._freed:
            return
        messages, overflow = self._isolate.read_messages()
        for message in messages:
            self._dispatch(message)
        if overflow and not self._draining and not self._finished:
            self._draining = True
            drain = self._isolate.submit("__codemode_host__.drain()")

            def drained(fut: asyncio.Future[Any]) -> None:
                self._draining = False
                if fut.cancelled() or fut.exception() is not None or self._freed:
                    return
                for message in json.loads(fut.result()):
                    self._dispatch(message)
                self._pump()

            drain.add_done_callback(drained)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if self._finished:
            return
        kind = message["k"]
        event: EngineEvent
        if kind == "text":
            event = OutputEvent(TextItem(message["v"]))
        elif kind == "image":
            event = OutputEvent(ImageItem(message["url"], message["detail"]))
        elif kind == "audio":
            event = OutputEvent(AudioItem(message["url"]))
        elif kind == "notify":
            event = NotifyEvent(message["v"])
        elif kind == "call":
            event = ToolCallEvent(message["id"], message["name"], message["args"])
        elif kind == "yield":
            event = YieldEvent()
        elif kind == "done":
            self._finished = True
            error = message["error"]
            event = FinishedEvent(None if error is None else self._fix_positions(error), message["writes"])
        else:  # pragma: no cover - the prelude sends only the kinds above
            raise AssertionError(f"unknown engine message kind {kind!r}")
        self._on_event(event)

    def _fail(self, error: str) -> None:
        if not self._finished:
            self._finished = True
            self._on_event(FinishedEvent(error))

    def _engine_error_text(self, exc: BaseException) -> str:
        if isinstance(exc, JSOOMException) or self._isolate.memory_limit_reached():
            return "JavaScript memory limit reached"
        if isinstance(exc, JSParseException):
            return self._syntax_error_text(str(exc))
        if isinstance(exc, JSEvalException):
            return self._fix_positions(_stack_from_eval_error(str(exc)))
        return f"{type(exc).__name__}: {exc}"

    def _syntax_error_text(self, text: str) -> str:
        """`<anonymous>:3: SyntaxError: msg / source / caret` -> `SyntaxError: msg` + position."""
        lines = text.split("\n")
        match = re.match(r"^<anonymous>:(\d+): (.*)$", lines[0])
        if match is None:
            return text.strip()
        line, message = int(match.group(1)), match.group(2)
        column = lines[2].index("^") + 1 if len(lines) > 2 and "^" in lines[2] else 1
        if line == 1:
            column = max(1, column - self._prefix_length)
        return f"{message}\n    at {SCRIPT_NAME}:{line}:{column}"

    def _fix_positions(self, text: str) -> str:
        """Hide the wrapper: drop its stack frames and shift line-1 columns back by the prefix."""
        kept = []
        for line in text.split("\n"):
            if _PRELUDE_NAME in line or _wrapper_frame(line, self._prefix_length):
                continue
            kept.append(line)

        def shift(match: re.Match[str]) -> str:
            column = int(match.group(1)) - self._prefix_length
            return f"{SCRIPT_NAME}:1:{max(column, 1)}"

        return re.sub(rf"{re.escape(SCRIPT_NAME)}:1:(\d+)", shift, "\n".join(kept))

    async def _free(self) -> None:
        if self._freed:
            return
        self._freed = True
        self._isolate.ring = None
        self._isolate.on_ping = lambda: None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.get_running_loop().run_in_executor(_isolate_executor(), self._isolate.free)


def _wrapper_frame(line: str, prefix_length: int) -> bool:
    """A stack frame inside the wrapper prefix (the call into the user's function)."""
    match = re.fullmatch(rf"\s+at (?:.* \()?{re.escape(SCRIPT_NAME)}:1:(\d+)\)?", line)
    return match is not None and int(match.group(1)) <= prefix_length


def _stack_from_eval_error(text: str) -> str:
    """mini-racer prefixes thrown errors with `file:line: msg / source / caret`; keep the stack."""
    parts = text.split("\n\n", 1)
    if len(parts) == 2 and re.match(r"^\S+:\d+: ", parts[0]):
        return parts[1].rstrip("\n")
    return text.rstrip("\n")


_background: set[asyncio.Future[Any]] = set()


@dataclass
class _Pool:
    ready: deque[_Isolate]
    filling: asyncio.Task[None] | None = None


class MiniRacerSession:
    """A session's isolates: a small pool prepared in the background; implements EngineSession."""

    def __init__(self, setup: SessionSetup, pool_size: int = POOL_SIZE) -> None:
        self._loop = asyncio.get_running_loop()
        self._setup_json = json.dumps(
            {
                "tools": [{"name": t.global_name, "description": t.description} for t in setup.tools],
                "ring_bytes": RING_BYTES,
                "max_buffered_chars": MAX_BUFFERED_CHARS,
            }
        )
        self._heap_limit = setup.heap_limit_bytes
        self._pool = _Pool(deque())
        self._pool_size = pool_size
        self._closed = False
        self._refill()

    async def _create(self) -> _Isolate:
        return await self._loop.run_in_executor(
            _isolate_executor(), _Isolate, self._loop, self._setup_json, self._heap_limit
        )

    def _refill(self) -> None:
        if self._closed or self._pool_size == 0 or self._pool.filling is not None:
            return

        async def fill() -> None:
            try:
                while not self._closed and len(self._pool.ready) < self._pool_size:
                    isolate = await self._create()
                    if self._closed:
                        await self._loop.run_in_executor(_isolate_executor(), isolate.free)
                        return
                    self._pool.ready.append(isolate)
            finally:
                self._pool.filling = None

        self._pool.filling = asyncio.ensure_future(fill())

    async def start(self, program: CellProgram, on_event: EventSink) -> MiniRacerCell:
        if self._pool.ready:
            isolate = self._pool.ready.popleft()
        else:
            isolate = await self._create()
        self._refill()
        prefix = _PROGRAM_PREFIX.format(snapshot=json.dumps(json.dumps(dict(program.stored))), hoisted=program.hoisted)
        cell = MiniRacerCell(isolate, on_event, len(prefix))
        cell.launch(prefix + program.code + _PROGRAM_SUFFIX)
        return cell

    async def aclose(self) -> None:
        self._closed = True
        if self._pool.filling is not None:
            self._pool.filling.cancel()
            try:
                await self._pool.filling
            except asyncio.CancelledError:
                pass
        executor = _isolate_executor()
        while self._pool.ready:
            isolate = self._pool.ready.popleft()
            await self._loop.run_in_executor(executor, isolate.free)


class MiniRacerEngine:
    """The default engine: V8 through mini-racer; implements `Engine`."""

    def __init__(self, pool_size: int = POOL_SIZE) -> None:
        self._pool_size = pool_size

    def open_session(self, setup: SessionSetup) -> MiniRacerSession:
        return MiniRacerSession(setup, self._pool_size)
