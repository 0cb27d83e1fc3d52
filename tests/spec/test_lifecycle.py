"""Cells and sessions: yielding, waiting, terminating, shutting down (spec 3; section 9 cases 40-54).

Real engine, real time. Where the reference pins virtual times (case 50) the cases use small
real delays; timing assertions are only generous liveness bounds.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

import pytest

import codemode._source
from codemode import CodeMode, Defaults, Notification, SyncCodeMode, TextItem, Tool, UsageError, to_model
from codemode._output import model_items
from waiting import Checkpoint, wait_until

from ._support import Blocker, MakeCodeMode, header, model_texts, texts

FOREVER = "await new Promise(() => {});"
PY_MCP_SERVER = Path(__file__).parents[1] / "mcp_servers" / "py_server.py"


class Gate:
    """An async tool `gate` that returns only once the test opens it."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.entered = asyncio.Event()
        self.calls = 0

    async def handler(self, arguments: object) -> str:
        self.calls += 1
        self.entered.set()
        await self.opened.wait()
        return "open"

    def tool(self, name: str = "gate") -> Tool:
        return Tool(name=name, description="Waits for the test.", handler=self.handler)


# -- yield and wait (cases 40, 42, 43) -----------------------------------------------------------


async def test_case40_yield_control_then_wait(cm: CodeMode) -> None:
    first = await cm.exec('// @exec: {"yield_time_ms": 60000}\ntext("before"); yield_control(); text("after");')
    assert (first.status, first.cell_id, texts(first)) == ("running", "1", ["before"])
    assert to_model(first, "mcp")["isError"] is False  # the reference's success flag
    assert model_texts(first)[0].startswith("Script running with cell ID 1\nWall time ")
    assert model_texts(first)[0].endswith(" seconds\nOutput:\n")
    second = await cm.wait("1")
    assert (second.status, second.cell_id, texts(second)) == ("completed", "1", ["after"])
    assert header(second) == "Script completed"


async def test_yield_before_await_keeps_later_output_for_the_next_observation(cm: CodeMode) -> None:
    code = 'text("a"); yield_control(); text("b"); await new Promise((r) => setTimeout(r, 10)); text("c");'
    first = await cm.exec(code)
    assert (first.status, texts(first)) == ("running", ["a"])
    assert first.cell_id is not None
    final = await cm.wait(first.cell_id)
    assert (final.status, texts(final)) == ("completed", ["b", "c"])


async def test_yield_control_without_an_observer_has_no_effect(make_cm: MakeCodeMode) -> None:
    yielded = Checkpoint()
    cm = await make_cm(tools=[yielded.tool])
    code = (
        '// @exec: {"yield_time_ms": 30}\n'
        "await new Promise((r) => setTimeout(r, 150));\n"
        'yield_control(); tools.checkpoint(); text("x");\n'
        "await new Promise((r) => setTimeout(r, 150));\n"
        'text("y");'
    )
    first = await cm.exec(code)
    assert (first.status, texts(first)) == ("running", [])
    await yielded.reached()  # the yield happened, with nobody observing
    final = await cm.wait("1", yield_time_ms=5000)
    assert (final.status, texts(final)) == ("completed", ["x", "y"])


async def test_case42_two_cells_run_and_are_waited_independently(cm: CodeMode) -> None:
    def script(name: str, delay: int) -> str:
        return (
            f'// @exec: {{"yield_time_ms": 60000}}\ntext("{name} start"); yield_control();\n'
            f"await new Promise((r) => setTimeout(r, {delay}));\n"
            f'text("{name} done");'
        )

    a = await cm.exec(script("a", 150))
    b = await cm.exec(script("b", 50))
    assert (a.status, a.cell_id, texts(a)) == ("running", "1", ["a start"])
    assert (b.status, b.cell_id, texts(b)) == ("running", "2", ["b start"])
    assert sorted(cm.running_cells) == ["1", "2"]
    done_b, done_a = await asyncio.gather(cm.wait("2"), cm.wait("1"))
    assert (done_a.status, done_a.cell_id, texts(done_a)) == ("completed", "1", ["a done"])
    assert (done_b.status, done_b.cell_id, texts(done_b)) == ("completed", "2", ["b done"])
    assert cm.running_cells == []


async def test_case43_wait_on_unknown_cell(cm: CodeMode) -> None:
    result = await cm.wait("999999", yield_time_ms=1000)
    assert (result.status, result.cell_id, result.error_kind) == ("failed", "999999", "not_found")
    assert result.status == "failed"
    model = model_texts(result)
    assert len(model) == 2
    assert model[0].startswith("Script failed\nWall time ")
    assert model[1] == "Script error:\nexec cell 999999 not found"


async def test_wait_after_the_result_was_delivered_is_not_found(cm: CodeMode) -> None:
    done = await cm.exec('text("x");')
    assert done.status == "completed"
    for terminate in (False, True):
        again = await cm.wait("1", terminate=terminate)
        assert (again.status, again.error, again.items) == ("failed", "exec cell 1 not found", ())


async def test_yield_timer_then_repeated_waits(cm: CodeMode) -> None:
    code = (
        '// @exec: {"yield_time_ms": 20}\n'
        "for (let i = 0; i < 3; i++) {\n"
        "  text(`tick ${i}`); await new Promise((r) => setTimeout(r, 120));\n"
        "}\n"
        'text("end");'
    )
    seen: list[str] = []
    result = await cm.exec(code)
    assert result.status == "running"
    seen += texts(result)
    observations = 1
    while result.status == "running":
        result = await cm.wait("1", yield_time_ms=60)
        assert result.cell_id == "1"
        seen += texts(result)
        observations += 1
        assert observations < 200
    assert result.status == "completed"
    assert seen == ["tick 0", "tick 1", "tick 2", "end"]  # nothing lost, nothing repeated
    assert observations >= 3


async def test_completion_is_buffered_until_observed(cm: CodeMode) -> None:
    first = await cm.exec(
        '// @exec: {"yield_time_ms": 0}\nawait new Promise((r) => setTimeout(r, 20)); text("done"); store("done", true);'
    )
    assert first.status == "running"
    await wait_until(lambda: cm.stored_values == {"done": True}, "the cell completed (its store is committed)")
    assert cm.running_cells == ["1"]  # finished, not yet observed
    started = time.monotonic()
    final = await cm.wait("1", yield_time_ms=60_000)
    assert time.monotonic() - started < 5
    assert (final.status, texts(final)) == ("completed", ["done"])
    assert cm.running_cells == []


async def test_failed_cell_result_after_yield(cm: CodeMode) -> None:
    first = await cm.exec('text("a"); yield_control(); await null; text("b"); throw new Error("late");')
    assert (first.status, texts(first)) == ("running", ["a"])
    final = await cm.wait("1")
    assert (final.status, texts(final)) == ("failed", ["b"])
    assert final.error is not None and final.error.startswith("Error: late\n    at exec_main.mjs:1:")


async def test_cancelled_observer_loses_no_output(make_cm: MakeCodeMode) -> None:
    gate = Gate()
    session = await make_cm(tools=[gate.tool()])
    first = await session.exec('// @exec: {"yield_time_ms": 0}\ntext("a"); await tools.gate(); text("b");')
    assert (first.status, texts(first)) == ("running", [])
    await asyncio.wait_for(gate.entered.wait(), 30)  # "a" was written before the call
    observer = asyncio.create_task(session.wait("1", yield_time_ms=60_000))
    await asyncio.sleep(0)  # the observer starts observing
    busy = await session.wait("1", yield_time_ms=0)
    assert busy.error == "exec cell 1 already has an active observer"
    observer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await observer
    gate.opened.set()
    final = await session.wait("1", yield_time_ms=5000)
    assert (final.status, texts(final)) == ("completed", ["a", "b"])


# -- terminate (cases 41, 44-47) -----------------------------------------------------------------


async def test_case41_terminate_a_busy_loop(cm: CodeMode) -> None:
    async with asyncio.timeout(5):
        first = await cm.exec('// @exec: {"yield_time_ms": 1000}\ntext("phase 1");\nwhile (true) {}')
    assert first.status == "running"
    assert model_texts(first)[0].startswith("Script running with cell ID 1\n")
    assert model_texts(first)[1:] == ["phase 1"]
    async with asyncio.timeout(5):
        stopped = await cm.wait("1", terminate=True)
    assert stopped.status == "terminated" and to_model(stopped, "mcp")["isError"] is False
    model = model_texts(stopped)
    assert len(model) == 1 and model[0].startswith("Script terminated\nWall time ")
    assert cm.running_cells == []
    assert (await cm.wait("1")).error == "exec cell 1 not found"


async def test_terminate_a_loop_running_after_an_await(cm: CodeMode) -> None:
    first = await cm.exec('// @exec: {"yield_time_ms": 50}\nawait null; await new Promise((r) => setTimeout(r, 1));\nwhile (true) {}')
    assert first.status == "running"
    async with asyncio.timeout(5):
        stopped = await cm.wait("1", terminate=True)
    assert (stopped.status, stopped.items) == ("terminated", ())


async def test_terminate_ignores_yield_time(cm: CodeMode) -> None:
    first = await cm.exec(f'// @exec: {{"yield_time_ms": 10}}\n{FOREVER}')
    assert first.status == "running"
    async with asyncio.timeout(5):
        stopped = await cm.wait("1", yield_time_ms=600_000, terminate=True)
    assert stopped.status == "terminated"


async def test_case44_completion_wins_over_terminate(cm: CodeMode) -> None:
    first = await cm.exec('// @exec: {"yield_time_ms": 1}\nyield_control(); store("finished", true); text("done");')
    assert first.status == "running"
    # The store is committed at completion, before anybody observes the result.
    async with asyncio.timeout(5):
        while True:
            probe = await cm.exec('text(String(load("finished")));')
            if texts(probe) == ["true"]:
                break
            await asyncio.sleep(0.01)
    result = await cm.wait("1", terminate=True)
    assert (result.status, texts(result), result.error) == ("completed", ["done"], None)
    assert header(result) == "Script completed"


async def test_case45_terminate_cancels_a_pending_notification(make_cm: MakeCodeMode) -> None:
    blocking = Blocker()
    session = await make_cm(on_notify=blocking.block)
    first = await session.exec(f'// @exec: {{"yield_time_ms": 100}}\nnotify("pending"); {FOREVER}')
    assert (first.status, texts(first)) == ("running", [])
    await asyncio.wait_for(blocking.started.wait(), 5)
    stopped = await session.wait("1", terminate=True)
    assert (stopped.status, stopped.items) == ("terminated", ())
    await asyncio.wait_for(blocking.cancelled.wait(), 5)
    assert session.running_cells == []
    assert (await session.wait("1")).error == "exec cell 1 not found"


async def test_case46_second_terminate_while_terminating(cm: CodeMode) -> None:
    # Running in its isolate (not still waiting for one, which a terminate stops at once).
    first = await cm.exec(f'text("in V8"); yield_control(); {FOREVER}', yield_time_ms=60_000)
    assert (first.status, texts(first)) == ("running", ["in V8"])
    one, two = await asyncio.gather(cm.wait("1", terminate=True), cm.wait("1", terminate=True))
    assert (one.status, one.items) == ("terminated", ())
    assert (two.status, two.error) == ("failed", "exec cell 1 is already terminating")
    assert [item.text for item in model_items(two) if isinstance(item, TextItem)] == [
        "exec cell 1 is already terminating"
    ]


async def test_case47_one_observer_at_a_time(cm: CodeMode) -> None:
    first = await cm.exec(f'// @exec: {{"yield_time_ms": 10}}\n{FOREVER}')
    assert first.status == "running"
    pending = asyncio.create_task(cm.wait("1", yield_time_ms=60_000))
    await asyncio.sleep(0)  # the first observer starts observing
    second = await cm.wait("1", yield_time_ms=60_000)
    assert (second.status, second.error) == ("failed", "exec cell 1 already has an active observer")
    assert model_items(second) == [TextItem("exec cell 1 already has an active observer")]
    assert (second.status, second.cell_id, second.error_kind) == ("failed", "1", "busy")
    assert not pending.done()
    stopped = await cm.wait("1", terminate=True)
    async with asyncio.timeout(5):
        waited = await pending
    assert (stopped.status, stopped.items) == ("terminated", ())
    assert (waited.status, waited.items) == ("terminated", ())


async def test_terminated_cell_commits_no_stored_values(cm: CodeMode) -> None:
    await cm.exec('store("a", 1);')
    first = await cm.exec(f'// @exec: {{"yield_time_ms": 1000}}\nstore("a", 2); store("b", 3); text(load("a")); {FOREVER}')
    assert (first.status, texts(first)) == ("running", ["2"])
    await cm.wait(first.cell_id or "", terminate=True)
    assert cm.stored_values == {"a": 1}


async def test_case53_queued_output_is_reported_by_terminate(make_cm: MakeCodeMode) -> None:
    written = Checkpoint()
    cm = await make_cm(tools=[written.tool])
    first = await cm.exec('// @exec: {"yield_time_ms": 0}\ntext("queued output"); tools.checkpoint();\nwhile (true) {}')
    assert (first.status, texts(first)) == ("running", [])
    await written.reached()  # the script started and wrote it
    stopped = await cm.wait("1", terminate=True)
    assert (stopped.status, texts(stopped)) == ("terminated", ["queued output"])


async def test_case54_terminate_is_not_starved_by_an_output_backlog(make_cm: MakeCodeMode) -> None:
    written = Checkpoint()
    cm = await make_cm(tools=[written.tool])
    code = (
        '// @exec: {"yield_time_ms": 0, "max_output_tokens": 16}\n'
        'for (let i = 0; i < 256; i++) text(`line ${i} ${"x".repeat(40)}`);\n'
        "tools.checkpoint(); while (true) {}"
    )
    first = await cm.exec(code)
    assert first.status == "running"
    assert len(model_items(first)) == 1
    await written.reached()  # the backlog is there
    async with asyncio.timeout(5):
        stopped = await cm.wait("1", terminate=True, max_tokens=16)
    assert header(stopped) == "Script terminated"
    body = model_texts(stopped)[1:]
    assert len(body) <= 1
    if body:
        assert body[0].startswith("Warning: truncated output (original token count: ")


async def test_case48_unawaited_tool_call_is_cancelled_when_the_cell_ends(make_cm: MakeCodeMode) -> None:
    blocking = Blocker()

    async def until_started(arguments: object) -> str:
        await blocking.started.wait()
        return "started"

    session = await make_cm(
        tools=[blocking.tool, Tool(name="until_started", description="Waits for block.", handler=until_started)]
    )
    async with asyncio.timeout(5):
        quick = await session.exec('tools.block({}); text("done");')
    assert (quick.status, texts(quick)) == ("completed", ["done"])
    async with asyncio.timeout(5):
        result = await session.exec('tools.block({}); await tools.until_started({}); text("done");')
    assert (result.status, texts(result)) == ("completed", ["done"])
    await asyncio.wait_for(blocking.cancelled.wait(), 5)


async def test_terminate_cancels_a_running_tool_call(make_cm: MakeCodeMode) -> None:
    blocking = Blocker()
    session = await make_cm(tools=[blocking.tool])
    first = await session.exec('// @exec: {"yield_time_ms": 10}\nawait tools.block({}); text("unreachable");')
    assert first.status == "running"
    await asyncio.wait_for(blocking.started.wait(), 5)
    stopped = await session.wait("1", terminate=True)
    assert (stopped.status, stopped.items) == ("terminated", ())
    await asyncio.wait_for(blocking.cancelled.wait(), 5)


# -- session shutdown (case 49) ------------------------------------------------------------------


async def test_case49_close_stops_a_busy_loop_quickly() -> None:
    session = CodeMode()
    await session.start()
    first = await session.exec('// @exec: {"yield_time_ms": 50}\nwhile (true) {}')
    assert (first.status, first.items) == ("running", ())
    started = time.monotonic()
    async with asyncio.timeout(5):
        await session.aclose()
    assert time.monotonic() - started < 1.0
    assert session.running_cells == []
    late = await session.exec('text("x");')
    assert (late.status, late.error, late.cell_id) == ("rejected", "code mode session is shutting down", None)
    assert model_items(late) == [TextItem("code mode session is shutting down")]
    assert late.error_kind == "shutting_down"
    waited = await session.wait("1")
    assert (waited.status, waited.error) == ("failed", "code mode session is shutting down")
    await session.aclose()  # idempotent


async def test_close_stops_many_cells_and_cancels_their_tools() -> None:
    blocking = Blocker()
    session = CodeMode(tools=[blocking.tool])
    async with session:
        for code in ("while (true) {}", "await tools.block({});", FOREVER, "await null; while (true) {}"):
            result = await session.exec(f'// @exec: {{"yield_time_ms": 30}}\n{code}')
            assert result.status == "running"
        assert len(session.running_cells) == 4
        await asyncio.wait_for(blocking.started.wait(), 30)
    assert session.running_cells == []
    assert blocking.cancellations == 1


@pytest.mark.slow
async def test_close_while_cells_wait_for_isolates() -> None:
    # More cells than the engine has prepared isolates: some are still waiting for one when the
    # session closes. Each exec still answers (no exception), and no script outlives close().
    session = CodeMode()
    await session.start()
    code = '// @exec: {"yield_time_ms": 60000}\nwhile (true) {}'
    execs = [asyncio.create_task(session.exec(code)) for _ in range(40)]
    await asyncio.sleep(0)
    async with asyncio.timeout(10):
        await session.aclose()
        results = await asyncio.gather(*execs)
    assert {r.status for r in results} == {"terminated"}
    cpu = time.process_time()
    await asyncio.sleep(0.5)
    assert time.process_time() - cpu < 0.3  # a leaked `while (true) {}` would burn ~0.5 s


async def test_cancelled_exec_observer_leaves_the_cell_running(make_cm: MakeCodeMode) -> None:
    started = asyncio.Event()

    async def signal(arguments: object) -> str:
        started.set()
        return "ok"

    session = await make_cm(tools=[Tool(name="signal", description="Signals.", handler=signal)])
    task = asyncio.create_task(
        session.exec('// @exec: {"yield_time_ms": 60000}\nawait tools.signal({}); await new Promise(() => {});')
    )
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The observer went away; the cell keeps running and can still be observed or stopped.
    assert session.running_cells == ["1"]
    stopped = await session.wait("1", terminate=True)
    assert stopped.status == "terminated"


async def test_exec_cancelled_at_once_leaves_its_cell_to_wait_on(cm: CodeMode) -> None:
    # Cancelled before the engine may even have started the script (it can be waiting for an
    # isolate or a worker): the cell still runs, and its output is not lost.
    task = asyncio.create_task(cm.exec("text(1);"))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cm.running_cells == ["1"]
    assert texts(await cm.wait("1")) == ["1"]
    assert cm.running_cells == []
    assert texts(await cm.exec("text(2);")) == ["2"]


@pytest.mark.integration
async def test_concurrent_first_execs_share_one_start() -> None:
    # Starting takes a while with an MCP server; a second exec meanwhile waits for the start.
    server = {"command": sys.executable, "args": [str(PY_MCP_SERVER)]}
    session = CodeMode(mcp_servers={"mcpServers": {"py": server}})
    try:
        first, second = await asyncio.gather(session.exec("text(typeof tools.mcp__py__add);"), session.exec("text(2);"))
        assert (first.status, texts(first)) == ("completed", ["function"])
        assert (second.status, texts(second)) == ("completed", ["2"])
    finally:
        await session.aclose()


@pytest.mark.integration
async def test_close_during_start_closes_what_started() -> None:
    server = {"command": sys.executable, "args": [str(PY_MCP_SERVER)]}
    session = CodeMode(mcp_servers={"mcpServers": {"py": server}})
    starting = asyncio.create_task(session.start())
    await asyncio.sleep(0)  # the start begins (the MCP server takes a while)
    await session.aclose()
    await starting
    assert (await session.exec("text(1);")).error == "code mode session is shutting down"


async def test_exec_after_close_without_start() -> None:
    session = CodeMode()
    await session.aclose()
    result = await session.exec("text(1)")
    assert (result.status, result.error) == ("rejected", "code mode session is shutting down")


# -- yield time caps and grace (cases 50, 51) ----------------------------------------------------


async def test_case50_grace_and_cap(make_cm: MakeCodeMode, monkeypatch: pytest.MonkeyPatch) -> None:
    # Real-time version of the virtual-time case: the grace threshold is scaled down so that a
    # requested 200 ms becomes 200 ms + 1 s, while a cap of 200 ms removes the grace.
    monkeypatch.setattr(codemode._source, "YIELD_GRACE_THRESHOLD_MS", 200)
    monkeypatch.setattr(codemode._source, "YIELD_GRACE_MS", 1000)

    async def slow(arguments: object) -> str:
        await asyncio.sleep(0.4)
        return "late"

    gate = Gate()
    tools = [Tool(name="slow", description="Sleeps.", handler=slow), gate.tool()]
    uncapped = await make_cm(tools=tools)
    graced = await uncapped.exec('// @exec: {"yield_time_ms": 200}\nawait tools.slow({}); text("done");')
    assert (graced.status, texts(graced)) == ("completed", ["done"])

    capped = await make_cm(tools=tools, defaults=Defaults(max_yield_time_ms=200))
    first = await capped.exec('// @exec: {"yield_time_ms": 200}\nawait tools.gate({}); text("done");')
    assert first.status == "running"
    assert 0.15 <= first.wall_time_s < 1.1
    again = await capped.wait("1", yield_time_ms=200)
    assert again.status == "running"
    assert 0.15 <= again.wall_time_s < 1.1
    gate.opened.set()
    final = await capped.wait("1", yield_time_ms=200)
    assert (final.status, texts(final)) == ("completed", ["done"])


async def test_case51_session_caps_are_independent(make_cm: MakeCodeMode) -> None:
    cap0 = await make_cm(defaults=Defaults(max_yield_time_ms=0))
    cap10 = await make_cm(defaults=Defaults(max_yield_time_ms=10))
    code = f'// @exec: {{"yield_time_ms": 60000}}\n{FOREVER}'
    started = time.monotonic()
    r0, r10 = await asyncio.gather(cap0.exec(code), cap10.exec(code))
    assert time.monotonic() - started < 5
    assert (r0.status, r0.cell_id) == ("running", "1")
    assert (r10.status, r10.cell_id) == ("running", "1")
    waited = await cap10.wait("1", yield_time_ms=60_000)
    assert waited.status == "running" and waited.wall_time_s < 5


async def test_yield_time_keyword_and_pragma_precedence(cm: CodeMode) -> None:
    keyword = await cm.exec(FOREVER, yield_time_ms=20)
    assert keyword.status == "running" and keyword.wall_time_s < 5
    pragma = await cm.exec(f'// @exec: {{"yield_time_ms": 20}}\n{FOREVER}', yield_time_ms=600_000)
    assert pragma.status == "running" and pragma.wall_time_s < 5


async def test_many_cells_at_once(cm: CodeMode) -> None:
    code = "await new Promise((r) => setTimeout(r, 30)); text('done');"
    results = await asyncio.gather(*(cm.exec(code) for _ in range(20)))
    assert sorted(int(r.cell_id or 0) for r in results) == list(range(1, 21))
    assert all((r.status, texts(r)) == ("completed", ["done"]) for r in results)
    assert cm.running_cells == []


async def test_default_yield_time_is_used(make_cm: MakeCodeMode) -> None:
    session = await make_cm(defaults=Defaults(exec_yield_time_ms=50, wait_yield_time_ms=50))
    first = await session.exec(FOREVER)
    assert first.status == "running" and first.wall_time_s < 5
    assert (await session.wait("1")).status == "running"


# -- stored values under concurrency (case 52) ----------------------------------------------------


async def test_case52_concurrent_stores_merge_by_key(make_cm: MakeCodeMode) -> None:
    gate = Gate()
    session = await make_cm(tools=[gate.tool()])
    await session.exec('store("a", 1); store("b", 2);')
    a = await session.exec('// @exec: {"yield_time_ms": 60000}\nstore("a", 3); yield_control(); await tools.gate({});')
    assert a.status == "running" and a.cell_id == "2"
    b = await session.exec('store("b", 4);')
    assert b.status == "completed"
    assert session.stored_values == {"a": 1, "b": 4}
    gate.opened.set()
    done = await session.wait("2")
    assert done.status == "completed"
    check = await session.exec('text(JSON.stringify({ a: load("a"), b: load("b") }));')
    assert texts(check) == ['{"a":3,"b":4}']


# -- cell ids ------------------------------------------------------------------------------------


async def test_cell_ids_count_up_and_rejected_input_creates_no_cell(cm: CodeMode) -> None:
    assert (await cm.exec("text(1)")).cell_id == "1"
    rejected = await cm.exec("   \n  ")
    assert rejected.cell_id is None and rejected.status == "rejected"
    assert rejected.error is not None and rejected.error.startswith("exec expects raw JavaScript source text (non-empty)")
    assert (await cm.exec("text(2)")).cell_id == "2"


async def test_nothing_survives_between_cells_but_stored_values(cm: CodeMode) -> None:
    await cm.exec("globalThis.leak = 1; var v = 2; Array.prototype.extra = 3; tools.added = 4;")
    result = await cm.exec(
        "text(JSON.stringify([typeof leak, typeof v, typeof [].extra, typeof tools.added]));"
    )
    assert texts(result) == ['["undefined","undefined","undefined","undefined"]']


# -- the blocking facade --------------------------------------------------------------------------


def test_sync_code_mode_without_an_event_loop() -> None:
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    with SyncCodeMode(tools=[add]) as session:
        result = session.exec("text(await tools.add({ a: 2, b: 3 }));")
        assert (result.status, texts(result)) == ("completed", ["5"])
        first = session.exec('// @exec: {"yield_time_ms": 60000}\ntext("a"); yield_control(); text("b");')
        assert (first.status, texts(first)) == ("running", ["a"])
        assert first.cell_id is not None
        final = session.wait(first.cell_id)
        assert (final.status, texts(final)) == ("completed", ["b"])
        busy = session.exec('// @exec: {"yield_time_ms": 20}\nwhile (true) {}')
        assert busy.status == "running"
        started = time.monotonic()
    assert time.monotonic() - started < 5
    with pytest.raises(UsageError, match="this SyncCodeMode was closed"):
        session.exec("text(1)")
    session.close()  # idempotent


def test_sync_code_mode_from_a_worker_thread() -> None:
    outcome: list[str] = []

    def run() -> None:
        with SyncCodeMode() as session:
            outcome.extend(texts(session.exec('text("from a thread");')))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert outcome == ["from a thread"]


# -- notify callbacks (spec 2.5) ------------------------------------------------------------------


async def test_completed_cell_waits_for_its_notifications(make_cm: MakeCodeMode) -> None:
    release = asyncio.Event()
    delivered: list[str] = []

    async def on_notify(cell_id: str, text: str) -> None:
        await release.wait()
        delivered.append(text)

    session = await make_cm(on_notify=on_notify)
    first = await session.exec('// @exec: {"yield_time_ms": 100}\nnotify("n"); text("done");')
    # Completion is held back while the notification is being delivered.
    assert (first.status, texts(first)) == ("running", ["done"])
    release.set()
    final = await session.wait("1", yield_time_ms=5000)
    assert (final.status, final.items) == ("completed", ())
    assert delivered == ["n"]


async def test_terminate_after_completion_cancels_stuck_notifications(make_cm: MakeCodeMode) -> None:
    blocking = Blocker()
    session = await make_cm(on_notify=blocking.block)
    first = await session.exec('// @exec: {"yield_time_ms": 50}\nnotify("stuck"); text("done");')
    assert first.status == "running"
    result = await session.wait("1", terminate=True)
    assert (result.status, result.error) == ("completed", None)  # the completion wins
    await asyncio.wait_for(blocking.cancelled.wait(), 5)
    assert session.running_cells == []


async def test_close_cancels_stuck_notifications_of_completed_cells() -> None:
    blocking = Blocker()
    async with CodeMode(on_notify=blocking.block) as session:
        first = await session.exec('// @exec: {"yield_time_ms": 50}\nnotify("stuck");')
        assert first.status == "running"
    await asyncio.wait_for(blocking.cancelled.wait(), 5)


@pytest.mark.parametrize("is_async", [False, True])
async def test_failing_notify_callback_does_not_break_the_cell(make_cm: MakeCodeMode, is_async: bool) -> None:
    errors: list[object] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))

    def on_notify(cell_id: str, text: str) -> None:
        raise RuntimeError("host bug")

    async def on_notify_async(cell_id: str, text: str) -> None:
        raise RuntimeError("host bug")

    session = await make_cm(on_notify=on_notify_async if is_async else on_notify)
    result = await session.exec('text("a"); notify("n"); text("b");')
    assert (result.status, texts(result), result.error) == ("completed", ["a", "b"], None)
    assert session.notifications == [Notification("1", "n")]
    assert len(errors) == 1  # reported to the loop's exception handler, once
