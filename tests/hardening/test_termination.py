"""Termination in every state a script can be in, and session close; the isolate's thread is gone after."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from tests.conftest import ISOLATION, MakeCodeMode
from tests.hardening._support import (
    engines_settled,
    linux_only,
    settle_threads,
    spinning_engine_threads,
    texts,
    thread_count,
)

from codemode import CodeMode, Tool
from codemode._output import model_items
from waiting import wait_until

pytestmark = linux_only

STATES = {
    "sync-loop": 'text("before"); while (true) {}',
    "loop-after-await": 'text("before"); await null; while (true) {}',
    "loop-after-timer": 'text("before"); await new Promise((r) => setTimeout(r, 1)); for (;;) {}',
    "parked-on-promise": 'text("before"); await new Promise(() => {})',
    "pending-tool": 'text("before"); await tools.hang({})',
    "pending-timers": 'text("before"); for (let i = 0; i < 100; i++) setTimeout(() => text("late"), 60000);'
    "await new Promise(() => {})",
    "timer-callback-loop": 'text("before"); setTimeout(() => { while (true) {} }, 1); await new Promise(() => {})',
    "deep-microtask-chain": 'text("before"); const spin = () => Promise.resolve().then(spin); spin();'
    "await new Promise(() => {})",
    "unawaited-tools-and-loop": 'text("before"); tools.hang({}); tools.hang({}); await null; while (true) {}',
}


class Hang:
    """A tool that never returns and records that it was cancelled."""

    def __init__(self) -> None:
        self.started = 0
        self.cancelled = 0

    async def run(self, args: dict[str, Any]) -> None:
        self.started += 1
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    def tool(self) -> Tool:
        return Tool("hang", "Never returns.", self.run)


async def warmed(make_cm: MakeCodeMode, **kwargs: Any) -> tuple[CodeMode, int]:
    """A session whose isolate pool is full, and the thread count in that state."""
    cm = await make_cm(**kwargs)
    assert (await cm.exec("1")).status == "completed"
    await engines_settled()
    return cm, thread_count()


@pytest.mark.parametrize("state", list(STATES))
async def test_terminate_in_every_state(make_cm: MakeCodeMode, loop_errors: list[Any], state: str) -> None:
    hang = Hang()
    cm, baseline = await warmed(make_cm, tools=[hang.tool()])
    result = await cm.exec(STATES[state], yield_time_ms=150)
    assert (result.status, texts(result)) == ("running", ["before"])
    assert result.cell_id is not None
    assert thread_count() > baseline - 1  # the cell's isolate thread is alive
    started = time.monotonic()
    final = await cm.wait(result.cell_id, terminate=True)
    assert time.monotonic() - started < 1
    assert (final.status, final.items) == ("terminated", ())
    assert model_items(final)[0].text.startswith("Script terminated")  # type: ignore[union-attr]
    await asyncio.sleep(0)
    assert hang.cancelled == hang.started  # every pending tool call saw CancelledError
    assert await settle_threads(baseline) <= baseline  # the isolate's thread is gone
    gone = await cm.wait(result.cell_id)
    assert gone.error == f"exec cell {result.cell_id} not found"
    after = await cm.exec('text("next")')
    assert (after.status, texts(after)) == ("completed", ["next"])


async def test_pending_tool_sees_cancelled_error_when_the_cell_completes(make_cm: MakeCodeMode) -> None:
    hang = Hang()
    cm = await make_cm(tools=[hang.tool()])
    result = await cm.exec(
        'tools.hang({}); tools.hang({}); await new Promise((r) => setTimeout(r, 50)); text("done")'
    )
    assert (result.status, texts(result)) == ("completed", ["done"])
    await wait_until(lambda: hang.cancelled == 2, "both pending calls saw CancelledError")
    assert hang.started == hang.cancelled == 2


async def test_many_terminates_leave_no_threads(make_cm: MakeCodeMode) -> None:
    cm, baseline = await warmed(make_cm)
    for source in STATES.values():
        if "tools." in source:
            continue
        result = await cm.exec(source, yield_time_ms=0)
        assert result.cell_id is not None
        assert (await cm.wait(result.cell_id, terminate=True)).status == "terminated"
    assert await settle_threads(baseline) <= baseline


async def test_second_terminate_while_the_first_runs(make_cm: MakeCodeMode) -> None:
    cm = await make_cm()
    result = await cm.exec('notify("spinning"); while (true) {}', yield_time_ms=0)
    assert result.cell_id is not None
    # The script is in V8 (a cell still waiting for its isolate stops at once, with no window).
    await wait_until(lambda: cm.notifications, "the script runs")
    first = asyncio.ensure_future(cm.wait(result.cell_id, terminate=True))
    await asyncio.sleep(0)
    second = await cm.wait(result.cell_id, terminate=True)
    assert second.error == f"exec cell {result.cell_id} is already terminating"
    assert (await first).status == "terminated"


@pytest.mark.slow
async def test_session_close_stops_every_cell_within_a_second(loop_errors: list[Any]) -> None:
    hang = Hang()
    cm = CodeMode(tools=[hang.tool()])
    await cm.start()
    assert (await cm.exec("1")).status == "completed"
    await engines_settled()
    before = thread_count()
    for source in STATES.values():
        assert (await cm.exec(source, yield_time_ms=0)).status == "running"
    assert len(cm.running_cells) == len(STATES)
    observer = asyncio.ensure_future(cm.wait("2", yield_time_ms=60_000))  # someone is watching one
    # The three hanging calls are in flight (a liveness bound: a slow machine takes longer than 0.1 s).
    async with asyncio.timeout(20):
        while hang.started < 3:
            await asyncio.sleep(0.05)
    started = time.monotonic()
    await cm.aclose()
    assert time.monotonic() - started < 1
    assert (await asyncio.wait_for(observer, 1)).status == "terminated"
    assert hang.cancelled == hang.started > 0
    if ISOLATION == "in-process":
        # every isolate is freed: the running ones and the pool's prepared ones
        assert await settle_threads(before - 2) <= before - 2
    else:
        # engine workers keep their pools (and another may have started for the ninth cell's
        # heap budget): what matters is that no stopped script still runs
        assert await spinning_engine_threads() == 0
    after = await cm.exec('text("x")')
    assert (after.status, after.error) == ("rejected", "code mode session is shutting down")


async def test_close_with_cpu_bound_cells_only(make_cm: MakeCodeMode) -> None:
    cm = await make_cm()
    for _ in range(8):
        await cm.exec("for (;;) {}", yield_time_ms=0)
    started = time.monotonic()
    await cm.aclose()
    assert time.monotonic() - started < 1
    assert cm.running_cells == []


@pytest.mark.slow
async def test_terminating_a_busy_script_accounts_for_output_it_could_not_deliver(make_cm: MakeCodeMode) -> None:
    """More output than the ring holds, then a CPU loop: what was delivered arrives, the rest is
    announced as lost instead of vanishing.

    The yield comes late enough for the loop to have sent all 20,000 even on a slow, busy
    machine: a terminate in the middle of the loop stops it before the rest exist (an earlier
    300 ms yield made this test count those as lost)."""
    cm = await make_cm()
    source = '// @exec: {"yield_time_ms": 3000}\nfor (let i = 0; i < 20000; i++) text("x".repeat(300));\nwhile (true) {}'
    first = await cm.exec(source)
    assert first.status == "running"
    assert first.cell_id is not None
    stopped = await cm.wait(first.cell_id, terminate=True)
    assert stopped.status == "terminated"
    delivered = [*texts(first), *texts(stopped)]
    lost = 0
    if delivered and delivered[-1].endswith("while it never went idle]"):
        # What did not fit the ring while the script never went idle (when the host read the
        # ring as fast as the script wrote, everything was delivered and there is no notice).
        lost = int(delivered.pop().split()[0].lstrip("["))
    assert delivered == ["x" * 300] * (20000 - lost)
