"""The engine worker processes (`isolation="process"`): what a fatal, killed, hung or greedy script
costs, admission by heap budget, resource use of many sessions, and the workers' environment.

Tests that kill or exhaust workers use a private `ProcessEngine`, so the shared engine the rest of
the suite uses is untouched; tests about a whole host (fatal V8 errors, interpreter exit, memory of
40 sessions, the worker's environment, start-up races) run in a fresh child Python process.
Time bounds are liveness bounds (seconds), not performance targets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import MakeCodeMode, process_only
from tests.hardening._support import linux_only, pid_alive, rss_bytes, texts

from codemode import CodeMode, Limits
from codemode._engine.base import CellProgram, FinishedEvent, SessionSetup
from codemode._engine.process import _protocol as wire
from codemode._engine.process._supervisor import BOOTSTRAP
from codemode.engines import ProcessEngine
from codemode.errors import EngineError, UsageError
from waiting import Checkpoint

pytestmark = [process_only, linux_only, pytest.mark.slow]

MIB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]
LONG_YIELD = '// @exec: {"yield_time_ms": 120000}\n'
SHORT_YIELD = '// @exec: {"yield_time_ms": 200}\n'
PARKED = "await new Promise((r) => setTimeout(r, 600000))"  # a cell that runs until stopped

# Builtins V8 cannot interrupt: only killing their worker stops them.
COPY_WITHIN = "Array.prototype.copyWithin.call({length: 2**53-1}, 0, 1)"
UNINTERRUPTIBLE = {
    "copyWithin-generic": COPY_WITHIN,
    "reverse-holey": "new Array(2**32-1).reverse()",
    "fill-generic": "Array.prototype.fill.call({length: 2**53-1}, 0)",
}


# --- helpers -------------------------------------------------------------------------------------


def engine_stopped(error: str | None) -> bool:
    """The model-facing text of a cell whose engine process stopped (any reason)."""
    return error is not None and "JavaScript engine process running this script" in error and "stopped" in error


def says_memory_and_less_data(error: str | None) -> bool:
    """The engine stopped or the memory limit was hit, and the text tells the model to process less."""
    if error is None:
        return False
    lowered = error.lower()
    stopped = engine_stopped(error) or "memory limit reached" in lowered
    return stopped and ("less data" in lowered or "smaller pieces" in lowered)


async def eventually(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)
    return True


def busy_workers(engine: ProcessEngine) -> list[Any]:
    return [w for w in engine.pool.workers() if w.cells and not w.dead]


async def ok(cm: CodeMode, label: str = "alive") -> None:
    result = await cm.exec(f'text("{label}")', yield_time_ms=30_000)
    assert (result.status, texts(result), result.error) == ("completed", [label], None)


async def running_after_before(cm: CodeMode, code: str) -> str:
    """Exec `text("before"); <code>` with a short yield; it must be running. Its cell id."""
    result = await cm.exec(SHORT_YIELD + f'text("before"); {code}')
    assert (result.status, texts(result)) == ("running", ["before"])
    assert result.cell_id is not None
    return result.cell_id


@pytest.fixture
async def private() -> AsyncIterator[Callable[..., tuple[ProcessEngine, Callable[..., CodeMode]]]]:
    """`private(**engine_kwargs)` -> (engine, session factory); sessions then engines closed at teardown."""
    engines: list[ProcessEngine] = []
    sessions: list[CodeMode] = []

    def make(**engine_kwargs: Any) -> tuple[ProcessEngine, Callable[..., CodeMode]]:
        engine = ProcessEngine(**engine_kwargs)
        engines.append(engine)

        def session(**kwargs: Any) -> CodeMode:
            cm = CodeMode(engine=engine, **kwargs)
            sessions.append(cm)
            return cm

        return engine, session

    yield make
    for cm in sessions:
        await cm.aclose()
    for engine in engines:
        await engine.aclose()


# Child processes: a fresh host each, driven by a small script that prints one JSON line last.
CHILD_PRELUDE = """
import asyncio, json, os, sys, time
from codemode import CodeMode, TextItem, engines
from codemode.engines import ProcessEngine

def texts(r):
    return [i.text if isinstance(i, TextItem) else i.type for i in r.items]

def report(**values):
    print(json.dumps(values), flush=True)
"""


def start_child(
    body: str, *args: str, env: dict[str, str] | None = None, cwd: str | Path | None = None
) -> subprocess.Popen[str]:
    code = CHILD_PRELUDE + textwrap.dedent(body)
    child_env = dict(os.environ if env is None else env)
    child_env.pop("CODEMODE_TEST_ISOLATION", None)  # the child uses the library's default: process
    child_env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "src")])
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env,
        cwd=cwd if cwd is not None else REPO,
    )


def finish_child(proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    """Wait for the child; assert it exited 0 in time; return its last JSON line."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"the child did not exit within {timeout} s\nstdout: {stdout[-3000:]}\nstderr: {stderr[-3000:]}")
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {stdout[-3000:]}\nstderr: {stderr[-3000:]}"
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"no report\nstdout: {stdout[-3000:]}\nstderr: {stderr[-3000:]}"
    return json.loads(lines[-1])  # type: ignore[no-any-return]


async def finish_child_async(proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    return await asyncio.to_thread(finish_child, proc, timeout)


# --- 1. fatal one-liners cost only their worker ---------------------------------------------------

# Each in a fresh host on the default engine; the slowest fill the worker's whole memory cap
# first, so they get a 1 GiB cap (the same path, reached sooner).
FATAL = {
    "array-fill": ("new Array(2**32-1).fill(0)", 1 << 30),
    "split-chars": ('"a".repeat(2**27+10).split("")', None),
    "json-parse": ('JSON.parse("[" + "1,".repeat(2**27) + "1]")', None),
    "array-from": ("Array.from({length: 2**28})", 1 << 30),
    "regexp-replace": ('"a".repeat(2**28).replace(/a/g, "bb")', None),
}

FATAL_CHILD = """
SOURCE, CAP = json.loads(sys.argv[1])

async def main():
    cm = CodeMode(engine=ProcessEngine(memory_cap_bytes=CAP)) if CAP else CodeMode()
    first = await cm.exec({long_yield!r} + 'text("before"); ' + SOURCE)
    print("first", first.status, flush=True)
    second = await cm.exec('text("alive")')
    print("second", second.status, flush=True)
    report(first=[first.status, texts(first), first.error], second=[second.status, texts(second), second.error])
    await cm.aclose()

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def fatal_children() -> Iterator[dict[str, subprocess.Popen[str]]]:
    """All the fatal one-liner hosts, started together (they wait for memory, not for each other)."""
    body = FATAL_CHILD.replace("{long_yield!r}", repr(LONG_YIELD))
    children = {name: start_child(body, json.dumps([source, cap])) for name, (source, cap) in FATAL.items()}
    yield children
    for proc in children.values():  # those whose test was deselected too: their pipes are closed
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.mark.parametrize("name", list(FATAL))
def test_fatal_one_liner_costs_only_its_worker(fatal_children: dict[str, subprocess.Popen[str]], name: str) -> None:
    outcome = finish_child(fatal_children[name], timeout=120)
    status, items, error = outcome["first"]
    assert status == "failed", outcome
    assert items == ["before"], outcome  # output produced before the engine stopped is kept
    assert says_memory_and_less_data(error), error
    assert outcome["second"] == ["completed", ["alive"], None]  # the same session goes on


# --- 2. a worker killed by a signal in the middle of a cell ---------------------------------------


def alone_worker(engine: ProcessEngine) -> Any | None:
    """The busy worker of its own a replayed cell runs on, once it is up."""
    workers = [w for w in busy_workers(engine) if w.alone and w.ready]
    return workers[0] if workers else None


async def test_sigkill_of_a_worker_mid_cell_replays_its_cell_alone_and_a_second_fails_it(private: Any) -> None:
    # One cell per worker, so the two sessions' cells are on different workers.
    engine, session = private(workers=2, cells_per_worker=1)
    wrote = Checkpoint()
    victim, bystander = session(tools=[wrote.tool]), session()
    await ok(victim, "warm")
    killed_cell = asyncio.ensure_future(victim.exec(LONG_YIELD + f'text("before"); tools.checkpoint(); {PARKED}'))
    assert await eventually(lambda: len(busy_workers(engine)) == 1, 30)
    [victim_worker] = busy_workers(engine)
    calm = asyncio.ensure_future(
        bystander.exec(LONG_YIELD + 'await new Promise((r) => setTimeout(r, 1500)); text("calm done")')
    )
    assert await eventually(lambda: len(busy_workers(engine)) == 2, 30)
    await wrote.reached()  # "before" reached the host
    assert victim_worker in busy_workers(engine)
    os.kill(victim_worker.pid, signal.SIGKILL)
    # The cell goes on: replayed on a worker of its own (its worker may have died of it).
    assert await eventually(lambda: alone_worker(engine) is not None, 30)
    assert not killed_cell.done()
    replay_worker = alone_worker(engine)
    assert replay_worker is not None and replay_worker.pid != victim_worker.pid
    survivor = await asyncio.wait_for(calm, 30)  # the other worker's cell is untouched
    assert (survivor.status, texts(survivor)) == ("completed", ["calm done"])
    # A second death is the cell's: it fails with the real reason, its output once.
    started = time.monotonic()
    os.kill(replay_worker.pid, signal.SIGKILL)
    result = await asyncio.wait_for(killed_cell, 30)
    assert time.monotonic() - started < 10
    assert result.status == "failed"
    assert texts(result) == ["before"]
    assert engine_stopped(result.error) and "killed by signal 9" in (result.error or ""), result.error
    assert wrote.calls == 1  # the replay did not call the tool again
    assert victim_worker.pid not in engine.worker_pids()
    await ok(victim, "victim again")
    await ok(bystander, "bystander again")


async def test_sigkill_of_a_worker_while_a_cell_yielded(private: Any) -> None:
    """The cell goes on after a first death (replayed); a second one reaches its next `wait`."""
    engine, session = private(workers=1)
    cm = session()
    await ok(cm, "warm")
    cell_id = await running_after_before(cm, PARKED)
    [worker] = busy_workers(engine)
    os.kill(worker.pid, signal.SIGKILL)
    assert await eventually(lambda: alone_worker(engine) is not None, 30)
    still = await cm.wait(cell_id, yield_time_ms=200)
    assert (still.status, texts(still)) == ("running", [])  # "before" is not handed out again
    replay_worker = alone_worker(engine)
    assert replay_worker is not None
    os.kill(replay_worker.pid, signal.SIGKILL)
    final = await cm.wait(cell_id, yield_time_ms=30_000)
    assert final.status == "failed"
    assert "killed by signal 9" in (final.error or "") and engine_stopped(final.error), final.error
    await ok(cm)


# --- 3. workers killed while idle -------------------------------------------------------------------


async def settled_pool(engine: ProcessEngine) -> list[int]:
    """Wait for the worker in service and the spare to be up; their pids."""
    assert await eventually(lambda: len(engine.pool.workers()) >= 2 and all(w.ready for w in engine.pool.workers()), 30)
    return engine.worker_pids()


async def test_workers_killed_while_idle_are_replaced(private: Any) -> None:
    engine, session = private(workers=2)
    cm = session()
    await ok(cm, "warm")
    pids = await settled_pool(engine)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    # Once the supervisor saw them die, the next exec starts a replacement and completes.
    assert await eventually(lambda: not set(pids) & set(engine.worker_pids()), 10)
    started = time.monotonic()
    await ok(cm, "after")
    assert time.monotonic() - started < 30
    assert not set(pids) & set(engine.worker_pids())
    await ok(session(), "another session")


async def test_exec_right_after_idle_workers_were_killed(private: Any) -> None:
    """An exec that comes before the supervisor noticed the death (the ~50 ms the kernel takes to
    tear down a big process) must not fail: the cell never started on the dead worker."""
    engine, session = private(workers=2)
    cm = session()
    await ok(cm, "warm")
    pids = await settled_pool(engine)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    await ok(cm, "after")


# --- 4. many concurrent cells spread over the workers -----------------------------------------------


async def test_200_concurrent_cells_over_several_workers(private: Any) -> None:
    engine, session = private(workers=2)
    sessions = [session(limits=Limits(max_concurrent_cells=64)) for _ in range(4)]
    await asyncio.gather(*(ok(cm, "warm") for cm in sessions))
    ran_cells: set[int] = set()
    most_on_one = 0

    async def sample() -> None:
        nonlocal most_on_one
        while True:
            for worker in engine.pool.workers():
                if worker.cells:
                    ran_cells.add(worker.pid)
                    most_on_one = max(most_on_one, len(worker.cells))
            await asyncio.sleep(0.003)

    sampler = asyncio.ensure_future(sample())
    started = time.monotonic()
    results = await asyncio.gather(*(
        sessions[i % 4].exec(LONG_YIELD + f"await new Promise((r) => setTimeout(r, 50)); text({i})") for i in range(200)
    ))
    elapsed = time.monotonic() - started
    sampler.cancel()
    assert [(r.status, texts(r)) for r in results] == [("completed", [str(i)]) for i in range(200)]
    assert elapsed < 60
    assert len(ran_cells) >= 2, ran_cells  # more than one worker ran cells
    assert most_on_one <= engine.config.cells_per_worker
    for cm in sessions:
        await ok(cm)


# --- 5. admission by heap budget ---------------------------------------------------------------------

PUSH_30M = "const a = []; for (let i = 0; i < 3e7; i++) a.push(i); text(a.length)"


async def test_greedy_cells_are_admitted_by_heap_budget_and_all_complete(private: Any) -> None:
    engine, session = private()  # the default settings
    sessions = [session(limits=Limits(max_concurrent_cells=64)) for _ in range(4)]
    await ok(sessions[0], "warm")
    seen: dict[int, Any] = {}
    most_heap = 0

    async def sample() -> None:
        nonlocal most_heap
        while True:
            for worker in engine.pool.workers():
                seen[worker.pid] = worker
                most_heap = max(most_heap, worker.heap_admitted)
            await asyncio.sleep(0.01)

    sampler = asyncio.ensure_future(sample())
    results = await asyncio.gather(*(sessions[i % 4].exec(LONG_YIELD + PUSH_30M) for i in range(20)))
    sampler.cancel()
    assert [(r.status, texts(r), r.error) for r in results] == [("completed", ["30000000"], None)] * 20
    assert not [pid for pid, worker in seen.items() if worker.dead and worker.kill_reason is None]  # no worker died
    assert most_heap <= engine.config.heap_per_worker
    for cm in sessions:
        await ok(cm)


async def test_cells_that_together_exhaust_a_worker_fail_cleanly(private: Any) -> None:
    _engine, session = private()
    cm, other = session(limits=Limits(max_concurrent_cells=64)), session()
    await ok(cm, "warm")
    results = await asyncio.gather(*(
        cm.exec(LONG_YIELD + 'text("a".repeat(2**27).split("").length)') for _ in range(7)
    ))
    for result in results:
        if result.status == "completed":
            assert texts(result) == [str(2**27)]
        else:
            assert result.status == "failed"
            assert says_memory_and_less_data(result.error), result.error
    await ok(cm, "same session")
    await ok(other, "another session")


async def test_exec_waiting_for_admission_still_yields_on_time(private: Any) -> None:
    _engine, session = private(workers=1, cells_per_worker=1)
    cm = session()
    await ok(cm, "warm")
    blocker = await cm.exec(SHORT_YIELD + f'text("blocker"); {PARKED}')
    assert (blocker.status, texts(blocker)) == ("running", ["blocker"])
    assert blocker.cell_id is not None
    started = time.monotonic()
    queued = await cm.exec(SHORT_YIELD + 'text("queued")')
    assert time.monotonic() - started < 5
    assert (queued.status, texts(queued)) == ("running", [])  # it has not started: no room yet
    assert queued.cell_id is not None
    again = await cm.wait(queued.cell_id, yield_time_ms=200)
    assert (again.status, texts(again)) == ("running", [])
    assert (await cm.wait(blocker.cell_id, terminate=True)).status == "terminated"
    final = await cm.wait(queued.cell_id, yield_time_ms=30_000)
    assert (final.status, texts(final)) == ("completed", ["queued"])


async def test_terminating_an_exec_waiting_for_admission(private: Any) -> None:
    engine, session = private(workers=1, cells_per_worker=1)
    cm = session()
    await ok(cm, "warm")
    blocker = await cm.exec(SHORT_YIELD + PARKED)
    queued = await cm.exec(SHORT_YIELD + 'text("never")')
    assert queued.status == "running" and queued.cell_id is not None and blocker.cell_id is not None
    assert (await cm.wait(queued.cell_id, terminate=True)).status == "terminated"
    assert (await cm.wait(blocker.cell_id, terminate=True)).status == "terminated"
    await ok(cm)
    assert not busy_workers(engine)  # the withdrawn cell holds no room


# --- 6. ArrayBuffers are bounded by the worker's memory cap --------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("const a = []; for (;;) a.push(new Uint8Array(2**26))", id="untouched-64MiB"),
        pytest.param("const a = []; for (;;) a.push(new Uint8Array(2**26).fill(1))", id="filled-64MiB"),
        pytest.param("const a = []; for (;;) a.push(new ArrayBuffer(2**20))", id="many-1MiB"),
    ],
)
async def test_array_buffers_are_bounded(private: Any, source: str) -> None:
    engine, session = private(workers=2, memory_cap_bytes=1 << 30)
    cm = session()
    await ok(cm, "warm")
    await settled_pool(engine)
    await asyncio.sleep(1.5)  # the worker's isolate pool is full (see the next test for why)
    before = rss_bytes()
    started = time.monotonic()
    result = await cm.exec(LONG_YIELD + source)
    assert time.monotonic() - started < 60
    assert result.status == "failed"
    error = result.error or ""
    assert "RangeError: Array buffer allocation failed" in error or engine_stopped(error), error
    assert rss_bytes() - before < 100 * MIB  # the host did not hold the buffers
    # Only that cell failed: the next execs (on the worker it exhausted) complete.
    for i in range(3):
        await ok(cm, f"after {i}")


LOST_WORK = """
import asyncio, ctypes, sys
from codemode._engine.process._worker import _lost_work_is_fatal

def fail():
    raise {error}

async def main():
    _lost_work_is_fatal(asyncio.get_running_loop())
    if sys.argv[1] == "loop":
        asyncio.get_running_loop().call_soon(fail)
    else:
        ctypes.CFUNCTYPE(None)(lambda: fail())()  # through ctypes' thunk, as an isolate calls back
    await asyncio.sleep(10)
    print("lived on")

asyncio.run(main())
"""


@pytest.mark.parametrize(
    ("where", "error"), [("loop", "MemoryError"), ("loop", "RuntimeError('lost')"), ("ctypes", "MemoryError")]
)
def test_an_error_that_loses_a_cells_events_ends_the_worker(where: str, error: str) -> None:
    """Near the memory cap, packing a cell's last events can raise `MemoryError` in a loop or
    ctypes callback, where Python only logs it: the worker must end (the host then fails or
    replays the cell) rather than live on with the cell's events gone and the cell waiting forever."""
    done = subprocess.run(
        [sys.executable, "-c", LOST_WORK.format(error=error), where], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 5, (done.returncode, done.stdout, done.stderr)
    assert "lived on" not in done.stdout
    assert error.split("(")[0] in done.stderr


async def test_exhausting_a_young_worker_costs_only_that_cell(private: Any) -> None:
    """A cell that exhausts the memory cap of a worker still filling its isolate pool fails; the
    cells after it must not be lost with that worker (creating an isolate while the failed cell's
    memory is not yet freed must not abort the worker)."""
    _engine, session = private(workers=2, memory_cap_bytes=1 << 30)
    cm = session(limits=Limits(max_concurrent_cells=64))
    await ok(cm, "warm")
    result = await cm.exec(LONG_YIELD + "const a = []; for (;;) a.push(new Uint8Array(2**26))")
    assert result.status == "failed"
    assert "RangeError: Array buffer allocation failed" in (result.error or "") or engine_stopped(result.error)
    after = await asyncio.gather(*(cm.exec(f'text("after {i}")', yield_time_ms=30_000) for i in range(8)))
    after += [await cm.exec(f'text("after {i}")', yield_time_ms=30_000) for i in range(8, 11)]
    lost = [r.error for r in after if r.status != "completed"]
    assert not lost, f"{len(lost)} of {len(after)} innocent cells failed: {lost[0]}"


async def test_a_cell_waiting_for_an_isolate_memory_cannot_make_moves_to_another_worker(private: Any) -> None:
    """A cell that holds most of its worker's memory cap leaves no room for the isolates the
    next cells need (and memory a process frees does not always lower what its cap counts): a
    cell placed there must not wait forever. The worker reports it; the host retires it and
    moves the waiting cell to a new worker, while the holding cell keeps running."""
    cap = 1 << 30
    engine, session = private(workers=1, memory_cap_bytes=cap, isolate_pool_size=1)
    cm = session()
    await ok(cm, "warm")
    # Leave 64 MiB under the cap: less than a new isolate may need, more than the worker's Python needs.
    hold = cap - max(_data_bytes(pid) for pid in engine.worker_pids()) - 64 * MIB
    holder = await cm.exec(SHORT_YIELD + f"const held = new Uint8Array({hold}); text(`holding`); {PARKED}")
    assert (holder.status, texts(holder)) == ("running", ["holding"]), holder.error
    [worker] = busy_workers(engine)
    await ok(cm, "takes the isolate prepared before the memory was held")
    started = time.monotonic()
    moved = await cm.exec('text("moved")', yield_time_ms=60_000)
    assert (moved.status, texts(moved), moved.error) == ("completed", ["moved"], None)
    assert time.monotonic() - started < 30
    assert worker.retiring and not worker.doomed  # retired, not killed: its cell still runs
    assert holder.cell_id is not None
    assert (await cm.wait(holder.cell_id, yield_time_ms=100)).status == "running"
    assert (await cm.wait(holder.cell_id, terminate=True)).status == "terminated"
    await ok(cm, "after")


def _data_bytes(pid: int) -> int:
    """What RLIMIT_DATA counts of a process (VmData)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmData:"))


# --- 7. builtins V8 cannot interrupt -------------------------------------------------------------------


@pytest.mark.parametrize("name", list(UNINTERRUPTIBLE))
async def test_terminate_stops_an_uninterruptible_builtin(private: Any, name: str) -> None:
    _engine, session = private(workers=2)
    cm = session()
    await ok(cm, "warm")
    cell_id = await running_after_before(cm, UNINTERRUPTIBLE[name])
    started = time.monotonic()
    final = await cm.wait(cell_id, terminate=True)
    assert time.monotonic() - started < 10
    assert final.status == "terminated"
    await ok(cm)


async def test_time_limit_stops_an_uninterruptible_builtin(private: Any) -> None:
    engine, session = private(workers=2)
    await ok(session(), "warm")  # a worker up first: waiting for one counts against the cell's time
    await settled_pool(engine)
    cm = session(limits=Limits(cell_time_limit_ms=500))
    started = time.monotonic()
    result = await cm.exec(LONG_YIELD + f'text("before"); {COPY_WITHIN}')
    assert time.monotonic() - started < 10
    assert result.status == "failed"
    assert texts(result) == ["before"]
    assert (result.error or "").startswith("Time limit reached"), result.error
    await ok(cm)


async def test_close_stops_an_uninterruptible_builtin(private: Any) -> None:
    engine, session = private(workers=2)
    cm = session()
    await ok(cm, "warm")
    result = await cm.exec(SHORT_YIELD + UNINTERRUPTIBLE["reverse-holey"])
    assert result.status == "running"
    [worker] = busy_workers(engine)
    started = time.monotonic()
    await cm.aclose()
    assert time.monotonic() - started < 10
    assert await eventually(lambda: not pid_alive(worker.pid), 10)  # no spinning engine left behind
    await ok(session(), "another session")


async def test_a_cell_sharing_the_worker_of_an_uninterruptible_one_is_replayed(private: Any) -> None:
    engine, session = private(workers=1)  # every cell on the one worker
    calm_session, stuck_session = session(), session()
    await asyncio.gather(ok(calm_session, "warm"), ok(stuck_session, "warm"))
    calm = await calm_session.exec(SHORT_YIELD + f'text("calm before"); {PARKED}')
    assert (calm.status, texts(calm)) == ("running", ["calm before"])
    stuck = await stuck_session.exec(SHORT_YIELD + COPY_WITHIN)
    assert stuck.status == "running"
    assert calm.cell_id is not None and stuck.cell_id is not None
    [worker] = busy_workers(engine)
    assert len(worker.cells) == 2
    started = time.monotonic()
    assert (await stuck_session.wait(stuck.cell_id, terminate=True)).status == "terminated"
    assert time.monotonic() - started < 10
    # The calm cell is not to blame: it is replayed where cells run, and runs on.
    assert await eventually(lambda: worker.pid not in engine.worker_pids() and bool(busy_workers(engine)), 30)
    going_on = await calm_session.wait(calm.cell_id, yield_time_ms=300)
    assert (going_on.status, texts(going_on)) == ("running", [])
    assert not any(w.alone for w in busy_workers(engine))
    assert (await calm_session.wait(calm.cell_id, terminate=True)).status == "terminated"
    await ok(calm_session, "calm again")
    await ok(stuck_session, "stuck again")


# A completed cell whose isolate still runs a builtin: the microtask continuation runs after the
# script's end was reported; a timer callback is skipped once the cell finished.
LEFT_RUNNING = [
    f'setTimeout(() => {COPY_WITHIN}, 0); text("done")',
    f'(async () => {{ for (let i = 0; i < 5; i++) await null; {COPY_WITHIN} }})(); text("done")',
]


async def test_completed_cells_leaving_a_builtin_running_do_not_block_later_execs(private: Any) -> None:
    engine, session = private(workers=2)
    cm = session()
    await ok(cm, "warm")
    before = await settled_pool(engine)
    for source in LEFT_RUNNING * 2:
        result = await cm.exec(source)
        assert (result.status, texts(result)) == ("completed", ["done"])
    # Later execs complete, while the worker that cannot free those isolates is retired...
    for i in range(10):
        started = time.monotonic()
        await ok(cm, f"later {i}")
        assert time.monotonic() - started < 15
        await asyncio.sleep(0.1)
    # ...and killed once it runs nothing else, so no spinning builtin outlives it.
    assert await eventually(lambda: any(not pid_alive(pid) for pid in before), 20)
    await ok(cm, "after the replacement")
    await ok(session(), "another session")


EXIT_CHILD = """
CLOSE = {close}
LEFT_RUNNING = {left_running!r}

async def main():
    cm = CodeMode()
    for source in LEFT_RUNNING * 2:
        result = await cm.exec(source)
        assert (result.status, texts(result)) == ("completed", ["done"]), result
    result = await cm.exec('text("last")')
    assert result.status == "completed", result
    report(pids=engines.shared("process").worker_pids())
    if CLOSE:
        await cm.aclose()

asyncio.run(main())
"""


async def test_interpreter_exit_is_not_blocked_by_a_running_builtin() -> None:
    children = [
        start_child(EXIT_CHILD.format(close=close, left_running=LEFT_RUNNING)) for close in (True, False)
    ]
    for proc in children:
        outcome = await finish_child_async(proc, timeout=60)
        pids = outcome["pids"]
        assert pids
        # The workers die with their host.
        assert await eventually(lambda pids=pids: not any(pid_alive(p) for p in pids), 10), outcome


SCRATCH_CHILD = """
async def main():
    async with CodeMode() as cm:
        result = await cm.exec('text("x")')
    report(status=result.status, pids=engines.shared("process").worker_pids())

asyncio.run(main())
"""


async def test_host_exit_leaves_no_worker_scratch_directories(tmp_path: Path) -> None:
    """Each worker runs in a scratch directory of its own; a host that exits normally (its workers
    killed at exit) leaves none of them behind in the temporary directory."""
    outcome = await finish_child_async(start_child(SCRATCH_CHILD, env=dict(os.environ, TMPDIR=str(tmp_path))), 60)
    assert outcome["status"] == "completed"
    assert await eventually(lambda: not any(pid_alive(p) for p in outcome["pids"]), 10)
    assert await eventually(lambda: not any(tmp_path.iterdir()), 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# --- 8. a hung sync tool holds only its own session's threads --------------------------------------------

_RELEASE_HUNG = threading.Event()  # set at the end, so the hung threads do not outlive the test


def hang() -> str:
    """Never returns (until the test ends)."""
    _RELEASE_HUNG.wait()
    return "released"


def echo(i: int) -> int:
    """Returns its argument, from a thread."""
    time.sleep(0.01)
    return i


@pytest.fixture
def release_hung() -> Iterator[None]:
    _RELEASE_HUNG.clear()
    yield
    _RELEASE_HUNG.set()


async def test_hung_sync_tool_does_not_starve_another_session(make_cm: MakeCodeMode, release_hung: None) -> None:
    hung = await make_cm(tools=[hang])
    healthy = await make_cm(tools=[echo])
    result = await hung.exec(SHORT_YIELD + "await Promise.all(Array.from({length: 20}, () => tools.hang({})))")
    assert result.status == "running" and result.cell_id is not None
    started = time.monotonic()
    assert (await hung.wait(result.cell_id, terminate=True)).status == "terminated"
    assert time.monotonic() - started < 10
    calls = "const r = await Promise.all(Array.from({length: 20}, (_, i) => tools.echo({i}))); text(r.join(','))"
    started = time.monotonic()
    done = await healthy.exec(calls, yield_time_ms=30_000)
    assert time.monotonic() - started < 10
    assert (done.status, texts(done)) == ("completed", [",".join(map(str, range(20)))])
    await ok(hung, "the hung session's scripts still run")


# --- 9. 40 open sessions in one host --------------------------------------------------------------------

FORTY_CHILD = """
def rss(pid="self"):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0

def host_threads():
    return len(os.listdir("/proc/self/task"))

async def main():
    threads_before, rss_before = host_threads(), rss()
    sessions = [CodeMode() for _ in range(40)]
    await asyncio.gather(*(cm.start() for cm in sessions))
    results = await asyncio.gather(*(
        cm.exec(f"await new Promise((r) => setTimeout(r, 100)); text('s{i}')") for i, cm in enumerate(sessions)
    ))
    assert [(r.status, texts(r)) for r in results] == [("completed", [f"s{i}"]) for i in range(40)], results
    pool = engines.shared("process").pool
    # The steady state: every worker up and its isolate pool refilled in the background.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(w.ready for w in pool.workers()):
        await asyncio.sleep(0.05)
    await asyncio.sleep(2.0)
    pids = engines.shared("process").worker_pids()
    report(
        extra_threads=host_threads() - threads_before,
        host_rss=rss(), host_rss_before=rss_before,
        worker_rss={str(pid): rss(pid) for pid in pids},
    )

asyncio.run(main())
"""


async def test_forty_open_sessions_stay_within_threads_and_memory() -> None:
    """Host threads: the increase over the host before any session. Memory: the *absolute* RSS of the
    host plus every engine worker (stricter than counting only the host's increase)."""
    outcome = await finish_child_async(start_child(FORTY_CHILD), timeout=120)
    assert outcome["extra_threads"] <= 120, outcome
    total = outcome["host_rss"] + sum(outcome["worker_rss"].values())
    assert total <= 600 * MIB, (total / MIB, outcome)


# --- 10. what a worker inherits ---------------------------------------------------------------------

ENV_CHILD = """
import tempfile
held = tempfile.NamedTemporaryFile(prefix="codemode-host-held-")
held_path = os.path.realpath(held.name)
read_end, write_end = os.pipe()
host_pipe = os.readlink(f"/proc/self/fd/{read_end}")

async def main():
    async with CodeMode() as cm:
        result = await cm.exec(
            "const o = Intl.DateTimeFormat().resolvedOptions();"
            "text(o.timeZone); text(o.locale); text(String(new Date(0).getTimezoneOffset()));"
            "text((1234.5).toLocaleString())"
        )
        pool = engines.shared("process").pool
        deadline = time.monotonic() + 30  # the spare too: a worker still importing has .py files open
        while time.monotonic() < deadline and not (len(pool.workers()) >= 2 and all(w.ready for w in pool.workers())):
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        workers = {}
        for pid in engines.shared("process").worker_pids():
            fds = {}
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    fds[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    pass
            with open(f"/proc/{pid}/environ", "rb") as environ:
                env = environ.read().decode("utf-8", "replace")
            workers[str(pid)] = {"cwd": os.readlink(f"/proc/{pid}/cwd"), "fds": fds, "environ": env}
        report(
            status=result.status, texts=texts(result), error=result.error, workers=workers,
            host_cwd=os.getcwd(), held=held_path, host_pipe=host_pipe, tmp=os.path.realpath(tempfile.gettempdir()),
            python_paths=[os.path.realpath(p) for p in sys.path if p],
        )

asyncio.run(main())
"""

SECRET = "codemode-test-secret-5f1e9a"


async def test_worker_environment_is_fixed_and_holds_nothing_of_the_host(tmp_path: Path) -> None:
    env = dict(os.environ, TZ="Asia/Tokyo", LANG="de_DE.UTF-8", LC_ALL="de_DE.UTF-8", CODEMODE_SECRET_TOKEN=SECRET)
    outcome = await finish_child_async(start_child(ENV_CHILD, env=env, cwd=tmp_path), timeout=60)
    assert (outcome["status"], outcome["error"]) == ("completed", None)
    assert outcome["texts"] == ["UTC", "en-US", "0", "1,234.5"]
    assert outcome["workers"]
    host_cwd = os.path.realpath(outcome["host_cwd"])
    for pid, worker in outcome["workers"].items():
        assert SECRET not in worker["environ"], (pid, worker["environ"])
        assert "Asia/Tokyo" not in worker["environ"] and "de_DE" not in worker["environ"], worker["environ"]
        cwd = os.path.realpath(worker["cwd"])
        assert cwd != host_cwd and not cwd.startswith(host_cwd + os.sep), cwd
        assert cwd.startswith(outcome["tmp"] + os.sep), cwd  # a scratch directory
        links = worker["fds"]
        assert {"0", "1", "2"} <= set(links), links
        assert outcome["held"] not in links.values(), links  # the host's open file is not inherited
        assert outcome["host_pipe"] not in links.values(), links  # nor its pipe
        for fd, link in links.items():
            # Pipes to the host, the event loop's own sockets and epoll, /dev/null, and at most a
            # module file Python itself is reading: nothing of the host's.
            python_file = any(link.startswith(path + os.sep) for path in outcome["python_paths"])
            assert link.startswith(("pipe:", "socket:", "anon_inode:", "/dev/")) or python_file, (fd, link, links)


# --- 11. start-up races, by repetition in fresh hosts ----------------------------------------------------

RACE_CHILD = """
async def main():
    sessions = [CodeMode() for _ in range(3)]
    results = await asyncio.gather(*(
        cm.exec(f'await null; text("session {i}"); text(String(1 + {i}))') for i, cm in enumerate(sessions)
    ))
    got = [[r.status, texts(r)] for r in results]
    assert got == [["completed", [f"session {i}", str(1 + i)]] for i in range(3)], got
    again = await asyncio.gather(*(cm.exec(f'text("again {i}")') for i, cm in enumerate(sessions)))
    assert [texts(r) for r in again] == [[f"again {i}"] for i in range(3)], again
    await asyncio.gather(*(cm.aclose() for cm in sessions))
    report(ok=True)

asyncio.run(main())
"""


async def test_concurrent_first_sessions_in_fresh_hosts() -> None:
    slots = asyncio.Semaphore(3)  # 10 hosts, 3 at a time

    async def host() -> dict[str, Any]:
        async with slots:
            return await finish_child_async(start_child(RACE_CHILD), timeout=60)

    outcomes = await asyncio.gather(*(host() for _ in range(10)))
    assert outcomes == [{"ok": True}] * 10


# -- idle workers ------------------------------------------------------------------------------
async def test_workers_a_burst_started_stop_once_idle(private: Any) -> None:
    engine, session = private(workers=3, cells_per_worker=4, idle_worker_s=1.0)
    cm = session()
    burst = await asyncio.gather(
        *(cm.exec(f"await new Promise((r) => setTimeout(r, 300)); text({i})") for i in range(10))
    )
    assert [texts(r) for r in burst] == [[str(i)] for i in range(10)]
    in_service = [w for w in engine.pool.workers() if w is not engine.pool._spare]
    assert len(in_service) >= 2  # 10 cells, 4 per worker
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        in_service = [w for w in engine.pool.workers() if w is not engine.pool._spare]
        if len(in_service) == 1:
            break
        await asyncio.sleep(0.2)
    assert len(in_service) == 1  # the first stays; the spare stays too
    assert engine.pool._spare is not None
    assert texts(await cm.exec('text("after")')) == ["after"]


# -- the engine's lifecycle and its wire ------------------------------------------------------------
async def start_cell(engine: ProcessEngine, code: str) -> list[Any]:
    """Start `code` on `engine` through the engine interface; the list its events arrive in."""
    session = await engine.open_session(SessionSetup((), 0))
    events: list[Any] = []
    session.start(CellProgram(code, ""), events.append)
    return events


async def finished_error(events: list[Any], within_s: float = 30) -> str | None:
    assert await eventually(lambda: any(isinstance(e, FinishedEvent) for e in events), within_s), events
    return next(e for e in events if isinstance(e, FinishedEvent)).error


async def test_worker_of_another_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # The worker is a fresh process speaking this checkout's version; the host expects another.
    spoken = wire.PROTOCOL_VERSION
    monkeypatch.setattr(wire, "PROTOCOL_VERSION", spoken + 1000)
    async with ProcessEngine(workers=1) as engine:
        session = await engine.open_session(SessionSetup((), 0))
        with pytest.raises(EngineError, match=rf"protocol version {spoken}\b.*needs {spoken + 1000}") as refused:
            await asyncio.wait_for(session.ready(), 60)
        assert isinstance(refused.value.__cause__, wire.VersionMismatch)
        assert not session.is_alive()
        error = await finished_error(await start_cell(engine, 'text("never")'))
        assert error is not None and "protocol version" in error
        assert await eventually(lambda: not engine.worker_pids(), 10)  # the refused worker was killed


async def test_engine_that_cannot_start_raises_engine_error_with_the_cause() -> None:
    # 8 MiB of memory is not enough for Python and V8: every worker dies before READY.
    async with ProcessEngine(workers=1, memory_cap_bytes=8 * MIB) as engine:
        session = await engine.open_session(SessionSetup((), 0))
        with pytest.raises(EngineError, match="could not start") as failed:
            await asyncio.wait_for(session.ready(), 120)
        assert isinstance(failed.value.__cause__, ChildProcessError)
        assert not session.is_alive()


async def test_an_oversized_message_fails_only_its_cell(private: Any) -> None:
    engine, session = private(workers=1)
    engine.config = dataclasses.replace(engine.config, max_frame_bytes=MIB)  # before its first worker

    def big() -> str:
        """Returns two MiB of text."""
        return "y" * (2 * MIB)

    cm = session(tools=[big])
    await ok(cm, "warm")  # the worker is up, so the parked cell prints before it yields
    parked = await running_after_before(cm, PARKED)
    oversized = await cm.exec('text("before"); text("x".repeat(2 * 1024 * 1024)); text("after")', yield_time_ms=30_000)
    assert oversized.status == "failed"
    assert "at most 1 MiB can leave the JavaScript engine" in (oversized.error or "")
    assert texts(oversized) == ["before"]
    # A tool result over the cap fails only that call, which the script can catch.
    caught = await cm.exec('try { await tools.big({}) } catch (e) { text(String(e.message ?? e)) }', yield_time_ms=30_000)
    assert caught.status == "completed", caught.error
    assert "more than the 1 MiB that can pass into the JavaScript engine" in texts(caught)[0]
    # Several events together over the cap arrive in several frames: nothing fails.
    many = await cm.exec('for (let i = 0; i < 4; i++) text("z".repeat(400 * 1024)); text("done")', yield_time_ms=30_000)
    assert (many.status, len(many.items), texts(many)[-1]) == ("completed", 5, "done")
    assert len(engine.worker_pids()) >= 1 and (await cm.wait(parked, yield_time_ms=100)).status == "running"
    await ok(cm)


async def test_closed_engine_kills_its_workers_and_refuses_sessions() -> None:
    async with ProcessEngine(workers=1) as engine:
        session = await engine.open_session(SessionSetup((), 0))
        await asyncio.wait_for(session.ready(), 60)
        assert session.is_alive()
        pids = engine.worker_pids()
        assert pids
    assert not any(pid_alive(pid) for pid in pids)  # aclose returned once they were gone
    assert not session.is_alive()
    with pytest.raises(UsageError, match="closed"):
        await engine.open_session(SessionSetup((), 0))


def test_the_worker_does_not_load_the_session_layer() -> None:
    probe = BOOTSTRAP.split("from codemode._engine.process._worker import main")[0] + (
        "import codemode._engine.process._worker; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('codemode'))))"
    )
    config = json.dumps({"path": [str(REPO / "src"), *sys.path]})
    done = subprocess.run([sys.executable, "-I", "-S", "-c", probe, config], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert not [m for m in loaded if m.startswith(("codemode._session", "codemode.tools", "codemode.formats"))], loaded
