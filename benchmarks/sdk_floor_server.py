"""The official `mcp` SDK's own streamable-HTTP server with one tool that does nothing but answer:
the floor `http_load.py` measures codemode against (the same clients, transport and machine,
without a script, an engine or a nested call). It answers in JSON (`json_response`), the SDK's
cheapest way: no event streams, and connections the clients keep.

Usage: python benchmarks/sdk_floor_server.py   (prints "listening on URL" to stderr)
"""

from __future__ import annotations

import asyncio
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

from codemode._loop import run
from codemode.mcp_server import _listening_socket

server = MCPServer("sdk-floor")


@server.tool()
def echo(message: str) -> str:
    """Answer with the message."""
    return f"Echo: {message}"


async def serve() -> None:
    sock = _listening_socket("127.0.0.1", 0)  # as codemode's: Nagle off on its connections
    config = uvicorn.Config(server.streamable_http_app(json_response=True), log_level="warning", lifespan="on")
    served = uvicorn.Server(config)
    async with asyncio.TaskGroup() as group:
        serving = group.create_task(served.serve([sock]))
        while not served.started and not serving.done():
            await asyncio.sleep(0.02)
        print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}/mcp", file=sys.stderr, flush=True)


if __name__ == "__main__":
    run(serve())  # on uvloop, as codemode's server and uvicorn's own runner ("auto")
