"""The event loop of the processes codemode owns: uvloop where it is installed (Linux and macOS),
for `codemode mcp`/`exec` and the engine workers; the library keeps its caller's loop."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from codemode import CodeMode
from codemode._loop import run
from codemode.engines import ProcessEngine

uvloop = pytest.importorskip("uvloop", reason="uvloop is a dependency everywhere but Windows")


def test_run_returns_the_coroutines_value_on_uvloops_loop() -> None:
    async def main() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run(main()).startswith("uvloop")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_engine_workers_run_on_uvloop_and_the_caller_keeps_its_loop() -> None:
    engine = ProcessEngine(workers=1)
    try:
        async with CodeMode(engine=engine) as cm:
            result = await cm.exec('text("up")')
            assert result.items[0].text == "up"
            assert not type(asyncio.get_running_loop()).__module__.startswith("uvloop")
            pids = [worker.pid for worker in engine.pool.workers() if worker.ready]  # the spare may be starting
            assert pids
            for pid in pids:
                assert "uvloop" in Path(f"/proc/{pid}/maps").read_text(), pid
    finally:
        await engine.aclose()
