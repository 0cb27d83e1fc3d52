"""Nested tool calls: `await tools.<name>(args)` into Python (spec 1.7, 1.8, 3.3, 4; cases 59-67).

Cases 59-67 are adapted from Codex's built-in and MCP tools to Python tools. Argument rules
(4.2), results as fresh JSON values (4.3) and rejections as plain message strings (4.4) are
exercised on the real engine.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from codemode import CodeMode, TextItem, Tool, ToolError

from ._support import MakeCodeMode, texts

EXPECTS_OBJECT = "tool `record` expects a JSON object for arguments"


class Recorder:
    """A sync tool `record` that keeps the arguments it was called with."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def __call__(self, arguments: Any) -> str:
        self.calls.append(arguments)
        return "ok"


async def run(cm: CodeMode, code: str) -> list[str]:
    result = await cm.exec(code)
    assert (result.status, result.error) == ("completed", None), texts(result)
    return texts(result)


def tool(name: str, handler: Callable[[Any], Any], **kwargs: Any) -> Tool:
    return Tool(name=name, description=f"The {name} tool.", handler=handler, **kwargs)


# -- arguments (spec 4.1, 4.2) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ("tools.record()", {}),
        ("tools.record(undefined)", {}),
        ("tools.record(() => 1)", {}),
        ("tools.record(Symbol('s'))", {}),
        ("tools.record({})", {}),
        ("tools.record({ a: 1, b: 'x', c: [true, null] })", {"a": 1, "b": "x", "c": [True, None]}),
        ("tools.record({ a: undefined, b: NaN, f() {} })", {"b": None}),
        ('tools.record({ when: new Date("2025-01-02T03:04:05Z") })', {"when": "2025-01-02T03:04:05.000Z"}),
        ("tools.record({ toJSON() { return { via: 'toJSON' }; } })", {"via": "toJSON"}),
        ("tools.record({ first: 1 }, { second: 2 })", {"first": 1}),
        ("tools.record({ s: 'héllo 😀' })", {"s": "héllo 😀"}),
    ],
)
async def test_function_tool_arguments(make_cm: MakeCodeMode, call: str, expected: Any) -> None:
    recorder = Recorder()
    session = await make_cm(tools=[tool("record", recorder)])
    assert await run(session, f"text(await {call});") == ["ok"]
    assert recorder.calls == [expected]


@pytest.mark.parametrize("argument", ['"a string"', "[1, 2]", "5", "null", "true", "'{}'"])
async def test_function_tool_needs_an_object(make_cm: MakeCodeMode, argument: str) -> None:
    recorder = Recorder()
    session = await make_cm(tools=[tool("record", recorder)])
    code = f"try {{ await tools.record({argument}); text('resolved'); }} catch (e) {{ text(typeof e); text(e); }}"
    assert await run(session, code) == ["string", EXPECTS_OBJECT]
    assert recorder.calls == []


async def test_unserializable_argument_throws_synchronously(make_cm: MakeCodeMode) -> None:
    recorder = Recorder()
    session = await make_cm(tools=[tool("record", recorder)])
    code = (
        "const c = {}; c.c = c; let promise = 'none';\n"
        "try { promise = tools.record(c); } catch (e) { text(typeof e); text(String(e).split('\\n')[0]); }\n"
        "text(String(promise)); text(String(tools.record({}) instanceof Promise));"
    )
    out = await run(session, code)
    assert out[:2] == ["string", "TypeError: Converting circular structure to JSON"]
    assert out[2:] == ["none", "true"]


async def test_freeform_tool_takes_a_string(make_cm: MakeCodeMode) -> None:
    received: list[Any] = []

    def apply_patch(patch: Any) -> dict[str, Any]:
        received.append(patch)
        return {}

    session = await make_cm(tools=[tool("apply_patch", apply_patch, kind="freeform")])
    patch = "*** Begin Patch\\n*** Add File: a.txt\\n+hello\\n*** End Patch"
    assert await run(session, f'text(await tools.apply_patch("{patch}"));') == ["{}"]  # case 61
    assert received == ["*** Begin Patch\n*** Add File: a.txt\n+hello\n*** End Patch"]
    for argument in ("", "{}", "['x']", "5", "null"):
        code = f"try {{ await tools.apply_patch({argument}); }} catch (e) {{ text(e); }}"
        assert await run(session, code) == ["tool `apply_patch` expects a string input"]
    assert len(received) == 1


async def test_schema_validation_rejects_with_the_field(make_cm: MakeCodeMode) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    recorder = Recorder()
    session = await make_cm(tools=[tool("record", recorder, input_schema=schema)])
    out = await run(session, "try { await tools.record({ n: 'x' }); } catch (e) { text(e); }\ntext(await tools.record({ n: 1 }));")
    assert out[0].startswith("tool `record` got invalid arguments at `n`: ")
    assert out[1] == "ok"
    assert recorder.calls == [{"n": 1}]


# -- results (spec 4.3) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text", '"text"'),
        ("", '""'),
        (None, "null"),
        (0, "0"),
        (1.5, "1.5"),
        (True, "true"),
        ([1, "a", None], '[1,"a",null]'),
        ((1, 2), "[1,2]"),
        ({"a": {"b": [1]}}, '{"a":{"b":[1]}}'),
        ({"bad": float("nan"), "inf": [float("inf")]}, '{"bad":null,"inf":[null]}'),
        ({1: "int key"}, '{"1":"int key"}'),
        ("héllo 😀 \u2028", '"héllo 😀 \u2028"'),
    ],
)
async def test_results_are_json_values(make_cm: MakeCodeMode, value: Any, expected: str) -> None:
    session = await make_cm(tools=[tool("give", lambda arguments: value)])
    assert await run(session, "text(JSON.stringify(await tools.give()));") == [expected]


async def test_each_result_is_a_fresh_value(make_cm: MakeCodeMode) -> None:
    shared = {"list": [1]}
    session = await make_cm(tools=[tool("give", lambda arguments: shared)])
    code = "const a = await tools.give(); const b = await tools.give(); a.list.push(2);\ntext(JSON.stringify([a === b, b.list]));"
    assert await run(session, code) == ["[false,[1]]"]


async def test_large_result(make_cm: MakeCodeMode) -> None:
    session = await make_cm(tools=[tool("big", lambda arguments: "x" * 3_000_000)])
    assert await run(session, "text((await tools.big()).length);") == ["3000000"]


async def test_unencodable_result_rejects(make_cm: MakeCodeMode) -> None:
    session = await make_cm(tools=[tool("odd", lambda arguments: {"s": {1, 2}})])
    out = await run(session, "try { await tools.odd(); text('resolved'); } catch (e) { text(e); }")
    assert out[0].startswith("tool `odd` returned a value that cannot be sent to JavaScript as JSON")


async def test_case60_structured_result(make_cm: MakeCodeMode) -> None:
    def exec_command(cmd: str) -> dict[str, Any]:
        """Run a command (simulated)."""
        return {"chunk_id": "c1", "wall_time_seconds": 0.01, "exit_code": 0, "output": cmd.removeprefix("printf ")}

    session = await make_cm(tools=[exec_command])
    out = await run(session, 'text(JSON.stringify(await tools.exec_command({ cmd: "printf marker" })));')
    result = json.loads(out[0])
    assert result["output"] == "marker" and result["exit_code"] == 0 and result["chunk_id"]
    assert "session_id" not in result


async def test_case62_mcp_shaped_result_and_tool_listing(make_cm: MakeCodeMode) -> None:
    def echo(message: str) -> dict[str, Any]:
        """Echo a message."""
        return {"content": [], "structuredContent": {"echo": f"ECHOING: {message}"}, "isError": False}

    session = await make_cm(tools=[Tool.from_function(echo, name="echo", namespace="mcp__rmcp__")])
    code = (
        'const { content, structuredContent, isError } = await tools.mcp__rmcp__echo({ message: "ping" });\n'
        "text(structuredContent.echo); text(String(isError)); text(content.length);\n"
        'text(String(Object.keys(tools).includes("mcp__rmcp__echo"))); text(typeof tools.mcp__rmcp__echo);'
    )
    assert await run(session, code) == ["ECHOING: ping", "false", "0", "true", "function"]


# -- errors (spec 4.4; cases 59, 63) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("exception", "message"),
    [
        (ValueError("bad thing happened"), "bad thing happened"),
        (ToolError("the tool says no"), "the tool says no"),
        (RuntimeError(), "RuntimeError"),
        (KeyError("k"), "'k'"),
    ],
)
@pytest.mark.parametrize("is_async", [False, True])
async def test_tool_exceptions_reject_with_the_message(
    make_cm: MakeCodeMode, exception: Exception, message: str, is_async: bool
) -> None:
    def fail(arguments: Any) -> Any:
        raise exception

    async def fail_async(arguments: Any) -> Any:
        raise exception

    session = await make_cm(tools=[tool("fail", fail_async if is_async else fail)])
    code = (
        "try { await tools.fail({}); text('no-exception'); }\n"
        "catch (e) { text(typeof e); text(String(e.message)); text(`caught:${e?.message ?? String(e)}`); }"
    )
    out = await run(session, code)
    assert out == ["string", "undefined", f"caught:{message}"]
    assert "Traceback" not in out[2]


async def test_case59_failing_tool_is_caught(make_cm: MakeCodeMode) -> None:
    def exec_command(cmd: str) -> str:
        """Run a command."""
        return cmd

    session = await make_cm(tools=[exec_command])
    result = await session.exec(
        "try { await tools.exec_command({}); text('no-exception'); } catch (e) { text(`caught:${e?.message ?? String(e)}`); }"
    )
    assert result.ok
    out = texts(result)
    assert len(out) == 1 and out[0].startswith("caught:") and "cmd" in out[0]


async def test_case63_missing_argument_rejects_naming_it(make_cm: MakeCodeMode) -> None:
    def echo(message: str) -> str:
        """Echo."""
        return message

    session = await make_cm(tools=[echo])
    out = await run(session, "try { await tools.echo({}); } catch (e) { text(e); }")
    assert "message" in out[0] and "required" in out[0].lower()


async def test_uncaught_tool_rejection_fails_the_cell_with_the_message(make_cm: MakeCodeMode) -> None:
    def fail(arguments: Any) -> Any:
        raise ToolError("no such file: a.txt")

    session = await make_cm(tools=[tool("fail", fail)])
    result = await session.exec('text("before");\nawait tools.fail({});\ntext("after");')
    assert (result.status, texts(result), result.error) == ("failed", ["before"], "no such file: a.txt")


# -- concurrency (spec 3.3; case 65) ---------------------------------------------------------------


async def test_case65_sync_tool_calls_run_in_parallel(make_cm: MakeCodeMode) -> None:
    barrier = threading.Barrier(2)

    def sync_work(arguments: Any) -> str:
        barrier.wait(timeout=5)  # both calls must be running at once
        time.sleep(0.3)
        return "ok"

    session = await make_cm(tools=[tool("test_sync_tool", sync_work)])
    started = time.monotonic()
    out = await run(session, "text(JSON.stringify(await Promise.all([tools.test_sync_tool({}), tools.test_sync_tool({})])));")
    assert out == ['["ok","ok"]']
    assert time.monotonic() - started < 1.6


async def test_slow_sync_tool_does_not_block_other_cells(make_cm: MakeCodeMode) -> None:
    release = threading.Event()

    def slow(arguments: Any) -> str:
        return "released" if release.wait(timeout=10) else "timed out"

    def unblock(arguments: Any) -> str:
        release.set()
        return "unblocked"

    session = await make_cm(tools=[tool("slow", slow), tool("unblock", unblock)])
    first = await session.exec('// @exec: {"yield_time_ms": 50}\ntext(await tools.slow({}));')
    assert first.status == "running"
    assert await run(session, "text(await tools.unblock({}));") == ["unblocked"]
    final = await session.wait("1", yield_time_ms=10_000)
    assert (final.status, texts(final)) == ("completed", ["released"])


async def test_sync_function_tool_runs_off_the_loop(make_cm: MakeCodeMode) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def where(label: str) -> str:
        """Report the thread."""
        seen.append(threading.get_ident())
        return label

    session = await make_cm(tools=[where, tool("raw_where", lambda arguments: where("raw"))])
    assert await run(session, 'text(await tools.where({ label: "a" })); text(await tools.raw_where());') == ["a", "raw"]
    assert len(seen) == 2 and loop_thread not in seen


async def test_async_tools_run_concurrently(make_cm: MakeCodeMode) -> None:
    active = 0
    peak = 0

    async def nap(arguments: Any) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        active -= 1
        return int(arguments["i"])

    session = await make_cm(tools=[tool("nap", nap)])
    code = "const r = await Promise.all([0, 1, 2, 3, 4].map((i) => tools.nap({ i })));\ntext(JSON.stringify(r));"
    assert await run(session, code) == ["[0,1,2,3,4]"]
    assert peak == 5


async def test_background_cell_keeps_calling_tools(make_cm: MakeCodeMode) -> None:
    recorder = Recorder()
    session = await make_cm(tools=[tool("record", recorder)])
    first = await session.exec(
        '// @exec: {"yield_time_ms": 60000}\nyield_control();\n'
        "await new Promise((r) => setTimeout(r, 20));\nawait tools.record({ step: 1 });\nawait tools.record({ step: 2 });"
    )
    assert first.status == "running"
    async with asyncio.timeout(5):
        while len(recorder.calls) < 2:
            await asyncio.sleep(0.01)
    assert recorder.calls == [{"step": 1}, {"step": 2}]
    final = await session.wait("1")
    assert final.status == "completed"


async def test_tool_results_wait_for_a_busy_script(make_cm: MakeCodeMode) -> None:
    session = await make_cm(tools=[tool("quick", lambda arguments: "quick")])
    code = (
        "let got = 'pending';\nconst p = tools.quick().then((v) => { got = v; });\n"
        "const t0 = Date.now(); while (Date.now() - t0 < 100) {}\n"
        "text(got); await p; text(got);"
    )
    assert await run(session, code) == ["pending", "quick"]


# -- names (spec 1.7, 1.8; cases 64, 66, 67) -------------------------------------------------------


async def test_case64_names_are_normalized(make_cm: MakeCodeMode) -> None:
    session = await make_cm(
        tools=[
            tool("echo-tool", lambda arguments: "dash", namespace="mcp__rmcp__"),
            tool("1st tool", lambda arguments: "digit"),
        ]
    )
    code = (
        "text(await tools.mcp__rmcp__echo_tool({})); text(await tools._st_tool({}));\n"
        "text(JSON.stringify(ALL_TOOLS.map((t) => t.name)));"
    )
    assert await run(session, code) == ["dash", "digit", '["_st_tool","mcp__rmcp__echo_tool"]']


async def test_case66_namespaced_deferred_tool(make_cm: MakeCodeMode) -> None:
    calls: list[Any] = []

    def hidden(arguments: Any) -> str:
        calls.append(arguments)
        return "hidden-ok"

    session = await make_cm(
        tools=[
            Tool(
                name="hidden_dynamic_tool",
                description="A hidden dynamic tool.",
                handler=hidden,
                input_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                namespace="codex_app",
                namespace_description="Codex app tools.",
                deferred=True,
            )
        ]
    )
    code = (
        'const entry = ALL_TOOLS.find((t) => t.name === "codex_app__hidden_dynamic_tool");\n'
        "text(entry.description);\n"
        'text(await tools.codex_app__hidden_dynamic_tool({ city: "Paris" }));'
    )
    description, value = await run(session, code)
    for fragment in ("Codex app tools.", "A hidden dynamic tool.", "declare const tools:", "codex_app__hidden_dynamic_tool(args:"):
        assert fragment in description
    assert description.startswith("Codex app tools.\n\n")
    assert value == "hidden-ok"
    assert calls == [{"city": "Paris"}]


async def test_case67_first_tool_wins_a_name_collision(make_cm: MakeCodeMode) -> None:
    session = await make_cm(
        tools=[
            Tool(name="foo-bar", description="The dashed one.", handler=lambda arguments: "dashed"),
            Tool(name="foo_bar", description="The underscored one.", handler=lambda arguments: "underscored"),
        ]
    )
    code = "text(JSON.stringify(ALL_TOOLS.map((t) => t.name)));\ntext(ALL_TOOLS[0].description);\ntext(await tools.foo_bar({}));"
    names, description, value = await run(session, code)
    assert names == '["foo_bar"]'
    assert description.startswith("The dashed one.")
    assert value == "dashed"


async def test_exec_and_wait_are_never_nested_tools(make_cm: MakeCodeMode) -> None:
    session = await make_cm(
        tools=[tool("exec", lambda arguments: "x"), tool("wait", lambda arguments: "y"), tool("other", lambda arguments: "z")]
    )
    assert await run(session, "text(JSON.stringify(Object.keys(tools)));") == ['["other"]']


async def test_tool_declaration_in_all_tools(make_cm: MakeCodeMode) -> None:
    def weather(city: str, days: int = 1) -> dict[str, Any]:
        """Get the weather.

        Args:
            city: City name.
            days: How many days.
        """
        return {"city": city, "days": days}

    session = await make_cm(tools=[weather])
    out = await run(session, "text(ALL_TOOLS[0].description); text(JSON.stringify(await tools.weather({ city: 'Oslo' })));")
    assert out[0].startswith("Get the weather.\n\nexec tool declaration:\n```ts\ndeclare const tools: { weather(args: ")
    assert out[0].endswith("```")
    assert json.loads(out[1]) == {"city": "Oslo", "days": 1}


async def test_tool_raising_cancelled_error_rejects(make_cm: MakeCodeMode) -> None:
    async def inner_cancel(arguments: Any) -> str:
        raise asyncio.CancelledError  # e.g. a request the tool made was cancelled

    session = await make_cm(tools=[tool("inner_cancel", inner_cancel)])
    async with asyncio.timeout(5):
        out = await run(session, "try { await tools.inner_cancel({}); } catch (e) { text(e); }\ntext('after');")
    assert out == ["tool `inner_cancel` was cancelled", "after"]


async def test_numbers_beyond_2_53_reach_python_as_the_double_javascript_had() -> None:
    seen: list[object] = []

    def echo(value: float) -> float:
        """Echo a number."""
        seen.append(value)
        return value

    async with CodeMode([echo]) as cm:
        result = await cm.exec("text(await tools.echo({ value: 3.58e16 }) === 3.58e16)")
    assert [item.text for item in result.items if isinstance(item, TextItem)] == ["true"]
    assert seen == [3.58e16] and isinstance(seen[0], float)
