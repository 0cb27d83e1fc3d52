"""Ways for a test to wait for something to happen instead of sleeping and hoping it did.

* `Checkpoint`: a nested tool the script calls at the point the test waits for (its output and
  every event before it have reached the host by then: engine events arrive in order).
* `SpiedEngine`: a real engine whose cells say when the session stops them, e.g. when a limit
  stops a cell nobody observes (the session shows nothing of it until the next observation).
* `wait_until`: a bounded liveness loop on a condition nothing signals (a process gone, a file).

Bounds are liveness bounds: only a hang takes that long, nothing here measures time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from codemode import Tool
from codemode._engine.base import CellProgram, Engine, EngineCell, EngineSession, EventSink, SessionSetup

LIVENESS_S = 30.0


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = LIVENESS_S) -> None:
    """Return once `condition()` holds; fail the test naming `what` if it does not within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting until {what}")
        await asyncio.sleep(0.01)


class Checkpoint:
    """A nested tool (`tools.checkpoint()` by default) that tells the test the script got there."""

    def __init__(self, name: str = "checkpoint") -> None:
        self.calls = 0
        self._reached = asyncio.Event()
        self.tool = Tool(name=name, description="Tells the test the script got here.", handler=self._handler)

    async def _handler(self, arguments: object) -> str:
        self.calls += 1
        self._reached.set()
        return "ok"

    async def reached(self, timeout_s: float = LIVENESS_S) -> None:
        """Wait until the script has called the tool at least once."""
        await asyncio.wait_for(self._reached.wait(), timeout_s)


class SpiedCell:
    """An engine cell that records when the session stops it (`EngineCell`)."""

    def __init__(self, cell: EngineCell) -> None:
        self._cell = cell
        self.stopping = asyncio.Event()  # the session began to stop the script
        self.stopped = asyncio.Event()  # ... and the engine confirmed it stopped

    def resolve_tool_call(self, call_id: int, ok: bool, payload: str) -> None:
        self._cell.resolve_tool_call(call_id, ok, payload)

    def resolve_together(self, results: Sequence[tuple[int, bool, str]]) -> None:
        self._cell.resolve_together(results)

    def fire_timer(self, timer_id: int) -> None:
        self._cell.fire_timer(timer_id)

    def go_live(self) -> None:
        self._cell.go_live()

    async def terminate(self) -> None:
        self.stopping.set()
        await self._cell.terminate()
        self.stopped.set()

    def release(self) -> None:
        self._cell.release()


class _SpiedSession:
    def __init__(self, session: EngineSession, engine: SpiedEngine) -> None:
        self._session = session
        self._engine = engine

    def start(self, program: CellProgram, on_event: EventSink, *, alone: bool = False) -> SpiedCell:
        cell = SpiedCell(self._session.start(program, on_event, alone=alone))
        self._engine.cells.append(cell)
        return cell

    async def strip_types(self, code: str) -> str:
        return await self._session.strip_types(code)

    async def ready(self, isolates: int | None = None) -> None:
        await self._session.ready(isolates)

    def may_lose_cells(self) -> bool:
        return self._session.may_lose_cells()

    def is_alive(self) -> bool:
        return self._session.is_alive()

    async def aclose(self) -> None:
        await self._session.aclose()


class SpiedEngine(Engine):
    """A real engine (`Engine`) whose cells, in start order, are `cells`: `CodeMode(engine=...)`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.cells: list[SpiedCell] = []

    async def open_session(self, setup: SessionSetup) -> _SpiedSession:
        return _SpiedSession(await self._engine.open_session(setup), self)

    async def aclose(self) -> None:
        """Leaves the wrapped engine running: it is shared, whoever made it closes it."""

    async def stopped(self, index: int = -1, timeout_s: float = LIVENESS_S) -> None:
        """Wait until the session stopped the cell `cells[index]` and the engine confirmed it."""
        await asyncio.wait_for(self.cells[index].stopped.wait(), timeout_s)
