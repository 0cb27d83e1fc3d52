"""Approvals of nested calls on live cells, on the real engine: a call of a tool that requires
approval pauses (only that call), the cell yields at once with the call listed, and the host
approves or rejects it; policies decide some calls themselves; terminate, close and the timeout
end waiting calls without running them.

Only generous liveness bounds (`within`), no timing assertions.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, Literal, TypeVar

import mcp_types
import pytest
from mcp import Client

from codemode import (
    ApprovalDecision,
    CodeMode,
    ExecResult,
    Limits,
    TextItem,
    Tool,
    ToolCall,
    ToolError,
    UsageError,
    to_model,
)
from codemode._output import model_items
from codemode._session.tool_calls import approve_running_call
from codemode.formats import Api
from codemode.mcp_server import create_server
from codemode.testing import FakeEngine
from codemode.tools import requires_approval
from codemode.tools.mcp import load_mcp_config
from mcp_support import STOPPED_CLEANLY, start_http_server, stop
from waiting import wait_until

T = TypeVar("T")

LIVENESS_S = 60.0
LONG_YIELD_MS = 120_000  # an exec/wait that returns sooner was woken by an event, not its deadline


async def within(awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout(LIVENESS_S):
        return await awaitable


def texts(result: ExecResult) -> list[str]:
    return [item.text for item in result.items if isinstance(item, TextItem)]


def model_texts(result: ExecResult) -> list[str]:
    return [item.text for item in model_items(result) if isinstance(item, TextItem)]


class Files:
    """Tools over a fake file system: `delete_file` requires approval, `read_file` does not."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def tools(self) -> list[Any]:
        @requires_approval
        def delete_file(path: str) -> str:
            """Delete a file."""
            self.deleted.append(path)
            return f"deleted {path}"

        def read_file(path: str) -> str:
            """Read a file."""
            return f"contents of {path}"

        return [delete_file, read_file]


@pytest.fixture
def files() -> Files:
    return Files()


@pytest.fixture
async def cm(files: Files) -> AsyncIterator[CodeMode]:
    async with CodeMode(tools=files.tools()) as session:
        yield session


DELETE = """
text(await tools.read_file({ path: "/tmp/x" }));
text(await tools.delete_file({ path: "/tmp/x" }));
"""


# -- the pending call, approve and reject ------------------------------------------------------
async def test_a_call_needing_approval_yields_at_once_and_runs_once_approved(
    cm: CodeMode, files: Files
) -> None:
    result = await within(cm.exec(DELETE, yield_time_ms=LONG_YIELD_MS))

    assert result.status == "running"
    assert texts(result) == ["contents of /tmp/x"]
    [pending] = result.pending_approvals
    assert (pending.cell_id, pending.tool_name) == (result.cell_id, "delete_file")
    assert pending.arguments == {"path": "/tmp/x"}
    header, *rest = model_texts(result)
    assert header.startswith(f"Script running with cell ID {result.cell_id}\nWall time ")
    line = f'Waiting for approval: call {pending.call_id} tools.delete_file({{"path":"/tmp/x"}})'
    assert rest == ["contents of /tmp/x", line]
    assert cm.pending_approvals() == [pending] == cm.pending_approvals(result.cell_id)
    assert files.deleted == []

    assert result.cell_id is not None
    await cm.approve(result.cell_id, pending.call_id)
    done = await within(cm.wait(result.cell_id, yield_time_ms=LONG_YIELD_MS))

    assert (done.status, texts(done), done.pending_approvals) == ("completed", ["deleted /tmp/x"], ())
    assert files.deleted == ["/tmp/x"]
    assert cm.pending_approvals() == []


async def test_a_rejection_rejects_the_promise_with_the_reason_as_a_plain_string(
    cm: CodeMode, files: Files
) -> None:
    code = """
    try { await tools.delete_file({ path: "/etc/passwd" }); }
    catch (e) { text(typeof e + ": " + e); }
    """
    result = await within(cm.exec(code, yield_time_ms=LONG_YIELD_MS))
    assert result.cell_id is not None
    await cm.reject(result.cell_id, result.pending_approvals[0].call_id, reason="not that file")
    done = await within(cm.wait(result.cell_id, yield_time_ms=LONG_YIELD_MS))

    assert (done.status, texts(done)) == ("completed", ["string: not that file"])
    assert files.deleted == []
    [record] = cm.tool_calls(result.cell_id)
    assert (record.outcome, record.error) == ("rejected", "not that file")


async def test_a_rejection_without_a_reason_says_the_host_rejected_it(cm: CodeMode) -> None:
    result = await within(cm.exec('await tools.delete_file({ path: "/x" })', yield_time_ms=LONG_YIELD_MS))
    assert result.cell_id is not None
    await cm.reject(result.cell_id, result.pending_approvals[0].call_id)
    done = await within(cm.wait(result.cell_id))
    assert done.status == "failed"
    assert done.error == "The host rejected this call to tools.delete_file; it was not run."


async def test_approval_while_ten_other_calls_of_the_script_run(files: Files) -> None:
    release = asyncio.Event()
    started: list[int] = []

    async def slow(i: int) -> int:
        """Wait for the test, then return i."""
        started.append(i)
        await release.wait()
        return i

    code = """
    const others = Array.from({ length: 10 }, (_, i) => tools.slow({ i }));
    const guarded = tools.delete_file({ path: "/tmp/x" });
    const values = await Promise.all(others);
    text("others: " + values.join(","));
    yield_control();
    text(await guarded);
    """
    async with CodeMode(tools=[*files.tools(), slow]) as cm:
        first = await within(cm.exec(code, yield_time_ms=LONG_YIELD_MS))
        assert first.status == "running" and first.cell_id is not None
        [pending] = first.pending_approvals
        assert pending.tool_name == "delete_file"

        while len(started) < 10:  # the other calls run while one waits for approval
            await within(asyncio.sleep(0.01))
        release.set()
        second = await within(cm.wait(first.cell_id, yield_time_ms=LONG_YIELD_MS))
        assert (second.status, texts(second)) == ("running", ["others: 0,1,2,3,4,5,6,7,8,9"])
        assert second.pending_approvals == (pending,)  # still waiting, still listed
        assert [record.tool_name for record in second.tool_calls] == ["slow"] * 10
        assert files.deleted == []

        await cm.approve(first.cell_id, pending.call_id)
        done = await within(cm.wait(first.cell_id, yield_time_ms=LONG_YIELD_MS))
        assert (done.status, texts(done)) == ("completed", ["deleted /tmp/x"])
        assert files.deleted == ["/tmp/x"]


async def test_several_pending_calls_are_listed_and_answered_one_by_one(cm: CodeMode, files: Files) -> None:
    code = """
    const results = await Promise.allSettled(["/a", "/b", "/c"].map(path => tools.delete_file({ path })));
    text(results.map(r => r.status === "fulfilled" ? r.value : "rejected: " + r.reason).join("; "));
    """
    cell_id = (await within(cm.exec(code, yield_time_ms=LONG_YIELD_MS))).cell_id
    assert cell_id is not None
    while len(cm.pending_approvals(cell_id)) < 3:  # the first yield may list only the first
        await within(cm.wait(cell_id, yield_time_ms=LONG_YIELD_MS))
    by_path = {p.arguments["path"]: p for p in cm.pending_approvals(cell_id)}
    assert list(by_path) == ["/a", "/b", "/c"]
    await cm.approve(cell_id, by_path["/a"].call_id)
    await cm.reject(cell_id, by_path["/b"].call_id, reason="keep b")
    await cm.approve(cell_id, by_path["/c"].call_id)
    done = await within(cm.wait(cell_id, yield_time_ms=LONG_YIELD_MS))
    assert texts(done) == ["deleted /a; rejected: keep b; deleted /c"]
    assert sorted(files.deleted) == ["/a", "/c"]  # the approved two run at once


async def test_long_arguments_are_shortened_in_the_approval_line(cm: CodeMode) -> None:
    code = f'await tools.delete_file({{ path: "{"p" * 5000}" }})'
    result = await within(cm.exec(code, yield_time_ms=LONG_YIELD_MS))
    line = model_texts(result)[-1]
    assert line.startswith('Waiting for approval: call 1 tools.delete_file({"path":"ppp')
    assert line.endswith("… (5011 characters))")
    assert len(line) < 300
    assert result.pending_approvals[0].arguments == {"path": "p" * 5000}  # the host gets them whole


async def test_a_script_without_approvals_reads_exactly_as_before(cm: CodeMode) -> None:
    result = await within(cm.exec('text(await tools.read_file({ path: "/a" })); yield_control(); text("b")'))
    assert result.pending_approvals == ()
    assert model_texts(result)[1:] == ["contents of /a"]


# -- policies ---------------------------------------------------------------------------------
async def test_a_policy_sees_the_tool_name_and_validated_arguments_and_decides(files: Files) -> None:
    seen: list[ToolCall] = []

    def policy(call: ToolCall) -> ApprovalDecision:
        seen.append(call)
        return bool(call.arguments["path"].startswith("/tmp/"))

    code = """
    text(await tools.delete_file({ path: "/tmp/a" }));
    try { await tools.delete_file({ path: "/etc/b" }); } catch (e) { text(e); }
    text(await tools.read_file({ path: "/c" }));
    """
    async with CodeMode(tools=files.tools(), approve=policy) as cm:
        result = await within(cm.exec(code))
    assert texts(result) == [
        "deleted /tmp/a",
        "The approval policy rejected this call to tools.delete_file; it was not run.",
        "contents of /c",
    ]
    assert [(call.tool_name, call.arguments) for call in seen] == [
        ("delete_file", {"path": "/tmp/a"}),
        ("delete_file", {"path": "/etc/b"}),
    ]  # tools that need no approval never reach the policy
    assert files.deleted == ["/tmp/a"]


async def test_an_async_policy_can_ask_the_host(files: Files) -> None:
    async def policy(call: ToolCall) -> ApprovalDecision:
        await asyncio.sleep(0)
        return "ask" if call.arguments["path"] == "/ask" else True

    async with CodeMode(tools=files.tools(), approve=policy) as cm:
        result = await within(cm.exec(
            'text(await tools.delete_file({ path: "/ok" })); text(await tools.delete_file({ path: "/ask" }))',
            yield_time_ms=LONG_YIELD_MS,
        ))
        assert texts(result) == ["deleted /ok"]
        assert [p.arguments for p in result.pending_approvals] == [{"path": "/ask"}]
        assert result.cell_id is not None
        await cm.approve(result.cell_id, result.pending_approvals[0].call_id)
        done = await within(cm.wait(result.cell_id))
    assert texts(done) == ["deleted /ask"]


@pytest.mark.parametrize(
    ("policy", "error"),
    [
        (lambda call: (_ for _ in ()).throw(ToolError("ask the admin")), "ask the admin"),
        (lambda call: 1 / 0, "The approval policy failed (ZeroDivisionError: division by zero), so this call "
                             "to tools.delete_file was not run."),
        (lambda call: "yes", "The approval policy answered 'yes' (expected True, False or \"ask\"), so this "
                             "call to tools.delete_file was not run."),
    ],
)
async def test_a_policy_that_raises_or_answers_nonsense_rejects_the_call(
    files: Files, policy: Any, error: str
) -> None:
    async with CodeMode(tools=files.tools(), approve=policy) as cm:
        result = await within(cm.exec('await tools.delete_file({ path: "/x" })'))
    assert (result.status, result.error) == ("failed", error)
    assert files.deleted == []


async def test_tool_and_function_options_and_a_per_call_requirement() -> None:
    ran: list[str] = []

    def wipe(target: str) -> str:
        """Wipe something."""
        ran.append(target)
        return "wiped"

    def drop(arguments: dict[str, Any]) -> str:
        ran.append(arguments["table"])
        return "dropped"

    tools = [
        Tool.from_function(wipe, requires_approval=True),
        Tool("drop", "Drop a table.", drop, requires_approval=lambda args: args["table"] != "scratch"),
    ]
    code = """
    text(await tools.drop({ table: "scratch" }));
    const pending = [tools.drop({ table: "users" }), tools.wipe({ target: "disk" })];
    text((await Promise.all(pending)).join(","));
    """
    async with CodeMode(tools=tools) as cm:
        result = await within(cm.exec(code, yield_time_ms=LONG_YIELD_MS))
        printed, cell_id = texts(result), result.cell_id
        assert cell_id is not None
        while len(cm.pending_approvals(cell_id)) < 2:
            printed += texts(await within(cm.wait(cell_id, yield_time_ms=LONG_YIELD_MS)))
        assert [p.tool_name for p in cm.pending_approvals(cell_id)] == ["drop", "wipe"]
        assert ran == ["scratch"]
        for pending in cm.pending_approvals(cell_id):
            await cm.approve(cell_id, pending.call_id)
        done = await within(cm.wait(cell_id))
    assert printed + texts(done) == ["dropped", "dropped,wiped"]
    assert ran[0] == "scratch" and sorted(ran[1:]) == ["disk", "users"]  # the approved two run at once


async def test_invalid_arguments_are_rejected_before_anyone_is_asked(cm: CodeMode) -> None:
    result = await within(cm.exec("await tools.delete_file({ path: 3 })"))
    assert result.status == "failed" and result.pending_approvals == ()
    assert "tool `delete_file` got invalid arguments" in (result.error or "")


# -- ends: terminate, close, timeout -------------------------------------------------------------
async def test_an_approval_after_the_cell_was_terminated_is_refused_and_nothing_runs(
    cm: CodeMode, files: Files
) -> None:
    result = await within(cm.exec(DELETE, yield_time_ms=LONG_YIELD_MS))
    assert result.cell_id is not None
    call_id = result.pending_approvals[0].call_id
    stopped = await within(cm.wait(result.cell_id, terminate=True))
    assert stopped.status == "terminated"
    assert [(r.tool_name, r.outcome) for r in stopped.tool_calls] == [("delete_file", "cancelled")]

    with pytest.raises(UsageError, match=f"exec cell {result.cell_id} has ended"):
        await cm.approve(result.cell_id, call_id)
    with pytest.raises(UsageError, match=f"exec cell {result.cell_id} has ended"):
        await cm.reject(result.cell_id, call_id)
    assert files.deleted == []
    assert cm.pending_approvals() == []


async def test_close_with_pending_approvals_cancels_them(files: Files) -> None:
    cm = CodeMode(tools=files.tools())
    result = await within(cm.exec(DELETE, yield_time_ms=LONG_YIELD_MS))
    assert result.cell_id is not None and result.pending_approvals
    await within(cm.aclose())
    assert [r.outcome for r in cm.tool_calls(result.cell_id)] == ["ok", "cancelled"]
    with pytest.raises(UsageError, match="has ended"):
        await cm.approve(result.cell_id, result.pending_approvals[0].call_id)
    assert files.deleted == []


async def test_an_approval_that_never_comes_times_out_with_a_clear_rejection(files: Files) -> None:
    code = 'try { await tools.delete_file({ path: "/x" }); } catch (e) { text(e); }'
    async with CodeMode(tools=files.tools(), limits=Limits(approval_timeout_s=0.2)) as cm:
        result = await within(cm.exec(code, yield_time_ms=LONG_YIELD_MS))
        assert result.cell_id is not None and result.pending_approvals
        call_id = result.pending_approvals[0].call_id
        done = await within(cm.wait(result.cell_id, yield_time_ms=LONG_YIELD_MS))
        with pytest.raises(UsageError, match="has ended"):
            await cm.approve(result.cell_id, call_id)
    assert texts(done) == [
        "No approval for this call to tools.delete_file arrived within 0.2 s, so it was not run."
    ]
    assert files.deleted == []


async def test_a_late_approval_of_a_timed_out_call_in_a_live_cell_says_so(files: Files) -> None:
    code = """
    try { await tools.delete_file({ path: "/x" }); } catch (e) { text(e); }
    yield_control();
    await new Promise(() => {});
    """
    async with CodeMode(tools=files.tools(), limits=Limits(approval_timeout_s=0.2)) as cm:
        result = await within(cm.exec(code, yield_time_ms=LONG_YIELD_MS))
        assert result.cell_id is not None
        call_id = result.pending_approvals[0].call_id
        await within(cm.wait(result.cell_id, yield_time_ms=LONG_YIELD_MS))  # the timeout's text, then yield
        with pytest.raises(UsageError, match=f"call {call_id} of exec cell {result.cell_id} is not waiting "
                                             "for approval: it was timed out already"):
            await cm.approve(result.cell_id, call_id)
    assert files.deleted == []


# -- bad answers ------------------------------------------------------------------------------
async def test_bad_answers_get_clear_errors(cm: CodeMode) -> None:
    code = 'await tools.delete_file({ path: "/a" }); yield_control(); await new Promise(() => {});'
    result = await within(cm.exec(code, yield_time_ms=LONG_YIELD_MS))
    assert result.cell_id is not None
    call_id = result.pending_approvals[0].call_id

    with pytest.raises(UsageError, match="exec cell 99 not found"):
        await cm.approve("99", call_id)
    unknown = rf"exec cell {result.cell_id} has no call 7 waiting for approval \(waiting: {call_id}\)"
    with pytest.raises(UsageError, match=unknown):
        await cm.approve(result.cell_id, "7")
    await cm.approve(result.cell_id, call_id)
    twice = f"call {call_id} of exec cell {result.cell_id} is not waiting for approval: it was approved"
    with pytest.raises(UsageError, match=twice):
        await cm.approve(result.cell_id, call_id)
    with pytest.raises(UsageError, match="it was approved already"):
        await cm.reject(result.cell_id, call_id, reason="too late")
    with pytest.raises(UsageError, match="exec cell 99 not found"):
        cm.pending_approvals("99")


def test_bad_settings_are_refused() -> None:
    with pytest.raises(UsageError, match="`approve` must be a callable"):
        CodeMode(approve="yes")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="`approval_timeout_s` must be a positive number"):
        CodeMode(limits=Limits(approval_timeout_s=0))


async def test_the_pending_call_appears_in_every_model_format(cm: CodeMode) -> None:
    result = await within(cm.exec('await tools.delete_file({ path: "/a" })', yield_time_ms=LONG_YIELD_MS))
    line = 'Waiting for approval: call 1 tools.delete_file({"path":"/a"})'
    apis: tuple[Api, ...] = ("responses", "chat", "anthropic", "mcp")
    for api in apis:
        assert line in repr(to_model(result, api))


# -- MCP servers: per server or per tool ------------------------------------------------------------
PY_SERVER = Path(__file__).parent / "mcp_servers" / "py_server.py"


def py_server(**settings: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": [str(PY_SERVER)], **settings}


@pytest.mark.integration
async def test_an_mcp_server_config_names_the_tools_that_require_approval() -> None:
    servers = {"py": py_server(requires_approval=["add"]), "all": py_server(requiresApproval=True)}
    config = {"mcpServers": servers}
    code = """
    const sum = tools.mcp__py__add({ a: 1, b: 2 });
    text((await tools.mcp__py__pid({})).isError);
    const other = tools.mcp__all__pid({});
    text((await sum).structuredContent.result, (await other).isError);
    """
    async with CodeMode(mcp_servers=config) as cm:
        result = await within(cm.exec(code, yield_time_ms=LONG_YIELD_MS))
        cell_id = result.cell_id
        assert cell_id is not None
        while len(cm.pending_approvals(cell_id)) < 2:
            await within(cm.wait(cell_id, yield_time_ms=LONG_YIELD_MS))
        assert [p.tool_name for p in cm.pending_approvals(cell_id)] == ["mcp__py__add", "mcp__all__pid"]
        for pending in cm.pending_approvals(cell_id):
            await cm.approve(cell_id, pending.call_id)
        done = await within(cm.wait(cell_id, yield_time_ms=LONG_YIELD_MS))
        assert done.status == "completed", done
        outcomes = {(r.tool_name, r.outcome) for r in cm.tool_calls(cell_id)}
    assert outcomes == {("mcp__py__add", "ok"), ("mcp__py__pid", "ok"), ("mcp__all__pid", "ok")}


def test_a_bad_requires_approval_setting_is_refused() -> None:
    with pytest.raises(UsageError, match="server `py`: `requires_approval"):
        load_mcp_config({"mcpServers": {"py": py_server(requires_approval="add")}})


# -- over MCP (`codemode mcp`): elicitation ------------------------------------------------------
class Elicitations:
    """An elicitation callback that answers as told and keeps what it was asked."""

    def __init__(self, action: Literal["accept", "decline", "cancel"], approve: bool = True) -> None:
        self.action = action
        self.approve = approve
        self.asked: list[mcp_types.ElicitRequestParams] = []

    async def __call__(self, context: Any, params: mcp_types.ElicitRequestParams) -> mcp_types.ElicitResult:
        self.asked.append(params)
        content: dict[str, str | int | float | bool | list[str] | None] | None = None
        if self.action == "accept":
            content = {"approve": self.approve}
        return mcp_types.ElicitResult(action=self.action, content=content)


def mcp_text(result: mcp_types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, mcp_types.TextContent))


MCP_DELETE = {"code": 'text(await tools.delete_file({ path: "/tmp/x" }))'}


@pytest.mark.integration
async def test_over_mcp_the_client_is_asked_with_elicitation_and_an_accept_runs_the_call(
    files: Files,
) -> None:
    answers = Elicitations("accept")
    async with Client(create_server(files.tools()), mode="legacy", elicitation_callback=answers) as client:
        result = await within(client.call_tool("exec", MCP_DELETE))
    assert mcp_text(result).endswith("deleted /tmp/x")
    [asked] = answers.asked
    assert isinstance(asked, mcp_types.ElicitRequestFormParams)
    assert 'call 1 tools.delete_file({"path":"/tmp/x"})' in asked.message
    assert asked.requested_schema["required"] == ["approve"]
    assert files.deleted == ["/tmp/x"]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("action", "approve", "why"),
    [
        ("decline", True, "they declined it"),
        ("cancel", True, "they dismissed the question"),
        ("accept", False, "they left Approve unchecked"),
    ],
)
async def test_over_mcp_anything_but_an_accepted_approval_rejects_the_call(
    files: Files, action: Literal["accept", "decline", "cancel"], approve: bool, why: str
) -> None:
    answers = Elicitations(action, approve)
    async with Client(create_server(files.tools()), mode="legacy", elicitation_callback=answers) as client:
        result = await within(client.call_tool("exec", MCP_DELETE))
    assert result.is_error
    refusal = f"The user did not approve this call to tools.delete_file ({why}); it was not run."
    assert refusal in mcp_text(result)
    assert files.deleted == []


@pytest.mark.integration
@pytest.mark.parametrize(
    ("mode", "callback", "why"),
    [
        ("legacy", False, "the MCP client does not support elicitation"),
        ("2026-07-28", False, "the MCP client does not support elicitation"),
    ],
)
async def test_over_mcp_without_a_way_to_ask_the_call_is_rejected_never_run(
    files: Files, mode: Any, callback: bool, why: str
) -> None:
    answers = Elicitations("accept")
    options: dict[str, Any] = {"elicitation_callback": answers} if callback else {}
    async with Client(create_server(files.tools()), mode=mode, **options) as client:
        result = await within(client.call_tool("exec", MCP_DELETE))
    assert result.is_error
    assert (
        f"Approvals are not available over this MCP connection ({why}), so this call to tools.delete_file, "
        "which needs approval, was not run."
    ) in mcp_text(result)
    assert files.deleted == [] and answers.asked == []


@pytest.mark.integration
async def test_over_mcp_the_host_policy_decides_first_and_leaves_only_ask_to_the_client(files: Files) -> None:
    def policy(call: ToolCall) -> ApprovalDecision:
        return "ask" if call.arguments["path"] == "/ask" else call.arguments["path"] == "/ok"

    answers = Elicitations("accept")
    code = """
    text(await tools.delete_file({ path: "/ok" }));
    try { await tools.delete_file({ path: "/no" }); } catch (e) { text(e); }
    text(await tools.delete_file({ path: "/ask" }));
    """
    server = create_server(files.tools(), approve=policy)
    async with Client(server, mode="legacy", elicitation_callback=answers) as client:
        result = await within(client.call_tool("exec", {"code": code}))
    assert not result.is_error, mcp_text(result)
    assert files.deleted == ["/ok", "/ask"]
    assert len(answers.asked) == 1


# -- races, on the scripted engine -------------------------------------------------------------------

async def test_an_approval_while_the_cell_terminates_is_refused_and_nothing_runs(files: Files) -> None:
    engine = FakeEngine()
    async with CodeMode(tools=files.tools(), engine=engine) as cm:
        run = asyncio.ensure_future(cm.exec("…", yield_time_ms=LONG_YIELD_MS))
        cell = await within(engine.next_cell())
        call_id = cell.call_tool("delete_file", '{"path": "/x"}')
        first = await within(run)
        assert [p.call_id for p in first.pending_approvals] == [str(call_id)]
        assert first.cell_id is not None

        cell.block_terminate()
        stopping = asyncio.ensure_future(cm.wait(first.cell_id, terminate=True))
        await within(cell.terminate_started.wait())
        with pytest.raises(UsageError, match=f"exec cell {first.cell_id} is no longer running"):
            await cm.approve(first.cell_id, str(call_id))
        cell.unblock_terminate()
        stopped = await within(stopping)
    assert stopped.status == "terminated"
    assert [(r.call_id, r.outcome) for r in stopped.tool_calls] == [(str(call_id), "cancelled")]
    assert files.deleted == [] and call_id not in cell.resolved


async def test_a_call_that_starts_waiting_between_observations_wakes_the_next_wait_at_once(
    files: Files,
) -> None:
    engine = FakeEngine()
    async with CodeMode(tools=files.tools(), engine=engine) as cm:
        run = asyncio.ensure_future(cm.exec("…", yield_time_ms=LONG_YIELD_MS))
        cell = await within(engine.next_cell())
        cell.yield_()
        first = await within(run)
        assert first.cell_id is not None and first.pending_approvals == ()
        call_id = cell.call_tool("delete_file", '{"path": "/y"}')
        woke = await within(cm.wait(first.cell_id, yield_time_ms=LONG_YIELD_MS))
        assert [p.call_id for p in woke.pending_approvals] == [str(call_id)]
        await cm.reject(first.cell_id, str(call_id), reason="no")
        assert await within(cell.resolution(call_id)) == (False, "no")
        cell.finish()
        assert (await within(cm.wait(first.cell_id))).status == "completed"


async def test_a_script_that_ends_without_awaiting_its_pending_call_cancels_it(files: Files) -> None:
    engine = FakeEngine()
    async with CodeMode(tools=files.tools(), engine=engine) as cm:
        run = asyncio.ensure_future(cm.exec("…", yield_time_ms=LONG_YIELD_MS))
        cell = await within(engine.next_cell())
        call_id = cell.call_tool("delete_file", '{"path": "/z"}')
        first = await within(run)
        assert first.cell_id is not None
        cell.finish()
        done = await within(cm.wait(first.cell_id))
        assert (done.status, [r.outcome for r in done.tool_calls]) == ("completed", ["cancelled"])
        with pytest.raises(UsageError, match="has ended"):
            await cm.approve(first.cell_id, str(call_id))
    assert files.deleted == []


async def test_approve_running_call_outside_a_nested_call_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="only inside a nested tool call's handler"):
        await approve_running_call()


@pytest.mark.integration
def test_over_mcp_http_the_client_approves_a_downstream_servers_call(tmp_path: Path) -> None:
    """`codemode mcp --transport http` in a subprocess; its downstream server's `add` needs approval."""
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"py": py_server(requires_approval=["add"])}}))
    server = start_http_server(config, tmp_path)
    accepted, declined = Elicitations("accept"), Elicitations("decline")

    async def exec_with(answers: Elicitations) -> str:
        async with Client(server.url, mode="legacy", elicitation_callback=answers) as client:
            code = "text((await tools.mcp__py__add({ a: 1, b: 2 })).structuredContent.total)"
            return mcp_text(await within(client.call_tool("exec", {"code": code})))

    try:
        assert asyncio.run(exec_with(accepted)).endswith("Output:\n\n3")
        refused = asyncio.run(exec_with(declined))
        assert "The user did not approve this call to tools.mcp__py__add (they declined it)" in refused
    finally:
        assert stop(server) in STOPPED_CLEANLY, server.stderr.read_text()
    assert 'tools.mcp__py__add({"a":1,"b":2})' in accepted.asked[0].message


async def test_a_call_answered_before_anyone_observed_it_does_not_end_the_next_wait_early(cm: CodeMode) -> None:
    # The host answers a call it saw through `pending_approvals` (as the MCP front end does when
    # it asks again at once); the next wait must run to completion, not return "running" at once.
    code = 'await yield_control(); text(await tools.delete_file({ path: "/b" }).catch((e) => "no: " + e))'
    result = await within(cm.exec(code, yield_time_ms=LONG_YIELD_MS))
    assert result.status == "running" and result.cell_id is not None
    cell_id = result.cell_id
    await wait_until(lambda: cm.pending_approvals(cell_id), "the call waits for approval")
    [pending] = cm.pending_approvals(cell_id)
    await cm.reject(cell_id, pending.call_id, reason="not now")
    done = await within(cm.wait(cell_id, yield_time_ms=LONG_YIELD_MS))
    assert (done.status, texts(done)) == ("completed", ["no: not now"])
