"""The trace of nested calls, on the real engine: a record per call on `ExecResult.tool_calls`
(since the previous observation) and `CodeMode.tool_calls(cell_id)` (the whole cell), and
OpenTelemetry spans read back from the SDK's in-memory exporter.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from codemode import CodeMode, Limits, ToolError, UsageError
from codemode._protocol.calls import TRACED_ARGUMENT_CHARS
from codemode.tools import requires_approval

T = TypeVar("T")

LIVENESS_S = 60.0
LONG_YIELD_MS = 120_000


async def within(awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout(LIVENESS_S):
        return await awaitable


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def fail(why: str) -> None:
    """Always fails."""
    raise ToolError(why)


async def hang() -> None:
    """Never returns."""
    await asyncio.Event().wait()


@requires_approval
def guarded() -> str:
    """Needs approval."""
    return "ran"


TOOLS = [add, fail, hang, guarded]


@pytest.fixture
async def cm() -> AsyncIterator[CodeMode]:
    async with CodeMode(tools=TOOLS) as session:
        yield session


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def traced(exporter: InMemorySpanExporter) -> AsyncIterator[CodeMode]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with CodeMode(tools=TOOLS, tracer_provider=provider) as session:
        yield session
    provider.shutdown()


# -- records -----------------------------------------------------------------------------------
async def test_every_call_is_recorded_with_its_outcome(cm: CodeMode) -> None:
    before = time.time()
    code = """
    text(await tools.add({ a: 1, b: 2 }));
    try { await tools.fail({ why: "broken" }); } catch (e) { text(e); }
    try { await tools.add({ a: "x" }); } catch (e) { text("bad args"); }
    """
    result = await within(cm.exec(code))
    assert result.status == "completed"
    rows = [(r.call_id, r.tool_name, r.arguments, r.outcome, r.error) for r in result.tool_calls]
    assert rows[0] == ("1", "add", '{"a":1,"b":2}', "ok", None)
    assert rows[1] == ("2", "fail", '{"why":"broken"}', "error", "broken")
    assert rows[2][:4] == ("3", "add", '{"a":"x"}', "error")
    assert "got invalid arguments" in (rows[2][4] or "")
    for record in result.tool_calls:
        assert record.cell_id == result.cell_id
        assert before <= record.started_at <= time.time()
        assert record.duration_s >= 0
    assert result.cell_id is not None
    assert cm.tool_calls(result.cell_id) == list(result.tool_calls)  # kept after the cell closed


async def test_each_observation_gets_the_calls_that_ended_since_the_previous_one(cm: CodeMode) -> None:
    code = "await tools.add({ a: 1, b: 1 }); yield_control();\n"
    code += "await tools.add({ a: 2, b: 2 }); await tools.fail({ why: 'x' })"
    first = await within(cm.exec(code, yield_time_ms=LONG_YIELD_MS))
    assert first.status == "running" and first.cell_id is not None
    assert [r.arguments for r in first.tool_calls] == ['{"a":1,"b":1}']
    second = await within(cm.wait(first.cell_id, yield_time_ms=LONG_YIELD_MS))
    assert second.status == "failed"
    assert [r.arguments for r in second.tool_calls] == ['{"a":2,"b":2}', '{"why":"x"}']
    assert [r.call_id for r in cm.tool_calls(first.cell_id)] == ["1", "2", "3"]


async def test_rejected_and_cancelled_calls_are_recorded(cm: CodeMode) -> None:
    code = "try { await tools.guarded(); } catch (e) { text(e); } tools.hang(); await tools.guarded();"
    result = await within(cm.exec(code, yield_time_ms=LONG_YIELD_MS))
    assert result.cell_id is not None
    await cm.reject(result.cell_id, result.pending_approvals[0].call_id, reason="no")
    while len(cm.pending_approvals(result.cell_id)) < 1:
        await within(cm.wait(result.cell_id, yield_time_ms=LONG_YIELD_MS))
    stopped = await within(cm.wait(result.cell_id, terminate=True))
    records = cm.tool_calls(result.cell_id)
    assert [(r.tool_name, r.outcome, r.error) for r in records] == [
        ("guarded", "rejected", "no"),
        ("hang", "cancelled", None),
        ("guarded", "cancelled", None),
    ]
    assert {r.outcome for r in stopped.tool_calls} == {"cancelled"}


async def test_long_arguments_are_shortened_in_records(cm: CodeMode) -> None:
    result = await within(cm.exec(f'await tools.fail({{ why: "{"w" * 5000}" }})'))
    [record] = result.tool_calls
    assert record.arguments.startswith('{"why":"www')
    full = json.dumps({"why": "w" * 5000}, separators=(",", ":"))
    assert record.arguments.endswith(f"… ({len(full)} characters)")
    assert len(record.arguments) < TRACED_ARGUMENT_CHARS + 50


async def test_calls_over_the_limit_and_unknown_tools_are_recorded_too() -> None:
    async with CodeMode(tools=TOOLS, limits=Limits(max_tool_calls_per_cell=1)) as cm:
        code = "await tools.add({ a: 1, b: 1 });\n"
        code += "try { await tools.add({ a: 1, b: 1 }); } catch (e) { text(e); }"
        result = await within(cm.exec(code))
    assert [(r.call_id, r.outcome) for r in result.tool_calls] == [("1", "ok"), ("2", "error")]
    assert "Nested tool call limit reached" in (result.tool_calls[1].error or "")


async def test_unknown_cells_are_refused(cm: CodeMode) -> None:
    with pytest.raises(UsageError, match="exec cell 42 not found"):
        cm.tool_calls("42")


# -- OpenTelemetry spans --------------------------------------------------------------------------
def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


async def test_exec_and_wait_are_spans_and_nested_calls_their_children(
    traced: CodeMode, exporter: InMemorySpanExporter
) -> None:
    code = "text(await tools.add({ a: 1, b: 2 })); yield_control();\n"
    code += "try { await tools.fail({ why: 'no' }) } catch {}"
    first = await within(traced.exec(code, yield_time_ms=LONG_YIELD_MS))
    assert first.cell_id is not None
    await within(traced.wait(first.cell_id, yield_time_ms=LONG_YIELD_MS))
    spans = exporter.get_finished_spans()

    [exec_span] = by_name(spans, "execute_tool exec")
    [wait_span] = by_name(spans, "execute_tool wait")
    [add_span] = by_name(spans, "execute_tool add")
    [fail_span] = by_name(spans, "execute_tool fail")
    assert exec_span.attributes is not None and wait_span.attributes is not None
    assert dict(exec_span.attributes) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "exec",
        "codemode.cell.id": first.cell_id,
        "codemode.cell.status": "running",
    }
    assert wait_span.attributes["codemode.cell.status"] == "completed"
    assert add_span.parent is not None and exec_span.context is not None
    assert add_span.parent.span_id == exec_span.context.span_id
    assert fail_span.parent is not None and wait_span.context is not None
    assert fail_span.parent.span_id == wait_span.context.span_id
    assert add_span.attributes is not None and dict(add_span.attributes) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "add",
        "gen_ai.tool.call.id": "1",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.arguments": '{"a":1,"b":2}',
        "codemode.cell.id": first.cell_id,
        "codemode.tool_call.outcome": "ok",
    }
    assert add_span.status.status_code is StatusCode.UNSET
    assert fail_span.attributes is not None
    assert fail_span.attributes["codemode.tool_call.outcome"] == "error"
    assert fail_span.attributes["error.type"] == "error"
    assert (fail_span.status.status_code, fail_span.status.description) == (StatusCode.ERROR, "no")


async def test_a_failed_script_and_a_rejected_call_are_error_spans(
    traced: CodeMode, exporter: InMemorySpanExporter
) -> None:
    result = await within(traced.exec("await tools.guarded()", yield_time_ms=LONG_YIELD_MS))
    assert result.cell_id is not None
    await traced.reject(result.cell_id, result.pending_approvals[0].call_id, reason="denied")
    await within(traced.wait(result.cell_id))
    spans = exporter.get_finished_spans()
    exec_span = by_name(spans, "execute_tool exec")[0]
    assert exec_span.attributes is not None and exec_span.attributes["codemode.pending_approvals"] == 1
    [call] = by_name(spans, "execute_tool guarded")
    assert call.attributes is not None and call.attributes["codemode.tool_call.outcome"] == "rejected"
    assert (call.status.status_code, call.status.description) == (StatusCode.ERROR, "denied")
    [wait_span] = by_name(spans, "execute_tool wait")
    assert wait_span.attributes is not None and wait_span.attributes["codemode.cell.status"] == "failed"
    assert (wait_span.status.status_code, wait_span.status.description) == (StatusCode.ERROR, "denied")


@pytest.mark.slow
def test_without_opentelemetry_nothing_is_imported_and_execs_work() -> None:
    script = """
import asyncio, sys
sys.modules["opentelemetry"] = None  # as if it were not installed: any import of it fails
from codemode import CodeMode

def add(a: int, b: int) -> int:
    "Add."
    return a + b

async def main():
    async with CodeMode(tools=[add], isolation="in-process") as cm:
        result = await cm.exec("text(await tools.add({ a: 1, b: 2 }))")
    assert result.status == "completed", result
    assert [r.outcome for r in result.tool_calls] == ["ok"]
    assert not any(name.startswith("opentelemetry.") for name in sys.modules), "imported"
    print("ok")

asyncio.run(main())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("imported_first", [True, False], ids=["api-imported-first", "api-imported-later"])
def test_a_global_provider_set_after_the_session_started_records_its_next_execs(imported_first: bool) -> None:
    """Without a provider spans are skipped (they would record nothing); one set globally later
    is used from the next exec on. Until the application imports the API none can be set, so
    it is not imported either (a first exec's ~10 ms). In a child: the global provider can be
    set once a process."""
    script = """
import asyncio, sys
IMPORTED_FIRST = sys.argv[1] == "1"
if IMPORTED_FIRST:
    from opentelemetry import trace
from codemode import CodeMode

def add(a: int, b: int) -> int:
    "Add."
    return a + b

async def main():
    async with CodeMode(tools=[add]) as cm:
        before = await cm.exec("text(await tools.add({ a: 1, b: 2 }))")
        imported = any(name.startswith("opentelemetry") for name in sys.modules)
        assert imported == IMPORTED_FIRST, sorted(sys.modules)
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        after = await cm.exec("text(await tools.add({ a: 2, b: 3 }))")
    assert (before.status, after.status) == ("completed", "completed")
    names = sorted(span.name for span in exporter.get_finished_spans())
    assert names == ["execute_tool add", "execute_tool exec"], names
    print("ok")

asyncio.run(main())
"""
    argv = [sys.executable, "-c", script, "1" if imported_first else "0"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr
