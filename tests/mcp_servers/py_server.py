"""A small MCP server for codemode's MCP-client tests, written with the official `mcp` SDK.

Run it as `python py_server.py` (stdio), `python py_server.py --http PORT` (streamable HTTP on
127.0.0.1:PORT, path /mcp), or `python py_server.py --fail-at-start` (writes a reason to stderr
and exits 1 before speaking MCP).

Tools:
    add             structured output with an output schema
    fail            returns an `isError` result
    reject          answers with a JSON-RPC error (a protocol-level failure)
    crash           kills the whole server process (os._exit) while the call is open
    hang            never answers (until cancelled), for per-call timeouts; reports progress
                    once when it begins, so a test can tell the call reached the server
    work            reports progress and logs while it runs
    header          one HTTP request header, to check configured `headers`
    pid             the server's process id, to tell a restarted server from the old one
"""

from __future__ import annotations

import os
import sys
import warnings

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types import INVALID_PARAMS
from pydantic import BaseModel, Field

# `ctx.info` logging is deprecated in the 2026 protocol but still delivered; keep stderr quiet.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

server = MCPServer("pytools", log_level="WARNING")


class Sum(BaseModel):
    total: int = Field(description="a + b")
    terms: list[int]


@server.tool()
def add(a: int, b: int) -> Sum:
    """Add two integers."""
    return Sum(total=a + b, terms=[a, b])


@server.tool()
def fail(message: str) -> str:
    """Always fails with the given message (as an isError result)."""
    raise ToolError(message)


@server.tool()
def reject() -> str:
    """Answer with a JSON-RPC error instead of a result."""
    raise MCPError(code=INVALID_PARAMS, message="reject always rejects")


@server.tool()
def crash() -> str:
    """Kill the server process mid-call."""
    sys.stderr.write("pytools: crashing on purpose\n")
    sys.stderr.flush()
    os._exit(3)


@server.tool()
async def hang(ctx: Context, seconds: float = 3600.0) -> str:
    """Sleep for a long time before answering."""
    await ctx.report_progress(0, None, "hanging")
    await anyio.sleep(seconds)
    return "woke up"


@server.tool()
async def work(steps: int, ctx: Context) -> str:
    """Report progress once per step and log at info level."""
    for step in range(1, steps + 1):
        await ctx.info(f"step {step} of {steps}")  # pyright: ignore[reportDeprecated]
        await ctx.report_progress(step, steps, f"step {step}")
        await anyio.sleep(0.01)
    return f"done {steps} steps"


@server.tool()
def header(name: str, ctx: Context) -> str | None:
    """Return one HTTP request header (HTTP transport only)."""
    headers = ctx.headers or {}
    return headers.get(name.lower())


@server.tool()
def pid() -> int:
    """Return the server's process id."""
    return os.getpid()


def main(argv: list[str]) -> None:
    if "--fail-at-start" in argv:
        sys.stderr.write("pytools: configuration error: API_TOKEN is not set\n")
        sys.exit(1)
    if "--http" in argv:
        port = int(argv[argv.index("--http") + 1])
        server.run("streamable-http", host="127.0.0.1", port=port)
    else:
        server.run()


if __name__ == "__main__":
    main(sys.argv[1:])
