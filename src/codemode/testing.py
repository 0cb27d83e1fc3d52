"""A scripted engine for testing code that drives `CodeMode`, without V8 and without timing.

`FakeEngine` plays the part of the JavaScript engine the way httpx's `MockTransport` plays the
network: the session, its cells, tool calls, approvals and limits are the real ones, and the
test decides what "the script" does and when. Every interleaving of script events and host
commands is reached on purpose, so tests need events, never sleeps.

    import asyncio
    from codemode import CodeMode
    from codemode.testing import FakeEngine

    def add(a: int, b: int) -> int:
        "Add two integers."
        return a + b

    async def test_the_script_sees_the_tool_result() -> None:
        engine = FakeEngine()
        async with CodeMode(tools=[add], engine=engine) as cm:
            run = asyncio.ensure_future(cm.exec("text(await tools.add({a: 1, b: 2}))"))
            cell = await engine.next_cell()          # the cell the exec started
            call_id = cell.call_tool("add", '{"a": 1, "b": 2}')
            ok, payload = await cell.resolution(call_id)   # the session ran `add`
            cell.emit_text(payload)
            cell.finish()
            result = await run
        assert (ok, payload) == (True, "3") and result.status == "completed"

The source given to `exec` is not run: it only reaches `cell.program`. The script is what the
test calls on the `FakeCell` (`emit_text`, `call_tool`, `yield_`, `finish`, `memory_limit`,
`die`, `journal`, ...); the cell records what the session told the engine (`resolved`,
`resolved_together`, `fired_timers`, `went_live`, `terminate_calls`, `terminated`, `released`,
and `commands` in order), and whether it was started `alone`. `block_terminate()` makes `terminate` hang
until `unblock_terminate()`, so a test can act while the session waits for a script to stop.

Delivery is synchronous: each scripting method calls the session's event sink before it
returns, as the real engines do from event-loop callbacks. Call them from the event loop (a
test coroutine), never from another thread.

Misuse that would be an engine bug (an event after the script stopped) raises at once in the
test; misuse by the session (a second resolution of a call, a resolution of an unknown call) is
recorded in `protocol_errors`, since raising would land in a tool task nobody awaits.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from codemode._engine.base import (
    CellProgram,
    Engine,
    EngineDiedEvent,
    EngineEvent,
    EventSink,
    FinishedEvent,
    JournalEntry,
    JournalEvent,
    MemoryLimitEvent,
    NotifyEvent,
    OutputEvent,
    SessionSetup,
    ToolCallEvent,
    YieldEvent,
)
from codemode._protocol.types import OutputItem, TextItem
from codemode.errors import UsageError

__all__ = ["FakeCell", "FakeEngine", "FakeSession"]


class FakeCell:
    """One scripted script: the test plays it, the session commands it (an `EngineCell`)."""

    def __init__(self, program: CellProgram, on_event: EventSink, alone: bool = False) -> None:
        self.program = program
        self.alone = alone  # started with `alone=True` (a worker of its own, in the process engine)
        self._on_event = on_event
        self._call_ids = itertools.count(1)
        self._calls: dict[int, asyncio.Future[tuple[bool, str]]] = {}
        self._terminate_gate: asyncio.Event | None = None
        # What the session told the engine.
        # "resolve <id>", "resolve_together <id,id>", "fire_timer <id>", "go_live", "terminate",
        # "release", in order
        self.commands: list[str] = []
        self.resolved: dict[int, tuple[bool, str]] = {}
        self.resolved_together: list[tuple[tuple[int, bool, str], ...]] = []  # each batch, in order
        self.fired_timers: list[int] = []
        self.went_live = False
        self.terminate_calls = 0
        self.terminate_started = asyncio.Event()  # set when the first terminate begins
        self.terminated = False  # a terminate returned, with the script stopped
        self.released = False
        self.protocol_errors: list[str] = []
        # What the script did.
        self.finished = False
        self.died = False

    # -- the script (called by the test) ------------------------------------------------------
    @property
    def stopped(self) -> bool:
        """Whether the script can no longer produce events."""
        return self.finished or self.died or self.terminated

    def emit(self, event: EngineEvent) -> None:
        """Deliver any event now (the methods below are shorthands)."""
        if self.stopped:
            raise AssertionError(f"the script already stopped; cannot emit {event!r}")
        self._on_event(event)

    def emit_item(self, item: OutputItem) -> None:
        """The script outputs `item` (`text`, `image`, `audio`, `forward_output`)."""
        self.emit(OutputEvent(item))

    def emit_text(self, text: str) -> None:
        """The script calls `text(text)`."""
        self.emit(OutputEvent(TextItem(text)))

    def notify(self, text: str) -> None:
        """The script calls `notify(text)`."""
        self.emit(NotifyEvent(text))

    def call_tool(self, tool_name: str, arguments_json: str | None = "{}") -> int:
        """The script calls `tools.<tool_name>(...)`; returns the call id to await on."""
        call_id = next(self._call_ids)
        self._calls[call_id] = asyncio.get_running_loop().create_future()
        self.emit(ToolCallEvent(call_id, tool_name, arguments_json))
        return call_id

    async def resolution(self, call_id: int) -> tuple[bool, str]:
        """Wait until the session settles the call: (ok, payload)."""
        return await asyncio.shield(self._calls[call_id])

    def yield_(self) -> None:
        """The script calls `yield_control()`."""
        self.emit(YieldEvent())

    def finish(self, error: str | None = None, writes: Mapping[str, str] | None = None) -> None:
        """The top-level evaluation settles; `writes` maps keys to JSON texts, as `store` left them."""
        self.emit(FinishedEvent(error, dict(writes or {})))
        self.finished = True

    def journal(self, *entries: JournalEntry) -> None:
        """The isolate applied these non-deterministic inputs (a cell with a `Determinism`)."""
        self.emit(JournalEvent(entries))

    def memory_limit(self) -> None:
        """The isolate reached its heap limit (the script stays stuck until terminated)."""
        self.emit(MemoryLimitEvent())

    def die(self, error: str, *, suspect: bool = True) -> None:
        """The engine under the script stopped: nothing follows, commands become no-ops.
        `suspect=False`: the host stopped it for another reason than this script."""
        self.emit(EngineDiedEvent(error, suspect))
        self.died = True
        if self._terminate_gate is not None:
            self._terminate_gate.set()  # a terminate in progress is over: nothing left to stop

    def block_terminate(self) -> None:
        """Make `terminate` wait (the script keeps running) until `unblock_terminate`."""
        self._terminate_gate = asyncio.Event()

    def unblock_terminate(self) -> None:
        """Let a blocked `terminate` stop the script."""
        if self._terminate_gate is not None:
            self._terminate_gate.set()

    # -- EngineCell (called by the session) ---------------------------------------------------
    def resolve_tool_call(self, call_id: int, ok: bool, payload: str) -> None:
        self.commands.append(f"resolve {call_id}")
        future = self._calls.get(call_id)
        if future is None:
            self.protocol_errors.append(f"resolve_tool_call({call_id}): no such call")
        elif future.done():
            self.protocol_errors.append(f"resolve_tool_call({call_id}): resolved twice")
        else:
            self.resolved[call_id] = (ok, payload)
            future.set_result((ok, payload))

    def resolve_together(self, results: Sequence[tuple[int, bool, str]]) -> None:
        batch = tuple(results)
        self.commands.append(f"resolve_together {','.join(str(call_id) for call_id, _, _ in batch)}")
        self.resolved_together.append(batch)
        for call_id, ok, payload in batch:
            future = self._calls.get(call_id)
            if future is not None and not future.done():
                self.resolved[call_id] = (ok, payload)
                future.set_result((ok, payload))

    def fire_timer(self, timer_id: int) -> None:
        self.commands.append(f"fire_timer {timer_id}")
        self.fired_timers.append(timer_id)

    def go_live(self) -> None:
        self.commands.append("go_live")
        self.went_live = True

    async def terminate(self) -> None:
        self.commands.append("terminate")
        self.terminate_calls += 1
        if self.died or self.terminated:
            return
        self.terminate_started.set()
        if self._terminate_gate is not None:
            await self._terminate_gate.wait()
        if not self.died:
            self.terminated = True

    def release(self) -> None:
        self.commands.append("release")
        self.released = True


class FakeSession:
    """One session's handle on a `FakeEngine` (an `EngineSession`): the cells it started."""

    def __init__(self, engine: FakeEngine, setup: SessionSetup) -> None:
        self.engine = engine
        self.setup = setup
        self.cells: list[FakeCell] = []
        self.closed = False

    def start(self, program: CellProgram, on_event: EventSink, *, alone: bool = False) -> FakeCell:
        if self.closed:
            raise AssertionError("start() on a closed session")
        cell = FakeCell(program, on_event, alone)
        self.cells.append(cell)
        self.engine.started_cells.put_nowait(cell)
        return cell

    async def strip_types(self, code: str) -> str:
        self.engine.stripped.append(code)
        return self.engine.strip(code)

    async def ready(self, isolates: int | None = None) -> None:
        return None

    def may_lose_cells(self) -> bool:
        return self.engine.may_lose_cells

    def is_alive(self) -> bool:
        return not self.closed and not self.engine.closed

    async def aclose(self) -> None:
        self.closed = True


class FakeEngine(Engine):
    """An engine whose scripts the test plays (an `Engine`); pass it as `CodeMode(engine=...)`.

    A script that does not parse as JavaScript is stripped by `strip` (default: returned
    unchanged; raise `EngineError` from it to play a stripper that failed); `stripped` records
    what the sessions asked to strip, in order. `may_lose_cells=True` plays an engine whose
    cells may die alone (as on worker processes): sessions journal their cells and replay a cell
    that `die`s on a new one (`alone`), which the test then plays."""

    def __init__(self, strip: Callable[[str], str] | None = None, *, may_lose_cells: bool = False) -> None:
        self.strip: Callable[[str], str] = strip or (lambda code: code)
        self.may_lose_cells = may_lose_cells
        self.stripped: list[str] = []
        self.sessions: list[FakeSession] = []
        self.closed = False
        self.started_cells: asyncio.Queue[FakeCell] = asyncio.Queue()  # `next_cell` reads it

    async def open_session(self, setup: SessionSetup) -> FakeSession:
        if self.closed:
            raise UsageError("this FakeEngine is closed")
        session = FakeSession(self, setup)
        self.sessions.append(session)
        return session

    async def aclose(self) -> None:
        self.closed = True

    async def next_cell(self) -> FakeCell:
        """The next cell any session started (in start order)."""
        return await self.started_cells.get()


if TYPE_CHECKING:
    # A type checker confirms the fakes implement the engine protocols (checking `Engine`
    # checks `FakeSession` against `EngineSession`, and so `FakeCell` against `EngineCell`).
    _conforms: Engine = FakeEngine()
