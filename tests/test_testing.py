"""`codemode.testing`: the example in its docstring runs as written."""

from __future__ import annotations

import asyncio

from codemode import CodeMode
from codemode.errors import EngineError
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


async def test_typescript_goes_to_the_fake_stripper_and_javascript_does_not() -> None:
    engine = FakeEngine(strip=lambda code: code.replace(": number", ""))
    async with CodeMode(engine=engine) as cm:
        run = asyncio.ensure_future(cm.exec("const a: number = 1;\ntext(a);"))
        cell = await engine.next_cell()
        cell.finish()
        assert (await run).status == "completed"
        run = asyncio.ensure_future(cm.exec("text(1);"))
        plain = await engine.next_cell()
        plain.finish()
        await run
    assert cell.program.code == "const a = 1;\ntext(a);"
    assert engine.stripped == ["const a: number = 1;\ntext(a);"]  # JavaScript is never stripped


async def test_a_fake_stripper_that_fails_fails_the_exec_with_its_error() -> None:
    def fail(code: str) -> str:
        raise EngineError("the stripper's engine stopped")

    engine = FakeEngine(strip=fail)
    async with CodeMode(engine=engine) as cm:
        result = await cm.exec("const a: number = 1;")
    assert (result.status, result.error) == ("failed", "the stripper's engine stopped")
    assert engine.started_cells.empty()  # no script ran
