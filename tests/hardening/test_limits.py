"""Per-session limits: each has a default, a model-facing error naming it, and leaves the session usable."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from tests.conftest import MakeCodeMode
from tests.hardening._support import texts

from codemode import CodeMode, Limits, Tool, UsageError
from codemode._output import model_items
from codemode._protocol.config import DEFAULT_LIMITS
from codemode._session.limits import memory_limit_error, time_limit_error
from waiting import Checkpoint, SpiedEngine

MIB = 1024 * 1024
SMALL_HEAP = 32 * MIB
GROW = "const hog = []; while (true) hog.push(new Array(100000).fill(1));"


async def echo(args: dict[str, Any]) -> Any:
    return args


ECHO = Tool("echo", "Return the arguments.", echo)


# --- defaults and configuration ---------------------------------------------------------------


def test_defaults() -> None:
    limits = CodeMode().limits
    assert limits == DEFAULT_LIMITS == Limits()
    assert limits.heap_limit_bytes == 256 * MIB
    assert limits.cell_time_limit_ms is None
    assert limits.max_concurrent_cells == 64
    assert limits.max_tool_calls_per_cell == 10_000
    assert limits.max_source_bytes == 1 * MIB
    assert limits.max_buffered_output_chars == 32 * MIB
    assert memory_limit_error(limits.heap_limit_bytes).startswith(
        "JavaScript memory limit reached (heap limit 256 MiB per cell)"
    )


@pytest.mark.parametrize(
    "config",
    [
        {"heap_limit_bytes": -1},
        {"max_concurrent_cells": 0},
        {"max_tool_calls_per_cell": -5},
        {"max_source_bytes": 1.5},
        {"max_buffered_output_chars": True},
        {"cell_time_limit_ms": 0},
    ],
)
def test_bad_configuration_is_a_usage_error(config: dict[str, Any]) -> None:
    with pytest.raises(UsageError, match=next(iter(config))):
        Limits(**config)


# --- heap -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(f'text("before"); {GROW}', id="synchronous"),
        pytest.param(f'text("before"); await null; {GROW}', id="after-await"),
        pytest.param(f'text("before"); await tools.echo({{}}); {GROW}', id="after-tool-call"),
        pytest.param(
            f'text("before"); setTimeout(() => {{ {GROW} }}, 1); await new Promise(() => {{}});',
            id="in-timer-callback",
        ),
        pytest.param(
            f'text("before"); Promise.resolve().then(() => {{ {GROW} }}); await new Promise(() => {{}});',
            id="in-detached-continuation",
        ),
    ],
)
async def test_heap_limit_fails_the_cell_and_names_the_limit(make_cm: MakeCodeMode, source: str) -> None:
    cm = await make_cm(tools=[ECHO], limits=Limits(heap_limit_bytes=SMALL_HEAP))
    started = time.monotonic()
    result = await cm.exec('store("k", 1);' + source, yield_time_ms=20_000)
    assert time.monotonic() - started < 10
    assert result.status == "failed"
    assert texts(result) == ["before"]  # output produced before the overflow is kept
    assert result.error == memory_limit_error(SMALL_HEAP)
    assert "heap limit 32 MiB per cell" in model_items(result)[-1].text  # type: ignore[union-attr]
    assert cm.stored_values == {}  # a stopped cell commits nothing... unless the script finished it
    after = await cm.exec('text("still usable")')
    assert (after.status, texts(after)) == ("completed", ["still usable"])


async def test_heap_limit_of_a_yielded_cell_is_reported_to_the_next_wait(
    make_cm: MakeCodeMode, spied_engine: SpiedEngine
) -> None:
    cm = await make_cm(limits=Limits(heap_limit_bytes=SMALL_HEAP), engine=spied_engine)
    result = await cm.exec(f'text("a"); yield_control(); await null; {GROW}', yield_time_ms=20_000)
    assert (result.status, texts(result)) == ("running", ["a"])
    assert result.cell_id is not None
    await spied_engine.stopped()  # nobody observes; the watchdog stops the cell meanwhile
    assert cm.running_cells == [result.cell_id]
    final = await cm.wait(result.cell_id, yield_time_ms=100)
    assert (final.status, final.error) == ("failed", memory_limit_error(SMALL_HEAP))


@pytest.mark.slow
async def test_heap_limit_in_one_cell_leaves_a_concurrent_cell_alone(make_cm: MakeCodeMode) -> None:
    cm = await make_cm(limits=Limits(heap_limit_bytes=SMALL_HEAP))
    calm = await cm.exec("await new Promise((r) => setTimeout(r, 1500)); text('calm done')", yield_time_ms=0)
    assert calm.cell_id is not None
    hog = await cm.exec(f"await null; {GROW}", yield_time_ms=20_000)
    assert hog.status == "failed"
    final = await cm.wait(calm.cell_id, yield_time_ms=20_000)
    assert (final.status, texts(final)) == ("completed", ["calm done"])


# --- wall-clock budget --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("while (true) {}", id="sync-loop"),
        pytest.param("await null; while (true) {}", id="loop-after-await"),
        pytest.param("await new Promise(() => {})", id="parked"),
        pytest.param("setTimeout(() => { while (true) {} }, 1); await new Promise(() => {})", id="timer-loop"),
    ],
)
async def test_time_limit_stops_the_cell_and_says_why(make_cm: MakeCodeMode, source: str) -> None:
    cm = await make_cm(limits=Limits(cell_time_limit_ms=300))
    started = time.monotonic()
    result = await cm.exec(f'text("before"); store("k", 1); {source}', yield_time_ms=20_000)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 3
    assert (result.status, texts(result)) == ("failed", ["before"])
    assert result.error == time_limit_error(300)
    assert "300 ms" in (result.error or "")
    assert cm.stored_values == {}
    assert cm.running_cells == []


async def test_time_limit_cancels_a_pending_tool(make_cm: MakeCodeMode) -> None:
    seen: list[str] = []

    async def hang(args: dict[str, Any]) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    cm = await make_cm(tools=[Tool("hang", "Never returns.", hang)], limits=Limits(cell_time_limit_ms=200))
    result = await cm.exec("await tools.hang({})", yield_time_ms=20_000)
    assert (result.status, result.error) == ("failed", time_limit_error(200))
    await asyncio.sleep(0)
    assert seen == ["cancelled"]


async def test_time_limit_reaches_a_yielded_cell_and_a_fast_cell_is_untouched(
    make_cm: MakeCodeMode, spied_engine: SpiedEngine
) -> None:
    cm = await make_cm(limits=Limits(cell_time_limit_ms=400), engine=spied_engine)
    fast = await cm.exec('await new Promise((r) => setTimeout(r, 50)); text("fast")')
    assert (fast.status, texts(fast)) == ("completed", ["fast"])
    slow = await cm.exec('text("1"); yield_control(); while (true) {}', yield_time_ms=20_000)
    assert (slow.status, texts(slow)) == ("running", ["1"])
    assert slow.cell_id is not None
    await spied_engine.stopped()  # the limit struck, with nobody observing
    final = await cm.wait(slow.cell_id)
    assert (final.status, final.error) == ("failed", time_limit_error(400))
    # terminate after the limit struck: the failure is the outcome (completion wins).
    again = await cm.exec("while (true) {}", yield_time_ms=0)
    assert again.cell_id is not None
    await spied_engine.stopped()
    terminated = await cm.wait(again.cell_id, terminate=True)
    assert (terminated.status, terminated.error) == ("failed", time_limit_error(400))


# --- concurrent cells ---------------------------------------------------------------------------


async def test_concurrent_cell_limit_refuses_exec_until_a_cell_is_collected(make_cm: MakeCodeMode) -> None:
    cm = await make_cm(limits=Limits(max_concurrent_cells=2))
    first = await cm.exec("await new Promise(() => {})", yield_time_ms=0)
    second = await cm.exec('yield_control(); text("finished")', yield_time_ms=10_000)  # done, unobserved
    assert (first.cell_id, second.cell_id) == ("1", "2")
    refused = await cm.exec('text("nope")')
    assert refused.status == "rejected"
    assert refused.cell_id is None  # no cell was created
    assert refused.error is not None
    assert refused.error.startswith("Too many open exec cells (limit 2 per session; open: 1, 2).")
    assert "terminate: true" in refused.error
    assert [item.text for item in model_items(refused)] == [refused.error]  # type: ignore[union-attr]
    collected = await cm.wait("2")
    assert (collected.status, texts(collected)) == ("completed", ["finished"])
    third = await cm.exec('text("yes")')
    assert (third.cell_id, third.status, texts(third)) == ("3", "completed", ["yes"])
    await cm.wait("1", terminate=True)
    assert cm.running_cells == []


# --- nested tool calls --------------------------------------------------------------------------


async def test_tool_call_limit_rejects_calls_over_the_budget(make_cm: MakeCodeMode) -> None:
    calls: list[Any] = []

    def count(args: dict[str, Any]) -> int:
        calls.append(args)
        return len(calls)

    cm = await make_cm(tools=[Tool("count", "Count calls.", count)], limits=Limits(max_tool_calls_per_cell=3))
    result = await cm.exec(
        """
        for (let i = 0; i < 5; i++) {
          try { text(await tools.count({})); } catch (e) { text(`rejected: ${e}`); }
        }
        """
    )
    assert result.status == "completed"
    assert texts(result)[:3] == ["1", "2", "3"]
    assert texts(result)[3:] == [
        "rejected: Nested tool call limit reached: this cell already made 3 tool calls (the limit per cell). "
        "Start a new exec to make more calls."
    ] * 2
    assert len(calls) == 3
    uncaught = await cm.exec("await Promise.all([1, 2, 3, 4].map(() => tools.count({})))")
    assert uncaught.status == "failed"
    assert (uncaught.error or "").startswith("Nested tool call limit reached")
    fresh = await cm.exec("text(await tools.count({}))")  # every cell has its own budget
    assert fresh.status == "completed"


# --- source size --------------------------------------------------------------------------------


async def test_source_size_limit(make_cm: MakeCodeMode) -> None:
    cm = await make_cm(limits=Limits(max_source_bytes=1000))
    fits = "text(1);" + " " * 992
    assert len(fits.encode()) == 1000
    assert (await cm.exec(fits)).status == "completed"
    too_big = await cm.exec(fits + " ")
    assert (too_big.status, too_big.cell_id) == ("rejected", None)
    assert too_big.error == (
        "exec source is too large: 1001 bytes (limit 1000 bytes per exec). "
        "Send a shorter script; keep large data in tools or `store`, not in the source."
    )
    multibyte = await cm.exec("text('" + "é" * 500 + "')")  # 1000 bytes of é alone
    assert multibyte.status == "rejected" and "limit 1000 bytes" in (multibyte.error or "")
    with_pragma = await cm.exec('// @exec: {"yield_time_ms": 10}\n' + fits)
    assert with_pragma.status == "rejected"  # the whole input counts
    assert (await cm.exec('text("ok")')).cell_id == "2"  # refusals consume no cell id


async def test_default_source_limit_refuses_a_huge_source_quickly(cm: CodeMode) -> None:
    started = time.monotonic()
    result = await cm.exec("text(1);//" + "x" * (2 * MIB))
    assert time.monotonic() - started < 1
    assert result.status == "rejected"
    assert "(limit 1 MiB per exec)" in (result.error or "")


# --- buffered output ----------------------------------------------------------------------------


async def test_output_over_the_buffer_is_dropped_with_a_notice(make_cm: MakeCodeMode) -> None:
    cm = await make_cm(limits=Limits(max_buffered_output_chars=100))
    result = await cm.exec('for (let i = 0; i < 30; i++) text("0123456789");')
    assert result.status == "completed"
    assert texts(result)[:10] == ["0123456789"] * 10
    assert texts(result)[10:] == [
        "[output limit reached: 20 output items (200 characters) dropped here; a cell may buffer at most "
        "100 characters of output between two observations, so print less or observe sooner]"
    ]
    single = await cm.exec('text("x".repeat(500)); text("small")')
    assert texts(single) == [
        "[output limit reached: 2 output items (505 characters) dropped here; a cell may buffer at most "
        "100 characters of output between two observations, so print less or observe sooner]"
    ]
    images = await cm.exec('image("data:image/png;base64," + "A".repeat(200))')
    assert texts(images)[0].startswith("[output limit reached: 1 output item (222 characters)")


async def test_output_buffer_is_per_observation(make_cm: MakeCodeMode) -> None:
    cm = await make_cm(limits=Limits(max_buffered_output_chars=100))
    result = await cm.exec(
        'const pause = () => new Promise((r) => setTimeout(r, 300));'
        'text("a".repeat(80)); yield_control(); await pause(); text("b".repeat(80)); text("c".repeat(80));'
        'yield_control(); await pause(); text("d".repeat(80));',
        yield_time_ms=10_000,
    )
    assert texts(result) == ["a" * 80]
    assert result.cell_id is not None
    second = await cm.wait(result.cell_id)
    assert texts(second)[0] == "b" * 80
    assert texts(second)[1].startswith("[output limit reached: 1 output item (80 characters)")
    third = await cm.wait(result.cell_id)
    assert (third.status, texts(third)) == ("completed", ["d" * 80])


async def test_unobserved_output_stays_bounded(make_cm: MakeCodeMode) -> None:
    produced = Checkpoint()
    cm = await make_cm(tools=[produced.tool], limits=Limits(max_buffered_output_chars=10_000))
    result = await cm.exec(
        'yield_control(); for (let i = 1; ; i++) { text("z".repeat(1000)); await null; if (i === 30) tools.checkpoint(); }',
        yield_time_ms=10_000,
    )
    assert result.cell_id is not None
    await produced.reached()  # 30 000 characters, far more than 10 000, were produced meanwhile
    final = await cm.wait(result.cell_id, terminate=True)
    assert final.status == "terminated"
    kept = [t for t in texts(final) if not t.startswith("[output limit reached")]
    assert sum(map(len, kept)) <= 10_000
    assert texts(final)[-1].startswith("[output limit reached:")
