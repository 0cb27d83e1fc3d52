"""Concurrent pydantic-ai runs on one agent, and approvals as pydantic-ai's deferred tools.

Real agent runs driven by `FunctionModel`s; the assertions read what pydantic-ai recorded and
what the shared session traced.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic_ai import (
    Agent,
    DeferredToolRequests,
    DeferredToolResults,
    ModelMessage,
    ModelResponse,
    RunContext,
    TextPart,
    Tool,
    ToolCallPart,
    ToolDenied,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from codemode import ToolCall
from codemode.adapters.pydantic_ai import CodeModeToolset

from .test_pydantic_ai import returns, scripted

pytestmark = pytest.mark.integration


async def whoami(ctx: RunContext[dict[str, str]], delay: float) -> str:
    """The run's user, after a delay."""
    await asyncio.sleep(delay)
    return ctx.deps["user"]


WHOAMI_TWICE = "text(await tools.whoami({{ delay: {delay} }}));\ntext(await tools.whoami({{ delay: 0 }}));"


async def test_concurrent_runs_on_one_agent_each_get_their_own_deps() -> None:
    agent = Agent(
        scripted([], "unused"),
        deps_type=dict[str, str],
        toolsets=[CodeModeToolset([Tool(whoami, takes_ctx=True)])],
    )
    users = {"alice": 0.4, "bob": 0.0, "carol": 0.2}  # the slowest run's call ends last

    async def run(user: str, delay: float) -> list[Any]:
        model = scripted([("exec", {"code": WHOAMI_TWICE.format(delay=delay)})], "ok")
        result = await agent.run("who", deps={"user": user}, model=model)
        (answer,) = returns(result.all_messages())
        return list(answer.content[1:])

    outputs = await asyncio.gather(*(run(user, delay) for user, delay in users.items()))
    assert outputs == [[user, user] for user in users]


async def test_a_wait_from_another_run_drives_the_cell_with_that_runs_deps() -> None:
    toolset = CodeModeToolset([Tool(whoami, takes_ctx=True)])
    agent = Agent(scripted([], "unused"), deps_type=dict[str, str], toolsets=[toolset])
    code = '// @exec: {"yield_time_ms": 50}\ntext(await tools.whoami({ delay: 0 }));\nawait new Promise((r) => setTimeout(r, 300));\ntext(await tools.whoami({ delay: 0 }));'
    async with agent:
        first = await agent.run("start", deps={"user": "alice"}, model=scripted([("exec", {"code": code})], "ok"))
        # A numeric cell id is accepted, as the MCP front end accepts it.
        second = await agent.run("wait", deps={"user": "bob"}, model=scripted([("wait", {"cell_id": 1})], "ok"))
    (started,) = returns(first.all_messages())
    (waited,) = returns(second.all_messages())
    assert started.content[0].startswith("Script running with cell ID 1\n") and started.content[1:] == ["alice"]
    assert waited.content[0].startswith("Script completed\n") and waited.content[1:] == ["bob"]


# -- approvals as DeferredToolRequests / DeferredToolResults ----------------------------------------
DELETED: list[str] = []


def delete_file(ctx: RunContext[dict[str, str]], path: str) -> str:
    """Delete a file (needs approval)."""
    DELETED.append(path)
    return f"{ctx.deps['user']} deleted {path}"


DELETE_TWO = """
text("before");
text(await tools.delete_file({ path: "/tmp/x" }));
try { text(await tools.delete_file({ path: "/a" })); } catch (e) { text(`refused: ${e}`); }
text("after");
"""


def only_tmp_runs(call: ToolCall) -> bool | str:
    """The policy decides first: /tmp paths run, others are asked for."""
    return True if call.arguments["path"].startswith("/tmp/") else "ask"


def approval_agent() -> tuple[Agent[dict[str, str], str | DeferredToolRequests], CodeModeToolset]:
    toolset = CodeModeToolset([Tool(delete_file, takes_ctx=True, requires_approval=True)], approve=only_tmp_runs)
    agent = Agent(
        scripted([("exec", {"code": DELETE_TWO})], "done"),
        deps_type=dict[str, str],
        output_type=[str, DeferredToolRequests],
        toolsets=[toolset],
    )
    return agent, toolset


async def test_a_call_asking_for_approval_ends_the_run_with_deferred_tool_requests_and_resumes_the_cell() -> None:
    DELETED.clear()
    agent, toolset = approval_agent()
    async with agent:
        first = await agent.run("delete", deps={"user": "alice"})
        assert isinstance(first.output, DeferredToolRequests)
        [request] = first.output.approvals
        assert request.tool_name == "exec"
        assert first.output.metadata[request.tool_call_id] == {
            "cell_id": "1",
            "calls": [{"call_id": "2", "tool_name": "delete_file", "arguments": {"path": "/a"}}],
        }
        assert DELETED == ["/tmp/x"]  # the policy let it run; the other waits
        assert toolset.session.running_cells == ["1"]

        second = await agent.run(
            message_history=first.all_messages(),
            deferred_tool_results=DeferredToolResults(approvals={request.tool_call_id: True}),
            deps={"user": "bob"},
        )
        records = toolset.session.tool_calls("1")
    assert second.output == "done"
    (answer,) = returns(second.all_messages())
    assert answer.tool_call_id == request.tool_call_id
    assert answer.content[0].startswith("Script completed\n")
    # The same cell: the output from before the pause, then the approved call run for the resumed run.
    assert answer.content[1:] == ["before", "alice deleted /tmp/x", "bob deleted /a", "after"]
    assert DELETED == ["/tmp/x", "/a"]
    assert [(record.arguments, record.outcome) for record in records] == [
        ('{"path":"/tmp/x"}', "ok"),
        ('{"path":"/a"}', "ok"),
    ]


async def test_a_denied_deferred_call_rejects_in_the_script_with_the_denial_message() -> None:
    DELETED.clear()
    agent, toolset = approval_agent()
    async with agent:
        first = await agent.run("delete", deps={"user": "alice"})
        assert isinstance(first.output, DeferredToolRequests)
        [request] = first.output.approvals
        second = await agent.run(
            message_history=first.all_messages(),
            deferred_tool_results=DeferredToolResults(approvals={request.tool_call_id: ToolDenied("not /a")}),
            deps={"user": "alice"},
        )
        finished = await toolset.session.wait("1")
    assert second.output == "done"
    (denied,) = returns(second.all_messages())
    assert denied.outcome == "denied" and denied.content == "not /a"
    assert finished.status == "completed"
    assert [item.text for item in finished.items] == ["refused: not /a", "after"]  # type: ignore[union-attr]
    assert DELETED == ["/tmp/x"]


async def test_concurrent_runs_defer_and_resume_their_own_cells() -> None:
    DELETED.clear()
    toolset = CodeModeToolset([Tool(delete_file, takes_ctx=True, requires_approval=True)])

    def model(path: str) -> FunctionModel:
        code = f'text(await tools.delete_file({{ path: "{path}" }}));'

        def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
            if sum(isinstance(message, ModelResponse) for message in messages) == 0:
                return ModelResponse(parts=[ToolCallPart("exec", {"code": code}, tool_call_id=f"exec-{path}")])
            return ModelResponse(parts=[TextPart("done")])

        return FunctionModel(respond)

    agent = Agent(deps_type=dict[str, str], output_type=[str, DeferredToolRequests], toolsets=[toolset])
    paths = {"alice": "/a", "bob": "/b", "carol": "/c"}

    async def run(user: str, path: str) -> list[Any]:
        first = await agent.run("delete", deps={"user": user}, model=model(path))
        assert isinstance(first.output, DeferredToolRequests)
        [request] = first.output.approvals
        await asyncio.sleep(0.1 * len(user))  # resume in another order than paused
        second = await agent.run(
            message_history=first.all_messages(),
            deferred_tool_results=DeferredToolResults(approvals={request.tool_call_id: True}),
            deps={"user": user},
            model=model(path),
        )
        (answer,) = returns(second.all_messages())
        return list(answer.content[1:])

    async with agent:
        outputs = await asyncio.gather(*(run(user, path) for user, path in paths.items()))
    assert outputs == [[f"{user} deleted {path}"] for user, path in paths.items()]
    assert sorted(DELETED) == ["/a", "/b", "/c"]
