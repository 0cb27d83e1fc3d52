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
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codemode._describe.catalog import ToolCatalog
from codemode._describe.names import NestedTool, nested_tool_table, shadowed_tools
from codemode._engine.base import (
    CellProgram,
    Engine,
    EngineSession,
    SessionSetup,
    ToolBinding,
)
from codemode._imports import ImportError_, module_exports, parses_as_javascript, rewrite_modules
from codemode._protocol.calls import ApprovalPolicy, PendingApproval, ToolCallRecord
from codemode._protocol.config import (
    DEFAULT_DEFAULTS,
    DEFAULT_DESCRIPTION_BUDGET_TOKENS,
    DEFAULT_ISOLATION,
    DEFAULT_LIMITS,
    Defaults,
    Isolation,
    Limits,
)
from codemode._protocol.lifecycle import State, start_refusal, use_refusal
from codemode._protocol.text import safe_text
from codemode._protocol.types import ErrorKind, ExecResult, Notification
from codemode._session.approvals import ApprovalSettings
from codemode._session.cell import (
    Cell,
    CellBusyError,
    CellHooks,
    Observation,
    ToolCallRequest,
)
from codemode._session.durable import DurableCell, new_random_seed
from codemode._session.intake import ToolIntake
from codemode._session.journal import DISARM_AFTER_S, CellJournal, JournalPlace
from codemode._session.limits import (
    concurrency_error,
    source_size_error,
    store_limit_error,
    stored_writes_refused,
    time_limit_error,
)
from codemode._session.options import NotifyCallback
from codemode._session.tool_calls import ToolCallFailed, call_tool
from codemode._session.trace import KeptRecords, Spans
from codemode._source import SourceError, effective_yield_time_ms, parse_exec_source
from codemode._tasks import TaskSet
from codemode._threads import ToolThreads, use_tool_threads
from codemode.errors import EngineError, ToolError, UsageError
from codemode.formats import Api, described_tool_specs, exec_input
from codemode.store import Store, open_store
from codemode.tools import Tool

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

KEPT_NOTIFICATIONS = 1000  # the newest notify() texts kept on the session (on_notify sees all)...
KEPT_NOTIFICATION_CHARS = 4 * 1024 * 1024  # ...as long as together they stay this short
SHUTTING_DOWN = "code mode session is shutting down"
CELL_IDS_AT_ONCE = 16  # cell ids taken from the store per round trip
LEASE_S = 6.0  # how long a host owns a durable cell without renewing its lease (every third of it)
STORE_UNAVAILABLE = "this session's store did not answer ({error}); nothing ran: try again shortly"
STORE_FAILED_BEFORE_CALL = (
    "tools.{tool} did not run: this session's store could not record the call first ({error}); "
    "try again shortly"
)
RUNNING_ELSEWHERE = (
    "exec cell {cell_id} is running on another host of this session right now; wait on it there, "
    "or try again in a few seconds"
)


logger = logging.getLogger("codemode")


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
        limits: what scripts may use (`codemode.Limits`: heap, time, open cells, tool calls,
            source, output and stored sizes, tool threads, approval timeout).
        defaults: what exec and wait use when the model does not say (`codemode.Defaults`:
            yield times, output token budget, yield cap); every model-facing text quotes them.
        description_budget_tokens: estimated tokens the nested tools' declarations may take in
            the exec description (default 2,000). Over it, each tool is listed in one line and
            scripts get `tools_search(query)` and `tools_describe(name)`; None: no budget.
        on_notify: called with (cell_id, text) for every `notify(...)`; may be async.
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
        tracer_provider: the OpenTelemetry `TracerProvider` for the exec/wait and nested-call
            spans (default: the global one; spans need `opentelemetry-api` installed).
        store: where cells and stored values outlive this process ("sqlite:///path/file.db",
            "postgresql://...", or a `codemode.store.Store`): every cell's journal, the stored
            values and the session's cells are kept there, and a new `CodeMode` with the same
            `session_id` and store resumes them (`wait` on a cell that was running continues it
            by replay). Without it nothing is written anywhere.
        session_id: the session to open or resume in `store` (default: a new random id, see
            `session_id`).
    """

    def __init__(
        self,
        tools: Iterable[Tool | Callable[..., Any] | object] = (),
        *,
        mcp_servers: Mapping[str, Any] | str | Path | None = None,
        openapi: Mapping[str, Any] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        defaults: Defaults = DEFAULT_DEFAULTS,
        description_budget_tokens: int | None = DEFAULT_DESCRIPTION_BUDGET_TOKENS,
        on_notify: NotifyCallback | None = None,
        isolation: Isolation | None = None,
        engine: Engine | None = None,
        approve: ApprovalPolicy | None = None,
        tracer_provider: TracerProvider | None = None,
        store: str | Store | None = None,
        session_id: str | None = None,
    ) -> None:
        if not isinstance(limits, Limits):
            raise UsageError(f"`limits` must be a codemode.Limits, got {limits!r}")
        if not isinstance(defaults, Defaults):
            raise UsageError(f"`defaults` must be a codemode.Defaults, got {defaults!r}")
        self._limits = limits
        self._defaults = defaults
        if session_id is not None and (not isinstance(session_id, str) or not session_id):
            raise UsageError(f"`session_id` must be a non-empty string, got {session_id!r}")
        self._session_id = session_id if session_id is not None else uuid.uuid4().hex
        self._store: Store | None = open_store(store) if store is not None else None
        self._owns_store = isinstance(store, str)
        self._owner = uuid.uuid4().hex  # this host, as the owner of the cells it runs
        self._durable: dict[str, DurableCell] = {}
        self._pending_values: dict[str, str | None] = {}
        self._cells_to_forget: list[str] = []  # closed cells whose journals the store still holds
        self._cell_id_block: deque[int] = deque()  # cell ids the store reserved for this host
        self._to_flush: set[CellJournal] = set()  # journals with an arming to write
        self._store_work_wanted = asyncio.Event()  # wakes `_write_in_background`
        self._disarm_checks: set[CellJournal] = set()  # journals with a disarm check scheduled
        self._keep_journals = False  # closing with a store: cells stop here, their journals stay
        self._handed_over: set[str] = set()  # cells another host took over: their journals stay
        self._store_work = TaskSet("codemode session store work")  # lease renewals, background writes
        if isolation is None:
            isolation = DEFAULT_ISOLATION
        if isolation not in ("process", "in-process"):
            raise UsageError(f'`isolation` must be "process" or "in-process", got {isolation!r}')
        self._isolation: Isolation = isolation
        self._tool_intake = ToolIntake(tools, mcp_servers=mcp_servers, openapi=openapi)
        self._description_budget_tokens = description_budget_tokens
        self._on_notify = on_notify
        self._engine = engine
        self._approvals = ApprovalSettings(approve, limits.approval_timeout_s)
        self._spans = Spans(tracer_provider)
        self._kept_records = KeptRecords()
        self._tool_threads = ToolThreads(limits.max_tool_threads)
        self._engine_session: EngineSession | None = None
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
        self._state = State.NEW
        self._start_error: BaseException | None = None  # why the start failed (state FAILED)
        self._start_ended = asyncio.Event()  # the current start attempt's end (OPEN, FAILED, or NEW again)

    # -- lifecycle --------------------------------------------------------------------------
    async def __aenter__(self) -> CodeMode:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def state(self) -> State:
        """Where the session is in its one-way lifecycle (NEW, STARTING, OPEN, FAILED, CLOSING,
        CLOSED)."""
        return self._state

    async def start(self, *, fill_pool: bool = False) -> None:
        """Start the tool sources (MCP servers among them) and the engine (done implicitly by
        the first exec); a concurrent call waits for the first one's start.

        Returns once V8 is up and the first isolate is prepared, so the first exec is fast; the
        rest of the isolate pool fills in the background. `fill_pool=True` waits for the whole
        pool, so a burst of execs right after start never waits for an isolate.

        Raises:
            UsageError: the session was closed, or an earlier start failed (its error chained).
            Exception: what failed this start (a tool source, a `required` MCP server, the
                engine); the session is then FAILED and has closed what the start opened.
        """
        await self._open()
        if self._state is not State.OPEN:
            raise UsageError(start_refusal(self._state, "this CodeMode", self._start_error)) from self._start_error
        assert self._engine_session is not None
        try:
            await self._engine_session.ready(None if fill_pool else 1)
        except Exception as exc:  # the engine could not come up
            await self._fail(exc)
            raise

    async def _open(self) -> None:
        """Start once: NEW -> STARTING -> OPEN or FAILED. Callers that come meanwhile wait for
        that attempt; a cancelled attempt (its caller was cancelled) goes back to NEW, released,
        so the next caller starts afresh."""
        while self._state in (State.NEW, State.STARTING):
            if self._state is State.STARTING:
                await self._start_ended.wait()  # a concurrent start (MCP servers take a while)
                continue
            self._state = State.STARTING
            self._start_ended = ended = asyncio.Event()
            try:
                await self._open_now()
                self._state = State.OPEN
            except asyncio.CancelledError:
                await self._release()
                self._state = State.NEW
                raise
            except BaseException as exc:
                await self._fail(exc)  # nobody will `aclose` a session whose `__aenter__` raised
                raise
            finally:
                ended.set()

    async def _open_now(self) -> None:
        tools = await self._tool_intake.start()
        self._table = nested_tool_table(tools)
        self._by_global_name = {entry.global_name: entry for entry in self._table}
        self._catalog = ToolCatalog(self._table, budget_tokens=self._description_budget_tokens)
        self._collision_notice = _collision_notice(tools, self._table)
        if self._collision_notice:
            logger.warning("%s", self._collision_notice)
        self._exports = module_exports(set(self._by_global_name))
        if self._store is not None:
            record = await self._store.open_session(self._session_id)
            self._stored = dict(record.values)
            self._stored_bytes = sum(_stored_size(key, text) for key, text in self._stored.items())
            self._stored_json = None
            self._store_work.spawn(self._renew_leases(), name="codemode-leases")
            self._store_work.spawn(self._write_in_background(), name="codemode-store-writes")
        if self._engine is None:
            from codemode import engines

            self._engine = engines.shared(self._isolation)
        bindings = [ToolBinding(name, description) for name, description in self._catalog.sandbox_bindings()]
        self._engine_session = await self._engine.open_session(SessionSetup(bindings, self._limits.heap_limit_bytes))

    async def _fail(self, error: BaseException) -> None:
        """FAILED: remember why, stop any cell, close what the start opened."""
        self._state, self._start_error = State.FAILED, error
        await asyncio.gather(*(self._terminate_quietly(cell) for cell in list(self._cells.values())))
        await self._release()

    async def _usable(self) -> bool:
        """Start if not started yet; False once closing (the model is told it is shutting down).

        Raises:
            UsageError: the start failed (now or earlier), naming why; the error is chained.
        """
        try:
            await self._open()
        except Exception:  # kept as the start error: raised below as a UsageError
            pass
        if self._state is State.FAILED:
            raise UsageError(use_refusal(self._state, "this CodeMode", self._start_error)) from self._start_error
        return self._state is State.OPEN

    async def aclose(self) -> None:
        """Terminate every cell (CPU-bound ones too), free isolates, close the tool sources (MCP
        servers stop); idempotent. After it, `exec` and `wait` tell the model the session is
        shutting down and `start()` raises `UsageError`."""
        if self._state is State.STARTING:
            await self._start_ended.wait()  # then close what the start opened
        if self._state in (State.CLOSING, State.CLOSED):
            return
        self._state = State.CLOSING
        self._keep_journals = self._store is not None
        cells = list(self._cells.values())
        await asyncio.gather(*(self._terminate_quietly(cell) for cell in cells))
        await self._release()
        self._tool_threads.close()
        self._state = State.CLOSED

    async def _release(self) -> None:
        """Close what a start opened: the engine session, then the tool sources."""
        engine_session, self._engine_session = self._engine_session, None
        if engine_session is not None:
            await engine_session.aclose()
        await self._tool_intake.aclose()
        self._store_work.cancel_all()
        if self._store is not None:
            try:
                await self._persist()
                await self._forget_cells()
                for cell_id, durable in self._durable.items():
                    if durable.journal.created:
                        await self._store.release_lease(self._session_id, cell_id, self._owner)
            finally:
                self._durable.clear()
                if self._owns_store and self._state is not State.STARTING:
                    await self._store.aclose()

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
        if not await self._usable():
            return ExecResult("rejected", None, error=SHUTTING_DOWN, error_kind="shutting_down")
        source = safe_text(source)  # a lone surrogate must not reach the engine (it ends a worker)
        refusal = self._refusal(source)
        if refusal is not None:
            return ExecResult("rejected", None, error=refusal, wall_time_s=loop.time() - started)
        try:
            request = parse_exec_source(source)
        except SourceError as exc:  # quotes pragma JSON, whose escapes may decode to lone surrogates
            return ExecResult("rejected", None, error=safe_text(str(exc)), wall_time_s=loop.time() - started)
        defaults = self._defaults
        requested_yield = _first(request.yield_time_ms, yield_time_ms, defaults.exec_yield_time_ms)
        max_tokens = _first(request.max_output_tokens, max_output_tokens, defaults.max_output_tokens)
        code = request.code
        if self._store is not None:
            try:
                cell_id = str(await self._next_stored_cell_id())
            except Exception as exc:
                logger.warning("codemode: the store could not give a cell id", exc_info=True)
                return ExecResult("rejected", None, error=STORE_UNAVAILABLE.format(error=exc),
                                  wall_time_s=loop.time() - started)
        else:
            cell_id = str(next(self._cell_ids))
        if not parses_as_javascript(code):  # TypeScript (or a syntax error, which V8 reports)
            assert self._engine_session is not None
            try:
                code = await self._engine_session.strip_types(code)  # where the engine runs V8
            except EngineError as exc:
                return ExecResult("failed", cell_id, error=str(exc), wall_time_s=loop.time() - started,
                                  max_output_tokens=max_tokens)
            if not await self._usable():  # closed while the types were stripped
                return ExecResult("rejected", None, error=SHUTTING_DOWN, error_kind="shutting_down")
        try:
            rewritten = rewrite_modules(code, self._exports)
        except ImportError_ as exc:
            return ExecResult("failed", cell_id, error=str(exc), wall_time_s=loop.time() - started,
                              max_output_tokens=max_tokens)
        cell = self._new_cell(cell_id)
        assert self._engine_session is not None
        program = CellProgram(
            rewritten.code,
            rewritten.hoisted,
            stored_json=self._stored_snapshot(),
            store_budget_bytes=max(0, self._limits.max_stored_bytes - self._stored_bytes),
            store_limit_error=store_limit_error(self._limits.max_stored_bytes),
        )
        if self._journaled:
            journal = CellJournal(program, new_random_seed(), self._limits.max_journal_bytes)
            if self._store is not None:
                journal.place = JournalPlace(self._store, self._session_id, cell_id, self._owner, LEASE_S)
            self._durable_cell(cell, journal).start_live()
        else:
            cell.attach(self._engine_session.start(program, cell.on_event))
        observation = await cell.observe(effective_yield_time_ms(requested_yield, defaults.max_yield_time_ms))
        return await self._observed(cell, observation, started, max_tokens)

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
        cell_id = safe_text(str(cell_id))  # quoted back in refusals
        defaults = self._defaults
        budget = defaults.max_output_tokens if max_tokens is None else max_tokens

        def refused(error: str, kind: ErrorKind) -> ExecResult:
            return ExecResult("failed", str(cell_id), error=error, error_kind=kind,
                              wall_time_s=loop.time() - started, max_output_tokens=budget)

        if self._state is State.FAILED:
            raise UsageError(use_refusal(self._state, "this CodeMode", self._start_error)) from self._start_error
        if self._state in (State.CLOSING, State.CLOSED):
            return refused(SHUTTING_DOWN, "shutting_down")
        cell = self._cells.get(str(cell_id))
        if cell is None and self._store is not None and await self._usable():
            try:
                cell = await self._resume(str(cell_id))
            except Exception as exc:
                logger.warning("codemode: could not resume exec cell %s from the store", cell_id, exc_info=True)
                return refused(STORE_UNAVAILABLE.format(error=exc), "busy")
            if isinstance(cell, str):
                return refused(cell, "busy")
        if cell is None:
            return refused(f"exec cell {cell_id} not found", "not_found")
        try:
            if terminate:
                observation = await cell.terminate()
            else:
                requested = defaults.wait_yield_time_ms if yield_time_ms is None else yield_time_ms
                observation = await cell.observe(effective_yield_time_ms(requested, defaults.max_yield_time_ms))
        except CellBusyError as exc:
            return refused(str(exc), exc.kind)
        return await self._observed(cell, observation, started, budget)

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
        the last 100 closed cells, while the session's records stay within 16 MiB; `trace.py`).

        Raises:
            UsageError: the session knows no such cell.
        """
        cell = self._cells.get(str(cell_id))
        if cell is not None:
            return list(cell.trace.records)
        records = self._kept_records.closed_records(str(cell_id))
        if records is None:
            raise UsageError(f"exec cell {cell_id} not found (or its trace is no longer kept)")
        return list(records)

    def _live_cell(self, cell_id: str) -> Cell:
        cell = self._cells.get(str(cell_id))
        if cell is not None:
            return cell
        if str(cell_id) in self._kept_records:
            raise UsageError(
                f"exec cell {cell_id} has ended, so none of its calls can be approved or rejected: "
                "calls still waiting for approval when a cell ends are cancelled, never run"
            )
        raise UsageError(f"exec cell {cell_id} not found")

    # -- what the host can read --------------------------------------------------------------
    @property
    def limits(self) -> Limits:
        """What scripts of this session may use (`CodeMode(limits=...)`)."""
        return self._limits

    @property
    def defaults(self) -> Defaults:
        """What exec and wait use when the model does not say (`CodeMode(defaults=...)`)."""
        return self._defaults

    @property
    def isolation(self) -> Isolation:
        """Where scripts run: "process" or "in-process" (`CodeMode(isolation=...)`)."""
        return self._isolation

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
        if self._store is not None:
            self._pending_values[key] = None  # written with the next exec or wait
        return True

    def tool_specs(self, api: Api = "responses", *, code_mode_only: bool = True) -> list[dict[str, Any]]:
        """The `exec` and `wait` tool definitions, ready to send to the given model API.

        `code_mode_only=True` lists every nested tool in the exec description (the model reaches
        tools only through exec); False leaves them out, for hosts that also expose them directly.
        """
        self._require_started()
        description = self._catalog.exec_description(
            code_mode_only=code_mode_only,
            defaults=self._defaults,
            input_format=exec_input(api),
            notes=self._notes(),
        )
        return described_tool_specs(description, api, self._defaults)

    def exec_description(self, *, code_mode_only: bool = True) -> str:
        """The `exec` tool's description as the model reads it."""
        self._require_started()
        return self._catalog.exec_description(
            code_mode_only=code_mode_only,
            defaults=self._defaults,
            notes=self._notes(),
        )

    def _notes(self) -> list[str]:
        return [*self._tool_intake.notices, *([self._collision_notice] if self._collision_notice else [])]

    def _require_started(self) -> None:
        if self._state in (State.NEW, State.STARTING, State.FAILED):
            raise UsageError(use_refusal(self._state, "this CodeMode", self._start_error)) from self._start_error

    @property
    def session_id(self) -> str:
        """This session's id: the one given, or a random one. With a store, a new `CodeMode`
        given it (and the same store) resumes this session's cells and stored values."""
        return self._session_id

    @property
    def tools(self) -> Sequence[NestedTool]:
        """The nested tools as the script sees them (after `start`)."""
        return tuple(self._table)

    @property
    def running_cells(self) -> list[str]:
        """Ids of cells that have not been closed yet."""
        return list(self._cells)

    # -- durable cells ----------------------------------------------------------------------
    @property
    def _journaled(self) -> bool:
        """Whether cells keep a journal: with a store, and on an engine whose cells may die
        alone (a worker process), which are then replayed from memory."""
        assert self._engine_session is not None
        return self._store is not None or self._engine_session.may_lose_cells()

    def _new_cell(self, cell_id: str) -> Cell:
        cell = Cell(
            cell_id, self._hooks_for(cell_id), self._limits, approvals=self._approvals, spans=self._spans,
            kept_records=self._kept_records,
        )
        self._cells[cell_id] = cell
        if self._limits.cell_time_limit_ms is not None:
            limit_ms = self._limits.cell_time_limit_ms
            cell.start_time_limit(limit_ms / 1000, time_limit_error(limit_ms))
        return cell

    def _durable_cell(self, cell: Cell, journal: CellJournal) -> DurableCell:
        engine_session = self._engine_session
        assert engine_session is not None

        def retry_on_restart(tool_name: str) -> bool:
            entry = self._by_global_name.get(tool_name)
            return entry is not None and entry.tool.retry_on_restart

        durable = DurableCell(
            cell.id,
            journal,
            lambda program, sink, alone: engine_session.start(program, sink, alone=alone),
            cell.on_event,
            retry_on_restart,
            say_when_not_durable=self._store is not None,
            on_result=lambda: self._arm_next_call(journal),
        )
        self._durable[cell.id] = durable
        cell.attach(durable)
        return durable

    async def _resume(self, cell_id: str) -> Cell | str | None:
        """A cell of this session that another host ran, continued here by replay; None when
        the store has no such cell, or the refusal text when another host owns it now."""
        store = self._store
        assert store is not None
        if cell_id in self._cells_to_forget:  # it closed here; its journal is being dropped
            return None
        record = await store.read_cell(self._session_id, cell_id)
        if record is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LEASE_S + 1
        while not await store.acquire_lease(self._session_id, cell_id, self._owner, LEASE_S):
            if loop.time() >= deadline:  # its owner renews it: it is alive
                return RUNNING_ELSEWHERE.format(cell_id=cell_id)
            await asyncio.sleep(LEASE_S / 6)  # polling the store: the lease has no wake-up
        if cell_id in self._cells:  # resumed by a concurrent wait meanwhile
            return self._cells[cell_id]
        record = await store.read_cell(self._session_id, cell_id) or record
        journal = CellJournal.restore(record.header, record.records, self._limits.max_journal_bytes)
        journal.place = JournalPlace(store, self._session_id, cell_id, self._owner, LEASE_S)
        cell = self._new_cell(cell_id)
        self._durable_cell(cell, journal).resume()
        return cell

    async def _observed(self, cell: Cell, observation: Observation, started: float, max_tokens: int) -> ExecResult:
        """The result of an observation, once what it hands out is on record: the caller has
        seen this output (a replay will not hand it out again) and these stored values."""
        durable = self._durable.get(cell.id)
        if durable is not None:
            durable.journal.disarm()  # flushed below: no call is waiting for the arming
            durable.journal.delivered(
                durable.outputs_forwarded - cell.undelivered_outputs, durable.notifications_forwarded
            )
        if self._store is not None:
            try:
                await self._persist()
            except Exception:
                # The output is the caller's either way; unrecorded, a replay may hand it out again.
                logger.warning("codemode: the store could not record exec cell %s", cell.id, exc_info=True)
        return self._result(cell.id, observation, started, max_tokens)

    async def _persist(self) -> None:
        """Write what is pending to the store: journals and stored values."""
        store = self._store
        assert store is not None
        for durable in list(self._durable.values()):
            await durable.journal.flush()
        if self._pending_values:
            values, self._pending_values = self._pending_values, {}
            try:
                await store.put_values(self._session_id, values)
            except BaseException:
                self._pending_values = values | self._pending_values  # written with the next one
                raise

    def _arm_next_call(self, journal: CellJournal) -> None:
        """After a call's result went to the script: its next call on record ahead of it, the
        store written while the isolate works (`CellJournal.arm`); withdrawn if no call comes."""
        if not journal.arm():
            return
        self._flush_in_background(journal)
        if journal not in self._disarm_checks:
            self._disarm_checks.add(journal)
            self._check_disarm_later(journal)

    def _check_disarm_later(self, journal: CellJournal) -> None:
        asyncio.get_running_loop().call_later(DISARM_AFTER_S, self._disarm_if_unused, journal, journal.armed)

    def _disarm_if_unused(self, journal: CellJournal, armed: int) -> None:
        """Withdraw an arming that is still unused `DISARM_AFTER_S` after it was made (one check
        per cell at a time: a newer arming is checked again later)."""
        if self._state is not State.OPEN or not journal.durable:
            self._disarm_checks.discard(journal)
            return
        if journal.armed != armed and journal.armed > journal.highest_call:
            self._check_disarm_later(journal)
            return
        self._disarm_checks.discard(journal)
        if journal.disarm():
            self._flush_in_background(journal)

    def _flush_in_background(self, journal: CellJournal) -> None:
        self._to_flush.add(journal)
        self._store_work_wanted.set()

    async def _write_in_background(self) -> None:
        """The store writes nothing waits for, in one task for the session (woken per arming or
        closed cell, so a call costs no task of its own):
        * armings and their withdrawals (`_arm_next_call`); one not written leaves its call to
          flush before its tool runs, as always;
        * dropping the journals of cells that closed: deleting a journal costs about as much as
          writing it, and an exec's result need not wait for it. (A host that dies first leaves
          them; a new host replays such a cell to its end, handing out nothing the caller already
          had.) What is left when the session closes, `_release` drops."""
        while True:
            await self._store_work_wanted.wait()
            self._store_work_wanted.clear()
            while self._to_flush:
                try:
                    await self._to_flush.pop().flush()
                except Exception:
                    logger.warning("codemode: the store could not record an arming", exc_info=True)
            try:
                await self._forget_cells()
            except Exception:  # the store is unreachable now: the next wake-up tries again
                logger.warning("codemode: could not drop the journal of a closed cell", exc_info=True)

    async def _next_stored_cell_id(self) -> int:
        """A cell id from the store, which hands them out `CELL_IDS_AT_ONCE` at a time: a round
        trip per exec cost a tenth of a warm exec. Ids stay unique across replicas; a session
        that moves to another host goes on from that host's block (a gap, not a repeat)."""
        if not self._cell_id_block:
            assert self._store is not None
            first = await self._store.next_cell_id(self._session_id, CELL_IDS_AT_ONCE)
            self._cell_id_block.extend(range(first, first + CELL_IDS_AT_ONCE))  # concurrent execs: both blocks used
        return self._cell_id_block.popleft()

    async def _forget_cells(self) -> None:
        store = self._store
        assert store is not None
        while self._cells_to_forget:
            await store.drop_cell(self._session_id, self._cells_to_forget[-1])
            self._cells_to_forget.pop()

    async def _renew_leases(self) -> None:
        """Keep the leases of the cells running here; a cell whose lease another host took
        stops here (its journal stays: that host continues it)."""
        store = self._store
        assert store is not None
        while True:
            await asyncio.sleep(LEASE_S / 3)
            for cell_id, durable in list(self._durable.items()):
                if not durable.journal.durable or not durable.journal.created:
                    continue
                try:
                    kept = await store.acquire_lease(self._session_id, cell_id, self._owner, LEASE_S)
                except Exception:  # the store is unreachable now: try again next round
                    logger.warning("codemode: could not renew the lease of exec cell %s", cell_id, exc_info=True)
                    continue
                cell = self._cells.get(cell_id)
                if not kept and cell is not None:
                    self._durable.pop(cell_id, None)
                    self._handed_over.add(cell_id)
                    await self._terminate_quietly(cell)

    # -- internals --------------------------------------------------------------------------
    def _refusal(self, source: str) -> str | None:
        """Why an exec must not start a cell (source too large, too many open cells), if so."""
        limit = self._limits.max_source_bytes
        if len(source) * 3 > limit:  # 3 bytes per UTF-16 unit at most, so shorter ones always fit
            size = len(source.encode("utf-8", "surrogatepass"))
            if size > limit:
                return source_size_error(size, limit)
        if len(self._cells) >= self._limits.max_concurrent_cells:
            return concurrency_error(self._limits.max_concurrent_cells, list(self._cells))
        return None

    def _stored_snapshot(self) -> str:
        """Every stored value as one JSON object text, built once per change, not per exec."""
        if self._stored_json is None:
            self._stored_json = json.dumps(self._stored, ensure_ascii=False)
        return self._stored_json

    def _commit(self, writes: Mapping[str, str]) -> str | None:
        """Keep a finished cell's stored values, or none of them and say why.

        `store` enforces `max_stored_bytes` inside the isolate, but the host trusts nothing the
        script's realm sends: writes that would pass the limit anyway are refused here."""
        if not writes:
            return None
        total = self._stored_bytes
        for key, text in writes.items():
            previous = self._stored.get(key)
            total += _stored_size(key, text) - (0 if previous is None else _stored_size(key, previous))
        if total > self._limits.max_stored_bytes:
            return stored_writes_refused(self._limits.max_stored_bytes)
        for key, text in writes.items():
            previous = self._stored.get(key)
            if previous is not None:
                self._stored_bytes -= _stored_size(key, previous)
            self._stored[key] = text
            self._stored_bytes += _stored_size(key, text)
        self._stored_json = None
        if self._store is not None:
            self._pending_values.update(writes)  # written before the completion is reported
        return None

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
            durable = self._durable.get(cell_id)
            if durable is not None:
                try:  # the call is on record before it can have an effect
                    await durable.journal.flush_before_call(int(call.call_id))
                except Exception as exc:
                    logger.warning("codemode: the store could not record a call of exec cell %s", cell_id, exc_info=True)
                    raise ToolCallFailed(STORE_FAILED_BEFORE_CALL.format(tool=call.tool_name, error=exc)) from None
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
                self._kept_records.close(cell.trace)
            if self._keep_journals:
                return  # closing with a store: the journal stays, for a host that resumes the cell
            durable = self._durable.pop(cell_id, None)
            if durable is not None and durable.journal.created and cell_id not in self._handed_over:
                self._cells_to_forget.append(cell_id)
                self._store_work_wanted.set()

        return CellHooks(run_tool=run_tool, notify=notify, commit=self._commit, closed=closed)


def _collision_notice(tools: Sequence[Tool], table: Sequence[NestedTool]) -> str | None:
    """Which tools lost their script name to an earlier tool (e.g. servers `a-b` and `a_b`)."""
    lost: list[str] = []
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
