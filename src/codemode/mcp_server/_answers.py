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

_EVENT_STREAM = b"text/event-stream"
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
        self._passing = False

    async def send(self, message: Message) -> None:
        if self._passing:
            await self._send(message)
        elif message["type"] == "http.response.start":
            if message["status"] == 200 and _content_type(message).startswith(_EVENT_STREAM):
                self._start = message
            else:
                self._passing = True
                await self._send(message)
        elif message["type"] == "http.response.body" and self._start is not None:
            self._held += message.get("body", b"")
            more = bool(message.get("more_body", False))
            verdict = _verdict(bytes(self._held), ended=not more)
            if verdict is _UNDECIDED:
                return
            if verdict is _STREAM:
                await self._pass_held(more)
            else:
                await self._send_json(verdict)
        else:
            await self._send(message)

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


_UNDECIDED = object()
_STREAM = object()


def _verdict(held: bytes, *, ended: bool) -> object:
    """What the held part of an event stream allows: the response's JSON body (bytes) if it
    is the response alone and the stream has ended, `_STREAM` if it is anything else, else
    `_UNDECIDED`."""
    text = held.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    *events, rest = text.split(b"\n\n")
    if not events:
        return _STREAM if ended else _UNDECIDED
    data = _response_data(events[0])
    if data is None or len(events) > 1 or rest.strip():
        return _STREAM
    return data if ended else _UNDECIDED


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


def _content_type(message: Message) -> bytes:
    for key, value in message.get("headers", []):
        if key.lower() == b"content-type":
            return bytes(value).lower()
    return b""
