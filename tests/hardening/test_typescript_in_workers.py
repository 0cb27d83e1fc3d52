"""TypeScript with `isolation="process"`: the types are stripped in an engine worker, never in the
host (which must not load V8: model input there could crash it), and a worker that dies while it
strips fails only that exec, with a clear error.

Tests that stop workers use a private `ProcessEngine`; the host check runs in a fresh child Python.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator

import pytest
from tests.conftest import process_only
from tests.hardening._support import linux_only, texts

from codemode import CodeMode
from codemode._engine.process._supervisor import Worker
from codemode.engines import ProcessEngine
from waiting import wait_until

pytestmark = [process_only, linux_only]

TYPESCRIPT = "const n: number = 21;\ntext(n * 2);"


def test_a_process_session_strips_typescript_without_loading_v8_in_the_host() -> None:
    probe = textwrap.dedent(
        """
        import json, sys
        from codemode import SyncCodeMode
        with SyncCodeMode(isolation="process") as cm:
            result = cm.exec("const n: number = 21;\\ntext(n * 2);")
        print(json.dumps({
            "outcome": [result.status, [item.text for item in result.items], result.error],
            "v8": sorted(m for m in sys.modules if m.startswith(("py_mini_racer", "codemode._engine.miniracer"))),
        }))
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report == {"outcome": ["completed", ["42"], None], "v8": []}


@pytest.fixture
async def engine() -> AsyncIterator[ProcessEngine]:
    async with ProcessEngine(workers=1, isolate_pool_size=2) as engine:
        yield engine


async def stripping_worker(engine: ProcessEngine, cm: CodeMode) -> Worker:
    """The worker the next strip goes to, once the spare is up too (so another can take over)."""
    assert (await cm.exec("text(1)")).status == "completed"
    await wait_until(lambda: sum(w.ready for w in engine.pool.workers()) == 2, "the spare is ready")
    return await asyncio.wrap_future(engine.pool.stripper())


async def test_a_worker_that_dies_while_stripping_fails_only_that_exec(engine: ProcessEngine) -> None:
    async with CodeMode(engine=engine) as cm:
        worker = await stripping_worker(engine, cm)
        os.kill(worker.pid, signal.SIGSTOP)  # it cannot answer the strip
        run = asyncio.ensure_future(cm.exec(TYPESCRIPT))
        await wait_until(lambda: bool(worker.strips), "the strip was sent")
        os.kill(worker.pid, signal.SIGKILL)
        result = await run
        assert result.status == "failed"
        assert result.error == (
            "The JavaScript engine process removing this script's TypeScript types stopped: it was killed by "
            "signal 9 (SIGKILL). Run the script again; if this repeats, process less data at once. The script "
            "did not run."
        )
        again = await cm.exec(TYPESCRIPT)  # the spare took over, and strips too
        assert (again.status, texts(again)) == ("completed", ["42"])


async def test_a_strip_on_a_worker_the_host_stops_moves_to_another_worker(engine: ProcessEngine) -> None:
    async with CodeMode(engine=engine) as cm:
        worker = await stripping_worker(engine, cm)
        os.kill(worker.pid, signal.SIGSTOP)
        run = asyncio.ensure_future(cm.exec(TYPESCRIPT))
        await wait_until(lambda: bool(worker.strips), "the strip was sent")
        worker.kill("because the test stopped it")  # the host's decision, not the script's doing
        result = await run
        assert (result.status, texts(result), result.error) == ("completed", ["42"], None)
        assert worker.pid not in engine.worker_pids()


async def test_a_worker_strips_while_it_runs_cells(engine: ProcessEngine) -> None:
    async with CodeMode(engine=engine) as cm:
        busy = await cm.exec("while (true) {}", yield_time_ms=100)  # a cell that never yields
        assert busy.status == "running" and busy.cell_id is not None
        result = await cm.exec(TYPESCRIPT)  # stripped on the same worker, on its stripper's thread
        assert (result.status, texts(result)) == ("completed", ["42"])
        assert (await cm.wait(busy.cell_id, terminate=True)).status == "terminated"
