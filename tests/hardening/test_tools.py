"""Tools (and host callbacks) that misbehave: the script gets a string rejection, the host carries on."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from tests.conftest import MakeCodeMode
from tests.hardening._support import rss_bytes, texts

from codemode import Limits, Tool, ToolError
from codemode._output import model_items

CATCH = "try {{ text(JSON.stringify(await tools.{name}({args}))) }} catch (e) {{ text(`${{typeof e}}: ${{e}}`) }}"


class WeirdError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("even str() fails")


def circular() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


def deep() -> list[Any]:
    value: list[Any] = []
    for _ in range(100_000):
        value = [value]
    return value


RAISING = [
    (ValueError("boom"), "string: boom"),
    (ToolError("not allowed: /etc"), "string: not allowed: /etc"),
    (RuntimeError(), "string: RuntimeError"),
    (KeyError("k"), "string: 'k'"),
    (WeirdError(), "string: even str() fails"),
    (RecursionError("too deep"), "string: too deep"),
]


@pytest.mark.parametrize(("error", "seen"), RAISING, ids=[type(e).__name__ for e, _ in RAISING])
@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_raising_tool_rejects_with_a_string(
    make_cm: MakeCodeMode, loop_errors: list[Any], error: Exception, seen: str, flavour: str
) -> None:
    def sync_tool(args: Any) -> None:
        raise error

    async def async_tool(args: Any) -> None:
        raise error

    handler = sync_tool if flavour == "sync" else async_tool
    cm = await make_cm(tools=[Tool("bad", "Fails.", handler)])
    caught = await cm.exec(CATCH.format(name="bad", args="{}"))
    assert (caught.status, texts(caught)) == ("completed", [seen])
    uncaught = await cm.exec('text("before"); await tools.bad({})')
    assert (uncaught.status, texts(uncaught), uncaught.error) == ("failed", ["before"], seen.removeprefix("string: "))
    assert "Traceback" not in (uncaught.error or "")


NON_JSON = [
    ("object", lambda: object(), "cannot be sent to JavaScript as JSON"),
    ("set", lambda: {1, 2}, "cannot be sent to JavaScript as JSON"),
    ("bytes", lambda: b"\x00\xff", "cannot be sent to JavaScript as JSON"),
    ("tuple-key", lambda: {(1, 2): "v"}, "dictionary key (1, 2) is not a string"),
    ("circular", circular, "recursion"),
    ("deep", deep, "recursion"),
    ("generator", lambda: (i for i in range(3)), "cannot be sent to JavaScript as JSON"),
]


@pytest.mark.parametrize(("name", "make", "reason"), NON_JSON, ids=[n for n, _, _ in NON_JSON])
async def test_non_json_result_is_a_clear_rejection(
    make_cm: MakeCodeMode, loop_errors: list[Any], name: str, make: Any, reason: str
) -> None:
    cm = await make_cm(tools=[Tool("give", "Returns something odd.", lambda args: make())])
    result = await cm.exec(CATCH.format(name="give", args="{}"))
    assert result.status == "completed"
    [line] = texts(result)
    assert line.startswith("string: ")
    assert reason in line


async def test_json_edge_values_are_converted_like_json_stringify(make_cm: MakeCodeMode) -> None:
    value = {"nan": float("nan"), "inf": [float("inf"), -float("inf")], "tuple": (1, 2), 3: "int key", None: 0}
    cm = await make_cm(tools=[Tool("give", "Edge values.", lambda args: value)])
    result = await cm.exec(CATCH.format(name="give", args="{}"))
    # (JavaScript lists integer-like keys first)
    assert texts(result) == ['{"3":"int key","nan":null,"inf":[null,null],"tuple":[1,2],"null":0}']


async def test_typed_function_tool_with_a_wrong_return_value(make_cm: MakeCodeMode) -> None:
    def typed() -> int:
        return object()  # type: ignore[return-value]

    cm = await make_cm(tools=[typed])
    result = await cm.exec(CATCH.format(name="typed", args="{}"))
    assert texts(result)[0].startswith("string: ")


async def test_hanging_async_tool_yields_and_terminate_cancels_it(make_cm: MakeCodeMode, loop_errors: list[Any]) -> None:
    events: list[str] = []

    async def hang(args: Any) -> None:
        events.append("started")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    cm = await make_cm(tools=[Tool("hang", "Never returns.", hang)])
    result = await cm.exec('text("calling"); await tools.hang({}); text("never")', yield_time_ms=200)
    assert (result.status, texts(result)) == ("running", ["calling"])
    assert result.cell_id is not None
    other = await cm.exec('text("others still run")')  # a hanging tool blocks nothing else
    assert texts(other) == ["others still run"]
    final = await cm.wait(result.cell_id, terminate=True)
    assert final.status == "terminated"
    await asyncio.sleep(0)
    assert events == ["started", "cancelled"]


async def test_tool_that_ignores_cancellation_does_not_block_terminate(
    make_cm: MakeCodeMode, loop_errors: list[Any]
) -> None:
    finished = asyncio.Event()

    async def stubborn(args: Any) -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0.3)  # keeps going anyway, then returns a result nobody wants
        finished.set()
        return "late"

    cm = await make_cm(tools=[Tool("stubborn", "Ignores cancellation.", stubborn)])
    result = await cm.exec("await tools.stubborn({})", yield_time_ms=100)
    assert result.cell_id is not None
    started = time.monotonic()
    assert (await cm.wait(result.cell_id, terminate=True)).status == "terminated"
    assert time.monotonic() - started < 0.25
    await asyncio.wait_for(finished.wait(), 2)
    # Its late result goes nowhere, quietly (`loop_errors` would show it): it is handled within
    # a loop iteration of `finished`, well before the exec below has run.
    assert (await cm.exec('text("ok")')).status == "completed"


async def test_hanging_sync_tool_does_not_block_terminate(make_cm: MakeCodeMode, loop_errors: list[Any]) -> None:
    release = threading.Event()
    returning = threading.Event()

    def blocking(args: Any) -> str:
        release.wait(10)
        returning.set()
        return "late"

    cm = await make_cm(tools=[Tool("blocking", "Blocks a thread.", blocking)])
    result = await cm.exec("await tools.blocking({})", yield_time_ms=100)
    assert result.cell_id is not None
    started = time.monotonic()
    assert (await cm.wait(result.cell_id, terminate=True)).status == "terminated"
    assert time.monotonic() - started < 0.25
    release.set()
    assert await asyncio.to_thread(returning.wait, 10)  # its late result goes nowhere, quietly
    assert (await cm.exec('text("ok")')).status == "completed"


async def test_slow_tool_finishing_after_its_cell_completed(make_cm: MakeCodeMode, loop_errors: list[Any]) -> None:
    finished = asyncio.Event()

    async def work() -> None:
        await asyncio.sleep(0.2)
        finished.set()

    async def slow(args: Any) -> str:
        await asyncio.shield(work())
        return "late"

    cm = await make_cm(tools=[Tool("slow", "Slow.", slow)])
    result = await cm.exec('tools.slow({}); await new Promise((r) => setTimeout(r, 20)); text("done")')
    assert (result.status, texts(result)) == ("completed", ["done"])
    await asyncio.wait_for(finished.wait(), 30)  # the shielded work ends after its cell, quietly
    await asyncio.sleep(0)


@pytest.mark.slow
async def test_enormous_tool_output_is_truncated_and_bounded(make_cm: MakeCodeMode, loop_errors: list[Any]) -> None:
    big = "0123456789" * 2_000_000  # 20 M characters

    cm = await make_cm(tools=[Tool("flood", "Returns a lot.", lambda args: big)], limits=Limits(max_buffered_output_chars=25_000_000))
    before = rss_bytes()
    result = await cm.exec("const r = await tools.flood({}); text(r.length); text(r); text(r)", yield_time_ms=30_000)
    assert result.status == "completed"
    assert texts(result)[0] == "20000000"
    assert len(result.items) == 3  # the second copy would overflow the buffer: dropped, with a notice
    assert texts(result)[2].startswith("[output limit reached: 1 output item (20000000 characters)")
    model = model_items(result)
    assert len(model) == 2  # header + one truncated text item
    assert model[1].text.startswith("Warning: truncated output")  # type: ignore[union-attr]
    assert len(model[1].text) < 50_000  # type: ignore[union-attr]
    del result, model
    for _ in range(3):
        again = await cm.exec("const r = await tools.flood({}); text(r.length)")
        assert texts(again) == ["20000000"]
    assert rss_bytes() - before < 400 * 1024 * 1024  # bounded: nothing accumulates across execs


async def test_failing_notify_callback_loses_no_output(make_cm: MakeCodeMode) -> None:
    reported: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: reported.append(context))

    def on_notify(cell_id: str, text: str) -> None:
        raise RuntimeError("host callback bug")

    cm = await make_cm(on_notify=on_notify)
    result = await cm.exec('text("a"); notify("n"); text("b")')
    assert (result.status, texts(result)) == ("completed", ["a", "b"])
    assert [type(c.get("exception")) for c in reported] == [RuntimeError]


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_tool_calling_sys_exit_does_not_stop_the_host(
    make_cm: MakeCodeMode, loop_errors: list[Any], flavour: str
) -> None:
    def sync_exit(args: Any) -> None:
        raise SystemExit(3)

    async def async_exit(args: Any) -> None:
        raise SystemExit(3)

    cm = await make_cm(tools=[Tool("quit", "Exits.", sync_exit if flavour == "sync" else async_exit)])
    result = await cm.exec(CATCH.format(name="quit", args="{}"))
    assert texts(result) == ["string: tool `quit` tried to exit the process (SystemExit: 3)"]
    assert (await cm.exec('text("alive")')).status == "completed"
