"""The cell logic (`CodeMode` + `Cell`) against a scripted engine, so that every interleaving of
script events and host commands is reached on purpose rather than by timing.

The engine is `codemode.testing.FakeEngine`: the test plays the script (`emit_text`, `call_tool`,
`yield_`, `finish`, `memory_limit`, `die`) and reads what the cell layer told the engine.
Only generous liveness bounds (`within`), no timing assertions.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import pytest

from codemode import CodeMode, ExecResult, Limits, to_model
from codemode._protocol.types import TextItem
from codemode._session.limits import memory_limit_error, time_limit_error
from codemode.testing import FakeCell, FakeEngine

T = TypeVar("T")

LIVENESS_S = 30.0  # only a hang takes this long; nothing here measures time
LONG_YIELD_MS = 600_000  # observers that must be woken by events, never by their deadline
ENGINE_DIED = (
    "The JavaScript engine stopped while running this script (its worker process exited). "
    "Nothing it stored was kept; run the script again."
)


async def within(awaitable: Awaitable[T]) -> T:
    """Await with a liveness bound, so a hang fails the test instead of stalling the suite."""
    async with asyncio.timeout(LIVENESS_S):
        return await awaitable


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def divide(a: int, b: int) -> float:
    """Divide a by b."""
    return a / b


class Gate:
    """An async tool that blocks until cancelled, and says when it started and was cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def wait_forever(self) -> str:
        """Never returns on its own."""
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return "unreachable"


def texts(result: ExecResult) -> list[str]:
    return [item.text for item in result.items if isinstance(item, TextItem)]


def model_text(result: ExecResult) -> str:
    """The model-facing text (`to_model(result)`: a list of content items), joined."""
    return "\n".join(str(part.get("text", "")) for part in to_model(result))


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
async def cm(engine: FakeEngine, gate: Gate) -> AsyncIterator[CodeMode]:
    session = CodeMode(tools=[add, divide, gate.wait_forever], engine=engine)
    async with session:
        yield session


async def start_exec(cm: CodeMode, engine: FakeEngine, source: str = "text('x')",
                     yield_time_ms: int = LONG_YIELD_MS) -> tuple[asyncio.Task[ExecResult], FakeCell]:
    """Start an exec in the background and return it with the fake cell it runs on."""
    run = asyncio.ensure_future(cm.exec(source, yield_time_ms=yield_time_ms))
    cell = await within(engine.next_cell())
    return run, cell


async def finish_quickly(cm: CodeMode, engine: FakeEngine, text: str = "ok") -> ExecResult:
    """One exec whose script prints `text` and completes: proves the session still works."""
    run, cell = await start_exec(cm, engine)
    cell.emit_text(text)
    cell.finish()
    return await within(run)


async def finish_quickly_with_store(cm: CodeMode, engine: FakeEngine, writes: dict[str, str]) -> None:
    """One exec whose script completes with `writes`."""
    run, cell = await start_exec(cm, engine)
    cell.finish(writes=writes)
    assert (await within(run)).status == "completed"


# -- output and yields --------------------------------------------------------------------------
async def test_output_before_a_yield_goes_to_exec_and_after_it_to_wait(cm: CodeMode, engine: FakeEngine) -> None:
    """A yield cuts the output: what came before is the exec's, what follows the next observer's."""
    run, cell = await start_exec(cm, engine)
    cell.emit_text("a")
    cell.yield_()
    cell.emit_text("b")  # printed before the exec observer even woke up: still after the yield
    first = await within(run)
    assert first.status == "running"
    assert texts(first) == ["a"]
    assert f"Script running with cell ID {first.cell_id}" in model_text(first)

    assert first.cell_id is not None
    waiting = asyncio.ensure_future(cm.wait(first.cell_id, yield_time_ms=LONG_YIELD_MS))
    await asyncio.sleep(0)
    cell.emit_text("c")
    cell.finish()
    second = await within(waiting)
    assert second.status == "completed"
    assert texts(second) == ["b", "c"]
    assert "Script completed" in model_text(second)
    assert cell.released
    assert cm.running_cells == []


async def test_completion_delivers_all_output_and_releases_the_isolate(cm: CodeMode, engine: FakeEngine) -> None:
    """Without a yield, exec waits for completion and gets every item, in order."""
    run, cell = await start_exec(cm, engine)
    for text in ("1", "2", "3"):
        cell.emit_text(text)
    cell.finish()
    result = await within(run)
    assert (result.status, texts(result), result.error) == ("completed", ["1", "2", "3"], None)
    assert cell.commands == ["release"]
    assert cell.terminate_calls == 0


async def test_a_cell_without_events_yields_running_on_time(cm: CodeMode, engine: FakeEngine) -> None:
    """A script that never reports anything still gives the model an answer at the yield time."""
    run, cell = await start_exec(cm, engine, yield_time_ms=50)
    result = await within(run)
    assert (result.status, result.items, result.error) == ("running", (), None)
    assert result.cell_id is not None
    again = await within(cm.wait(result.cell_id, yield_time_ms=50))
    assert (again.status, again.items) == ("running", ())
    stopped = await within(cm.wait(result.cell_id, terminate=True))
    assert stopped.status == "terminated"
    assert cell.terminated


async def test_failed_completion_reports_the_script_error(cm: CodeMode, engine: FakeEngine) -> None:
    """The engine's error text is the model's `Script error`, after the output."""
    run, cell = await start_exec(cm, engine)
    cell.emit_text("before")
    cell.finish(error="TypeError: x is not a function")
    result = await within(run)
    assert (result.status, texts(result), result.error) == ("failed", ["before"], "TypeError: x is not a function")
    assert "Script error:\nTypeError: x is not a function" in model_text(result)


async def test_notifications_reach_the_session(cm: CodeMode, engine: FakeEngine) -> None:
    run, cell = await start_exec(cm, engine)
    cell.notify("half way")
    cell.finish()
    await within(run)
    assert [(n.cell_id, n.text) for n in cm.notifications] == [("1", "half way")]


# -- tool calls ---------------------------------------------------------------------------------
async def test_tool_calls_resolve_with_the_python_result(cm: CodeMode, engine: FakeEngine) -> None:
    """`tools.add({a, b})` runs the real Python tool; its JSON result settles the call."""
    run, cell = await start_exec(cm, engine)
    call_id = cell.call_tool("add", '{"a": 2, "b": 3}')
    assert await within(cell.resolution(call_id)) == (True, "5")
    cell.emit_text("5")
    cell.finish()
    result = await within(run)
    assert (result.status, texts(result)) == ("completed", ["5"])
    assert cell.protocol_errors == []
    assert [b.global_name for b in engine.sessions[0].setup.tools] == ["add", "divide", "wait_forever"]


async def test_concurrent_tool_calls_each_resolve_once(cm: CodeMode, engine: FakeEngine) -> None:
    run, cell = await start_exec(cm, engine)
    ids = [cell.call_tool("add", json.dumps({"a": i, "b": i})) for i in range(5)]
    results = await within(asyncio.gather(*(cell.resolution(i) for i in ids)))
    assert results == [(True, str(2 * i)) for i in range(5)]
    cell.finish()
    await within(run)
    assert cell.protocol_errors == []


async def test_a_tool_that_raises_rejects_with_its_message(cm: CodeMode, engine: FakeEngine) -> None:
    """The exception becomes the rejection message; the script goes on and may complete."""
    run, cell = await start_exec(cm, engine)
    call_id = cell.call_tool("divide", '{"a": 1, "b": 0}')
    assert await within(cell.resolution(call_id)) == (False, "division by zero")
    unknown = cell.call_tool("nope", "{}")
    ok, message = await within(cell.resolution(unknown))
    assert not ok and "nope" in message
    cell.finish()
    result = await within(run)
    assert result.status == "completed"


async def test_invalid_tool_arguments_reject_without_running_the_tool(cm: CodeMode, engine: FakeEngine) -> None:
    run, cell = await start_exec(cm, engine)
    call_id = cell.call_tool("add", '{"a": "two"}')
    ok, message = await within(cell.resolution(call_id))
    assert not ok and message
    cell.finish()
    await within(run)


# -- stored values ------------------------------------------------------------------------------
async def test_completion_commits_stored_writes(cm: CodeMode, engine: FakeEngine) -> None:
    """Writes arrive with the completion, are committed, and the next cell starts with them."""
    run, cell = await start_exec(cm, engine)
    assert json.loads(cell.program.stored_json) == {}
    cell.finish(writes={"k": '{"v": 1}', "n": "2"})
    result = await within(run)
    assert result.status == "completed"
    assert cm.stored_values == {"k": {"v": 1}, "n": 2}

    run, cell = await start_exec(cm, engine)
    stored = {key: json.loads(text) for key, text in json.loads(cell.program.stored_json).items()}
    assert stored == {"k": {"v": 1}, "n": 2}
    cell.finish(writes={"n": "3"})
    await within(run)
    assert cm.stored_values == {"k": {"v": 1}, "n": 3}


async def test_completion_after_a_yield_commits_before_anybody_observes(cm: CodeMode, engine: FakeEngine) -> None:
    run, cell = await start_exec(cm, engine)
    cell.yield_()
    first = await within(run)
    assert first.status == "running"
    cell.finish(writes={"done": "true"})
    assert cm.stored_values == {"done": True}
    assert first.cell_id is not None
    second = await within(cm.wait(first.cell_id))
    assert second.status == "completed"


# -- terminate ----------------------------------------------------------------------------------
async def test_terminate_with_a_pending_tool_call_cancels_the_tool_and_keeps_output(
    cm: CodeMode, engine: FakeEngine, gate: Gate
) -> None:
    run, cell = await start_exec(cm, engine)
    cell.emit_text("before")
    cell.yield_()
    first = await within(run)
    assert (first.status, texts(first)) == ("running", ["before"])

    cell.emit_text("after")
    call_id = cell.call_tool("wait_forever", "{}")
    await within(gate.started.wait())
    assert first.cell_id is not None
    stopped = await within(cm.wait(first.cell_id, terminate=True))
    assert (stopped.status, texts(stopped), stopped.error) == ("terminated", ["after"], None)
    assert "Script terminated" in model_text(stopped)
    await within(gate.cancelled.wait())
    assert call_id not in cell.resolved  # the script is gone: nobody to answer
    assert cell.terminated and cell.terminate_calls == 1
    assert cm.running_cells == []
    assert cm.stored_values == {}
    assert (await finish_quickly(cm, engine)).status == "completed"


async def test_terminate_cancels_tools_first_and_keeps_output_until_the_isolate_stops(
    cm: CodeMode, engine: FakeEngine, gate: Gate
) -> None:
    """Ordering: tool tasks are cancelled at once; output the script makes while the engine is
    still stopping it belongs to the terminate result; a second terminate is refused meanwhile."""
    run, cell = await start_exec(cm, engine)
    cell.yield_()
    first = await within(run)
    assert first.cell_id is not None
    cell.call_tool("wait_forever", "{}")
    await within(gate.started.wait())

    cell.block_terminate()
    stopping = asyncio.ensure_future(cm.wait(first.cell_id, terminate=True))
    await within(cell.terminate_started.wait())
    await within(gate.cancelled.wait())
    assert not stopping.done()
    cell.emit_text("last words")
    second = await within(cm.wait(first.cell_id, terminate=True))
    assert second.status == "failed" and second.error is not None and "terminat" in second.error

    cell.unblock_terminate()
    stopped = await within(stopping)
    assert (stopped.status, texts(stopped)) == ("terminated", ["last words"])
    assert cell.terminate_calls == 1
    assert cell.resolved == {}


async def test_completion_before_terminate_wins(cm: CodeMode, engine: FakeEngine) -> None:
    """A cell that completed while nobody watched reports its completion, commits, and is not stopped."""
    run, cell = await start_exec(cm, engine)
    cell.yield_()
    first = await within(run)
    cell.emit_text("done")
    cell.finish(writes={"x": "1"})
    assert first.cell_id is not None
    result = await within(cm.wait(first.cell_id, terminate=True))
    assert (result.status, texts(result)) == ("completed", ["done"])
    assert cm.stored_values == {"x": 1}
    assert cell.terminate_calls == 0


async def test_close_terminates_running_cells(engine: FakeEngine) -> None:
    cm = CodeMode(tools=[add], engine=engine)
    async with cm:
        run, cell = await start_exec(cm, engine)
        cell.yield_()
        assert (await within(run)).status == "running"
    assert cell.terminated
    assert engine.sessions[0].closed


# -- memory limit -------------------------------------------------------------------------------
async def test_memory_limit_fails_the_cell_and_keeps_output(cm: CodeMode, engine: FakeEngine) -> None:
    """The engine pushes the event; the cell stops the script and fails with the limit's text."""
    run, cell = await start_exec(cm, engine)
    cell.emit_text("partial")
    cell.memory_limit()
    result = await within(run)
    assert result.status == "failed"
    assert result.error == memory_limit_error(cm.limits.heap_limit_bytes)
    assert result.error is not None and "JavaScript memory limit reached" in result.error
    assert texts(result) == ["partial"]
    assert "JavaScript memory limit reached" in model_text(result)
    assert cell.terminated
    assert cm.running_cells == []
    assert cm.stored_values == {}
    assert (await finish_quickly(cm, engine, "still here")).status == "completed"


async def test_memory_limit_while_nobody_observes_is_reported_to_the_next_observer(
    cm: CodeMode, engine: FakeEngine, gate: Gate
) -> None:
    """A heap overflow after a yield (in a timer, after an await) is pushed, not polled for."""
    run, cell = await start_exec(cm, engine)
    cell.yield_()
    first = await within(run)
    assert first.cell_id is not None
    cell.emit_text("after the yield")
    cell.call_tool("wait_forever", "{}")
    await within(gate.started.wait())
    cell.memory_limit()
    await within(gate.cancelled.wait())
    second = await within(cm.wait(first.cell_id, yield_time_ms=LONG_YIELD_MS))
    assert second.status == "failed"
    assert second.error == memory_limit_error(cm.limits.heap_limit_bytes)
    assert texts(second) == ["after the yield"]
    assert cell.resolved == {}
    assert cell.terminated


async def test_memory_limit_waits_for_the_isolate_to_stop(cm: CodeMode, engine: FakeEngine) -> None:
    """The failure is reported once the script has really stopped, with everything it printed."""
    run, cell = await start_exec(cm, engine)
    cell.block_terminate()
    cell.emit_text("partial")
    cell.memory_limit()
    await within(cell.terminate_started.wait())
    assert not run.done()
    cell.emit_text("flushed while stopping")
    cell.unblock_terminate()
    result = await within(run)
    assert result.status == "failed"
    assert result.error == memory_limit_error(cm.limits.heap_limit_bytes)
    assert texts(result) == ["partial", "flushed while stopping"]


async def test_terminate_during_a_memory_limit_abort_reports_the_limit(cm: CodeMode, engine: FakeEngine) -> None:
    run, cell = await start_exec(cm, engine)
    cell.yield_()
    first = await within(run)
    assert first.cell_id is not None
    cell.block_terminate()
    cell.memory_limit()
    await within(cell.terminate_started.wait())
    stopping = asyncio.ensure_future(cm.wait(first.cell_id, terminate=True))
    await asyncio.sleep(0)
    cell.unblock_terminate()
    result = await within(stopping)
    assert result.status == "failed"
    assert result.error == memory_limit_error(cm.limits.heap_limit_bytes)
    assert cell.terminate_calls == 1


# -- the engine died ----------------------------------------------------------------------------
async def test_engine_died_fails_the_cell_with_its_error(cm: CodeMode, engine: FakeEngine, gate: Gate) -> None:
    """The error is the engine's text, unchanged; output is kept, nothing is committed, the
    pending tool is cancelled, and the next exec works."""
    await finish_quickly_with_store(cm, engine, {"kept": "1"})
    run, cell = await start_exec(cm, engine)
    cell.emit_text("x")
    cell.call_tool("wait_forever", "{}")
    await within(gate.started.wait())
    cell.die(ENGINE_DIED)
    result = await within(run)
    assert result.status == "failed"
    assert result.error == ENGINE_DIED
    assert texts(result) == ["x"]
    assert ENGINE_DIED in model_text(result)
    await within(gate.cancelled.wait())
    assert cell.resolved == {}
    assert cm.stored_values == {"kept": 1}
    assert cm.running_cells == []

    run, cell = await start_exec(cm, engine)
    assert json.loads(cell.program.stored_json) == {"kept": "1"}
    cell.emit_text("next")
    cell.finish()
    after = await within(run)
    assert (after.status, texts(after)) == ("completed", ["next"])


async def test_engine_died_while_nobody_observes_is_reported_to_the_next_observer(
    cm: CodeMode, engine: FakeEngine
) -> None:
    run, cell = await start_exec(cm, engine)
    cell.yield_()
    first = await within(run)
    assert first.cell_id is not None
    cell.emit_text("late")
    cell.die(ENGINE_DIED)
    second = await within(cm.wait(first.cell_id, yield_time_ms=LONG_YIELD_MS))
    assert (second.status, second.error, texts(second)) == ("failed", ENGINE_DIED, ["late"])


async def test_terminate_after_the_engine_died_returns_promptly(cm: CodeMode, engine: FakeEngine) -> None:
    """The death already ended the cell, so terminate reports it (a recorded end wins)."""
    run, cell = await start_exec(cm, engine)
    cell.yield_()
    first = await within(run)
    assert first.cell_id is not None
    cell.emit_text("x")
    cell.block_terminate()  # were the cell layer to wait for the dead engine, it would hang here
    cell.die(ENGINE_DIED)
    result = await within(cm.wait(first.cell_id, terminate=True))
    assert (result.status, result.error, texts(result)) == ("failed", ENGINE_DIED, ["x"])
    assert cm.running_cells == []
    assert (await finish_quickly(cm, engine)).status == "completed"


async def test_engine_dying_during_terminate_ends_the_terminate(cm: CodeMode, engine: FakeEngine) -> None:
    """The terminate began first, so it wins; it must return once the engine is gone."""
    run, cell = await start_exec(cm, engine)
    cell.yield_()
    first = await within(run)
    assert first.cell_id is not None
    cell.emit_text("x")
    cell.block_terminate()
    stopping = asyncio.ensure_future(cm.wait(first.cell_id, terminate=True))
    await within(cell.terminate_started.wait())
    cell.die(ENGINE_DIED)
    result = await within(stopping)
    assert (result.status, texts(result)) == ("terminated", ["x"])
    assert cm.running_cells == []
    assert (await finish_quickly(cm, engine)).status == "completed"


# -- limits that stop a cell while host callbacks are pending --------------------------------------
async def test_time_limit_stops_a_silent_cell(engine: FakeEngine) -> None:
    """A script that never reports anything is stopped by the wall-clock budget and fails."""
    async with CodeMode(engine=engine, limits=Limits(cell_time_limit_ms=50)) as cm:
        run, cell = await start_exec(cm, engine)
        result = await within(run)
        assert (result.status, result.error) == ("failed", time_limit_error(50))
        assert cell.terminated
        assert (await finish_quickly(cm, engine)).status == "completed"


async def test_memory_limit_with_a_pending_async_notify_callback_fails_promptly(engine: FakeEngine) -> None:
    """A stopped cell's notifications are cancelled, and the observer must not wait for them
    (nor for its yield deadline) before it reports the failure."""
    never = asyncio.Event()

    async def on_notify(cell_id: str, text: str) -> None:
        await never.wait()

    async with CodeMode(engine=engine, on_notify=on_notify) as cm:
        run, cell = await start_exec(cm, engine)
        cell.emit_text("partial")
        cell.notify("working")
        await asyncio.sleep(0)  # the callback is now waiting
        cell.memory_limit()
        result = await within(run)
        assert result.status == "failed"
        assert result.error == memory_limit_error(cm.limits.heap_limit_bytes)
        assert texts(result) == ["partial"]


async def test_time_limit_with_a_pending_async_notify_callback_fails_promptly(engine: FakeEngine) -> None:
    never = asyncio.Event()

    async def on_notify(cell_id: str, text: str) -> None:
        await never.wait()

    async with CodeMode(engine=engine, on_notify=on_notify, limits=Limits(cell_time_limit_ms=50)) as cm:
        run, cell = await start_exec(cm, engine)
        cell.notify("working")
        result = await within(run)
        assert (result.status, result.error) == ("failed", time_limit_error(50))


async def test_memory_limit_then_finished_commits_nothing(cm: CodeMode, engine: FakeEngine) -> None:
    """The in-process engine pushes `MemoryLimitEvent` and then settles the evaluation with an
    error in the same callback; the limit must still win: a failure, nothing committed."""
    run, cell = await start_exec(cm, engine)
    cell.emit_text("partial")
    cell.memory_limit()
    cell.finish(error="RangeError: Array buffer allocation failed", writes={"k": "1"})
    result = await within(run)
    assert (result.status, texts(result)) == ("failed", ["partial"])
    assert result.error == memory_limit_error(cm.limits.heap_limit_bytes)
    assert cm.stored_values == {}


async def test_memory_limit_then_finished_with_a_pending_async_notify_callback_fails_promptly(
    engine: FakeEngine,
) -> None:
    """The same sequence with a host callback still running: the stopped cell must not wait for it."""
    never = asyncio.Event()

    async def on_notify(cell_id: str, text: str) -> None:
        await never.wait()

    async with CodeMode(engine=engine, on_notify=on_notify) as cm:
        run, cell = await start_exec(cm, engine)
        cell.notify("working")
        await asyncio.sleep(0)
        cell.memory_limit()
        cell.finish(error="RangeError: Array buffer allocation failed")
        result = await within(run)
        assert (result.status, result.error) == ("failed", memory_limit_error(cm.limits.heap_limit_bytes))
