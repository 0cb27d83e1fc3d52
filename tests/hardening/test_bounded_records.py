"""Bounded records and output floods (issue 19 points 5 and 7): whatever a script sends, the trace,
the approval lines and the buffered output stay bounded, and a flood drops output with a notice
instead of failing the cell."""

from __future__ import annotations

import asyncio
import functools
import json
import re
import subprocess
import sys
import textwrap
from typing import Any, get_args

import pytest
from tests.conftest import ISOLATION, MakeCodeMode
from tests.hardening._support import texts

import codemode._session.session as session_module
from codemode import CodeMode, ExecResult, Limits, TextItem, Tool, ToolError, UsageError, to_model
from codemode._engine.base import OutputDroppedEvent
from codemode._engine.miniracer._cell import _message_problem
from codemode._engine.miniracer._isolate import CHANNEL_ERROR
from codemode._engine.process import _protocol as wire
from codemode._output import approx_tokens, model_items
from codemode._protocol.calls import TRACED_ARGUMENT_CHARS, TRACED_ERROR_CHARS, PendingApproval
from codemode._session.trace import KeptRecords
from codemode.formats import Api

MIB = 1024 * 1024
EMPTY_N = '{"n":""}'
NOTICE = re.compile(r"^\[output limit reached: (\d+) output items? \((\d+) characters\) dropped here; ")


async def nothing(args: dict[str, Any]) -> None:
    return None


INTEGER_TOOL = Tool(
    "count", "Needs an integer.", nothing, input_schema={"type": "object", "properties": {"n": {"type": "integer"}}}
)


def long_failure(args: dict[str, Any]) -> str:
    raise ToolError("refused: " + "e" * 9_000)


FAILING_TOOL = Tool("fails", "Always fails with a long text.", long_failure)


# --- trace records: capped texts ----------------------------------------------------------------


async def test_trace_records_cap_argument_and_error_texts(make_cm: MakeCodeMode) -> None:
    cm = await make_cm(tools=[INTEGER_TOOL])
    result = await cm.exec(
        'const big = "q".repeat(300000); let seen = "";'
        "for (let i = 0; i < 7; i++) { try { await tools.count({n: big}) } catch (e) { seen = e } }"
        "text(String(seen.length))",
        yield_time_ms=60_000,
    )
    assert result.status == "completed", result.error
    assert result.cell_id is not None
    error_chars = int(texts(result)[0])
    assert error_chars > 300_000  # the script gets the whole schema error...
    records = cm.tool_calls(result.cell_id)
    assert len(records) == 7
    for record in records:
        assert record.outcome == "error"
        assert record.error is not None
        # ...the trace keeps a documented size of it, and says how long it was.
        assert record.error.endswith(f"… ({error_chars} characters)")
        assert len(record.error) < TRACED_ERROR_CHARS + 40
        assert record.arguments.endswith(f"… ({300_000 + len(EMPTY_N)} characters)")
        assert len(record.arguments) < TRACED_ARGUMENT_CHARS + 40


async def test_short_texts_stay_whole_in_records(make_cm: MakeCodeMode) -> None:
    cm = await make_cm(tools=[INTEGER_TOOL])
    result = await cm.exec('try { await tools.count({n: "seven"}) } catch (e) { text(e) }')
    assert result.cell_id is not None
    (record,) = cm.tool_calls(result.cell_id)
    assert record.error == texts(result)[0]
    assert record.arguments == '{"n":"seven"}'


# --- trace records: the session's byte budget -------------------------------------------------


def test_closed_cells_are_forgotten_oldest_first_for_room() -> None:
    async def scenario() -> None:
        from codemode._session.trace import CallTrace

        kept = KeptRecords(max_bytes=100_000, max_closed_cells=50)
        traces = []
        for cell in range(5):
            trace = CallTrace(str(cell), None, max_records=1000, kept=kept)
            for call in range(8):
                trace.start(str(call), "fails", "{}").end("error", "x" * 2_500)
            kept.close(trace)
            traces.append(trace)
            assert kept.bytes <= 100_000
        per_cell = traces[0].bytes
        assert 100_000 // 3 < per_cell < 100_000 // 2
        kept_cells = [str(cell) for cell in range(5) if kept.closed_records(str(cell)) is not None]
        assert kept_cells == ["3", "4"]  # the newest that fit; "0".."2" went first
        assert kept.bytes == 2 * per_cell
        # An open cell that would need more than the whole budget keeps what fits and counts the rest.
        greedy = CallTrace("9", None, max_records=1000, kept=kept)
        for call in range(40):
            greedy.start(str(call), "fails", "{}").end("error", "x" * 2_500)
        assert kept.closed_records("3") is None and kept.closed_records("4") is None
        assert 0 < len(greedy.records) < 40
        assert len(greedy.records) + greedy.dropped == 40
        assert kept.bytes <= 100_000

    asyncio.run(scenario())


def test_closed_cells_are_counted_too() -> None:
    async def scenario() -> None:
        from codemode._session.trace import CallTrace

        kept = KeptRecords(max_bytes=10 * MIB, max_closed_cells=3)
        sizes = []
        for cell in range(6):
            trace = CallTrace(str(cell), None, max_records=10, kept=kept)
            trace.start("1", "t", "{}").end("ok")
            kept.close(trace)
            sizes.append(trace.bytes)
        assert [c for c in map(str, range(6)) if c in kept] == ["3", "4", "5"]
        assert kept.bytes == sum(sizes[3:])

    asyncio.run(scenario())


async def test_a_session_keeps_records_within_its_budget(
    make_cm: MakeCodeMode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_module, "KeptRecords", functools.partial(KeptRecords, max_bytes=150_000))
    cm = await make_cm(tools=[FAILING_TOOL])
    cell_ids = []
    for _ in range(6):
        result = await cm.exec(
            "for (let i = 0; i < 25; i++) { try { await tools.fails({}) } catch (e) {} }", yield_time_ms=60_000
        )
        assert result.status == "completed", result.error
        assert result.cell_id is not None and len(result.tool_calls) == 25  # observers still see every record
        cell_ids.append(result.cell_id)
    kept = []
    for cell_id in cell_ids:
        try:
            kept.append((cell_id, cm.tool_calls(cell_id)))
        except UsageError as exc:
            assert "no longer kept" in str(exc)
    assert [cell_id for cell_id, _ in kept] == cell_ids[-len(kept) :]  # the oldest went first
    assert 1 <= len(kept) < 6
    assert all(len(records) == 25 for _, records in kept)
    texts_kept = sum(len(r.error or "") + len(r.arguments) for _, records in kept for r in records)
    assert texts_kept < 150_000


_ERROR_FLOOD_CHILD = textwrap.dedent(
    """
    import asyncio, gc, json, sys, tracemalloc
    from codemode import CodeMode, Tool

    async def nothing(args):
        return None

    async def main():
        tool = Tool("typed", "Needs a number.", nothing,
                    input_schema={"type": "object", "properties": {"v": {"type": "number"}}})
        async with CodeMode(tools=[tool], isolation=sys.argv[1]) as cm:
            await cm.exec("1")
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            longest = 0
            for _ in range(3):
                r = await cm.exec('const s = "w".repeat(3 * 2**20); for (let i = 0; i < 50; i++) '
                                  '{ try { await tools.typed({v: s}) } catch (e) {} }', yield_time_ms=300000)
                assert r.status == "completed", r.error
                longest = max([longest] + [len(x.error or "") for x in cm.tool_calls(r.cell_id)])
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
            print(json.dumps({"before": before, "after": after, "longest": longest}))

    asyncio.run(main())
    """
)


@pytest.mark.slow
def test_invalid_calls_with_huge_arguments_do_not_grow_host_memory() -> None:
    child = subprocess.run(
        [sys.executable, "-c", _ERROR_FLOOD_CHILD, ISOLATION],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["longest"] < TRACED_ERROR_CHARS + 40
    # 150 records of 3 MiB errors kept whole would be about 450 MiB of Python strings. The measure is
    # what Python still holds, not RSS: in-process, V8's freed heaps and malloc's arenas stay in RSS.
    assert report["after"] - report["before"] < 16 * MIB, report


# --- approval lines count against the output budget -------------------------------------------


def pending_calls(count: int, argument_chars: int = 40) -> tuple[PendingApproval, ...]:
    return tuple(PendingApproval("4", str(i), "wipe", {"path": "p" * argument_chars}) for i in range(1, count + 1))


def approval_text(result: ExecResult) -> str:
    last = model_items(result)[-1]
    assert isinstance(last, TextItem)
    return last.text


def test_approval_lines_fill_what_the_output_left_then_a_count() -> None:
    result = ExecResult(
        "running", "4", (TextItem("o" * 400),), max_output_tokens=500, pending_approvals=pending_calls(700)
    )
    lines = approval_text(result).split("\n")
    shown, summary = lines[:-1], lines[-1]
    assert all(line.startswith("Waiting for approval: call ") for line in shown)
    assert summary == f"{700 - len(shown)} more calls wait for approval"
    assert 1 < len(shown) < 700
    costs = [approx_tokens(line + "\n") for line in shown]
    left = 500 - approx_tokens("o" * 400)
    assert sum(costs) <= left
    following = f'Waiting for approval: call {len(shown) + 1} tools.wipe({{"path":"{"p" * 40}"}})'
    assert sum(costs) + approx_tokens(following + "\n") > left  # the next line would not have fitted


def test_all_approval_lines_when_they_fit() -> None:
    result = ExecResult("running", "4", (), max_output_tokens=10_000, pending_approvals=pending_calls(5))
    lines = approval_text(result).split("\n")
    assert len(lines) == 5
    assert lines[4] == 'Waiting for approval: call 5 tools.wipe({"path":"' + "p" * 40 + '"})'


def test_the_first_approval_line_stays_when_the_output_took_the_budget() -> None:
    result = ExecResult(
        "running", "4", (TextItem("o" * 900),), max_output_tokens=20, pending_approvals=pending_calls(2)
    )
    assert approval_text(result).split("\n") == [
        'Waiting for approval: call 1 tools.wipe({"path":"' + "p" * 40 + '"})',
        "1 more call waits for approval",
    ]


@pytest.mark.parametrize("api", get_args(Api))
def test_thousands_of_waiting_calls_stay_within_the_budget_in_every_api(api: Api) -> None:
    result = ExecResult("running", "4", (), max_output_tokens=800, pending_approvals=pending_calls(6_000, 250))
    rendered = json.dumps(to_model(result, api), ensure_ascii=False)
    assert len(rendered) < 800 * 4 + 2_000  # not 6,000 lines of 300 characters
    assert "more calls wait for approval" in rendered


async def test_a_live_cell_lists_what_fits_and_counts_the_rest(make_cm: MakeCodeMode) -> None:
    def erase(path: str) -> str:
        """Erase a path."""
        return "erased"

    cm = await make_cm(tools=[Tool.from_function(erase, requires_approval=True)])
    first = await cm.exec(
        'const ps = []; for (let i = 0; i < 150; i++) ps.push(tools.erase({path: "/d/" + "n".repeat(120) + i})'
        ".catch(() => 0)); await Promise.all(ps)",
        yield_time_ms=60_000,
    )
    assert first.cell_id is not None
    deadline = asyncio.get_running_loop().time() + 60
    while len(cm.pending_approvals(first.cell_id)) < 150:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    result = await cm.wait(first.cell_id, yield_time_ms=10, max_tokens=300)
    assert len(result.pending_approvals) == 150  # the host still gets every call
    lines = approval_text(result).split("\n")
    assert 1 < len(lines) - 1 < 150
    assert lines[-1] == f"{150 - (len(lines) - 1)} more calls wait for approval"
    await cm.wait(first.cell_id, terminate=True)


# --- output floods drop, the cell goes on ------------------------------------------------------


def dropped_counts(items: list[str]) -> tuple[int, int]:
    """(items, characters) the notices among `items` report."""
    counts = [NOTICE.match(text) for text in items]
    return sum(int(m.group(1)) for m in counts if m), sum(int(m.group(2)) for m in counts if m)


async def observe_all(cm: CodeMode, result: ExecResult) -> tuple[ExecResult, list[list[str]]]:
    observed = [texts(result)]
    while result.status == "running":
        assert result.cell_id is not None
        result = await cm.wait(result.cell_id, yield_time_ms=150)
        observed.append(texts(result))
    return result, observed


@pytest.mark.slow
async def test_a_flood_observed_often_drops_with_a_notice_and_completes(make_cm: MakeCodeMode) -> None:
    calls: list[Any] = []

    async def after(args: dict[str, Any]) -> str:
        calls.append(args)
        return "answered"

    cm = await make_cm(tools=[Tool("after", "Called after the flood.", after)])
    piece = 3 * 2**18  # 786,432 characters, more than the engine's ring holds at once
    first = await cm.exec(
        f'const s = "f".repeat({piece}); for (let i = 0; i < 110; i++) text(String(i % 10) + s);'
        'const answer = await tools.after({n: 1}); store("answer", answer)',
        yield_time_ms=150,
    )
    final, observed = await observe_all(cm, first)
    assert (final.status, final.error) == ("completed", None)
    assert calls == [{"n": 1}]  # the script ran on after the flood, its call answered
    every = [text for observation in observed for text in observation]
    kept = [text for text in every if not NOTICE.match(text)]
    dropped, dropped_chars = dropped_counts(every)
    assert dropped > 0
    assert len(kept) + dropped == 110  # nothing lost silently
    assert sum(map(len, kept)) + dropped_chars == 110 * (piece + 1)
    for observation in observed:
        assert sum(len(t) for t in observation if not NOTICE.match(t)) <= 32 * MIB
    assert (await cm.exec('text(load("answer"))')).items == (TextItem("answered"),)


async def test_a_flood_under_a_small_buffer_names_that_limit(make_cm: MakeCodeMode) -> None:
    cm = await make_cm(limits=Limits(max_buffered_output_chars=5_000))
    first = await cm.exec(
        'const s = "g".repeat(700000); for (let i = 0; i < 12; i++) text(s); text("last")', yield_time_ms=150
    )
    final, observed = await observe_all(cm, first)
    assert (final.status, final.error) == ("completed", None)
    every = [text for observation in observed for text in observation]
    assert dropped_counts(every)[0] == 13
    assert any("at most 5000 characters of output between two observations" in text for text in every)


def test_the_engine_reports_dropped_output_in_checked_messages() -> None:
    assert _message_problem({"k": "dropped", "items": 3, "chars": 120}) is None
    for forged in (
        {"k": "dropped", "items": 0, "chars": 1},
        {"k": "dropped", "items": -2, "chars": 1},
        {"k": "dropped", "items": 1, "chars": -1},
        {"k": "dropped", "items": "1", "chars": 1},
        {"k": "dropped", "items": True, "chars": 1},
        {"k": "dropped", "items": 1.5, "chars": 1},
        {"k": "dropped", "items": 1},
        {"k": "dropped", "items": 1, "chars": 1, "extra": 0},
    ):
        assert _message_problem(forged) == CHANNEL_ERROR, forged
    event = OutputDroppedEvent(4, 99)
    packed = wire.Events("7", [event])
    assert wire.from_wire(wire.to_wire(packed)) == packed


async def test_output_the_engine_dropped_joins_the_cells_notice() -> None:
    from codemode.testing import FakeEngine

    engine = FakeEngine()
    async with CodeMode(engine=engine, limits=Limits(max_buffered_output_chars=1_000)) as cm:
        run = asyncio.ensure_future(cm.exec("flood()"))
        cell = await engine.next_cell()
        cell.emit_text("kept")
        cell.emit(OutputDroppedEvent(5, 4_000_000))
        cell.emit_text("after the drop, before an observation")
        cell.finish()
        result = await run
    assert (result.status, texts(result)) == (
        "completed",
        [
            "kept",
            "[output limit reached: 6 output items (4000037 characters) dropped here; a cell may buffer at most "
            "1000 characters of output between two observations, so print less or observe sooner]",
        ],
    )
