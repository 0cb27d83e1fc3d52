"""Several `codemode mcp` processes serving the same sessions through one store (`--store`).

Invariants:

* A stateful session (2025-11-25 era) is written to the store (`open_session`) before its client
  learns its `Mcp-Session-Id`, so any replica can serve it from the client's next request on. A
  request carrying an id this replica does not hold but the store knows is served: the replica
  adopts the id (`_sdk.adopt_session`) instead of answering 404. An id the store does not know
  answers 404 as before. A DELETE drops the session from the store before it is answered; a
  replica that still holds it finds out within `ENDED_CHECK_S` (requests of a session it holds
  check the store at its first one and then that often) and ends it too, answering 404.
* A sessionless (2026-07-28) client carries its session in a handle the server mints, returned
  in the `_meta` of every exec/wait result under `SESSION_META_KEY` and passed back by the client
  in its request's `_meta`. A handle is `<session id>.<HMAC>`, the HMAC keyed by the store's
  `server_key` (shared by every replica) over the session id and the caller's credential (the
  bearer token when the server has one), so a handle works on any replica and only for the
  credential it was minted for; it is checked on every call, in constant time.
* `/healthz` answers 200 while this replica serves and its store answers, 503 otherwise. It is in
  front of the bearer check: load balancers probe it without the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp_types.version import LATEST_HANDSHAKE_VERSION
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from codemode.mcp_server._sdk import adopt_session, at_session_limit, can_adopt, end_session, live_session_ids

if TYPE_CHECKING:
    from codemode.store import Store

__all__ = ["HEALTH_PATH", "SESSION_META_KEY", "HealthCheck", "Replica", "SessionAdoption"]

SESSION_META_KEY = "codemode/session"
"""The `_meta` key of a sessionless (2026-07-28) client's session handle: in exec/wait results,
and in the request params the client sends back."""

ENDED_CHECK_S = 5.0
"""How often a request of a session this replica holds checks that the store still has it."""

HEALTH_PATH = "/healthz"
HEALTH_TIMEOUT_S = 2.0
"""How long the store may take to answer a health probe before the replica reports unhealthy."""

_SESSION_HEADER = b"mcp-session-id"
_VERSION_HEADER = b"mcp-protocol-version"
_HANDLE_CONTEXT = b"codemode/session\0"

logger = logging.getLogger("codemode.mcp_server")


class Replica:
    """This process's share of serving sessions kept in a store: the store, and session handles."""

    def __init__(self, store: str | Store | None, *, credentialed: bool) -> None:
        self._store_option = store
        self._credentialed = credentialed
        self._store: Store | None = None
        self._key = b""
        self.serving = False

    @property
    def store(self) -> Store | None:
        """The open store while the server runs; None without `store` (and outside its lifespan)."""
        return self._store

    @asynccontextmanager
    async def running(self) -> AsyncGenerator[None]:
        """The server's lifespan: the store open (closed after, if it was given as a URL)."""
        option = self._store_option
        if option is None:
            self.serving = True
            try:
                yield
            finally:
                self.serving = False
            return
        from codemode.store import open_store

        store = open_store(option)
        try:
            self._key = await store.server_key()
            self._store = store
            self.serving = True
            yield
        finally:
            self.serving = False
            self._store = None
            if store is not option:
                with anyio.CancelScope(shield=True):
                    await store.aclose()

    async def healthy(self) -> bool:
        if not self.serving:
            return False
        if self._store is None:
            return True
        with anyio.move_on_after(HEALTH_TIMEOUT_S):
            try:
                await self._store.session_exists("healthz")
            except Exception as exc:  # a probe every few seconds: one line each, no traceback
                logger.warning("health check: the store does not answer: %s", exc)
                return False
            return True
        return False

    def credential_of(self, request: Any) -> str:
        """What a sessionless handle is bound to: the request's bearer credential, if the server
        checks one (else every caller is the same caller)."""
        if not self._credentialed or not isinstance(request, Request):
            return ""
        return request.headers.get("authorization", "")

    def handle_for(self, session_id: str, credential: str) -> str:
        return f"{session_id}.{self._mac(session_id, credential)}"

    def session_of(self, handle: object, credential: str) -> str | None:
        """The session a handle names, if this store's key minted it for this credential."""
        if not isinstance(handle, str) or "." not in handle:
            return None
        session_id, mac = handle.rsplit(".", 1)
        if not session_id or not hmac.compare_digest(mac.encode(), self._mac(session_id, credential).encode()):
            return None
        return session_id

    def _mac(self, session_id: str, credential: str) -> str:
        message = _HANDLE_CONTEXT + session_id.encode() + b"\0" + credential.encode("utf-8", "replace")
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class HealthCheck:
    """ASGI middleware: `GET /healthz` for load balancers, answered before any other check."""

    def __init__(self, app: ASGIApp, replica: Replica) -> None:
        self._app = app
        self._replica = replica

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != HEALTH_PATH or scope["method"] not in ("GET", "HEAD"):
            await self._app(scope, receive, send)
            return
        healthy = await self._replica.healthy()
        body = json.dumps({"status": "ok" if healthy else "unavailable"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200 if healthy else 503, "headers": headers})
        await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})


class SessionAdoption:
    """ASGI middleware in front of the SDK app: stateful sessions live in the store too."""

    def __init__(self, app: ASGIApp, server: Server[Any], replica: Replica) -> None:
        self._app = app
        self._server = server
        self._replica = replica
        self._adopting = anyio.Lock()
        self._checked: dict[str, float] = {}  # live session id -> when the store last had it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        store = self._replica.store
        if scope["type"] != "http" or store is None:
            await self._app(scope, receive, send)
            return
        session_id = _header(scope, _SESSION_HEADER)
        if session_id is None:
            if scope["method"] == "POST":
                await self._app(scope, receive, _recording_new_session(store, send))
            else:
                await self._app(scope, receive, send)
            return
        live = live_session_ids(self._server)
        if session_id in live:
            try:
                ended = await self._ended_elsewhere(store, session_id, live)
            except Exception:
                logger.exception("checking MCP session %s in the store failed", session_id[:12])
                await _store_unavailable(send)
                return
            if ended:
                await _json_error(send, 404, "Session not found", code=types.INVALID_REQUEST)
                return
        else:
            try:
                adopted = await self._adopt_if_stored(store, session_id, _header(scope, _VERSION_HEADER))
            except Exception:
                logger.exception("adopting MCP session %s failed", session_id[:12])
                await _store_unavailable(send)
                return
            if adopted is None:
                await _json_error(send, 503, "codemode: this server is at its limit of open MCP sessions; try again later")
                return
        if scope["method"] == "DELETE":
            # Gone from the store before the client hears it is ended: no replica takes it over
            # from then on, and those holding it end it at their next check.
            try:
                await store.drop_session(session_id)
            except Exception:
                logger.exception("dropping ended MCP session %s from the store failed", session_id[:12])
                await _store_unavailable(send)
                return
        await self._app(scope, receive, send)

    async def _ended_elsewhere(self, store: Store, session_id: str, live: set[str]) -> bool:
        """Whether a session held here was ended through another replica (then end it here)."""
        now = anyio.current_time()
        checked = self._checked.get(session_id)
        if checked is not None and now - checked < ENDED_CHECK_S:
            return False
        # Checked at a session's first request here too: its `CodeMode`, made then, would put an
        # ended session back in the store.
        for gone in [checked for checked in self._checked if checked not in live]:
            del self._checked[gone]
        if await store.session_exists(session_id):
            self._checked[session_id] = now
            return False
        end_session(self._server, session_id)
        logger.info("MCP session %s: ended through another replica; ending it here", session_id[:12])
        return True

    async def _adopt_if_stored(self, store: Store, session_id: str, version: str | None) -> bool | None:
        """Serve a session the store knows: True if adopted, False if there is nothing to adopt
        (the SDK answers: live, malformed or unknown), None if at the session limit."""
        async with self._adopting:
            # Checked before the store (a request queued behind another adopting the same id)
            # and after it (a new session may have taken the last slot meanwhile).
            if not can_adopt(self._server, session_id) or not await store.session_exists(session_id):
                return False
            if not can_adopt(self._server, session_id):
                return False
            if at_session_limit(self._server):
                return None
            await adopt_session(self._server, session_id, version or LATEST_HANDSHAKE_VERSION)
            self._checked[session_id] = anyio.current_time()
            logger.info("MCP session %s: served here from now on (taken over from the store)", session_id[:12])
            return True


def _recording_new_session(store: Store, send: Send) -> Send:
    """`send` for a request that may open a session: the session is in the store before its
    id reaches the client; if the store fails, the client gets a 503 and no session id."""
    failed = False

    async def send_after_storing(message: Message) -> None:
        nonlocal failed
        if failed:
            return
        if message["type"] == "http.response.start" and message["status"] < 400:
            session_id = _header(message, _SESSION_HEADER)
            if session_id is not None:
                try:
                    await store.open_session(session_id)
                except Exception:
                    logger.exception("writing new MCP session %s to the store failed", session_id[:12])
                    failed = True
                    await _store_unavailable(send)
                    return
        await send(message)

    return send_after_storing


def _header(holder: Scope | Message, name: bytes) -> str | None:
    for key, value in holder.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _store_unavailable(send: Send) -> None:
    await _json_error(send, 503, "codemode: the session store does not answer; try again shortly")


async def _json_error(send: Send, status: int, message: str, *, code: int = types.INTERNAL_ERROR) -> None:
    """A JSON-RPC error without a request id, as the SDK answers requests it cannot route."""
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}})
    headers = [(b"content-type", b"application/json")]
    if status == 503:
        headers.append((b"retry-after", b"2"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode()})
