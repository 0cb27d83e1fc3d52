"""`JsonWhenAlone`: which event-stream answers go out as plain JSON, and that nothing else changes.

The app here is a scripted ASGI app sending what the SDK's server sends (a response start and
body chunks); end to end the same middleware is tested against `codemode mcp` in
`test_mcp_sessions.py`.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from codemode.mcp_server import _listening_socket
from codemode.mcp_server._answers import JsonWhenAlone

SSE_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), (b"mcp-session-id", b"s1")],
}
RESPONSE = b'{"jsonrpc":"2.0","id":3,"result":{"content":[]}}'
NOTIFICATION = b'{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}'


def event(data: bytes, *extra: bytes) -> bytes:
    return b"".join(line + b"\r\n" for line in (*extra, b"event: message", b"data: " + data)) + b"\r\n"


def body(chunk: bytes, more: bool = True) -> dict[str, Any]:
    return {"type": "http.response.body", "body": chunk, "more_body": more}


def answer_to(messages: list[dict[str, Any]], method: str = "POST") -> list[dict[str, Any]]:
    """What the client receives when the app sends `messages` through the middleware."""
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        for message in messages:
            await send(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(JsonWhenAlone(app)({"type": "http", "method": method}, receive, send))
    return sent


def streamed(sent: list[dict[str, Any]]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_the_response_alone_becomes_one_json_body_with_the_session_header() -> None:
    sent = answer_to([SSE_START, body(event(RESPONSE)), body(b"", more=False)])
    start, only = sent
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"content-length"] == str(len(RESPONSE)).encode()
    assert headers[b"mcp-session-id"] == b"s1"
    assert b"cache-control" not in headers
    assert only == {"type": "http.response.body", "body": RESPONSE}
    assert json.loads(only["body"])["id"] == 3


def test_a_response_split_across_chunks_is_still_recognised() -> None:
    whole = event(RESPONSE)
    sent = answer_to([SSE_START, body(whole[:7]), body(whole[7:30]), body(whole[30:]), body(b"", more=False)])
    assert dict(sent[0]["headers"])[b"content-type"] == b"application/json"
    assert sent[1]["body"] == RESPONSE


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(event(NOTIFICATION), id="a notification (notify)"),
        pytest.param(event(b'{"jsonrpc":"2.0","id":0,"method":"elicitation/create","params":{}}'), id="a request to the client"),
        pytest.param(b": ping - 2026-12-02\r\n\r\n", id="a keep-alive ping (a long call)"),
        pytest.param(event(RESPONSE, b"id: 17"), id="an event id (a resumable stream)"),
    ],
)
def test_anything_else_first_streams_every_byte_in_order(first: bytes) -> None:
    rest = event(RESPONSE)
    sent = answer_to([SSE_START, body(first), body(rest), body(b"", more=False)])
    assert sent[0] is SSE_START
    assert streamed(sent) == first + rest
    assert sent[-1].get("more_body") is False


def test_a_response_followed_by_more_events_streams() -> None:
    chunk = event(RESPONSE) + event(NOTIFICATION)
    sent = answer_to([SSE_START, body(chunk), body(b"", more=False)])
    assert sent[0] is SSE_START
    assert streamed(sent) == chunk


def test_a_response_followed_by_a_later_chunk_streams_both() -> None:
    sent = answer_to([SSE_START, body(event(RESPONSE)), body(event(NOTIFICATION)), body(b"", more=False)])
    assert sent[0] is SSE_START
    assert streamed(sent) == event(RESPONSE) + event(NOTIFICATION)


def test_a_stream_that_ends_without_an_event_is_passed_as_it_was() -> None:
    sent = answer_to([SSE_START, body(b"", more=False)])
    assert sent[0] is SSE_START
    assert streamed(sent) == b""


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_other_methods_and_json_answers_pass_untouched(method: str) -> None:
    messages = [SSE_START, body(event(RESPONSE)), body(b"", more=False)]
    assert answer_to(messages, method) == messages
    json_start = {"type": "http.response.start", "status": 202, "headers": [(b"content-type", b"application/json")]}
    assert answer_to([json_start, body(b"", more=False)]) == [json_start, body(b"", more=False)]


def test_connections_to_the_listening_socket_have_nagle_off() -> None:
    """Without TCP_NODELAY each request on a kept-alive connection waited for a delayed ACK."""

    async def main() -> int:
        sock = _listening_socket("127.0.0.1", 0)
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            raw = writer.get_extra_info("socket")
            accepted.set_result(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connection, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            result = await asyncio.wait_for(accepted, 10)
            writer.close()
        return result

    assert asyncio.run(main()) != 0
