"""Code mode as an MCP server: the tools `exec` and `wait`, over stdio or streamable HTTP.

A thin adapter over `CodeMode` on the `mcp` SDK's low-level `Server`. Clients list the two tools
exactly as `CodeMode.tool_specs("mcp")` describes them and get every observation as the
`CallToolResult` that `ExecResult.to_model("mcp")` renders.

Invariants:

* One `CodeMode` session (cells, stored values) per client connection, closed - its cells
  terminated - when the connection ends. A stream connection (stdio, an in-memory client) is one
  `Server.run`, so the server's lifespan owns its session. Streamable HTTP serves each stateful
  MCP session (`Mcp-Session-Id`) as one connection: its session is kept in the SDK's
  per-connection state and closed by that connection's teardown (DELETE, idle timeout, server
  shutdown), with the server's lifespan as a backstop.
* Over HTTP the sessionless 2026-07-28 entry is refused: it has no connection to keep cells in.
  `server/discover` answers "method not found", which negotiating clients read as "use the
  initialize handshake".
* `notify(...)` texts reach the connection that ran the cell as `notifications/message` (level
  info, logger `codemode`, the cell id in `_meta["codemode/cellId"]`), as they happen: on the
  stream of the exec/wait call observing the cell while there is one, otherwise on the
  connection's own channel (handshake era). At 2026-07-28 a log entry may only ride a call that
  opted in, so one sent while nothing observes the cell goes out with the next such call.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import socket
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol, get_args

import anyio
import mcp_types as types
from mcp.server.connection import Connection, allowed_log_levels
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.session import ServerSession
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.applications import Starlette

from codemode._describe.names import EXEC_TOOL_NAME, WAIT_TOOL_NAME
from codemode._result import ExecResult
from codemode._session.session import CodeMode
from codemode.errors import UsageError
from codemode.formats._text import wire_text
from codemode.tools import Tool

__all__ = [
    "CELL_ID_META_KEY",
    "LOGGER_NAME",
    "create_server",
    "http_app",
    "serve_http",
    "serve_stdio",
]

LOGGER_NAME = "codemode"
"""The `logger` of the `notifications/message` that carry `notify(...)` texts."""

CELL_ID_META_KEY = "codemode/cellId"
"""The `_meta` key naming the cell a `notify(...)` text came from."""

SERVER_NAME = "codemode"
INSTRUCTIONS = (
    "Run JavaScript with `exec`; it calls the nested tools listed in exec's description as "
    "`await tools.<name>(args)`. Resume a script that yielded with `wait`."
)
MAX_HELD_NOTIFICATIONS = 1000
CLOSE_TIMEOUT_S = 10.0
HTTP_SHUTDOWN_GRACE_S = 3
SESSIONLESS_REFUSAL = (
    "codemode keeps cells and stored values per connection, so over streamable HTTP it needs a "
    "stateful session: connect with the initialize handshake (a protocol version up to 2025-11-25)"
)

ToolLike = Tool | Callable[..., Any]
McpServers = Mapping[str, Any] | str | Path | None
NotifyCallback = Callable[[str, str], Awaitable[None]]
NewSession = Callable[[NotifyCallback], CodeMode]

_LOG_LEVELS: tuple[types.LoggingLevel, ...] = get_args(types.LoggingLevel)
_STATE_KEY = "codemode.client"

logger = logging.getLogger(__name__)


# -- public entry points ---------------------------------------------------------------------
def create_server(
    tools: Iterable[ToolLike] = (), *, mcp_servers: McpServers = None, **options: Any
) -> Server[Any]:
    """An MCP server for stream connections (stdio, in-memory test clients).

    Every `Server.run` (one connection) gets its own `CodeMode`, started before the connection
    is served and closed when it ends.

    Args:
        tools: Python functions or `codemode.Tool`s, as for `CodeMode`.
        mcp_servers: downstream MCP servers, as for `CodeMode` (started per connection).
        **options: further `CodeMode` keyword arguments (yield times, limits, ...).
    """
    new_session = _session_factory(tools, mcp_servers, options)

    @asynccontextmanager
    async def lifespan(_: Server[Any]) -> AsyncGenerator[_Clients]:
        client = _Client(new_session)
        try:
            await client.cm.start()
            yield _OneClient(client)
        finally:
            with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
                await client.aclose()

    return _build_server(lifespan)


def http_app(
    tools: Iterable[ToolLike] = (),
    *,
    mcp_servers: McpServers = None,
    host: str = "127.0.0.1",
    path: str = "/mcp",
    **options: Any,
) -> Starlette:
    """A streamable-HTTP ASGI app serving code mode at `path`, one `CodeMode` per MCP session.

    `host` is where it will listen: for a loopback host the SDK's DNS-rebinding protection
    (Host/Origin checks) is switched on.
    """
    new_session = _session_factory(tools, mcp_servers, options)

    @asynccontextmanager
    async def lifespan(_: Server[Any]) -> AsyncGenerator[_Clients]:
        clients = _PerConnection(new_session)
        try:
            yield clients
        finally:
            # Connections close their own sessions first; this catches any that outlived them.
            with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
                await clients.aclose()

    server = _build_server(lifespan)
    server.add_request_handler("server/discover", types.RequestParams, _handshake_only)
    return server.streamable_http_app(streamable_http_path=path, host=host)


async def serve_stdio(
    tools: Iterable[ToolLike] = (), *, mcp_servers: McpServers = None, **options: Any
) -> None:
    """Serve code mode over this process's stdin/stdout until the client closes stdin.

    SIGINT or SIGTERM closes the session too, then ends the process by that signal: the SDK
    reads stdin in a thread that only input or EOF can stop.

    Raises:
        UsageError: the tools or the MCP config are invalid (found when the session starts).
    """
    server = create_server(tools, mcp_servers=mcp_servers, **options)
    received: list[int] = []
    try:
        async with stdio_server() as (read_stream, write_stream):
            async with anyio.create_task_group() as serving:
                serving.start_soon(_stop_on_signals, serving.cancel_scope, received)
                await server.run(read_stream, write_stream, server.create_initialization_options())
                serving.cancel_scope.cancel()
            if received:
                signal.signal(received[0], signal.SIG_DFL)
                os.kill(os.getpid(), received[0])
    except* UsageError as failures:  # a bad MCP config surfaces when the session starts
        raise _first(failures) from None


async def _stop_on_signals(scope: anyio.CancelScope, received: list[int]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            received.append(signum)
            scope.cancel()
            return


async def serve_http(
    tools: Iterable[ToolLike] = (),
    *,
    mcp_servers: McpServers = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    path: str = "/mcp",
    on_listening: Callable[[str], None] | None = None,
    **options: Any,
) -> None:
    """Serve code mode over streamable HTTP at `http://host:port/path` until SIGINT/SIGTERM.

    Args:
        host: the address to listen on (loopback by default).
        port: the port; 0 picks a free one.
        on_listening: called with the endpoint URL once the socket listens.
    """
    import uvicorn

    app = http_app(tools, mcp_servers=mcp_servers, host=host, path=path, **options)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", timeout_graceful_shutdown=HTTP_SHUTDOWN_GRACE_S
        )
        if on_listening is not None:
            bound_port = sock.getsockname()[1]
            url_host = f"[{host}]" if family == socket.AF_INET6 else host
            on_listening(f"http://{url_host}:{bound_port}{path}")
        await uvicorn.Server(config).serve(sockets=[sock])
    finally:
        sock.close()


# -- the protocol handlers -------------------------------------------------------------------
class _Clients(Protocol):
    """What a server's lifespan yields: the code-mode session of a request's connection."""

    async def client_for(self, ctx: ServerRequestContext[Any]) -> _Client: ...


def _build_server(lifespan: Callable[[Server[Any]], Any]) -> Server[Any]:
    async def list_tools(
        ctx: ServerRequestContext[_Clients], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        client = await ctx.lifespan_context.client_for(ctx)
        specs = client.cm.tool_specs("mcp")
        return types.ListToolsResult(tools=[types.Tool.model_validate(spec) for spec in specs])

    async def call_tool(
        ctx: ServerRequestContext[_Clients], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        if params.name not in (EXEC_TOOL_NAME, WAIT_TOOL_NAME):
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}")
        client = await ctx.lifespan_context.client_for(ctx)
        arguments = params.arguments or {}
        try:
            if params.name == EXEC_TOOL_NAME:
                result = await client.exec(ctx, **_exec_arguments(arguments))
            else:
                result = await client.wait(ctx, **_wait_arguments(arguments))
        except _BadArguments as exc:
            text = f"failed to parse function arguments: {exc}"
            return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)
        return types.CallToolResult.model_validate(result.to_model("mcp"))

    async def set_logging_level(
        ctx: ServerRequestContext[_Clients], params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        client = await ctx.lifespan_context.client_for(ctx)
        client.min_level = params.level
        return types.EmptyResult()

    server: Server[Any] = Server(
        SERVER_NAME,
        version=version("codemode"),
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
    # Declares the `logging` capability (the notify channel) and honours `logging/setLevel`;
    # registered directly because the constructor argument warns that 2026-07-28 dropped it.
    server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_logging_level)
    return server


async def _handshake_only(
    ctx: ServerRequestContext[Any], params: types.RequestParams
) -> types.DiscoverResult:
    raise MCPError(code=types.METHOD_NOT_FOUND, message="Method not found", data="server/discover")


class _BadArguments(Exception):
    """A tool call's arguments do not match the tool's input schema."""


def _exec_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    _reject_unknown(arguments, ("code", "yield_time_ms", "max_output_tokens"))
    code = arguments.get("code")
    if not isinstance(code, str):
        raise _BadArguments("missing field `code`" if code is None else "`code` must be a string")
    return {
        "code": code,
        "yield_time_ms": _count(arguments, "yield_time_ms", integer=True),
        "max_output_tokens": _count(arguments, "max_output_tokens", integer=True),
    }


def _wait_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    _reject_unknown(arguments, ("cell_id", "yield_time_ms", "max_tokens", "terminate"))
    cell_id = arguments.get("cell_id")
    if cell_id is None:
        raise _BadArguments("missing field `cell_id`")
    if isinstance(cell_id, int) and not isinstance(cell_id, bool):
        cell_id = str(cell_id)  # models sometimes send the id as a number
    if not isinstance(cell_id, str):
        raise _BadArguments("`cell_id` must be a string")
    terminate = arguments.get("terminate")
    if terminate is not None and not isinstance(terminate, bool):
        raise _BadArguments("`terminate` must be a boolean")
    return {
        "cell_id": cell_id,
        "yield_time_ms": _count(arguments, "yield_time_ms", integer=False),
        "max_tokens": _count(arguments, "max_tokens", integer=False),
        "terminate": bool(terminate),
    }


def _reject_unknown(arguments: Mapping[str, Any], known: tuple[str, ...]) -> None:
    for key in arguments:
        if key not in known:
            expected = ", ".join(f"`{name}`" for name in known)
            raise _BadArguments(f"unknown field `{key}`, expected one of {expected}")


def _count(arguments: Mapping[str, Any], key: str, *, integer: bool) -> int | None:
    value = arguments.get(key)
    if value is None:
        return None
    kind = "integer" if integer else "number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _BadArguments(f"`{key}` must be a non-negative {kind}")
    if value < 0 or not math.isfinite(value) or (integer and value != int(value)):
        raise _BadArguments(f"`{key}` must be a non-negative {kind}")
    return int(value)


# -- one client connection -------------------------------------------------------------------
@dataclass(frozen=True)
class _Observer:
    """An exec or wait call in flight, and the log levels its stream may carry."""

    session: ServerSession
    request_id: types.RequestId | None
    levels: frozenset[types.LoggingLevel]


class _Client:
    """One client connection's `CodeMode`, and where its notifications go."""

    def __init__(self, new_session: NewSession) -> None:
        self.min_level: types.LoggingLevel | None = None
        self._execs: list[_Observer] = []
        self._waits: dict[str, list[_Observer]] = {}
        self._channel: ServerSession | None = None
        self._held: deque[tuple[str, str]] = deque(maxlen=MAX_HELD_NOTIFICATIONS)
        self._start_lock = asyncio.Lock()
        self._start_error: BaseException | None = None
        self.cm = new_session(self._on_notify)

    async def start(self) -> None:
        """Start the session once, or tell the client why it cannot (a bad MCP config)."""
        async with self._start_lock:
            if self._start_error is None:
                try:
                    await self.cm.start()
                    return
                except Exception as exc:
                    logger.error("code mode failed to start: %s", exc)
                    self._start_error = exc
            message = f"code mode failed to start: {self._start_error}"
            raise MCPError(code=types.INTERNAL_ERROR, message=message) from self._start_error

    async def aclose(self) -> None:
        await self.cm.close()

    async def exec(
        self,
        ctx: ServerRequestContext[Any],
        code: str,
        yield_time_ms: int | None,
        max_output_tokens: int | None,
    ) -> ExecResult:
        observer = await self._observe(ctx)
        self._execs.append(observer)
        try:
            return await self.cm.exec(code, yield_time_ms=yield_time_ms, max_output_tokens=max_output_tokens)
        finally:
            self._execs.remove(observer)

    async def wait(
        self,
        ctx: ServerRequestContext[Any],
        cell_id: str,
        yield_time_ms: int | None,
        max_tokens: int | None,
        terminate: bool,
    ) -> ExecResult:
        observer = await self._observe(ctx)
        observers = self._waits.setdefault(cell_id, [])
        observers.append(observer)
        try:
            return await self.cm.wait(
                cell_id, yield_time_ms=yield_time_ms, max_tokens=max_tokens, terminate=terminate
            )
        finally:
            observers.remove(observer)
            if not observers:
                del self._waits[cell_id]

    async def _observe(self, ctx: ServerRequestContext[Any]) -> _Observer:
        observer = _Observer(ctx.session, ctx.request_id, allowed_log_levels(ctx.protocol_version, ctx.meta))
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            # Handshake era: the connection has a channel of its own for server notifications.
            self._channel = ctx.session
        while self._held and self._delivers(observer.levels):
            cell_id, text = self._held.popleft()
            await _send_log(observer.session, cell_id, text, observer.request_id)
        return observer

    async def _on_notify(self, cell_id: str, text: str) -> None:
        waits = self._waits.get(cell_id)
        # An exec call does not know its cell id before it returns: its cell's notifications
        # ride the newest exec call in flight (they name their cell in `_meta`).
        observer = waits[-1] if waits else (self._execs[-1] if self._execs else None)
        if observer is not None:
            if self._delivers(observer.levels):
                await _send_log(observer.session, cell_id, text, observer.request_id)
        elif self._channel is not None:
            if self._delivers(_ALL_LEVELS):
                await _send_log(self._channel, cell_id, text, None)
        else:
            self._held.append((cell_id, text))

    def _delivers(self, levels: frozenset[types.LoggingLevel]) -> bool:
        if "info" not in levels:
            return False
        return self.min_level is None or _LOG_LEVELS.index(self.min_level) <= _LOG_LEVELS.index("info")


_ALL_LEVELS: frozenset[types.LoggingLevel] = frozenset(_LOG_LEVELS)


async def _send_log(session: ServerSession, cell_id: str, text: str, related: types.RequestId | None) -> None:
    notification = types.LoggingMessageNotification(
        params=types.LoggingMessageNotificationParams(
            level="info", logger=LOGGER_NAME, data=wire_text(text), _meta={CELL_ID_META_KEY: cell_id}
        )
    )
    try:
        await session.send_notification(notification, related_request_id=related)
    except Exception:  # noqa: BLE001 - notifications are best-effort; the script never sees this
        logger.debug("could not deliver a notify() text of cell %s", cell_id, exc_info=True)


class _OneClient:
    """A stream connection's one session, whatever the request."""

    def __init__(self, client: _Client) -> None:
        self._client = client

    async def client_for(self, ctx: ServerRequestContext[Any]) -> _Client:
        return self._client


class _PerConnection:
    """HTTP: a session per stateful MCP session, made on its first request."""

    def __init__(self, new_session: NewSession) -> None:
        self._new_session = new_session
        self._open: set[_Client] = set()

    async def client_for(self, ctx: ServerRequestContext[Any]) -> _Client:
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            raise MCPError(code=types.INVALID_REQUEST, message=SESSIONLESS_REFUSAL)
        connection = _connection_of(ctx)
        client = connection.state.get(_STATE_KEY)
        if not isinstance(client, _Client):
            client = _Client(self._new_session)
            connection.state[_STATE_KEY] = client
            self._open.add(client)
            connection.exit_stack.push_async_callback(self._close, client)
        await client.start()
        return client

    async def _close(self, client: _Client) -> None:
        self._open.discard(client)
        await client.aclose()

    async def aclose(self) -> None:
        await asyncio.gather(*(self._close(client) for client in list(self._open)))


def _connection_of(ctx: ServerRequestContext[Any]) -> Connection:
    """The SDK's per-client `Connection` of a request: its state and its teardown.

    mcp 2.3.0 gives a low-level handler no public way to it (`ServerRequestContext` carries the
    per-request `ServerSession`, which holds it privately; `mcp.server.context.Context` has a
    `connection` property but is not handed to handlers yet). The exact pin of `mcp` keeps this
    read stable, and the HTTP tests fail loudly if it changes.
    """
    connection = getattr(ctx.session, "_connection", None)
    if not isinstance(connection, Connection):  # pragma: no cover - only an SDK change gets here
        raise RuntimeError("this mcp SDK version does not expose a request's connection; pin mcp==2.3.0")
    return connection


def _first(group: BaseExceptionGroup[UsageError]) -> UsageError:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


def _session_factory(
    tools: Iterable[ToolLike], mcp_servers: McpServers, options: Mapping[str, Any]
) -> NewSession:
    tool_list = list(tools)

    def new_session(on_notify: NotifyCallback) -> CodeMode:
        return CodeMode(tool_list, mcp_servers=mcp_servers, on_notify=on_notify, **options)

    return new_session
