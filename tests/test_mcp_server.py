"""codemode as an MCP server (`codemode mcp`, `codemode.mcp_server`), driven by real clients.

Clients: the `mcp` SDK's client over stdio and over streamable HTTP (the server a subprocess,
`python -m codemode mcp`), its in-memory client on `create_server`, and the MCP Inspector CLI
(npm, pinned in tests/mcp_servers). Nested tools: fixtures_tools.py and the npm reference server
`@modelcontextprotocol/server-everything` as a downstream MCP server.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mcp.client.stdio
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp_types import ImageContent, LoggingMessageNotificationParams
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from codemode import CodeMode, to_model
from codemode.mcp_server import CELL_ID_META_KEY, LOGGER_NAME, create_server
from fixtures_tools import TOOLS
from mcp_support import (
    INSPECTOR_BIN,
    KILL_AFTER_S,
    NOTIFY_LATER,
    SPIN,
    STOPPED_CLEANLY,
    TESTS,
    TINY_PNG,
    HttpServer,
    everything_servers,
    processes_mentioning,
    server_command,
    spinning_threads,
    start_http_server,
    stop,
    texts,
    write_config,
)

pytestmark = pytest.mark.integration

class Logs:
    """A logging callback that keeps the `notifications/message` a client receives."""

    def __init__(self) -> None:
        self.received: list[LoggingMessageNotificationParams] = []

    async def __call__(self, params: LoggingMessageNotificationParams) -> None:
        self.received.append(params)

    def data(self) -> list[Any]:
        return [params.data for params in self.received]

    async def wait_for(self, data: str, timeout: float = 5.0) -> LoggingMessageNotificationParams:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for params in self.received:
                if params.data == data:
                    return params
            await asyncio.sleep(0.02)
        raise AssertionError(f"no log notification {data!r}; got {self.data()}")


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    directory = tmp_path_factory.mktemp("http")
    server = start_http_server(write_config(directory), directory)
    try:
        yield server
    finally:
        assert stop(server) in STOPPED_CLEANLY, server.stderr.read_text()


# -- in memory -------------------------------------------------------------------------------
async def test_in_memory_tools_and_results_match_the_public_api() -> None:
    code = f'text(await tools.add({{a: 1, b: 2}})); image("{TINY_PNG}", "low")'
    async with CodeMode(TOOLS) as cm:
        specs = cm.tool_specs("mcp")
        expected = to_model(await cm.exec(code), "mcp")
    for mode in ("auto", "legacy"):
        async with Client(create_server(TOOLS), mode=mode) as client:
            listed = await client.list_tools()
            assert [tool.model_dump(by_alias=True, exclude_none=True) for tool in listed.tools] == specs
            result = await client.call_tool("exec", {"code": code})
        wire = result.model_dump(by_alias=True, exclude_none=True, mode="json", include={"content", "is_error"})
        assert wire["content"][0]["text"].startswith("Script completed\nWall time ")
        wire["content"][0] = expected["content"][0]  # the wall times may differ
        assert wire == expected
        assert wire["content"][2] == {
            "type": "image",
            "data": "iVBORw0KGgo=",
            "mimeType": "image/png",
            "_meta": {"codex/imageDetail": "low"},
        }


async def test_in_memory_modern_era_logs_need_the_opt_in_and_late_ones_wait_for_the_next_call() -> None:
    logs = Logs()
    async with Client(create_server(), logging_callback=logs) as client:
        await client.call_tool("exec", {"code": 'notify("unrequested")'})
    assert logs.received == []

    async with Client(create_server(), logging_callback=logs, log_level="info") as client:
        assert client.protocol_version == "2026-07-28"
        script = '// @exec: {"yield_time_ms": 50}\nawait new Promise(r => setTimeout(r, 200)); notify("late")'
        first = await client.call_tool("exec", {"code": script})
        assert texts(first)[0].startswith("Script running with cell ID 1")
        await asyncio.sleep(0.4)
        assert logs.received == []  # no call to carry it: 2026-07-28 has no channel of its own
        second = await client.call_tool("wait", {"cell_id": "1"})
        assert texts(second)[0].startswith("Script completed")
        late = await logs.wait_for("late")
        assert late.level == "info" and late.logger == LOGGER_NAME and late.meta == {CELL_ID_META_KEY: "1"}


async def test_in_memory_argument_errors() -> None:
    async with Client(create_server()) as client:
        missing = await client.call_tool("wait", {})
        assert missing.is_error
        assert texts(missing) == ["failed to parse function arguments: missing field `cell_id`"]
        extra = await client.call_tool("exec", {"code": "1", "timeout": 5})
        assert extra.is_error and "unknown field `timeout`" in texts(extra)[0]
        negative = await client.call_tool("exec", {"code": "1", "yield_time_ms": -1})
        assert texts(negative) == [
            "failed to parse function arguments: `yield_time_ms` must be a non-negative integer"
        ]
        unknown_cell = await client.call_tool("wait", {"cell_id": 7})
        assert unknown_cell.is_error and texts(unknown_cell)[-1] == "Script error:\nexec cell 7 not found"
        with pytest.raises(MCPError, match="Unknown tool: nope"):
            await client.call_tool("nope", {})


# -- stdio -----------------------------------------------------------------------------------
async def test_stdio_sdk_client(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    command = server_command(config)
    params = StdioServerParameters(command=command[0], args=command[1:], cwd=TESTS)
    logs = Logs()
    async with Client(params, logging_callback=logs, log_level="info") as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert list(listed) == ["exec", "wait"]
        description = listed["exec"].description or ""
        for name in ("### `add`", "### `shout`", "mcp__everything__echo", "mcp__everything__get_sum"):
            assert name in description
        assert listed["exec"].input_schema["required"] == ["code"]
        assert listed["wait"].input_schema["required"] == ["cell_id"]

        result = await client.call_tool(
            "exec",
            {
                "code": """
                notify("starting");
                text(await tools.add({ a: 2, b: 40 }));
                text(await tools.shout({ text: "hi" }));
                const echo = await tools.mcp__everything__echo({ message: "ping" });
                text(echo.content[0].text);
                const sum = await tools.mcp__everything__get_sum({ a: 1, b: 2 });
                text(sum.content[0].text);
                const tiny = await tools.mcp__everything__get_tiny_image({});
                image(tiny.content.find((block) => block.type === "image"));
                store("answer", 42);
                """
            },
        )
        assert result.is_error is False
        assert texts(result)[0].startswith("Script completed\nWall time ")
        assert texts(result)[1:] == ["42", "HI", "Echo: ping", "The sum of 1 and 2 is 3."]
        images = [block for block in result.content if isinstance(block, ImageContent)]
        assert len(images) == 1
        assert images[0].mime_type == "image/png" and images[0].data.startswith("iVBOR")
        started = await logs.wait_for("starting")
        assert (started.level, started.logger, started.meta) == ("info", LOGGER_NAME, {CELL_ID_META_KEY: "1"})

        loaded = await client.call_tool("exec", {"code": 'text(load("answer"))'})
        assert texts(loaded)[1:] == ["42"]

        phases = 'text("phase 1"); await new Promise((r) => setTimeout(r, 400)); text("phase 2")'
        running = await client.call_tool("exec", {"code": phases, "yield_time_ms": 100})
        assert texts(running)[0].startswith("Script running with cell ID 3\n")
        assert texts(running)[1:] == ["phase 1"]
        done = await client.call_tool("wait", {"cell_id": "3", "yield_time_ms": 5000})
        assert texts(done)[0].startswith("Script completed") and texts(done)[1:] == ["phase 2"]

        spinning = await client.call_tool("exec", SPIN)
        assert texts(spinning)[0].startswith("Script running with cell ID 4")
        stopped = await client.call_tool("wait", {"cell_id": "4", "terminate": True})
        assert stopped.is_error is False and texts(stopped)[0].startswith("Script terminated")

        failed = await client.call_tool("exec", {"code": 'text("before"); throw new Error("boom")'})
        assert failed.is_error is True
        assert texts(failed)[0].startswith("Script failed")
        assert texts(failed)[1] == "before"
        assert texts(failed)[2].startswith("Script error:\nError: boom")

        # JavaScript strings may hold lone surrogates; the server survives them (U+FFFD on the wire).
        lone = await client.call_tool("exec", {"code": 'notify("x\\udfffy"); text("a\\ud800b")'})
        assert texts(lone)[1:] == ["a\ufffdb"]
        assert (await logs.wait_for("x\ufffdy")).logger == LOGGER_NAME
        after = await client.call_tool("exec", {"code": 'text("still serving")'})
        assert texts(after)[1:] == ["still serving"]


async def test_stdio_handshake_era_and_disconnect_ends_running_cells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client closes the server's stdin, then kills it after this grace period.
    monkeypatch.setattr(mcp.client.stdio, "PROCESS_TERMINATION_TIMEOUT", KILL_AFTER_S)
    config = write_config(tmp_path)
    command = server_command(config)
    params = StdioServerParameters(command=command[0], args=command[1:], cwd=TESTS)
    logs = Logs()
    async with Client(params, mode="legacy", logging_callback=logs) as client:
        assert client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
        await client.call_tool("exec", NOTIFY_LATER)
        # Nothing observes the cell now: the note comes on the connection's own channel.
        background = await logs.wait_for("later")
        assert background.meta == {CELL_ID_META_KEY: "1"}

        spinning = await client.call_tool("exec", SPIN)
        assert texts(spinning)[0].startswith("Script running with cell ID 2")
        [server_pid] = processes_mentioning(str(config))
        assert await spinning_threads(server_pid)
        assert len(everything_servers(server_pid)) == 1
        closing = time.monotonic()
    # The server exits on its own once stdin closes, its spinning cell notwithstanding.
    assert time.monotonic() - closing < KILL_AFTER_S - 5
    assert processes_mentioning(str(config)) == []


def test_stdio_signal_closes_the_session_then_ends_the_process(tmp_path: Path) -> None:
    process = subprocess.Popen(
        server_command(write_config(tmp_path)), cwd=TESTS, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        client = {"name": "test", "version": "0"}
        hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": client}
        messages = [
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "exec", "arguments": SPIN}},
        ]
        process.stdin.write(b"".join(json.dumps(message).encode() + b"\n" for message in messages))
        process.stdin.flush()
        responses = [json.loads(process.stdout.readline()) for _ in range(2)]
        assert responses[1]["result"]["content"][0]["text"].startswith("Script running with cell ID 1")
        downstream = everything_servers(process.pid)
        assert len(downstream) == 1
        process.send_signal(signal.SIGTERM)
        # stdin stays open: the server must not wait for EOF.
        assert process.wait(timeout=10) == -signal.SIGTERM
        assert all(not Path(f"/proc/{pid}").exists() for pid in downstream)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdin.close()
        process.stdout.close()


# -- streamable HTTP -------------------------------------------------------------------------
async def test_http_sessions_keep_their_own_state(http_server: HttpServer) -> None:
    logs_a, logs_b = Logs(), Logs()
    async with (
        Client(http_server.url, logging_callback=logs_a) as a,
        Client(http_server.url, logging_callback=logs_b) as b,
    ):
        # server/discover is refused, so a negotiating client falls back to a stateful session.
        assert a.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
        tools = {tool.name: tool for tool in (await a.list_tools()).tools}
        assert list(tools) == ["exec", "wait"]
        assert "mcp__everything__echo" in (tools["exec"].description or "")

        code = """
        notify("from a");
        const r = await tools.mcp__everything__echo({ message: "x" });
        text(r.content[0].text);
        store("who", "a");
        """
        stored = await a.call_tool("exec", {"code": code})
        assert texts(stored)[1:] == ["Echo: x"]
        await logs_a.wait_for("from a")
        code = 'text(String(load("who"))); text(await tools.add({ a: 1, b: 1 }))'
        seen_by_b = await b.call_tool("exec", {"code": code})
        assert texts(seen_by_b)[1:] == ["undefined", "2"]
        seen_by_a = await a.call_tool("exec", {"code": 'text(String(load("who")))'})
        assert texts(seen_by_a)[1:] == ["a"]

        await a.call_tool("exec", NOTIFY_LATER)
        await logs_a.wait_for("later")  # on the session's GET stream: no call is in flight
    assert "from a" not in logs_b.data() and "later" not in logs_b.data()


async def test_http_session_end_terminates_its_cells(http_server: HttpServer) -> None:
    pid = http_server.process.pid
    shared = everything_servers(pid)
    assert len(shared) == 1  # started with the server, before any client came
    async with Client(http_server.url) as a:
        spinning = await a.call_tool("exec", SPIN)
        assert texts(spinning)[0].startswith("Script running with cell ID 1")
        assert await spinning_threads(pid)
        assert everything_servers(pid) == shared
    # Leaving the client deletes the MCP session: its cell stops; the shared server stays up.
    deadline = time.monotonic() + 10
    while await spinning_threads(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not await spinning_threads(pid)
    assert everything_servers(pid) == shared
    async with Client(http_server.url) as b:
        fresh = await b.call_tool("exec", {"code": 'text(await tools.add({ a: 20, b: 22 }))'})
        assert texts(fresh)[1:] == ["42"]


async def test_http_refuses_sessionless_requests(http_server: HttpServer) -> None:
    async with Client(http_server.url, mode="2026-07-28") as client:
        with pytest.raises(MCPError, match="needs a stateful session"):
            await client.call_tool("exec", {"code": 'text("x")'})


async def test_http_shutdown_closes_open_sessions(tmp_path: Path) -> None:
    server = start_http_server(write_config(tmp_path), tmp_path)
    try:
        async with Client(server.url) as client:
            await client.call_tool("exec", SPIN)
            downstream = everything_servers(server.process.pid)
            assert len(downstream) == 1
            started = time.monotonic()
            exit_code = await asyncio.to_thread(stop, server)
            assert time.monotonic() - started < 6
    finally:
        if server.process.poll() is None:
            server.process.kill()
    assert exit_code in STOPPED_CLEANLY, server.stderr.read_text()
    assert "Traceback" not in server.stderr.read_text()
    assert all(not Path(f"/proc/{p}").exists() for p in downstream)


# -- the MCP Inspector CLI -------------------------------------------------------------------
def inspector(*args: str) -> subprocess.CompletedProcess[str]:
    if not INSPECTOR_BIN.exists():
        pytest.fail("npm test tools missing: run `npm ci --prefix tests/mcp_servers`")
    return subprocess.run(
        [str(INSPECTOR_BIN), "--cli", "--format", "json", *args],
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_inspector_cli_over_stdio(tmp_path: Path) -> None:
    command = server_command(write_config(tmp_path))
    listed = inspector("--method", "tools/list", "--", *command)
    assert listed.returncode == 0, listed.stderr
    tools = json.loads(listed.stdout)["result"]["tools"]
    assert [tool["name"] for tool in tools] == ["exec", "wait"]
    assert "mcp__everything__get_sum" in tools[0]["description"] and "### `add`" in tools[0]["description"]
    assert tools[1]["inputSchema"]["required"] == ["cell_id"]

    code = 'text(await tools.add({ a: 40, b: 2 })); text(await tools.shout({ text: "hi" }))'
    python_tools_only = server_command(None)
    tool_args = ("--tool-name", "exec", "--tool-arg", f"code={code}")
    called = inspector("--method", "tools/call", *tool_args, "--", *python_tools_only)
    assert called.returncode == 0, called.stderr
    result = json.loads(called.stdout)["result"]
    assert result["isError"] is False
    assert result["content"][0]["text"].startswith("Script completed\nWall time ")
    assert [block["text"] for block in result["content"][1:]] == ["42", "HI"]


def test_inspector_cli_over_http(http_server: HttpServer) -> None:
    called = inspector(
        http_server.url,
        "--protocol-era",
        "auto",
        "--method",
        "tools/call",
        "--tool-name",
        "exec",
        "--tool-args-json",
        json.dumps({"code": 'throw new Error("boom")'}),
    )
    assert called.returncode != 0
    failed = json.loads(called.stdout)["result"]
    assert failed["isError"] is True
    assert failed["content"][0]["text"].startswith("Script failed")
    assert failed["content"][1]["text"].startswith("Script error:\nError: boom")
