"""Streamable HTTP: an answer that turns out to be the lone JSON-RPC response goes out as plain JSON.

The SDK's server answers every request POST with an event stream. The SDK's client stops
reading such a stream as soon as it holds the response, before its end, so its HTTP client
cannot reuse the connection: every call opened a new TCP connection, which cost both ends
more CPU than the call itself. The protocol lets a server answer a request either way, so this
middleware holds an event-stream answer back until its first event says what it is:

* the response itself, with the stream ending after it: sent as one `application/json` body,
  which every client reads to its end (the connection is kept);
* anything else first (a notification, as `notify()` sends; a request to the client, as an
  approval is; a keep-alive ping, which the SDK sends when a call runs long; an event id,
  which only a resumable stream has): the held part is sent as it was and the rest streams.

Nothing is dropped or reordered: either the response alone goes out, or every byte the app
sent, in order.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from codemode.mcp_server._http import header_value

_EVENT_STREAM = "text/event-stream"
_DROPPED_HEADERS = frozenset({b"content-type", b"content-length", b"cache-control", b"connection", b"transfer-encoding"})


class JsonWhenAlone:
    """ASGI middleware for POSTs: see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        await self._app(scope, receive, _Answer(send).send)


class _Answer:
    """One POST's answer: passed through, or held until its first event decides."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._start: Message | None = None  # the held response start, while undecided
        self._held = bytearray()
        self._response: bytes | None = None  # the response's JSON, once it is the one event held
        self._passing = False

    async def send(self, message: Message) -> None:
        if self._passing:
            await self._send(message)
        elif message["type"] == "http.response.start":
            content_type = header_value(message.get("headers", []), b"content-type") or ""
            if message["status"] == 200 and content_type.lower().startswith(_EVENT_STREAM):
                self._start = message
            else:
                self._passing = True
                await self._send(message)
        elif message["type"] == "http.response.body" and self._start is not None:
            more = bool(message.get("more_body", False))
            if not self._hold(message.get("body", b"")):
                await self._pass_held(more)
            elif not more:
                if self._response is None:
                    await self._pass_held(more)  # ended without an event
                else:
                    await self._send_json(self._response)
        else:
            await self._send(message)

    def _hold(self, chunk: bytes) -> bool:
        """Add `chunk`; False once the held part is anything but the response alone (or its start)."""
        if not chunk:
            return True
        self._held += chunk
        if self._response is not None:
            return False  # more after the response
        text = bytes(self._held).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *events, rest = text.split(b"\n\n")
        if not events:
            return True  # the first event is not complete yet
        if len(events) > 1 or rest.strip():
            return False
        self._response = _response_data(events[0])
        return self._response is not None

    async def _pass_held(self, more: bool) -> None:
        assert self._start is not None
        self._passing = True
        await self._send(self._start)
        await self._send({"type": "http.response.body", "body": bytes(self._held), "more_body": more})
        self._held.clear()

    async def _send_json(self, body: bytes) -> None:
        assert self._start is not None
        headers = [(k, v) for k, v in self._start.get("headers", []) if k.lower() not in _DROPPED_HEADERS]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        self._passing = True  # anything after this (nothing, normally) is the app's business
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})


def _response_data(event: bytes) -> bytes | None:
    """The data of an event that carries a JSON-RPC response and nothing else, or None."""
    data: list[bytes] = []
    for line in event.split(b"\n"):
        field, _, value = line.partition(b":")
        if field == b"data":
            data.append(value[1:] if value.startswith(b" ") else value)
        elif field != b"event" or value.strip() != b"message":
            return None  # a comment (ping), an id, a retry or another event type
    body = b"\n".join(data)
    try:
        message = json.loads(body)
    except ValueError:
        return None
    if isinstance(message, dict) and "id" in message and ("result" in message or "error" in message):
        return body
    return None
