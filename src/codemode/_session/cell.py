"""One cell: a running script, its undelivered output, and who is watching it (spec 3.2).

States: RUNNING -> (script settles) COMPLETED, buffered until observed -> CLOSED;
RUNNING -> (terminate) TERMINATING -> CLOSED, reported as terminated.

Invariants:
* At most one observer at a time; an observation drains the output buffer, and an observer
  that is cancelled drains nothing, so output is never lost or repeated.
* Completion and termination race for one outcome: whichever is recorded first wins, and
  stored values are committed only with a winning completion.
* When the cell ends, its pending tool calls are cancelled (calls waiting for approval
  included) and its isolate is released.
* A call that begins to wait for approval wakes the observer: the cell yields at once, so the
  host sees the call; the script runs on meanwhile, only that call waits (`approvals.py`).
* Every call gets one trace record (`trace.py`); an observation takes the records written since
  the previous one.
* A call runs in a copy of the contextvars context of the task that last drove the cell (the exec
  that started it, then each observer), so a framework adapter's per-run context (a ContextVar
  its exec/wait tool sets) reaches exactly the calls that run's exec or wait drives.
* Limits (`limits.py`): undelivered output is bounded (items over the budget are dropped, and a
  notice takes their place at the next full drain; output the engine dropped before it arrived,
  `OutputDroppedEvent`, counts into the same notice, so a flood never fails the cell); a cell stopped by a limit (`abort_soon`) ends like
  a terminated one (nothing committed, output kept) but is reported as failed with the reason.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from codemode._engine.base import (
    EngineDiedEvent,
    EngineEvent,
    FinishedEvent,
    MemoryLimitEvent,
    NotifyEvent,
    OutputDroppedEvent,
    OutputEvent,
    ToolCallEvent,
    YieldEvent,
)
from codemode._protocol.calls import PendingApproval, ToolCallOutcome, ToolCallRecord
from codemode._protocol.config import DEFAULT_LIMITS, Limits
from codemode._protocol.text import safe_text
from codemode._protocol.types import AudioItem, ErrorKind, ImageItem, OutputItem, Status, TextItem
from codemode._session.approvals import NO_APPROVAL_POLICY, Approvals, ApprovalSettings, ToolCallRejected
from codemode._session.limits import memory_limit_error, output_dropped_notice, tool_call_limit_error
from codemode._session.script_text import safe_event
from codemode._session.trace import CallTrace, KeptRecords, Spans
from codemode._tasks import TaskSet
from codemode.errors import UsageError


class ScriptControl(Protocol):
    """What a cell does to its running script: an `EngineCell`, or a layer over one."""

    def resolve_tool_call(self, call_id: int, ok: bool, payload: str) -> None: ...

    async def terminate(self) -> None: ...

    def release(self) -> None: ...


class CellState(enum.Enum):
    RUNNING = "running"
    COMPLETED = "completed"
    TERMINATING = "terminating"
    CLOSED = "closed"


@dataclass(frozen=True)
class Observation:
    """What one exec/wait call saw: the status, the drained items, the script error if any,
    the calls that ended since the previous observation and the calls waiting for approval."""

    status: Status
    items: tuple[OutputItem, ...]
    error: str | None = None
    tool_calls: tuple[ToolCallRecord, ...] = ()
    pending_approvals: tuple[PendingApproval, ...] = ()


class CellBusyError(Exception):
    """A second observer or terminate was refused; the message is model-facing, `kind` says why."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind


@dataclass(frozen=True)
class ToolCallRequest:
    """A nested call the cell hands its session to run.

    `seek_approval(arguments)` returns once the call may run and raises `ToolCallRejected`
    otherwise; the session awaits it, with the validated arguments, for tools that require approval.
    """

    call_id: str
    tool_name: str
    arguments_json: str | None
    seek_approval: Callable[[Any], Awaitable[None]]


@dataclass(frozen=True)
class CellHooks:
    """What a cell needs from its session."""

    run_tool: Callable[[ToolCallRequest], Awaitable[str]]  # -> the result's JSON text
    notify: Callable[[str], Awaitable[None] | None]
    commit: Callable[[Mapping[str, str]], str | None]  # -> why nothing was committed, if so
    closed: Callable[[], None]


class Cell:
    def __init__(
        self,
        cell_id: str,
        hooks: CellHooks,
        limits: Limits = DEFAULT_LIMITS,
        *,
        approvals: ApprovalSettings = NO_APPROVAL_POLICY,
        spans: Spans | None = None,
        kept_records: KeptRecords | None = None,
    ) -> None:
        self.id = cell_id
        self._hooks = hooks
        self._limits = limits
        self._buffered_chars = 0
        self._dropped_items = 0
        self._dropped_chars = 0
        self._tool_call_count = 0
        self._time_limit: asyncio.TimerHandle | None = None
        self._aborting: asyncio.Task[None] | None = None
        self._engine: ScriptControl | None = None
        self.state = CellState.RUNNING
        self._items: list[OutputItem] = []
        self._error: str | None = None
        # Set by `yield_control()`: how many buffered items the yielded observation delivers;
        # what the script printed after the yield belongs to the next observation.
        self._yield_boundary: int | None = None
        self._observing = False
        self._observed = False
        self._changed = asyncio.Event()
        self.approvals = Approvals(cell_id, approvals, self._changed.set)
        # Over-limit calls are traced too, up to as many again.
        max_records = 2 * limits.max_tool_calls_per_cell + 100
        self.trace = CallTrace(cell_id, spans, max_records, kept_records or KeptRecords())
        # The cell's tasks: its tool calls, its async notify callbacks and a limit's stop.
        self._tool_calls = TaskSet(f"exec cell {cell_id}")
        self._notifications = TaskSet(f"exec cell {cell_id}", on_done=self._notification_done)
        self._stopping = TaskSet(f"exec cell {cell_id}")
        self._terminated = asyncio.Event()
        self._driver_context = contextvars.copy_context()  # the exec's, until an observer takes over

    def attach(self, engine: ScriptControl) -> None:
        self._engine = engine

    @property
    def undelivered_outputs(self) -> int:
        """Output events the cell holds that no observation has handed out yet."""
        held = len(self._items) - (1 if self._dropped_items else 0)
        return held + self._dropped_items

    # -- engine events ----------------------------------------------------------------------
    def on_event(self, event: EngineEvent) -> None:
        event = safe_event(event)  # where script text enters the host: no lone surrogate passes
        if self.state is not CellState.RUNNING and not isinstance(event, OutputEvent | OutputDroppedEvent):
            return
        if isinstance(event, OutputEvent):
            if self.state is CellState.CLOSED:
                return
            self._buffer(event.item)
            self._changed.set()
        elif isinstance(event, OutputDroppedEvent):
            if self.state is CellState.CLOSED:
                return
            self._drop(event.items, event.chars)  # by the engine, already: the notice stands here
            self._changed.set()
        elif isinstance(event, ToolCallEvent):
            self._tool_call_count += 1
            if self._tool_call_count > self._limits.max_tool_calls_per_cell:
                error = tool_call_limit_error(self._limits.max_tool_calls_per_cell)
                traced = self.trace.start(str(event.call_id), event.tool_name, event.arguments_json)
                traced.end("error", error)
                if self._engine is not None:
                    self._engine.resolve_tool_call(event.call_id, False, error)
                return
            self._tool_calls.spawn(
                self._run_tool(event),
                name=f"codemode-cell-{self.id}-call-{event.call_id}",
                context=self._driver_context.copy(),
            )
        elif isinstance(event, NotifyEvent):
            try:
                pending = self._hooks.notify(event.text)
            except Exception as exc:  # a failing host callback must not cost events
                asyncio.get_running_loop().call_exception_handler(
                    {"message": f"codemode: the notify callback failed for cell {self.id}", "exception": exc}
                )
                pending = None
            if pending is not None:
                self._notifications.spawn(pending, name=f"codemode-cell-{self.id}-notify")
        elif isinstance(event, YieldEvent):
            # Only an observer waiting now (or the exec call about to observe) is answered; a
            # later yield before that observer woke up has nobody left to answer.
            if (self._observing or not self._observed) and self._yield_boundary is None:
                self._yield_boundary = len(self._items)
                self._changed.set()
        elif isinstance(event, FinishedEvent):
            self._finish(event)
        elif isinstance(event, MemoryLimitEvent):
            self.abort_soon(memory_limit_error(self._limits.heap_limit_bytes))
        elif isinstance(event, EngineDiedEvent):
            # The script is gone with its engine: a failure, with nothing committed.
            self._finish(FinishedEvent(event.error), release=False)

    def _finish(self, event: FinishedEvent, *, release: bool = True) -> None:
        self.state = CellState.COMPLETED
        self._cancel_time_limit()
        refusal = self._hooks.commit(event.stored_writes)
        self._error = event.error if refusal is None else refusal
        self._cancel_tool_calls()
        if release and self._engine is not None:
            self._engine.release()
        if not self._notifications:
            # Else notifications of a cell that completes are delivered before its result: the
            # last one to end wakes the observer.
            self._changed.set()

    async def _run_tool(self, event: ToolCallEvent) -> None:
        call_id = str(event.call_id)
        traced = self.trace.start(call_id, event.tool_name, event.arguments_json)
        seek_approval = partial(self.approvals.seek, call_id, event.tool_name)
        request = ToolCallRequest(call_id, event.tool_name, event.arguments_json, seek_approval)
        outcome: ToolCallOutcome = "error"
        try:
            payload = await self._hooks.run_tool(request)
            ok, outcome = True, "ok"
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                traced.end("cancelled")
                raise  # the cell ended (or the session closes): nobody waits for this call
            # The tool itself raised CancelledError (e.g. a cancelled request inside it): the
            # script must still get an answer, or its promise would never settle.
            payload, ok = f"tool `{event.tool_name}` was cancelled", False
        except ToolCallRejected as exc:
            payload, ok, outcome = str(exc), False, "rejected"
        except Exception as exc:
            payload, ok = str(exc), False
        except SystemExit as exc:
            # `sys.exit()` in a tool would stop the host's event loop: it is a failed call.
            payload, ok = f"tool `{event.tool_name}` tried to exit the process (SystemExit: {exc.code})", False
        traced.end(outcome, None if ok else safe_text(payload))  # a tool's error may echo anything
        if self._engine is not None and self.state is CellState.RUNNING:
            self._engine.resolve_tool_call(event.call_id, ok, payload)

    # -- observation ------------------------------------------------------------------------
    async def observe(self, yield_time_ms: int) -> Observation:
        """Wait for completion, `yield_control()` or the yield deadline, whichever is first."""
        if self._observing:
            raise CellBusyError("busy", f"exec cell {self.id} already has an active observer")
        self._observing = True
        self._observed = True
        self._driver_context = contextvars.copy_context()
        self.trace.observed()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + yield_time_ms / 1000
        try:
            while True:
                if self.state is CellState.CLOSED and self._terminated.is_set():
                    return self._observation("terminated", self._drain())
                if self._yield_boundary is not None:
                    # The yield happened before anything that followed it, completion included.
                    boundary, self._yield_boundary = self._yield_boundary, None
                    return self._running(self._drain(boundary))
                if self.state is CellState.COMPLETED and not self._notifications_pending():
                    return self._close_completed()
                remaining = deadline - loop.time()
                if remaining <= 0 or (self.state is CellState.RUNNING and self.approvals.announce()):
                    return self._running(self._drain())
                self._changed.clear()
                try:
                    async with asyncio.timeout(remaining):
                        await self._changed.wait()
                except TimeoutError:
                    pass
        finally:
            self._observing = False

    def _running(self, items: tuple[OutputItem, ...]) -> Observation:
        self.approvals.announce()  # the calls waiting now are in this observation
        return self._observation("running", items, pending_approvals=self.approvals.pending)

    def _observation(
        self,
        status: Status,
        items: tuple[OutputItem, ...],
        error: str | None = None,
        pending_approvals: tuple[PendingApproval, ...] = (),
    ) -> Observation:
        return Observation(status, items, error, self.trace.take_new(), pending_approvals)

    def _notification_done(self, task: asyncio.Task[Any]) -> None:
        self._changed.set()  # an observer may be waiting for the last one
        if not task.cancelled() and task.exception() is not None:
            # Reported like a failing sync callback; the script never sees it.
            task.get_loop().call_exception_handler(
                {
                    "message": f"codemode: the notify callback failed for cell {self.id}",
                    "exception": task.exception(),
                    "task": task,
                }
            )

    def _notifications_pending(self) -> bool:
        # A task has left the set when its failure (if any) is reported.
        return bool(self._notifications)

    def _close_completed(self) -> Observation:
        self.state = CellState.CLOSED
        self._hooks.closed()
        items = self._drain()
        if self._error is None:
            return self._observation("completed", items)
        return self._observation("failed", items, self._error)

    def _drain(self, count: int | None = None) -> tuple[OutputItem, ...]:
        if count is None:
            count = len(self._items)
        items = tuple(self._items[:count])
        del self._items[:count]
        if items and items[-1] is _DROPPED:
            # The mark stands where output began to be dropped; it becomes the notice.
            notice = output_dropped_notice(
                self._dropped_items, self._dropped_chars, self._limits.max_buffered_output_chars
            )
            items = (*items[:-1], TextItem(notice))
            self._dropped_items = self._dropped_chars = 0
        self._buffered_chars -= sum(_item_chars(item) for item in items)
        return items

    def _buffer(self, item: OutputItem) -> None:
        size = _item_chars(item)
        if self._dropped_items or self._buffered_chars + size > self._limits.max_buffered_output_chars:
            self._drop(1, size)
            return
        self._items.append(item)
        self._buffered_chars += size

    def _drop(self, items: int, chars: int) -> None:
        """Count dropped output at the end of the buffer, where its notice will stand."""
        # Once something is dropped, everything after it is too, until the mark is drained;
        # the mark stays last in the buffer, so observations keep their order.
        if not self._dropped_items:
            self._items.append(_DROPPED)
        self._dropped_items += items
        self._dropped_chars += chars

    # -- limits -----------------------------------------------------------------------------
    def start_time_limit(self, seconds: float, error: str) -> None:
        """Stop the cell with `error` if it still runs `seconds` from now."""
        loop = asyncio.get_running_loop()
        self._time_limit = loop.call_later(seconds, self.abort_soon, error)

    def _cancel_time_limit(self) -> None:
        if self._time_limit is not None:
            self._time_limit.cancel()
            self._time_limit = None

    def abort_soon(self, error: str) -> None:
        """Stop a running script because it broke a limit (from a timer or an engine event).

        Like `terminate`, tool calls and notifications are cancelled, nothing is committed and the
        output produced so far is kept; unlike it, the outcome is a completion that failed with
        `error`, delivered to the current or next observer. The cell leaves the running state at
        once, so a completion the engine reports meanwhile cannot win.
        """
        if self.state is not CellState.RUNNING or self._aborting is not None:
            return
        self.state = CellState.TERMINATING
        self._cancel_time_limit()
        self._cancel_tool_calls()
        self._notifications.cancel_all()
        stop = self._stop_engine_then_fail(error)
        self._aborting = self._stopping.spawn(stop, name=f"codemode-cell-{self.id}-stop")

    async def _stop_engine_then_fail(self, error: str) -> None:
        try:
            if self._engine is not None:
                await self._engine.terminate()
        finally:
            self.state = CellState.COMPLETED
            self._error = error
            self._changed.set()

    # -- termination ------------------------------------------------------------------------
    async def terminate(self) -> Observation:
        """Stop the script; a completion that already happened wins (spec 3.2)."""
        if self._aborting is not None and not self._aborting.done():
            # A limit is stopping the cell already: its failure is the outcome.
            await asyncio.shield(self._aborting)
        if self.state is CellState.COMPLETED:
            # The completion wins, but notifications still being delivered end with the cell.
            self._notifications.cancel_all()
            return self._close_completed()
        if self.state is CellState.TERMINATING:
            raise CellBusyError("terminating", f"exec cell {self.id} is already terminating")
        if self.state is CellState.CLOSED:
            raise CellBusyError("not_found", f"exec cell {self.id} not found")
        self.trace.observed()
        self.state = CellState.TERMINATING
        self._cancel_time_limit()
        self._cancel_tool_calls()
        self._notifications.cancel_all()
        if self._engine is not None:
            await self._engine.terminate()
        self.state = CellState.CLOSED
        self._terminated.set()
        self._hooks.closed()
        self._changed.set()
        return self._observation("terminated", self._drain())

    def _cancel_tool_calls(self) -> None:
        self._tool_calls.cancel_all()
        self.trace.cancel_active()

    # -- approvals --------------------------------------------------------------------------
    def answer_approval(self, call_id: str, *, approved: bool, reason: str | None = None) -> None:
        """Approve or reject a call waiting for approval.

        Raises:
            UsageError: the cell no longer runs, or no such call waits.
        """
        if self.state is not CellState.RUNNING:
            raise UsageError(
                f"exec cell {self.id} is no longer running, so call {call_id} will not run: "
                "its calls waiting for approval were cancelled"
            )
        self.approvals.answer(call_id, approved=approved, reason=reason)


_DROPPED = TextItem("")  # the place of dropped output in a buffer (compared by identity)


def _item_chars(item: OutputItem) -> int:
    if isinstance(item, ImageItem):
        return len(item.image_url)
    if isinstance(item, AudioItem):
        return len(item.audio_url)
    return len(item.text)
