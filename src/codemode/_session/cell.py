"""One cell: a running script, its undelivered output, and who is watching it (spec 3.2).

States: RUNNING -> (script settles) COMPLETED, buffered until observed -> CLOSED;
RUNNING -> (terminate) TERMINATING -> CLOSED, reported as terminated.

Invariants:
* At most one observer at a time; an observation drains the output buffer, and an observer
  that is cancelled drains nothing, so output is never lost or repeated.
* Completion and termination race for one outcome: whichever is recorded first wins, and
  stored values are committed only with a winning completion.
* When the cell ends, its pending tool calls are cancelled and its isolate is released.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from codemode._engine.base import (
    EngineCell,
    EngineEvent,
    FinishedEvent,
    NotifyEvent,
    OutputEvent,
    ToolCallEvent,
    YieldEvent,
)
from codemode._types import OutputItem, Status


class CellState(enum.Enum):
    RUNNING = "running"
    COMPLETED = "completed"
    TERMINATING = "terminating"
    CLOSED = "closed"


@dataclass(frozen=True)
class Observation:
    """What one exec/wait call saw: the status, the drained items, the script error if any."""

    status: Status
    items: tuple[OutputItem, ...]
    error: str | None = None


class CellBusyError(Exception):
    """A second observer or terminate was refused; the message is model-facing."""


@dataclass(frozen=True)
class CellHooks:
    """What a cell needs from its session."""

    run_tool: Callable[[str, str | None], Awaitable[str]]  # (tool name, args JSON) -> result JSON
    notify: Callable[[str], Awaitable[None] | None]
    commit: Callable[[Mapping[str, str]], None]
    closed: Callable[[], None]


class Cell:
    def __init__(self, cell_id: str, hooks: CellHooks) -> None:
        self.id = cell_id
        self._hooks = hooks
        self._engine: EngineCell | None = None
        self.state = CellState.RUNNING
        self._items: list[OutputItem] = []
        self._error: str | None = None
        self._yield_requested = False
        self._observing = False
        self._changed = asyncio.Event()
        self._tool_calls: set[asyncio.Task[None]] = set()
        self._notifications: set[asyncio.Task[None]] = set()
        self._terminated = asyncio.Event()
        self._finalizer: asyncio.Future[object] | None = None

    def attach(self, engine: EngineCell) -> None:
        self._engine = engine

    # -- engine events ----------------------------------------------------------------------
    def on_event(self, event: EngineEvent) -> None:
        if self.state is not CellState.RUNNING and not isinstance(event, OutputEvent):
            return
        if isinstance(event, OutputEvent):
            if self.state is CellState.CLOSED:
                return
            self._items.append(event.item)
            self._changed.set()
        elif isinstance(event, ToolCallEvent):
            task = asyncio.ensure_future(self._run_tool(event))
            self._tool_calls.add(task)
            task.add_done_callback(self._tool_calls.discard)
        elif isinstance(event, NotifyEvent):
            pending = self._hooks.notify(event.text)
            if pending is not None:
                task = asyncio.ensure_future(pending)
                self._notifications.add(task)
                task.add_done_callback(self._notifications.discard)
        elif isinstance(event, YieldEvent):
            if self._observing:
                self._yield_requested = True
                self._changed.set()
        elif isinstance(event, FinishedEvent):
            self._finish(event)

    def _finish(self, event: FinishedEvent) -> None:
        self.state = CellState.COMPLETED
        self._error = event.error
        self._hooks.commit(event.stored_writes)
        self._cancel_tool_calls()
        if self._engine is not None:
            self._engine.release()
        if self._notifications:
            # Notifications of a cell that completes are delivered before its result.
            self._finalizer = asyncio.ensure_future(asyncio.wait(list(self._notifications)))
            self._finalizer.add_done_callback(lambda _: self._changed.set())
        else:
            self._changed.set()

    async def _run_tool(self, event: ToolCallEvent) -> None:
        try:
            payload = await self._hooks.run_tool(event.tool_name, event.arguments_json)
            ok = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            payload, ok = str(exc), False
        if self._engine is not None and self.state is CellState.RUNNING:
            self._engine.resolve_tool_call(event.call_id, ok, payload)

    # -- observation ------------------------------------------------------------------------
    async def observe(self, yield_time_ms: int) -> Observation:
        """Wait for completion, `yield_control()` or the yield deadline, whichever is first."""
        if self._observing:
            raise CellBusyError(f"exec cell {self.id} already has an active observer")
        self._observing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + yield_time_ms / 1000
        try:
            while True:
                if self.state is CellState.COMPLETED and not self._notifications_pending():
                    return self._close_completed()
                if self.state is CellState.CLOSED and self._terminated.is_set():
                    return Observation("terminated", self._drain())
                if self._yield_requested:
                    self._yield_requested = False
                    return Observation("running", self._drain())
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return Observation("running", self._drain())
                self._changed.clear()
                try:
                    async with asyncio.timeout(remaining):
                        await self._changed.wait()
                except TimeoutError:
                    pass
        finally:
            self._observing = False

    def _notifications_pending(self) -> bool:
        return any(not task.done() for task in self._notifications)

    def _close_completed(self) -> Observation:
        self.state = CellState.CLOSED
        self._hooks.closed()
        items = self._drain()
        if self._error is None:
            return Observation("completed", items)
        return Observation("failed", items, self._error)

    def _drain(self) -> tuple[OutputItem, ...]:
        items = tuple(self._items)
        self._items.clear()
        return items

    # -- termination ------------------------------------------------------------------------
    async def terminate(self) -> Observation:
        """Stop the script; a completion that already happened wins (spec 3.2)."""
        if self.state is CellState.COMPLETED:
            return self._close_completed()
        if self.state is CellState.TERMINATING:
            raise CellBusyError(f"exec cell {self.id} is already terminating")
        if self.state is CellState.CLOSED:
            raise CellBusyError(f"exec cell {self.id} not found")
        self.state = CellState.TERMINATING
        self._cancel_tool_calls()
        for task in self._notifications:
            task.cancel()
        if self._engine is not None:
            await self._engine.terminate()
        self.state = CellState.CLOSED
        self._terminated.set()
        self._hooks.closed()
        self._changed.set()
        return Observation("terminated", self._drain())

    def _cancel_tool_calls(self) -> None:
        for task in self._tool_calls:
            task.cancel()
