"""The replay driver (`_session/durable.py`) with a scripted engine whose cells may die alone:
what a session hands a replayed cell, in which order, and what the model sees (issue 22 points
1-3). Real isolates replaying real scripts: test_worker_death.py and test_host_restart.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import pytest

from codemode import CodeMode, ExecResult, Limits, Tool
from codemode._engine.base import ClockRead, ResolvedCalls, TimerFired
from codemode._protocol.types import TextItem
from codemode.testing import FakeCell, FakeEngine

T = TypeVar("T")
DIED = "The JavaScript engine process running this script stopped: it was killed."


async def within(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, 30)


def texts(result: ExecResult) -> list[str]:
    return [item.text for item in result.items if isinstance(item, TextItem)]


async def add(args: dict[str, Any]) -> int:
    return args["a"] + args["b"]


class Release:
    """A tool that returns once the test lets it."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.started = asyncio.Event()
        self.runs = 0

    async def __call__(self, args: dict[str, Any]) -> str:
        self.runs += 1
        self.started.set()
        await self.go.wait()
        return "released"


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(may_lose_cells=True)


@pytest.fixture
def release() -> Release:
    return Release()


@pytest.fixture
async def cm(engine: FakeEngine, release: Release) -> AsyncIterator[CodeMode]:
    tools = [Tool("add", "Adds.", add), Tool("hold", "Returns when released.", release)]
    async with CodeMode(tools=tools, engine=engine) as session:
        yield session


async def run_until_death(cm: CodeMode, engine: FakeEngine) -> tuple[asyncio.Task[ExecResult], FakeCell]:
    """An exec whose script prints, makes two calls settled in separate steps with a timer fire and
    a clock read between them, and waits in `hold` when its worker dies."""
    run = asyncio.ensure_future(cm.exec("script", yield_time_ms=600_000))
    cell = await within(engine.next_cell())
    assert cell.program.determinism is not None and not cell.program.determinism.replaying
    cell.emit_text("a")
    first = cell.call_tool("add", '{"a":1,"b":2}')
    assert await within(cell.resolution(first)) == (True, "3")
    cell.journal(ResolvedCalls((first,)), TimerFired(4), ClockRead(1234.5))
    second = cell.call_tool("add", '{"a":3,"b":4}')
    await within(cell.resolution(second))
    cell.journal(ResolvedCalls((second,)))
    cell.emit_text("b")
    cell.call_tool("hold", "{}")
    return run, cell


async def died_and_replayed(
    cm: CodeMode, engine: FakeEngine, release: Release, error: str = DIED
) -> tuple[asyncio.Task[ExecResult], FakeCell, FakeCell]:
    """`run_until_death`, the worker dies while `hold` runs; the exec, its first and its replayed cell."""
    run, first = await run_until_death(cm, engine)
    await within(release.started.wait())
    first.die(error)
    return run, first, await within(engine.next_cell())


async def replay_as_before(cell: FakeCell) -> None:
    """The replayed script does what the first did (until `hold`)."""
    cell.emit_text("a")
    cell.call_tool("add", '{"a":1,"b":2}')
    cell.call_tool("add", '{"a":3,"b":4}')
    cell.emit_text("b")
    cell.call_tool("hold", "{}")


async def test_a_cell_whose_worker_died_is_replayed_alone_and_completes(
    cm: CodeMode, engine: FakeEngine, release: Release
) -> None:
    run, first, replay = await died_and_replayed(cm, engine, release)
    assert replay.alone
    determinism = replay.program.determinism
    assert determinism is not None and determinism.replaying
    assert determinism.random_seed == first.program.determinism.random_seed  # type: ignore[union-attr]
    assert determinism.clock == (ClockRead(1234.5),)
    assert replay.program.code == first.program.code
    await replay_as_before(replay)
    # The recorded steps, in their order, each once the calls in it were made again; then live.
    assert replay.commands == ["resolve_together 1", "fire_timer 4", "resolve_together 2", "go_live"]
    assert replay.resolved == {1: (True, "3"), 2: (True, "7")}
    release.go.set()  # the call still running here ends: its result goes to the replay
    assert await within(replay.resolution(3)) == (True, '"released"')
    replay.emit_text("c")
    replay.finish()
    result = await within(run)
    assert (result.status, texts(result)) == ("completed", ["a", "b", "c"])  # nothing twice
    assert release.runs == 1  # not run again
    assert [record.tool_name for record in cm.tool_calls(result.cell_id or "")] == ["add", "add", "hold"]


async def test_a_replay_that_makes_another_call_fails_saying_where(
    cm: CodeMode, engine: FakeEngine, release: Release
) -> None:
    run, _first, replay = await died_and_replayed(cm, engine, release)
    replay.emit_text("a")
    replay.call_tool("add", '{"a":1,"b":2}')
    replay.call_tool("add", '{"a":3,"b":5}')  # not what the journal holds
    result = await within(run)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.startswith("replay diverged at call 2 (tools.add)"), result.error
    assert texts(result) == ["a", "b"]  # what the first script printed, once
    assert replay.released
    assert "resolve_together 2" not in replay.commands


async def test_a_replay_that_ends_early_fails(cm: CodeMode, engine: FakeEngine, release: Release) -> None:
    run, _first, replay = await died_and_replayed(cm, engine, release)
    replay.call_tool("add", '{"a":1,"b":2}')
    replay.finish()
    result = await within(run)
    assert result.status == "failed"
    assert result.error is not None and result.error.startswith("replay diverged: the script ended before")


async def test_a_cell_that_kills_its_worker_twice_fails_with_the_real_reason(
    cm: CodeMode, engine: FakeEngine, release: Release
) -> None:
    run, first = await run_until_death(cm, engine)
    await within(release.started.wait())
    first.die("first death")
    replay = await within(engine.next_cell())
    await replay_as_before(replay)
    replay.die(DIED)
    result = await within(run)
    assert (result.status, result.error, texts(result)) == ("failed", DIED, ["a", "b"])
    assert engine.started_cells.empty()  # not replayed a second time
    after = asyncio.ensure_future(cm.exec("next"))
    cell = await within(engine.next_cell())
    cell.emit_text("next")
    cell.finish()
    assert texts(await within(after)) == ["next"]


async def test_output_observed_before_the_death_is_not_handed_out_again(
    cm: CodeMode, engine: FakeEngine, release: Release
) -> None:
    run = asyncio.ensure_future(cm.exec("script", yield_time_ms=600_000))
    first = await within(engine.next_cell())
    first.emit_text("seen")
    first.yield_()
    yielded = await within(run)
    assert (yielded.status, texts(yielded)) == ("running", ["seen"])
    first.emit_text("buffered")
    first.notify("note")
    first.die(DIED)
    replay = await within(engine.next_cell())
    replay.emit_text("seen")
    replay.yield_()
    replay.emit_text("buffered")
    replay.notify("note")
    replay.emit_text("new")
    replay.finish()
    result = await within(cm.wait(yielded.cell_id or ""))
    assert (result.status, texts(result)) == ("completed", ["buffered", "new"])
    assert [n.text for n in cm.notifications] == ["note"]


async def test_a_cell_past_its_journal_cap_is_not_replayed(engine: FakeEngine) -> None:
    """Without a store the cell does not say so: its journal only guarded against a dying worker
    (with one it does: test_journal_cap.py)."""
    async with CodeMode(tools=[Tool("add", "Adds.", add)], engine=engine,
                        limits=Limits(max_journal_bytes=600)) as cm:
        run = asyncio.ensure_future(cm.exec("script", yield_time_ms=600_000))
        cell = await within(engine.next_cell())
        for n in range(10):
            call_id = cell.call_tool("add", json.dumps({"a": n, "b": 1}))
            await within(cell.resolution(call_id))
            cell.journal(ResolvedCalls((call_id,)))
        cell.die(DIED)
        result = await within(run)
        assert result.status == "failed" and result.error == DIED
        assert texts(result) == []
        assert engine.started_cells.empty()


async def test_without_a_store_an_engine_that_cannot_lose_cells_journals_nothing() -> None:
    engine = FakeEngine()
    async with CodeMode(engine=engine) as cm:
        run = asyncio.ensure_future(cm.exec("script"))
        cell = await within(engine.next_cell())
        assert cell.program.determinism is None
        cell.finish()
        await within(run)


async def test_a_cell_whose_worker_the_host_stopped_is_replayed_where_cells_run(
    cm: CodeMode, engine: FakeEngine, release: Release
) -> None:
    run, first = await run_until_death(cm, engine)
    await within(release.started.wait())
    first.die("stopped: another script could not be interrupted", suspect=False)
    replay = await within(engine.next_cell())
    assert not replay.alone  # not to blame: no worker of its own
    await replay_as_before(replay)
    replay.die("stopped again", suspect=False)
    again = await within(engine.next_cell())
    await replay_as_before(again)
    release.go.set()
    await within(again.resolution(3))
    again.finish()
    result = await within(run)
    assert (result.status, texts(result)) == ("completed", ["a", "b"])
