"""The only code that reads private parts of the `mcp` SDK's server (pinned to the 2.x line).

mcp 2.3.0 gives a low-level handler no public way to its connection's state and teardown, and
gives the app no public way to end one streamable-HTTP session, to count them, or to serve a
session another replica initialized. The HTTP tests fail loudly if a new SDK release moves these.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.abc
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.runner import serve_connection
from mcp.server.streamable_http import SESSION_ID_PATTERN, StreamableHTTPServerTransport
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.transport_context import TransportContext

__all__ = ["adopt_session", "at_session_limit", "can_adopt", "connection_of", "end_session", "live_session_ids"]

logger = logging.getLogger("codemode.mcp_server")


def connection_of(ctx: ServerRequestContext[Any]) -> Connection:
    """The SDK's per-client `Connection` of a request: its `state` and its `exit_stack`.

    `ServerRequestContext` carries the per-request `ServerSession`, which holds it privately
    (`mcp.server.context.Context.connection` is not handed to low-level handlers yet).
    """
    connection = getattr(ctx.session, "_connection", None)
    if not isinstance(connection, Connection):  # pragma: no cover - only an SDK change gets here
        raise RuntimeError("this mcp SDK version does not expose a request's connection; use mcp 2.3.x")
    return connection


def live_session_ids(server: Server[Any]) -> set[str]:
    """The ids of the stateful streamable-HTTP sessions the server's session manager holds."""
    return set(server.session_manager._server_instances)  # pyright: ignore[reportPrivateUsage]


def end_session(server: Server[Any], session_id: str) -> bool:
    """End a streamable-HTTP session as its idle timeout would: its server loop stops, its
    connection's teardown runs, and its id answers 404 from then on. False if it is gone."""
    transport = server.session_manager._server_instances.get(session_id)  # pyright: ignore[reportPrivateUsage]
    if transport is None or transport.idle_scope is None:
        return False
    transport.idle_scope.cancel()
    return True


def can_adopt(server: Server[Any], session_id: str) -> bool:
    """Whether `adopt_session` may take this id: well-formed, and not live here already."""
    live = server.session_manager._server_instances  # pyright: ignore[reportPrivateUsage]
    return SESSION_ID_PATTERN.fullmatch(session_id) is not None and session_id not in live


def at_session_limit(server: Server[Any]) -> bool:
    """Whether the session manager holds as many stateful sessions as it may."""
    manager = server.session_manager
    return manager.max_sessions is not None and len(manager._server_instances) >= manager.max_sessions  # pyright: ignore[reportPrivateUsage]


async def adopt_session(server: Server[Any], session_id: str, protocol_version: str) -> None:
    """Serve the stateful session `session_id` from now on as if this process had initialized it.

    Another replica ran its `initialize` handshake: the connection is made already initialized at
    `protocol_version` (the client's capabilities are unknown here), with the transport, idle
    timeout and teardown the session manager gives the sessions it opens itself. Check
    `can_adopt` and `at_session_limit` first, with no await in between.
    """
    manager = server.session_manager
    task_group: anyio.abc.TaskGroup | None = manager._task_group  # pyright: ignore[reportPrivateUsage]
    if task_group is None:  # pragma: no cover - only a request after shutdown gets here
        raise RuntimeError("the streamable-HTTP session manager is not running")
    transport = StreamableHTTPServerTransport(
        mcp_session_id=session_id,
        is_json_response_enabled=manager.json_response,
        event_store=manager.event_store,
        security_settings=manager.security_settings,
        retry_interval=manager.retry_interval,
        idle_timeout=manager.session_idle_timeout,
    )
    manager._server_instances[session_id] = transport  # pyright: ignore[reportPrivateUsage]
    lifespan_state = manager._lifespan_state  # pyright: ignore[reportPrivateUsage]

    async def run(*, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            async with transport.connect() as (read_stream, write_stream):
                task_status.started()
                dispatcher: JSONRPCDispatcher[TransportContext] = JSONRPCDispatcher(
                    read_stream, write_stream, inline_methods=frozenset({"initialize"})
                )
                connection = Connection.for_loop(
                    dispatcher, session_id=session_id, protocol_version_hint=protocol_version
                )
                connection.initialized.set()
                with transport.idle_scope or anyio.CancelScope():
                    await serve_connection(server, dispatcher, connection=connection, lifespan_state=lifespan_state)
        except Exception:
            logger.exception("adopted MCP session %s crashed", session_id[:12])
        finally:
            await manager._discard_session(session_id, transport)  # pyright: ignore[reportPrivateUsage]

    try:
        await task_group.start(run)
    except BaseException:
        manager._server_instances.pop(session_id, None)  # pyright: ignore[reportPrivateUsage]
        raise
