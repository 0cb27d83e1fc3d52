"""Streamable HTTP: a `CodeMode` per MCP session, and the end of sessions whose client is gone.

Invariants:

* Each stateful MCP session (`Mcp-Session-Id`) gets its own `ConnectionSession`, made on its first
  request and kept in the SDK's per-connection state; with a store, its `CodeMode` serves the
  stored session of that id (`_replicas`). However the session ends (DELETE, idle
  timeout, vanished client, server shutdown) its teardown only hands the session to a task
  group owned by the app's lifespan, which closes it to the end: the SDK bounds its own
  teardown (5 s), and a session it gave up on would keep its cells running.
* A client has vanished when none of its HTTP requests has been open for `VANISHED_GRACE_S`
  after it either held a GET stream (listening clients, which the official SDKs are, keep one
  open while alive) or dropped a request before anything of the answer reached it (a client may
  close a POST's event stream as soon as it has read the answer: that is no sign). Its session is ended as if
  idle. A client that never streams and finishes its requests only ends by DELETE or the idle
  timeout: between requests it cannot be told from a client that is thinking.
* At the session limit a request that would open another session is refused with a JSON-RPC
  error naming the limit; open sessions are unaffected.
* Sessionless (2026-07-28) requests are refused without a store. With one, each carries its
  session in a handle (`_replicas.SESSION_META_KEY`); an exec without one starts a new session.
  Such a session's `ConnectionSession` is kept here until it has had no request for the idle
  timeout; a request without a handle that is no tool call (a tool listing) is answered by one
  unstored session kept for that.
* The grace timers run in a task group `SessionWatch` holds open for the app's lifespan (the SDK
  app needs its lifespan anyway); a request that comes in cancels its session's timer.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import anyio
import anyio.abc
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from codemode._protocol.config import DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_IDLE_TIMEOUT_S
from codemode.mcp_server._handlers import ConnectionSession, NewSession
from codemode.mcp_server._replicas import SESSION_META_KEY, Replica
from codemode.mcp_server._sdk import connection_of, end_session, live_session_ids

__all__ = [
    "DEFAULT_MAX_SESSIONS",
    "DEFAULT_SESSION_IDLE_TIMEOUT_S",
    "VANISHED_GRACE_S",
    "BearerAuth",
    "HttpSessions",
    "SessionWatch",
    "header_value",
]

VANISHED_GRACE_S = 3.0
"""How long a client that was listening may go without any open request before its session ends:
long enough for the SDK clients to reopen a dropped GET stream (they retry after about 1 s)."""

SESSIONLESS_REFUSAL = (
    "codemode keeps cells and stored values per connection, so over streamable HTTP it needs a "
    "stateful session: connect with the initialize handshake (a protocol version up to 2025-11-25)"
)
FOREIGN_HANDLE = (
    f"codemode: the session handle in `_meta[{SESSION_META_KEY!r}]` was not issued by this server for "
    "these credentials; pass back the handle from an exec/wait result of your own, or leave it out "
    "to start a new session"
)
ENDED_SESSION = "codemode: this session is no longer in the store; leave the handle out to start a new session"
_STATE_KEY = "codemode.client"
_SESSION_HEADER = b"mcp-session-id"

logger = logging.getLogger("codemode.mcp_server")


class HttpSessions:
    """The `ConnectionSession`s of a streamable-HTTP server, one per MCP session."""

    def __init__(
        self,
        new_session: NewSession,
        closing: anyio.abc.TaskGroup,
        replica: Replica | None = None,
        *,
        idle_timeout_s: float = DEFAULT_SESSION_IDLE_TIMEOUT_S,
        max_sessions: int | None = DEFAULT_MAX_SESSIONS,
    ) -> None:
        self._new_session = new_session
        self._closing = closing
        self._replica = replica
        self._idle_timeout_s = idle_timeout_s
        self._max_sessions = max_sessions
        self._open: set[ConnectionSession] = set()
        self._sessionless: dict[str, _Kept] = {}
        self._catalog: ConnectionSession | None = None

    async def client_for(self, ctx: ServerRequestContext[Any]) -> ConnectionSession:
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            client = await self._sessionless_client(ctx)
            await client.start()
            return client
        connection = connection_of(ctx)
        client = connection.state.get(_STATE_KEY)
        if not isinstance(client, ConnectionSession):
            stored = self._replica is not None and self._replica.store is not None
            client = ConnectionSession(self._new_session, connection.session_id if stored else None)
            connection.state[_STATE_KEY] = client
            self._open.add(client)
            connection.exit_stack.callback(self._retire, client)
        await client.start()
        return client

    async def _sessionless_client(self, ctx: ServerRequestContext[Any]) -> ConnectionSession:
        """The session a sessionless request's handle names (checked against its credential),
        a new one for a tool call without a handle, or the catalog session for anything else."""
        replica = self._replica
        store = replica.store if replica is not None else None
        if replica is None or store is None:
            raise MCPError(code=types.INVALID_REQUEST, message=SESSIONLESS_REFUSAL)
        credential = replica.credential_of(ctx.request)
        handle = (ctx.meta or {}).get(SESSION_META_KEY)
        if handle is None:
            if ctx.method != "tools/call":
                return self._catalog_client()
            if self._max_sessions is not None and len(self._sessionless) >= self._max_sessions:
                message = f"codemode: this server is at its limit of {self._max_sessions} open sessions; try again later"
                raise MCPError(code=types.INTERNAL_ERROR, message=message)
            session_id = uuid4().hex
            await store.open_session(session_id)
        else:
            named = replica.session_of(handle, credential)
            if named is None:
                raise MCPError(code=types.INVALID_PARAMS, message=FOREIGN_HANDLE)
            session_id = named
            if session_id not in self._sessionless and not await store.session_exists(session_id):
                raise MCPError(code=types.INVALID_PARAMS, message=ENDED_SESSION)
        kept = self._sessionless.get(session_id)
        if kept is None:
            client = ConnectionSession(self._new_session, session_id)
            client.result_meta = {SESSION_META_KEY: replica.handle_for(session_id, credential)}
            kept = self._sessionless[session_id] = _Kept(client, anyio.CancelScope(), anyio.current_time())
            self._open.add(client)
            self._closing.start_soon(self._close_when_idle, session_id, kept)
        kept.last_used = anyio.current_time()
        return kept.client

    def _catalog_client(self) -> ConnectionSession:
        """The unstored session that answers sessionless requests naming no session (tool lists)."""
        if self._catalog is None:
            self._catalog = ConnectionSession(self._new_session, None)
            self._open.add(self._catalog)
        return self._catalog

    async def _close_when_idle(self, session_id: str, kept: _Kept) -> None:
        """End a sessionless session's `CodeMode` here once it has had no call for the idle
        timeout (the session stays in the store: the client may come back, here or elsewhere)."""
        with kept.idle:
            while True:
                left = kept.last_used + self._idle_timeout_s - anyio.current_time()
                if left <= 0 and not kept.client.busy:
                    break
                await anyio.sleep(left if left > 0 else self._idle_timeout_s)
            if self._sessionless.get(session_id) is kept:
                del self._sessionless[session_id]
            self._retire(kept.client)

    def _retire(self, client: ConnectionSession) -> None:
        """The SDK ended the session: close it in a task of ours, which nobody abandons."""
        if client in self._open:
            self._open.discard(client)
            self._closing.start_soon(_close, client)

    async def aclose(self) -> None:
        """Close every session still open (server shutdown)."""
        for kept in self._sessionless.values():
            kept.idle.cancel()
        self._sessionless.clear()
        clients, self._open = list(self._open), set()
        async with anyio.create_task_group() as closing:
            for client in clients:
                closing.start_soon(_close, client)


@dataclass
class _Kept:
    """A sessionless session's `ConnectionSession` on this replica, and when it was last used."""

    client: ConnectionSession
    idle: anyio.CancelScope
    last_used: float


async def _close(client: ConnectionSession) -> None:
    try:
        await client.aclose()
    except Exception:  # one session's teardown must not end the server
        logger.exception("closing a code-mode session failed")


@dataclass
class _Liveness:
    """What the HTTP requests of one MCP session say about its client."""

    open_requests: int = 0
    listened: bool = False  # it held a GET stream
    dropped: bool = False  # a request of it ended before any of its answer was sent
    check: anyio.CancelScope | None = None  # the grace timer running now


class SessionWatch:
    """ASGI middleware in front of the SDK app: the session limit, and vanished clients."""

    def __init__(self, app: ASGIApp, server: Server[Any], *, max_sessions: int | None, grace_s: float) -> None:
        self._app = app
        self._server = server
        self._max_sessions = max_sessions
        self._grace_s = grace_s
        self._sessions: dict[str, _Liveness] = {}
        self._timers: anyio.abc.TaskGroup | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            async with anyio.create_task_group() as timers:
                self._timers = timers
                try:
                    await self._app(scope, receive, send)
                finally:
                    self._timers = None
                    timers.cancel_scope.cancel()
            return
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        session_id = header_value(scope["headers"], _SESSION_HEADER)
        if session_id is None:
            if scope["method"] == "POST" and self._at_limit():
                await _refuse_new_session(send, self._max_sessions or 0)
                return
            await self._app(scope, receive, send)
            return
        live = self._sessions.get(session_id)
        if live is None:
            live = self._sessions[session_id] = _Liveness()
        live.open_requests += 1
        if live.check is not None:
            live.check.cancel()
            live.check = None
        if scope["method"] == "GET":
            live.listened = True
        answered = False  # the response ended, or sent something (clients may close SSE early)

        async def watched_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.body" and (message.get("body") or not message.get("more_body")):
                answered = True
            await send(message)

        try:
            await self._app(scope, receive, watched_send)
        finally:
            live.open_requests -= 1
            if scope["method"] == "DELETE" and answered:
                self._sessions.pop(session_id, None)
            else:
                live.dropped = live.dropped or not answered
                if live.open_requests == 0 and (live.listened or live.dropped) and self._timers is not None:
                    live.check = anyio.CancelScope()
                    self._timers.start_soon(self._end_if_gone_after_grace, session_id, live.check)

    def _at_limit(self) -> bool:
        """Whether a new session would be one too many; forgets sessions that ended meanwhile."""
        alive = live_session_ids(self._server)
        for session_id in [sid for sid, live in self._sessions.items() if not live.open_requests]:
            if session_id not in alive:
                live = self._sessions.pop(session_id)
                if live.check is not None:
                    live.check.cancel()
        return self._max_sessions is not None and len(alive) >= self._max_sessions

    async def _end_if_gone_after_grace(self, session_id: str, timer: anyio.CancelScope) -> None:
        with timer:
            await anyio.sleep(self._grace_s)
            live = self._sessions.get(session_id)
            if live is None or live.open_requests:
                return
            del self._sessions[session_id]
            try:
                ended = end_session(self._server, session_id)
            except Exception:  # one session's end must not stop the timers of others
                logger.exception("ending MCP session %s failed", session_id[:12])
                return
            if ended:
                logger.info("MCP session %s: its client went away; ending the session", session_id[:12])


class BearerAuth:
    """ASGI middleware: every HTTP request must carry `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = header_value(scope["headers"], b"authorization") or ""
            if not hmac.compare_digest(given.encode("latin-1", "replace"), self._expected):
                await _json_error(
                    send,
                    401,
                    types.INVALID_REQUEST,
                    "Unauthorized: this codemode server needs an `Authorization: Bearer <token>` header",
                    extra_headers=[(b"www-authenticate", b'Bearer realm="codemode"')],
                )
                return
        await self._app(scope, receive, send)


def header_value(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The value of header `name` (lower case) in an ASGI header list, or None."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


async def _refuse_new_session(send: Send, limit: int) -> None:
    message = (
        f"codemode: this server is at its limit of {limit} open MCP sessions (--max-sessions); "
        "end a session you no longer use (DELETE) or try again later"
    )
    await _json_error(send, 503, types.INTERNAL_ERROR, message, extra_headers=[(b"retry-after", b"5")])


async def _json_error(
    send: Send, status: int, code: int, message: str, *, extra_headers: list[tuple[bytes, bytes]]
) -> None:
    """A JSON-RPC error without a request id, as the SDK answers requests it cannot route."""
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra_headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
