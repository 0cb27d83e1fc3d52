"""The HTTP server's connections: how long a client may take to send a request, how big its head
may be, and how many connections may be open, so slow or stalled clients cannot lock others out.

uvicorn closes idle kept-alive connections (`timeout_keep_alive`), but with the httptools parser
it bounds neither the time a client takes over a request's head or body, nor the head's size,
nor the number of connections. The bearer token is only read once the head is in, so a client
that opens connections and never finishes their headers held file descriptors until the
server had none left, and clients with the right token were refused. `guarded_protocol` is
uvicorn's own httptools protocol with those bounds added at the parser callbacks it already
has (a protocol subclass, as uvicorn's `http=` setting takes one; no server of our own):

* A request's head (request line and headers) must be in within `header_timeout_s` of the
  connection opening or of the request's first byte, and be at most `max_head_bytes`: else
  the client gets 408 / 431 and the connection closes. Its body must be in within
  `body_timeout_s` of the head: else the connection closes (with 408 if no answer started).
* At most `max_pending_connections` connections may be inside a request head, which is every
  connection not yet authenticated. One more closes the one that has waited longest (503):
  a flood of stalled connections cannot starve a client that sends its head at once.
* At most `max_connections` connections are open. One more first closes the longest-waiting
  unfinished head, if there is one; else it is answered 503 and closed. `fit_open_file_limit`
  makes room for them under the process's open-file limit, so accept() never fails for lack
  of descriptors (which would refuse everyone, the right token or not).
* Idle kept-alive connections close after `keep_alive_timeout_s` (uvicorn's own timer).

The subclass reads uvicorn's per-connection state (`transport`, `cycle`, the parser callbacks),
so uvicorn is pinned to one minor line; tests/hardening/test_http_slow_clients.py fails loudly
if a release moves them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from codemode.errors import UsageError

__all__ = ["OPEN_FILE_RESERVE", "HttpLimits", "fit_open_file_limit", "guarded_protocol"]

OPEN_FILE_RESERVE = 256
"""Descriptors kept free beyond `max_connections`: the listening socket, engine worker pipes,
downstream MCP servers, logs."""

logger = logging.getLogger("codemode.mcp_server")


@dataclass(frozen=True)
class HttpLimits:
    """What `codemode mcp --transport http` lets one client connection take (see the module
    docstring for what happens at each limit)."""

    header_timeout_s: float = 10.0
    """Seconds to send a request's head, from connecting or from the request's first byte."""
    body_timeout_s: float = 30.0
    """Seconds to send a request's whole body once its head is in."""
    keep_alive_timeout_s: float = 5.0
    """Seconds an idle kept-alive connection stays open."""
    max_head_bytes: int = 64 * 1024
    """Bytes of a request's head (request line and headers)."""
    max_pending_connections: int = 128
    """Connections inside a request head (not yet authenticated) at once."""
    max_connections: int = 4096
    """Open connections, streams and kept-alive ones included."""

    def __post_init__(self) -> None:
        for name in ("header_timeout_s", "body_timeout_s", "keep_alive_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, int | float) and value > 0):
                raise UsageError(f"HttpLimits.{name} must be a positive number of seconds, got {value!r}")
        for name in ("max_head_bytes", "max_pending_connections", "max_connections"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"HttpLimits.{name} must be a positive integer, got {value!r}")


def fit_open_file_limit(limits: HttpLimits) -> HttpLimits:
    """`limits`, once this process may open `max_connections` plus `OPEN_FILE_RESERVE` files.

    Raises the soft open-file limit as far as the hard one allows; if that is not enough,
    lowers `max_connections` (and `max_pending_connections` with it) to fit and logs a warning:
    a connection refused with 503 beats accept() failing with EMFILE for everyone.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows: no such limit to fit
        return limits
    needed = limits.max_connections + OPEN_FILE_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        if raised > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return limits
    fitting = max(1, soft - OPEN_FILE_RESERVE)
    logger.warning(
        "the open-file limit (%d) leaves room for %d HTTP connections, not max_connections=%d",
        soft,
        fitting,
        limits.max_connections,
    )
    return replace(
        limits, max_connections=fitting, max_pending_connections=min(limits.max_pending_connections, fitting)
    )


class _Census:
    """The connections of one server: all open ones, and those inside a request head, oldest
    first. A connection leaves both as soon as it is closed, not when the loop reports it gone."""

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.open: set[GuardedHttpToolsProtocol] = set()
        self.in_head: dict[GuardedHttpToolsProtocol, None] = {}  # insertion order: oldest first

    def oldest_in_head(self, besides: GuardedHttpToolsProtocol) -> GuardedHttpToolsProtocol | None:
        return next((connection for connection in self.in_head if connection is not besides), None)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head/body deadlines, a head size limit and the
    connection bounds of `HttpLimits` (see the module docstring)."""

    census: ClassVar[_Census]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.timeout_keep_alive = self.census.limits.keep_alive_timeout_s  # type: ignore[assignment]  # uvicorn's own timer
        self._deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0

    # -- asyncio protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        census = self.census
        census.open.add(self)
        self._begin_head()
        if len(census.in_head) > census.limits.max_pending_connections:
            self._evict_oldest_head("too many connections are still sending their request")
        if len(census.open) > census.limits.max_connections:
            if not self._evict_oldest_head("the server is at its connection limit"):
                self._refuse(503, "the server is at its connection limit (max_connections); try again later")

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self in self.census.in_head and not self.transport.is_closing():
            # Still inside the head after parsing all of `data`: all of it was head.
            self._head_bytes += len(data)
            if self._head_bytes > self.census.limits.max_head_bytes:
                self._refuse(431, f"the request head is over {self.census.limits.max_head_bytes} bytes")

    # -- httptools parser callbacks --------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self not in self.census.in_head:  # a later request on a kept-alive connection
            self._begin_head()

    def on_headers_complete(self) -> None:
        self.census.in_head.pop(self, None)
        self._set_deadline(self.census.limits.body_timeout_s, self._body_too_slow)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._set_deadline(None, None)
        super().on_message_complete()

    # -- the bounds ------------------------------------------------------------------------------
    def _begin_head(self) -> None:
        self._head_bytes = 0
        self.census.in_head[self] = None
        self._set_deadline(self.census.limits.header_timeout_s, self._head_too_slow)

    def _set_deadline(self, seconds: float | None, on_expiry: Callable[[], None] | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None if seconds is None or on_expiry is None else self.loop.call_later(seconds, on_expiry)

    def _head_too_slow(self) -> None:
        self._refuse(408, f"the request head did not arrive within {self.census.limits.header_timeout_s} s")

    def _body_too_slow(self) -> None:
        self._refuse(408, f"the request body did not arrive within {self.census.limits.body_timeout_s} s")

    def _evict_oldest_head(self, why: str) -> bool:
        oldest = self.census.oldest_in_head(besides=self)
        if oldest is None:
            return False
        oldest._refuse(503, f"{why}; this one waited longest")
        return True

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` with `message` and close the connection (just close it while an
        answer of the app is under way); the app, if it runs, sees the client gone."""
        if self.transport.is_closing():
            return
        cycle = self._request()
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            self._close()
            return
        body = f"codemode: {message}\n".encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join([*head, body]))
        self._close()

    def _close(self) -> None:
        cycle = self._request()
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's later sends go nowhere; receive() says so
        self._forget()
        self.transport.close()

    def _request(self) -> RequestResponseCycle | None:
        """The connection's current request (uvicorn types it as always there: not before the
        first head is in)."""
        return self.cycle

    def _forget(self) -> None:
        self._set_deadline(None, None)
        self.census.open.discard(self)
        self.census.in_head.pop(self, None)


def guarded_protocol(limits: HttpLimits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for one uvicorn server (`uvicorn.Config(http=...)`), counting its own
    connections against `limits`."""

    class ServerProtocol(GuardedHttpToolsProtocol):
        census = _Census(limits)

    return ServerProtocol
