"""The mini-racer (V8) engine: the only module that knows py_mini_racer.

Invariants:
* Every cell runs in a fresh, never-used V8 context (its own isolate and native thread).
  Contexts are created, prepared and freed on background "isolate" threads, so the event
  loop never blocks on V8; a per-session pool of prepared contexts keeps creating and freeing
  them off the critical path (`_Pool`).
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
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from py_mini_racer._context import Context
from py_mini_racer._dll import init_mini_racer, mr_callback_func
from py_mini_racer._exc import JSConversionException, JSEvalException, JSOOMException, JSParseException
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
POOL_SIZE = 32  # prepared isolates per session (see _Pool)
ISOLATE_THREADS = 4  # threads that create, prepare and free isolates, in parallel
QUIET_S = 0.02  # pool work waits until no cell has started for this long...
LOW_WATER = 4  # ...unless fewer isolates than this are ready,
MAX_FREE_DELAY_S = 0.25  # or a finished isolate has waited this long to be freed,
MAX_DEFERRED_FREES = 32  # or this many have.
IDLE_TRIM_S = 30.0  # a session that ran no cell for this long keeps only IDLE_KEEP isolates,
IDLE_KEEP = 2  # and refills to POOL_SIZE after its next exec.
# mini-racer's default. (Lazy compilation of the prelude's functions on an exec's first calls
# was a third of its CPU: the ones every exec runs are parenthesized in prelude.js, which makes
# V8 compile them while the isolate is prepared.)
V8_FLAGS = ("--single-threaded",)
_HEADER = 16
_PRELUDE = resources.files("codemode._engine").joinpath("prelude.js").read_text(encoding="utf-8")
_PROGRAM_PREFIX = (
    "__codemode_host__.run({snapshot}, async function (__codemode_module__, __codemode_import__) "
    '{{"use strict";{hoisted}'
)
_PROGRAM_SUFFIX = f"\n}});\n//# sourceURL={SCRIPT_NAME}\n"

CHANNEL_ERROR = (
    "codemode could not read a message from the script, so the script was stopped. The script "
    "probably modified built-ins codemode relies on (Object.prototype.toJSON, String.prototype, "
    "Array.prototype, Map.prototype) or codemode internals; do not modify them."
)
STORE_TOO_DEEP = (
    "store: the value of {key} is nested too deeply to keep (the host reads at most about 900 levels), "
    "so this cell's stored values were not saved. Flatten the value before storing it."
)
_IMAGE_DETAILS = frozenset({"auto", "low", "high", "original"})


class _ChannelError(Exception):
    """The ring held something the prelude cannot have written (the script tampered with it)."""


_isolate_thread: ThreadPoolExecutor | None = None
_isolate_thread_lock = threading.Lock()


def _isolate_executor() -> ThreadPoolExecutor:
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


class _Isolate:
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
            raise _ChannelError("ring positions out of range")
        messages = []
        mask = RING_BYTES - 1
        while read != write:
            pos = read & mask
            length = struct.unpack_from("<I", ring, _HEADER + pos)[0]
            if 4 + length * 2 > (write - read) & 0xFFFFFFFF:
                raise _ChannelError("message longer than the ring's content")
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
                raise _ChannelError(str(exc)) from None
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


class MiniRacerCell:
    """One script in one isolate; implements `EngineCell`."""

    def __init__(
        self,
        isolate: _Isolate,
        on_event: EventSink,
        prefix_length: int,
        release_isolate: Callable[[_Isolate], None] | None = None,
    ) -> None:
        self._isolate = isolate
        self._release_isolate = release_isolate  # frees a finished cell's isolate later
        self._on_event = on_event
        self._prefix_length = prefix_length
        self._finished = False
        self._freed = False
        self._draining = False
        self._tasks: set[asyncio.Future[Any]] = set()
        self._open_calls = 0  # tool calls the script made that are not resolved yet
        self._resolutions: list[str] = []  # resolve statements batched into one eval
        isolate.on_ping = self._pump

    # -- commands ---------------------------------------------------------------------------
    def launch(self, script: str) -> None:
        self._watch(self._isolate.submit(script), program=True)

    def resolve_tool_call(self, call_id: int, ok: bool, payload: str) -> None:
        if self._finished or self._freed:
            return
        self._open_calls -= 1
        self._resolutions.append(f"__codemode_host__.resolve({call_id},{1 if ok else 0},{json.dumps(payload)});")
        if self._open_calls <= 0:
            self._flush_resolutions()  # the last call the script waits for: no delay
        elif len(self._resolutions) == 1:
            # More calls are open (`Promise.all`): results that arrive in the same loop
            # iteration travel in one eval, so 100 calls do not cost 100 evals.
            asyncio.get_running_loop().call_soon(self._flush_resolutions)

    def _flush_resolutions(self) -> None:
        if not self._resolutions or self._finished or self._freed:
            self._resolutions.clear()
            return
        code = "".join(self._resolutions)
        self._resolutions.clear()
        self._watch(self._isolate.submit(code))

    async def terminate(self) -> None:
        if self._freed:
            return
        self._pump()
        stranded = self._isolate.overflow_count()
        if stranded and not self._finished:
            # Messages that did not fit the ring are still inside the busy isolate; freeing it
            # loses them. Say so where they would have appeared rather than drop them silently.
            self._on_event(OutputEvent(TextItem(
                f"[{stranded} more output messages were still queued inside the script when it was"
                " terminated and are lost: it produced output faster than it could be delivered"
                " while it never went idle]"
            )))
        await self._free()

    def release(self) -> None:
        if self._freed:
            return
        if self._release_isolate is not None:
            self._detach()
            self._release_isolate(self._isolate)
            return
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
            # A value that cannot be converted (a BigInt a script smuggled out of the wrapper)
            # is no failure: nothing evaluated here returns a value the host uses.
            if exc is not None and not isinstance(exc, JSConversionException):
                self._fail(self._engine_error_text(exc))

        future.add_done_callback(settled)

    def _pump(self) -> None:
        """Deliver every message waiting in the ring (and start an overflow drain if needed)."""
        if self._freed:
            return
        try:
            messages, overflow = self._isolate.read_messages()
        except _ChannelError:
            self._fail(CHANNEL_ERROR)
            return
        for message in messages:
            self._dispatch(message)
        if overflow and not self._draining and not self._finished:
            self._draining = True
            drain = self._isolate.submit("__codemode_host__.drain()")

            def drained(fut: asyncio.Future[Any]) -> None:
                self._draining = False
                if fut.cancelled() or fut.exception() is not None or self._freed:
                    return
                try:
                    messages = json.loads(fut.result())
                    if not isinstance(messages, list):
                        raise TypeError("not a list")
                except (TypeError, ValueError, RecursionError):
                    self._fail(CHANNEL_ERROR)
                    return
                for message in messages:
                    self._dispatch(message)
                self._pump()

            drain.add_done_callback(drained)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if self._finished:
            return
        problem = _message_problem(message)
        if problem is not None:
            self._fail(problem)
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
            self._open_calls += 1
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

    def _detach(self) -> None:
        """Stop listening to the isolate: the ring is never read again."""
        self._freed = True
        self._isolate.ring = None
        self._isolate.on_ping = lambda: None
        for task in list(self._tasks):
            task.cancel()

    async def _free(self) -> None:
        if self._freed:
            return
        self._detach()
        await asyncio.get_running_loop().run_in_executor(_isolate_executor(), self._isolate.free)


def _message_problem(message: Any) -> str | None:
    """Why a message cannot be accepted (the script's error text), or None if it is well formed.

    The prelude only writes well-formed messages, but a script that replaced built-ins it
    relies on (say `Object.prototype.toJSON`) can make it write anything.
    """
    if not isinstance(message, dict):
        return CHANNEL_ERROR
    kind = message.get("k")
    if kind == "text" or kind == "notify":
        ok = isinstance(message.get("v"), str)
    elif kind == "image":
        url, detail = message.get("url"), message.get("detail")
        ok = isinstance(url, str) and url[:5].lower() == "data:" and isinstance(detail, str) and (
            detail in _IMAGE_DETAILS
        )
    elif kind == "audio":
        url = message.get("url")
        ok = isinstance(url, str) and url[:5].lower() == "data:"
    elif kind == "call":
        call_id, args = message.get("id"), message.get("args")
        ok = type(call_id) is int and isinstance(message.get("name"), str) and (args is None or isinstance(args, str))
    elif kind == "yield":
        ok = True
    elif kind == "done":
        error, writes = message.get("error"), message.get("writes")
        if not (error is None or isinstance(error, str)) or not isinstance(writes, dict):
            return CHANNEL_ERROR
        ok = True
        for key, value in writes.items():
            if not isinstance(value, str):
                return CHANNEL_ERROR
            try:  # stored values must stay loadable: by later cells, and by the host
                json.loads(value, parse_constant=_reject_constant)
            except RecursionError:
                return STORE_TOO_DEEP.format(key=json.dumps(key, ensure_ascii=False))
            except ValueError:
                return CHANNEL_ERROR
    else:
        ok = False
    return None if ok else CHANNEL_ERROR


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


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


class _Pool:
    """A session's prepared isolates, and the background work that keeps them coming.

    Creating and preparing an isolate costs about 2 ms of CPU and freeing one about 0.3 ms: more
    than a whole exec. That work runs on the isolate threads, and it is *deferred while execs
    follow each other closely* (no cell started for `QUIET_S`), so a burst of execs takes
    prepared isolates without competing with their creation for the CPU. It runs anyway when
    fewer than `LOW_WATER` isolates are ready, when a cell waits for one, and when finished
    isolates wait too long (`MAX_FREE_DELAY_S`) or too many (`MAX_DEFERRED_FREES`) to be freed.
    An idle pool (no cell for `IDLE_TRIM_S`) shrinks to `IDLE_KEEP` isolates until the next cell.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, create: Callable[[], _Isolate], size: int) -> None:
        self._loop = loop
        self._create = create  # runs on an isolate thread
        self.size = max(0, size)
        self.ready: deque[_Isolate] = deque()
        self._to_free: deque[tuple[float, _Isolate]] = deque()
        self._waiting: deque[asyncio.Future[_Isolate]] = deque()  # cells waiting for an isolate
        self._creating = 0
        self._jobs = 0
        self._last_take = -QUIET_S
        self._last_use = loop.time()
        self._trimmed = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._closed = False
        self._changed: asyncio.Event = asyncio.Event()
        self.error: BaseException | None = None
        self._kick()

    # -- what the session uses ----------------------------------------------------------------
    async def take(self) -> _Isolate:
        """A prepared, never-used isolate: from the pool, or the next one created."""
        self._last_take = self._last_use = self._loop.time()
        self._trimmed = False
        if self.ready:
            isolate = self.ready.popleft()
            self._kick()
            return isolate
        waiter: asyncio.Future[_Isolate] = self._loop.create_future()
        self._waiting.append(waiter)
        self._kick()
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.ready.appendleft(waiter.result())  # created for us, never used: keep it
            raise

    def release(self, isolate: _Isolate) -> None:
        """A finished cell's isolate: freed soon, off the critical path."""
        self._to_free.append((self._loop.time(), isolate))
        self._kick()

    async def filled(self, count: int) -> None:
        """Wait until the pool holds `count` prepared isolates (at most its size), or creation
        failed, or it closed."""
        count = min(count, self.size)
        while not (self._closed or self.error is not None or len(self.ready) >= count):
            self._changed.clear()
            await self._changed.wait()

    async def aclose(self) -> None:
        """Free every isolate this pool holds, and wait for its background work to end."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for waiter in self._waiting:
            waiter.cancel()
        self._waiting.clear()
        now = self._loop.time()
        while self.ready:
            self._to_free.append((now, self.ready.popleft()))
        self._kick()
        while self._jobs or self._to_free:
            self._changed.clear()
            await self._changed.wait()

    # -- background work ------------------------------------------------------------------
    def _kick(self) -> None:
        while self._jobs < ISOLATE_THREADS:
            job = self._next_job()
            if job is None:
                break
            self._jobs += 1
            if job == "create":
                self._creating += 1
                future = self._loop.run_in_executor(_isolate_executor(), self._create)
                future.add_done_callback(self._created)
            else:
                _, isolate = self._to_free.popleft()
                future = self._loop.run_in_executor(_isolate_executor(), isolate.free)
                future.add_done_callback(self._freed)

    def _next_job(self) -> str | None:
        now = self._loop.time()
        quiet_at = self._last_take + QUIET_S
        if len(self._waiting) > self._creating and self.error is None:
            return "create"  # a cell is waiting: it comes first
        wake_at = None
        if self._to_free:
            due = self._to_free[0][0] + MAX_FREE_DELAY_S
            if self._closed or now >= quiet_at or now >= due or len(self._to_free) >= MAX_DEFERRED_FREES:
                return "free"
            wake_at = min(quiet_at, due)
        if not self._closed and not self._trimmed and len(self.ready) > IDLE_KEEP:
            trim_at = self._last_use + IDLE_TRIM_S
            if now >= trim_at:
                self._trimmed = True
                while len(self.ready) > IDLE_KEEP:
                    self._to_free.append((now, self.ready.pop()))
                return "free"
            wake_at = trim_at if wake_at is None else min(wake_at, trim_at)
        if not self._closed and self.error is None:
            have = len(self.ready) + self._creating
            if have < (IDLE_KEEP if self._trimmed else self.size):
                if now >= quiet_at or have < LOW_WATER:
                    return "create"
                wake_at = quiet_at if wake_at is None else min(wake_at, quiet_at)
        if wake_at is not None and (self._timer is None or wake_at < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = wake_at
            self._timer = self._loop.call_at(wake_at, self._on_timer)
        return None

    def _on_timer(self) -> None:
        self._timer = None
        self._kick()

    def _created(self, future: asyncio.Future[_Isolate]) -> None:
        self._jobs -= 1
        self._creating -= 1
        if future.cancelled():
            pass
        elif future.exception() is not None:
            self.error = future.exception()
            while self._waiting:
                waiter = self._waiting.popleft()
                if not waiter.done():
                    waiter.set_exception(future.exception())  # type: ignore[arg-type]
        else:
            isolate = future.result()
            while self._waiting and self._waiting[0].done():
                self._waiting.popleft()
            if self._waiting:
                self._waiting.popleft().set_result(isolate)
            elif self._closed:
                self._to_free.append((self._loop.time(), isolate))
            else:
                self.ready.append(isolate)
        self._changed.set()
        self._kick()

    def _freed(self, future: asyncio.Future[None]) -> None:
        self._jobs -= 1
        if not future.cancelled() and future.exception() is not None:
            self._loop.call_exception_handler(
                {"message": "codemode: freeing an isolate failed", "exception": future.exception()}
            )
        self._changed.set()
        self._kick()


class MiniRacerSession:
    """A session's isolates: a pool prepared in the background; implements EngineSession."""

    def __init__(self, setup: SessionSetup, pool_size: int = POOL_SIZE) -> None:
        self._loop = asyncio.get_running_loop()
        setup_json = json.dumps(
            {
                "tools": [{"name": t.global_name, "description": t.description} for t in setup.tools],
                "ring_bytes": RING_BYTES,
                "max_buffered_chars": MAX_BUFFERED_CHARS,
            }
        )
        # The setup travels as a JSON string for JSON.parse: much cheaper than a literal to compile.
        prelude = _PRELUDE.replace("__CODEMODE_SETUP__", f"JSON.parse({json.dumps(setup_json)})")
        heap_limit = setup.heap_limit_bytes
        loop = self._loop
        self._pool = _Pool(loop, lambda: _Isolate(loop, prelude, heap_limit), pool_size)

    async def ready(self, isolates: int | None = None) -> None:
        """Wait until V8 is up and `isolates` (default: the whole pool) are prepared."""
        await self._pool.filled(self._pool.size if isolates is None else isolates)

    async def start(self, program: CellProgram, on_event: EventSink) -> MiniRacerCell:
        isolate = await self._pool.take()
        prefix = _PROGRAM_PREFIX.format(snapshot=json.dumps(json.dumps(dict(program.stored))), hoisted=program.hoisted)
        cell = MiniRacerCell(isolate, on_event, len(prefix), self._pool.release)
        cell.launch(prefix + program.code + _PROGRAM_SUFFIX)
        return cell

    async def aclose(self) -> None:
        await self._pool.aclose()


class MiniRacerEngine:
    """The default engine: V8 through mini-racer; implements `Engine`.

    `pool_size` prepared isolates are kept per session (0: create each one on demand).
    """

    def __init__(self, pool_size: int = POOL_SIZE) -> None:
        self._pool_size = pool_size

    def open_session(self, setup: SessionSetup) -> MiniRacerSession:
        return MiniRacerSession(setup, self._pool_size)
