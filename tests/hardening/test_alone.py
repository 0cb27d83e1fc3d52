"""Alone cells (`EngineSession.start(..., alone=True)`): a cell on an engine worker of its own.

The session layer replays a dead worker's cells alone, since any of them may have killed it: a
suspect that kills its worker again must take no other cell with it. These tests drive the
process engine through the engine interface on a private `ProcessEngine` each, and see which
worker runs which cell in the supervisor's bookkeeping (`WorkerPool.workers()`, `Worker.cells`).
Time bounds are liveness bounds (seconds), not performance targets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from tests.conftest import process_only
from tests.hardening._support import linux_only, pid_alive

from codemode import TextItem
from codemode._engine.base import (
    CellProgram,
    EngineDiedEvent,
    EngineEvent,
    FinishedEvent,
    OutputEvent,
    SessionSetup,
    ToolBinding,
    ToolCallEvent,
)
from codemode._engine.process import ProcessCell, ProcessSession
from codemode._engine.process._supervisor import Worker
from codemode.engines import ProcessEngine

pytestmark = [process_only, linux_only, pytest.mark.slow]

HELD = 'text("up"); text(await tools.hold())'  # runs until the test answers its call
FATAL = 'text("before"); "a".repeat(2**27 + 10).split("")'  # kills its worker (V8 runs out of memory)


class Cell:
    """A cell started through the engine interface, and the events it sent so far."""

    def __init__(self, session: ProcessSession, code: str, *, alone: bool = False) -> None:
        self.events: list[EngineEvent] = []
        self.engine_cell: ProcessCell = session.start(CellProgram(code, ""), self.events.append, alone=alone)

    @property
    def texts(self) -> list[str]:
        return [e.item.text for e in self.events if isinstance(e, OutputEvent) and isinstance(e.item, TextItem)]

    @property
    def end(self) -> FinishedEvent | EngineDiedEvent | None:
        return next((e for e in self.events if isinstance(e, FinishedEvent | EngineDiedEvent)), None)

    @property
    def call(self) -> ToolCallEvent | None:
        return next((e for e in self.events if isinstance(e, ToolCallEvent)), None)

    async def up(self, timeout: float = 60) -> None:
        """Wait until the script ran its first line."""
        assert await eventually(lambda: "up" in self.texts or self.end is not None, timeout), self.events
        assert self.end is None, self.events

    async def answer(self, text: str, timeout: float = 60) -> None:
        """Answer its held call with `text` once it made it; wait for the end and release it."""
        assert await eventually(lambda: self.call is not None or self.end is not None, timeout), self.events
        assert self.call is not None, self.events
        self.engine_cell.resolve_tool_call(self.call.call_id, True, f'"{text}"')
        await self.ended(timeout)
        self.engine_cell.release()

    async def ended(self, timeout: float = 60) -> FinishedEvent | EngineDiedEvent:
        assert await eventually(lambda: self.end is not None, timeout), self.events
        assert self.end is not None
        return self.end


async def eventually(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)
    return True


def worker_of(engine: ProcessEngine, cell: Cell) -> Worker | None:
    """The worker `cell` is placed on (None while it waits for one, or after it left)."""
    return next((w for w in engine.pool.workers() if cell.engine_cell.id in w.cells), None)


def alone_workers(engine: ProcessEngine) -> list[Worker]:
    """The alone workers alive (starting or running their cell), not yet killed."""
    return [w for w in engine.pool.workers() if w.alone and not w.doomed]


@pytest.fixture
async def engine_session() -> AsyncIterator[Callable[..., Awaitable[tuple[ProcessEngine, ProcessSession]]]]:
    """`await engine_session(**engine_kwargs)` -> a private engine and a session with the tool
    `hold`, ready; engines closed at teardown."""
    engines: list[ProcessEngine] = []

    async def make(**engine_kwargs: Any) -> tuple[ProcessEngine, ProcessSession]:
        engine = ProcessEngine(**{"isolate_pool_size": 4, **engine_kwargs})
        engines.append(engine)
        session = await engine.open_session(SessionSetup((ToolBinding("hold", "hold"),), 0))
        await asyncio.wait_for(session.ready(), 60)
        return engine, session

    yield make
    for engine in engines:
        await asyncio.wait_for(engine.aclose(), 30)


async def test_an_alone_cell_runs_on_a_worker_no_other_cell_shares(engine_session: Any) -> None:
    engine, session = await engine_session(workers=2)
    before = [Cell(session, HELD) for _ in range(3)]
    alone = Cell(session, HELD, alone=True)
    after = [Cell(session, HELD) for _ in range(3)]
    for cell in [*before, alone, *after]:
        await cell.up()
    worker = worker_of(engine, alone)
    assert worker is not None and worker.alone
    assert list(worker.cells) == [alone.engine_cell.id]
    normal_workers = {worker_of(engine, cell) for cell in [*before, *after]}
    assert worker not in normal_workers and all(w is not None and not w.alone for w in normal_workers)
    assert worker.pid not in {w.pid for w in normal_workers if w is not None}
    # It strips nothing either: another session's TypeScript goes to a worker in service.
    assert ": number" not in await asyncio.wait_for(session.strip_types("const n: number = 1"), 30)
    stripper = await asyncio.wait_for(asyncio.wrap_future(engine.pool.stripper()), 30)
    assert not stripper.alone
    # Its worker retires with it; the other cells run on.
    await alone.answer("alone done")
    assert alone.texts == ["up", "alone done"]
    # Dead, then dropped by the supervisor once its reader saw it end.
    assert await eventually(lambda: not pid_alive(worker.pid) and worker not in engine.pool.workers(), 10)
    for index, cell in enumerate([*before, *after]):
        await cell.answer(f"normal {index}")
        assert cell.texts == ["up", f"normal {index}"]
        assert cell.end == FinishedEvent(None)


async def test_an_alone_cell_that_kills_its_worker_takes_no_other_cell(engine_session: Any) -> None:
    """As when a dead worker's cells are replayed alone: the one that kills its worker again
    fails with the real reason, and the cells it shared a worker with (and everyone else's)
    complete."""
    engine, session = await engine_session(workers=2)  # (so two alone workers at once)
    normal = [Cell(session, HELD) for _ in range(4)]
    innocent = Cell(session, HELD, alone=True)
    for cell in [*normal, innocent]:
        await cell.up()
    pids_before = {w.pid for w in engine.pool.workers() if not w.alone}
    culprit = Cell(session, FATAL, alone=True)
    died = await asyncio.wait_for(culprit.ended(), 60)
    assert isinstance(died, EngineDiedEvent), culprit.events
    assert culprit.texts == ["before"]
    assert "JavaScript engine process running this script stopped: it ran out of memory" in died.error, died.error
    assert "Process less data at once" in died.error, died.error
    await innocent.answer("innocent done")
    assert innocent.end == FinishedEvent(None) and innocent.texts == ["up", "innocent done"]
    for index, cell in enumerate(normal):
        await cell.answer(f"normal {index}")
        assert cell.end == FinishedEvent(None) and cell.texts == ["up", f"normal {index}"]
    assert pids_before <= set(engine.worker_pids())  # no worker in service died
    later = Cell(session, 'text("later")')
    assert await asyncio.wait_for(later.ended(), 60) == FinishedEvent(None) and later.texts == ["later"]


async def test_alone_workers_are_bounded_and_retire_after_their_cell(engine_session: Any) -> None:
    engine, session = await engine_session(workers=2)
    most = 0

    async def watch() -> None:
        nonlocal most
        while True:
            most = max(most, len(alone_workers(engine)))
            await asyncio.sleep(0.01)

    watcher = asyncio.ensure_future(watch())
    try:
        burst = [Cell(session, HELD, alone=True) for _ in range(5)]
        await burst[0].up()
        await burst[1].up()
        assert len(alone_workers(engine)) == 2
        assert all(not cell.events and worker_of(engine, cell) is None for cell in burst[2:])  # they wait
        # Alone workers take nothing of normal capacity: a normal cell runs while the burst waits.
        normal = Cell(session, 'text("normal")')
        assert await asyncio.wait_for(normal.ended(), 60) == FinishedEvent(None)
        await burst[4].engine_cell.terminate()  # withdrawn while it waits: it never runs
        pids: list[int] = []
        for index, cell in enumerate(burst[:4]):
            await cell.up()
            worker = worker_of(engine, cell)
            assert worker is not None and worker.alone and list(worker.cells) == [cell.engine_cell.id]
            pids.append(worker.pid)
            await cell.answer(f"cell {index}")
            assert cell.end == FinishedEvent(None) and cell.texts == ["up", f"cell {index}"]
        assert len(set(pids)) == 4  # each on a worker of its own
        assert not burst[4].events
        assert await eventually(lambda: not alone_workers(engine) and not any(pid_alive(p) for p in pids), 10)
        assert await eventually(lambda: not any(w.alone for w in engine.pool.workers()), 10)
    finally:
        watcher.cancel()
    assert most <= 2


async def test_an_alone_cell_withdrawn_while_its_worker_starts_leaves_no_worker(engine_session: Any) -> None:
    engine, session = await engine_session(workers=2)
    withdrawn = Cell(session, HELD, alone=True)
    [starting] = alone_workers(engine)  # started for it at once
    await withdrawn.engine_cell.terminate()
    assert await eventually(lambda: not pid_alive(starting.pid) and starting not in engine.pool.workers(), 60)
    assert not withdrawn.events
    again = Cell(session, HELD, alone=True)  # the next one gets a worker of its own as before
    await again.answer("again")
    assert again.end == FinishedEvent(None) and again.texts == ["up", "again"]
