"""The trace of nested calls: one record per call of a cell, and OpenTelemetry spans when the
`opentelemetry-api` package is installed.

Invariants:
* Every call the script makes gets exactly one `ToolCallRecord`, written when the call ends
  (a call cancelled with its cell ends at the cancel); a cell keeps at most `max_records` of them
  and counts the rest in `dropped`.
* Records are bounded in size and in number, whatever the script sends: arguments are shortened
  past `TRACED_ARGUMENT_CHARS`, error texts past `TRACED_ERROR_CHARS` (spans carry the same
  shortened texts), and a session keeps records (of its open cells and of its newest
  `KEPT_CLOSED_CELLS` closed ones) within `KEPT_RECORD_BYTES`: the oldest closed cells' records
  go first, and an open cell that would still exceed the budget keeps no more (`dropped`).
* This is the only module that imports `opentelemetry`: on the first span once a tracer provider
  was given or could have been set globally (the application imported the API), and only if it
  is installed; without it spans are skipped and nothing else changes.
* Span names and attributes follow the OpenTelemetry GenAI semantic conventions where they have
  one (`execute_tool <name>`, `gen_ai.*`); the rest are `codemode.*`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import time
from collections.abc import Generator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from codemode._protocol.calls import (
    TRACED_ARGUMENT_CHARS,
    TRACED_ERROR_CHARS,
    ToolCallOutcome,
    ToolCallRecord,
    shorten,
)
from codemode._protocol.config import MIB

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from codemode._protocol.types import ExecResult

__all__ = [
    "KEPT_CLOSED_CELLS",
    "KEPT_RECORD_BYTES",
    "ActiveCall",
    "CallTrace",
    "KeptRecords",
    "ObservationSpan",
    "Spans",
]

KEPT_CLOSED_CELLS = 100
"""Closed cells whose call records `CodeMode.tool_calls(cell_id)` still returns..."""
KEPT_RECORD_BYTES = 16 * MIB
"""...as long as the records a session keeps (open cells' included) stay this small."""
# A record's own size beside its argument and error texts (the object, its dict, the call id and
# the floats; measured on CPython 3.11).
_RECORD_OVERHEAD_BYTES = 450

_UNRESOLVED: Any = object()


@functools.cache
def _codemode_version() -> str:
    """Read once: the metadata lookup parses a file, and every session resolves its tracer."""
    from importlib.metadata import version

    return version("codemode")


def _global_provider_impossible() -> bool:
    """True while no global tracer provider can exist: setting one imports `opentelemetry.trace`
    first, and the API makes one by itself only when `OTEL_PYTHON_TRACER_PROVIDER` names it."""
    return "opentelemetry.trace" not in sys.modules and "OTEL_PYTHON_TRACER_PROVIDER" not in os.environ


class Spans:
    """A session's OpenTelemetry tracer, resolved on first use; None while spans would record
    nothing (OTel absent, or no tracer provider given nor set globally yet).

    The API without an SDK hands out non-recording spans that carry their parent's context:
    making them cost about 40 µs an exec and 10 µs a nested call for nothing, so they are
    skipped (the parent's context stays current, the same context the script's calls saw).
    A provider set globally later is picked up."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._provider = tracer_provider
        self._tracer: Any = _UNRESOLVED
        self._no_provider_yet: Any = None  # the API's placeholder provider, while it is the global one

    def _resolve(self) -> Any:
        if self._tracer is _UNRESOLVED:
            if self._provider is None and _global_provider_impossible():
                return None  # nothing set one: importing the API (~10 ms) can wait until something has
            try:
                from opentelemetry import trace
            except ImportError:
                self._tracer = None
                return None
            self._tracer = trace.get_tracer("codemode", _codemode_version(), tracer_provider=self._provider)
            if self._provider is None:
                self._no_provider_yet = trace.ProxyTracerProvider
        if self._no_provider_yet is not None:
            from opentelemetry import trace

            if isinstance(trace.get_tracer_provider(), self._no_provider_yet):
                return None
            self._no_provider_yet = None  # set globally now: the tracer records from here on
        return self._tracer

    @contextmanager
    def observation(self, operation: Literal["exec", "wait"]) -> Generator[ObservationSpan, None, None]:
        """A span around one exec/wait call, current while it runs (so its cell's calls nest)."""
        tracer = self._resolve()
        if tracer is None:
            yield ObservationSpan(None)
            return
        attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": operation}
        with tracer.start_as_current_span(f"execute_tool {operation}", attributes=attributes) as span:
            yield ObservationSpan(span)

    def current_context(self) -> Any:
        """The OpenTelemetry context of the running task (None without OTel)."""
        if self._resolve() is None:
            return None
        from opentelemetry import context

        return context.get_current()

    def start_call(self, parent: Any, cell_id: str, call_id: str, tool_name: str, arguments: str) -> Any:
        tracer = self._resolve()
        if tracer is None:
            return None
        attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool_name,
            "gen_ai.tool.call.id": call_id,
            "gen_ai.tool.type": "function",
            "gen_ai.tool.call.arguments": arguments,
            "codemode.cell.id": cell_id,
        }
        return tracer.start_span(f"execute_tool {tool_name}", context=parent, attributes=attributes)


class ObservationSpan:
    """The span of one exec/wait call, told the result at the end."""

    def __init__(self, span: Any) -> None:
        self._span = span

    def finish(self, result: ExecResult) -> None:
        if self._span is None:
            return
        if result.cell_id is not None:
            self._span.set_attribute("codemode.cell.id", result.cell_id)
        self._span.set_attribute("codemode.cell.status", result.status)
        if result.pending_approvals:
            self._span.set_attribute("codemode.pending_approvals", len(result.pending_approvals))
        if result.status == "failed":
            from opentelemetry.trace import Status, StatusCode

            self._span.set_attribute("error.type", "script_error")
            self._span.set_status(Status(StatusCode.ERROR, result.error or ""))


class KeptRecords:
    """A session's budget for call records, and the records of its newest closed cells.

    Open cells reserve room for each record they keep; a closed cell's records stay until
    `max_closed_cells` newer cells have closed, or until room is needed for newer records
    (oldest closed cell first).
    """

    def __init__(self, max_bytes: int = KEPT_RECORD_BYTES, max_closed_cells: int = KEPT_CLOSED_CELLS) -> None:
        self._max_bytes = max_bytes
        self._max_closed_cells = max_closed_cells
        self._closed: dict[str, tuple[tuple[ToolCallRecord, ...], int]] = {}  # oldest first
        self.bytes = 0  # of every record kept, open cells' included

    def reserve(self, size: int) -> bool:
        """Room for one more record of an open cell, making it by forgetting closed cells."""
        while self.bytes + size > self._max_bytes and self._closed:
            self._forget_oldest()
        if self.bytes + size > self._max_bytes:
            return False
        self.bytes += size
        return True

    def close(self, trace: CallTrace) -> None:
        """`trace`'s cell has closed: keep its records (already paid for) as the newest."""
        self._closed[trace.cell_id] = (tuple(trace.records), trace.bytes)
        while len(self._closed) > self._max_closed_cells:
            self._forget_oldest()

    def closed_records(self, cell_id: str) -> tuple[ToolCallRecord, ...] | None:
        """The records of a closed cell, or None when it is unknown or no longer kept."""
        kept = self._closed.get(cell_id)
        return None if kept is None else kept[0]

    def __contains__(self, cell_id: object) -> bool:
        return cell_id in self._closed

    def _forget_oldest(self) -> None:
        _, size = self._closed.pop(next(iter(self._closed)))
        self.bytes -= size


def _record_bytes(record: ToolCallRecord) -> int:
    """About how much memory `record` holds (its texts are measured, the rest estimated)."""
    error = 0 if record.error is None else sys.getsizeof(record.error)
    return _RECORD_OVERHEAD_BYTES + sys.getsizeof(record.arguments) + error


class CallTrace:
    """One cell's call records, the calls in flight, and the span its calls nest under."""

    def __init__(self, cell_id: str, spans: Spans | None, max_records: int, kept: KeptRecords) -> None:
        self.cell_id = cell_id
        self.records: list[ToolCallRecord] = []
        self.dropped = 0
        self.bytes = 0  # what `records` hold, reserved from `kept`
        self._spans = spans
        self._max_records = max_records
        self._kept = kept
        self._delivered = 0
        self._active: dict[str, ActiveCall] = {}
        self._parent: Any = None

    def observed(self) -> None:
        """An exec/wait call observes the cell now: calls made from here on nest under its span."""
        if self._spans is not None:
            self._parent = self._spans.current_context()

    def start(self, call_id: str, tool_name: str, arguments_json: str | None) -> ActiveCall:
        arguments = shorten(arguments_json or "", TRACED_ARGUMENT_CHARS)
        span = None
        if self._spans is not None:
            span = self._spans.start_call(self._parent, self.cell_id, call_id, tool_name, arguments)
        call = ActiveCall(self, call_id, tool_name, arguments, span)
        self._active[call_id] = call
        return call

    def cancel_active(self) -> None:
        """The cell ended: every call still in flight ends as cancelled, now."""
        for call in list(self._active.values()):
            call.end("cancelled")

    def take_new(self) -> tuple[ToolCallRecord, ...]:
        """The records written since the last time this was asked."""
        new = tuple(self.records[self._delivered :])
        self._delivered = len(self.records)
        return new

    def record_end(self, call: ActiveCall, record: ToolCallRecord) -> None:
        self._active.pop(call.call_id, None)
        size = _record_bytes(record)
        if len(self.records) < self._max_records and self._kept.reserve(size):
            self.records.append(record)
            self.bytes += size
        else:
            self.dropped += 1


class ActiveCall:
    """A call in flight; `end` writes its record once (later ends are ignored)."""

    def __init__(self, trace: CallTrace, call_id: str, tool_name: str, arguments: str, span: Any) -> None:
        self.call_id = call_id
        self._trace = trace
        self._tool_name = tool_name
        self._arguments = arguments
        self._span = span
        self._started_at = time.time()
        self._started = asyncio.get_running_loop().time()
        self._ended = False

    def end(self, outcome: ToolCallOutcome, error: str | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        duration = asyncio.get_running_loop().time() - self._started
        if error is not None:
            error = shorten(error, TRACED_ERROR_CHARS)
        record = ToolCallRecord(
            self._trace.cell_id, self.call_id, self._tool_name, self._arguments, outcome, error,
            self._started_at, duration,
        )
        self._trace.record_end(self, record)
        if self._span is not None:
            self._span.set_attribute("codemode.tool_call.outcome", outcome)
            if outcome != "ok":
                from opentelemetry.trace import Status, StatusCode

                self._span.set_attribute("error.type", outcome)
                self._span.set_status(Status(StatusCode.ERROR, error or outcome))
            self._span.end()
