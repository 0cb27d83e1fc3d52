"""pydantic-ai's MCP toolsets (`MCPToolset`, on FastMCP's client) as nested tools of code mode,
against real MCP servers: npm's server-everything and the tests' own py_server.py.

In a plain session and inside an agent run driven by a `FunctionModel`: the script calls tools
of both servers, and the assertions read what pydantic-ai recorded.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from fastmcp.client import Client
from fastmcp.client.transports import PythonStdioTransport, StdioTransport
from pydantic_ai import Agent
from pydantic_ai.mcp import MCPToolset

from codemode import CodeMode
from codemode.adapters.pydantic_ai import CodeModeToolset
from mcp_support import children

from .test_pydantic_ai import returns, scripted

pytestmark = pytest.mark.integration

SERVERS = Path(__file__).parent.parent / "mcp_servers"
EVERYTHING_BIN = SERVERS / "node_modules" / ".bin" / "mcp-server-everything"
PY_SERVER = SERVERS / "py_server.py"
# Each call resolves with the MCP `CallToolResult` as JSON, as a `mcp_servers=` entry's does.
BOTH = 'const echo = await tools.echo({ message: "hi" }); const sum = await tools.add({ a: 1, b: 2 });\ntext(`${echo.content[0].text} ${sum.structuredContent.total}`);'


def mcp_toolsets() -> list[MCPToolset]:
    if not EVERYTHING_BIN.exists():
        pytest.fail("npm test servers missing: run `npm ci --prefix tests/mcp_servers`")
    # keep_alive=False: FastMCP's stdio transports otherwise keep the server process for reuse
    # after the toolset is exited.
    everything = StdioTransport(str(EVERYTHING_BIN), ["stdio"], keep_alive=False)
    py = PythonStdioTransport(PY_SERVER, keep_alive=False)
    return [MCPToolset(Client(everything)), MCPToolset(Client(py))]


def mcp_server_processes() -> set[int]:
    """Live children of this process that run one of the two MCP servers."""
    return {pid for pid, command in children(os.getpid()).items() if "everything" in command or "py_server" in command}


async def test_mcp_toolsets_are_nested_tools_with_their_schemas() -> None:
    before = mcp_server_processes()  # (other tests of this process may have their own)
    async with CodeMode(tools=mcp_toolsets()) as cm:
        started = mcp_server_processes() - before
        assert len(started) == 2
        names = [nested.code_mode_name for nested in cm.tools]
        description = cm.exec_description()
        result = await cm.exec(BOTH)
        bad = await cm.exec("await tools.add({ a: 'one' })")
    assert {"echo", "get-sum", "add", "pid"} <= set(names)
    # input and output schemas: an MCP tool's result is a `CallToolResult` as for `mcp_servers=`
    assert "add(args: { a: number; b: number; }): Promise<CallToolResult<{" in description
    assert "// a + b\n  total: number;" in description
    assert result.status == "completed", result.error
    assert [item.text for item in result.items] == ["Echo: hi 3"]
    assert bad.status == "failed" and "add" in (bad.error or "")
    assert not mcp_server_processes() & started  # the toolsets' servers stopped with the session


async def test_an_agent_run_with_mcp_toolsets_inside_code_mode() -> None:
    code_mode = CodeModeToolset(mcp_toolsets())
    agent = Agent(scripted([("exec", {"code": BOTH})], "done"), toolsets=[code_mode])
    result = await agent.run("say hi and add")
    (answer,) = returns(result.all_messages())
    assert answer.tool_name == "exec"
    assert "Echo: hi 3" in str(answer.content)
    assert result.output == "done"


async def test_an_mcp_toolset_call_resolves_like_an_mcp_servers_entry() -> None:
    """The same server's tool, nested as a pydantic-ai `MCPToolset` and as a `mcp_servers=` entry:
    the script gets the same `CallToolResult` JSON (content, structuredContent, isError)."""
    py = PythonStdioTransport(PY_SERVER, keep_alive=False)
    config = {"mcpServers": {"py": {"command": sys.executable, "args": [str(PY_SERVER)]}}}
    show = "text(JSON.stringify(await tools.{name}({{ a: 1, b: 2 }})))"
    async with CodeMode(tools=[MCPToolset(Client(py))], mcp_servers=config) as cm:
        names = {nested.global_name for nested in cm.tools}
        assert {"add", "mcp__py__add"} <= names
        via_toolset = await cm.exec(show.format(name="add"))
        via_config = await cm.exec(show.format(name="mcp__py__add"))
    assert via_toolset.status == via_config.status == "completed", (via_toolset.error, via_config.error)
    shown = json.loads(via_toolset.items[0].text)  # type: ignore[union-attr]
    assert shown == json.loads(via_config.items[0].text)  # type: ignore[union-attr]
    assert shown["structuredContent"]["total"] == 3 and shown["isError"] is False
