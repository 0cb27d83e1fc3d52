"""The only code that reads private parts of the `mcp` SDK's server (pinned to the 2.x line).

mcp 2.3.0 gives a low-level handler no public way to its connection's state and teardown, and
gives the app no public way to end one streamable-HTTP session or to count them. The HTTP tests
fail loudly if a new SDK release moves these.
"""

from __future__ import annotations

from typing import Any

from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server

__all__ = ["connection_of", "end_session", "live_session_ids"]


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
