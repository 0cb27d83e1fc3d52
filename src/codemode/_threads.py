"""Threads for sync tools: each session gets its own bounded set, and none can block exit.

A sync tool that hangs holds its thread for good (Python cannot stop a thread). On asyncio's
shared default executor that starves every other session's sync tools, and on any
`concurrent.futures` executor (anyio's workers too) it also keeps the interpreter from exiting,
since their threads are joined at shutdown. So each session runs its sync tools on its own
`ToolThreads`: at most `max_threads` daemon threads, started on demand and ended when idle, so a
hung tool can only hold its own session's threads, and the interpreter exits regardless.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

DEFAULT_MAX_THREADS = 16
IDLE_EXIT_S = 10.0  # an idle thread ends after this long

_Job = tuple[Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class ToolThreads:
    """A bounded pool of daemon threads running blocking calls for one session."""

    def __init__(self, max_threads: int = DEFAULT_MAX_THREADS, name: str = "codemode-tool") -> None:
        self.max_threads = max(1, max_threads)
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0  # threads waiting for a job
        self._queued = 0  # jobs no thread has taken yet
        self._closed = False

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)` on one of these threads (in the caller's context)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        context = contextvars.copy_context()
        self._jobs.put((lambda: context.run(fn, *args, **kwargs), loop, future))
        with self._lock:
            self._queued += 1
            if self._queued > self._idle and self._threads < self.max_threads and not self._closed:
                self._threads += 1
                threading.Thread(target=self._work, name=f"{self._name}-{self._threads}", daemon=True).start()
        return await future

    def close(self) -> None:
        """Let idle threads end now; busy ones end when their call returns (if ever)."""
        with self._lock:
            self._closed = True
            count = self._threads
        for _ in range(count):
            self._jobs.put(None)

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            try:
                job = self._jobs.get(timeout=IDLE_EXIT_S)
            except queue.Empty:
                job = None
            with self._lock:
                self._idle -= 1
                if job is None:
                    self._threads -= 1
                    return
                self._queued -= 1
            fn, loop, future = job
            try:
                result = fn()
            except BaseException as exc:  # handed to the awaiting coroutine
                _settle(loop, future, None, exc)
            else:
                _settle(loop, future, result, None)


def _settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    def settle() -> None:
        if future.done():
            return  # the caller was cancelled
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:
        pass  # the loop is closed: nobody waits any more


_current: contextvars.ContextVar[ToolThreads | None] = contextvars.ContextVar("codemode_tool_threads", default=None)
_fallback: ToolThreads | None = None
_fallback_lock = threading.Lock()


def use_tool_threads(threads: ToolThreads) -> None:
    """Make `run_sync` in the current task (and tasks it starts) use `threads`."""
    _current.set(threads)


async def run_sync(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking tool function off the event loop, on the calling session's threads."""
    threads = _current.get()
    if threads is None:
        global _fallback
        with _fallback_lock:
            if _fallback is None:
                _fallback = ToolThreads(name="codemode-tool-shared")
            threads = _fallback
    return await threads.run(fn, *args, **kwargs)
