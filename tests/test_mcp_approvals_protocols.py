"""Approvals over `codemode mcp` on every protocol version the official `mcp` client speaks.

At 2026-07-28 (the client's default mode over stdio and in memory) a call needing approval is
asked with an input-required result (SEP-2322) and the cell continues when the client retries
with the answer; at 2025-11-25 (`mode="legacy"`, and the default mode over HTTP, where the
sessionless entry is refused) with an `elicitation/create` request. Each is tried in memory,
over stdio and over HTTP, approving and declining, with the client's `elicitation_callback`.

Only generous liveness bounds (`within`), no timing assertions.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Literal, TypeVar

import mcp_types
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

from codemode import ApprovalDecision, ToolCall
from codemode.mcp_server import create_server
from codemode.tools import requires_approval
from mcp_support import STOPPED_CLEANLY, TESTS, start_http_server, stop

pytestmark = pytest.mark.integration

T = TypeVar("T")
Mode = Literal["auto", "legacy"]

LIVENESS_S = 60.0
CODEMODE_MCP = [sys.executable, "-m", "codemode", "mcp"]
PROTOCOL = {"auto": "2026-07-28", "legacy": "2025-11-25"}
"""The version each client mode negotiates over a stream (stdio, in memory)."""
APPROVAL_TOOLS = "fixtures_tools:APPROVAL_TOOLS"
AROUND_THE_CALL = {"code": 'text("before"); text(await tools.echo_path({ path: "/x" })); text("after")'}
DECLINED = "The user did not approve this call to tools.echo_path (they declined it); it was not run."


async def within(awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout(LIVENESS_S):
        return await awaitable


class Answers:
    """An elicitation callback that approves (or declines) and keeps what it was asked."""

    def __init__(self, approve: bool) -> None:
        self.approve = approve
        self.asked: list[str] = []

    async def __call__(self, context: Any, params: mcp_types.ElicitRequestParams) -> mcp_types.ElicitResult:
        self.asked.append(params.message)
        if self.approve:
            return mcp_types.ElicitResult(action="accept", content={"approve": True})
        return mcp_types.ElicitResult(action="decline")


def client_options(mode: Mode, answers: Answers) -> dict[str, Any]:
    return {"elicitation_callback": answers} | ({} if mode == "auto" else {"mode": mode})


def texts(result: mcp_types.CallToolResult) -> list[str]:
    return [block.text for block in result.content if isinstance(block, mcp_types.TextContent)]


def assert_answered(result: mcp_types.CallToolResult, answers: Answers) -> None:
    """The output before the question and the outcome of the call are in one result."""
    [question] = answers.asked
    assert 'call 1 tools.echo_path({"path":"/x"})' in question and "exec cell 1" in question
    if answers.approve:
        assert not result.is_error
        assert texts(result)[1:] == ["before", "ran /x", "after"]
    else:
        assert result.is_error
        assert texts(result)[1] == "before" and DECLINED in texts(result)[2]


def stdio_params() -> StdioServerParameters:
    command = [*CODEMODE_MCP, "--tools", APPROVAL_TOOLS]
    return StdioServerParameters(command=command[0], args=command[1:], cwd=str(TESTS))


@requires_approval
def delete_file(path: str) -> str:
    """Delete a file (pretend)."""
    return f"deleted {path}"


# -- each transport, each mode, approving and declining --------------------------------------
@pytest.mark.parametrize("approve", [True, False], ids=["approve", "decline"])
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_in_memory_the_client_is_asked_in_its_mode_and_the_cell_continues(mode: Mode, approve: bool) -> None:
    answers = Answers(approve)
    code = AROUND_THE_CALL["code"].replace("echo_path", "delete_file")
    async with Client(create_server([delete_file]), **client_options(mode, answers)) as client:
        assert client.protocol_version == PROTOCOL[mode]
        result = await within(client.call_tool("exec", {"code": code}))
    [question] = answers.asked
    assert 'tools.delete_file({"path":"/x"})' in question
    if approve:
        assert texts(result)[1:] == ["before", "deleted /x", "after"]
    else:
        assert "The user did not approve this call to tools.delete_file (they declined it)" in texts(result)[2]


@pytest.mark.parametrize("approve", [True, False], ids=["approve", "decline"])
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_over_stdio_the_client_is_asked_in_its_mode_and_the_cell_continues(mode: Mode, approve: bool) -> None:
    answers = Answers(approve)
    async with Client(stdio_params(), **client_options(mode, answers)) as client:
        assert client.protocol_version == PROTOCOL[mode]
        result = await within(client.call_tool("exec", AROUND_THE_CALL))
    assert_answered(result, answers)


def test_over_http_the_client_is_asked_in_either_mode(tmp_path: Path) -> None:
    """Over HTTP both modes end at 2025-11-25: the 2026-07-28 sessionless entry is refused."""
    server = start_http_server(None, tmp_path, "--tools", APPROVAL_TOOLS)

    async def exec_with(mode: Mode, answers: Answers) -> mcp_types.CallToolResult:
        async with Client(server.url, **client_options(mode, answers)) as client:
            assert client.protocol_version == "2025-11-25"
            return await within(client.call_tool("exec", AROUND_THE_CALL))

    try:
        for mode in ("auto", "legacy"):
            for approve in (True, False):
                answers = Answers(approve)
                assert_answered(asyncio.run(exec_with(mode, answers)), answers)
    finally:
        assert stop(server) in STOPPED_CLEANLY, server.stderr.read_text()


# -- 2026-07-28: input-required results --------------------------------------------------------
async def test_each_waiting_call_is_asked_and_answered_on_its_own() -> None:
    asked: list[str] = []

    async def answer(context: Any, params: mcp_types.ElicitRequestParams) -> mcp_types.ElicitResult:
        asked.append(params.message)
        return mcp_types.ElicitResult(action="accept", content={"approve": "/yes" in params.message})

    code = """
    const results = await Promise.allSettled([
      tools.delete_file({ path: "/yes" }), tools.delete_file({ path: "/no" })]);
    text(results.map((r) => r.status === "fulfilled" ? r.value : String(r.reason)).join("|"));
    """
    async with Client(create_server([delete_file]), elicitation_callback=answer) as client:
        result = await within(client.call_tool("exec", {"code": code}))
    assert len(asked) == 2
    assert len(texts(result)) == 2, texts(result)
    assert texts(result)[1] == (
        "deleted /yes|The user did not approve this call to tools.delete_file (they left Approve unchecked); "
        "it was not run."
    )


async def test_a_retry_without_the_answer_is_asked_again_at_once() -> None:
    arguments = {"code": 'text(await tools.delete_file({ path: "/x" }))', "yield_time_ms": 600_000}
    async with Client(create_server([delete_file]), elicitation_callback=Answers(approve=True)) as client:
        first = await within(client.session.call_tool("exec", arguments, allow_input_required=True))
        assert isinstance(first, mcp_types.InputRequiredResult) and first.input_requests is not None
        again = await within(
            client.session.call_tool("exec", arguments, request_state=first.request_state, allow_input_required=True)
        )
    assert isinstance(again, mcp_types.InputRequiredResult) and again.input_requests is not None
    assert list(again.input_requests) == list(first.input_requests) == ["1"]


async def test_a_call_that_starts_while_nothing_observes_the_cell_is_asked_by_the_next_wait() -> None:
    answers = Answers(approve=True)
    code = 'await yield_control(); text(await tools.delete_file({ path: "/later" }))'
    async with Client(create_server([delete_file]), elicitation_callback=answers) as client:
        first = await within(client.call_tool("exec", {"code": code}))
        assert texts(first)[0].startswith("Script running with cell ID 1\n") and answers.asked == []
        done = await within(client.call_tool("wait", {"cell_id": "1", "yield_time_ms": 30_000}))
    assert texts(done)[1:] == ["deleted /later"]
    assert len(answers.asked) == 1


async def test_the_host_policy_decides_first_on_2026_07_28_too() -> None:
    def policy(call: ToolCall) -> ApprovalDecision:
        return "ask" if call.arguments["path"] == "/ask" else call.arguments["path"] == "/ok"

    answers = Answers(approve=True)
    code = """
    text(await tools.delete_file({ path: "/ok" }));
    try { await tools.delete_file({ path: "/no" }); } catch (e) { text("refused"); }
    text(await tools.delete_file({ path: "/ask" }));
    """
    async with Client(create_server([delete_file], approve=policy), elicitation_callback=answers) as client:
        result = await within(client.call_tool("exec", {"code": code}))
    assert texts(result)[1:] == ["deleted /ok", "refused", "deleted /ask"]
    assert len(answers.asked) == 1 and "/ask" in answers.asked[0]


async def test_a_request_state_the_server_did_not_seal_is_refused_and_nothing_runs() -> None:
    ran: list[str] = []

    @requires_approval
    def remove(path: str) -> str:
        """Remove a file (pretend)."""
        ran.append(path)
        return "removed"

    arguments = {"code": 'text(await tools.remove({ path: "/x" }))'}
    approval = mcp_types.ElicitResult(action="accept", content={"approve": True})
    async with Client(create_server([remove]), elicitation_callback=Answers(approve=True)) as client:
        first = await within(client.session.call_tool("exec", arguments, allow_input_required=True))
        assert isinstance(first, mcp_types.InputRequiredResult) and first.request_state is not None
        forged = json.dumps({"cell_id": "1", "calls": {"1": "remove"}})
        with pytest.raises(MCPError, match="Invalid or expired requestState"):
            await client.session.call_tool("exec", arguments, input_responses={"1": approval}, request_state=forged)
        with pytest.raises(MCPError, match="Invalid or expired requestState"):  # bound to the call's arguments
            await client.session.call_tool(
                "exec", {"code": "text(1)"}, input_responses={"1": approval}, request_state=first.request_state
            )
        assert ran == []
        result = await within(
            client.session.call_tool("exec", arguments, input_responses={"1": approval}, request_state=first.request_state)
        )
    assert isinstance(result, mcp_types.CallToolResult)
    assert texts(result)[1:] == ["removed"] and ran == ["/x"]


async def test_a_lone_surrogate_in_the_arguments_is_asked_about_and_answered() -> None:
    answers = Answers(approve=True)
    async with Client(create_server([delete_file]), elicitation_callback=answers) as client:
        result = await within(client.call_tool("exec", {"code": 'text(await tools.delete_file({ path: "x\\udfffy" }))'}))
    assert texts(result)[1:] == ["deleted x\ufffdy"]
    [question] = answers.asked
    assert "\ufffd" in question
