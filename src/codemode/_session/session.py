"""`CodeMode`: one code-mode session — its tools, cells, stored values and notifications.

Data flows one way: raw model input -> `_source` (pragma) -> `_imports` (module syntax) ->
a `Cell` on an engine isolate -> `ExecResult` (formatted later by `_output`/`formats`).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from codemode._describe.catalog import ToolCatalog
from codemode._describe.descriptions import DEFAULT_DESCRIPTION_BUDGET_TOKENS
from codemode._describe.names import NestedTool, nested_tool_table, shadowed_tools
from codemode._engine.base import (
    CellProgram,
    Engine,
    EngineSession,
    SessionSetup,
    ToolBinding,
)
from codemode._calls import ApprovalPolicy, PendingApproval, ToolCallRecord
from codemode._imports import ImportError_, module_exports, rewrite_modules
from codemode._result import DEFAULT_MAX_OUTPUT_TOKENS, ExecResult
from codemode._session.cell import (
    Cell,
    CellBusyError,
    CellHooks,
    Observation,
    ToolCallRequest,
)
from codemode._session.approvals import DEFAULT_APPROVAL_TIMEOUT_S, ApprovalSettings
from codemode._session.limits import (
    DEFAULT_LIMITS,
    Limits,
    concurrency_error,
    source_size_error,
    store_limit_error,
    time_limit_error,
)
from codemode._session.tool_calls import ToolCallFailed, call_tool
from codemode._session.trace import Spans
from codemode._source import SourceError, effective_yield_time_ms, parse_exec_source
from codemode._threads import ToolThreads, use_tool_threads
from codemode.errors import ToolError, UsageError
from codemode.formats import Api, described_tool_specs, exec_input
from codemode.adapters._intake import ToolIntake
from codemode.tools import Tool

DEFAULT_EXEC_YIELD_TIME_MS = 10_000
DEFAULT_WAIT_YIELD_TIME_MS = 10_000
DEFAULT_HEAP_LIMIT_BYTES = DEFAULT_LIMITS.heap_limit_bytes
KEPT_NOTIFICATIONS = 1000  # the newest notify() texts kept on the session (on_notify sees all)...
KEPT_NOTIFICATION_CHARS = 4 * 1024 * 1024  # ...as long as together they stay this short
KEPT_CLOSED_TRACES = 100  # closed cells whose call records `tool_calls(cell_id)` still returns
SHUTTING_DOWN = "code mode session is shutting down"

NotifyCallback = Callable[[str, str], Awaitable[None] | None]
Isolation = Literal["process", "in-process"]
DEFAULT_ISOLATION: Isolation = "process"

logger = logging.getLogger("codemode")


@dataclass(frozen=True)
class Notification:
    """A `notify(...)` text, with the cell that sent it."""

    cell_id: str
    text: str


class CodeMode:
    """One code-mode session: the `exec` and `wait` tools over your Python and MCP tools.

    Use it as an async context manager (`async with CodeMode(tools=[...]) as cm:`), then pass the
    model's `exec` input to `await cm.exec(source)` and its `wait` arguments to `await cm.wait(...)`.

    Args:
        tools: Python functions (sync or async, typed), `codemode.Tool` objects, or an agent
            framework's tools and toolsets (see `codemode.adapters`).
        mcp_servers: MCP servers whose tools become `tools.mcp__<server>__<tool>`: a mapping in
            the `{"mcpServers": {...}}` format, or a path to such a JSON file.
        openapi: HTTP APIs whose operations become `tools.<api>__<operation>`, called by this
            process: `{name: {"spec": path_or_dict, "base_url": ..., "headers": {...}}}`
            (see `codemode.tools.openapi.OpenApiToolset`); headers never reach the sandbox.
        description_budget_tokens: estimated tokens the nested tools' declarations may take in
            the exec description (default 2,000). Over it, each tool is listed in one line and
            scripts get `tools_search(query)` and `tools_describe(name)`; None: no budget.
        on_notify: called with (cell_id, text) for every `notify(...)`; may be async.
        default_yield_time_ms: how long `exec` waits before yielding (pragma may override).
        default_max_output_tokens: the token budget of an exec's output.
        default_wait_yield_time_ms: how long `wait` waits before yielding again.
        max_yield_time_ms: optional cap on every yield time (the cell keeps running).
        heap_limit_bytes: V8 heap limit per cell (default 256 MiB); a cell over it fails with
            a script error naming the limit, and the session stays usable.
        cell_time_limit_ms: optional wall-clock budget per cell; a cell still running then is
            stopped and fails with a script error saying why. None (default): no budget.
        max_concurrent_cells: open cells per session (default 64); beyond it exec is refused.
        max_tool_calls_per_cell: nested tool calls per cell (default 10000); beyond it each
            call rejects with an explanation.
        max_source_bytes: size of one exec's source in UTF-8 (default 1 MiB).
        max_buffered_output_chars: output characters a cell may buffer between observations
            (default 32 Mi); later items are dropped and a notice says so.
        max_stored_bytes: size of everything saved with `store` (JSON text, default 16 MiB);
            a `store` beyond it throws in the script.
        max_tool_threads: threads this session's sync tools may use at once (default 16).
        isolation: where scripts run. "process" (default): in engine worker processes shared
            by every session of this process and supervised by it, so no script can crash or
            hang the host. "in-process": V8 inside this process (faster start of each exec,
            but a fatal V8 error in one script aborts the whole process).
        engine: a JavaScript engine object to use instead of the shared one for `isolation`
            (e.g. `codemode.engines.ProcessEngine(workers=4)` shared by your sessions).
        approve: the approval policy for calls of tools that require approval: called with a
            `ToolCall` (tool name, validated arguments), sync or async; True runs the call, False
            rejects it, "ask" (and no policy at all) pauses that call until `approve`/`reject`.
            Raising `ToolError` rejects the call with its message.
        approval_timeout_s: seconds a call may wait for approval before it is rejected
            (default 600; None: no limit).
        tracer_provider: the OpenTelemetry `TracerProvider` for the exec/wait and nested-call
            spans (default: the global one; spans need `opentelemetry-api` installed).
    """

    def __init__(
        self,
        tools: Iterable[Tool | Callable[..., Any] | object] = (),
        *,
        mcp_servers: Mapping[str, Any] | str | Path | None = None,
        openapi: Mapping[str, Any] | None = None,
        description_budget_tokens: int | None = DEFAULT_DESCRIPTION_BUDGET_TOKENS,
        on_notify: NotifyCallback | None = None,
        default_yield_time_ms: int = DEFAULT_EXEC_YIELD_TIME_MS,
        default_max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS,
        default_wait_yield_time_ms: int = DEFAULT_WAIT_YIELD_TIME_MS,
        max_yield_time_ms: int | None = None,
        heap_limit_bytes: int = DEFAULT_HEAP_LIMIT_BYTES,
        cell_time_limit_ms: int | None = DEFAULT_LIMITS.cell_time_limit_ms,
        max_concurrent_cells: int = DEFAULT_LIMITS.max_concurrent_cells,
        max_tool_calls_per_cell: int = DEFAULT_LIMITS.max_tool_calls_per_cell,
        max_source_bytes: int = DEFAULT_LIMITS.max_source_bytes,
        max_buffered_output_chars: int = DEFAULT_LIMITS.max_buffered_output_chars,
        max_stored_bytes: int = DEFAULT_LIMITS.max_stored_bytes,
        max_tool_threads: int = DEFAULT_LIMITS.max_tool_threads,
        isolation: Isolation | None = None,
        engine: Engine | None = None,
        approve: ApprovalPolicy | None = None,
        approval_timeout_s: float | None = DEFAULT_APPROVAL_TIMEOUT_S,
        tracer_provider: Any = None,
    ) -> None:
        self.limits = Limits(
            heap_limit_bytes=heap_limit_bytes,
            cell_time_limit_ms=cell_time_limit_ms,
            max_concurrent_cells=max_concurrent_cells,
            max_tool_calls_per_cell=max_tool_calls_per_cell,
            max_source_bytes=max_source_bytes,
            max_buffered_output_chars=max_buffered_output_chars,
            max_stored_bytes=max_stored_bytes,
            max_tool_threads=max_tool_threads,
        )
        if isolation is None:
            isolation = DEFAULT_ISOLATION
        if isolation not in ("process", "in-process"):
            raise UsageError(f'`isolation` must be "process" or "in-process", got {isolation!r}')
        self.isolation = isolation
        self._tool_intake = ToolIntake(tools)  # toolsets list their tools once started
        self._own_tools: list[Tool] = []
        self._mcp_config = mcp_servers
        self._openapi_config = openapi
        self._description_budget_tokens = description_budget_tokens
        self._on_notify = on_notify
        self.default_yield_time_ms = default_yield_time_ms
        self.default_max_output_tokens = default_max_output_tokens
        self.default_wait_yield_time_ms = default_wait_yield_time_ms
        self.max_yield_time_ms = max_yield_time_ms
        self.heap_limit_bytes = heap_limit_bytes
        self._engine = engine
        self._approvals = ApprovalSettings(approve, approval_timeout_s)
        self._spans = Spans(tracer_provider)
        self._closed_traces: dict[str, tuple[ToolCallRecord, ...]] = {}
        self._tool_threads = ToolThreads(max_tool_threads)
        self._engine_session: EngineSession | None = None
        self._mcp: Any = None
        self._openapi: Any = None
        self._catalog = ToolCatalog((), budget_tokens=None)
        self._table: list[NestedTool] = []
        self._collision_notice: str | None = None
        self._by_global_name: dict[str, NestedTool] = {}
        self._exports: dict[str, frozenset[str]] = {}
        self._cells: dict[str, Cell] = {}
        self._cell_ids = itertools.count(1)
        self._stored: dict[str, str] = {}
        self._stored_bytes = 0
        self._stored_json: str | None = "{}"  # `_stored` as one JSON object, until it changes
        self._notifications: deque[Notification] = deque()
        self._notification_chars = 0
        self._state = "new"
        self._opened = asyncio.Event()  # set when a start attempt ended ("open", or failed)

    # -- lifecycle --------------------------------------------------------------------------
    async def __aenter__(self) -> CodeMode:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self, *, fill_pool: bool = False) -> None:
        """Start MCP servers and the engine (done implicitly by the first exec).

        Returns once V8 is up and the first isolate is prepared, so the first exec is fast; the
        rest of the isolate pool fills in the background. `fill_pool=True` waits for the whole
        pool, so a burst of execs right after start never waits for an isolate.
        """
        if self._state not in ("new", "starting", "open"):
            return
        await self._open()
        if self._engine_session is not None:
            await self._engine_session.ready(None if fill_pool else 1)

    async def _open(self) -> None:
        if self._state == "starting":
            await self._opened.wait()  # a concurrent start (MCP servers take a while)
            return
        if self._state != "new":
            return
        self._state = "starting"
        try:
            self._own_tools = await self._tool_intake.start()
            await self._open_now()
        finally:
            self._opened.set()

    async def _open_now(self) -> None:
        tools = list(self._own_tools)
        if self._mcp_config is not None:
            from codemode.tools.mcp import McpToolset

            self._mcp = McpToolset(self._mcp_config)
            await self._mcp.start()
            tools.extend(self._mcp.tools)
        if self._openapi_config is not None:
            from codemode.tools.openapi import OpenApiToolset

            self._openapi = await asyncio.to_thread(OpenApiToolset, self._openapi_config)  # reads the specs
            await self._openapi.start()
            tools.extend(self._openapi.tools)
        self._table = nested_tool_table(tools)
        self._by_global_name = {entry.global_name: entry for entry in self._table}
        self._catalog = ToolCatalog(self._table, budget_tokens=self._description_budget_tokens)
        self._collision_notice = _collision_notice(tools, self._table)
        if self._collision_notice:
            logger.warning("%s", self._collision_notice)
        self._exports = module_exports(set(self._by_global_name))
        if self._engine is None:
            from codemode import engines

            self._engine = engines.shared(self.isolation)
        bindings = [ToolBinding(name, description) for name, description in self._catalog.sandbox_bindings()]
        self._engine_session = await self._engine.open_session(SessionSetup(bindings, self.heap_limit_bytes))
        self._state = "open"

    async def close(self) -> None:
        """Terminate every cell (CPU-bound ones too), free isolates, stop MCP servers."""
        if self._state == "starting":
            await self._opened.wait()  # then close what the start opened
        if self._state in ("closing", "closed"):
            return
        self._state = "closing"
        cells = list(self._cells.values())
        await asyncio.gather(*(self._terminate_quietly(cell) for cell in cells))
        if self._engine_session is not None:
            await self._engine_session.aclose()
        if self._mcp is not None:
            await self._mcp.aclose()
        if self._openapi is not None:
            await self._openapi.aclose()
        await self._tool_intake.aclose()
        self._tool_threads.close()
        self._state = "closed"

    @staticmethod
    async def _terminate_quietly(cell: Cell) -> None:
        try:
            await cell.terminate()
        except CellBusyError:
            pass

    # -- the model-facing tools -------------------------------------------------------------
    async def exec(
        self,
        source: str,
        *,
        yield_time_ms: int | None = None,
        max_output_tokens: int | None = None,
    ) -> ExecResult:
        """Run the model's `exec` input (raw JavaScript, optionally with a `// @exec:` pragma).

        A pragma in the source overrides the keyword arguments, which override the defaults.
        Returns the completed/failed result, or a "running" result with the cell id to `wait` on.
        """
        with self._spans.observation("exec") as span:
            result = await self._exec(source, yield_time_ms, max_output_tokens)
            span.finish(result)
        return result

    async def _exec(
        self, source: str, yield_time_ms: int | None, max_output_tokens: int | None
    ) -> ExecResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self._state in ("new", "starting"):
            await self._open()
        if self._state != "open":
            return ExecResult("failed", None, error=SHUTTING_DOWN)
        refusal = self._refusal(source)
        if refusal is not None:
            return ExecResult("failed", None, error=refusal, wall_time_s=loop.time() - started)
        try:
            request = parse_exec_source(source)
        except SourceError as exc:
            return ExecResult("failed", None, error=str(exc), wall_time_s=loop.time() - started)
        requested_yield = _first(request.yield_time_ms, yield_time_ms, self.default_yield_time_ms)
        max_tokens = _first(request.max_output_tokens, max_output_tokens, self.default_max_output_tokens)
        cell_id = str(next(self._cell_ids))
        try:
            rewritten = rewrite_modules(request.code, self._exports)
        except ImportError_ as exc:
            return ExecResult("failed", cell_id, error=str(exc), wall_time_s=loop.time() - started,
                              max_output_tokens=max_tokens)
        cell = Cell(
            cell_id, self._hooks_for(cell_id), self.limits, approvals=self._approvals, spans=self._spans
        )
        self._cells[cell_id] = cell
        assert self._engine_session is not None
        program = CellProgram(
            rewritten.code,
            rewritten.hoisted,
            stored_json=self._stored_snapshot(),
            store_budget_bytes=max(0, self.limits.max_stored_bytes - self._stored_bytes),
            store_limit_error=store_limit_error(self.limits.max_stored_bytes),
        )
        cell.attach(self._engine_session.start(program, cell.on_event))
        if self.limits.cell_time_limit_ms is not None:
            limit_ms = self.limits.cell_time_limit_ms
            cell.start_time_limit(limit_ms / 1000, time_limit_error(limit_ms))
        observation = await cell.observe(effective_yield_time_ms(requested_yield, self.max_yield_time_ms))
        return self._result(cell_id, observation, started, max_tokens)

    async def wait(
        self,
        cell_id: str,
        yield_time_ms: int | None = None,
        max_tokens: int | None = None,
        terminate: bool = False,
    ) -> ExecResult:
        """Resume observing a yielded cell, or terminate it (`terminate=True`)."""
        with self._spans.observation("wait") as span:
            result = await self._wait(cell_id, yield_time_ms, max_tokens, terminate)
            span.finish(result)
        return result

    async def _wait(
        self, cell_id: str, yield_time_ms: int | None, max_tokens: int | None, terminate: bool
    ) -> ExecResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        budget = self.default_max_output_tokens if max_tokens is None else max_tokens
        if self._state not in ("open", "new"):
            return ExecResult("failed", None, error=SHUTTING_DOWN)
        cell = self._cells.get(str(cell_id))
        if cell is None:
            return ExecResult("failed", str(cell_id), error=f"exec cell {cell_id} not found",
                              wall_time_s=loop.time() - started, max_output_tokens=budget)
        try:
            if terminate:
                observation = await cell.terminate()
            else:
                requested = self.default_wait_yield_time_ms if yield_time_ms is None else yield_time_ms
                observation = await cell.observe(effective_yield_time_ms(requested, self.max_yield_time_ms))
        except CellBusyError as exc:
            return ExecResult("failed", None, error=str(exc), wall_time_s=loop.time() - started)
        return self._result(cell.id, observation, started, budget)

    # -- approvals and the trace -------------------------------------------------------------
    async def approve(self, cell_id: str, call_id: str) -> None:
        """Let a call waiting for approval run (its result goes to the script).

        Raises:
            UsageError: no such cell, the cell no longer runs, or no such call waits (unknown,
                approved or rejected already, timed out).
        """
        self._live_cell(cell_id).answer_approval(str(call_id), approved=True)

    async def reject(self, cell_id: str, call_id: str, reason: str | None = None) -> None:
        """Reject a call waiting for approval: the script's promise rejects with `reason`.

        Raises:
            UsageError: as for `approve`.
        """
        self._live_cell(cell_id).answer_approval(str(call_id), approved=False, reason=reason)

    def pending_approvals(self, cell_id: str | None = None) -> list[PendingApproval]:
        """The calls waiting for approval now, of one cell or of every cell."""
        cells = [self._live_cell(cell_id)] if cell_id is not None else list(self._cells.values())
        return [pending for cell in cells for pending in cell.approvals.pending]

    def tool_calls(self, cell_id: str) -> list[ToolCallRecord]:
        """Every nested call of a cell that has ended so far, in the order they ended (also for
        the last 100 closed cells).

        Raises:
            UsageError: the session knows no such cell.
        """
        cell = self._cells.get(str(cell_id))
        if cell is not None:
            return list(cell.trace.records)
        records = self._closed_traces.get(str(cell_id))
        if records is None:
            raise UsageError(f"exec cell {cell_id} not found (or its trace is no longer kept)")
        return list(records)

    def _live_cell(self, cell_id: str) -> Cell:
        cell = self._cells.get(str(cell_id))
        if cell is not None:
            return cell
        if str(cell_id) in self._closed_traces:
            raise UsageError(
                f"exec cell {cell_id} has ended, so none of its calls can be approved or rejected: "
                "calls still waiting for approval when a cell ends are cancelled, never run"
            )
        raise UsageError(f"exec cell {cell_id} not found")

    # -- what the host can read --------------------------------------------------------------
    @property
    def notifications(self) -> list[Notification]:
        """The newest `notify(...)` texts (up to 1,000 and 4 Mi characters), oldest first."""
        return list(self._notifications)

    @property
    def stored_values(self) -> dict[str, Any]:
        """A copy of the values scripts saved with `store(key, value)`."""
        return {key: json.loads(text) for key, text in self._stored.items()}

    def delete_stored_value(self, key: str) -> bool:
        """Forget a stored value (later cells `load` undefined); False if there was none."""
        text = self._stored.pop(key, None)
        if text is None:
            return False
        self._stored_bytes -= _stored_size(key, text)
        self._stored_json = None
        return True

    def tool_specs(self, api: Api = "responses", *, code_mode_only: bool = True) -> list[dict[str, Any]]:
        """The `exec` and `wait` tool definitions, ready to send to the given model API.

        `code_mode_only=True` lists every nested tool in the exec description (the model reaches
        tools only through exec); False leaves them out, for hosts that also expose them directly.
        """
        self._require_started()
        description = self._catalog.exec_description(
            code_mode_only=code_mode_only,
            default_yield_time_ms=self.default_yield_time_ms,
            input_format=exec_input(api),
            notes=self._notes(),
        )
        return described_tool_specs(description, api, default_yield_time_ms=self.default_yield_time_ms)

    def exec_description(self, *, code_mode_only: bool = True) -> str:
        """The `exec` tool's description as the model reads it."""
        self._require_started()
        return self._catalog.exec_description(
            code_mode_only=code_mode_only,
            default_yield_time_ms=self.default_yield_time_ms,
            notes=self._notes(),
        )

    def _notes(self) -> list[str]:
        notices = [self._mcp.notice if self._mcp is not None else None, self._collision_notice]
        return [notice for notice in notices if notice]

    def _require_started(self) -> None:
        if self._state == "new":
            raise UsageError("start the session first (`async with CodeMode(...)` or `await cm.start()`)")

    @property
    def tools(self) -> Sequence[NestedTool]:
        """The nested tools as the script sees them (after `start`)."""
        return tuple(self._table)

    @property
    def running_cells(self) -> list[str]:
        """Ids of cells that have not been closed yet."""
        return list(self._cells)

    # -- internals --------------------------------------------------------------------------
    def _refusal(self, source: str) -> str | None:
        """Why an exec must not start a cell (source too large, too many open cells), if so."""
        limit = self.limits.max_source_bytes
        if len(source) * 3 > limit:  # 3 bytes per UTF-16 unit at most, so shorter ones always fit
            size = len(source.encode("utf-8", "surrogatepass"))
            if size > limit:
                return source_size_error(size, limit)
        if len(self._cells) >= self.limits.max_concurrent_cells:
            return concurrency_error(self.limits.max_concurrent_cells, list(self._cells))
        return None

    def _stored_snapshot(self) -> str:
        """Every stored value as one JSON object text, built once per change, not per exec."""
        if self._stored_json is None:
            self._stored_json = json.dumps(self._stored, ensure_ascii=False)
        return self._stored_json

    def _commit(self, writes: Mapping[str, str]) -> None:
        if not writes:
            return
        for key, text in writes.items():
            previous = self._stored.get(key)
            if previous is not None:
                self._stored_bytes -= _stored_size(key, previous)
            self._stored[key] = text
            self._stored_bytes += _stored_size(key, text)
        self._stored_json = None

    def _keep_notification(self, notification: Notification) -> None:
        self._notifications.append(notification)
        self._notification_chars += len(notification.text)
        while len(self._notifications) > KEPT_NOTIFICATIONS or (
            self._notification_chars > KEPT_NOTIFICATION_CHARS and len(self._notifications) > 1
        ):
            self._notification_chars -= len(self._notifications.popleft().text)

    def _result(self, cell_id: str, observation: Observation, started: float, max_tokens: int) -> ExecResult:
        return ExecResult(
            status=observation.status,
            cell_id=cell_id,
            items=observation.items,
            error=observation.error,
            wall_time_s=asyncio.get_running_loop().time() - started,
            max_output_tokens=max_tokens,
            tool_calls=observation.tool_calls,
            pending_approvals=observation.pending_approvals,
        )

    def _hooks_for(self, cell_id: str) -> CellHooks:
        async def run_tool(call: ToolCallRequest) -> str:
            entry = self._by_global_name.get(call.tool_name)
            if entry is None:  # a discovery helper, or a name that is no tool
                try:
                    return await self._catalog.answer(call.tool_name, call.arguments_json)
                except ToolError as exc:
                    raise ToolCallFailed(str(exc)) from None
            use_tool_threads(self._tool_threads)  # this call's task: sync tools run on ours
            return await call_tool(entry.tool, call.tool_name, call.arguments_json, call.seek_approval)

        def notify(text: str) -> Awaitable[None] | None:
            self._keep_notification(Notification(cell_id, text))
            if self._on_notify is None:
                return None
            outcome = self._on_notify(cell_id, text)
            return outcome if inspect.isawaitable(outcome) else None

        def closed() -> None:
            cell = self._cells.pop(cell_id, None)
            if cell is not None:
                self._closed_traces[cell_id] = tuple(cell.trace.records)
                while len(self._closed_traces) > KEPT_CLOSED_TRACES:
                    del self._closed_traces[next(iter(self._closed_traces))]

        return CellHooks(run_tool=run_tool, notify=notify, commit=self._commit, closed=closed)


def _collision_notice(tools: Sequence[Tool], table: Sequence[NestedTool]) -> str | None:
    """Which tools lost their script name to an earlier tool (e.g. servers `a-b` and `a_b`)."""
    lost = []
    for raw, winner in shadowed_tools(tools, table):
        if winner is None:
            lost.append(f"- `{raw}`: `{raw}` is the name of a code-mode tool itself")
        else:
            lost.append(f"- `{raw}`: `tools.{winner.global_name}` is already `{winner.code_mode_name}`")
    if not lost:
        return None
    return "These tools are not in `tools` because another tool has the same script name:\n" + "\n".join(lost)


def _stored_size(key: str, text: str) -> int:
    """What a stored value counts against `max_stored_bytes`: its key and JSON text."""
    return len(key) + len(text)


def _first(*values: int | None) -> int:
    for value in values:
        if value is not None:
            return value
    raise UsageError("no value given")  # pragma: no cover - the last value is a default
