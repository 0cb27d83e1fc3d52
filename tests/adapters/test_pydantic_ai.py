"""Code mode in a real pydantic-ai agent run, driven by a `FunctionModel`.

The scripted model answers step n with the n-th tool call (or the final text); the assertions
read the messages pydantic-ai recorded (`result.all_messages()`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic_ai import (
    Agent,
    ApprovalRequired,
    FunctionToolset,
    ModelMessage,
    ModelResponse,
    ModelRetry,
    RunContext,
    TextPart,
    Tool,
    ToolCallPart,
)
from pydantic_ai.messages import BinaryContent, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.toolsets import WrapperToolset

from codemode import CodeMode, ToolCall
from codemode.adapters.pydantic_ai import CodeModeToolset

pytestmark = pytest.mark.integration


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first addend
        b: the second addend
    """
    return a + b


def scale(ctx: RunContext[int], value: int) -> dict[str, int]:
    """Multiply a value by the run's factor (its deps)."""
    return {"scaled": value * ctx.deps}


COMPOSE = "const sum = await tools.add({ a: 2, b: 3 });\nconst { scaled } = await tools.scale({ value: sum });\ntext(`${sum} scaled is ${scaled}`);"
YIELDS = '// @exec: {"yield_time_ms": 100}\ntext("started");\nawait new Promise((resolve) => setTimeout(resolve, 400));\ntext("finished");'
IMAGE = 'image("data:image/png;base64,iVBORw0KGgo=");'


def scripted(calls: list[tuple[str, dict[str, Any]]], final: str) -> FunctionModel:
    """A model making `calls` one per step, then answering `final`."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        step = sum(isinstance(message, ModelResponse) for message in messages)
        if step == len(calls):
            return ModelResponse(parts=[TextPart(final)])
        name, args = calls[step]
        return ModelResponse(parts=[ToolCallPart(name, args, tool_call_id=f"call{step}")])

    return FunctionModel(respond)


def returns(messages: list[ModelMessage]) -> list[ToolReturnPart]:
    return [part for message in messages for part in message.parts if isinstance(part, ToolReturnPart)]


async def test_agent_run_composes_nested_tools_resumes_and_recovers() -> None:
    toolset = CodeModeToolset([Tool(add), FunctionToolset([Tool(scale, takes_ctx=True)])])
    model = scripted(
        [
            ("exec", {"code": COMPOSE}),
            ("exec", {"code": YIELDS}),
            ("wait", {"cell_id": "2"}),
            ("exec", {"code": "const broken = undefined;\ntext(broken.length);"}),
            ("exec", {"code": IMAGE}),
        ],
        "all done",
    )
    agent = Agent(model, deps_type=int, toolsets=[toolset])

    result = await agent.run("compute", deps=10)

    assert result.output == "all done"
    composed, running, waited, failed, with_image = returns(result.all_messages())
    assert composed.content[0].startswith("Script completed\n") and composed.content[1:] == ["5 scaled is 50"]
    assert running.content[0].startswith("Script running with cell ID 2\n") and running.content[1:] == [
        "started"
    ]
    assert waited.content[0].startswith("Script completed\n") and waited.content[1:] == ["finished"]
    assert failed.outcome == "failed"
    assert (
        "Script error:\nTypeError: Cannot read properties of undefined (reading 'length')" in failed.content
    )
    assert (
        isinstance(with_image.content[1], BinaryContent) and with_image.content[1].media_type == "image/png"
    )
    tool_names = [part.tool_name for part in returns(result.all_messages())]
    assert tool_names == ["exec", "exec", "wait", "exec", "exec"]


async def test_exec_description_declares_the_nested_tools() -> None:
    seen: list[AgentInfo] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(info)
        return ModelResponse(parts=[TextPart("ok")])

    agent = Agent(FunctionModel(respond), toolsets=[CodeModeToolset([Tool(add)])])
    await agent.run("hi")
    (exec_def, wait_def) = seen[0].function_tools
    assert (exec_def.name, wait_def.name) == ("exec", "wait")
    assert "// the first addend\n  a: number;" in (exec_def.description or "")
    assert exec_def.parameters_json_schema["required"] == ["code"]


async def test_bad_arguments_are_a_retry_for_the_model() -> None:
    agent = Agent(scripted([("wait", {"cell": "1"})], "gave up"), toolsets=[CodeModeToolset()])
    result = await agent.run("go")
    (retry,) = returns(result.all_messages())
    assert retry.outcome == "retried"
    assert retry.content == "`wait` got invalid arguments: 'cell_id' is a required property"
    assert result.output == "gave up"


async def test_pydantic_ai_tools_and_toolsets_are_nested_tools_of_a_plain_session() -> None:
    async with CodeMode(tools=[Tool(add), FunctionToolset([Tool(add, name="plus")])]) as cm:
        assert [entry.tool.name for entry in cm.tools] == ["add", "plus"]
        result = await cm.exec("text(await tools.add({ a: 1, b: 2 }) + await tools.plus({ a: 3, b: 4 }))")
        assert result.items[0].text == "10"  # type: ignore[union-attr]
        rejected = await cm.exec('await tools.add({ a: "x", b: 1 })')
        assert rejected.status == "failed" and "invalid arguments" in (rejected.error or "")


@dataclass
class RecordingToolset(WrapperToolset[Any]):
    """A toolset that needs entering (as an MCP server toolset does), recording when it is."""

    events: list[str] = field(default_factory=list)

    async def __aenter__(self) -> RecordingToolset:
        self.events.append("enter")
        await super().__aenter__()
        return self

    async def __aexit__(self, *args: Any) -> bool | None:
        self.events.append("exit")
        return await super().__aexit__(*args)


async def test_a_toolset_is_entered_with_the_session_and_exited_when_it_closes() -> None:
    toolset = RecordingToolset(FunctionToolset([Tool(add)]))
    cm = CodeMode(tools=[toolset])
    assert toolset.events == []
    async with cm:
        assert toolset.events == ["enter"]
        result = await cm.exec("text(await tools.add({ a: 1, b: 1 }))")
        assert result.items[0].text == "2"  # type: ignore[union-attr]
    assert toolset.events == ["enter", "exit"]


async def test_async_with_agent_keeps_one_session_across_runs() -> None:
    toolset = CodeModeToolset()
    agent = Agent(
        scripted([("exec", {"code": 'store("n", (load("n") ?? 0) + 1); text(String(load("n")))'})], "ok"),
        toolsets=[toolset],
    )
    async with agent:
        first = await agent.run("one")
        second = await agent.run("two")
        assert toolset.session.stored_values == {"n": 2}
    assert [returns(r.all_messages())[0].content[1] for r in (first, second)] == ["1", "2"]
    fresh = await agent.run("three")  # a run of its own gets a fresh session
    assert returns(fresh.all_messages())[0].content[1] == "1"


async def test_a_nested_model_retry_rejects_in_the_script_with_its_message() -> None:
    def lookup(city: str) -> str:
        """Look a city up."""
        raise ModelRetry(f"unknown city {city}; try Paris")

    async with CodeMode(tools=[Tool(lookup)]) as cm:
        result = await cm.exec(
            'try { await tools.lookup({ city: "Atlantis" }) } catch (e) { text(String(e)) }'
        )
    assert "unknown city Atlantis; try Paris" in result.items[0].text  # type: ignore[union-attr]


# -- deferred-tool approvals map onto code mode's ----------------------------------------------------
DELETED: list[str] = []


def delete_file(path: str) -> str:
    """Delete a file (needs approval)."""
    DELETED.append(path)
    return f"deleted {path}"


def purge(ctx: RunContext[None], path: str) -> str:
    """Purge a path; outside /tmp it asks for approval while running."""
    if not path.startswith("/tmp/") and not ctx.tool_call_approved:
        raise ApprovalRequired()
    DELETED.append(path)
    return f"purged {path}"


async def test_without_deferred_approvals_a_call_waits_for_the_host_inside_an_agent_run() -> None:
    DELETED.clear()
    toolset = CodeModeToolset([Tool(delete_file, requires_approval=True)], deferred_approvals=False)
    code = 'text(await tools.delete_file({ path: "/a" }))'

    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        step = sum(isinstance(message, ModelResponse) for message in messages)
        if step == 0:
            return ModelResponse(parts=[ToolCallPart("exec", {"code": code}, tool_call_id="call0")])
        if step == 1:  # the host approves what the exec result lists, then the model waits
            [pending] = toolset.session.pending_approvals()
            assert (pending.tool_name, pending.arguments) == ("delete_file", {"path": "/a"})
            await toolset.session.approve(pending.cell_id, pending.call_id)
            wait = ToolCallPart("wait", {"cell_id": pending.cell_id}, tool_call_id="call1")
            return ModelResponse(parts=[wait])
        return ModelResponse(parts=[TextPart("done")])

    result = await Agent(FunctionModel(respond), toolsets=[toolset]).run("delete /a")
    running, waited = returns(result.all_messages())
    assert running.content[0].startswith("Script running with cell ID 1\n")
    assert running.content[1:] == ['Waiting for approval: call 1 tools.delete_file({"path":"/a"})']
    assert waited.content[0].startswith("Script completed\n") and waited.content[1:] == ["deleted /a"]
    assert DELETED == ["/a"]


async def test_approval_required_raised_while_running_goes_to_the_code_mode_policy() -> None:
    DELETED.clear()
    asked: list[str] = []

    def policy(call: ToolCall) -> bool:
        asked.append(call.arguments["path"])
        return bool(call.arguments["path"] != "/etc")

    code = """
    text(await tools.purge({ path: "/tmp/x" }));
    text(await tools.purge({ path: "/home" }));
    try { await tools.purge({ path: "/etc" }); } catch (e) { text(e); }
    """
    toolset = CodeModeToolset([Tool(purge, takes_ctx=True)], approve=policy)
    result = await Agent(scripted([("exec", {"code": code})], "ok"), toolsets=[toolset]).run("purge")
    (ran,) = returns(result.all_messages())
    assert ran.content[1:] == [
        "purged /tmp/x",
        "purged /home",
        "The approval policy rejected this call to tools.purge; it was not run.",
    ]
    assert asked == ["/home", "/etc"] and DELETED == ["/tmp/x", "/home"]
