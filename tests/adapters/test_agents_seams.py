"""The Agents SDK seams under real use: concurrent runs, the SDK's own approvals, SDK MCP server
objects and SDK tool failures as nested tools, driven by the SDK's `ScriptedModel`."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import (
    Agent,
    RunConfig,
    RunContextWrapper,
    Runner,
    RunResult,
    ToolApprovalItem,
    ToolCallOutputItem,
    function_tool,
)
from agents.mcp import MCPServerStdio, MCPServerStreamableHttp
from agents.testing import ScriptedModel, assistant_message, function_call
from openai.types.responses import ResponseCustomToolCall

from codemode import CodeMode, Defaults, UsageError
from codemode.adapters.agents import CodeModeTools

pytestmark = pytest.mark.integration

NO_TRACING = RunConfig(tracing_disabled=True)
PY_SERVER = Path(__file__).parent.parent / "mcp_servers" / "py_server.py"


def custom_exec(call_id: str, source: str) -> ResponseCustomToolCall:
    return ResponseCustomToolCall(type="custom_tool_call", call_id=call_id, name="exec", input=source)


def outputs(result: RunResult) -> list[Any]:
    return [item.output for item in result.new_items if isinstance(item, ToolCallOutputItem)]


@function_tool
async def whoami(ctx: RunContextWrapper[dict[str, str]], delay: float) -> str:
    """The run's user, after a delay."""
    await asyncio.sleep(delay)
    return ctx.context["user"]


async def test_concurrent_runs_each_give_their_nested_calls_their_own_context() -> None:
    code_mode = CodeModeTools([whoami])

    def agent(delay: float) -> Agent[Any]:
        # The same call id in every run, as scripted models (and replays) produce.
        script = f"text(await tools.whoami({{ delay: {delay} }}))"
        model = ScriptedModel([[custom_exec("c1", script)], [assistant_message("ok")]])
        return Agent(name="who", model=model, tools=code_mode.tools)

    users = {"alice": 0.4, "bob": 0.0, "carol": 0.2}
    async with code_mode:
        results = await asyncio.gather(
            *(
                Runner.run(agent(delay), "who", context={"user": user}, run_config=NO_TRACING)
                for user, delay in users.items()
            )
        )
    for user, result in zip(users, results, strict=True):
        [output] = outputs(result)
        assert output.endswith(f"Output:\n{user}")


async def test_a_wait_hands_its_own_run_context_to_the_cell_it_drives() -> None:
    code_mode = CodeModeTools([whoami])
    script = '// @exec: {"yield_time_ms": 50}\nawait new Promise((r) => setTimeout(r, 300));\ntext(await tools.whoami({ delay: 0 }))'
    async with code_mode:
        started = await Runner.run(
            Agent(name="a", model=ScriptedModel([[custom_exec("c1", script)], [assistant_message("later")]]), tools=code_mode.tools),
            "start",
            context={"user": "alice"},
            run_config=NO_TRACING,
        )
        assert outputs(started)[0].startswith("Script running with cell ID 1\n")
        waiter = Agent(
            name="b",
            model=ScriptedModel(
                [[function_call("wait", {"cell_id": 1, "yield_time_ms": 5000}, call_id="w1")], [assistant_message("done")]]
            ),
            tools=code_mode.tools,
        )
        waited = await Runner.run(waiter, "wait", context={"user": "bob"}, run_config=NO_TRACING)
    [output] = outputs(waited)
    assert output[0].text.startswith("Script completed\n") and [part.text for part in output[1:]] == ["bob"]


def reveal_tool(revealed: list[str]) -> Any:
    def reveal(topic: str) -> str:
        """Reveal a secret."""
        revealed.append(topic)
        return f"the secret of {topic}"

    return function_tool(reveal, needs_approval=True)


async def test_a_nested_call_needing_approval_is_an_sdk_interruption_and_approval_continues_the_cell() -> None:
    revealed: list[str] = []
    # The policy decides first: "pie" runs unasked, only "cake" reaches the user.
    code_mode = CodeModeTools(
        [reveal_tool(revealed)], approve=lambda call: "ask" if call.arguments["topic"] == "cake" else True
    )
    script = 'text(await tools.reveal({ topic: "pie" }));\ntext(await tools.reveal({ topic: "cake" }));\ntext("end")'
    model = ScriptedModel([[custom_exec("c1", script)], [assistant_message("told")]])
    agent = Agent(name="keeper", model=model, tools=code_mode.tools)
    async with code_mode:
        first = await Runner.run(agent, "tell me", run_config=NO_TRACING)
        [interruption] = first.interruptions
        assert isinstance(interruption, ToolApprovalItem) and interruption.tool_name == "exec"
        [pending] = code_mode.pending_approvals(interruption)
        assert (pending.cell_id, pending.tool_name, pending.arguments) == ("1", "reveal", {"topic": "cake"})
        assert revealed == ["pie"] and outputs(first) == []

        state = first.to_state()
        state.approve(interruption)
        resumed = await Runner.run(agent, state, run_config=NO_TRACING)

        assert resumed.final_output == "told"
        [output] = outputs(resumed)
        assert output.startswith("Script completed\n")
        assert output.endswith("Output:\nthe secret of pie\nthe secret of cake\nend")
        assert revealed == ["pie", "cake"]
        assert [record.cell_id for record in code_mode.session.tool_calls("1")] == ["1", "1"]


async def test_rejecting_the_interruption_rejects_the_nested_call_and_the_cell_goes_on() -> None:
    revealed: list[str] = []
    code_mode = CodeModeTools([reveal_tool(revealed)], api="chat")
    script = 'try { await tools.reveal({ topic: "cake" }) } catch (e) { text(`refused: ${e}`) }'
    model = ScriptedModel(
        [
            [function_call("exec", {"code": script}, call_id="f1")],
            # The model sends the cell id as a number, as the MCP front end accepts it.
            [function_call("wait", {"cell_id": 1}, call_id="f2")],
            [assistant_message("ok")],
        ]
    )
    agent = Agent(name="keeper", model=model, tools=code_mode.tools)
    async with code_mode:
        first = await Runner.run(agent, "tell me", run_config=NO_TRACING)
        [interruption] = first.interruptions
        state = first.to_state()
        state.reject(interruption, rejection_message="not today")
        resumed = await Runner.run(agent, state, run_config=NO_TRACING)
    rejected, waited = outputs(resumed)
    assert rejected == "not today"  # the SDK's rejection output for the exec call
    assert waited[0].text.startswith("Script completed\n")
    assert [part.text for part in waited[1:]] == ["refused: not today"]
    assert revealed == []


async def test_sequential_approvals_in_one_cell_each_become_an_interruption_without_waiting_out_the_yield() -> None:
    deleted: list[str] = []

    def delete_file(path: str) -> str:
        """Delete a file."""
        deleted.append(path)
        return f"deleted {path}"

    # Yields far longer than the liveness bound: only prompt interruptions keep the run short.
    code_mode = CodeModeTools(
        [function_tool(delete_file, needs_approval=True)],
        defaults=Defaults(exec_yield_time_ms=30_000, wait_yield_time_ms=30_000),
    )
    script = 'text(await tools.delete_file({ path: "/tmp/a" }));\ntext(await tools.delete_file({ path: "/tmp/b" }));\ntext("end")'
    model = ScriptedModel(
        [
            [custom_exec("c1", script)],
            # The resumed exec reports call 2 waiting; the model waits on the cell.
            [function_call("wait", {"cell_id": 1}, call_id="w1")],
            [assistant_message("tidied")],
        ]
    )
    agent = Agent(name="tidier", model=model, tools=code_mode.tools)
    asked: list[tuple[str | None, str | None, list[Any], list[str]]] = []  # what each interruption asks; what ran by then
    started = time.monotonic()
    async with code_mode:
        result = await Runner.run(agent, "tidy up", run_config=NO_TRACING)
        while result.interruptions and len(asked) < 5:
            state = result.to_state()
            for interruption in result.interruptions:
                calls = code_mode.pending_approvals(interruption)
                paths = [call.arguments["path"] for call in calls]
                asked.append((interruption.tool_name, interruption.call_id, paths, list(deleted)))
                state.approve(interruption)
            result = await Runner.run(agent, state, run_config=NO_TRACING)
    elapsed = time.monotonic() - started

    assert asked == [("exec", "c1", ["/tmp/a"], []), ("wait", "w1", ["/tmp/b"], ["/tmp/a"])]
    assert deleted == ["/tmp/a", "/tmp/b"]
    assert result.final_output == "tidied" and not result.interruptions
    resumed_exec, waited = outputs(result)
    assert resumed_exec.startswith("Script running with cell ID 1\n")
    assert resumed_exec.endswith('Output:\ndeleted /tmp/a\nWaiting for approval: call 2 tools.delete_file({"path":"/tmp/b"})')
    assert waited[0].text.startswith("Script completed\n")
    assert [part.text for part in waited[1:]] == ["deleted /tmp/b", "end"]
    assert elapsed < 5, f"two approvals took {elapsed:.1f} s (the yield time is 30 s)"


async def test_a_nested_sdk_tool_failure_rejects_with_its_real_error_in_and_outside_a_run() -> None:
    @function_tool
    def forecast(city: str) -> str:
        """Today's forecast."""
        raise ValueError(f"no forecast for {city}")

    script = 'try { await tools.forecast({ city: "Atlantis" }) } catch (e) { text(`failed: ${e}`) }'
    async with CodeMode(tools=[forecast]) as cm:
        outside = await cm.exec(script)
    assert outside.items[0].text == "failed: no forecast for Atlantis"  # type: ignore[union-attr]

    code_mode = CodeModeTools([forecast])
    model = ScriptedModel([[custom_exec("c1", script)], [assistant_message("ok")]])
    result = await code_mode.run(Agent(name="a", model=model, tools=code_mode.tools), "go", run_config=NO_TRACING)
    [output] = outputs(result)
    assert output.endswith("Output:\nfailed: no forecast for Atlantis")
    [record] = [item for item in result.new_items if isinstance(item, ToolCallOutputItem)]
    assert "An error occurred" not in record.output


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    """py_server.py over streamable HTTP on 127.0.0.1 and a free port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(PY_SERVER), "--http", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the HTTP test server did not come up")
                time.sleep(0.05)  # polling for the port, not waiting a fixed time
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


ADD_AND_PID = "text(JSON.stringify(await tools.mcp__py__add({ a: 1, b: 2 })));\ntext(JSON.stringify(await tools.mcp__py__pid({})))"


async def test_sdk_mcp_server_objects_are_shared_nested_servers_like_mcp_servers_entries(http_url: str) -> None:
    stdio = MCPServerStdio(params={"command": sys.executable, "args": [str(PY_SERVER)]}, name="py")
    http = MCPServerStreamableHttp(params={"url": http_url}, name="py")
    config = {"mcpServers": {"py": {"command": sys.executable, "args": [str(PY_SERVER)]}}}
    async with (
        CodeMode(mcp_servers=config) as by_config,
        CodeMode(tools=[stdio]) as by_object,
        CodeMode(tools=[http]) as by_http,
    ):
        expected = await by_config.exec(ADD_AND_PID)
        for session in (by_object, by_http):
            assert "mcp__py__add" in session.exec_description()
        from_object = await by_object.exec(ADD_AND_PID)
        from_http = await by_http.exec(ADD_AND_PID)
    # One process serves the config entry and the SDK object alike; the same result shape.
    assert [item.text for item in from_object.items] == [item.text for item in expected.items]  # type: ignore[union-attr]
    assert from_http.items[0].text == expected.items[0].text  # type: ignore[union-attr]
    assert '"structuredContent":{"total":3,' in expected.items[0].text  # type: ignore[union-attr]

    code_mode = CodeModeTools([stdio])
    model = ScriptedModel([[custom_exec("c1", "text((await tools.mcp__py__add({ a: 2, b: 5 })).structuredContent.total)")], [assistant_message("7")]])
    result = await code_mode.run(Agent(name="a", model=model, tools=code_mode.tools), "add", run_config=NO_TRACING)
    assert outputs(result)[0].endswith("Output:\n7")


async def test_sdk_mcp_server_settings_code_mode_cannot_apply_are_refused() -> None:
    filtered = MCPServerStdio(
        params={"command": sys.executable, "args": [str(PY_SERVER)]},
        name="py",
        tool_filter={"allowed_tool_names": ["add"]},  # type: ignore[arg-type]
    )
    with pytest.raises(UsageError, match="tool_filter"):
        CodeModeTools([filtered])
