"""Issue 22 point 3 on real worker processes: a fatal script kills the worker it shares with
other sessions' cells; those cells are replayed on workers of their own and complete with the
right output, and the cell that killed the worker (twice) fails with the real reason."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from tests.conftest import process_only

from codemode import CodeMode, ExecResult, Tool
from codemode._protocol.types import TextItem
from codemode.engines import ProcessEngine

pytestmark = [process_only, pytest.mark.integration]

FATAL = '"a".repeat(2**27 + 10).split("")'
VICTIM = """
const t0 = Date.now(), r0 = Math.random();
text("v{n} start");
const [a, b] = await Promise.all([tools.later({ms: 40, v: "a"}), tools.later({ms: 1, v: "b"})]);
await new Promise(r => setTimeout(r, 1500));
const c = await tools.later({ms: 1, v: "c"});
text("v{n} " + a + b + c + " " + t0 + " " + r0);
"""


async def later(args: dict[str, Any]) -> str:
    await asyncio.sleep(args["ms"] / 1000)
    return args["v"]


def texts(result: ExecResult) -> list[str]:
    return [item.text for item in result.items if isinstance(item, TextItem)]


async def test_innocent_cells_survive_a_worker_killed_by_another_session() -> None:
    calls: list[str] = []

    async def counted(args: dict[str, Any]) -> str:
        calls.append(args["v"])
        return await later(args)

    tool = Tool("later", "Returns v after ms.", counted)
    async with ProcessEngine(workers=1) as engine:
        async with CodeMode(engine=engine) as attacker, CodeMode(tools=[tool], engine=engine) as victim:
            cells = [await victim.exec(VICTIM.replace("{n}", str(n)), yield_time_ms=300) for n in range(3)]
            assert all(cell.status == "running" for cell in cells), cells
            killed = await attacker.exec(FATAL, yield_time_ms=60_000)
            assert killed.status == "failed"
            assert killed.error is not None and "ran out of memory" in killed.error
            for n, cell in enumerate(cells):
                assert cell.cell_id is not None
                done = await victim.wait(cell.cell_id, yield_time_ms=60_000)
                assert done.status == "completed", done.error
                # The first observation had the start; the rest comes once, with the clock and
                # Math.random the script read before its worker died.
                assert texts(cell) == [f"v{n} start"]
                (line,) = texts(done)
                assert re.fullmatch(rf"v{n} abc \d+ 0\.\d+", line), line
            assert sorted(calls) == sorted("abc" * 3)  # no call ran twice
            again = await attacker.exec("text('alive')")
            assert texts(again) == ["alive"]
