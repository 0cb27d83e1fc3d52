"""MCP servers as nested tools (`codemode.tools.mcp`), against real servers only.

Servers: the npm reference server `@modelcontextprotocol/server-everything` (stdio; installed by
`npm ci --prefix tests/mcp_servers`) and `tests/mcp_servers/py_server.py`, written with the
`mcp` SDK, over stdio and over streamable HTTP.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codemode._protocol.lifecycle import State
from codemode.errors import ToolError, UsageError
from codemode.tools import Tool
from codemode.tools.mcp import (
    McpLogMessage,
    McpProgress,
    McpServerError,
    McpStdioServer,
    McpToolset,
    load_mcp_config,
)
from waiting import wait_until

pytestmark = pytest.mark.integration

SERVERS = Path(__file__).parent / "mcp_servers"
PY_SERVER = SERVERS / "py_server.py"
EVERYTHING_BIN = SERVERS / "node_modules" / ".bin" / "mcp-server-everything"


def py_server(*args: str, **settings: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": [str(PY_SERVER), *args], **settings}


@pytest.fixture(scope="module")
def everything() -> dict[str, Any]:
    if not EVERYTHING_BIN.exists():
        pytest.fail("npm test servers missing: run `npm ci --prefix tests/mcp_servers`")
    return {"command": str(EVERYTHING_BIN), "args": ["stdio"]}


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    """py_server.py over streamable HTTP on 127.0.0.1 and a free port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(PY_SERVER), "--http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def by_name(toolset: McpToolset) -> dict[str, Tool]:
    return {tool.name: tool for tool in toolset.tools}


class HangsBegun:
    """An `on_progress` hook counting the `hang` calls the server began (each reports progress first)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, event: McpProgress) -> None:
        if event.tool == "hang":
            self.count += 1

    async def reach(self, count: int) -> None:
        await wait_until(lambda: self.count >= count, f"the server began {count} `hang` call(s)")


async def call(toolset: McpToolset, name: str, arguments: dict[str, Any] | None = None) -> Any:
    tool = by_name(toolset)[name]
    result = await tool.handler({} if arguments is None else arguments)
    # What crosses into JS is JSON: it must survive a round trip unchanged.
    assert json.loads(json.dumps(result)) == result
    return result


def child_pids() -> set[int]:
    """Live or zombie children of this process (Linux /proc)."""
    me = str(os.getpid())
    children: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces, so split after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if fields[1] == me:
            children.add(int(entry.name))
    return children


# -- config ----------------------------------------------------------------------------------


def test_config_from_mapping_and_file(tmp_path: Path) -> None:
    raw = {
        "mcpServers": {
            "local": {
                "command": "node",
                "args": ["server.js"],
                "env": {"TOKEN": "x"},
                "cwd": "/tmp",
                "timeout": 5,
            },
            "remote": {"url": "http://127.0.0.1:1/mcp", "headers": {"Authorization": "B"}, "type": "http"},
            "off": {"command": "nothing", "disabled": True},
        }
    }
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(raw))
    for source in (raw, path, str(path)):
        config = load_mcp_config(source)
        assert list(config.servers) == ["local", "remote", "off"]
        assert list(config.enabled) == ["local", "remote"]
        local = config.servers["local"]
        assert isinstance(local, McpStdioServer)
        assert (local.command, local.args, local.env, local.cwd, local.timeout) == (
            "node",
            ["server.js"],
            {"TOKEN": "x"},
            "/tmp",
            5.0,
        )
        assert config.servers["remote"].timeout == 60.0
    assert load_mcp_config({"mcpServers": {"s": {"command": "x", "startupTimeout": 2}}}).servers[
        "s"
    ].startup_timeout == 2.0


def one(server: object) -> dict[str, Any]:
    return {"mcpServers": {"s": server}}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "missing the `mcpServers` key"),
        ({"mcpServers": [], "x": 1}, "unknown top-level key(s) x"),
        ({"mcpServers": []}, "`mcpServers` must be an object"),
        ({"mcpServers": {"bad name": {"command": "x"}}}, "invalid server name 'bad name'"),
        (one("npx server"), "server `s` must be an object"),
        (one({"args": []}), "server `s` needs `command` (a stdio server) or `url`"),
        (one({"command": "x", "url": "http://h"}), "server `s` has both `command` and `url`"),
        (one({"url": "http://h/sse", "type": "sse"}), "SSE transport is not supported"),
        (one({"command": "x", "argz": []}), "server `s`: unknown key `argz` (allowed:"),
        (one({"command": "x", "args": "a b"}), "server `s`: `args`: Input should be a valid list"),
        (one({"command": "x", "env": {"N": 1}}), "server `s`: `env.N`: Input should be a valid string"),
        (one({"command": "x", "timeout": 0}), "server `s`: `timeout`: Input should be greater than 0"),
        (one({"command": ""}), "server `s`: `command`: String should have at least 1 character"),
        (one({"url": "http://h", "type": "stdio"}), "server `s`: `type` 'stdio' does not match"),
    ],
)
def test_config_errors_name_the_problem(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as info:
        load_mcp_config(raw)
    assert message in str(info.value)


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read MCP config"):
        load_mcp_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"mcpServers": {,}}')
    with pytest.raises(UsageError, match=r"is not valid JSON: .* at line 1 column 17"):
        load_mcp_config(bad)
    listed = tmp_path / "list.json"
    listed.write_text("[]")
    with pytest.raises(UsageError, match="expected a JSON object"):
        load_mcp_config(listed)


# -- the npm reference server ------------------------------------------------------------------


async def test_everything_server_tools_and_schemas(everything: dict[str, Any]) -> None:
    from codemode._describe.mcp_types import mcp_output_schema

    async with McpToolset({"mcpServers": {"everything": everything}}) as toolset:
        tools = by_name(toolset)
        for raw in ("echo", "get-sum", "get-tiny-image", "get-structured-content"):
            assert f"mcp__everything__{raw}" in tools
        assert "mcp__everything__trigger-long-running-operation" in tools
        get_sum = tools["mcp__everything__get-sum"]
        assert get_sum.description == "Returns the sum of two numbers"
        assert get_sum.namespace is None
        assert get_sum.kind == "function"
        assert get_sum.input_schema is not None
        assert get_sum.input_schema["properties"]["a"] == {"type": "number", "description": "First number"}
        assert get_sum.input_schema["required"] == ["a", "b"]
        assert get_sum.output_schema == mcp_output_schema(None)
        structured = tools["mcp__everything__get-structured-content"].output_schema
        assert structured is not None
        assert set(structured["properties"]["structuredContent"]["properties"]) == {
            "temperature",
            "conditions",
            "humidity",
        }
        # Arguments are checked against the MCP input schema before the call.
        with pytest.raises(ToolError, match="a"):
            get_sum.validate({"b": 1})


async def test_everything_server_results(everything: dict[str, Any]) -> None:
    async with McpToolset({"mcpServers": {"everything": everything}}) as toolset:
        assert await call(toolset, "mcp__everything__echo", {"message": "hi"}) == {
            "content": [{"type": "text", "text": "Echo: hi"}],
            "isError": False,
        }
        total = await call(toolset, "mcp__everything__get-sum", {"a": 2, "b": 3})
        assert total["isError"] is False
        assert "5" in total["content"][0]["text"]
        assert "structuredContent" not in total

        image = await call(toolset, "mcp__everything__get-tiny-image")
        blocks = [block for block in image["content"] if block["type"] == "image"]
        assert len(blocks) == 1
        assert blocks[0]["mimeType"] == "image/png"  # camelCase, as on the wire
        assert blocks[0]["data"].startswith("iVBOR")
        assert "mime_type" not in blocks[0]

        weather = await call(toolset, "mcp__everything__get-structured-content", {"location": "Chicago"})
        assert set(weather) == {"content", "structuredContent", "isError"}
        assert set(weather["structuredContent"]) == {"temperature", "conditions", "humidity"}
        assert json.loads(weather["content"][0]["text"]) == weather["structuredContent"]


CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("CALLER", default="nobody")


async def test_progress_notifications_reach_the_hook(everything: dict[str, Any]) -> None:
    events: list[McpProgress] = []
    async_events: list[tuple[str, McpProgress]] = []

    async def async_hook(event: McpProgress) -> None:
        await asyncio.sleep(0)
        async_events.append((CALLER.get(), event))

    config = {"mcpServers": {"everything": everything}}
    async with McpToolset(config, on_progress=events.append) as toolset:
        result = await call(
            toolset, "mcp__everything__trigger-long-running-operation", {"duration": 0.3, "steps": 3}
        )
        assert result["isError"] is False
    assert [(e.server, e.tool, e.progress, e.total) for e in events] == [
        ("everything", "trigger-long-running-operation", float(step), 3.0) for step in (1, 2, 3)
    ]
    async with McpToolset(config, on_progress=async_hook) as toolset:

        async def caller(name: str) -> None:
            CALLER.set(name)
            arguments = {"duration": 0.2, "steps": 2}
            await call(toolset, "mcp__everything__trigger-long-running-operation", arguments)

        await asyncio.gather(caller("cell-1"), caller("cell-2"))
    # The hook runs in the context of the task that made the call.
    assert sorted((who, e.progress) for who, e in async_events) == [
        ("cell-1", 1.0),
        ("cell-1", 2.0),
        ("cell-2", 1.0),
        ("cell-2", 2.0),
    ]


# -- the Python test server --------------------------------------------------------------------


async def test_structured_content_and_is_error_resolve() -> None:
    async with McpToolset({"mcpServers": {"py": py_server()}}) as toolset:
        assert [tool.name for tool in toolset.tools] == [
            "mcp__py__add",
            "mcp__py__fail",
            "mcp__py__reject",
            "mcp__py__crash",
            "mcp__py__hang",
            "mcp__py__work",
            "mcp__py__header",
            "mcp__py__pid",
        ]
        add = by_name(toolset)["mcp__py__add"]
        assert add.output_schema is not None
        structured = add.output_schema["properties"]["structuredContent"]
        assert structured["properties"]["total"]["type"] == "integer"
        assert await call(toolset, "mcp__py__add", {"a": 2, "b": 40}) == {
            "content": [{"type": "text", "text": '{\n  "total": 42,\n  "terms": [\n    2,\n    40\n  ]\n}'}],
            "structuredContent": {"total": 42, "terms": [2, 40]},
            "isError": False,
        }
        failed = await call(toolset, "mcp__py__fail", {"message": "no such city"})
        assert failed["isError"] is True
        assert "no such city" in failed["content"][0]["text"]
        assert "_meta" not in failed


async def test_protocol_error_rejects_naming_server_and_tool() -> None:
    async with McpToolset({"mcpServers": {"py": py_server()}}) as toolset:
        with pytest.raises(ToolError) as info:
            await call(toolset, "mcp__py__reject")
        assert str(info.value) == (
            "MCP tool `reject` on server `py` failed: reject always rejects (MCP error -32602)"
        )
        # The connection is still fine.
        assert (await call(toolset, "mcp__py__add", {"a": 1, "b": 1}))["isError"] is False


async def test_crash_rejects_the_call_and_the_next_call_restarts() -> None:
    begun = HangsBegun()
    async with McpToolset({"mcpServers": {"py": py_server()}}, on_progress=begun) as toolset:
        first_pid = (await call(toolset, "mcp__py__pid"))["structuredContent"]["result"]
        with pytest.raises(ToolError) as info:
            await call(toolset, "mcp__py__crash")
        message = str(info.value)
        assert "MCP server `py` closed the connection during the call to `crash`" in message
        assert "restarted on the next call" in message
        assert "pytools: crashing on purpose" in message  # the stderr tail
        second_pid = (await call(toolset, "mcp__py__pid"))["structuredContent"]["result"]
        assert second_pid != first_pid
        assert not Path(f"/proc/{first_pid}").exists()  # reaped, not a zombie
        assert (await call(toolset, "mcp__py__add", {"a": 1, "b": 1}))["structuredContent"]["total"] == 2

        # Calls in flight when the server dies are all rejected; the next ones restart it once.
        hanging = [asyncio.create_task(call(toolset, "mcp__py__hang")) for _ in range(3)]
        await begun.reach(3)
        with pytest.raises(ToolError):
            await call(toolset, "mcp__py__crash")
        for task in hanging:
            with pytest.raises(ToolError, match="closed the connection during the call to `hang`"):
                await task
        pids = await asyncio.gather(*(call(toolset, "mcp__py__pid") for _ in range(3)))
        assert len({p["structuredContent"]["result"] for p in pids} - {first_pid, second_pid}) == 1


async def test_server_killed_between_calls_is_restarted_transparently(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="codemode.tools.mcp")
    async with McpToolset({"mcpServers": {"py": py_server()}}) as toolset:
        first_pid = (await call(toolset, "mcp__py__pid"))["structuredContent"]["result"]
        os.kill(first_pid, signal.SIGKILL)
        for _ in range(100):  # the connection notices the exit on its own
            if not Path(f"/proc/{first_pid}").exists():
                break
            await asyncio.sleep(0.02)
        await wait_until(lambda: "closed the connection" in caplog.text, "the connection saw its stdout EOF")
        second_pid = (await call(toolset, "mcp__py__pid"))["structuredContent"]["result"]
        assert second_pid != first_pid


async def test_hanging_call_times_out_and_the_server_stays_up() -> None:
    async with McpToolset({"mcpServers": {"py": py_server(timeout=0.5)}}) as toolset:
        first_pid = (await call(toolset, "mcp__py__pid"))["structuredContent"]["result"]
        started = time.monotonic()
        with pytest.raises(ToolError, match=r"MCP tool `hang` on server `py` timed out after 0.5 s"):
            await call(toolset, "mcp__py__hang")
        assert time.monotonic() - started < 5
        assert (await call(toolset, "mcp__py__pid"))["structuredContent"]["result"] == first_pid


async def test_cancelled_call_leaves_the_connection_usable() -> None:
    begun = HangsBegun()
    async with McpToolset({"mcpServers": {"py": py_server()}}, on_progress=begun) as toolset:
        task = asyncio.create_task(call(toolset, "mcp__py__hang"))
        await begun.reach(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        results = await asyncio.gather(*(call(toolset, "mcp__py__add", {"a": i, "b": 1}) for i in range(5)))
        assert [r["structuredContent"]["total"] for r in results] == [1, 2, 3, 4, 5]


async def test_log_messages_go_to_logging_and_the_hook(caplog: pytest.LogCaptureFixture) -> None:
    messages: list[McpLogMessage] = []
    caplog.set_level(logging.INFO, logger="codemode.tools.mcp")
    async with McpToolset({"mcpServers": {"py": py_server()}}, on_log=messages.append) as toolset:
        result = await call(toolset, "mcp__py__work", {"steps": 2})
        assert result["structuredContent"] == {"result": "done 2 steps"}
    assert [(m.server, m.level, m.data) for m in messages] == [
        ("py", "info", "step 1 of 2"),
        ("py", "info", "step 2 of 2"),
    ]
    logged = [(r.name, r.levelno, r.getMessage()) for r in caplog.records if "step" in r.getMessage()]
    assert logged == [
        ("codemode.tools.mcp.py", logging.INFO, "step 1 of 2"),
        ("codemode.tools.mcp.py", logging.INFO, "step 2 of 2"),
    ]


async def test_http_server(http_url: str) -> None:
    config = {"mcpServers": {"web": {"url": http_url, "headers": {"X-Codemode-Test": "yes"}, "timeout": 0.5}}}
    async with McpToolset(config) as toolset:
        assert "mcp__web__add" in by_name(toolset)
        assert (await call(toolset, "mcp__web__add", {"a": 1, "b": 2}))["structuredContent"]["total"] == 3
        header = await call(toolset, "mcp__web__header", {"name": "X-Codemode-Test"})
        assert header["structuredContent"] == {"result": "yes"}
        assert (await call(toolset, "mcp__web__fail", {"message": "bad"}))["isError"] is True
        with pytest.raises(ToolError, match="MCP tool `hang` on server `web` timed out"):
            await call(toolset, "mcp__web__hang")
        assert (await call(toolset, "mcp__web__add", {"a": 2, "b": 2}))["structuredContent"]["total"] == 4


# -- start-up failures ------------------------------------------------------------------------


async def test_failed_servers_are_reported_and_the_others_work(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    config = {
        "mcpServers": {
            "broken": py_server("--fail-at-start"),
            "py": py_server(),
            "missing": {"command": "codemode-no-such-command"},
            "unreachable": {"url": f"http://127.0.0.1:{closed_port}/mcp"},
            # Reads stdin until it closes and never answers the handshake.
            "mute": {"command": sys.executable, "args": ["-c", "import sys; sys.stdin.read()"]}
            | {"startup_timeout": 0.5},
        }
    }
    caplog.set_level(logging.WARNING, logger="codemode.tools.mcp")
    async with McpToolset(config) as toolset:
        assert {tool.name.split("__")[1] for tool in toolset.tools} == {"py"}
        assert list(toolset.failures) == ["broken", "missing", "unreachable", "mute"]
        broken = toolset.failures["broken"]
        assert broken.server == "broken"
        assert str(broken) == (
            "MCP server `broken` exited (or closed its stdout) before completing the MCP handshake; "
            "its stderr ends with:\n  pytools: configuration error: API_TOKEN is not set"
        )
        missing = str(toolset.failures["missing"])
        assert "MCP server `missing` could not be launched: No such file or directory" in missing
        assert f"MCP server `unreachable` could not be reached at http://127.0.0.1:{closed_port}/mcp" in str(
            toolset.failures["unreachable"]
        )
        assert "MCP server `mute` did not finish starting" in str(toolset.failures["mute"])
        notice = toolset.notice
        assert notice is not None
        assert notice.splitlines()[0] == "Some MCP servers failed to start, so their tools are not available:"
        assert (
            "- `broken`: exited (or closed its stdout) before completing the MCP handshake"
            " (pytools: configuration error: API_TOKEN is not set)"
        ) in notice.splitlines()
        assert (await call(toolset, "mcp__py__add", {"a": 1, "b": 2}))["structuredContent"]["total"] == 3
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    for name in ("broken", "missing", "unreachable", "mute"):
        assert f"MCP server `{name}`" in warned


async def test_required_server_failure_fails_start() -> None:
    before = child_pids()
    broken = py_server("--fail-at-start", required=True)
    toolset = McpToolset({"mcpServers": {"py": py_server(), "broken": broken}})
    with pytest.raises(McpServerError, match="MCP server `broken` exited"):
        await toolset.start()
    assert child_pids() <= before
    assert toolset.state is State.FAILED
    failed = "this McpToolset failed to start: McpServerError: MCP server `broken`"
    with pytest.raises(UsageError, match=failed):
        await toolset.start()
    with pytest.raises(UsageError, match=failed):
        toolset.tools
    await toolset.aclose()
    assert toolset.state is State.CLOSED
    with pytest.raises(UsageError, match="was closed"):
        await toolset.start()


# -- lifecycle -------------------------------------------------------------------------------


async def test_lifecycle_errors_and_calls_after_close() -> None:
    toolset = McpToolset({"mcpServers": {"py": py_server()}})
    with pytest.raises(UsageError, match="after start"):
        toolset.tools
    await toolset.start()
    try:
        with pytest.raises(UsageError, match="only once"):
            await toolset.start()
        add = by_name(toolset)["mcp__py__add"]
    finally:
        await toolset.aclose()
    await toolset.aclose()  # idempotent
    with pytest.raises(ToolError, match="MCP server `py` was shut down"):
        await add.handler({"a": 1, "b": 2})


async def test_close_during_a_call_rejects_it() -> None:
    begun = HangsBegun()
    toolset = McpToolset({"mcpServers": {"py": py_server()}}, on_progress=begun)
    await toolset.start()
    task = asyncio.create_task(call(toolset, "mcp__py__hang"))
    await begun.reach(1)
    await toolset.aclose()
    with pytest.raises(ToolError, match="MCP server `py` was shut down"):
        await task


async def test_shutdown_leaves_no_child_processes(everything: dict[str, Any]) -> None:
    before = child_pids()
    config = {"mcpServers": {"everything": everything, "py": py_server(), "py2": py_server()}}
    async with McpToolset(config) as toolset:
        pids = [(await call(toolset, f"mcp__{n}__pid"))["structuredContent"]["result"] for n in ("py", "py2")]
        assert len(child_pids() - before) == 3
    assert child_pids() <= before
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("codemode-mcp")]


async def test_empty_config() -> None:
    async with McpToolset({"mcpServers": {}}) as toolset:
        assert toolset.tools == []
        assert toolset.failures == {}
        assert toolset.notice is None


# -- through a code-mode session ---------------------------------------------------------------


async def test_scripts_call_mcp_tools(everything: dict[str, Any]) -> None:
    from codemode import CodeMode

    config = {"mcpServers": {"everything": everything, "py": py_server()}}
    async with CodeMode(mcp_servers=config) as cm:
        result = await cm.exec(
            """
            const sum = await tools.mcp__everything__get_sum({ a: 2, b: 3 });
            text(JSON.stringify(sum));
            const failed = await tools.mcp__py__fail({ message: "nope" });
            text(String(failed.isError));
            try {
              await tools.mcp__py__crash({});
            } catch (error) {
              text("rejected: " + (error?.message ?? String(error)));
            }
            const added = await tools.mcp__py__add({ a: 1, b: 2 });
            text(JSON.stringify(added.structuredContent));
            """
        )
    assert result.status == "completed", result.error
    texts = [getattr(item, "text", None) for item in result.items]
    assert texts[0] == '{"content":[{"type":"text","text":"The sum of 2 and 3 is 5."}],"isError":false}'
    assert texts[1] == "true"
    assert texts[2] is not None
    assert texts[2].startswith("rejected: MCP server `py` closed the connection during the call to `crash`")
    assert texts[3] == '{"total":3,"terms":[1,2]}'


def test_stderr_tail_is_bounded() -> None:
    from codemode.tools.mcp._stderr import StderrTail

    tail = StderrTail(logging.getLogger("test"), max_lines=3, max_line_chars=10)
    tail.feed(b"one\ntwo\n\nthree\nfo")
    tail.feed("ur \u00e9".encode()[:-1])  # a split multi-byte character
    assert tail.tail() == "one\ntwo\nthree"
    tail.feed("\u00e9".encode()[-1:] + b"\n" + b"x" * 25 + b"\n")
    tail.flush()
    assert tail.tail() == "three\nfour \u00e9\n" + "x" * 10 + "…"
    assert tail.tail(max_lines=1) == "x" * 10 + "…"
    assert tail.tail(max_chars=5) == "x" * 10 + "…"  # always at least the last line


async def test_a_server_that_failed_to_start_is_named_in_the_exec_description() -> None:
    from codemode import CodeMode

    config = {"mcpServers": {"py": py_server(), "broken": py_server("--fail-at-start")}}
    async with CodeMode(mcp_servers=config) as cm:
        description = cm.exec_description()
        specs = {spec["name"]: spec for spec in cm.tool_specs("anthropic")}
        result = await cm.exec("text(Object.keys(tools).join(','))")
    assert "Some MCP servers failed to start, so their tools are not available:" in description
    assert "- `broken`:" in description
    assert "- `broken`:" in specs["exec"]["description"]
    assert result.items and "mcp__py__add" in getattr(result.items[0], "text", "")


# An `npx` run that cannot get its package, as npm prints it: the cause first, its log's path
# (under the user's home) last. `$HOME`, `$USER` and `$NPM_TOKEN` come from the server's env.
FAKE_NPX = """
import os, sys
home, user, token = os.environ["HOME"], os.environ["USER"], os.environ["NPM_TOKEN"]
if sys.argv[1] == "missing":
    sys.stderr.write(
        "npm error code E404\\n"
        "npm error 404 Not Found - GET https://registry.npmjs.org/@acme%2fmcp-server - Not found\\n"
        "npm error 404\\n"
        "npm error 404  The requested resource '@acme/mcp-server@*' could not be found or you do not "
        "have permission to access it.\\n"
        "npm error 404\\n"
        "npm error 404 Note that you can also install from a\\n"
        "npm error 404 tarball, folder, http url, or git url.\\n"
    )
else:
    sys.stderr.write(
        "npm warn exec The following package was not found and will be installed: @acme/mcp-server\\n"
        "npm error code E401\\n"
        f"npm error 401 Unauthorized - GET https://npm.acme.example/@acme%2fmcp-server - token {token} "
        f"of {user} was rejected (npmrc: {home}/.npmrc)\\n"
    )
sys.stderr.write(f"npm error A complete log of this run can be found in: {home}/.npm/_logs/2026-12-06T16_53_57_338Z-debug-0.log\\n")
sys.exit(1)
"""


async def test_a_stdio_server_that_fails_to_start_is_named_with_its_cause_and_no_host_details(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from codemode import CodeMode

    home, user, token = str(tmp_path / "home" / "alice-h20b"), "alice-h20b", "npm_S3cr3tT0kenValue"
    script = tmp_path / "fake_npx.py"
    script.write_text(FAKE_NPX)
    env = {"HOME": home, "USER": user, "NPM_TOKEN": token}
    config = {
        "mcpServers": {
            name: {"command": sys.executable, "args": [str(script), name], "env": env}
            for name in ("missing", "private")
        }
    }
    caplog.set_level(logging.WARNING, logger="codemode.tools.mcp")
    async with McpToolset(config) as toolset:
        missing, private = toolset.failures["missing"], toolset.failures["private"]
    async with CodeMode(mcp_servers=config) as cm:
        description = cm.exec_description()

    # The host: the cause, not npm's last line, in the exception and the log.
    assert missing.stderr_cause == (
        "npm error code E404",
        "npm error 404 Not Found - GET https://registry.npmjs.org/@acme%2fmcp-server - Not found",
        "npm error 404  The requested resource '@acme/mcp-server@*' could not be found or you do not have "
        "permission to access it.",
    )
    assert str(missing).startswith(
        "MCP server `missing` exited (or closed its stdout) before completing the MCP handshake; "
        "the cause, from its stderr: npm error code E404; npm error 404 Not Found - GET "
    )
    assert f"{home}/.npm/_logs/" in str(missing)  # the whole tail too, for the host
    assert private.summary == (
        "MCP server `private` exited (or closed its stdout) before completing the MCP handshake (stderr: "
        f"npm error code E401; npm error 401 Unauthorized - GET https://npm.acme.example/@acme%2fmcp-server - "
        f"token {token} of {user} was rejected (npmrc: {home}/.npmrc))"
    )
    warned = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "npm error code E404" in warned and "npm error code E401" in warned

    # The model: each server and a short cause, with no home, user name, secret or log path.
    for text in (toolset.notice or "", description):
        assert "- `missing`: exited (or closed its stdout) before completing the MCP handshake (npm error code E404;" in text
        assert (
            "- `private`: exited (or closed its stdout) before completing the MCP handshake (npm error code E401; "
            "npm error 401 Unauthorized - GET https://npm.acme.example/@acme%2fmcp-server - token <redacted> of "
            "<user> was rejected (npmrc: .../.npmrc))"
        ) in text
        for host_detail in (home, user, token, "_logs", str(tmp_path)):
            assert host_detail not in text


async def test_the_mcp_front_end_tells_its_client_why_it_cannot_start_without_host_details(tmp_path: Path) -> None:
    from mcp import Client
    from mcp.shared.exceptions import MCPError

    from codemode.mcp_server import create_server

    script = tmp_path / "fake_npx.py"
    script.write_text(FAKE_NPX)
    env = {"HOME": str(tmp_path), "USER": "alice-h20b", "NPM_TOKEN": "npm_S3cr3tT0kenValue"}
    server = {"command": sys.executable, "args": [str(script), "private"], "env": env, "required": True}
    async with Client(create_server(mcp_servers={"mcpServers": {"private": server}})) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("exec", {"code": "text(1)"})
    message = caught.value.message
    assert message.startswith("code mode failed to start: MCP server `private` exited (or closed its stdout) ")
    assert "npm error code E401" in message
    for host_detail in (str(tmp_path), "alice-h20b", "npm_S3cr3tT0kenValue"):
        assert host_detail not in message


async def test_mcp_blocks_forward_to_the_model(everything: dict[str, Any]) -> None:
    """`image(result.content[i])` forwards one MCP image block; `forward_output(result)` all of
    a result's text and image blocks, in order."""
    from codemode import CodeMode, ImageItem, TextItem

    async with CodeMode(mcp_servers={"mcpServers": {"everything": everything}}) as cm:
        result = await cm.exec(
            """
            const tiny = await tools.mcp__everything__get_tiny_image({});
            image(tiny.content.find((block) => block.type === "image"));
            forward_output(tiny);
            """
        )
    assert result.status == "completed", result.error
    first, *forwarded = result.items
    assert isinstance(first, ImageItem) and first.image_url.startswith("data:image/png;base64,iVBOR")
    kinds = [type(item) for item in forwarded]
    assert ImageItem in kinds and TextItem in kinds
    assert [item for item in forwarded if isinstance(item, ImageItem)] == [first]


# -- sharing, task-only tools, name collisions -----------------------------------------------
async def test_toolsets_on_one_loop_share_a_server_until_the_last_one_closes() -> None:
    before = child_pids()
    config = {"mcpServers": {"py": py_server()}}
    first, second = McpToolset(config), McpToolset(config)
    await asyncio.gather(first.start(), second.start())  # one start, both wait for it
    pid_tool = {tool.name: tool for tool in first.tools}["mcp__py__pid"]
    other_pid_tool = {tool.name: tool for tool in second.tools}["mcp__py__pid"]
    shared_pid = (await pid_tool.handler({}))["structuredContent"]["result"]
    assert len(child_pids() - before) == 1
    await first.aclose()
    assert (await other_pid_tool.handler({}))["structuredContent"]["result"] == shared_pid
    await second.aclose()
    assert child_pids() <= before


async def test_per_session_servers_are_not_shared() -> None:
    config = {"mcpServers": {"py": py_server(per_session=True)}}
    async with McpToolset(config) as first, McpToolset(config) as second:
        pids = [
            (await {tool.name: tool for tool in toolset.tools}["mcp__py__pid"].handler({}))["structuredContent"]["result"]
            for toolset in (first, second)
        ]
    assert pids[0] != pids[1]
    assert load_mcp_config({"mcpServers": {"py": py_server(perSession=True)}}).servers["py"].per_session


async def test_a_failed_start_is_reported_again_without_retrying_at_once() -> None:
    broken = {"mcpServers": {"broken": py_server("--fail-at-start")}}
    async with McpToolset(broken) as first:
        pass
    started = time.monotonic()
    async with McpToolset(broken) as second:
        pass
    assert "broken" in first.failures and "broken" in second.failures
    assert second.failures["broken"] is first.failures["broken"]  # the remembered verdict
    assert time.monotonic() - started < 5


async def test_tools_that_need_mcp_tasks_are_left_out_with_a_note(everything: dict[str, Any]) -> None:
    from codemode import CodeMode

    async with CodeMode(mcp_servers={"mcpServers": {"everything": everything}}) as cm:
        names = [nested.code_mode_name for nested in cm.tools]
        description = cm.exec_description()
    assert "mcp__everything__simulate-research-query" not in names
    assert "mcp__everything__echo" in names
    assert "only run as MCP tasks" in description
    assert "`mcp__everything__simulate-research-query`" in description


async def test_servers_whose_names_normalise_alike_report_the_tools_that_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from codemode import CodeMode

    config = {"mcpServers": {"a-b": py_server(), "a_b": py_server()}}
    with caplog.at_level(logging.WARNING, logger="codemode"):
        async with CodeMode(mcp_servers=config) as cm:
            description = cm.exec_description()
            result = await cm.exec("text(await tools.mcp__a_b__add({ a: 1, b: 2 }).then(r => r.structuredContent.total))")
    assert "another tool has the same script name" in description
    assert "- `mcp__a_b__add`: `tools.mcp__a_b__add` is already `mcp__a-b__add`" in description
    warned = " ".join(record.getMessage() for record in caplog.records if record.levelno == logging.WARNING)
    assert "`mcp__a_b__add`" in warned
    assert result.status == "completed", result.error
