"""`codemode.testing`: the example in its docstring runs as written."""

from __future__ import annotations

import asyncio

from codemode import CodeMode
from codemode.testing import FakeEngine


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def test_the_script_sees_the_tool_result() -> None:
    engine = FakeEngine()
    async with CodeMode(tools=[add], engine=engine) as cm:
        run = asyncio.ensure_future(cm.exec("text(await tools.add({a: 1, b: 2}))"))
        cell = await engine.next_cell()
        call_id = cell.call_tool("add", '{"a": 1, "b": 2}')
        ok, payload = await cell.resolution(call_id)
        cell.emit_text(payload)
        cell.finish()
        result = await run
    assert (ok, payload) == (True, "3") and result.status == "completed"
    assert cell.program.code == "text(await tools.add({a: 1, b: 2}))"
    assert cell.commands == ["resolve 1", "release"]
