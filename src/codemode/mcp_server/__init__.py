"""Code mode as an MCP server: the tools `exec` and `wait`, over stdio or streamable HTTP.

A thin adapter over `CodeMode` on the `mcp` SDK's low-level `Server`. Clients list the two tools
exactly as `CodeMode.tool_specs("mcp")` describes them and get every observation as the
`CallToolResult` that `codemode.to_model(result, "mcp")` renders.

Invariants:

* One `CodeMode` session (cells, stored values) per client connection, closed - its cells
  terminated - when the connection ends. A stream connection (stdio, an in-memory client) is one
  `Server.run`, so the server's lifespan owns its session. Over streamable HTTP each stateful
  MCP session (`Mcp-Session-Id`) is one connection (`_http`).
* Downstream MCP servers are shared by every session of the process (unless marked
  `per_session`), started when the server starts and kept until it stops.
* A session that cannot start (a `required` downstream server failed) answers every request
  with a JSON-RPC error saying why; the server itself keeps running and logs one line.
* Over HTTP each connection is bounded (`HttpLimits`: head and body deadlines, head size, how
  many connections may be open or still sending their head), so stalled clients cannot lock
  out the others (`_connections`).
* Over HTTP without a store the sessionless 2026-07-28 entry is refused: it has no connection
  to keep cells in. `server/discover` answers "method not found" either way, which negotiating
  clients read as "use the initialize handshake".
* With `store` (a URL or a store object), every session lives in the store too, and replicas
  sharing it serve the same sessions (`_replicas`): a session started on one replica continues
  on another, which replays its running cells. Sessionless 2026-07-28 clients are served then,
  carrying their session in a handle (`SESSION_META_KEY` in exec/wait results' `_meta`, sent
  back in the request's `_meta`). `/healthz` answers load balancers.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from starlette.types import ASGIApp

from codemode._session.options import CodeModeOptions, check_options
from codemode._session.session import CodeMode
from codemode.errors import UsageError
from codemode.mcp_server._answers import JsonWhenAlone
from codemode.mcp_server._connections import HttpLimits, fit_open_file_limit, guarded_protocol
from codemode.mcp_server._handlers import (
    CELL_ID_META_KEY,
    LOGGER_NAME,
    AskClient,
    Clients,
    ConnectionSession,
    NewSession,
    NotifyCallback,
    OneClient,
    ask_client_after,
    build_server,
    handshake_only,
)
from codemode.mcp_server._http import (
    DEFAULT_MAX_SESSIONS,
    DEFAULT_SESSION_IDLE_TIMEOUT_S,
    VANISHED_GRACE_S,
    BearerAuth,
    HttpSessions,
    SessionWatch,
)
from codemode.mcp_server._replicas import HEALTH_PATH, SESSION_META_KEY, HealthCheck, Replica, SessionAdoption
from codemode.tools import Tool

if TYPE_CHECKING:
    import uvicorn

__all__ = [
    "CELL_ID_META_KEY",
    "DEFAULT_MAX_SESSIONS",
    "DEFAULT_SESSION_IDLE_TIMEOUT_S",
    "HEALTH_PATH",
    "LOGGER_NAME",
    "SESSION_META_KEY",
    "HttpLimits",
    "create_server",
    "http_app",
    "serve_http",
    "serve_stdio",
]

CLOSE_TIMEOUT_S = 10.0
HTTP_SHUTDOWN_GRACE_S = 3

ToolLike = Tool | Callable[..., Any]
McpServers = Mapping[str, Any] | str | Path | None


# -- public entry points ---------------------------------------------------------------------
def create_server(tools: Iterable[ToolLike] = (), **options: Unpack[CodeModeOptions]) -> Server[Any]:
    """An MCP server for stream connections (stdio, in-memory test clients).

    Every `Server.run` (one connection) gets its own `CodeMode`, started before the connection
    is served and closed when it ends.

    Args:
        tools: Python functions or `codemode.Tool`s, as for `CodeMode`.
        **options: `CodeMode` keyword arguments (`mcp_servers`, `limits`, `defaults`, `engine`,
            ...) but `on_notify`: notify texts go to the client as log messages.

    Raises:
        UsageError: an option that is no `CodeMode` keyword, or `on_notify`.
    """
    new_session = _session_factory(tools, options)

    @asynccontextmanager
    async def lifespan(_: Server[Any]) -> AsyncGenerator[Clients]:
        client = ConnectionSession(new_session)
        try:
            with contextlib.suppress(MCPError):  # kept by the client: every request reports it
                await client.start()
            yield OneClient(client)
        finally:
            with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
                await client.aclose()

    return build_server(lifespan)


def http_app(
    tools: Iterable[ToolLike] = (),
    *,
    host: str = "127.0.0.1",
    path: str = "/mcp",
    session_idle_timeout: float = DEFAULT_SESSION_IDLE_TIMEOUT_S,
    max_sessions: int | None = DEFAULT_MAX_SESSIONS,
    auth_token: str | None = None,
    **options: Unpack[CodeModeOptions],
) -> ASGIApp:
    """A streamable-HTTP ASGI app serving code mode at `path`, one `CodeMode` per MCP session.

    Args:
        host: where it will listen: for a loopback host the SDK's DNS-rebinding protection
            (Host/Origin checks) is switched on.
        session_idle_timeout: seconds a session may go with no request in flight before it is
            ended (its cells terminated); sessions of clients that went away end sooner.
        max_sessions: open sessions before new ones are refused (None: no limit).
        auth_token: if set, every request needs `Authorization: Bearer <auth_token>` (else 401),
            but `GET /healthz`.
        **options: `CodeMode` keyword arguments, as for `create_server`, but `session_id` (each
            MCP session is one). With `store`, sessions are kept in the store and every replica
            with the same store serves them (a URL is opened once, for all sessions).

    The app bounds sessions, not connections: under a server of your own, set its header, body
    and keep-alive timeouts and connection limits (`serve_http` does, with `HttpLimits`).
    """
    if not session_idle_timeout > 0:
        raise UsageError(f"session_idle_timeout must be a positive number of seconds, got {session_idle_timeout!r}")
    if max_sessions is not None and max_sessions < 1:
        raise UsageError(f"max_sessions must be at least 1 (or None), got {max_sessions!r}")
    if "session_id" in options:
        raise UsageError("each MCP session is a code-mode session of its own: drop `session_id`")
    replica = Replica(options.get("store"), credentialed=auth_token is not None)
    new_session = _session_factory(tools, options, replica)
    mcp_servers = options.get("mcp_servers")

    @asynccontextmanager
    async def lifespan(_: Server[Any]) -> AsyncGenerator[Clients]:
        async with replica.running(), _shared_servers(mcp_servers), anyio.create_task_group() as closing:
            sessions = HttpSessions(
                new_session, closing, replica, idle_timeout_s=session_idle_timeout, max_sessions=max_sessions
            )
            try:
                yield sessions
            finally:
                # Connections close their own sessions first; this catches any that outlived them.
                with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
                    await sessions.aclose()

    server = build_server(lifespan)
    server.add_request_handler("server/discover", types.RequestParams, handshake_only)
    app: ASGIApp = server.streamable_http_app(
        streamable_http_path=path,
        host=host,
        session_idle_timeout=session_idle_timeout,
        max_sessions=max_sessions,
    )
    app = SessionAdoption(JsonWhenAlone(app), server, replica)
    app = SessionWatch(app, server, max_sessions=max_sessions, grace_s=VANISHED_GRACE_S)
    if auth_token is not None:
        app = BearerAuth(app, auth_token)
    return HealthCheck(app, replica)


async def serve_stdio(tools: Iterable[ToolLike] = (), **options: Unpack[CodeModeOptions]) -> None:
    """Serve code mode over this process's stdin/stdout until the client closes stdin.

    SIGINT or SIGTERM closes the session too, then ends the process by that signal: the SDK
    reads stdin in a thread that only input or EOF can stop.
    """
    server = create_server(tools, **options)
    received: list[int] = []
    async with stdio_server() as (read_stream, write_stream):
        async with anyio.create_task_group() as serving:
            serving.start_soon(_stop_on_signals, serving.cancel_scope, received)
            await server.run(read_stream, write_stream, server.create_initialization_options())
            serving.cancel_scope.cancel()
        if received:
            signal.signal(received[0], signal.SIG_DFL)
            os.kill(os.getpid(), received[0])


async def _stop_on_signals(scope: anyio.CancelScope, received: list[int]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            received.append(signum)
            scope.cancel()
            return


async def serve_http(
    tools: Iterable[ToolLike] = (),
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    path: str = "/mcp",
    auth_token: str | None = None,
    on_listening: Callable[[str], None] | None = None,
    session_idle_timeout: float = DEFAULT_SESSION_IDLE_TIMEOUT_S,
    max_sessions: int | None = DEFAULT_MAX_SESSIONS,
    http_limits: HttpLimits = HttpLimits(),  # noqa: B008 - frozen, so one shared default is safe
    **options: Unpack[CodeModeOptions],
) -> None:
    """Serve code mode over streamable HTTP at `http://host:port/path` until SIGINT/SIGTERM.

    Args:
        host: the address to listen on (loopback by default); any other needs `auth_token`.
        port: the port; 0 picks a free one.
        auth_token: the bearer token every request must carry.
        on_listening: called with the endpoint URL once the server is ready for requests.
        session_idle_timeout, max_sessions: as for `http_app`.
        http_limits: what one connection may take (head and body deadlines, head size,
            connections open or still sending their head); the open-file limit is raised to fit.
        **options: `CodeMode` keyword arguments, as for `create_server`.

    Raises:
        UsageError: a non-loopback `host` without `auth_token`.
    """
    if auth_token is None and not _is_loopback(host):
        raise UsageError(
            f"refusing to serve on {host}, which is not a loopback address, without a bearer token: "
            "set one (codemode mcp --auth-token-env NAME) or listen on 127.0.0.1"
        )
    app = http_app(
        tools,
        host=host,
        path=path,
        session_idle_timeout=session_idle_timeout,
        max_sessions=max_sessions,
        auth_token=auth_token,
        **options,
    )
    limits = fit_open_file_limit(http_limits)
    sock = _listening_socket(host, port)
    try:
        server, startup_done = _uvicorn_server(app, limits)
        bound_port = sock.getsockname()[1]
        url_host = f"[{host}]" if sock.family == socket.AF_INET6 else host
        async with anyio.create_task_group() as serving:
            serving.start_soon(server.serve, [sock])
            await startup_done.wait()
            if server.started and on_listening is not None:  # its lifespan ran: downstream servers are up
                on_listening(f"http://{url_host}:{bound_port}{path}")
    finally:
        sock.close()


# -- helpers ---------------------------------------------------------------------------------
def _uvicorn_server(app: ASGIApp, limits: HttpLimits) -> tuple[uvicorn.Server, anyio.Event]:
    """A uvicorn server for `app` whose connections keep to `limits`, and an event set when its
    startup has ended (started or not)."""
    import uvicorn

    startup_done = anyio.Event()

    class ReportingServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            try:
                await super().startup(sockets)
            finally:
                startup_done.set()

    config = uvicorn.Config(
        app,
        http=guarded_protocol(limits),
        ws="none",
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=HTTP_SHUTDOWN_GRACE_S,
    )
    return ReportingServer(config), startup_done


def _listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket whose connections have Nagle's algorithm off.

    asyncio sets TCP_NODELAY only on sockets whose protocol is IPPROTO_TCP by name; without
    it every request on a kept-alive connection waited about 40 ms for a delayed ACK.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return sock


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@asynccontextmanager
async def _shared_servers(mcp_servers: McpServers) -> AsyncGenerator[None]:
    """The downstream servers started with the server and kept up between its sessions."""
    if mcp_servers is None:
        yield
        return
    from codemode.tools.mcp import shared_servers_running

    async with shared_servers_running(mcp_servers):
        yield


def _session_factory(tools: Iterable[ToolLike], options: CodeModeOptions, replica: Replica | None = None) -> NewSession:
    """Each connection's `CodeMode`: `options`, checked now, with the client as notify target
    and as the approver of last resort; over HTTP with a store, the replica's open store and
    the stored session's id (none: a session kept nowhere)."""
    check_options(options)
    if "on_notify" in options:
        raise UsageError("the MCP server sends notify() texts to its client as log messages; drop `on_notify`")
    tool_list = list(tools)
    policy = options.get("approve")

    def new_session(on_notify: NotifyCallback, ask_client: AskClient, session_id: str | None) -> CodeMode:
        connection = CodeModeOptions(on_notify=on_notify, approve=ask_client_after(policy, ask_client))
        if replica is not None and replica.store is not None:
            connection["store"] = replica.store if session_id is not None else None
            connection["session_id"] = session_id
        return CodeMode(tool_list, **(options | connection))

    return new_session
