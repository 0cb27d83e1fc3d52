"""The official `mcp` SDK's own streamable-HTTP server with one tool that does nothing but answer:
the floor `http_load.py` measures codemode against (the same clients, transport and machine,
without a script, an engine or a nested call). It answers in JSON (`json_response`), the SDK's
cheapest way: no event streams, and connections the clients keep. It listens and loops as
`codemode mcp --transport http` does: Nagle off on its connections, on uvloop where installed.

Usage: python benchmarks/sdk_floor_server.py   (prints "listening on URL" to stderr)
"""

from __future__ import annotations

import asyncio
import socket
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

server = MCPServer("sdk-floor")


@server.tool()
def echo(message: str) -> str:
    """Answer with the message."""
    return f"Echo: {message}"


def listening_socket() -> socket.socket:
    """A loopback socket whose connections have Nagle's algorithm off, as codemode's server makes
    it (asyncio sets TCP_NODELAY only on sockets whose protocol is IPPROTO_TCP by name; without it
    every request on a kept-alive connection waits about 40 ms for a delayed ACK)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


class Server(uvicorn.Server):
    """Says where it listens once uvicorn has started serving (no polling for `started`)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and sockets:
            print(f"listening on http://127.0.0.1:{sockets[0].getsockname()[1]}/mcp", file=sys.stderr, flush=True)


async def serve() -> None:
    config = uvicorn.Config(server.streamable_http_app(json_response=True), log_level="warning", lifespan="on")
    await Server(config).serve([listening_socket()])


if __name__ == "__main__":
    try:  # uvloop, as codemode's server and uvicorn's own runner ("auto") use
        import uvloop
    except ImportError:
        asyncio.run(serve())
    else:
        uvloop.run(serve())
